// Lock semantics on every backend: the deployment guide's lock-operation tests and more.
import { describe, expect, it } from 'vitest'
import {
  acquireLock, acquireLocks, getLock, listLocks, normalizePath, releaseAllLocks, releaseLock, renewLock
} from '../lib/index.js'
import { CONTRACT_BACKENDS, cachesOn, useCluster, useRedis } from './helpers/backends'
import { sleep } from './helpers/tmp'

describe.each(CONTRACT_BACKENDS)('locks on %s', (backend) => {
  useRedis()
  useCluster(backend === 'cluster')
  const open = cachesOn(backend)

  it('acquires a lock and stores the record under the normalized path (from the deployment guide)', async () => {
    const cache = await open({ defaultTtlMs: 5000 })
    const before = Date.now()
    const result = await acquireLock('/test/file.txt', 'test-agent', 'test-session', cache)
    expect(result).toBe('/test/file.txt')
    const lock = await cache.get(result)
    expect(lock).toMatchObject({ sessionId: 'test-session', agentId: 'test-agent', path: '/test/file.txt', holdCount: 1 })
    expect(lock.timestamp).toBeGreaterThanOrEqual(before)
    expect(lock.expiresAt).toBeGreaterThanOrEqual(before + 5000)
    expect(lock.token).toBeGreaterThan(0)
  })

  it('refuses a second session with ELOCKED, naming the holder (from the deployment guide)', async () => {
    const cache = await open({ defaultTtlMs: 5000 })
    await acquireLock('/test/file.txt', 'agent-1', 'session-1', cache)
    const err = await acquireLock('/test/file.txt', 'agent-2', 'session-2', cache).catch((e) => e)
    expect(err).toBeInstanceOf(Error)
    expect(err.code).toBe('ELOCKED')
    expect(err.message).toMatch(/^File \/test\/file.txt is locked by another agent/)
    expect(err.message).toContain('agent-1')
    expect(err.message).toContain('session-1')
    expect(err.message).toMatch(/expires in \d+s/)
    expect(err.holder).toMatchObject({ sessionId: 'session-1', agentId: 'agent-1' })
    await expect(acquireLock('/test/file.txt', 'agent-2', 'session-2', cache)).rejects.toThrow('File /test/file.txt is locked by another agent')
  })

  it('lets the same session re-acquire, counting holds (from the deployment guide)', async () => {
    const cache = await open()
    const p = await acquireLock('/test/file.txt', 'agent-1', 's', cache)
    await expect(acquireLock('/test/file.txt', 'agent-1', 's', cache)).resolves.toBe(p)
    expect((await cache.get(p)).holdCount).toBe(2)
    expect(await releaseLock(p, 's', cache)).toBe(true)
    expect(await cache.get(p)).toMatchObject({ holdCount: 1 })
    expect(await releaseLock(p, 's', cache)).toBe(true)
    expect(await cache.get(p)).toBeUndefined()
  })

  it('releases correctly, and never for another session (from the deployment guide)', async () => {
    const cache = await open()
    const p = await acquireLock('/test/file.txt', 'agent-1', 'test-session', cache)
    expect(await cache.get(p)).toBeDefined()
    expect(await releaseLock(p, 'intruder', cache)).toBe(false)
    expect(await cache.get(p)).toBeDefined()
    expect(await releaseLock(p, 'test-session', cache)).toBe(true)
    expect(await cache.get(p)).toBeUndefined()
    expect(await releaseLock(p, 'test-session', cache)).toBe(false)
  })

  it('gives exactly one winner among 50 concurrent sessions, 20 times over', async () => {
    const cache = await open()
    for (let round = 0; round < 20; round++) {
      const file = `/test/concurrent-${round}.txt`
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) => acquireLock(file, `agent-${i}`, `session-${i}`, cache).catch((e) => e)),
      )
      const winners = results.filter((r) => typeof r === 'string')
      const losers = results.filter((r) => r instanceof Error)
      expect(winners).toHaveLength(1)
      expect(losers).toHaveLength(49)
      expect(losers.every((e) => e.code === 'ELOCKED')).toBe(true)
    }
  })

  it('takes an expired lock over, with a larger fencing token', async () => {
    const cache = await open()
    const p = await acquireLock('/test/ttl.txt', 'a', 's1', cache, { ttlMs: 60 })
    const first = await cache.get(p)
    await expect(acquireLock(p, 'b', 's2', cache)).rejects.toMatchObject({ code: 'ELOCKED' })
    await sleep(100)
    await acquireLock(p, 'b', 's2', cache)
    const second = await cache.get(p)
    expect(second.sessionId).toBe('s2')
    expect(second.token).toBeGreaterThan(first.token)
    expect(await releaseLock(p, 's1', cache)).toBe(false)
  })

  it('acquires several files all or nothing', async () => {
    const cache = await open()
    await acquireLock('/w/b.txt', 'other', 'other-session', cache)
    await expect(acquireLocks(['/w/a.txt', '/w/b.txt', '/w/c.txt'], 'me', 'mine', cache)).rejects.toMatchObject({
      code: 'ELOCKED',
      holder: { sessionId: 'other-session' },
    })
    expect(await getLock('/w/a.txt', cache)).toBeUndefined()
    expect(await getLock('/w/c.txt', cache)).toBeUndefined()
    await releaseLock('/w/b.txt', 'other-session', cache)
    const got = await acquireLocks(['/w/a.txt', '/w/./b.txt', '/w/c.txt', '/w/a.txt'], 'me', 'mine', cache)
    expect(got).toEqual(['/w/a.txt', '/w/b.txt', '/w/c.txt'])
    expect((await listLocks(cache, { sessionId: 'mine' })).map((r) => r.path).sort()).toEqual(got)
  })

  it('releases all of a session, or of an agent, whatever the hold count', async () => {
    const cache = await open()
    for (let i = 0; i < 5; i++) await acquireLock(`/s/${i}`, 'agent-x', 'session-x', cache)
    await acquireLock('/s/0', 'agent-x', 'session-x', cache)
    for (let i = 0; i < 3; i++) await acquireLock(`/t/${i}`, 'agent-y', 'session-y', cache)
    expect(await releaseAllLocks({ sessionId: 'session-x' }, cache)).toBe(5)
    expect(await listLocks(cache, { sessionId: 'session-x' })).toEqual([])
    expect(await releaseAllLocks({ agentId: 'agent-y' }, cache)).toBe(3)
    expect(await listLocks(cache)).toEqual([])
    expect(await releaseAllLocks({ sessionId: 'nobody' }, cache)).toBe(0)
  })

  it('renews only the holder, pushing the expiry out', async () => {
    const cache = await open()
    const p = await acquireLock('/r/file', 'a', 's', cache, { ttlMs: 200 })
    const before = (await cache.get(p)).expiresAt
    const renewed = await renewLock(p, 's', cache, { ttlMs: 10_000 })
    expect(renewed.expiresAt).toBeGreaterThan(before + 5000)
    const notHeld = await renewLock(p, 'other', cache).catch((e) => e)
    expect(notHeld.code).toBe('ELOST')
    expect(notHeld.holder).toMatchObject({ sessionId: 's' })
    await sleep(300)
    expect(await getLock(p, cache)).toMatchObject({ sessionId: 's' })
  })

  it('resolves relative paths against baseDir and folds spellings of one file into one lock', async () => {
    const cache = await open()
    const p = await acquireLock('src/../src/app.ts', 'a', 's1', cache, { baseDir: '/proj' })
    expect(p).toBe('/proj/src/app.ts')
    expect(normalizePath('./src/app.ts', '/proj')).toBe(p)
    await expect(acquireLock('/proj/./src/app.ts', 'b', 's2', cache)).rejects.toMatchObject({ code: 'ELOCKED' })
    expect(await getLock('app.ts', cache, { baseDir: '/proj/src' })).toMatchObject({ sessionId: 's1' })
  })
})
