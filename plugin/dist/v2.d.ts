import type { Zod } from './agent-tools.ts';
import type { Settings } from './options.ts';
type Lib = typeof import('../../lib/index.js');
/** A hook registration: disposed at cleanup. */
interface Registration {
    dispose(): Promise<void> | void;
}
/** The parts of opencode 2's plugin context this plugin uses. */
export interface V2Context {
    app?: {
        name?: string;
        version?: string;
    };
    location?: {
        directory?: string;
        project?: {
            directory?: string;
        };
    };
    options?: Record<string, unknown>;
    tool: {
        hook(name: 'execute.before' | 'execute.after', cb: (event: any) => Promise<void> | void): Promise<Registration> | Registration;
        transform(cb: (editor: any) => void): Promise<unknown> | unknown;
    };
    event: {
        subscribe(o: {
            signal: AbortSignal;
        }): AsyncIterable<any>;
    };
    session: {
        get(o: {
            sessionID: string;
        }): Promise<any>;
        synthetic?(o: {
            sessionID: string;
            text: string;
        }): Promise<unknown>;
    };
}
export type Cleanup = () => Promise<void>;
/** A plugin that cannot lock (no addon, a bad setting): every write it would lock is refused, saying why. */
export declare function refuseV2(ctx: V2Context, why: string): Promise<Cleanup>;
/** Everything the plugin does in opencode 1, on opencode 2's hooks, events and tools. */
export declare function setupV2(ctx: V2Context, lib: Lib, s: Settings, z?: Zod): Promise<Cleanup>;
export {};
