// An acquire whose answer does not come in time (a paused server, CLIENT PAUSE) still runs on the
// server when it resumes. It must never become a ghost: a lock nobody renews or releases that
// blocks the file for its whole TTL, or a hold a re-entry leaked. Either the caller learns it holds
// the lock, or the lock is taken back.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { acquireLock, getLock, RedisCache, releaseLock, type Cache } from '../lib/index.js'
import { useRedis } from './helpers/backends'
import { redisCliRaw, sleep } from './helpers/tmp'

vi.setConfig({ testTimeout: 30_000 })
const SEP = '\u241F'

describe('acquires whose answer is lost', () => {
  const redis = useRedis()
  let cache: Cache
  let observer: Cache
  beforeAll(async () => {
    cache = await RedisCache.connect({ port: redis().port, namespace: 'ghost', commandTimeoutMs: 200, maxRetries: 1, baseDelayMs: 20, maxDelayMs: 100 })
    observer = await RedisCache.connect({ port: redis().port, namespace: 'ghost' })
    // the scripts are loaded: a late answer is the script's, not a NOSCRIPT round
    await releaseLock(await acquireLock('/g/warm.txt', 'a', 'ses-0', cache), 'ses-0', cache)
  })
  afterAll(async () => {
    await cache?.close()
    await observer?.close()
  })
  const pause = (ms: number) => redisCliRaw(redis().port, 'CLIENT', 'PAUSE', String(ms), 'ALL')
  const holds = (path: string) => {
    const raw = redisCliRaw(redis().port, 'GET', `ghost${SEP}${path}`)
    return raw ? JSON.parse(raw).v.holdCount : 0
  }

  it('a pause longer than the command timeout but shorter than the resolution: the caller is told it holds the lock', async () => {
    pause(700)
    const t = Date.now()
    const path = await acquireLock('/g/short.txt', 'a', 'ses-1', cache, { ttlMs: 60_000 })
    expect(Date.now() - t).toBeGreaterThan(500) // it waited out the pause instead of failing at 200 ms
    expect(path).toBe('/g/short.txt')
    expect(holds('/g/short.txt')).toBe(1)
    expect(await releaseLock(path, 'ses-1', cache)).toBe(true)
    expect(holds('/g/short.txt')).toBe(0)
  })

  it('a pause longer than the resolution: ETIMEDOUT, and the lock the server granted late is taken back at once, not left for its TTL', async () => {
    pause(3000)
    const e = await acquireLock('/g/long.txt', 'a', 'ses-2', cache, { ttlMs: 60_000 }).catch((e) => e)
    expect(e.code).toBe('ETIMEDOUT')
    expect(e.message).toContain('it is taken back as soon as Redis answers, so no lock is left behind')
    await sleep(3000 - 2200 + 800) // the pause ends; the late grant runs, then the take-back
    expect(holds('/g/long.txt')).toBe(0)
    await expect(acquireLock('/g/long.txt', 'b', 'ses-other', observer)).resolves.toBe('/g/long.txt')
    await releaseLock('/g/long.txt', 'ses-other', observer)
  })

  it('a re-entry whose answer is lost leaks no hold: one release per acquire the caller was told of frees the file', async () => {
    const path = await acquireLock('/g/reentry.txt', 'a', 'ses-3', cache, { ttlMs: 60_000 })
    pause(3000)
    const e = await acquireLock(path, 'a', 'ses-3', cache, { ttlMs: 60_000 }).catch((e) => e)
    expect(e.code).toBe('ETIMEDOUT')
    await sleep(1600)
    expect(holds(path)).toBe(1) // the late re-entry was taken back
    expect(await releaseLock(path, 'ses-3', cache)).toBe(true)
    expect(await getLock(path, observer)).toBeUndefined()
  })

  it('a connection dropped mid-acquire: the attempt is cancelled on the server, tried once more on a new connection, and the caller holds the lock once', async () => {
    redisCliRaw(redis().port, 'CLIENT', 'PAUSE', '1000', 'WRITE') // scripts wait, CLIENT KILL does not
    const p = acquireLock('/g/dropped.txt', 'a', 'ses-4', cache, { ttlMs: 60_000 }).then((v) => ({ v }), (e) => ({ e }))
    await sleep(100)
    redisCliRaw(redis().port, 'CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes')
    const r: any = await p
    expect(r.e).toBeUndefined()
    expect(r.v).toBe('/g/dropped.txt')
    expect(holds('/g/dropped.txt')).toBe(1) // the first attempt never ran: one hold, not two
    expect(await releaseLock('/g/dropped.txt', 'ses-4', cache)).toBe(true)
    expect(holds('/g/dropped.txt')).toBe(0)
    // and the same cache goes on working
    const path = await acquireLock('/g/dropped.txt', 'a', 'ses-4', cache)
    expect(await releaseLock(path, 'ses-4', cache)).toBe(true)
  })
})
