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
import { createRequire } from 'node:module'
import type { Zod } from './agent-tools.ts'
import { lockingHooks, type Hooks } from './hooks.ts'
import * as say from './messages.ts'
import { settings, type FileLockOptions } from './options.ts'
import type { SessionClient } from './sessions.ts'
import { filesTouchedBy } from './tools.ts'

export type { Hooks } from './hooks.ts'
export type { FileLockOptions } from './options.ts'
export type { Scope as LockScope } from './held.ts'

type Lib = typeof import('../../lib/index.js')

/** What opencode passes to a plugin (the parts this plugin reads). */
export interface PluginInput {
  directory?: string
  worktree?: string
  client?: unknown
  [key: string]: unknown
}

/**
 * The library, or why it cannot load (usually: the native addon is not installed). The addon is
 * CommonJS; createRequire loads it the same way under Bun (opencode) and Node.
 */
function loadLib(): { lib: Lib } | { error: Error } {
  try {
    return { lib: createRequire(import.meta.url)('../../lib/index.js') as Lib }
  } catch (e) {
    return { error: e instanceof Error ? e : new Error(String(e)) }
  }
}

const told = new Set<string>()
/** Hooks that refuse every write the plugin would have locked, saying why (once on stderr too). */
function refusingHooks(why: string): Hooks {
  if (!told.has(why)) {
    told.add(why)
    console.error(say.cannotLockNotice(why))
  }
  return {
    'tool.execute.before': async (input: { tool?: string }, output: { args?: unknown }) => {
      if (input?.tool === 'bash' || filesTouchedBy(String(input?.tool), output?.args) === null) return
      throw say.cannotLock(String(input?.tool), why)
    },
  }
}

/**
 * Called by opencode with its plugin input (`directory`, `worktree`, `client`, ...) and the
 * options from its config; called by a test, the first argument may carry the options itself.
 */
export const FileLockPlugin = async (input: PluginInput & FileLockOptions = {}, options: FileLockOptions = {}): Promise<Hooks> => {
  const loaded = loadLib()
  if ('error' in loaded) {
    const e = loaded.error as Error & { code?: string }
    return refusingHooks(e.code === 'ENOADDON' ? e.message : `it could not load its library (${e.message}).`)
  }
  let s
  try {
    s = settings(input as Record<string, unknown>, options as Record<string, unknown>, process.env)
  } catch (e) {
    return refusingHooks(`${(e as Error).message.replace(/^opencode-file-lock: /, '')}; fix it and restart opencode.`)
  }
  return lockingHooks(loaded.lib, s, input.client as SessionClient | undefined, await loadZod(s.debug))
}

/** zod, for the agents' lock tools' arguments; without it the plugin still locks, with no tools. */
async function loadZod(debug: boolean): Promise<Zod | undefined> {
  try {
    return (await import('zod')).z
  } catch (e) {
    if (debug) console.error(`[opencode-file-lock] the file_locks and claim_files tools are off: zod did not load (${(e as Error).message})`)
    return undefined
  }
}
