import type { Freshness } from '../../lib/index.js';
/** A duration as people say it: 45s, 3m 12s, 2h 5m. */
export declare function ago(ms: number): string;
/** A time of day on this machine's clock (14:03:07), with the date when it is not today. */
export declare function clock(ms: number): string;
/** "the session “Fix login” (agent build)", else "agent <id> (session <id>)", with where it ran when that is another machine. */
export declare function writerOf(v: {
    sessionId?: string;
    agentId?: string;
    title?: string;
    agentName?: string;
    kind?: string;
    host?: string;
}): string;
/** A write refused because its task's view of a file is out of date (or it never read a file it would replace). */
export declare function staleRefusal(tool: string, found: Freshness[], files: string[], shown: (p: string) => string): Error;
/** FILE_LOCK_STALE=warn: appended to the output of a write that went ahead over changes its task had not seen. */
export declare function staleWarning(found: Freshness[], shown: (p: string) => string): string;
/** Added to a holder's tool result while other agents wait for what it holds: one line each. */
export declare function othersWait(waiting: {
    agentId: string;
    sessionId: string;
    paths: string[];
}[]): string;
/** "the session “Fix the parser” (agent build)" when opencode knows the holder's session. */
export type Describe = (sessionId: string) => Promise<string>;
/** A refused or failed acquire, as the tool's error. */
export declare function blocked(tool: string, files: string[], e: any, waitMs: number, why: unknown, describe: Describe): Promise<Error>;
/** The check for changes since the task read its files could not run: the write is refused (it fails closed). */
export declare function cannotCheck(tool: string, files: string[], e: any): Error;
/** A tool whose name says it writes, with no argument naming a file: it cannot be locked. */
export declare function noPaths(tool: string, args: unknown): Error;
/** The plugin cannot lock at all (the native addon is missing, a setting is wrong): every write is refused. */
export declare function cannotLock(tool: string, why: string): Error;
/** Said once on stderr when the plugin cannot lock at all. */
export declare function cannotLockNotice(why: string): string;
/** A lock the plugin held is gone. */
export declare function lostNotice(path: string, session: string, reason: string, holder?: {
    agentId?: string;
    sessionId?: string;
} | null): string;
/** A release that failed: the lock stays until its TTL. */
export declare function releaseFailed(path: string, owner: string, why: string, e: any): string;
/** What a bash command did to files other sessions hold: appended to its output for the model. */
export declare function bashChanged(changes: {
    path: string;
    who: string;
    how: string;
}[]): string;
export declare const toasts: {
    stale: (files: string[], who: string, refused: boolean) => {
        title: string;
        message: string;
        variant: 'warning' | 'error';
    };
    waiting: (files: string[], who: string, waitMs: number) => {
        title: string;
        message: string;
        variant: 'warning';
    };
    refused: (files: string[], who: string) => {
        title: string;
        message: string;
        variant: 'error';
    };
    lost: (path: string, reason: string) => {
        title: string;
        message: string;
        variant: 'error';
    };
    deadlock: (released: string[]) => {
        title: string;
        message: string;
        variant: 'warning';
    };
    bash: (paths: string[]) => {
        title: string;
        message: string;
        variant: 'warning';
    };
};
