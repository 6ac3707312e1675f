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
import { load } from './load.ts'
import * as say from './messages.ts'
import type { FileLockOptions } from './options.ts'
import type { SessionClient } from './sessions.ts'
import { filesTouchedBy, isShell } from './tools.ts'
import { v1Hooks, type Hooks } from './v1.ts'

export type { Hooks } from './v1.ts'
export type { FileLockOptions } from './options.ts'
export type { Scope as LockScope } from './held.ts'

/** What opencode passes to a plugin (the parts this plugin reads). */
export interface PluginInput {
  directory?: string
  worktree?: string
  client?: unknown
  [key: string]: unknown
}

/** Hooks that refuse every write the plugin would have locked, saying why. */
function refusingHooks(why: string): Hooks {
  return {
    'tool.execute.before': async (input: { tool?: string }, output: { args?: unknown }) => {
      if (isShell(String(input?.tool)) || filesTouchedBy(String(input?.tool), output?.args) === null) return
      throw say.cannotLock(String(input?.tool), why)
    },
  }
}

/**
 * Called by opencode with its plugin input (`directory`, `worktree`, `client`, ...) and the
 * options from its config; called by a test, the first argument may carry the options itself.
 */
export const FileLockPlugin = async (input: PluginInput & FileLockOptions = {}, options: FileLockOptions = {}): Promise<Hooks> => {
  const ready = await load(input as Record<string, unknown>, options as Record<string, unknown>)
  if ('why' in ready) return refusingHooks(ready.why)
  return v1Hooks(ready.lib, ready.s, input.client as SessionClient | undefined, ready.z)
}
