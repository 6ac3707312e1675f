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
    // a TTL past what a timer can wait (2^31 ms): holders renew on timers
    await einval(() => L.acquireLock('/f', 'a', 's', cache, { ttlMs: 2 ** 31 }))
    await expect(L.acquireLock('/f', 'a', 's', cache, { ttlMs: 2 ** 31 - 1 })).resolves.toBe('/f')
    await L.releaseLock('/f', 's', cache)
    // more paths than one acquire takes: refused before anything is written
    const many = Array.from({ length: 8000 }, (_, i) => `/many/f-${i}`)
    await einval(() => L.acquireLocks(many, 'a', 's', cache))
    expect(await L.listLocks(cache)).toEqual([])
    await expect(L.acquireLocks(many.slice(0, 1000), 'a', 's', cache)).resolves.toHaveLength(1000)
    expect(await L.releaseAllLocks({ sessionId: 's' }, cache)).toBe(1000)
    // the stores' own key prefix is no namespace
    expect(() => cache.withNamespace('\u241Eofl:sess:x')).toThrow(expect.objectContaining({ code: 'EINVAL' }))
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

describe('factories: options they do not know, and secrets in what they say', () => {
  it('an option a factory does not know is EINVAL naming it', async () => {
    const e1: any = await L.RedisCache.connect({ clusterNodes: ['redis://127.0.0.1:7000'] } as never).catch((e) => e)
    expect(e1).toMatchObject({ code: 'EINVAL', message: expect.stringContaining('"clusterNodes"') })
    const e2: any = await L.SledCache.open({ path: tmpDir(), pathh: 'x' } as never).catch((e) => e)
    expect(e2).toMatchObject({ code: 'EINVAL', message: expect.stringContaining('"pathh"') })
    const e3: any = await L.HybridCache.open({ redis: { port: 1, tls: false, hostt: 'x' }, sledPath: tmpDir() } as never).catch((e) => e)
    expect(e3).toMatchObject({ code: 'EINVAL', message: expect.stringContaining('"hostt"') })
    const e4: any = await L.openCache({ backnd: 'redis' } as never).catch((e) => e)
    expect(e4).toMatchObject({ code: 'EINVAL', message: expect.stringContaining('"backnd"') })
  })

  it('a password with / @ # % : in it never shows, whatever fails, in the library, the CLI and migrate', async () => {
    const { spawnSync } = await import('node:child_process')
    const { freePort } = await import('./helpers/redis-server')
    const port = await freePort()
    const bin = require('node:path').resolve(__dirname, '../bin/opencode-file-lock.js')
    for (const pw of ['s3cr/et', 'p@ss:w0rd', 'h#sh%20ed', 'a/b@c#d%e:f']) {
      const url = `redis://user:${pw}@127.0.0.1:${port}/0`
      const said: string[] = []
      said.push(String(((await L.RedisCache.connect({ url, connectTimeoutMs: 300 }).catch((e) => e)) as Error).message))
      said.push(String(((await L.RedisCache.connect({ password: pw, port, connectTimeoutMs: 300 }).catch((e) => e)) as Error).message))
      said.push(String(((await L.openCache({ env: { FILE_LOCK_CACHE_BACKEND: 'redis', REDIS_URL: url, REDIS_CONNECT_TIMEOUT: '300' } }).catch((e) => e)) as Error).message))
      for (const args of [['status', '--backend', 'redis', '--redis-url', url], ['migrate', '--from', url, '--to', `sled:${tmpDir()}`], ['migrate', '--from', `sled:${tmpDir()}`, '--to', url.replace('redis://', 'mongo://')]]) {
        const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, REDIS_CONNECT_TIMEOUT: '300' }, timeout: 20_000 })
        expect(r.status, r.stderr).not.toBe(0)
        said.push(r.stdout + r.stderr)
      }
      for (const text of said) {
        expect(text.length, 'something was said').toBeGreaterThan(10)
        expect(text, pw).not.toContain(pw)
        for (const piece of pw.split(/[/@#%:]/).filter((x) => x.length >= 3)) expect(text, `${piece} of ${pw}`).not.toContain(piece)
      }
    }
  })
})
