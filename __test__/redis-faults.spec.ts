// Redis going away and coming back: errors are EBACKEND within the configured timeout, nothing
// is thrown into the void, and the same cache works again after a restart.
import { afterEach, describe, expect, it } from 'vitest'
import { acquireLock, HybridCache, RedisCache, releaseLock } from '../lib/index.js'
import { freePort, startRedis, type RedisServer } from './helpers/redis-server'
import { sleep, tmpDir } from './helpers/tmp'

const servers: RedisServer[] = []
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop()
})
async function server(extra: string[] = []) {
  const s = await startRedis(extra)
  servers.push(s)
  return s
}

async function timed<T>(p: Promise<T>): Promise<{ ms: number; value?: T; error?: any }> {
  const t = performance.now()
  try {
    const value = await p
    return { ms: performance.now() - t, value }
  } catch (error) {
    return { ms: performance.now() - t, error }
  }
}

describe('Redis faults', () => {
  it('killed mid-test: EBACKEND within the command timeout, then works again after restart', async () => {
    const s = await server()
    const cache = await RedisCache.connect({ port: s.port, commandTimeoutMs: 500, maxRetries: 2, baseDelayMs: 20, maxDelayMs: 100 })
    const p = await acquireLock('/faults/a.txt', 'agent', 'session', cache)
    await s.kill()
    for (let i = 0; i < 3; i++) {
      const r = await timed(acquireLock(`/faults/b${i}.txt`, 'agent', 'session', cache))
      expect(r.error?.code, String(r.error?.message)).toBe('EBACKEND')
      expect(r.ms).toBeLessThan(500 + 300)
    }
    const g = await timed(cache.get('anything'))
    expect(g.error?.code).toBe('EBACKEND')
    await s.restart()
    // the manager reconnects by itself; allow it a few attempts
    let ok = false
    for (let i = 0; i < 40 && !ok; i++) {
      ok = await acquireLock('/faults/after.txt', 'agent', 'session', cache).then(() => true, () => false)
      if (!ok) await sleep(100)
    }
    expect(ok).toBe(true)
    // the restarted server kept nothing (no persistence), but this process put back the lock it
    // held: it is still its to release
    expect(await releaseLock(p, 'session', cache)).toBe(true)
    await cache.close()
  })

  it('unreachable at connect: EBACKEND quickly; never-answering: ETIMEDOUT within connectTimeoutMs', async () => {
    const port = await freePort()
    const r = await timed(RedisCache.connect({ port, connectTimeoutMs: 1000 }))
    expect(r.error?.code).toBe('EBACKEND')
    expect(r.ms).toBeLessThan(1000)
    expect(r.error.message).toContain(`127.0.0.1:${port}`)
    // a listener that never speaks Redis
    const net = await import('node:net')
    const silent = net.createServer(() => {})
    await new Promise<void>((res) => silent.listen(0, '127.0.0.1', () => res()))
    const sport = (silent.address() as import('node:net').AddressInfo).port
    const t = await timed(RedisCache.connect({ port: sport, connectTimeoutMs: 300 }))
    silent.close()
    expect(t.error?.code).toBe('ETIMEDOUT')
    expect(t.ms).toBeLessThan(300 + 500)
  })

  it('SIGSTOPped server: ETIMEDOUT within the command timeout', async () => {
    const s = await server()
    const cache = await RedisCache.connect({ port: s.port, commandTimeoutMs: 300 })
    process.kill(s.pid, 'SIGSTOP')
    try {
      const r = await timed(cache.set('k', 1))
      expect(r.error?.code).toBe('ETIMEDOUT')
      expect(r.ms).toBeLessThan(300 + 300)
    } finally {
      process.kill(s.pid, 'SIGCONT')
    }
    await cache.close()
  })

  it('wrong password: EBACKEND that never shows the password', async () => {
    const s = await server(['--requirepass', 'right-secret-123'])
    for (const opts of [{ port: s.port, password: 'wrong-secret-456' }, { url: `redis://:wrong-secret-456@127.0.0.1:${s.port}/0` }]) {
      const err = await RedisCache.connect(opts).catch((e) => e)
      expect(err.code).toBe('EBACKEND')
      expect(err.message).not.toContain('wrong-secret-456')
      expect(err.message).not.toContain('right-secret-123')
      expect(err.stack).not.toContain('wrong-secret-456')
    }
    const ok = await RedisCache.connect({ port: s.port, password: 'right-secret-123' })
    await ok.set('k', 1)
    expect(await ok.get('k')).toBe(1)
    await ok.close()
  })

  it('hybrid: fails over to sled when Redis dies, keeps those writes, returns to Redis after restart', async () => {
    const s = await server()
    const cache = await HybridCache.open({
      redis: { port: s.port, commandTimeoutMs: 300, maxRetries: 1, baseDelayMs: 20, maxDelayMs: 50 },
      sledPath: tmpDir('ofl-hybrid-'),
      recheckMs: 200,
    })
    expect(cache.currentBackend()).toBe('redis')
    await acquireLock('/h/on-redis.txt', 'a', 's1', cache)
    await s.kill()
    const r = await timed(acquireLock('/h/during-outage.txt', 'a', 's1', cache))
    expect(r.error).toBeUndefined()
    expect(r.ms).toBeLessThan(300 + 1000)
    expect(cache.currentBackend()).toBe('sled')
    await expect(acquireLock('/h/during-outage.txt', 'b', 's2', cache)).rejects.toMatchObject({ code: 'ELOCKED' })
    expect((await cache.healthCheck()).currentBackend).toBe('sled')
    await s.restart()
    let back = false
    for (let i = 0; i < 40 && !back; i++) {
      await sleep(100)
      await cache.get('probe').catch(() => undefined)
      back = cache.currentBackend() === 'redis'
    }
    expect(back).toBe(true)
    await cache.close()
  })

  it('hybrid in fail-closed mode refuses while Redis is down', async () => {
    const s = await server()
    const cache = await HybridCache.open({
      redis: { port: s.port, commandTimeoutMs: 300, maxRetries: 1, baseDelayMs: 20, maxDelayMs: 50 },
      sledPath: tmpDir('ofl-hybrid-'),
      failMode: 'closed',
    })
    await s.kill()
    const err = await acquireLock('/h/closed.txt', 'a', 's', cache).catch((e) => e)
    expect(err.code).toBe('EBACKEND')
    expect(err.message).toContain("failMode is 'closed'")
    await cache.close()
  })
})
