import { FileLockPlugin } from './file-lock.ts';
import { type Cleanup, type V2Context } from './v2.ts';
/** opencode 2: everything the plugin does in opencode 1, on opencode 2's hooks; resolves to the cleanup. */
declare function setup(ctx: V2Context): Promise<Cleanup>;
declare const plugin: {
    id: string;
    setup: typeof setup;
    server: typeof FileLockPlugin;
};
export default plugin;
