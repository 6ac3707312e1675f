// One plugin module for opencode 1 and opencode 2 (`opencode-file-lock/server`). Its default export
// is one object: opencode 2's loader reads `id` and calls `setup(ctx)`; opencode 1 (1.18.29 and
// newer) sees an object with `id` and `server` and calls only `server(input, options)`. Nothing
// here imports @opencode/plugin at run time (opencode 1 cannot resolve it): the object is plain.
import { FileLockPlugin } from './file-lock.js';
import { load } from './load.js';
import { refuseV2, setupV2 } from './v2.js';
/** opencode 2: everything the plugin does in opencode 1, on opencode 2's hooks; resolves to the cleanup. */
async function setup(ctx) {
    const input = { directory: ctx.location?.directory ?? ctx.location?.project?.directory };
    const ready = await load(input, (ctx.options ?? {}));
    if ('why' in ready)
        return refuseV2(ctx, ready.why);
    return setupV2(ctx, ready.lib, ready.s, ready.z);
}
const plugin = {
    id: 'opencode-file-lock',
    setup,
    server: FileLockPlugin,
};
export default plugin;
