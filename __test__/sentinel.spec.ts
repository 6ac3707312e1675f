// Sentinel, with the deployment example of deploy/redis: one primary (with a password), one replica,
// three sentinels, all on loopback. After the primary is killed and the sentinels promote the
// replica, locks keep working.
import { afterAll, describe, expect, it, vi } from 'vitest'
import { acquireLock, getLock, openCache, RedisCache, releaseLock } from '../lib/index.js'
import { startConfigured, type RedisServer } from './helpers/redis-server'
import { redisCliRaw, sleep } from './helpers/tmp'

vi.setConfig({ testTimeout: 60_000 })
const PASSWORD = 'sentinel-test-secret'
const started: RedisServer[] = []
afterAll(async () => {
  for (const s of started.splice(0)) await s.stop()
})

describe('Redis Sentinel', () => {
  it('follows a failover: locks work again within the sentinel failover time', async () => {
    // the deployment example in deploy/redis, as written, on loopback
    const primary = await startConfigured('primary.conf', { PASSWORD })
    const replica = await startConfigured('replica.conf', { PASSWORD, PRIMARY_HOST: '127.0.0.1', PRIMARY_PORT: primary.port })
    started.push(primary, replica)
    const sentinelValues = { PASSWORD, MASTER: 'mymaster', PRIMARY_HOST: '127.0.0.1', PRIMARY_PORT: primary.port, DOWN_AFTER_MS: 500, FAILOVER_TIMEOUT_MS: 2000 }
    const sentinels = [await startConfigured('sentinel.conf', sentinelValues), await startConfigured('sentinel.conf', sentinelValues), await startConfigured('sentinel.conf', sentinelValues)]
    started.push(...sentinels)
    const cli = (port: number, ...a: string[]) => redisCliRaw(port, '-a', PASSWORD, '--no-auth-warning', ...a)
    for (let i = 0; i < 100 && !cli(replica.port, 'INFO', 'replication').includes('master_link_status:up'); i++) await sleep(50)

    const options = {
      sentinels: sentinels.map((s) => `127.0.0.1:${s.port}`),
      sentinelMaster: 'mymaster',
      password: PASSWORD,
      commandTimeoutMs: 500,
      maxRetries: 1,
      baseDelayMs: 50,
      maxDelayMs: 200,
      namespace: 'sentinel',
    }
    const cache = await RedisCache.connect(options)
    expect((await cache.healthCheck()).sentinelPrimary).toBe(`127.0.0.1:${primary.port}`)
    // WAIT for the replica, so this grant is on it before the primary dies
    const strict = await RedisCache.connect({ ...options, waitReplicas: 1 })
    const held = await acquireLock('/sentinel/held', 'a', 'before', strict)
    await strict.close()

    await primary.kill()
    const t = Date.now()
    let ok = false
    let errors = 0
    while (!ok && Date.now() - t < 30_000) {
      ok = await acquireLock('/sentinel/after', 'a', 'after', cache).then(() => true, () => (errors++, false))
      if (!ok) await sleep(100)
    }
    const recoveredMs = Date.now() - t
    console.log(`sentinel failover: locks work again ${recoveredMs} ms after the primary was killed (${errors} failed attempts)`)
    expect(ok).toBe(true)
    expect(recoveredMs).toBeLessThan(15_000)
    expect((await cache.healthCheck()).sentinelPrimary).toBe(`127.0.0.1:${replica.port}`)
    // the lock granted (and acknowledged by the replica) before the failover survived it
    expect(await getLock(held, cache)).toMatchObject({ sessionId: 'before' })
    await expect(acquireLock('/sentinel/held', 'b', 'intruder', cache)).rejects.toMatchObject({ code: 'ELOCKED' })
    expect(await releaseLock(held, 'before', cache)).toBe(true)
    await cache.close()

    // the same through the environment
    const viaEnv = await openCache({ env: { FILE_LOCK_CACHE_BACKEND: 'redis', REDIS_SENTINELS: sentinels.map((s) => `127.0.0.1:${s.port}`).join(','), REDIS_SENTINEL_MASTER: 'mymaster', REDIS_PASSWORD: PASSWORD } })
    expect((await viaEnv.healthCheck()).sentinelPrimary).toBe(`127.0.0.1:${replica.port}`)
    await viaEnv.close()
  })
})
