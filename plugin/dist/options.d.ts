import type { Cache } from '../../lib/index.js';
import type { Scope } from './held.ts';
import { type ToolRules } from './tools.ts';
export interface FileLockOptions {
    /** Recorded in every lock for people; locks are owned by opencode's sessionID. */
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
    scope?: Scope;
    /** How long a tool waits for a held file before it is blocked (default: FILE_LOCK_WAIT_MS, else 5000; 0: block at once). */
    waitMs?: number;
    /** Toasts in opencode's TUI when a write waits or is refused and when a lock is lost (default: FILE_LOCK_TOAST, else on). */
    toast?: boolean;
    /** More tools that write, in FILE_LOCK_TOOLS's syntax (added to that variable's). */
    tools?: string;
    /**
     * A write to a file that changed since its task last read it: `refuse` (default), `warn` (it goes
     * ahead, and the model is told what it overwrote) or `off` (no check). Default: FILE_LOCK_STALE.
     */
    stale?: StaleMode;
}
export type StaleMode = 'refuse' | 'warn' | 'off';
export interface Settings {
    agentId: string;
    cacheBackend?: 'sled' | 'redis' | 'hybrid';
    cache?: Cache;
    ttlMs?: number;
    baseDir: string;
    scope: Scope;
    waitMs: number;
    renewal: boolean;
    debug: boolean;
    toast: boolean;
    tools: ToolRules;
    stale: StaleMode;
    /** How long versions and views are kept (FILE_LOCK_VERSION_TTL_MS, default a day). */
    versionTtlMs: number;
}
/**
 * The settings opencode's input (`directory`, ...) and config options ask for; a test may pass
 * the options in the input itself.
 */
export declare function settings(input: Record<string, unknown>, options: Record<string, unknown>, env: NodeJS.ProcessEnv): Settings;
