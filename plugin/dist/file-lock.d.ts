type Cache = import('../../lib/index.js').Cache;
/** What opencode passes to a plugin (the parts this plugin reads). */
export interface PluginInput {
    directory?: string;
    worktree?: string;
    [key: string]: unknown;
}
/** The hooks this plugin gives opencode. */
export type Hooks = Record<string, (...args: any[]) => Promise<void>>;
export type LockScope = 'call' | 'turn';
export interface FileLockOptions {
    /** Recorded in every lock for humans; locks are owned by opencode's sessionID. */
    agentId?: string;
    /** Which store to open when no `cache` is given (default: FILE_LOCK_CACHE_BACKEND, else sled). */
    cacheBackend?: 'sled' | 'redis' | 'hybrid';
    /** A cache from this package to use (the plugin then never closes it). */
    cache?: Cache;
    /** Lock lifetime; held locks are renewed while tools run (default: FILE_LOCK_TTL_MS, else 5 min). */
    ttlMs?: number;
    /** Relative paths resolve against this folder (default: the project directory). */
    baseDir?: string;
    /** `call` (default): held while one tool runs. `turn`: from a session's first write of a file until it goes idle. */
    scope?: LockScope;
    /** How long a tool waits for a held file before it is blocked (default: FILE_LOCK_WAIT_MS, else 5000; 0: block at once). */
    waitMs?: number;
}
/**
 * Called by opencode with its plugin input (`directory`, `worktree`, ...) and the options from its
 * config; called by a test, the first argument may carry the options itself.
 */
export declare const FileLockPlugin: (input?: PluginInput & FileLockOptions, options?: FileLockOptions) => Promise<Hooks>;
export {};
