import type { Zod } from './agent-tools.ts';
import { type Settings } from './options.ts';
type Lib = typeof import('../../lib/index.js');
/** Everything to lock with, or why the plugin cannot lock (it then refuses writes, saying so). */
export declare function load(input: Record<string, unknown>, options: Record<string, unknown>, { tools }?: {
    tools?: boolean;
}): Promise<{
    lib: Lib;
    s: Settings;
    z?: Zod;
} | {
    why: string;
}>;
export {};
