// The opencode hooks: which call locks what, when, and for how long. Locks are owned by the root
// of the calling session's task tree (so a subagent may write what its parent holds); the record
// in held.ts says which holds each call and each turn took, and releases undo exactly those.
import type { Cache, Freshness, LockRecord, LostLockEvent } from '../../lib/index.js'
import { agentTools, shown, type Zod } from './agent-tools.ts'
import { changes, snapshot, type Snapshot } from './bash.ts'
import { HeldLocks, type Hold } from './held.ts'
import * as say from './messages.ts'
import type { Settings } from './options.ts'
import { Sessions, type SessionClient } from './sessions.ts'
import { Views, type BashViews } from './stale.ts'
import { readsOf, writesOf } from './tools.ts'

type Lib = typeof import('../../lib/index.js')

/** The hooks this plugin gives opencode (and, under `tool`, the agents' lock tools). */
export type Hooks = Record<string, any>

interface ToolInput {
  tool: string
  sessionID?: string
  callID?: string
}

/** How long a write waits before the person at the keyboard is told that it waits. */
const TELL_WAITING_AFTER_MS = 250

export function lockingHooks(lib: Lib, s: Settings, client: SessionClient | undefined, z?: Zod): Hooks {
  const log = (msg: string): void => {
    if (s.debug) console.error(`[opencode-file-lock] ${msg}`)
  }
  const sessions = new Sessions(client)
  const held = new HeldLocks()
  const waits = new Map<string, Set<AbortController>>() // session -> acquires still waiting
  const bashBefore = new Map<string, Snapshot>() // callID -> the other sessions' files before a bash call
  const bashViews = new Map<string, BashViews>() // callID -> the files its tree saw, before a bash call
  const reading = new Map<string, { path: string; mark: string | null }[]>() // callID -> a read's files before it ran
  // callID -> what a write call locked, for recording what it wrote (and what it overwrote, with FILE_LOCK_STALE=warn)
  const writing = new Map<string, { paths: string[]; session: string; owner: string; overwrote: Freshness[] }>()
  const toast = (t: { title: string; message: string; variant: 'warning' | 'error' }) => {
    if (!s.toast) return
    try {
      // called as a method (the SDK needs its `this`); a toast never fails a call
      Promise.resolve(client?.tui?.showToast?.({ body: { ...t, duration: 6000 } })).catch((e: any) => log(`toast failed: ${e?.message ?? e}`))
    } catch (e: any) {
      log(`toast failed: ${e?.message ?? e}`)
    }
  }
  /** A holder as opencode knows it, else as the lock record names it. */
  const who = async (rec: { sessionId?: string; agentId?: string }) => (rec.sessionId && (await sessions.describe(rec.sessionId))) || `agent ${rec.agentId ?? 'unknown'} (session ${rec.sessionId ?? 'unknown'})`

  // A lost lock is said whatever the debug setting: the tool holding it no longer excludes anyone.
  const lost = (owner: string, path: string, reason: string, holder?: { agentId?: string; sessionId?: string } | null) => {
    if (!held.forget(owner, path)) return log(`lock on ${path} of session ${owner} lost (${reason}) after this plugin let it go`)
    console.error(say.lostNotice(path, owner, reason, holder))
    toast(say.toasts.lost(path, reason))
  }

  // Opened on first use, and again after a failure: a store that is down at start may come back.
  const offLost: (() => void)[] = []
  const watch = (c: Cache) => {
    if (typeof c?.onLost === 'function') offLost.push(c.onLost((ev: LostLockEvent) => lost(ev.sessionId, ev.path, ev.reason, ev.holder)))
    return c
  }
  if (s.cache) watch(s.cache)
  let opening: Promise<Cache> | undefined
  const cache = (): Promise<Cache> => {
    if (s.cache) return Promise.resolve(s.cache)
    opening ??= lib.openCache(s.cacheBackend ? { backend: s.cacheBackend } : {}).then(watch, (e: any) => {
      opening = undefined
      throw e
    })
    return opening
  }

  // While anything is held, one timer renews it all every third of the TTL.
  let renewer: ReturnType<typeof setInterval> | undefined
  let renewing = false
  const renewEvery = Math.max(250, Math.floor((s.ttlMs ?? 300_000) / 3))
  const keepRenewing = () => {
    if (!s.renewal || renewer) return
    renewer = setInterval(async () => {
      if (held.size === 0) {
        clearInterval(renewer)
        renewer = undefined
        return
      }
      if (renewing) return // a slow store must not stack renewals up
      renewing = true
      try {
        const c = await cache()
        for (const { owner, path } of held.held()) {
          try {
            await lib.renewLock(path, owner, c, s.ttlMs ? { ttlMs: s.ttlMs } : undefined)
          } catch (e: any) {
            // ELOST: expired or forced free; renewing never takes it back, so stop trying.
            if (e?.code === 'ELOST') lost(owner, path, 'not renewable, expired or released', e.holder)
            else log(`renewing ${path} for session ${owner} failed: ${e?.code ?? ''} ${e?.message ?? e}`)
          }
        }
      } catch (e: any) {
        log(`renewing failed: ${e?.message ?? e}`)
      } finally {
        renewing = false
      }
    }, renewEvery)
    renewer.unref?.()
  }
  const stopRenewing = () => {
    clearInterval(renewer)
    renewer = undefined
  }

  /** Undoes these holds, every one of them whatever happens to the others. */
  const release = async (holds: Hold[], why: string) => {
    if (holds.length === 0) return
    let c: Cache
    try {
      c = await cache()
    } catch (e) {
      for (const h of holds) console.error(say.releaseFailed(h.path, h.owner, why, e))
      return
    }
    const failed: string[] = []
    for (const h of holds) {
      try {
        if (!(await lib.releaseLock(h.path, h.owner, c))) log(`${h.path} was no longer held by session ${h.owner} when ${why}`)
      } catch (e) {
        failed.push(h.path)
        console.error(say.releaseFailed(h.path, h.owner, why, e))
      }
    }
    log(`released ${holds.filter((h) => !failed.includes(h.path)).map((h) => h.path).join(', ') || 'nothing'} (${why})`)
  }

  /** A session that ends (or a plugin that is disposed) stops its tools' waits: they fail at once. */
  const stopWaiting = (session: string, why: string) => {
    for (const ac of waits.get(session) ?? []) ac.abort(why)
    waits.delete(session)
  }

  /** Everything a session took; for a root that ends, whatever else its tree still holds too. */
  const endSession = async (session: string | undefined, why: string, ends: boolean) => {
    if (!session) return
    if (ends) stopWaiting(session, why)
    await release(held.endSession(session), why)
    if (!ends || (await sessions.root(session)) !== session) return
    try {
      const n = await lib.releaseAllLocks({ sessionId: session }, await cache())
      if (n) log(`released ${n} more lock(s) of session ${session}'s tree (${why})`)
    } catch (e: any) {
      console.error(`[opencode-file-lock] releasing the locks of session ${session} failed (${why}): ${e?.message ?? e}; they expire at their TTL`)
    }
  }

  /** Tells the person at the keyboard that a write waits, and for whom. */
  const tellWaiting = async (c: Cache, files: string[]) => {
    for (const f of files) {
      const rec = (await lib.getLock(f, c, { baseDir: s.baseDir }).catch(() => undefined)) as LockRecord | undefined
      if (rec) return toast(say.toasts.waiting(files, await who(rec), s.waitMs))
    }
  }

  /** A deadlock was broken by letting go of some of `owner`'s locks: they are no longer held here. */
  const letGoForDeadlock = (owner: string, e: any) => {
    for (const p of e.released ?? []) held.forget(owner, p)
    toast(say.toasts.deadlock(e.released ?? []))
  }

  /** Takes `paths` (files, or folders ending in /) for the rest of `session`'s turn, as `owner`. */
  const claim = async (session: string, owner: string, paths: string[], signal?: AbortSignal, reason?: string): Promise<string[]> => {
    const ac = new AbortController()
    const stop = () => ac.abort(signal?.reason ?? 'the tool call was aborted')
    signal?.addEventListener('abort', stop, { once: true })
    try {
      const c = await cache()
      const got = await lib.acquireLocks(paths, s.agentId, owner, c, { baseDir: s.baseDir, kind: 'opencode', ...(await holderInfo(owner)), ...(reason ? { reason } : {}), ...(s.ttlMs ? { ttlMs: s.ttlMs } : {}), ...(s.waitMs ? { waitMs: s.waitMs, signal: ac.signal } : {}) })
      held.took('turn', undefined, session, owner, got)
      keepRenewing()
      log(`claimed ${got.join(', ')} for session ${session} until its turn ends`)
      return got
    } catch (e: any) {
      if (e?.code === 'ELOCKED' && e.holder) toast(say.toasts.refused(paths, await who(e.holder)))
      if (e?.code === 'EDEADLK') letGoForDeadlock(owner, e)
      throw await say.blocked('claim_files', paths, e, s.waitMs, ac.signal.reason, (id) => sessions.describe(id))
    } finally {
      signal?.removeEventListener('abort', stop)
    }
  }

  const unclaim = async (owner: string, paths: string[]): Promise<string[]> => {
    const normalized = paths.map((p) => lib.normalizePath(p, s.baseDir))
    const holds = held.takeOwned(owner, normalized)
    await release(holds, 'released with claim_files')
    return [...new Set(holds.map((h) => h.path))]
  }

  /** While others wait for what `session`'s task tree holds, its tool results say so (one line per waiter). */
  const tellHolder = async (session: string | undefined, output: { output?: string } | undefined) => {
    if (!session || typeof output?.output !== 'string') return
    try {
      const owner = await sessions.root(session)
      if (!held.owners().has(owner)) return
      const waiting = (await lib.listWaiters(await cache())).filter((w) => w.blockedBy.sessionId === owner && w.sessionId !== owner)
      if (waiting.length === 0) return
      output.output += say.othersWait(waiting.map((w) => ({ agentId: w.agentId, sessionId: w.sessionId, paths: w.paths.map((p) => shown(p, s.baseDir)) })))
      log(`told session ${session} that ${waiting.map((w) => w.sessionId).join(', ')} wait(s) for what it holds`)
    } catch (e: any) {
      log(`could not look for waiters: ${e?.message ?? e}`)
    }
  }

  const views = new Views(lib, cache, s, log)
  const shownHere = (p: string) => shown(p, s.baseDir)
  /** Undoes the holds one acquire of `owner`'s just took (a write refused after its locks were granted). */
  const giveBack = async (paths: string[], owner: string, session: string) => release(paths.map((path) => ({ session, owner, path })), 'the write was refused')
  /** The description of a session that lock records and versions carry. */
  const holderInfo = async (session: string) => {
    const i = await sessions.info(session)
    return { title: i.title, agentName: i.agent }
  }

  const tools = z ? agentTools(z, { lib, cache, baseDir: s.baseDir, root: (id) => sessions.root(id), describe: (id) => sessions.describe(id), claim, unclaim, views }) : undefined

  return {
    ...(tools ? { tool: tools } : {}),

    'tool.execute.before': async (input: ToolInput, output: { args?: unknown }) => {
      const tool = String(input?.tool)
      const session = input?.sessionID ?? 'unknown-session'
      if (tool === 'bash') {
        // what other sessions hold, and which files this tree saw are still as it saw them, before the command runs
        if (!input?.callID) return
        try {
          const owner = await sessions.root(session)
          const others = (await lib.listLocks(await cache())).filter((l) => l.sessionId !== owner)
          bashBefore.set(input.callID, snapshot(others))
          if (views.on) bashViews.set(input.callID, await views.beforeCommand(owner))
        } catch (e: any) {
          log(`could not note the held files before bash: ${e?.message ?? e}`)
        }
        return
      }
      const reads = readsOf(tool, output?.args)
      if (reads !== null) {
        if (input?.callID && reads.length) reading.set(input.callID, views.marks(reads))
        return
      }
      const writes = writesOf(tool, output?.args, s.tools)
      if (writes === null) return
      const files = writes.map((w) => w.path)
      if (files.length === 0) throw say.noPaths(tool, output?.args)
      const owner = await sessions.root(session)
      const ac = new AbortController()
      const mine = waits.get(session) ?? new Set<AbortController>()
      waits.set(session, mine.add(ac))
      const started = Date.now()
      let paths: string[]
      let telling: ReturnType<typeof setTimeout> | undefined
      try {
        const c = await cache()
        if (s.waitMs > 0 && s.toast) telling = setTimeout(() => void tellWaiting(c, files), TELL_WAITING_AFTER_MS)
        paths = await lib.acquireLocks(files, s.agentId, owner, c, { baseDir: s.baseDir, kind: 'opencode', ...(await holderInfo(owner)), ...(s.ttlMs ? { ttlMs: s.ttlMs } : {}), ...(s.waitMs ? { waitMs: s.waitMs, signal: ac.signal } : {}) })
      } catch (e: any) {
        log(`refused ${tool} of ${files.join(', ')} for session ${session}: ${e?.code ?? ''} ${e?.message}`)
        if (e?.code === 'ELOCKED' && e.holder) toast(say.toasts.refused(files, await who(e.holder)))
        if (e?.code === 'EDEADLK') letGoForDeadlock(owner, e)
        throw await say.blocked(tool, files, e, s.waitMs, ac.signal.reason, (id) => sessions.describe(id))
      } finally {
        clearTimeout(telling)
        mine.delete(ac)
        if (mine.size === 0 && waits.get(session) === mine) waits.delete(session)
      }
      const waited = Date.now() - started
      const as = owner === session ? '' : ` as its task tree's root ${owner}`
      log(`locked ${paths.join(', ')} for ${tool} (session ${session}${as}, scope ${s.scope}${waited >= 50 ? `, after waiting ${waited} ms` : ''})`)
      // under the locks (after any wait): is every file as this tree last saw it?
      let stale: Freshness[] = []
      try {
        stale = await views.check(paths, writes, owner)
      } catch (e: any) {
        if (s.stale === 'refuse') {
          await giveBack(paths, owner, session)
          throw say.cannotCheck(tool, files, e)
        }
        log(`could not check ${files.join(', ')} for changes since session ${session} read them (${e?.code ?? ''} ${e?.message ?? e}); FILE_LOCK_STALE=warn lets the write go ahead`)
      }
      if (stale.length > 0) {
        const who = stale.map((f) => (f.lastWrite && f.byLastWrite ? say.writerOf(f.lastWrite) : 'outside any agent')).join(', ')
        log(`${s.stale === 'refuse' ? 'refused' : 'warned about'} ${tool} of ${stale.map((f) => `${f.path} (${f.status})`).join(', ')} for session ${session}: changed since its task saw it`)
        toast(say.toasts.stale(stale.map((f) => shownHere(f.path)), who, s.stale === 'refuse'))
        if (s.stale === 'refuse') {
          await giveBack(paths, owner, session)
          throw say.staleRefusal(tool, stale, files, shownHere)
        }
      }
      held.took(s.scope, input.callID, session, owner, paths)
      if (input.callID) writing.set(input.callID, { paths, session, owner, overwrote: stale })
      keepRenewing()
    },

    'tool.execute.after': async (input: ToolInput, output: { output?: string }) => {
      const read = input?.callID ? reading.get(input.callID) : undefined
      if (read) {
        reading.delete(input.callID!)
        await views.read(read, await sessions.root(input.sessionID ?? 'unknown-session'))
      }
      const wrote = input?.callID ? writing.get(input.callID) : undefined
      if (wrote) {
        // before the locks go: the next holder compares the disk with this
        writing.delete(input.callID!)
        await views.wrote(wrote.paths, { sessionId: wrote.session, tree: wrote.owner, ...(await holderInfo(wrote.session)) })
        if (wrote.overwrote.length && output && typeof output.output === 'string') output.output += say.staleWarning(wrote.overwrote, shownHere)
      }
      if (input?.tool === 'bash') {
        const before = input.callID ? bashBefore.get(input.callID) : undefined
        const seen = input.callID ? bashViews.get(input.callID) : undefined
        if (input.callID) {
          bashBefore.delete(input.callID)
          bashViews.delete(input.callID)
        }
        if (seen?.length) {
          const adopted = await views.afterCommand(seen, await sessions.root(input.sessionID ?? 'unknown-session'))
          if (adopted.length) log(`session ${input.sessionID}'s bash command changed ${adopted.join(', ')}: its view follows`)
        }
        const found = before ? changes(before) : []
        if (found.length > 0) {
          const described = await Promise.all(found.map(async (f) => ({ path: f.lock.path, how: f.how, who: await who(f.lock) })))
          if (output && typeof output.output === 'string') output.output += say.bashChanged(described)
          console.error(`[opencode-file-lock] a bash command of session ${input.sessionID} changed ${described.map((d) => `${d.path} (${d.how}, held by ${d.who})`).join(', ')}`)
          toast(say.toasts.bash(described.map((d) => d.path)))
        }
      } else if (s.scope === 'call') {
        await release(held.endCall(input?.callID), `${input?.tool} finished`)
      }
      // after the call's own locks went: what is still held is what others may be waiting for
      await tellHolder(input?.sessionID, output)
    },

    event: async ({ event }: { event: any }) => {
      try {
        const props = event?.properties ?? {}
        switch (event?.type) {
          case 'session.created':
          case 'session.updated':
            sessions.saw(props.info)
            break
          case 'message.part.updated': {
            // opencode skips tool.execute.after when a tool fails: release on the part's final state.
            const part = props.part
            if (part?.type !== 'tool' || (part.state?.status !== 'error' && part.state?.status !== 'completed')) break
            if (part.state.status === 'error') {
              // a failed call: nothing to record (the after hook never comes)
              for (const m of [bashBefore, bashViews, reading, writing]) m.delete(part.callID)
            }
            if (s.scope === 'call') await release(held.endCall(part.callID), `${part.tool} ${part.state.status}`)
            break
          }
          case 'session.idle':
            // turn scope: the turn is over; call scope: anything a call left (no callID, no end event)
            await endSession(props.sessionID, 'session idle', false)
            break
          case 'session.deleted':
            await endSession(props.info?.id ?? props.sessionID, 'session deleted', true)
            break
          case 'session.error':
            await endSession(props.sessionID, 'session error', true)
            break
        }
      } catch (e: any) {
        log(`event ${event?.type} handling failed: ${e?.message ?? e}`)
      }
    },

    /** The old TypeScript plugin's key: releases a session's locks, or with no session every lock of this agent. */
    'session.end': async (arg?: any) => {
      const session = arg?.sessionID ?? arg?.sessionId ?? arg?.properties?.sessionID
      if (session) return endSession(session, 'session end', true)
      for (const k of [...waits.keys()]) stopWaiting(k, 'session end')
      stopRenewing()
      held.endAll()
      try {
        const n = await lib.releaseAllLocks({ agentId: s.agentId }, await cache())
        log(`released ${n} lock(s) of agent ${s.agentId} (session end)`)
      } catch (e: any) {
        console.error(`[opencode-file-lock] releasing the locks of agent ${s.agentId} failed: ${e?.message ?? e}; they expire at their TTL`)
      }
    },

    dispose: async () => {
      for (const k of [...waits.keys()]) stopWaiting(k, 'dispose')
      await release(held.endAll(), 'dispose')
      stopRenewing()
      for (const off of offLost.splice(0)) off()
      if (!s.cache && opening) {
        const c = await opening.catch(() => undefined)
        opening = undefined
        await c?.close().catch(() => {})
      }
    },
  }
}
