import type { Settings } from './options.ts';
import { type SessionClient } from './sessions.ts';
type Lib = typeof import('../../lib/index.js');
/** The hooks this plugin gives opencode. */
export type Hooks = Record<string, (...args: any[]) => Promise<void>>;
export declare function lockingHooks(lib: Lib, s: Settings, client: SessionClient | undefined): Hooks;
export {};
