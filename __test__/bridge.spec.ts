// The completion bridge for Redis lock calls: many calls settled per wake-up, errors intact,
// the process kept alive while calls are out and free to exit when they are not.
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { acquireLock, listLocks, RedisCache, releaseLock } from '../lib/index.js'
import { useRedis } from './helpers/backends'

const LIB = path.resolve(__dirname, '../lib/index.js')

describe('completion bridge', () => {
  const server = useRedis()
  let cache: RedisCache
  beforeAll(async () => {
    cache = await RedisCache.connect({ port: server().port, namespace: 'bridge' })
  })
  afterAll(async () => {
    await cache.close()
  })

  it('settles 2,000 concurrent calls, each with its own result', async () => {
    const files = Array.from({ length: 2000 }, (_, i) => `/bridge/f${i}`)
    const got = await Promise.all(files.map((f, i) => acquireLock(f, 'a', `s${i % 7}`, cache)))
    expect(got).toEqual(files)
    const released = await Promise.all(files.map((f, i) => releaseLock(f, `s${i % 7}`, cache)))
    expect(released.every((r) => r === true)).toBe(true)
    expect(await listLocks(cache)).toEqual([])
  })

  it('carries errors with their code and holder, mixed with successes', async () => {
    await acquireLock('/bridge/held', 'owner', 'owner-session', cache)
    const results = await Promise.allSettled([acquireLock('/bridge/free', 'b', 'x', cache), acquireLock('/bridge/held', 'b', 'x', cache), releaseLock('/bridge/held', 'x', cache)])
    expect(results[0]).toMatchObject({ status: 'fulfilled', value: '/bridge/free' })
    expect(results[1]).toMatchObject({ status: 'rejected', reason: { code: 'ELOCKED', holder: { sessionId: 'owner-session' } } })
    expect(results[2]).toMatchObject({ status: 'fulfilled', value: false })
    await expect(acquireLock('/bridge/x', 'a', 's', cache, { ttlMs: -1 })).rejects.toMatchObject({ code: 'EINVAL' })
  })

  it('keeps a process alive while a call is out, and lets it exit when none is', () => {
    const script = `
      const { RedisCache, acquireLock } = require(${JSON.stringify(LIB)})
      RedisCache.connect({ port: ${server().port}, namespace: 'alive' }).then(async (c) => {
        const p = await acquireLock('/alive/file', 'a', 's-' + process.pid, c)
        console.log('acquired ' + p)
        await c.close()
      })`
    const t = Date.now()
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10_000 })
    expect(r.stdout.trim()).toBe('acquired /alive/file')
    expect(r.status).toBe(0)
    expect(Date.now() - t).toBeLessThan(5000)
  })
})
