// What the Redis store costs in round trips and script loads, counted on the server (MONITOR, INFO
// commandstats and errorstats), and the direct lane a call alone in flight takes (src/stores/redis/lane.rs)
// keeping every answer right when its connection is killed, the server restarts or asks for a password.
import { spawn } from 'node:child_process'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { acquireLock, acquireLocks, RedisCache, releaseAllLocks, releaseLock, type Cache } from '../lib/index.js'
import { startRedis, type RedisServer } from './helpers/redis-server'
import { redisCliRaw, sleep } from './helpers/tmp'

vi.setConfig({ testTimeout: 60_000 })
const servers: RedisServer[] = []
const opened: Cache[] = []
afterEach(async () => {
  for (const c of opened.splice(0)) await c.close().catch(() => {})
  for (const s of servers.splice(0)) await s.stop()
})

async function server(extra: string[] = []) {
  const s = await startRedis(extra)
  servers.push(s)
  return s
}
async function connect(port: number, o: Record<string, unknown> = {}) {
  const c = await RedisCache.connect({ port, namespace: 'rt', ...o })
  opened.push(c)
  return c
}

/** {command: calls} from INFO commandstats, {error: count} from INFO errorstats. */
function stats(port: number, ...auth: string[]) {
  const calls: Record<string, number> = {}
  const errors: Record<string, number> = {}
  for (const line of redisCliRaw(port, ...auth, 'INFO', 'commandstats').split('\n')) {
    const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line.trim())
    if (m) calls[m[1]] = Number(m[2])
  }
  for (const line of redisCliRaw(port, ...auth, 'INFO', 'errorstats').split('\n')) {
    const m = /^errorstat_([^:]+):count=(\d+)/.exec(line.trim())
    if (m) errors[m[1]] = Number(m[2])
  }
  return { calls, errors }
}

/** The commands the server ran while `f` ran, as MONITOR printed them (other clients' included). */
async function monitored(port: number, f: () => Promise<unknown>): Promise<string[]> {
  const mon = spawn('redis-cli', ['-p', String(port), 'MONITOR'], { stdio: ['ignore', 'pipe', 'ignore'] })
  let out = ''
  mon.stdout.on('data', (d) => (out += d))
  await new Promise((r) => mon.stdout.once('data', r)) // OK: monitoring
  redisCliRaw(port, 'ECHO', 'ofl-mark-start')
  await f()
  redisCliRaw(port, 'ECHO', 'ofl-mark-end')
  for (let i = 0; i < 100 && !out.includes('ofl-mark-end'); i++) await sleep(20)
  mon.kill('SIGKILL')
  const lines = out.split('\n')
  const from = lines.findIndex((l) => l.includes('ofl-mark-start'))
  const to = lines.findIndex((l) => l.includes('ofl-mark-end'))
  expect(from, 'MONITOR saw the start mark').toBeGreaterThanOrEqual(0)
  // the store's restart watch may look in at any time: its script names the epoch marker
  // and what scripts call inside themselves is not a round trip
  return lines.slice(from + 1, to).filter((l) => l.trim() && !l.includes('ofl:epoch') && !/\[\d+ lua\]/.test(l))
}

describe('round trips and script loads, counted on the server', () => {
  it('releaseAllLocks of a session holding 1,000 locks over many slot tags is one command on one server, well under 10 ms', async () => {
    const s = await server()
    const cache = await connect(s.port)
    for (let i = 0; i < 1000; i += 100) await acquireLocks(Array.from({ length: 100 }, (_, j) => `/rt/all/${i + j}.ts`), 'a', 'bulk', cache)
    await acquireLock('/rt/other.ts', 'a', 'someone-else', cache)
    let released = 0
    let ms = 0
    const commands = await monitored(s.port, async () => {
      const t = performance.now()
      released = await releaseAllLocks({ sessionId: 'bulk' }, cache)
      ms = performance.now() - t
    })
    console.log(`releaseAllLocks of 1,000 locks: ${ms.toFixed(2)} ms, server commands: ${commands.length}`)
    expect(released).toBe(1000)
    expect(commands, commands.join('\n').slice(0, 2000)).toHaveLength(1)
    expect(commands[0]).toMatch(/"EVALSHA"/)
    expect(ms).toBeLessThan(100) // 10 ms is the benchmark's target; a loaded CI machine gets slack
    expect(redisCliRaw(s.port, 'DBSIZE')).not.toBe('0') // the other session's lock is still there
    await expect(acquireLock('/rt/all/999.ts', 'b', 'next', cache)).resolves.toBe('/rt/all/999.ts')
  })

  it('no NOSCRIPT after connect: 100 concurrent first acquires and 10,000 operations meet none; the scripts were loaded once, in one pipeline', async () => {
    const s = await server()
    const before = stats(s.port)
    const cache = await connect(s.port)
    await Promise.all(Array.from({ length: 100 }, (_, i) => acquireLock(`/rt/first/${i}.ts`, 'a', `s${i}`, cache)))
    for (let round = 0; round < 50; round++) {
      await Promise.all(
        Array.from({ length: 100 }, async (_, i) => {
          const p = `/rt/ops/${i}.ts`
          await releaseLock(await acquireLock(p, 'a', `w${i}`, cache), `w${i}`, cache)
        }),
      )
    }
    const after = stats(s.port)
    expect(after.errors.NOSCRIPT ?? 0).toBe(0)
    expect((after.calls.evalsha ?? 0) - (before.calls.evalsha ?? 0)).toBeGreaterThanOrEqual(10_100)
    const loads = (after.calls['script|load'] ?? 0) - (before.calls['script|load'] ?? 0)
    expect(loads).toBeGreaterThan(0)
    expect(loads).toBeLessThanOrEqual(20) // one SCRIPT LOAD per script, once
  })

  it('scripts lost without a restart being noticed (SCRIPT FLUSH): 100 concurrent callers reload them once, not once each, and all succeed', async () => {
    const s = await server()
    const cache = await connect(s.port)
    await releaseLock(await acquireLock('/rt/warm.ts', 'a', 'warm', cache), 'warm', cache)
    const scripts = stats(s.port).calls['script|load'] ?? 0
    redisCliRaw(s.port, 'SCRIPT', 'FLUSH')
    const before = stats(s.port)
    const got = await Promise.all(Array.from({ length: 100 }, (_, i) => acquireLock(`/rt/herd/${i}.ts`, 'a', `h${i}`, cache)))
    expect(got).toHaveLength(100)
    const after = stats(s.port)
    const loads = (after.calls['script|load'] ?? 0) - (before.calls['script|load'] ?? 0)
    expect(loads).toBeGreaterThan(0)
    expect(loads).toBeLessThanOrEqual(scripts) // one load of each script, not one per caller
  })
})

describe('the direct lane of a call alone in flight', () => {
  it('every client connection killed between calls: the next calls one at a time all succeed (an idle lane that was closed is not used)', async () => {
    const s = await server()
    const cache = await connect(s.port)
    for (let i = 0; i < 20; i++) await releaseLock(await acquireLock('/rt/lane.ts', 'a', 's', cache), 's', cache)
    redisCliRaw(s.port, 'CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes')
    await sleep(300)
    for (let i = 0; i < 20; i++) {
      expect(await acquireLock('/rt/lane.ts', 'a', 's', cache)).toBe('/rt/lane.ts')
      expect(await releaseLock('/rt/lane.ts', 's', cache)).toBe(true)
    }
  })

  it('a password and a database: calls alone in flight run as that user in that database, and a wrong password is refused without being shown', async () => {
    const s = await server(['--requirepass', 'lane-secret-pw'])
    const cache = await connect(s.port, { password: 'lane-secret-pw', database: 3 })
    for (let i = 0; i < 20; i++) await acquireLock(`/rt/db/${i}.ts`, 'a', 'db-session', cache)
    const auth = ['-a', 'lane-secret-pw', '--no-auth-warning']
    expect(redisCliRaw(s.port, ...auth, '-n', '3', 'EXISTS', 'rt\u241F/rt/db/19.ts')).toBe('1')
    expect(redisCliRaw(s.port, ...auth, '-n', '0', 'EXISTS', 'rt\u241F/rt/db/19.ts')).toBe('0')
    expect(await releaseAllLocks({ sessionId: 'db-session' }, cache)).toBe(20)
    const e: any = await RedisCache.connect({ port: s.port, password: 'wrong-pw-value', namespace: 'rt', connectTimeoutMs: 2000 }).then((c) => { opened.push(c); return acquireLock('/rt/x.ts', 'a', 's', c) }).catch((e) => e)
    expect(e).toBeInstanceOf(Error)
    expect(String(e.message)).not.toContain('wrong-pw-value')
  })

  it('a restart between calls one at a time: the calls after it succeed once the server is back', async () => {
    const s = await server()
    const cache = await connect(s.port)
    for (let i = 0; i < 10; i++) await releaseLock(await acquireLock('/rt/restart.ts', 'a', 's', cache), 's', cache)
    await s.kill()
    await s.restart()
    // a server that lost its data grants again after its grace (RESTART_GRACE_MS): until then,
    // refused as unreachable; then every call one at a time succeeds
    const t = Date.now()
    let first: any
    for (;;) {
      first = await acquireLock('/rt/restart.ts', 'a', 's', cache).catch((e) => e)
      if (first === '/rt/restart.ts' || Date.now() - t > 8000) break
      expect(first.code).toBe('EBACKEND')
      await sleep(100)
    }
    expect(first).toBe('/rt/restart.ts')
    await releaseLock(first, 's', cache)
    let ok = 0
    for (let i = 0; i < 10; i++) {
      const got = await acquireLock('/rt/restart.ts', 'a', 's', cache).catch((e) => e)
      if (got !== '/rt/restart.ts') console.log(`call ${i} after the restart: ${got?.code} ${got?.message}`)
      else {
        ok++
        await releaseLock(got, 's', cache)
      }
    }
    expect(ok).toBe(10)
  })
})
