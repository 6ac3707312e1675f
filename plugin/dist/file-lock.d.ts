import type { FileLockOptions } from './options.ts';
import { type Hooks } from './v1.ts';
export type { Hooks } from './v1.ts';
export type { FileLockOptions } from './options.ts';
export type { Scope as LockScope } from './held.ts';
/** What opencode passes to a plugin (the parts this plugin reads). */
export interface PluginInput {
    directory?: string;
    worktree?: string;
    client?: unknown;
    [key: string]: unknown;
}
/**
 * Called by opencode with its plugin input (`directory`, `worktree`, `client`, ...) and the
 * options from its config; called by a test, the first argument may carry the options itself.
 */
export declare const FileLockPlugin: (input?: PluginInput & FileLockOptions, options?: FileLockOptions) => Promise<Hooks>;
