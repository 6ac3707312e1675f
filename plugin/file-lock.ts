// opencode plugin: locks every file a write tool is about to change, so two agents never write one
// file at once. A second agent's tool fails with a message naming the holder instead of
// overwriting the first one's work.
//
// Install: put `export { FileLockPlugin } from 'opencode-file-lock/plugin'` in
// `.opencode/plugin/file-lock.ts` (or ~/.config/opencode/plugin/) with the package installed beside it.
// opencode calls every function a plugin module exports, so this module exports exactly one.
import { createRequire } from 'node:module'
import os from 'node:os'
import { filesTouchedBy } from './tools.ts'

// The native addon is CommonJS; createRequire loads it the same way under Bun (opencode) and Node.
const lib = createRequire(import.meta.url)('../lib/index.js') as typeof import('../lib/index.js')
type Cache = import('../lib/index.js').Cache

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
}

const OPTION_KEYS = ['agentId', 'cacheBackend', 'cache', 'redisCache', 'ttlMs', 'baseDir', 'scope'] as const

interface Held {
  sessionID: string
  paths: string[]
}

/**
 * Called by opencode with its plugin input (`directory`, `worktree`, ...) and the options from its
 * config; called by a test, the first argument may carry the options itself.
 */
export const FileLockPlugin = async (input: any = {}, options: any = {}) => {
  const opts: FileLockOptions & { redisCache?: Cache } = { ...(options ?? {}) }
  for (const k of OPTION_KEYS) if (input?.[k] !== undefined) (opts as any)[k] = input[k]
  const env = process.env
  const debug = /^(1|true|yes|on)$/i.test(env.DEBUG_FILE_LOCK_CACHE ?? '')
  const log = (msg: string) => debug && console.error(`[opencode-file-lock] ${msg}`)
  const agentId = opts.agentId ?? env.FILE_LOCK_AGENT_ID ?? `opencode@${os.hostname()}:${process.pid}`
  const baseDir: string = opts.baseDir ?? input?.directory ?? input?.worktree ?? process.cwd()
  const scope: LockScope = opts.scope ?? (env.FILE_LOCK_SCOPE === 'turn' ? 'turn' : 'call')
  if (scope !== 'call' && scope !== 'turn') throw new Error(`opencode-file-lock: scope must be 'call' or 'turn', got ${JSON.stringify(scope)}`)
  const ttlMs = opts.ttlMs ?? (env.FILE_LOCK_TTL_MS ? Number(env.FILE_LOCK_TTL_MS) : undefined)
  const given = opts.cache ?? opts.redisCache

  // Opened on first use, and again after a failure: a store that is down at start may come back.
  let opening: Promise<Cache> | undefined
  const cache = (): Promise<Cache> => {
    if (given) return Promise.resolve(given)
    opening ??= lib.openCache(opts.cacheBackend ? { backend: opts.cacheBackend } : {}).catch((e: any) => {
      opening = undefined
      throw e
    })
    return opening
  }

  const calls = new Map<string, Held>() // callID -> locks taken for that tool call (scope call)
  const turns = new Map<string, Set<string>>() // sessionID -> files held until idle (scope turn)
  const renewers = new Map<string, ReturnType<typeof setInterval>>() // callID or session -> timer

  // While a tool (or a turn) runs longer than a fraction of the TTL, its locks are renewed.
  const renewEvery = Math.max(250, Math.floor((ttlMs ?? 300_000) / 3))
  const startRenewing = (key: string, sessionID: string, paths: () => Iterable<string>) => {
    if (renewers.has(key)) return
    const timer = setInterval(async () => {
      try {
        const c = await cache()
        for (const p of paths()) {
          const ok = await lib.renewLock(p, sessionID, c, ttlMs ? { ttlMs } : undefined)
          if (!ok) log(`lock on ${p} for session ${sessionID} was lost before it could be renewed`)
        }
      } catch (e: any) {
        log(`renewing locks of ${key} failed: ${e.message}`)
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

  const blocked = (tool: string, files: string[], e: any): Error => {
    const what = files.length > 1 ? `none of its ${files.length} files was changed` : 'the file was not changed'
    if (e?.code === 'ELOCKED') {
      return new Error(`${e.message} (opencode-file-lock blocked this ${tool} call; ${what}.)`)
    }
    return new Error(
      `opencode-file-lock could not lock ${files.join(', ')} because the lock store is unavailable (${e?.code ?? 'error'}: ${e?.message ?? e}). ` +
        `The ${tool} call was not run and ${what}; retry in a moment.`,
    )
  }

  const hooks: Record<string, any> = {
    'tool.execute.before': async (input: any, output: any) => {
      const files = filesTouchedBy(input?.tool, output?.args)
      if (!files || files.length === 0) return
      const sessionID: string = input.sessionID ?? 'unknown-session'
      let paths: string[]
      try {
        paths = await lib.acquireLocks(files, agentId, sessionID, await cache(), { baseDir, ...(ttlMs ? { ttlMs } : {}) })
      } catch (e: any) {
        log(`refused ${input.tool} of ${files.join(', ')} for session ${sessionID}: ${e.code ?? ''} ${e.message}`)
        throw blocked(input.tool, files, e)
      }
      log(`locked ${paths.join(', ')} for ${input.tool} (session ${sessionID}, scope ${scope})`)
      if (scope === 'turn') {
        // Re-entrant acquire keeps the lock fresh; releaseAllLocks at idle drops every hold.
        const set = turns.get(sessionID) ?? new Set<string>()
        paths.forEach((p) => set.add(p))
        turns.set(sessionID, set)
        startRenewing(`session:${sessionID}`, sessionID, () => turns.get(sessionID) ?? [])
      } else if (input.callID) {
        calls.set(input.callID, { sessionID, paths })
        startRenewing(input.callID, sessionID, () => paths)
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

    /** The seed plugin's key: releases a session's locks, or with no session every lock of this agent. */
    'session.end': async (arg?: any) => {
      const sessionID = arg?.sessionID ?? arg?.sessionId ?? arg?.properties?.sessionID
      if (sessionID) return releaseSession(sessionID, 'session end')
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
      for (const s of sessions) await releaseSession(s, 'dispose')
      for (const key of [...renewers.keys()]) stopRenewing(key)
      if (!given && opening) {
        const c = await opening.catch(() => undefined)
        opening = undefined
        await c?.close().catch(() => {})
      }
    },
  }
  return hooks
}
