// Fault tests with real processes: many lock clients against one store while Redis is killed, a
// client dies holding a lock, a sled writer is killed mid-write. A checker reads every grant and
// release the clients logged and proves that no two holders of one file ever overlapped.
import { spawn, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { acquireLock, RedisCache, SledCache } from '../../lib/index.js'
import { startRedis, type RedisServer } from '../helpers/redis-server'
import { sleep, tmpDir } from '../helpers/tmp'
import { check, grantedFrom, nowUs } from './checker'
import { spawnWorker } from './spawn-worker'

vi.setConfig({ testTimeout: 60_000 })

// up this long between restarts: past the 2 s in which a Redis that lost its data lets earlier
// holders put their locks back, with time to grant after it
const RESTART_EVERY = 3000
const servers: RedisServer[] = []
const children: ChildProcess[] = []
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL')
  for (const s of servers.splice(0)) await s.stop()
})

const worker = (cfg: Record<string, unknown>) => spawnWorker(cfg, children)

/**
 * P processes x S sessions x F files for `durationMs`, optionally killing Redis in the middle
 * (killAt, restartAt), or restarting it without persistence `restarts` times (down 150 ms, then up
 * for RESTART_EVERY).
 */
async function stress(opts: { backend: 'redis' | 'hybrid' | 'sled'; failMode?: 'open' | 'closed'; killAt?: number; restartAt?: number; restarts?: number; durationMs: number; maxGrants?: number }) {
  const server = await startRedis()
  servers.push(server)
  const dir = tmpDir('ofl-stress-')
  const logs = [0, 1, 2, 3].map((i) => path.join(dir, `w${i}.log`))
  const workers = logs.map((log, i) =>
    worker({ name: `p${i}`, backend: opts.backend, failMode: opts.failMode, port: server.port, sledPath: path.join(dir, `sled${i}`), sessions: 8, files: 20, durationMs: opts.durationMs, maxGrants: opts.maxGrants, holdMs: 3, log }),
  )
  let killedUs: number | undefined
  let restartedUs: number | undefined
  if (opts.killAt != null) {
    await sleep(opts.killAt)
    killedUs = nowUs()
    await server.kill()
    await sleep(opts.restartAt! - opts.killAt)
    await server.restart()
    restartedUs = nowUs()
  }
  for (let i = 0; i < (opts.restarts ?? 0); i++) {
    await sleep(RESTART_EVERY)
    await server.kill()
    await sleep(150)
    await server.restart() // empty: no persistence
  }
  const counts = await Promise.all(workers.map((w) => w.done))
  const total: Record<string, number> = {}
  // the counts; `firstError` (an example message per code) is not one
  for (const c of counts) for (const [k, v] of Object.entries(c)) if (typeof v === 'number') total[k] = (total[k] ?? 0) + v
  return { verdict: check(logs), total, logs, killedUs, restartedUs }
}

describe('fault tests', () => {
  it('4 processes x 8 sessions x 20 files on Redis: 1,200 grants, no two holders ever overlap', async () => {
    // a count to reach, not a rate: each process stops at 300 grants (or after 20 s)
    const { verdict, total } = await stress({ backend: 'redis', durationMs: 20_000, maxGrants: 300 })
    console.log('redis stress', JSON.stringify({ ...total, checked: verdict.grants, double: verdict.doubleGrants.length }))
    expect(verdict.grants).toBeGreaterThanOrEqual(1200)
    expect(verdict.doubleGrants).toEqual([])
    expect(verdict.tokenRegressions).toBe(0)
  })

  it('kill -9 Redis under load and restart it: errors while it is down, never a double grant', async () => {
    // long enough after the restart for the 2 s in which a server that lost its data grants nothing new
    const { verdict, total, logs, killedUs, restartedUs } = await stress({ backend: 'redis', durationMs: 6000, killAt: 1200, restartAt: 2200 })
    const before = verdict.grants - grantedFrom(logs, killedUs!)
    const after = grantedFrom(logs, restartedUs!)
    console.log('redis kill -9', JSON.stringify({ ...total, checked: verdict.grants, beforeKill: before, afterRestart: after, double: verdict.doubleGrants.length }))
    expect((total.EBACKEND ?? 0) + (total.ETIMEDOUT ?? 0)).toBeGreaterThan(0)
    // granting before the kill and again after the restart (counts, not a rate: a loaded machine is slower)
    expect(before).toBeGreaterThan(0)
    expect(after).toBeGreaterThan(0)
    expect(verdict.doubleGrants).toEqual([])
  })

  it('the same with the hybrid failing closed: refuses while Redis is down, never a double grant', async () => {
    const { verdict, total } = await stress({ backend: 'hybrid', failMode: 'closed', durationMs: 4000, killAt: 1200, restartAt: 2200 })
    console.log('hybrid closed kill -9', JSON.stringify({ ...total, checked: verdict.grants, double: verdict.doubleGrants.length }))
    expect(total.EBACKEND ?? 0).toBeGreaterThan(0)
    expect(verdict.doubleGrants).toEqual([])
  })

  it('Redis restarted without persistence 10 times under load: holders put their locks back, never a double grant, tokens never go backward', async () => {
    const { verdict, total } = await stress({ backend: 'redis', durationMs: 10 * RESTART_EVERY + 2500, restarts: 10 })
    console.log('redis 10 restarts without persistence', JSON.stringify({ ...total, checked: verdict.grants, double: verdict.doubleGrants.length, tokenRegressions: verdict.tokenRegressions }))
    expect(total.grants).toBeGreaterThan(2000)
    expect(verdict.doubleGrants).toEqual([])
    expect(verdict.tokenRegressions).toBe(0)
  }, 90_000)

  it('the same with the hybrid failing closed', async () => {
    const { verdict, total } = await stress({ backend: 'hybrid', failMode: 'closed', durationMs: 10 * RESTART_EVERY + 2500, restarts: 10 })
    console.log('hybrid closed 10 restarts without persistence', JSON.stringify({ ...total, checked: verdict.grants, double: verdict.doubleGrants.length, tokenRegressions: verdict.tokenRegressions }))
    expect(total.grants).toBeGreaterThan(1000)
    expect(verdict.doubleGrants).toEqual([])
    expect(verdict.tokenRegressions).toBe(0)
  }, 90_000)

  it('the hybrid failing open keeps granting during the outage, from each process own folder (measured, not prevented)', async () => {
    const { verdict, total } = await stress({ backend: 'hybrid', failMode: 'open', durationMs: 4000, killAt: 1200, restartAt: 2200 })
    console.log('hybrid open kill -9', JSON.stringify({ ...total, checked: verdict.grants, double: verdict.doubleGrants.length }))
    // it keeps granting through the outage, where the other modes refuse...
    expect(total.grants).toBeGreaterThan(500)
    expect(total.EBACKEND ?? 0).toBe(0)
    // ...at the price the README states: each process's fallback is its own folder, so exclusion
    // across processes is not promised while Redis is away, and a lock that loses at recovery is
    // reported to its holder (onLost) rather than taken back from it. The overlaps are measured
    // (logged above), not asserted.
  })

  it('a client killed while holding a lock: the lock expires at its TTL and another client takes it', async () => {
    const server = await startRedis()
    servers.push(server)
    const holder = worker({ name: 'holder', backend: 'redis', port: server.port, holdForeverFile: '/stress/orphan', ttlMs: 1500, log: path.join(tmpDir(), 'h.log') })
    holder.done.catch(() => {}) // it is killed on purpose
    for (let i = 0; i < 100 && !holder.out().includes('HOLDING'); i++) await sleep(50)
    holder.child.kill('SIGKILL')
    const cache = await RedisCache.connect({ port: server.port, namespace: 'stress' })
    await expect(acquireLock('/stress/orphan', 'other', 'other-session', cache)).rejects.toMatchObject({ code: 'ELOCKED', holder: { sessionId: 'holder-holder' } })
    const t = Date.now()
    let got = false
    while (!got && Date.now() - t < 5000) {
      got = await acquireLock('/stress/orphan', 'other', 'other-session', cache).then(() => true, () => false)
      if (!got) await sleep(50)
    }
    expect(got).toBe(true)
    expect(Date.now() - t).toBeLessThan(1500 + 500)
    await cache.close()
  })

  it('kill -9 a process in the middle of sled writes, 50 times: the folder reopens and no record is corrupt', async () => {
    const folder = tmpDir('ofl-sled-kill-')
    const script = `
      const { SledCache, acquireLock, releaseLock } = require(${JSON.stringify(path.resolve(__dirname, '../../lib/index.js'))})
      SledCache.open({ path: ${JSON.stringify(folder)}, namespace: 'k' }).then(async (c) => {
        console.log('OPEN')
        for (let i = 0; ; i++) {
          await c.set('key' + (i % 200), { i, pad: 'x'.repeat(i % 300) })
          const p = await acquireLock('/kill/f' + (i % 50), 'a', 's' + (i % 3), c).catch(() => null)
          if (p && i % 2) await releaseLock(p, 's' + (i % 3), c)
        }
      })`
    let reopened = 0
    for (let round = 0; round < 50; round++) {
      const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] })
      children.push(child)
      let out = ''
      child.stdout!.on('data', (d) => (out += d))
      for (let i = 0; i < 200 && !out.includes('OPEN'); i++) await sleep(10)
      await sleep(20 + ((round * 37) % 150)) // writes (and background flushes) under way
      child.kill('SIGKILL')
      await new Promise((r) => child.once('exit', r))
      const cache = await SledCache.open({ path: folder, namespace: 'k' })
      for (let k = 0; k < 200; k++) {
        const v = await cache.get(`key${k}`) // ECORRUPT would throw here
        if (v !== undefined) expect(v).toMatchObject({ i: expect.any(Number) })
      }
      for await (const [, v] of cache.entries()) expect(v).toBeDefined()
      await cache.close()
      reopened++
    }
    expect(reopened).toBe(50)
  })
})
