export interface SessionInfo {
    title?: string;
    agent?: string;
    parentID?: string;
}
/** The part of opencode 1's SDK client this plugin uses. */
export interface SessionClient {
    session?: {
        get?: (o: {
            path: {
                id: string;
            };
        }) => Promise<{
            data?: any;
            error?: unknown;
        }>;
    };
    tui?: {
        showToast?: (o: {
            body: {
                title?: string;
                message: string;
                variant: 'info' | 'success' | 'warning' | 'error';
                duration?: number;
            };
        }) => Promise<unknown>;
    };
}
export declare class Sessions {
    private lookup?;
    private known;
    /** `lookup`: what the host knows of a session (undefined or a rejection: nothing). */
    constructor(lookup?: ((id: string) => Promise<SessionInfo | undefined>) | undefined);
    /** What a `session.created` / `session.updated` event says, so no question is needed. */
    saw(info: any): void;
    info(id: string): Promise<SessionInfo>;
    /** The root of `id`'s task tree: the session whose locks its subagents share. */
    root(id: string): Promise<string>;
    /** "the session “Fix the parser” (agent build)", or nothing when opencode does not know it. */
    describe(id: string): Promise<string>;
}
