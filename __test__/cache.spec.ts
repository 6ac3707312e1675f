// The level-cache Cache<T> contract, on every backend.
import { describe, expect, it } from 'vitest'
import { CONTRACT_BACKENDS, cachesOn, useCluster, openOn, useRedis } from './helpers/backends'
import { sleep } from './helpers/tmp'

describe.each(CONTRACT_BACKENDS)('Cache on %s', (backend) => {
  useRedis()
  useCluster(backend === 'cluster')
  const open = cachesOn(backend)

  it('stores and retrieves lock records (from the deployment guide)', async () => {
    const cache = await open({ defaultTtlMs: 5000 })
    const rec = { sessionId: 'test-session', timestamp: Date.now(), agentId: 'test-agent' }
    await cache.set('file:/test/path', rec)
    expect(await cache.get('file:/test/path')).toEqual(rec)
    expect(await cache.has('file:/test/path')).toBe(true)
  })

  it('returns undefined, never null, for a missing key', async () => {
    const cache = await open()
    expect(await cache.get('missing')).toBeUndefined()
    expect(await cache.has('missing')).toBe(false)
  })

  it('round-trips every kind of JSON value', async () => {
    const cache = await open()
    const values = [0, -1.5, 'text', '', true, false, null, [], {}, [1, 'two', { three: [3] }], { 'ünï\u241Fcode': '✓' }, 'x'.repeat(100_000)]
    for (const [i, v] of values.entries()) await cache.set(`k${i}`, v)
    for (const [i, v] of values.entries()) expect(await cache.get(`k${i}`)).toEqual(v)
  })

  it('respects TTL expiration (from the deployment guide)', async () => {
    const cache = await open()
    await cache.set('file:/test/path', { sessionId: 's' }, { ttlMs: 100 })
    expect(await cache.get('file:/test/path')).toBeDefined()
    await sleep(150)
    expect(await cache.get('file:/test/path')).toBeUndefined()
  })

  it('applies defaultTtlMs when set() has no ttlMs', async () => {
    const cache = await open({ defaultTtlMs: 80 })
    await cache.set('a', 1)
    await cache.set('b', 2, { ttlMs: 60_000 })
    await sleep(130)
    expect(await cache.get('a')).toBeUndefined()
    expect(await cache.get('b')).toBe(2)
  })

  it('deletes', async () => {
    const cache = await open()
    await cache.set('a', 1)
    expect(await cache.del('a')).toBe(true)
    expect(await cache.get('a')).toBeUndefined()
    expect(await cache.del('a')).toBe(false)
  })

  it('applies a batch of puts and dels', async () => {
    const cache = await open()
    await cache.set('gone', 1)
    await cache.batch([
      { type: 'put', key: 'a', value: { n: 1 } },
      { type: 'put', key: 'b', value: [2], ttlMs: 50 },
      { type: 'del', key: 'gone' },
    ])
    expect(await cache.get('a')).toEqual({ n: 1 })
    expect(await cache.get('b')).toEqual([2])
    expect(await cache.get('gone')).toBeUndefined()
    await sleep(100)
    expect(await cache.get('b')).toBeUndefined()
  })

  it('lists live entries of its namespace only, across pages, with a limit', async () => {
    const cache = await open()
    const other = cache.withNamespace('other')
    for (let i = 0; i < 600; i++) await cache.set(`k${String(i).padStart(3, '0')}`, i)
    await cache.set('expiring', 'x', { ttlMs: 30 })
    await other.set('k000', 'not mine')
    await sleep(60)
    const seen = new Map<string, unknown>()
    for await (const [k, v] of cache.entries()) seen.set(k, v)
    expect(seen.size).toBe(600)
    expect(seen.get('k599')).toBe(599)
    expect(seen.has('expiring')).toBe(false)
    const limited: string[] = []
    for await (const [k] of cache.entries({ limit: 7 })) limited.push(k)
    expect(limited).toHaveLength(7)
  })

  it('sweeps expired entries and counts them', async () => {
    const cache = await open()
    await cache.set('old1', 1, { ttlMs: 20 })
    await cache.set('old2', 2, { ttlMs: 20 })
    await cache.set('keep', 3)
    await sleep(50)
    // Redis may already have dropped them by PX; sled still holds them
    const swept = await cache.sweepExpired()
    expect(swept).toBeGreaterThanOrEqual(backend === 'sled' ? 2 : 0)
    expect(await cache.get('keep')).toBe(3)
    expect(await cache.sweepExpired()).toBe(0)
  })

  it('keeps namespaces apart and nests them like level-cache', async () => {
    const cache = await open()
    const a = cache.withNamespace('a')
    expect(a.namespace).toBe(`${cache.namespace}/a`)
    await cache.set('k', 'root')
    await a.set('k', 'a')
    expect(await cache.get('k')).toBe('root')
    expect(await a.get('k')).toBe('a')
    expect(await a.clear()).toBe(1)
    expect(await a.get('k')).toBeUndefined()
    expect(await cache.get('k')).toBe('root')
  })

  it('clears its namespace and reports how many entries went', async () => {
    const cache = await open()
    for (let i = 0; i < 10; i++) await cache.set(`k${i}`, i)
    expect(await cache.clear()).toBe(10)
    expect(await cache.get('k1')).toBeUndefined()
  })

  it('reports health', async () => {
    const cache = await open()
    const h = await cache.healthCheck()
    expect(h.healthy).toBe(true)
    if (backend === 'redis') expect(h).toMatchObject({ connected: true, keyCount: expect.any(Number), latencyMs: expect.any(Number) })
    if (backend === 'sled') expect(h).toMatchObject({ records: expect.any(Number), sizeOnDisk: expect.any(Number) })
    if (backend === 'hybrid') expect(h).toMatchObject({ currentBackend: 'redis', redis: { healthy: true }, sled: { healthy: true } })
  })

  it('fails with ECLOSED after close()', async () => {
    const cache = await openOn(backend)
    await cache.set('a', 1)
    await cache.close()
    await expect(cache.get('a')).rejects.toMatchObject({ code: 'ECLOSED' })
  })
})
