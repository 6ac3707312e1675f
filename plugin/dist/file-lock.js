// opencode plugin: locks every file a write tool is about to change, so two agents never write one
// file at once. A second agent's tool fails with a message naming the holder instead of
// overwriting the first one's work. Before it blocks, a tool waits a little (waitMs) for the holder
// to finish: most tools hold a file for seconds, so a short wait usually ends in a normal write.
//
// Install: `npx opencode-file-lock install-plugin`, or put
// `export { FileLockPlugin } from 'opencode-file-lock/plugin'` in `.opencode/plugin/file-lock.ts`
// (or ~/.config/opencode/plugin/) with the package installed beside it. opencode calls every
// function a plugin module exports, so this module exports exactly one.
//
// It fails closed: if it cannot lock at all (the native addon is missing, a setting is wrong), it
// still loads and refuses every write it would have locked. Throwing here instead would make
// opencode skip the plugin and run the writes unlocked.
import { load } from './load.js';
import * as say from './messages.js';
import { filesTouchedBy, isShell } from './tools.js';
import { v1Hooks } from './v1.js';
/** Hooks that refuse every write the plugin would have locked, saying why. */
function refusingHooks(why) {
    return {
        'tool.execute.before': async (input, output) => {
            if (isShell(String(input?.tool)) || filesTouchedBy(String(input?.tool), output?.args) === null)
                return;
            throw say.cannotLock(String(input?.tool), why);
        },
    };
}
/**
 * Called by opencode with its plugin input (`directory`, `worktree`, `client`, ...) and the
 * options from its config; called by a test, the first argument may carry the options itself.
 */
export const FileLockPlugin = async (input = {}, options = {}) => {
    const ready = await load(input, options);
    if ('why' in ready)
        return refusingHooks(ready.why);
    return v1Hooks(ready.lib, ready.s, input.client, ready.z);
};
