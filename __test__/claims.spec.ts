// Claims on folders: a path ending in / locks that folder and everything below it, on every store
// (sled in the process that serves it and in a client process, Redis, the hybrid).
import { describe, expect, it } from 'vitest'
import { acquireLock, acquireLocks, forceRelease, getLock, listLocks, listWaiters, releaseLock, SledCache, type Cache } from '../lib/index.js'
import { BACKENDS, cachesOn, useRedis } from './helpers/backends'
import { startLockProcess } from './helpers/lock-process'
import { sleep, tmpDir } from './helpers/tmp'

const refusal = (p: Promise<unknown>) => p.then(() => { throw new Error('granted, but it should have been refused') }, (e) => e)

describe.each(BACKENDS)('claims on %s', (backend) => {
  useRedis()
  const open = cachesOn(backend)

  it('a claim refuses another session’s files and folders below it, and a file or folder above a held file refuses a claim', async () => {
    const c = await open()
    expect(await acquireLock('/p/src/auth/', 'a', 'A', c)).toBe('/p/src/auth/')
    for (const below of ['/p/src/auth/x.ts', '/p/src/auth/deep/y.ts', '/p/src/auth/deep/']) {
      const e = await refusal(acquireLock(below, 'b', 'B', c))
      expect(e.code, below).toBe('ELOCKED')
      expect(e.holder).toMatchObject({ sessionId: 'A', path: '/p/src/auth/' })
      expect(e.message).toContain('has claimed the folder /p/src/auth/, which contains it')
    }
    for (const above of ['/p/src/', '/p/', '/']) {
      const e = await refusal(acquireLock(above, 'b', 'B', c))
      expect(e.code, above).toBe('ELOCKED')
      expect(e.holder.path).toBe('/p/src/auth/')
    }
    // neighbours are not inside: a sibling folder whose name starts the same, the folder's own name as a file
    await acquireLock('/p/src/authx/a.ts', 'b', 'B', c)
    await acquireLock('/p/src/auth', 'b', 'B', c)
    await acquireLock('/p/lib/', 'b', 'B', c)
    // the other way round: a file held first keeps any claim above it out
    await acquireLock('/q/a/b/c.ts', 'a', 'A', c)
    const e = await refusal(acquireLock('/q/a/', 'b', 'B', c))
    expect(e.message).toMatch(/^Folder \/q\/a\/ is locked by another agent: agent a \(session A\)( \[[^\]]+\])? has held \/q\/a\/b\/c\.ts, inside it/)
    expect((await listLocks(c)).map((l) => l.path).sort()).toEqual(['/p/lib/', '/p/src/auth', '/p/src/auth/', '/p/src/authx/a.ts', '/q/a/b/c.ts'])
  })

  it('is re-entrant, lets its session take files below it, and all or nothing holds with claims in the set', async () => {
    const c = await open()
    await acquireLock('/r/src/', 'a', 'A', c)
    await acquireLock('/r/src/', 'a', 'A', c)
    expect(await getLock('/r/src/', c)).toMatchObject({ holdCount: 2 })
    expect(await acquireLocks(['/r/src/a.ts', '/r/src/sub/'], 'a', 'A', c)).toEqual(['/r/src/a.ts', '/r/src/sub/'])
    // relative spellings: `src/.` and `src/x/..` name the folder, and keep naming it as a claim
    expect(await acquireLock('src/x/..', 'a', 'A', c, { baseDir: '/r' })).toBe('/r/src/')
    expect(await getLock('/r/src/', c)).toMatchObject({ holdCount: 3 })
    await acquireLock('/r/other/held.ts', 'b', 'B', c)
    const e = await refusal(acquireLocks(['/r/free.ts', '/r/other/'], 'a', 'A', c))
    expect(e.holder.path).toBe('/r/other/held.ts')
    expect(await getLock('/r/free.ts', c)).toBeUndefined()
    expect(await releaseLock('/r/src/', 'A', c)).toBe(true)
    expect(await refusal(acquireLock('/r/src/b.ts', 'b', 'B', c))).toMatchObject({ code: 'ELOCKED' })
    for (let i = 0; i < 2; i++) await releaseLock('/r/src/', 'A', c)
    expect(await getLock('/r/src/', c)).toBeUndefined()
    // its own files below stay held after the claim goes
    expect((await refusal(acquireLock('/r/src/a.ts', 'b', 'B', c))).holder.path).toBe('/r/src/a.ts')
    await acquireLock('/r/src/b.ts', 'b', 'B', c)
  })

  it('a file waits on a claim above it and is woken by the claim’s release', async () => {
    const c = await open()
    await acquireLock('/w/src/', 'a', 'A', c)
    const waiting = acquireLock('/w/src/deep/f.ts', 'b', 'B', c, { waitMs: 5000 })
    await sleep(150)
    const [w] = await listWaiters(c)
    expect(w).toMatchObject({ sessionId: 'B', paths: ['/w/src/deep/f.ts'], blockedBy: { sessionId: 'A', path: '/w/src/' } })
    const t0 = performance.now()
    await releaseLock('/w/src/', 'A', c)
    expect(await waiting).toBe('/w/src/deep/f.ts')
    expect(performance.now() - t0).toBeLessThan(500) // woken by the release, not by a poll
    expect(await listWaiters(c)).toEqual([])
  })

  it('a claim waits for the files below it, and comes first: later files below queue behind it', async () => {
    const c = await open()
    await acquireLock('/v/src/a.ts', 'a', 'A', c)
    await acquireLock('/v/src/deep/b.ts', 'a2', 'A2', c)
    const claim = acquireLock('/v/src/', 'b', 'B', c, { waitMs: 5000 })
    await sleep(150)
    // a newcomer's write below the claim asked for is refused while the claim waits (FIFO)
    const queued = await refusal(acquireLock('/v/src/new.ts', 'c', 'C', c))
    expect(queued.holder).toMatchObject({ sessionId: 'B', queued: true, path: '/v/src/' })
    expect(queued.message).toContain('is waiting for /v/src/ and comes first')
    await releaseLock('/v/src/a.ts', 'A', c)
    await sleep(100)
    expect(await getLock('/v/src/', c)).toBeUndefined() // b.ts is still held
    const t0 = performance.now()
    await releaseLock('/v/src/deep/b.ts', 'A2', c)
    expect(await claim).toBe('/v/src/')
    expect(performance.now() - t0).toBeLessThan(500)
    // and the other way: a file waiter first, then a claim over it queues behind
    const f = acquireLock('/v/src/a.ts', 'c', 'C', c, { waitMs: 5000 })
    await sleep(150)
    await releaseLock('/v/src/', 'B', c)
    expect(await f).toBe('/v/src/a.ts')
  })

  it('a claim waiter queued first keeps a folder above it from a newcomer, and forced release frees a claim and tells its holder', async () => {
    const c = await open()
    const lost: any[] = []
    const off = c.onLost((e) => void lost.push(e))
    await acquireLock('/f/src/', 'a', 'A', c)
    const e = await refusal(acquireLock('/f/src/x.ts', 'b', 'B', c))
    expect(e.code).toBe('ELOCKED')
    expect(await forceRelease('/f/src/', c)).toMatchObject({ sessionId: 'A', path: '/f/src/' })
    await acquireLock('/f/src/x.ts', 'b', 'B', c)
    for (let i = 0; i < 40 && lost.length === 0; i++) await sleep(25)
    expect(lost[0]).toMatchObject({ path: '/f/src/', sessionId: 'A', reason: 'released' })
    off()
  })
})

describe('claims between two processes on one sled folder (the shared store)', () => {
  it('a claim in one process refuses a file below it in another, and the other’s waiter is woken by the release', async () => {
    const folder = tmpDir('ofl-claims-shared-')
    const here: Cache = await SledCache.open({ path: folder, namespace: 'locks' })
    const there = await startLockProcess({ path: folder })
    try {
      await acquireLock('/s/src/', 'a', 'A', here)
      const e = await there.call('acquire', '/s/src/x.ts', 'B').catch((err: any) => err)
      expect(e).toMatchObject({ code: 'ELOCKED', holder: { sessionId: 'A', path: '/s/src/' } })
      await there.call('acquire', '/s/lib/y.ts', 'B')
      expect((await refusal(acquireLock('/s/', 'a', 'A', here))).holder).toMatchObject({ sessionId: 'B', path: '/s/lib/y.ts' })
      const waiting = there.call('acquire', '/s/src/x.ts', 'B', { waitMs: 5000 })
      await sleep(200)
      const t0 = performance.now()
      await releaseLock('/s/src/', 'A', here)
      expect(await waiting).toBe('/s/src/x.ts')
      expect(performance.now() - t0).toBeLessThan(500)
    } finally {
      await there.kill()
      await here.close()
    }
  })
})
