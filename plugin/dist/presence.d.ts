import type { Core } from './core.ts';
type Lib = typeof import('../../lib/index.js');
export declare const INSTANCE_TTL_MS = 30000;
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
