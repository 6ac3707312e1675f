// opencode plugin: locks every file a write tool is about to change, so two agents never write one
// file at once. A second agent's tool fails with a message naming the holder instead of
// overwriting the first one's work. Before it blocks, a tool waits a little (waitMs) for the holder
// to finish: most tools hold a file for seconds, so a short wait usually ends in a normal write.
//
// Install: `npx opencode-file-lock install-plugin`, or put
// `export { FileLockPlugin } from 'opencode-file-lock/plugin'` in `.opencode/plugin/file-lock.ts`
// (or ~/.config/opencode/plugin/) with the package installed beside it. opencode calls every
// function a plugin module exports, so this module exports exactly one.
import { createRequire } from 'node:module'
import os from 'node:os'
import { filesTouchedBy } from './tools.ts'

type Lib = typeof import('../../lib/index.js')
type Cache = import('../../lib/index.js').Cache
type LostLockEvent = import('../../lib/index.js').LostLockEvent

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

let toldMissing = false
/**
 * Hooks that refuse every write the plugin would have locked: without the addon there is no lock,
 * and a write that runs unlocked is what this plugin exists to prevent. Said once on stderr too.
 */
function refusingHooks(error: Error): Hooks {
  const why = (error as { code?: string }).code === 'ENOADDON' ? error.message : `it could not load its library (${error.message})`
  if (!toldMissing) {
    toldMissing = true
    console.error(`[opencode-file-lock] ${why} Until this is fixed, every write, edit and patch opencode tries is refused.`)
  }
  return {
    'tool.execute.before': async (input: ToolInput, output: ToolOutput) => {
      if (filesTouchedBy(input?.tool, output?.args) === null) return
      throw new Error(`opencode-file-lock refused this ${input?.tool} call because it cannot lock files: ${why} The call was not run, so no file was changed without a lock.`)
    },
  }
}

/** What opencode passes to a plugin (the parts this plugin reads). */
export interface PluginInput {
  directory?: string
  worktree?: string
  [key: string]: unknown
}
interface ToolInput {
  tool: string
  sessionID?: string
  callID?: string
}
interface ToolOutput {
  args?: unknown
}
/** The hooks this plugin gives opencode. */
export type Hooks = Record<string, (...args: any[]) => Promise<void>>

export type LockScope = 'call' | 'turn'

export interface FileLockOptions {
  /** Recorded in every lock for humans; locks are owned by opencode's sessionID. */
  agentId?: string
  /** Which store to open when no `cache` is given (default: FILE_LOCK_CACHE_BACKEND, else sled). */
  cacheBackend?: 'sled' | 'redis' | 'hybrid'
  /** A cache from this package to use (the plugin then never closes it). */
  cache?: Cache
  /** Lock lifetime; held locks are renewed while tools run (default: FILE_LOCK_TTL_MS, else 5 min). */
  ttlMs?: number
  /** Relative paths resolve against this folder (default: the project directory). */
  baseDir?: string
  /** `call` (default): held while one tool runs. `turn`: from a session's first write of a file until it goes idle. */
  scope?: LockScope
  /** How long a tool waits for a held file before it is blocked (default: FILE_LOCK_WAIT_MS, else 5000; 0: block at once). */
  waitMs?: number
}

const OPTION_KEYS = ['agentId', 'cacheBackend', 'cache', 'redisCache', 'ttlMs', 'baseDir', 'scope', 'waitMs'] as const
const MAX_WAIT_MS = 86_400_000 // the library's bound: a day

interface Held {
  sessionID: string
  paths: string[]
}

/**
 * Called by opencode with its plugin input (`directory`, `worktree`, ...) and the options from its
 * config; called by a test, the first argument may carry the options itself.
 */
export const FileLockPlugin = async (input: PluginInput & FileLockOptions = {}, options: FileLockOptions = {}): Promise<Hooks> => {
  const loaded = loadLib()
  if ('error' in loaded) return refusingHooks(loaded.error)
  const lib = loaded.lib
  const opts: FileLockOptions & { redisCache?: Cache } = { ...(options ?? {}) }
  for (const k of OPTION_KEYS) if (input?.[k] !== undefined) (opts as any)[k] = input[k]
  const env = process.env
  const debug = flag(env, 'DEBUG_FILE_LOCK_CACHE') ?? flag(env, 'DEBUG_MODE') ?? false
  // ENABLE_LOCK_RENEWAL=false: a lock lives its TTL and no longer, however long the tool runs
  const renewal = flag(env, 'ENABLE_LOCK_RENEWAL') ?? true
  const log = (msg: string): void => {
    if (debug) console.error(`[opencode-file-lock] ${msg}`)
  }
  const agentId = opts.agentId ?? env.FILE_LOCK_AGENT_ID ?? `opencode@${os.hostname()}:${process.pid}`
  const baseDir: string = opts.baseDir ?? input?.directory ?? input?.worktree ?? process.cwd()
  const scope: LockScope = opts.scope ?? (env.FILE_LOCK_SCOPE === 'turn' ? 'turn' : 'call')
  if (scope !== 'call' && scope !== 'turn') throw new Error(`opencode-file-lock: scope must be 'call' or 'turn', got ${JSON.stringify(scope)}`)
  const ttlMs = opts.ttlMs ?? (env.FILE_LOCK_TTL_MS ? Number(env.FILE_LOCK_TTL_MS) : undefined)
  const waitMs = waitOption(opts.waitMs, env.FILE_LOCK_WAIT_MS)
  const given = opts.cache ?? opts.redisCache

  // A lost lock is logged whatever the debug setting: the tool holding it no longer excludes anyone.
  const offLost: (() => void)[] = []
  const watch = (c: Cache) => {
    if (typeof c?.onLost === 'function') offLost.push(c.onLost((ev: LostLockEvent) => lost(ev.sessionId, ev.path, ev.reason, ev.holder)))
    return c
  }
  if (given) watch(given)

  // Opened on first use, and again after a failure: a store that is down at start may come back.
  let opening: Promise<Cache> | undefined
  const cache = (): Promise<Cache> => {
    if (given) return Promise.resolve(given)
    opening ??= lib.openCache(opts.cacheBackend ? { backend: opts.cacheBackend } : {}).then(watch, (e: any) => {
      opening = undefined
      throw e
    })
    return opening
  }

  const calls = new Map<string, Held>() // callID -> locks taken for that tool call (scope call)
  const turns = new Map<string, Set<string>>() // sessionID -> files held until idle (scope turn)
  const renewers = new Map<string, ReturnType<typeof setInterval>>() // callID or session -> timer
  const waits = new Map<string, Set<AbortController>>() // sessionID -> acquires still waiting

  /** Forgets a lock the session no longer holds, so it is neither renewed nor released as if held. */
  const forget = (sessionID: string, path: string): boolean => {
    let found = false
    for (const [callID, held] of calls) {
      if (held.sessionID !== sessionID || !held.paths.includes(path)) continue
      found = true
      held.paths = held.paths.filter((p) => p !== path)
      if (held.paths.length === 0) {
        calls.delete(callID)
        stopRenewing(callID)
      }
    }
    const set = turns.get(sessionID)
    if (set?.delete(path)) {
      found = true
      if (set.size === 0) {
        turns.delete(sessionID)
        stopRenewing(`session:${sessionID}`)
      }
    }
    return found
  }

  /** One line per lost lock: the store's onLost and a failed renewal may both report it. */
  const lost = (sessionID: string, path: string, reason: string, holder?: { agentId: string; sessionId: string } | null) => {
    const now = holder ? `; now held by agent ${holder.agentId} (session ${holder.sessionId})` : ''
    if (!forget(sessionID, path)) return log(`lock on ${path} of session ${sessionID} lost (${reason}) after this plugin let it go`)
    console.error(`[opencode-file-lock] lost the lock on ${path} (session ${sessionID}, reason: ${reason}${now}); no longer renewing it`)
  }

  // While a tool (or a turn) runs longer than a fraction of the TTL, its locks are renewed.
  const renewEvery = Math.max(250, Math.floor((ttlMs ?? 300_000) / 3))
  const startRenewing = (key: string, sessionID: string, paths: () => Iterable<string>) => {
    if (!renewal || renewers.has(key)) return
    let busy = false // a slow store must not stack renewals up
    const timer = setInterval(async () => {
      if (busy) return
      busy = true
      try {
        const c = await cache()
        for (const p of [...paths()]) {
          try {
            await lib.renewLock(p, sessionID, c, ttlMs ? { ttlMs } : undefined)
          } catch (e: any) {
            // ELOST: expired or forced free; renewing never takes it back, so stop trying.
            if (e?.code === 'ELOST') lost(sessionID, p, 'not renewable, expired or released')
            else log(`renewing ${p} for session ${sessionID} failed: ${e?.code ?? ''} ${e?.message ?? e}`)
          }
        }
      } catch (e: any) {
        log(`renewing locks of ${key} failed: ${e?.message ?? e}`)
      } finally {
        busy = false
      }
    }, renewEvery)
    timer.unref?.()
    renewers.set(key, timer)
  }
  const stopRenewing = (key: string) => {
    clearInterval(renewers.get(key))
    renewers.delete(key)
  }

  /** Releases what one tool call took (once: after-hook and failure event may both arrive). */
  const releaseCall = async (callID: string | undefined, why: string) => {
    const held = callID ? calls.get(callID) : undefined
    if (!held || !callID) return
    calls.delete(callID)
    stopRenewing(callID)
    try {
      const c = await cache()
      for (const p of held.paths) await lib.releaseLock(p, held.sessionID, c)
      log(`released ${held.paths.join(', ')} (${why})`)
    } catch (e: any) {
      log(`releasing ${held.paths.join(', ')} failed (${why}): ${e.message}; the locks expire at their TTL`)
    }
  }

  /** Releases everything a session holds (session end, idle in turn scope). */
  const releaseSession = async (sessionID: string | undefined, why: string) => {
    if (!sessionID) return
    stopWaiting(sessionID, why)
    for (const [callID, held] of calls) if (held.sessionID === sessionID) await releaseCall(callID, why)
    turns.delete(sessionID)
    stopRenewing(`session:${sessionID}`)
    try {
      const n = await lib.releaseAllLocks({ sessionId: sessionID }, await cache())
      if (n) log(`released ${n} lock(s) of session ${sessionID} (${why})`)
    } catch (e: any) {
      log(`releasing the locks of session ${sessionID} failed (${why}): ${e.message}; they expire at their TTL`)
    }
  }

  /** A session that ends (or a plugin that is disposed) stops its tools' waits: they fail at once. */
  const stopWaiting = (sessionID: string, why: string) => {
    for (const ac of waits.get(sessionID) ?? []) ac.abort(why)
    waits.delete(sessionID)
  }

  const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`
  const blocked = (tool: string, files: string[], e: any, why?: unknown): Error => {
    const what = files.length > 1 ? `none of its ${files.length} files was changed` : 'the file was not changed'
    if (e?.code === 'ELOCKED') {
      const waited = waitMs > 0 && typeof e.waitedMs === 'number' ? `waited ${seconds(e.waitedMs)} for it, then ` : ''
      return new Error(`${e.message} (opencode-file-lock ${waited}blocked this ${tool} call; ${what}.)`)
    }
    if (e?.code === 'EABORTED') {
      return new Error(`opencode-file-lock stopped waiting for ${files.join(', ')} after ${seconds(e.waitedMs ?? 0)} (${why ?? 'the session ended'}). The ${tool} call was not run and ${what}.`)
    }
    return new Error(
      `opencode-file-lock could not lock ${files.join(', ')} because the lock store is unavailable (${e?.code ?? 'error'}: ${e?.message ?? e}). ` +
        `The ${tool} call was not run and ${what}; retry in a moment.`,
    )
  }

  const hooks: Hooks = {
    'tool.execute.before': async (input: any, output: any) => {
      const files = filesTouchedBy(input?.tool, output?.args)
      if (!files || files.length === 0) return
      const sessionID: string = input.sessionID ?? 'unknown-session'
      let paths: string[]
      const ac = new AbortController()
      const mine = waits.get(sessionID) ?? new Set<AbortController>()
      waits.set(sessionID, mine.add(ac))
      const started = Date.now()
      try {
        paths = await lib.acquireLocks(files, agentId, sessionID, await cache(), { baseDir, ...(ttlMs ? { ttlMs } : {}), ...(waitMs ? { waitMs, signal: ac.signal } : {}) })
      } catch (e: any) {
        log(`refused ${input.tool} of ${files.join(', ')} for session ${sessionID}: ${e.code ?? ''} ${e.message}`)
        throw blocked(input.tool, files, e, ac.signal.reason)
      } finally {
        mine.delete(ac)
        if (mine.size === 0 && waits.get(sessionID) === mine) waits.delete(sessionID)
      }
      const waited = Date.now() - started
      log(`locked ${paths.join(', ')} for ${input.tool} (session ${sessionID}, scope ${scope}${waited >= 50 ? `, after waiting ${waited} ms` : ''})`)
      if (scope === 'turn') {
        // Re-entrant acquire keeps the lock fresh; releaseAllLocks at idle drops every hold.
        const set = turns.get(sessionID) ?? new Set<string>()
        paths.forEach((p) => set.add(p))
        turns.set(sessionID, set)
        startRenewing(`session:${sessionID}`, sessionID, () => turns.get(sessionID) ?? [])
      } else if (input.callID) {
        const callID: string = input.callID
        calls.set(callID, { sessionID, paths })
        startRenewing(callID, sessionID, () => calls.get(callID)?.paths ?? [])
      }
    },

    'tool.execute.after': async (input: any) => {
      if (scope === 'call') await releaseCall(input?.callID, `${input?.tool} finished`)
    },

    event: async ({ event }: { event: any }) => {
      try {
        const props = event?.properties ?? {}
        switch (event?.type) {
          case 'message.part.updated': {
            // opencode skips tool.execute.after when a tool fails: release on the part's final state.
            const part = props.part
            if (part?.type === 'tool' && (part.state?.status === 'error' || part.state?.status === 'completed') && scope === 'call') {
              await releaseCall(part.callID, `${part.tool} ${part.state.status}`)
            }
            break
          }
          case 'session.idle':
            if (scope === 'turn') await releaseSession(props.sessionID, 'session idle')
            break
          case 'session.deleted':
            await releaseSession(props.info?.id ?? props.sessionID, 'session deleted')
            break
          case 'session.error':
            await releaseSession(props.sessionID, 'session error')
            break
        }
      } catch (e: any) {
        log(`event ${event?.type} handling failed: ${e.message}`)
      }
    },

    /** The old TypeScript plugin's key: releases a session's locks, or with no session every lock of this agent. */
    'session.end': async (arg?: any) => {
      const sessionID = arg?.sessionID ?? arg?.sessionId ?? arg?.properties?.sessionID
      if (sessionID) return releaseSession(sessionID, 'session end')
      for (const s of [...waits.keys()]) stopWaiting(s, 'session end')
      for (const key of [...renewers.keys()]) stopRenewing(key)
      calls.clear()
      turns.clear()
      try {
        const n = await lib.releaseAllLocks({ agentId }, await cache())
        log(`released ${n} lock(s) of agent ${agentId} (session end)`)
      } catch (e: any) {
        log(`releasing the locks of agent ${agentId} failed: ${e.message}`)
      }
    },

    dispose: async () => {
      const sessions = new Set([...[...calls.values()].map((h) => h.sessionID), ...turns.keys()])
      for (const s of [...waits.keys()]) stopWaiting(s, 'dispose')
      for (const s of sessions) await releaseSession(s, 'dispose')
      for (const key of [...renewers.keys()]) stopRenewing(key)
      for (const off of offLost.splice(0)) off()
      if (!given && opening) {
        const c = await opening.catch(() => undefined)
        opening = undefined
        await c?.close().catch(() => {})
      }
    },
  }
  return hooks
}

/** A true/false environment variable, or undefined when unset; any other value is an error naming it. */
function flag(env: NodeJS.ProcessEnv, name: string): boolean | undefined {
  const v = env[name]?.trim().toLowerCase()
  if (v === undefined || v === '') return undefined
  if (['1', 'true', 'yes', 'on'].includes(v)) return true
  if (['0', 'false', 'no', 'off'].includes(v)) return false
  throw new Error(`opencode-file-lock: ${name} must be true or false, got ${JSON.stringify(env[name])}`)
}

/** waitMs from the options, else FILE_LOCK_WAIT_MS, else 5000; a bad value is an error naming its source. */
function waitOption(option: unknown, env: string | undefined): number {
  const rule = `a whole number of milliseconds from 0 (block at once) to ${MAX_WAIT_MS}`
  if (option !== undefined) {
    if (typeof option !== 'number' || !Number.isInteger(option) || option < 0 || option > MAX_WAIT_MS) {
      throw new Error(`opencode-file-lock: option waitMs must be ${rule}, got ${JSON.stringify(option)}`)
    }
    return option
  }
  if (env === undefined || env.trim() === '') return 5000
  const n = Number(env.trim())
  if (!/^\d+$/.test(env.trim()) || n > MAX_WAIT_MS) throw new Error(`opencode-file-lock: FILE_LOCK_WAIT_MS must be ${rule}, got ${JSON.stringify(env)}`)
  return n
}
