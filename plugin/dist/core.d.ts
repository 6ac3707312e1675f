import type { Cache } from '../../lib/index.js';
import { type Zod } from './agent-tools.ts';
import type { Settings } from './options.ts';
import { type SessionInfo } from './sessions.ts';
type Lib = typeof import('../../lib/index.js');
/** One tool call, as every host has it. */
export interface Call {
    tool: string;
    session: string;
    /** The host's id of this call (V1 callID, V2 id); without one, holds last for the turn. */
    callID?: string;
    args: unknown;
}
/** A notice for the person at the keyboard. */
export type Notice = {
    title: string;
    message: string;
    variant: 'warning' | 'error';
};
/** What a host gives the core. */
export interface Host {
    /** What the host knows of a session (title, agent, parent), asked once per session. */
    lookup?: (session: string) => Promise<SessionInfo | undefined>;
    /** Shows a notice to the person at the keyboard (V1: a toast; V2: a message in the session). */
    notify?: (n: Notice, session?: string) => void;
    /** Who is writing: `opencode`, `claude-code`, ... (recorded in locks and versions). */
    kind?: string;
}
export declare function lockingCore(lib: Lib, s: Settings, host: Host, z?: Zod): {
    settings: Settings;
    /** The agents' lock tools (file_locks, claim_files), when zod loaded. */
    tools: {
        file_locks: {
            description: string;
            args: {};
            execute(_args: Record<string, never>, ctx: import("./agent-tools.ts").ToolContext): Promise<string>;
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
            }, ctx: import("./agent-tools.ts").ToolContext): Promise<string>;
        };
    } | undefined;
    /** What the host learnt of a session (a created or updated event), so nobody asks. */
    saw: (info: {
        id?: string;
        title?: string;
        agent?: string;
        parentID?: string;
    } | undefined) => void;
    /** Before a call runs: notes reads and shell commands, locks and checks writes. Throws to block it. */
    before(call: Call): Promise<void>;
    /**
     * After a call that completed: records what it read or wrote, releases its locks (scope call),
     * and adds to its output (`append`, when the host lets it) what others need it to know.
     */
    after(call: Call, append?: (text: string) => void): Promise<void>;
    /** A call that ended some other way (failed, blocked by another plugin, aborted): nothing is recorded; its locks go (scope call). */
    ended(callID: string | undefined, tool: string, failed: boolean): Promise<void>;
    /** The session's turn is over: turn-scope holds and whatever a call left go. */
    idle: (session: string | undefined) => Promise<void>;
    /** The session is gone (deleted, errored): its waits stop and everything its tree holds goes. */
    sessionEnded: (session: string | undefined, why: string) => Promise<void>;
    interrupted: (session: string | undefined, why: string, at: number) => Promise<void>;
    /** Every lock of this agent id (the old plugin's `session.end` with no session). */
    endAgent(): Promise<void>;
    /** The store, opened on first use (for the host's own bookkeeping). */
    cache: () => Promise<Cache>;
    log: (msg: string) => void;
    dispose(): Promise<void>;
};
export type Core = ReturnType<typeof lockingCore>;
export {};
