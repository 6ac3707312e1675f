import { type Host } from './core.ts';
import type { Zod } from './agent-tools.ts';
import type { Settings } from './options.ts';
import type { SessionClient } from './sessions.ts';
type Lib = typeof import('../../lib/index.js');
/** The hooks this plugin gives opencode 1 (and, under `tool`, the agents' lock tools). */
export type Hooks = Record<string, any>;
/** What opencode 1's SDK client offers the core: session lookups and toasts (called as methods: the SDK needs its `this`). */
export declare function v1Host(client: SessionClient | undefined, log: (m: string) => void): Host;
export declare function v1Hooks(lib: Lib, s: Settings, client: SessionClient | undefined, z?: Zod): Hooks;
export {};
