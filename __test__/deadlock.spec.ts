// Deadlock detection: a waiting acquire that would close a cycle of waits is refused at once with
// EDEADLK naming the cycle, and the wait before it in the cycle gets its file. On every store, and
// across processes on Redis and on one sled folder.
import { describe, expect, it } from 'vitest'
import { acquireLock, getLock, listWaiters, releaseLock, SledCache, type Cache } from '../lib/index.js'
import { BACKENDS, cachesOn, useRedis } from './helpers/backends'
import { startLockProcess, type LockProcess } from './helpers/lock-process'
import { sleep, tmpDir } from './helpers/tmp'

const WAIT = { waitMs: 10_000 }
const settled = <T>(p: Promise<T>) => p.then((v) => ({ ok: v }), (e) => ({ err: e }))

describe.each(BACKENDS)('deadlocks on %s', (backend) => {
  useRedis()
  const open = cachesOn(backend)

  it('a cycle of 2: the second waiter is refused at once, naming the cycle; the first gets its file', async () => {
    const c = await open()
    await acquireLock('/d/x', 'agent-a', 'A', c)
    await acquireLock('/d/y', 'agent-b', 'B', c)
    const a = acquireLock('/d/y', 'agent-a', 'A', c, WAIT)
    await sleep(150)
    const t0 = performance.now()
    const b = await settled(acquireLock('/d/x', 'agent-b', 'B', c, WAIT))
    const took = performance.now() - t0
    expect('err' in b && b.err.code).toBe('EDEADLK')
    const e = (b as any).err
    expect(took).toBeLessThan(1000) // not waitMs
    expect(e.cycle).toEqual([
      { sessionId: 'B', agentId: 'agent-b', waitsFor: '/d/x', heldBy: 'A' },
      { sessionId: 'A', agentId: 'agent-a', waitsFor: '/d/y', heldBy: 'B' },
    ])
    expect(e.released).toEqual(['/d/y'])
    expect(e.holder).toMatchObject({ sessionId: 'A', path: '/d/x' })
    expect(e.message).toMatch(/^Deadlock: session B \(agent agent-b\) would wait for \/d\/x, held by session A, which waits for \/d\/y, held by session B\./)
    expect(await a).toBe('/d/y')
    expect(performance.now() - t0).toBeLessThan(1500)
    expect(await getLock('/d/y', c)).toMatchObject({ sessionId: 'A' })
    expect(await getLock('/d/x', c)).toMatchObject({ sessionId: 'A' })
    expect(await listWaiters(c)).toEqual([])
  })

  it('a cycle of 3 sessions, and a chain of waits that is not a cycle stays a wait', async () => {
    const c = await open()
    for (const [p, s] of [['/t/1', 'A'], ['/t/2', 'B'], ['/t/3', 'C']]) await acquireLock(p, `agent-${s}`, s, c)
    const a = acquireLock('/t/2', 'agent-A', 'A', c, WAIT) // A waits for B
    await sleep(100)
    const b = acquireLock('/t/3', 'agent-B', 'B', c, WAIT) // B waits for C: a chain, no cycle yet
    await sleep(150)
    expect((await listWaiters(c)).map((w) => [w.sessionId, w.blockedBy.sessionId])).toEqual([['A', 'B'], ['B', 'C']])
    const t0 = performance.now()
    const cc = await settled(acquireLock('/t/1', 'agent-C', 'C', c, WAIT)) // C waits for A: closes A -> B -> C -> A
    expect((cc as any).err?.code).toBe('EDEADLK')
    expect(performance.now() - t0).toBeLessThan(1000)
    expect((cc as any).err.cycle.map((s: any) => s.sessionId)).toEqual(['C', 'A', 'B'])
    expect((cc as any).err.released).toEqual(['/t/3']) // what B (just before C) waits for
    expect(await b).toBe('/t/3')
    await releaseLock('/t/2', 'B', c)
    expect(await a).toBe('/t/2')
  })

  it('through claims: A claims a folder and waits for B’s file; B waits for a file inside A’s claim', async () => {
    const c = await open()
    await acquireLock('/k/src/', 'agent-a', 'A', c)
    await acquireLock('/k/lib/b.ts', 'agent-b', 'B', c)
    const a = acquireLock('/k/lib/', 'agent-a', 'A', c, WAIT)
    await sleep(150)
    const b = await settled(acquireLock('/k/src/a.ts', 'agent-b', 'B', c, WAIT))
    expect((b as any).err?.code).toBe('EDEADLK')
    expect((b as any).err.released).toEqual(['/k/lib/b.ts'])
    expect(await a).toBe('/k/lib/')
  })

  it('a waiter whose holder let go meanwhile is not a cycle', async () => {
    const c = await open()
    await acquireLock('/n/x', 'agent-a', 'A', c)
    await acquireLock('/n/y', 'agent-b', 'B', c)
    const a = acquireLock('/n/y', 'agent-a', 'A', c, { waitMs: 2000 })
    await sleep(150)
    await releaseLock('/n/y', 'B', c)
    expect(await a).toBe('/n/y')
    // B now waits for x (A holds it) and is not refused as a deadlock: A waits for nothing
    const b = acquireLock('/n/x', 'agent-b', 'B', c, { waitMs: 2000 })
    await sleep(150)
    await releaseLock('/n/x', 'A', c)
    expect(await b).toBe('/n/x')
  })
})

async function crossProcess(procs: LockProcess[]) {
  const [a, b, c] = procs
  // a cycle of 2 between two processes
  await a.call('acquire', '/x/1', 'A')
  await b.call('acquire', '/x/2', 'B')
  const waitA = a.call('acquire', '/x/2', 'A', WAIT)
  await sleep(200)
  const t0 = performance.now()
  const e = await b.call('acquire', '/x/1', 'B', WAIT).catch((err: any) => err)
  expect(e.code).toBe('EDEADLK')
  expect(performance.now() - t0).toBeLessThan(1000)
  expect(e.cycle.map((s: any) => [s.sessionId, s.waitsFor, s.heldBy])).toEqual([['B', '/x/1', 'A'], ['A', '/x/2', 'B']])
  expect(await waitA).toBe('/x/2')
  // a cycle of 3 across three processes
  await a.call('acquire', '/y/1', 'A')
  await b.call('acquire', '/y/2', 'B')
  await c.call('acquire', '/y/3', 'C')
  const wa = a.call('acquire', '/y/2', 'A', WAIT)
  await sleep(150)
  const wb = b.call('acquire', '/y/3', 'B', WAIT)
  await sleep(150)
  const e3 = await c.call('acquire', '/y/1', 'C', WAIT).catch((err: any) => err)
  expect(e3.code).toBe('EDEADLK')
  expect(e3.cycle.map((s: any) => s.sessionId)).toEqual(['C', 'A', 'B'])
  expect(await wb).toBe('/y/3')
  await b.call('release', '/y/2', 'B')
  expect(await wa).toBe('/y/2')
}

describe('deadlocks across processes', () => {
  const server = useRedis()

  it('on Redis: cycles of 2 and 3 sessions in separate processes', async () => {
    const ns = `dl-${Date.now()}`
    const procs = await Promise.all([0, 1, 2].map(() => startLockProcess({ backend: 'redis', redis: { port: server().port }, namespace: ns })))
    try {
      await crossProcess(procs)
    } finally {
      for (const p of procs) await p.kill()
    }
  })

  it('on one sled folder shared by three processes', async () => {
    const folder = tmpDir('ofl-dl-shared-')
    const here: Cache = await SledCache.open({ path: folder, namespace: 'locks' }) // serves the folder
    const procs = await Promise.all([0, 1, 2].map(() => startLockProcess({ path: folder })))
    try {
      await crossProcess(procs)
    } finally {
      for (const p of procs) await p.kill()
      await here.close()
    }
  })
})
