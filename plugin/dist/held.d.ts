export type Scope = 'call' | 'turn';
/** One hold of `path`, taken by `session` as `owner` (the session id the lock record carries). */
export interface Hold {
    session: string;
    owner: string;
    path: string;
    /** When it was taken (this process's clock, ms): an interrupted run lets go only of what it took before. */
    at?: number;
}
export declare class HeldLocks {
    /** callID -> the holds of that tool call (scope call). */
    private calls;
    /** session -> the holds it keeps until it goes idle (scope turn, and calls without a callID). */
    private turns;
    /** Records holds just taken: for the call (`callID`) or, in turn scope or without a callID, for the session's turn. */
    took(scope: Scope, callID: string | undefined, session: string, owner: string, paths: string[]): void;
    /** The holds of one tool call, forgotten (a call's after hook and its failure event may both come). */
    endCall(callID: string | undefined): Hold[];
    /** Every hold `session` took (its calls' and its turn's), forgotten; with `before`, only those taken before that time. */
    endSession(session: string, before?: number): Hold[];
    /** Everything, forgotten (dispose). */
    endAll(): Hold[];
    /** A lock `owner` lost: no hold on `path` under it is renewed or released as if held. True if it was held. */
    forget(owner: string, path: string): boolean;
    /** Every hold of `owner`'s tree on one of `paths`, forgotten (an agent lets go of them early). */
    takeOwned(owner: string, paths: string[]): Hold[];
    /** Each (owner, path) held now, once: what the renewal keeps alive. */
    held(): {
        owner: string;
        path: string;
    }[];
    /** The owners this plugin holds locks as (the sessions whose files are this plugin's). */
    owners(): Set<string>;
    get size(): number;
}
