// What every host's entry needs before it can lock: the library (or why it cannot load), the
// settings (or what is wrong with them), and zod for the agents' tools.
import { createRequire } from 'node:module'
import type { Zod } from './agent-tools.ts'
import * as say from './messages.ts'
import { settings, type Settings } from './options.ts'

type Lib = typeof import('../../lib/index.js')

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

/** zod, for the agents' lock tools' arguments; without it the plugin still locks, with no tools. */
async function loadZod(debug: boolean): Promise<Zod | undefined> {
  try {
    return (await import('zod')).z
  } catch (e) {
    if (debug) console.error(`[opencode-file-lock] the file_locks and claim_files tools are off: zod did not load (${(e as Error).message})`)
    return undefined
  }
}

const told = new Set<string>()
/** Says once on stderr why the plugin cannot lock (every write it would lock is then refused). */
function tellOnce(why: string) {
  if (told.has(why)) return
  told.add(why)
  console.error(say.cannotLockNotice(why))
}

/** Everything to lock with, or why the plugin cannot lock (it then refuses writes, saying so). */
export async function load(input: Record<string, unknown>, options: Record<string, unknown>, { tools = true }: { tools?: boolean } = {}): Promise<{ lib: Lib; s: Settings; z?: Zod } | { why: string }> {
  const loaded = loadLib()
  if ('error' in loaded) {
    const e = loaded.error as Error & { code?: string }
    const why = e.code === 'ENOADDON' ? e.message : `it could not load its library (${e.message}).`
    tellOnce(why)
    return { why }
  }
  let s: Settings
  try {
    s = settings(input, options, process.env)
  } catch (e) {
    const why = `${(e as Error).message.replace(/^opencode-file-lock: /, '')}; fix it and restart opencode.`
    tellOnce(why)
    return { why }
  }
  // zod only for the agents' tools: a short hook process does without its load time
  return { lib: loaded.lib, s, z: tools ? await loadZod(s.debug) : undefined }
}
