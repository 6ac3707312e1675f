// Bad input of every argument gets a FileLockError with code EINVAL, and changes nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import * as L from '../lib/index.js'
import { BACKENDS, openOn, useRedis } from './helpers/backends'
import { tmpDir } from './helpers/tmp'

const BAD_STRINGS: unknown[] = [undefined, null, 42, {}, [], '', true]
const BAD_PATHS: unknown[] = [...BAD_STRINGS, 'a\0b', '/' + 'x'.repeat(5000)]
const BAD_MS: unknown[] = [0, -5, 1.5, NaN, Infinity, '100', {}]

async function einval(p: () => unknown) {
  const err = await (async () => p())().then(
    () => undefined,
    (e) => e,
  )
  expect(err, 'expected a rejection').toBeInstanceOf(Error)
  expect(err.code, String(err.message)).toBe('EINVAL')
  expect(err.name).toBe('FileLockError')
}

describe.each(BACKENDS)('bad input on %s', (backend) => {
  useRedis()
  let cache: L.Cache
  beforeAll(async () => {
    cache = await openOn(backend)
  })
  afterAll(async () => {
    await cache.close()
  })

  it('acquireLock: every argument', async () => {
    for (const p of BAD_PATHS) await einval(() => L.acquireLock(p as string, 'a', 's', cache))
    for (const a of [...BAD_STRINGS, 'a\0', 'x'.repeat(2000)]) await einval(() => L.acquireLock('/f', a as string, 's', cache))
    for (const s of [...BAD_STRINGS, 's\0']) await einval(() => L.acquireLock('/f', 'a', s as string, cache))
    for (const c of [undefined, null, {}, 'cache', { get() {} }]) await einval(() => L.acquireLock('/f', 'a', 's', c as L.Cache))
    for (const t of BAD_MS) await einval(() => L.acquireLock('/f', 'a', 's', cache, { ttlMs: t as number }))
    await einval(() => L.acquireLock('/f', 'a', 's', cache, { ttlMs: 400 * 24 * 3600 * 1000 }))
    for (const b of ['relative/base', 'a\0b', 42]) await einval(() => L.acquireLock('f', 'a', 's', cache, { baseDir: b as string }))
    await einval(() => L.acquireLock('/f', 'a', 's', cache, 'opts' as never))
    expect(await L.listLocks(cache)).toEqual([])
  })

  it('acquireLocks, releaseLock, releaseAllLocks, renewLock, getLock, listLocks', async () => {
    for (const ps of [undefined, [], 'a', [42], ['/ok', '']]) await einval(() => L.acquireLocks(ps as string[], 'a', 's', cache))
    for (const p of BAD_PATHS) await einval(() => L.releaseLock(p as string, 's', cache))
    for (const s of BAD_STRINGS) await einval(() => L.releaseLock('/f', s as string, cache))
    await einval(() => L.releaseLock('/f', 's', undefined as never))
    for (const f of [undefined, {}, { sessionId: '' }, { agentId: 5 }, 'x']) await einval(() => L.releaseAllLocks(f as never, cache))
    for (const p of BAD_PATHS) await einval(() => L.renewLock(p as string, 's', cache))
    for (const t of BAD_MS) await einval(() => L.renewLock('/f', 's', cache, { ttlMs: t as number }))
    for (const p of BAD_PATHS) await einval(() => L.getLock(p as string, cache))
    await einval(() => L.listLocks(cache, { sessionId: 7 } as never))
    for (const p of BAD_PATHS) await einval(() => L.normalizePath(p as string))
  })

  it('cache methods: keys, values, ttl, batch ops, namespaces, limits', async () => {
    for (const k of [...BAD_STRINGS, 'a\0b', 'k'.repeat(9000)]) {
      await einval(() => cache.get(k as string))
      await einval(() => cache.set(k as string, 1))
      await einval(() => cache.del(k as string))
    }
    const circular: Record<string, unknown> = {}
    circular.self = circular
    for (const v of [undefined, () => 1, Symbol('s'), 10n, circular]) await einval(() => cache.set('k', v))
    for (const t of BAD_MS) await einval(() => cache.set('k', 1, { ttlMs: t as number }))
    for (const ops of [undefined, 'x', [null], [{ type: 'upsert', key: 'k' }], [{ type: 'put', key: 'k' }], [{ type: 'del' }]]) {
      await einval(() => cache.batch(ops as never))
    }
    // a bad op anywhere in a batch: nothing of it is written
    await einval(() => cache.batch([{ type: 'put', key: 'first', value: 1 }, { type: 'put', key: '', value: 2 }]))
    expect(await cache.get('first')).toBeUndefined()
    await einval(() => cache.withNamespace('a\u241Fb'))
    await einval(() => cache.withNamespace(5 as never))
    await einval(async () => {
      for await (const _ of cache.entries({ limit: -1 })) void _
    })
  })
})

describe('bad factory options', () => {
  it('SledCache.open, RedisCache.connect, HybridCache.open, openCache', async () => {
    for (const o of [undefined, {}, { path: '' }, { path: 5 }, { path: 'a\0b' }, { path: tmpDir(), defaultTtlMs: -1 }, { path: tmpDir(), namespace: 'a\u241F' }]) {
      await einval(() => L.SledCache.open(o as never))
    }
    for (const o of [{ port: 'x' }, { port: 70000 }, { host: '' }, { url: 'http://h' }, { commandTimeoutMs: 0 }, { tls: 'yes' }, { database: -1 }]) {
      await einval(() => L.RedisCache.connect(o as never))
    }
    await einval(() => L.HybridCache.open({ redis: {}, sledPath: '' } as never))
    await einval(() => L.HybridCache.open({ redis: {}, sledPath: tmpDir(), failMode: 'sometimes' } as never))
    await einval(() => L.openCache({ backend: 'mongo' } as never))
    await einval(() => L.openCache({ env: { FILE_LOCK_CACHE_BACKEND: 'mongo' } }))
    const err = await L.openCache({ env: { FILE_LOCK_TTL_MS: 'soon' } }).catch((e) => e)
    expect(err.code).toBe('EINVAL')
    expect(err.message).toContain('FILE_LOCK_TTL_MS')
  })
})
