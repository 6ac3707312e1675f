// The lock API written in TypeScript on classic-level with level-cache's record format
// ({"v": record, "x": expiry} under `ns\u241Fpath`), made correct with a per-key mutex:
// LevelDB has no compare-and-swap, so read-decide-write must not interleave for one key.
import { ClassicLevel } from 'classic-level'
import { key, LockedError, normalizePath } from './common'

export async function open(folder: string, ns = 'bench') {
  const db = new ClassicLevel<string, string>(folder, { keyEncoding: 'utf8', valueEncoding: 'utf8' })
  await db.open()
  const tails = new Map<string, Promise<unknown>>()
  let token = 0
  /** Runs `fn` after every earlier operation on the same key. */
  const withKey = <T>(k: string, fn: () => Promise<T>): Promise<T> => {
    const prev = tails.get(k) ?? Promise.resolve()
    const next = prev.then(fn, fn)
    const tail = next.catch(() => {})
    tails.set(k, tail)
    tail.then(() => tails.get(k) === tail && tails.delete(k))
    return next
  }
  const live = async (k: string, now: number) => {
    const raw = await db.get(k)
    if (raw === undefined) return undefined
    const env = JSON.parse(raw)
    return typeof env.x === 'number' && env.x <= now ? undefined : env.v
  }
  return {
    acquireLock(file: string, agentId: string, sessionId: string, ttlMs = 300_000): Promise<string> {
      const path = normalizePath(file)
      const k = key(ns, path)
      return withKey(k, async () => {
        const now = Date.now()
        const cur = await live(k, now)
        if (cur && cur.sessionId !== sessionId) throw new LockedError(path, cur)
        const rec = cur ? { ...cur, holdCount: (cur.holdCount ?? 1) + 1, expiresAt: now + ttlMs } : { sessionId, agentId, path, timestamp: now, expiresAt: now + ttlMs, token: ++token, holdCount: 1 }
        await db.put(k, JSON.stringify({ v: rec, x: now + ttlMs }))
        return path
      })
    },
    releaseLock(p: string, sessionId: string): Promise<boolean> {
      const path = normalizePath(p)
      const k = key(ns, path)
      return withKey(k, async () => {
        const now = Date.now()
        const cur = await live(k, now)
        if (!cur || cur.sessionId !== sessionId) return false
        if ((cur.holdCount ?? 1) > 1) await db.put(k, JSON.stringify({ v: { ...cur, holdCount: cur.holdCount - 1 }, x: cur.expiresAt }))
        else await db.del(k)
        return true
      })
    },
    close: () => db.close(),
  }
}
