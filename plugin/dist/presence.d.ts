import type { Core } from './core.ts';
type Lib = typeof import('../../lib/index.js');
/** How long an instance's entry lives unrenewed (FILE_LOCK_INSTANCE_TTL_MS, 1 s to 10 min; default 30 s); renewed every third of it. */
export declare function instanceTtlMs(env?: NodeJS.ProcessEnv): number;
/** What an instance says of itself (`<namespace>/instances`, keyed by `id`). */
export interface Instance {
    id: string;
    /** The plugin API that loaded it: 1 (`server(input, options)`) or 2 (`setup(ctx)`). */
    api: 1 | 2;
    opencode: string;
    plugin: string;
    pid: number;
    host: string;
    project: string;
    store: string;
    since: number;
    seen: number;
}
/** The version of the opencode binary running this process, from its package beside it, else ''. */
export declare function opencodeVersion(): string;
/** The store as people name it, with no secret: `sled <folder>`, `redis <host:port>`, ... */
export declare function storeLabel(lib: Lib, backend?: string): string;
/** Announces this instance now and every 10 s until `stop()`, which takes the entry out. */
export declare function announce(lib: Lib, core: Core, o: {
    api: 1 | 2;
    opencodeVersion?: string;
    project: string;
}): {
    id: string;
    stop(): Promise<void>;
};
export {};
