// Redis deployments beyond a bare server, each started here on loopback: an ACL user, and a
// primary with a replica for WAIT (acknowledged grants).
import { afterEach, describe, expect, it } from 'vitest'
import { acquireLock, openCache, RedisCache, releaseLock } from '../lib/index.js'
import { startRedis, type RedisServer } from './helpers/redis-server'
import { redisCliRaw, sleep } from './helpers/tmp'

const servers: RedisServer[] = []
afterEach(async () => {
  for (const s of servers.splice(0)) {
    try { process.kill(s.pid, 'SIGCONT') } catch {}
    await s.stop()
  }
})
const server = async (extra: string[]) => {
  const s = await startRedis(extra)
  servers.push(s)
  return s
}

describe('Redis topologies', () => {
  it('an ACL user with a password, by options and by REDIS_URL; bad credentials never shown', async () => {
    const s = await server([])
    redisCliRaw(s.port, 'ACL', 'SETUSER', 'agent', 'on', '>agent-secret-1', '~*', '&*', '+@all')
    redisCliRaw(s.port, 'ACL', 'SETUSER', 'default', 'off')
    const c = await RedisCache.connect({ port: s.port, username: 'agent', password: 'agent-secret-1', namespace: 'acl' })
    const p = await acquireLock('/acl/file', 'a', 's', c)
    expect(await releaseLock(p, 's', c)).toBe(true)
    await c.close()
    const viaEnv = await openCache({ env: { FILE_LOCK_CACHE_BACKEND: 'redis', REDIS_URL: `redis://agent:agent-secret-1@127.0.0.1:${s.port}/0` } })
    await viaEnv.set('k', 1)
    expect(await viaEnv.get('k')).toBe(1)
    await viaEnv.close()
    const err = await RedisCache.connect({ port: s.port, username: 'agent', password: 'not-the-secret' }).catch((e) => e)
    expect(err.code).toBe('EBACKEND')
    expect(err.message).toContain('refused the credentials')
    expect(err.message).not.toContain('not-the-secret')
    expect((await RedisCache.connect({ port: s.port }).catch((e) => e)).code).toBe('EBACKEND') // default user is off
  })

  it('WAIT: a grant is acknowledged by the replica, or undone when the replica does not answer', async () => {
    const primary = await server([])
    const replica = await server(['--replicaof', '127.0.0.1', String(primary.port)])
    for (let i = 0; i < 100 && !redisCliRaw(replica.port, 'INFO', 'replication').includes('master_link_status:up'); i++) await sleep(50)
    const c = await RedisCache.connect({ port: primary.port, namespace: 'wait', waitReplicas: 1, waitTimeoutMs: 300 })
    const p = await acquireLock('/wait/file', 'a', 's1', c)
    expect(JSON.parse(redisCliRaw(replica.port, 'GET', `wait\u241F${p}`)).v.sessionId).toBe('s1')
    await releaseLock(p, 's1', c)
    process.kill(replica.pid, 'SIGSTOP')
    const t = performance.now()
    const err = await acquireLock('/wait/other', 'a', 's2', c).catch((e) => e)
    expect(err.code).toBe('EBACKEND')
    expect(err.message).toMatch(/only 0 of 1 replica\(s\) acknowledged it within 300 ms; it was released again/)
    expect(performance.now() - t).toBeLessThan(300 + 500)
    // undone: someone else can take it at once
    const other = await RedisCache.connect({ port: primary.port, namespace: 'wait' })
    expect(await acquireLock('/wait/other', 'b', 's3', other)).toBe('/wait/other')
    await other.close()
    await c.close()
  })
})
