// The hybrid fails over to sled only when Redis cannot be reached or does not answer. A Redis that
// answers with an error (NOPERM, WRONGTYPE, OOM, BUSY, a WAIT shortfall) is answering: the caller
// gets that error, and nothing moves to the fallback where it would never be written back.
import { spawn } from 'node:child_process'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { acquireLock, HybridCache, RedisCache, releaseLock, type Cache } from '../lib/index.js'
import { startRedis, type RedisServer } from './helpers/redis-server'
import { redisCliRaw, sleep, tmpDir } from './helpers/tmp'

vi.setConfig({ testTimeout: 30_000 })
const SEP = '\u241F'
const servers: RedisServer[] = []
const opened: Cache[] = []
afterEach(async () => {
  for (const c of opened.splice(0)) await c.close().catch(() => {})
  for (const s of servers.splice(0)) await s.stop()
})

async function setup(redis: Record<string, unknown> = {}, extra: string[] = []) {
  const server = await startRedis(extra)
  servers.push(server)
  const hybrid = await HybridCache.open({ redis: { port: server.port, commandTimeoutMs: 1000, ...redis }, sledPath: tmpDir('ofl-hyerr-'), namespace: 'he', failMode: 'open', recheckMs: 100 })
  opened.push(hybrid)
  return { server, hybrid, cli: (...a: string[]) => redisCliRaw(server.port, ...a) }
}

/** The error of `p`, and the hybrid still on Redis afterwards. */
async function answeredWithError(hybrid: any, p: Promise<unknown>) {
  const e: any = await p.then(() => null, (e) => e)
  expect(e, 'the call failed').not.toBeNull()
  expect(e.code).toBe('EBACKEND')
  expect(hybrid.currentBackend()).toBe('redis')
  expect((await hybrid.healthCheck()).switches).toBe(0)
  return e
}

describe('hybrid: a Redis that answers with an error is not a Redis that is down', () => {
  it('NOPERM (an ACL user without a command) and WRONGTYPE (a lock key of another type)', async () => {
    const probe = await startRedis()
    servers.push(probe)
    redisCliRaw(probe.port, 'ACL', 'SETUSER', 'nodel', 'on', '>nodel-pass', '~*', '&*', '+@all', '-del')
    const hybrid = await HybridCache.open({ redis: { port: probe.port, username: 'nodel', password: 'nodel-pass' }, sledPath: tmpDir('ofl-hyerr-'), namespace: 'he', failMode: 'open', recheckMs: 100 })
    opened.push(hybrid)
    await hybrid.set('k', 1)
    const e = await answeredWithError(hybrid, hybrid.del('k'))
    expect(e.message).toMatch(/NOPERM|NoPerm/)
    expect(e.message).not.toContain('nodel-pass')
    redisCliRaw(probe.port, 'HSET', `he${SEP}/he/wrongtype.txt`, 'a', 'b')
    const w = await answeredWithError(hybrid, acquireLock('/he/wrongtype.txt', 'a', 's1', hybrid))
    expect(w.message).toMatch(/WRONGTYPE|attempt to|Script/)
  })

  it('OOM: a full Redis refuses writes; the lock is refused, not granted on the side', async () => {
    const { hybrid, cli } = await setup()
    await acquireLock('/he/before.txt', 'a', 's1', hybrid)
    cli('CONFIG', 'SET', 'maxmemory-policy', 'noeviction')
    cli('CONFIG', 'SET', 'maxmemory', '1')
    const e = await answeredWithError(hybrid, acquireLock('/he/oom.txt', 'a', 's1', hybrid))
    expect(e.message).toMatch(/OOM/)
    cli('CONFIG', 'SET', 'maxmemory', '0')
    await expect(acquireLock('/he/oom.txt', 'a', 's1', hybrid)).resolves.toBe('/he/oom.txt')
  })

  it('BUSY: a script running too long on the server', async () => {
    const { server, hybrid, cli } = await setup()
    cli('CONFIG', 'SET', 'busy-reply-threshold', '50')
    const busy = spawn('redis-cli', ['-p', String(server.port), 'EVAL', 'while true do end', '0'], { stdio: 'ignore' })
    try {
      await sleep(300)
      const e = await answeredWithError(hybrid, acquireLock('/he/busy.txt', 'a', 's1', hybrid))
      expect(e.message).toMatch(/BUSY/)
    } finally {
      cli('SCRIPT', 'KILL')
      await new Promise((r) => busy.once('exit', r))
    }
    await expect(acquireLock('/he/busy.txt', 'a', 's1', hybrid)).resolves.toBe('/he/busy.txt')
  })

  it('a WAIT shortfall: the grant is undone and refused; nothing moves to the fallback', async () => {
    const { hybrid, cli } = await setup({ waitReplicas: 1, waitTimeoutMs: 200 })
    const e = await answeredWithError(hybrid, acquireLock('/he/wait.txt', 'a', 's1', hybrid))
    expect(e.message).toContain('only 0 of 1 replica(s) acknowledged it within 200 ms; it was released again')
    expect(cli('EXISTS', `he${SEP}/he/wait.txt`)).toBe('0')
  })
})

describe('WAIT runs on its own connection', () => {
  it('a WAIT that blocks for its timeout does not hold up the other calls of the same cache', async () => {
    const server = await startRedis()
    servers.push(server)
    const cache = await RedisCache.connect({ port: server.port, namespace: 'wait', waitReplicas: 1, waitTimeoutMs: 1500, commandTimeoutMs: 1000 })
    opened.push(cache)
    await cache.set('k', 'v')
    const t = performance.now()
    const waiting = acquireLock('/w/slow.txt', 'a', 's1', cache).catch((e) => e) // blocks ~1.5 s on WAIT
    await sleep(100)
    const reads: number[] = []
    for (let i = 0; i < 5; i++) {
      const r = performance.now()
      expect(await cache.get('k')).toBe('v')
      reads.push(performance.now() - r)
    }
    const e: any = await waiting
    expect(e.message).toContain('replica(s) acknowledged')
    expect(performance.now() - t).toBeGreaterThan(1400)
    console.log(`WAIT blocking 1.5 s on its own connection: reads meanwhile took ${reads.map((r) => r.toFixed(1)).join(', ')} ms`)
    expect(Math.max(...reads)).toBeLessThan(100)
    await releaseLock('/w/slow.txt', 's1', cache).catch(() => {})
  })
})
