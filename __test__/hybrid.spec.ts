// Hybrid failover and recovery against a real redis-server that the tests kill, stop and restart.
import { afterEach, describe, expect, it } from 'vitest'
import { acquireLock, getLock, HybridCache, RedisCache, releaseLock } from '../lib/index.js'
import { startRedis, type RedisServer } from './helpers/redis-server'
import { sleep, tmpDir } from './helpers/tmp'

const servers: RedisServer[] = []
const closers: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const c of closers.splice(0)) await c().catch(() => {})
  for (const s of servers.splice(0)) {
    try { process.kill(s.pid, 'SIGCONT') } catch {}
    await s.stop()
  }
})

async function setup(opts: { recheckMs?: number; onLost?: (e: any) => void } = {}) {
  const server = await startRedis()
  servers.push(server)
  const hybrid = await HybridCache.open({
    redis: { port: server.port, commandTimeoutMs: 300, maxRetries: 1, baseDelayMs: 20, maxDelayMs: 50 },
    sledPath: tmpDir('ofl-hybrid-'),
    namespace: 'locks',
    recheckMs: opts.recheckMs ?? 200,
    onLost: opts.onLost,
  })
  closers.push(() => hybrid.close())
  const direct = () => RedisCache.connect({ port: server.port, namespace: 'locks' }).then((c) => (closers.push(() => c.close()), c))
  return { server, hybrid, direct }
}

/** Makes calls until the hybrid serves from Redis again (each call may trigger a probe). */
async function backOnRedis(h: HybridCache) {
  for (let i = 0; i < 50 && h.currentBackend() !== 'redis'; i++) {
    await sleep(100)
    await h.get('probe').catch(() => undefined)
  }
  expect(h.currentBackend()).toBe('redis')
}

describe('hybrid failover', () => {
  it('keeps the locks Redis granted before it died, within a bounded failover time', async () => {
    const { server, hybrid } = await setup()
    await acquireLock('/h/held.txt', 'a', 'session-a', hybrid)
    await server.kill()
    const t = performance.now()
    const err = await acquireLock('/h/held.txt', 'b', 'session-b', hybrid).catch((e) => e)
    const failoverMs = performance.now() - t
    expect(hybrid.currentBackend()).toBe('sled')
    expect(err.code).toBe('ELOCKED')
    expect(err.holder.sessionId).toBe('session-a')
    console.log(`hybrid failover: the first call after Redis died was served from sled after ${failoverMs.toFixed(0)} ms (commandTimeoutMs 300)`)
    expect(failoverMs).toBeLessThan(300 + 1000)
    expect(await releaseLock('/h/held.txt', 'session-a', hybrid)).toBe(true)
  })

  it('writes the locks granted during the outage back to Redis when it returns', async () => {
    const { server, hybrid, direct } = await setup()
    await hybrid.get('warm')
    await server.kill()
    await acquireLock('/h/outage.txt', 'a', 'session-a', hybrid)
    await hybrid.set('note', { written: 'during outage' })
    await server.restart()
    const t = performance.now()
    await backOnRedis(hybrid)
    console.log(`hybrid recovery: serving from Redis again ${(performance.now() - t).toFixed(0)} ms after it restarted (recheckMs 200), outage writes written back`)
    const redis = await direct()
    expect(await getLock('/h/outage.txt', redis)).toMatchObject({ sessionId: 'session-a' })
    expect(await redis.get('note')).toEqual({ written: 'during outage' })
    await expect(acquireLock('/h/outage.txt', 'b', 'session-b', redis)).rejects.toMatchObject({ code: 'ELOCKED' })
    expect((await hybrid.healthCheck()).recoveredLocks).toBe(1)
  })

  it('deletes in Redis what its holder released during the outage (server stopped, not wiped)', async () => {
    const { server, hybrid, direct } = await setup()
    await acquireLock('/h/released.txt', 'a', 'session-a', hybrid)
    process.kill(server.pid, 'SIGSTOP')
    expect(await releaseLock('/h/released.txt', 'session-a', hybrid)).toBe(true)
    expect(hybrid.currentBackend()).toBe('sled')
    process.kill(server.pid, 'SIGCONT')
    await backOnRedis(hybrid)
    const redis = await direct()
    expect(await getLock('/h/released.txt', redis)).toBeUndefined()
  })

  it('reports a conflict when another process took the file in Redis meanwhile: Redis wins, the loser is told', async () => {
    const lost: any[] = []
    const { server, hybrid, direct } = await setup({ recheckMs: 1500, onLost: (e) => lost.push(e) })
    await hybrid.get('warm')
    await server.kill()
    await acquireLock('/h/contested.txt', 'a', 'session-a', hybrid) // granted on the fallback
    await server.restart()
    const redis = await direct()
    await acquireLock('/h/contested.txt', 'c', 'session-c', redis) // someone else, straight to Redis
    await backOnRedis(hybrid)
    for (let i = 0; i < 20 && lost.length === 0; i++) await sleep(50)
    expect(lost).toHaveLength(1)
    expect(lost[0]).toMatchObject({ reason: 'conflict', path: '/h/contested.txt', lost: { sessionId: 'session-a' }, holder: { sessionId: 'session-c' } })
    expect(await getLock('/h/contested.txt', hybrid)).toMatchObject({ sessionId: 'session-c' })
    expect((await hybrid.healthCheck()).recoveryConflicts).toBe(1)
    // never both: session-a's renew finds the lock gone
    expect(await getLock('/h/contested.txt', redis)).toMatchObject({ sessionId: 'session-c' })
  })
})
