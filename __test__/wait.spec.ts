// Waiting for a lock: woken by the release itself, FIFO, abortable, no ghosts; and
// lost-lock reports. Runs on sled (in-process wake-ups) and Redis (pub/sub wake-ups).
import { spawn } from 'node:child_process'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { acquireLock, acquireLocks, forceRelease, getLock, releaseLock, renewLock, RedisCache, type Cache } from '../lib/index.js'
import { cachesOn, useRedis } from './helpers/backends'
import { queueKey } from './helpers/slots'
import { redisCliRaw, sleep } from './helpers/tmp'

const SEP = '\u241F'

function percentile(xs: number[], p: number) {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]
}

describe.each(['sled', 'redis'] as const)('waiting on %s', (backend) => {
  const server = useRedis()
  const open = cachesOn(backend)
  /** Another handle on the same store and namespace: a second connection on Redis. */
  const twin = async (c: Cache): Promise<Cache> => {
    if (backend === 'sled') return c
    return RedisCache.connect({ port: server().port, namespace: c.namespace })
  }

  it('a waiter is woken by the release itself: wake-up latency p50 and p99', async () => {
    const cache = await open()
    const other = await twin(cache)
    const lat: number[] = []
    for (let i = 0; i < 100; i++) {
      const p = await acquireLock('/w/latency', 'holder', 'h', cache)
      const waiting = acquireLock('/w/latency', 'waiter', 'w', other, { waitMs: 5000 })
      await sleep(3) // let it try, queue and sleep
      const t0 = performance.now()
      let woke = 0
      const done = waiting.then(() => (woke = performance.now()))
      await releaseLock(p, 'h', cache)
      await done
      lat.push(woke - t0)
      await releaseLock(p, 'w', other)
    }
    const p50 = percentile(lat, 50)
    const p99 = percentile(lat, 99)
    console.log(`[wait] ${backend}: wake-up after release p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms (100 waits)`)
    // polling would show up as hundreds of milliseconds; a release wakes within a few
    expect(p50).toBeLessThan(10)
    expect(p99).toBeLessThan(100)
    if (other !== cache) await other.close()
  })

  it('serves 20 waiters in arrival order, across connections', async () => {
    const cache = await open()
    const other = await twin(cache)
    const holder = await acquireLock('/w/fifo', 'holder', 'h', cache)
    const order: number[] = []
    const waiters: Promise<void>[] = []
    for (let i = 0; i < 20; i++) {
      const c = i % 2 ? other : cache
      waiters.push(
        acquireLock('/w/fifo', `agent-${i}`, `session-${i}`, c, { waitMs: 20_000 }).then(async (p) => {
          order.push(i)
          await sleep(2)
          await releaseLock(p, `session-${i}`, c)
        }),
      )
      await sleep(15) // arrival order is the order of these calls
    }
    const t0 = Date.now()
    await releaseLock(holder, 'h', cache)
    await Promise.all(waiters)
    expect(order).toEqual([...Array(20).keys()])
    // 20 hand-overs woken by releases, not by the 1 s polling fallback
    expect(Date.now() - t0).toBeLessThan(2000)
    if (backend === 'redis') expect(redisCliRaw(server().port, 'EXISTS', queueKey(cache.namespace, '/w/fifo'))).toBe('0')
    if (other !== cache) await other.close()
  })

  it('a newcomer that does not wait cannot jump the queue', async () => {
    const cache = await open()
    const p = await acquireLock('/w/fair', 'holder', 'h', cache)
    const waiting = acquireLock('/w/fair', 'waiter', 'w', cache, { waitMs: 5000 })
    await sleep(20)
    await releaseLock(p, 'h', cache)
    const barge = await acquireLock('/w/fair', 'newcomer', 'n', cache).catch((e) => e)
    expect(barge.code).toBe('ELOCKED')
    expect(await waiting).toBe('/w/fair')
    expect(await getLock('/w/fair', cache)).toMatchObject({ sessionId: 'w' })
  })

  it('a waiter does not hold up the session it waits for (no waiting for each other)', async () => {
    const cache = await open()
    const a = await acquireLock('/w/x/a', 's', 's', cache)
    const waiting = acquireLocks(['/w/x/b', '/w/x/a'], 't', 't', cache, { waitMs: 5000 })
    await sleep(20)
    // t queues on the free /w/x/b too, but it waits for s: s may still take /w/x/b
    const b = await acquireLock('/w/x/b', 's', 's', cache)
    const someoneElse = await acquireLock('/w/x/b', 'u', 'u', cache).catch((e) => e)
    expect(someoneElse.code).toBe('ELOCKED')
    await releaseLock(a, 's', cache)
    await releaseLock(b, 's', cache)
    expect(await waiting).toEqual(['/w/x/b', '/w/x/a'])
  })

  it('waits for every path of acquireLocks, all or nothing', async () => {
    const cache = await open()
    const a = await acquireLock('/w/a', 'h1', 'h1', cache)
    const b = await acquireLock('/w/b', 'h2', 'h2', cache)
    const waiting = acquireLocks(['/w/a', '/w/b'], 'w', 'w', cache, { waitMs: 5000 })
    await sleep(20)
    await releaseLock(a, 'h1', cache)
    await sleep(50)
    expect(await getLock('/w/a', cache)).toBeUndefined() // nothing taken while /w/b is held
    await releaseLock(b, 'h2', cache)
    expect(await waiting).toEqual(['/w/a', '/w/b'])
  })

  it('gives up after waitMs with ELOCKED naming the holder and how long it waited', async () => {
    const cache = await open()
    await acquireLock('/w/timeout', 'holder', 'h', cache)
    const t0 = Date.now()
    const err = await acquireLock('/w/timeout', 'waiter', 'w', cache, { waitMs: 300 }).catch((e) => e)
    expect(err.code).toBe('ELOCKED')
    expect(err.holder).toMatchObject({ sessionId: 'h' })
    expect(err.waitedMs).toBeGreaterThanOrEqual(290)
    expect(err.message).toMatch(/waited \d+ ms for it/)
    expect(Date.now() - t0).toBeLessThan(1500)
    if (backend === 'redis') expect(redisCliRaw(server().port, 'EXISTS', queueKey(cache.namespace, '/w/timeout'))).toBe('0')
  })

  it('an AbortSignal ends the wait with EABORTED and leaves nothing behind', async () => {
    const cache = await open()
    const p = await acquireLock('/w/abort', 'holder', 'h', cache)
    const ac = new AbortController()
    const waiting = acquireLock('/w/abort', 'waiter', 'w', cache, { waitMs: 10_000, signal: ac.signal }).catch((e) => e)
    await sleep(50)
    ac.abort()
    const err = await waiting
    expect(err.code).toBe('EABORTED')
    expect(err.waitedMs).toBeGreaterThanOrEqual(40)
    if (backend === 'redis') expect(redisCliRaw(server().port, 'EXISTS', queueKey(cache.namespace, '/w/abort'))).toBe('0')
    await releaseLock(p, 'h', cache)
    // no ghost in the queue: a newcomer that does not wait gets the free file at once
    expect(await acquireLock('/w/abort', 'newcomer', 'n', cache)).toBe('/w/abort')
    // an already aborted signal never touches the store
    const pre = await acquireLock('/w/other', 'x', 'x', cache, { signal: AbortSignal.abort() }).catch((e) => e)
    expect(pre.code).toBe('EABORTED')
    expect(await getLock('/w/other', cache)).toBeUndefined()
  })

  it('rejects bad waitMs and signal values with EINVAL', async () => {
    const cache = await open()
    for (const waitMs of [-1, 1.5, '5', Number.NaN, 86_400_001]) {
      const e = await acquireLock('/w/bad', 'a', 's', cache, { waitMs: waitMs as number }).catch((x) => x)
      expect(e.code).toBe('EINVAL')
    }
    const e = await acquireLock('/w/bad', 'a', 's', cache, { waitMs: 10, signal: {} as AbortSignal }).catch((x) => x)
    expect(e.code).toBe('EINVAL')
    expect(await getLock('/w/bad', cache)).toBeUndefined()
  })

  it('reports a forced release to the holder through onLost; renewLock then says ELOST', async () => {
    const cache = await open()
    const other = await twin(cache)
    const lost: any[] = []
    const off = cache.onLost((e) => lost.push(e))
    const p = await acquireLock('/w/forced', 'agent', 'holder', cache)
    const t0 = Date.now()
    expect(await forceRelease('/w/forced', other)).toMatchObject({ sessionId: 'holder' })
    for (let i = 0; i < 100 && lost.length === 0; i++) await sleep(10)
    expect(lost).toHaveLength(1)
    expect(lost[0]).toMatchObject({ reason: 'released', path: '/w/forced', sessionId: 'holder', lost: { sessionId: 'holder' }, holder: null })
    console.log(`[wait] ${backend}: forced release reported to the holder after ${Date.now() - t0} ms`)
    const err = await renewLock(p, 'holder', cache).catch((e) => e)
    expect(err.code).toBe('ELOST')
    expect(await getLock('/w/forced', cache)).toBeUndefined() // not resurrected
    off()
    // nobody listens any more: nothing is watched or reported
    await acquireLock('/w/unwatched', 'agent', 'holder', cache, { ttlMs: 50 })
    await sleep(150)
    expect(lost).toHaveLength(1)
    if (other !== cache) await other.close()
  })

  it('reports a lock whose TTL ran out; an own release is not reported', async () => {
    const cache = await open()
    const lost: any[] = []
    cache.onLost((e) => lost.push(e))
    const p = await acquireLock('/w/expires', 'agent', 'holder', cache, { ttlMs: 150 })
    await acquireLock('/w/mine', 'agent', 'holder', cache, { ttlMs: 150 })
    await releaseLock('/w/mine', 'holder', cache)
    for (let i = 0; i < 100 && lost.length === 0; i++) await sleep(10)
    expect(lost.map((e) => [e.reason, e.path])).toEqual([['expired', '/w/expires']])
    const err = await renewLock(p, 'holder', cache).catch((e) => e)
    expect(err.code).toBe('ELOST')
    expect(await getLock(p, cache)).toBeUndefined()
    await sleep(200)
    expect(lost).toHaveLength(1)
  })

  it('a renewed lock is not reported lost, and a failing listener only warns', async () => {
    const cache = await open()
    const warnings: string[] = []
    const onWarning = (w: Error) => warnings.push(w.message)
    process.on('warning', onWarning)
    cache.onLost(() => {
      throw new Error('listener bug')
    })
    const lost: any[] = []
    cache.onLost((e) => lost.push(e))
    const kept = await acquireLock('/w/kept', 'agent', 'holder', cache, { ttlMs: 200 })
    await acquireLock('/w/dropped', 'agent', 'holder', cache, { ttlMs: 100 })
    for (let i = 0; i < 4; i++) {
      await sleep(100)
      await renewLock(kept, 'holder', cache, { ttlMs: 200 })
    }
    expect(lost.map((e) => e.path)).toEqual(['/w/dropped'])
    await sleep(20)
    process.off('warning', onWarning)
    expect(warnings.some((w) => w.includes('listener bug'))).toBe(true)
  })
})

describe('a waiter process that dies (Redis)', () => {
  const server = useRedis()
  const open = cachesOn('redis')

  it('leaves no ghost: the next waiter gets the lock within the lease and the queue empties', async () => {
    const cache = await open()
    const p = await acquireLock('/w/dead', 'holder', 'h', cache)
    const lib = path.resolve(__dirname, '../lib/index.js')
    const child = spawn(process.execPath, ['-e', `
      const L = require(${JSON.stringify(lib)})
      L.RedisCache.connect({ port: ${server().port}, namespace: ${JSON.stringify(cache.namespace)} })
        .then((c) => L.acquireLock('/w/dead', 'doomed', 'doomed', c, { waitMs: 60000 }))
        .then(() => console.log('granted'), (e) => console.log(e.code))
    `], { stdio: 'ignore' })
    const q = queueKey(cache.namespace, '/w/dead')
    for (let i = 0; i < 100 && redisCliRaw(server().port, 'ZCARD', q) !== '1'; i++) await sleep(20)
    expect(redisCliRaw(server().port, 'ZCARD', q)).toBe('1')
    child.kill('SIGKILL')
    await new Promise((r) => child.once('exit', r))
    const t0 = Date.now()
    const next = acquireLock('/w/dead', 'next', 'next', cache, { waitMs: 10_000 })
    await sleep(20)
    await releaseLock(p, 'h', cache)
    expect(await next).toBe('/w/dead')
    const took = Date.now() - t0
    console.log(`[wait] redis: the waiter behind a killed one got the lock after ${took} ms (lease 3000 ms)`)
    expect(took).toBeLessThan(4500)
    expect(redisCliRaw(server().port, 'EXISTS', q)).toBe('0')
  })
})

describe('lost locks across processes (Redis)', () => {
  const server = useRedis()
  const open = cachesOn('redis')
  const lib = path.resolve(__dirname, '../lib/index.js')
  const cliPath = path.resolve(__dirname, '../bin/opencode-file-lock.js')

  /** A holder in its own process: acquires, prints each onLost event and each renew outcome as a JSON line. */
  function holderProcess(namespace: string, file: string, ttlMs: number) {
    const child = spawn(process.execPath, ['-e', `
      const L = require(${JSON.stringify(lib)})
      const say = (o) => console.log(JSON.stringify(o))
      L.RedisCache.connect({ port: ${server().port}, namespace: ${JSON.stringify(namespace)} }).then(async (c) => {
        c.onLost(async (e) => {
          say({ lost: e })
          const r = await L.renewLock(e.path, e.sessionId, c).then(() => 'renewed', (err) => err.code)
          say({ renew: r })
        })
        await L.acquireLock(${JSON.stringify(file)}, 'agent-p', 'session-p', c, { ttlMs: ${ttlMs} })
        say({ held: true })
      })
      process.on('unhandledRejection', (e) => { say({ unhandled: String(e) }); process.exit(9) })
      setInterval(() => {}, 1000) // an agent process stays up; the watch alone does not keep it alive
    `], { stdio: ['ignore', 'pipe', 'inherit'] })
    const lines: any[] = []
    let buf = ''
    child.stdout!.on('data', (d) => {
      buf += d
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        lines.push(JSON.parse(buf.slice(0, i)))
        buf = buf.slice(i + 1)
      }
    })
    const until = async (pred: (l: any) => boolean, ms = 5000) => {
      for (let t = 0; t < ms && !lines.some(pred); t += 20) await sleep(20)
      return lines.find(pred)
    }
    return { child, lines, until }
  }

  it('the CLI\'s release --force reaches the holder process through onLost; its renew then says ELOST', async () => {
    const cache = await open()
    const h = holderProcess(cache.namespace, '/x/forced.ts', 60_000)
    expect(await h.until((l) => l.held)).toBeTruthy()
    const t0 = Date.now()
    const out = require('node:child_process').spawnSync(process.execPath, [cliPath, 'release', '/x/forced.ts', '--force', '--by', 'test', '--backend', 'redis', '--redis-url', `redis://127.0.0.1:${server().port}`, '--namespace', cache.namespace], { encoding: 'utf8' })
    expect(out.status).toBe(0)
    const lost = await h.until((l) => l.lost)
    expect(lost.lost).toMatchObject({ reason: 'released', path: '/x/forced.ts', sessionId: 'session-p' })
    expect((await h.until((l) => l.renew)).renew).toBe('ELOST')
    console.log(`[wait] redis: CLI forced release reported in the holder process within ${Date.now() - t0} ms (CLI start-up included)`)
    expect(await getLock('/x/forced.ts', cache)).toBeUndefined()
    h.child.kill('SIGKILL')
  })

  it('a holder paused past its TTL (SIGSTOP) learns on waking that its lock expired and another session has it', async () => {
    const cache = await open()
    const h = holderProcess(cache.namespace, '/x/paused.ts', 300)
    expect(await h.until((l) => l.held)).toBeTruthy()
    h.child.kill('SIGSTOP')
    await sleep(500)
    await acquireLock('/x/paused.ts', 'agent-q', 'session-q', cache) // the file moved on meanwhile
    h.child.kill('SIGCONT')
    const lost = await h.until((l) => l.lost)
    expect(lost.lost).toMatchObject({ reason: 'expired', path: '/x/paused.ts', holder: { sessionId: 'session-q' } })
    expect((await h.until((l) => l.renew)).renew).toBe('ELOST')
    expect(await getLock('/x/paused.ts', cache)).toMatchObject({ sessionId: 'session-q' }) // not resurrected
    expect(h.lines.some((l) => l.unhandled)).toBe(false)
    h.child.kill('SIGKILL')
  })

  it('after Redis restarts, the subscriber is back and releases wake waiters again', async () => {
    const cache = await open()
    await server().kill()
    await server().restart()
    await sleep(1500) // the subscriber reconnects with backoff up to 1 s
    await cache.get('warm-up').catch(() => {}) // the command connection notices the restart
    const other = await RedisCache.connect({ port: server().port, namespace: cache.namespace })
    const p = await acquireLock('/x/restart', 'h', 'h', cache)
    const waiting = acquireLock('/x/restart', 'w', 'w', other, { waitMs: 5000 })
    await sleep(20)
    const t0 = performance.now()
    await releaseLock(p, 'h', cache)
    await waiting
    const took = performance.now() - t0
    expect(took).toBeLessThan(200) // the 1 s polling fallback would take far longer
    await other.close()
  })
})

describe('waiting on the hybrid', () => {
  const server = useRedis()
  const open = cachesOn('hybrid')

  it('is woken by releases both while Redis serves and while sled serves', async () => {
    const cache = await open()
    for (const phase of ['redis', 'sled']) {
      if (phase === 'sled') {
        await server().kill()
        await cache.get('probe').catch(() => {}) // notices, fails over
      }
      const p = await acquireLock(`/h/${phase}`, 'h', 'h', cache)
      const waiting = acquireLock(`/h/${phase}`, 'w', 'w', cache, { waitMs: 5000 })
      await sleep(20)
      const t0 = performance.now()
      await releaseLock(p, 'h', cache)
      expect(await waiting).toBe(`/h/${phase}`)
      expect(performance.now() - t0).toBeLessThan(200)
      expect((cache as any).currentBackend()).toBe(phase)
    }
    await server().restart()
  })
})
