import { type Zod } from './agent-tools.ts';
import type { Settings } from './options.ts';
import { type SessionClient } from './sessions.ts';
type Lib = typeof import('../../lib/index.js');
/** The hooks this plugin gives opencode (and, under `tool`, the agents' lock tools). */
export type Hooks = Record<string, any>;
export declare function lockingHooks(lib: Lib, s: Settings, client: SessionClient | undefined, z?: Zod): Hooks;
export {};
