import type { Cache, LockSnapshot } from '../../lib/index.js';
import type { Views } from './stale.ts';
type Lib = typeof import('../../lib/index.js');
/** The zod the tools' arguments are declared with (opencode's plugin API wants zod schemas). */
export type Zod = typeof import('zod').z;
/** What the tools need from the plugin's hooks. */
export interface ToolDeps {
    lib: Lib;
    cache: () => Promise<Cache>;
    baseDir: string;
    /** The root of a session's task tree: the owner its locks are taken as. */
    root: (session: string) => Promise<string>;
    /** "the session “title” (agent build)", or '' when opencode does not know it. */
    describe: (session: string) => Promise<string>;
    /** Takes `paths` for `session` as `owner` until the turn ends, saying why; resolves to the normalized paths. */
    claim: (session: string, owner: string, paths: string[], signal?: AbortSignal, reason?: string) => Promise<string[]>;
    /** Lets go of what `owner`'s tree holds through this plugin on `paths`; the paths let go of. */
    unclaim: (owner: string, paths: string[]) => Promise<string[]>;
    /** The files' last writers and whether the caller's view of each is current. */
    views?: Views;
}
export interface ToolContext {
    sessionID: string;
    abort?: AbortSignal;
}
/** A path as the project's people write it: relative inside the project, absolute outside. */
export declare function shown(p: string, baseDir: string): string;
/** What `file_locks` says of files' last writes: per path, the last writer and the caller's view. */
export type FileNotes = Map<string, {
    lastWrite?: import('../../lib/index.js').FileVersion;
    status?: string;
}>;
/** The `file_locks` answer: every lock and claim of the project, then who waits, then recent writes. */
export declare function describeLocks(snap: LockSnapshot, baseDir: string, me: string, describe: ToolDeps['describe'], notes?: FileNotes, recent?: string[]): Promise<string>;
export declare function agentTools(z: Zod, d: ToolDeps): {
    file_locks: {
        description: string;
        args: {};
        execute(_args: Record<string, never>, ctx: ToolContext): Promise<string>;
    };
    claim_files: {
        description: string;
        args: {
            paths: import("zod").ZodArray<import("zod").ZodString>;
            release: import("zod").ZodOptional<import("zod").ZodBoolean>;
            reason: import("zod").ZodOptional<import("zod").ZodString>;
        };
        execute(args: {
            paths: string[];
            release?: boolean;
            reason?: string;
        }, ctx: ToolContext): Promise<string>;
    };
};
export {};
