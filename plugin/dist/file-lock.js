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
import { createRequire } from 'node:module';
import { lockingHooks } from './hooks.js';
import * as say from './messages.js';
import { settings } from './options.js';
import { filesTouchedBy } from './tools.js';
/**
 * The library, or why it cannot load (usually: the native addon is not installed). The addon is
 * CommonJS; createRequire loads it the same way under Bun (opencode) and Node.
 */
function loadLib() {
    try {
        return { lib: createRequire(import.meta.url)('../../lib/index.js') };
    }
    catch (e) {
        return { error: e instanceof Error ? e : new Error(String(e)) };
    }
}
const told = new Set();
/** Hooks that refuse every write the plugin would have locked, saying why (once on stderr too). */
function refusingHooks(why) {
    if (!told.has(why)) {
        told.add(why);
        console.error(say.cannotLockNotice(why));
    }
    return {
        'tool.execute.before': async (input, output) => {
            if (input?.tool === 'bash' || filesTouchedBy(String(input?.tool), output?.args) === null)
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
    const loaded = loadLib();
    if ('error' in loaded) {
        const e = loaded.error;
        return refusingHooks(e.code === 'ENOADDON' ? e.message : `it could not load its library (${e.message}).`);
    }
    let s;
    try {
        s = settings(input, options, process.env);
    }
    catch (e) {
        return refusingHooks(`${e.message.replace(/^opencode-file-lock: /, '')}; fix it and restart opencode.`);
    }
    return lockingHooks(loaded.lib, s, input.client, await loadZod(s.debug));
};
/** zod, for the agents' lock tools' arguments; without it the plugin still locks, with no tools. */
async function loadZod(debug) {
    try {
        return (await import('zod')).z;
    }
    catch (e) {
        if (debug)
            console.error(`[opencode-file-lock] the file_locks and claim_files tools are off: zod did not load (${e.message})`);
        return undefined;
    }
}
