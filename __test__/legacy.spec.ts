// The wire format shared with the legacy TypeScript caches: key `ns\u241Fkey`, value {"v","x"},
// Redis TTL set with PX. Written raw here with redis-cli, as the old plugin would have.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { acquireLock, getLock, releaseLock, RedisCache } from '../lib/index.js'
import { useRedis } from './helpers/backends'
import { redisCliRaw } from './helpers/tmp'

const SEP = '\u241F'

describe('legacy wire format on Redis', () => {
  const server = useRedis()
  let cache: RedisCache
  let port: number
  beforeAll(async () => {
    port = server().port
    cache = await RedisCache.connect({ port, namespace: 'locks' })
  })
  afterAll(async () => {
    await cache.close()
  })

  it('reads what the old TypeScript cache wrote, with and without TTL', async () => {
    const x = Date.now() + 60_000
    redisCliRaw(port, 'SET', `locks${SEP}file:/a`, JSON.stringify({ v: { sessionId: 'old', agentId: 'ts', timestamp: 1 }, x }), 'PX', '60000')
    redisCliRaw(port, 'SET', `locks${SEP}forever`, JSON.stringify({ v: [1, 2, 3] }))
    redisCliRaw(port, 'SET', `locks${SEP}stale`, JSON.stringify({ v: 'gone', x: Date.now() - 1 }))
    expect(await cache.get('file:/a')).toEqual({ sessionId: 'old', agentId: 'ts', timestamp: 1 })
    expect(await cache.get('forever')).toEqual([1, 2, 3])
    expect(await cache.get('stale')).toBeUndefined()
    const keys: string[] = []
    for await (const [k] of cache.entries()) keys.push(k)
    expect(keys.sort()).toEqual(['file:/a', 'forever'])
  })

  it('writes what the old TypeScript cache reads', async () => {
    await cache.set('mine', { a: 1 }, { ttlMs: 60_000 })
    await cache.set('plain', 'text')
    const raw = JSON.parse(redisCliRaw(port, 'GET', `locks${SEP}mine`))
    expect(raw.v).toEqual({ a: 1 })
    expect(raw.x).toBeGreaterThan(Date.now() + 50_000)
    expect(Number(redisCliRaw(port, 'PTTL', `locks${SEP}mine`))).toBeGreaterThan(50_000)
    expect(redisCliRaw(port, 'GET', `locks${SEP}plain`)).toBe('{"v":"text"}')
    expect(redisCliRaw(port, 'PTTL', `locks${SEP}plain`)).toBe('-1')
  })

  it('honours a lock the old plugin took, and the old plugin can read ours', async () => {
    const x = Date.now() + 60_000
    redisCliRaw(port, 'SET', `locks${SEP}/legacy/held.txt`, JSON.stringify({ v: { sessionId: 'old-session', agentId: 'ts-plugin', timestamp: Date.now() }, x }), 'PX', '60000')
    const err = await acquireLock('/legacy/held.txt', 'new-agent', 'new-session', cache).catch((e) => e)
    expect(err.code).toBe('ELOCKED')
    expect(err.holder).toMatchObject({ sessionId: 'old-session', agentId: 'ts-plugin', expiresAt: x })
    expect(err.message).toMatch(/expires in (59|60)s/)
    // the old owner releases through the new API
    expect(await releaseLock('/legacy/held.txt', 'old-session', cache)).toBe(true)
    expect(redisCliRaw(port, 'EXISTS', `locks${SEP}/legacy/held.txt`)).toBe('0')

    const p = await acquireLock('/legacy/new.txt', 'new-agent', 'new-session', cache, { ttlMs: 30_000 })
    const raw = JSON.parse(redisCliRaw(port, 'GET', `locks${SEP}${p}`))
    // the fields the old plugin looks at, where it looks for them
    expect(raw.v).toMatchObject({ sessionId: 'new-session', agentId: 'new-agent', timestamp: expect.any(Number) })
    expect(raw.x).toBe(raw.v.expiresAt)
    expect(Number(redisCliRaw(port, 'PTTL', `locks${SEP}${p}`))).toBeGreaterThan(25_000)
  })

  it('reports a corrupt record with ECORRUPT and leaves it in place', async () => {
    redisCliRaw(port, 'SET', `locks${SEP}/corrupt.txt`, 'not json at all')
    await expect(cache.get('/corrupt.txt')).rejects.toMatchObject({ code: 'ECORRUPT' })
    await expect(acquireLock('/corrupt.txt', 'a', 's', cache)).rejects.toMatchObject({ code: 'ECORRUPT' })
    await expect(releaseLock('/corrupt.txt', 's', cache)).rejects.toMatchObject({ code: 'ECORRUPT' })
    redisCliRaw(port, 'SET', `locks${SEP}/not-a-lock.txt`, JSON.stringify({ v: [1] }))
    await expect(acquireLock('/not-a-lock.txt', 'a', 's', cache)).rejects.toMatchObject({ code: 'ECORRUPT' })
    expect(await getLock('/not-a-lock.txt', cache)).toBeUndefined()
    expect(redisCliRaw(port, 'GET', `locks${SEP}/corrupt.txt`)).toBe('not json at all')
    expect(redisCliRaw(port, 'GET', `locks${SEP}/not-a-lock.txt`)).toBe('{"v":[1]}')
  })
})
