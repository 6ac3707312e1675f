// A Redis that restarts without persistence forgets every lock: the processes that hold locks put
// them back (same record, same token) within a second, a lock another process took meanwhile is
// reported to its old holder (conflict) and never granted twice, new grants wait until the holders
// are back, and fencing tokens never go backward. The hybrid does the same for every lock held
// through it, the ones from before its outage too.
import { afterEach, describe, expect, it, vi } from 'vitest'
import { acquireLock, getLock, HybridCache, RedisCache, releaseLock, type Cache, type LostLockEvent } from '../lib/index.js'
import { startLockProcess, type LockProcess } from './helpers/lock-process'
import { startRedis, type RedisServer } from './helpers/redis-server'
import { fenceKey } from './helpers/slots'
import { redisCliRaw, sleep, tmpDir } from './helpers/tmp'

vi.setConfig({ testTimeout: 40_000 })
const SEP = '\u241F'
const opened: { close(): Promise<unknown> }[] = []
const servers: RedisServer[] = []
const procs: LockProcess[] = []
afterEach(async () => {
  for (const p of procs.splice(0)) await p.kill()
  for (const c of opened.splice(0)) await c.close().catch(() => {})
  for (const s of servers.splice(0)) await s.stop()
})

async function server() {
  const s = await startRedis()
  servers.push(s)
  return s
}

async function redisCache(port: number): Promise<Cache> {
  const c = await RedisCache.connect({ port, namespace: 'restart', commandTimeoutMs: 500, maxRetries: 1, baseDelayMs: 20, maxDelayMs: 100 })
  opened.push(c)
  return c
}

const raw = (port: number, path: string) => redisCliRaw(port, 'GET', `restart${SEP}${path}`)

async function until(what: string, ok: () => boolean | Promise<boolean>, ms = 5000) {
  const t = performance.now()
  while (!(await ok())) {
    if (performance.now() - t > ms) throw new Error(`${what}: not within ${ms} ms`)
    await sleep(10)
  }
  return performance.now() - t
}

describe('Redis restarted without persistence', () => {
  it('every lock this process holds is back within 1 s, the same record and token; others are refused meanwhile', async () => {
    const s = await server()
    const cache = await redisCache(s.port)
    const paths = ['/r/a.txt', '/r/b.txt', '/r/c.txt']
    for (const p of paths) await acquireLock(p, 'agent', 'ses-holder', cache, { ttlMs: 60_000 })
    const before = Object.fromEntries(paths.map((p) => [p, JSON.parse(raw(s.port, p)).v]))
    const other = await redisCache(s.port) // another client, connected before the restart
    await s.kill()
    await s.restart()
    const restartedAt = performance.now()
    expect(raw(s.port, '/r/a.txt')).toBe('') // gone with the restart
    // the other client asks right away: refused while the holders put theirs back, never granted
    let refused: any
    await until('the other client reconnects', async () => {
      refused = await acquireLock('/r/a.txt', 'other', 'ses-other', other).catch((e) => e)
      return typeof refused === 'string' || !/unreachable/.test(refused.message)
    })
    expect(refused.code).toBe('EBACKEND')
    expect(refused.message).toMatch(/lost its data .* grants new locks again in \d+ ms/)
    const back = await until('all back', () => paths.every((p) => raw(s.port, p) !== ''), 3000)
    console.log(`redis restart: the holder's ${paths.length} locks were back ${Math.round(performance.now() - restartedAt)} ms after the restart`)
    expect(back).toBeLessThan(1000)
    for (const p of paths) {
      const now = JSON.parse(raw(s.port, p)).v
      expect(now).toMatchObject({ sessionId: 'ses-holder', token: before[p].token, timestamp: before[p].timestamp, holdCount: 1 })
      expect(now.expiresAt).toBeGreaterThan(Date.now() + 50_000)
    }
    // once the grace is over, the other process is refused because the file is held, as before
    await sleep(2100)
    await expect(acquireLock('/r/a.txt', 'other', 'ses-other', other)).rejects.toMatchObject({ code: 'ELOCKED', holder: { sessionId: 'ses-holder' } })
    for (const p of paths) expect(await releaseLock(p, 'ses-holder', cache)).toBe(true)
  })

  it('a lock another process took meanwhile is reported to its old holder as a conflict, never granted twice', async () => {
    const s = await server()
    const holder = await startLockProcess({ backend: 'redis', redis: { port: s.port, commandTimeoutMs: 500 }, namespace: 'restart' })
    procs.push(holder)
    await holder.call('acquire', '/r/contested.txt', 'ses-a', { ttlMs: 60_000 })
    process.kill(holder.pid, 'SIGSTOP') // it cannot put its lock back in time
    await s.kill()
    await s.restart()
    const other = await redisCache(s.port)
    // the grace for holders runs out, then someone else is granted the (for Redis, free) file
    let got = false
    for (let i = 0; i < 60 && !got; i++) got = await acquireLock('/r/contested.txt', 'b', 'ses-b', other).then(() => true, () => (sleep(100), false))
    expect(got).toBe(true)
    process.kill(holder.pid, 'SIGCONT')
    await until('conflict reported', async () => ((await holder.call('lost')) as LostLockEvent[]).length > 0)
    const [lost] = (await holder.call('lost')) as LostLockEvent[]
    expect(lost).toMatchObject({ reason: 'conflict', path: '/r/contested.txt', sessionId: 'ses-a', holder: { sessionId: 'ses-b' } })
    // the file is ses-b's alone: the old holder's renewal finds it gone
    expect(await getLock('/r/contested.txt', other)).toMatchObject({ sessionId: 'ses-b' })
    await expect(holder.call('renew', '/r/contested.txt', 'ses-a')).rejects.toMatchObject({ code: 'ELOST' })
  })

  it('fencing tokens never go backward: a restart that lost the counter still hands out larger tokens', async () => {
    const s = await server()
    const cache = await redisCache(s.port)
    const tokens: number[] = []
    for (let round = 0; round < 3; round++) {
      await acquireLock('/r/fenced.txt', 'agent', 'ses', cache)
      tokens.push((await getLock('/r/fenced.txt', cache))!.token)
      await releaseLock('/r/fenced.txt', 'ses', cache)
      await s.kill()
      await s.restart()
      expect(redisCliRaw(s.port, 'EXISTS', fenceKey('restart', '/r/fenced.txt'))).toBe('0') // the counter is gone
      await until('grants again', () => acquireLock('/r/warm.txt', 'agent', 'ses', cache).then(() => true, () => false))
      await releaseLock('/r/warm.txt', 'ses', cache)
    }
    expect([...tokens].sort((a, b) => a - b)).toEqual(tokens)
    expect(new Set(tokens).size).toBe(3)
  })

  it('a release in flight when the restart is noticed is not put back (no ghost lock)', async () => {
    // found by the history check: the restart watcher looks only while locks are held, so the
    // first lock held after an unnoticed restart makes it put back what it holds; a lock whose
    // release was already on its way came back as a ghost, and kept coming back re-entered
    const s = await server()
    const cache = await redisCache(s.port)
    for (let round = 0; round < 3; round++) {
      await s.kill()
      await s.restart() // not noticed: nothing is held
      await until('grants again', () => acquireLock(`/r/ghost-${round}.txt`, 'agent', 'ses', cache).then(() => true, () => false))
      // writes wait on the server while the release and the watcher's next look are sent
      redisCliRaw(s.port, 'CLIENT', 'PAUSE', '350', 'WRITE')
      expect(await releaseLock(`/r/ghost-${round}.txt`, 'ses', cache)).toBe(true)
      await sleep(500) // the watcher looks again (every 200 ms)
      expect(await getLock(`/r/ghost-${round}.txt`, cache)).toBeUndefined()
      expect(raw(s.port, `/r/ghost-${round}.txt`)).toBe('')
    }
  })

  it('the hybrid hands back every lock held through it, the ones from before the outage too, with their tokens', async () => {
    const s = await server()
    const hybrid = await HybridCache.open({ redis: { port: s.port, commandTimeoutMs: 300, maxRetries: 1, baseDelayMs: 20, maxDelayMs: 100 }, sledPath: tmpDir('ofl-hy-'), namespace: 'restart', recheckMs: 200 })
    opened.push(hybrid)
    await acquireLock('/r/before.txt', 'agent', 'ses-h', hybrid, { ttlMs: 60_000 })
    const beforeToken = JSON.parse(raw(s.port, '/r/before.txt')).v.token
    await s.kill()
    await acquireLock('/r/during.txt', 'agent', 'ses-h', hybrid, { ttlMs: 60_000 }) // on the fallback
    expect(hybrid.currentBackend()).toBe('sled')
    await s.restart() // empty
    await until('back on redis', async () => (await hybrid.get('poke'), hybrid.currentBackend() === 'redis'), 10_000)
    expect(JSON.parse(raw(s.port, '/r/before.txt')).v).toMatchObject({ sessionId: 'ses-h', token: beforeToken })
    const during = JSON.parse(raw(s.port, '/r/during.txt')).v
    expect(during.sessionId).toBe('ses-h')
    expect(during.token).toBeGreaterThan(beforeToken) // the fallback's token was above Redis's
    expect((await hybrid.healthCheck()).recoveredLocks).toBe(2)
    // and Redis's counter is above both: the next grant there is larger still
    await acquireLock('/r/after.txt', 'agent', 'ses-h', hybrid)
    expect((await getLock('/r/after.txt', hybrid))!.token).toBeGreaterThan(during.token)
  })

  it('the hybrid lets no call slip between the stores while it switches back: releases made meanwhile stay released', async () => {
    const s = await server()
    const hybrid = await HybridCache.open({ redis: { port: s.port, commandTimeoutMs: 300, maxRetries: 1, baseDelayMs: 20, maxDelayMs: 100 }, sledPath: tmpDir('ofl-hy-'), namespace: 'restart', recheckMs: 100 })
    opened.push(hybrid)
    const paths = Array.from({ length: 200 }, (_, i) => `/r/many-${i}.txt`)
    for (const p of paths) await acquireLock(p, 'agent', 'ses-m', hybrid, { ttlMs: 60_000 })
    await s.kill()
    await hybrid.get('poke') // now on the fallback
    await s.restart()
    await sleep(150) // a probe is due: the next calls switch back while these releases run
    const released = await Promise.all(paths.filter((_, i) => i % 2 === 0).map((p) => releaseLock(p, 'ses-m', hybrid)))
    expect(released.every(Boolean)).toBe(true)
    await until('back on redis', async () => (await hybrid.get('poke'), hybrid.currentBackend() === 'redis'), 10_000)
    const inRedis = paths.filter((p) => raw(s.port, p) !== '')
    expect(inRedis).toEqual(paths.filter((_, i) => i % 2 === 1))
  })
})
