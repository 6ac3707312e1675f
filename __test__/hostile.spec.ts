// Defects an adversarial review of the stores reproduced, one test each (each failed before its
// fix): fencing tokens sent backward by a crafted record or restore; one file locked twice under
// two names; secrets in messages; other agents' escape sequences reaching a terminal.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { acquireLock, listLocks, releaseLock, SledCache } from '../lib/index.js'
import { BACKENDS, cachesOn, useRedis } from './helpers/backends'
import { tmpDir } from './helpers/tmp'

const BIN = path.resolve(__dirname, '../bin/opencode-file-lock.js')
const SEP = '\u241F'
const cli = (args: string[], env: Record<string, string> = {}) => {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env } })
  return { code: r.status, out: r.stdout + r.stderr }
}

describe.each(BACKENDS)('fencing tokens never go backward, whatever is written (%s)', (backend) => {
  useRedis()
  const open = cachesOn(backend)

  it('a record or batch whose token would wrap the counter is refused, and later grants stay above every token written', async () => {
    const cache = await open()
    const rec = (token: number) => ({ sessionId: 'crafted', agentId: 'a', path: '/t/x', timestamp: Date.now(), expiresAt: Date.now() + 60_000, token, holdCount: 1 })
    await expect(cache.set('/t/x', rec(2 ** 64))).rejects.toMatchObject({ code: 'EINVAL', message: expect.stringContaining('fencing tokens would go backward') })
    await expect(cache.batch([{ type: 'put', key: '/t/y', value: rec(2 ** 60) }])).rejects.toMatchObject({ code: 'EINVAL' })
    expect(await cache.get('/t/x')).toBeUndefined()
    expect(await cache.get('/t/y')).toBeUndefined()
    // the largest token a store accepts, on a record that expires at once: the next grant of the path goes above it
    await cache.set('/t/max', { ...rec(Number.MAX_SAFE_INTEGER), path: '/t/max', expiresAt: Date.now() + 50 }, { ttlMs: 50 })
    await new Promise((r) => setTimeout(r, 100))
    await acquireLock('/t/max', 'a', 's', cache)
    const next = (await listLocks(cache)).find((l) => l.path === '/t/max')!
    expect(next.sessionId).toBe('s')
    expect(next.token).toBeGreaterThanOrEqual(Number.MAX_SAFE_INTEGER)
  })
})

describe('restore', () => {
  it('a backup holding a token beyond the largest refuses that entry and writes the others', () => {
    const dir = tmpDir('ofl-restore-')
    const file = path.join(dir, 'crafted.json')
    const lock = (token: number, p: string) => ({ key: `locks${SEP}${p}`, value: { sessionId: 's', agentId: 'a', path: p, timestamp: 1, expiresAt: Date.now() + 600_000, token, holdCount: 1 }, ttlMs: 600_000 })
    fs.writeFileSync(file, JSON.stringify({ format: 'opencode-file-lock-backup', version: 1, entries: [lock(2 ** 64, '/r/bad'), lock(5, '/r/good')] }))
    const sled = tmpDir('ofl-restored-')
    const r = cli(['restore', '--from', file, '--json'], { FILE_LOCK_PATH: sled })
    expect(r.code).not.toBe(0)
    expect(r.out).toContain('fencing tokens would go backward')
    const c = SledCache.open({ path: sled, namespace: 'locks' })
    return c.then(async (cache) => {
      expect(await cache.get('/r/bad')).toBeUndefined()
      expect(await cache.get('/r/good')).toMatchObject({ token: 5 })
      await cache.close()
    })
  })
})

describe('secrets: a configured password never shows, whatever it holds and however the URL is wrong', () => {
  // a space, a tab, a quote, an @; and a short one
  const LONG = 'p w"\tq@z'
  const SHORT = 'ab'
  const spellings = (pw: string) => [pw, encodeURIComponent(pw), pw.replace(/ /g, '%20')]
  const urls = (pw: string) => [`reddis://u:${pw}@127.0.0.1:6379`, `redis:/u:${pw}@127.0.0.1:6379`, `redis://u:${pw}@127.0.0.1:99999`, `redis://u:${encodeURIComponent(pw)}@127.0.0.1:99999/0`]

  it.each([LONG, SHORT])('password %j: not in the errors of openCache, RedisCache.connect or the CLI', async (pw) => {
    const { openCache, RedisCache } = await import('../lib/index.js')
    for (const url of urls(pw)) {
      const said: string[] = []
      await openCache({ env: { FILE_LOCK_CACHE_BACKEND: 'redis', REDIS_URL: url, REDIS_CONNECT_TIMEOUT: '300' } }).then((c) => c.close(), (e) => said.push(e.message))
      await RedisCache.connect({ url, connectTimeoutMs: 300 }).then((c) => c.close(), (e) => said.push(e.message))
      const r = cli(['status'], { FILE_LOCK_CACHE_BACKEND: 'redis', REDIS_URL: url, REDIS_CONNECT_TIMEOUT: '300' })
      said.push(r.out)
      expect(said.filter(Boolean).length, url).toBeGreaterThan(0)
      for (const text of said) {
        for (const s of spellings(pw)) {
          if (pw.length >= 4) expect(text, url).not.toContain(s)
          else expect(text, url).not.toMatch(new RegExp(`(^|[^A-Za-z0-9])${s}([^A-Za-z0-9]|$)`))
        }
        expect(text).not.toContain(`u:${pw}`)
      }
    }
  })
})

describe('REDIS_PASSWORD and REDIS_USERNAME apply to a REDIS_URL without credentials', () => {
  it('a single server that requires a password is reached with REDIS_PASSWORD; the URL’s own password wins when it has one', async () => {
    const { startRedis } = await import('./helpers/redis-server')
    const { openCache } = await import('../lib/index.js')
    const server = await startRedis(['--requirepass', 'right-secret-123'])
    try {
      const url = `redis://127.0.0.1:${server.port}`
      const c = await openCache({ env: { FILE_LOCK_CACHE_BACKEND: 'redis', REDIS_URL: url, REDIS_PASSWORD: 'right-secret-123', FILE_LOCK_NAMESPACE: 'pw' } })
      await acquireLock('/pw/a', 'a', 's', c)
      expect((await listLocks(c)).map((l) => l.path)).toEqual(['/pw/a'])
      await c.close()
      const wrong = await openCache({ env: { FILE_LOCK_CACHE_BACKEND: 'redis', REDIS_URL: `redis://:not-it@127.0.0.1:${server.port}`, REDIS_PASSWORD: 'right-secret-123', REDIS_CONNECT_TIMEOUT: '500' } }).then(
        async (x) => (await x.close(), 'connected'),
        (e) => e.message as string,
      )
      expect(wrong).toMatch(/password|AUTH/i)
      expect(wrong).not.toContain('not-it')
      expect(wrong).not.toContain('right-secret-123')
    } finally {
      await server.stop()
    }
  })
})

describe('other agents’ escape sequences never reach a terminal or a model raw', () => {
  const EVIL_AGENT = 'evil\u001b]0;pwned\u0007agent'
  const EVIL_SESSION = 'ses\u001b[2J\u009b31m'
  const EVIL_REASON = 'rename\u001b[31m the\nauth module\u0007'
  const raw = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/ // a newline between lines of a listing is ours

  it('list, watch, the refusal a model reads and file_locks show them as spaces', async () => {
    const { watch } = require('../lib/watch.js')
    const { FileLockPlugin } = await import('../plugin/src/file-lock.ts')
    const folder = tmpDir('ofl-escape-')
    const cache = await SledCache.open({ path: folder, namespace: 'locks' })
    try {
      const dir = tmpDir('ofl-escape-proj-')
      await acquireLock(path.join(dir, 'src/'), EVIL_AGENT, EVIL_SESSION, cache, { reason: EVIL_REASON, title: 'T\u001b[1mitle' })
      const list = cli(['list'], { FILE_LOCK_PATH: folder })
      expect(list.out).toContain('evil ]0;pwned agent')
      expect(list.out).not.toMatch(raw)
      // watch's view, written to a stream that is not a terminal: one frame
      let view = ''
      const out = { isTTY: false, write: (t: string) => ((view += t), true) }
      const { PassThrough } = await import('node:stream')
      const w = watch(cache, { out, input: new PassThrough() })
      await new Promise((r) => setTimeout(r, 300))
      w.stop()
      await w.done
      expect(view).toContain('evil ]0;pwned agent')
      expect(view).not.toMatch(raw)
      // what a model reads when its write is refused, and its file_locks listing
      const hooks = await FileLockPlugin({ cache, baseDir: dir, waitMs: 0 } as never)
      const refusal = await hooks['tool.execute.before']({ tool: 'write', sessionID: 'me', callID: 'c1' }, { args: { filePath: 'src/a.ts', content: 'x' } }).catch((e: Error) => e.message)
      expect(refusal).toMatch(/is locked by another agent: agent evil \]0;pwned agent \(session ses \[2J 31m\)/)
      expect(refusal).toContain('for this reason: “rename [31m the auth module”')
      expect(refusal).not.toMatch(raw)
      const listing = await hooks.tool.file_locks.execute({}, { sessionID: 'me' })
      expect(listing).not.toMatch(raw)
      expect(listing).toContain('rename [31m the auth module')
    } finally {
      await cache.close()
    }
  })

  it('a deadlock names the sessions of the cycle without their control characters', async () => {
    const cache = await SledCache.open({ path: tmpDir('ofl-escape-'), namespace: 'locks' })
    try {
      await acquireLock('/d/x', 'a', EVIL_SESSION, cache)
      await acquireLock('/d/y', 'b', 'plain', cache)
      const waiting = acquireLock('/d/y', 'a', EVIL_SESSION, cache, { waitMs: 3000 }).catch((e) => e)
      await new Promise((r) => setTimeout(r, 100))
      const e = await acquireLock('/d/x', 'b', 'plain', cache, { waitMs: 3000 }).catch((x) => x)
      expect(e.code).toBe('EDEADLK')
      expect(e.message).toContain('ses [2J 31m')
      expect(e.message).not.toMatch(raw)
      await waiting
    } finally {
      await cache.close()
    }
  })

  it('the Rust and the JS escaping say the same', async () => {
    const { oneLine } = require('../lib/text.js')
    const native = require('../lib/native.js')
    for (const s of [EVIL_AGENT, EVIL_SESSION, EVIL_REASON, '  a\tb\u2028c  ', 'é'.repeat(300), 'plain']) expect(native.oneLine(s, 200)).toBe(oneLine(s, 200))
  })
})

describe.each(['sled', 'redis'] as const)('one file, one lock, whatever its name (%s)', (backend) => {
  useRedis()
  const open = cachesOn(backend)

  it('through a dangling symlink, through link/../f, and through a hard link', async () => {
    const cache = await open()
    const dir = fs.realpathSync(tmpDir('ofl-names-'))
    // a dangling symlink and the file it will create
    fs.symlinkSync(path.join(dir, 'target.txt'), path.join(dir, 'dangling'))
    const viaLink = await acquireLock(path.join(dir, 'dangling'), 'a', 'A', cache)
    expect(viaLink).toBe(path.join(dir, 'target.txt'))
    await expect(acquireLock(path.join(dir, 'target.txt'), 'b', 'B', cache)).rejects.toMatchObject({ code: 'ELOCKED' })
    // `..` after a symlink is taken from its target, as the kernel walks it
    fs.mkdirSync(path.join(dir, 'real/deep/er'), { recursive: true })
    fs.symlinkSync(path.join(dir, 'real/deep/er'), path.join(dir, 'link'))
    expect(await acquireLock(`${dir}/link/../f`, 'a', 'A', cache)).toBe(path.join(dir, 'real/deep/f')) // (path.join would fold the .. itself)
    await expect(acquireLock(path.join(dir, 'real/deep/f'), 'b', 'B', cache)).rejects.toMatchObject({ code: 'ELOCKED' })
    // two hard links of one file: one lock, said in terms of the name asked for
    fs.writeFileSync(path.join(dir, 'one.txt'), 'x')
    fs.linkSync(path.join(dir, 'one.txt'), path.join(dir, 'two.txt'))
    const held = await acquireLock(path.join(dir, 'one.txt'), 'a', 'A', cache)
    const e = await acquireLock(path.join(dir, 'two.txt'), 'b', 'B', cache).catch((x) => x)
    expect(e.code).toBe('ELOCKED')
    expect(e.message).toContain(`File ${path.join(dir, 'two.txt')} (another name of it: a hard link) is locked by another agent: agent a (session A)`)
    expect((await listLocks(cache)).map((l) => l.path).sort()).toEqual([path.join(dir, 'one.txt'), path.join(dir, 'real/deep/f'), path.join(dir, 'target.txt')]) // the inode lock is not listed
    await releaseLock(held, 'A', cache)
    const theirs = await acquireLock(path.join(dir, 'two.txt'), 'b', 'B', cache)
    await expect(acquireLock(path.join(dir, 'one.txt'), 'a', 'A', cache)).rejects.toMatchObject({ code: 'ELOCKED' })
    await releaseLock(theirs, 'B', cache)
    expect(await acquireLock(path.join(dir, 'one.txt'), 'a', 'A', cache)).toBe(path.join(dir, 'one.txt'))
  })

  it('what cannot be unified: a hard link made while the file is locked under its only other name', async () => {
    const cache = await open()
    const dir = fs.realpathSync(tmpDir('ofl-names-'))
    fs.writeFileSync(path.join(dir, 'only.txt'), 'x')
    await acquireLock(path.join(dir, 'only.txt'), 'a', 'A', cache) // one link: no inode lock taken
    fs.linkSync(path.join(dir, 'only.txt'), path.join(dir, 'later.txt'))
    // the lock on only.txt was taken without the inode: later.txt is another lock (documented in docs/api.md)
    expect(await acquireLock(path.join(dir, 'later.txt'), 'b', 'B', cache)).toBe(path.join(dir, 'later.txt'))
  })
})
