// sled allows one process per folder, so the first process to open it serves it to the others
// (see shared.spec.ts for the details): a second process opens it too, as a client, and takes it
// over once the first has closed it. Data survives close and reopen.
import { execFileSync } from 'node:child_process'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { acquireLock, openCache, SledCache } from '../lib/index.js'
import { tmpDir } from './helpers/tmp'

const LIB = path.resolve(__dirname, '../lib/index.js')

function openInChild(folder: string): { ok: boolean; role?: string; code?: string; message?: string } {
  const script = `
    const { SledCache } = require(${JSON.stringify(LIB)})
    SledCache.open({ path: ${JSON.stringify(folder)} })
      .then(async (c) => { const h = await c.healthCheck(); await c.close(); console.log(JSON.stringify({ ok: true, role: h.shared.role })) })
      .catch((e) => console.log(JSON.stringify({ ok: false, code: e.code, message: e.message })))`
  return JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }))
}

describe('sled folder ownership', () => {
  it('a second process opens the folder as a client of the first, and serves it once the first has closed it', async () => {
    const folder = tmpDir('ofl-owned-')
    const cache = await SledCache.open({ path: folder })
    expect(openInChild(folder)).toEqual({ ok: true, role: 'client' })
    await cache.close()
    expect(openInChild(folder)).toEqual({ ok: true, role: 'server' })
  })

  it('shares one store between caches of one process and keeps data across reopen', async () => {
    const folder = tmpDir('ofl-shared-')
    const a = await SledCache.open({ path: folder, namespace: 'locks' })
    const b = await SledCache.open({ path: folder, namespace: 'locks' })
    const p = await acquireLock('/shared/file', 'agent', 'session-a', a)
    await expect(acquireLock(p, 'agent', 'session-b', b)).rejects.toMatchObject({ code: 'ELOCKED' })
    await a.close()
    expect(await b.get(p)).toMatchObject({ sessionId: 'session-a' })
    await b.close()
    const c = await openCache({ backend: 'sled', path: folder, env: {} })
    expect(await c.get(p)).toMatchObject({ sessionId: 'session-a' })
    await c.close()
  })
})

describe('openCache from the environment', () => {
  it('defaults to sled with namespace locks and a 5-minute TTL', async () => {
    const folder = tmpDir('ofl-env-')
    const c = await openCache({ env: { FILE_LOCK_PATH: folder } })
    expect(c).toBeInstanceOf(SledCache)
    expect(c.namespace).toBe('locks')
    const p = await acquireLock('/env/file', 'a', 's', c)
    const rec = await c.get(p)
    expect(rec.expiresAt - rec.timestamp).toBe(300_000)
    await c.close()
  })

  it('reads FILE_LOCK_TTL_MS and FILE_LOCK_NAMESPACE; leveldb means sled', async () => {
    const c = await openCache({ env: { FILE_LOCK_CACHE_BACKEND: 'leveldb', FILE_LOCK_PATH: tmpDir(), FILE_LOCK_TTL_MS: '1234', FILE_LOCK_NAMESPACE: 'team' } })
    expect(c.namespace).toBe('team')
    const p = await acquireLock('/env/file', 'a', 's', c)
    const rec = await c.get(p)
    expect(rec.expiresAt - rec.timestamp).toBe(1234)
    await c.close()
  })

  it('names the bad variable and never shows a password', async () => {
    const err = await openCache({ env: { FILE_LOCK_CACHE_BACKEND: 'redis', REDIS_PORT: 'six', REDIS_PASSWORD: 'topsecret' } }).catch((e) => e)
    expect(err.code).toBe('EINVAL')
    expect(err.message).toContain('REDIS_PORT')
    expect(err.message).not.toContain('topsecret')
    const err2 = await openCache({ env: { FILE_LOCK_CACHE_BACKEND: 'redis', REDIS_URL: 'http://user:topsecret@h' } }).catch((e) => e)
    expect(err2.message).toContain('REDIS_URL')
    expect(err2.message).not.toContain('topsecret')
  })
})
