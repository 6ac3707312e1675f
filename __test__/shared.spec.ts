// The default sled store shared by every process of the user: real processes, one serving the
// folder over its Unix socket and the others its clients; the server killed with kill -9 while
// the others work; strangers on the socket and folders of other users.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { acquireLock, listLocks, releaseLock, SledCache } from '../lib/index.js'
import { check, nowUs } from './fault/checker'
import { startLockProcess, type LockProcess } from './helpers/lock-process'
import { startRedis } from './helpers/redis-server'
import { sleep, tmpDir } from './helpers/tmp'

vi.setConfig({ testTimeout: 90_000 })

const procs: LockProcess[] = []
afterEach(async () => {
  for (const p of procs.splice(0)) await p.kill()
})
async function lockProcess(cfg: Record<string, unknown>) {
  const p = await startLockProcess(cfg)
  procs.push(p)
  return p
}

/** The pid of the process serving `folder`, as it wrote itself into ofl.lock. */
const serverPid = (folder: string) => Number(fs.readFileSync(path.join(folder, 'ofl.lock'), 'utf8').trim())

describe('one lock table for every process of the user', () => {
  it('a second process shares the folder: it is refused a file the first holds, and the first sees its locks', async () => {
    const folder = path.join(tmpDir('ofl-shared-'), 'locks')
    const a = await lockProcess({ path: folder })
    const b = await lockProcess({ path: folder })
    expect((await a.call('health')).shared).toMatchObject({ role: 'server', pid: a.pid })
    expect((await b.call('health')).shared).toMatchObject({ role: 'client', serverPid: a.pid })
    const p = await a.call('acquire', '/proj/src/app.ts', 'session-a')
    const err = await b.call('acquire', '/proj/src/app.ts', 'session-b').catch((e) => e)
    expect(err.code).toBe('ELOCKED')
    expect(err.message).toMatch(/^File \/proj\/src\/app.ts is locked by another agent: agent agent-\d+ \(session session-a\)/)
    expect(err.holder).toMatchObject({ sessionId: 'session-a', path: p })
    await b.call('acquire', '/proj/src/other.ts', 'session-b')
    expect((await a.call('list')).map((r: any) => r.path).sort()).toEqual(['/proj/src/app.ts', '/proj/src/other.ts'])
    // and this test process is a third: a client too
    const mine = await SledCache.open({ path: folder, namespace: 'locks' })
    expect((await mine.healthCheck()).shared.role).toBe('client')
    await expect(acquireLock('/proj/src/other.ts', 'me', 'session-c', mine)).rejects.toMatchObject({ code: 'ELOCKED', holder: { sessionId: 'session-b' } })
    expect(await a.call('release', p, 'session-a')).toBe(true)
    expect(await acquireLock('/proj/src/app.ts', 'me', 'session-c', mine)).toBe('/proj/src/app.ts')
    await mine.close()
  })

  it('kill -9 of the serving process: a client serves within 1 s, every lock a live client held is still held with its token', async () => {
    const folder = path.join(tmpDir('ofl-shared-'), 'locks')
    const server = await lockProcess({ path: folder })
    const b = await lockProcess({ path: folder })
    const c = await lockProcess({ path: folder })
    await b.call('acquire', '/k/b-held', 'session-b')
    await c.call('acquire', '/k/c-held', 'session-c')
    const before = Object.fromEntries((await b.call('list')).map((r: any) => [r.path, r.token]))
    expect(serverPid(folder)).toBe(server.pid)
    const killedAt = Date.now()
    await server.kill('SIGKILL')
    // both survivors grant again within a second, one of them now serving
    const back = await Promise.all(
      [b, c].map(async (p, i) => {
        for (;;) {
          const ok = await p.call('acquire', `/k/new-${i}`, `session-${i}`).then(() => true, () => false)
          if (ok) return Date.now() - killedAt
          await sleep(5)
        }
      }),
    )
    console.log('back to granting after kill -9 of the server, ms:', back)
    expect(Math.max(...back)).toBeLessThan(1000)
    expect([b.pid, c.pid]).toContain(serverPid(folder))
    const after = Object.fromEntries((await c.call('list')).map((r: any) => [r.path, r.token]))
    expect(after['/k/b-held']).toBe(before['/k/b-held'])
    expect(after['/k/c-held']).toBe(before['/k/c-held'])
    await expect(c.call('acquire', '/k/b-held', 'session-x')).rejects.toMatchObject({ code: 'ELOCKED', holder: { sessionId: 'session-b' } })
    expect(await b.call('release', '/k/b-held', 'session-b')).toBe(true)
    expect(await b.call('lost')).toEqual([])
    expect(await c.call('lost')).toEqual([])
  })

  it('a waiter in a client process is woken by a release in another, and keeps waiting across a takeover', async () => {
    const folder = path.join(tmpDir('ofl-shared-'), 'locks')
    const server = await lockProcess({ path: folder })
    const holder = await lockProcess({ path: folder })
    const waiter = await lockProcess({ path: folder })
    await holder.call('acquire', '/w/file', 'session-h')
    const t = Date.now()
    const waited = waiter.call('acquire', '/w/file', 'session-w', { waitMs: 10_000 })
    await sleep(300)
    await server.kill('SIGKILL') // the wait goes on against the new server
    await sleep(300)
    await holder.call('release', '/w/file', 'session-h')
    expect(await waited).toBe('/w/file')
    const took = Date.now() - t
    expect(took).toBeGreaterThanOrEqual(600)
    expect(took).toBeLessThan(2500) // woken by the release, not at the end of its 10 s
  })

  it('6 processes x 4 sessions x 20 files, the serving process killed with kill -9 20 times: no double grant, every process back within 1 s, no hang, nothing lost', async () => {
    const dir = tmpDir('ofl-shared-fault-')
    const folder = path.join(dir, 'locks')
    const WORKER = path.join(__dirname, 'fault/worker.js')
    type W = { child: ChildProcess; log: string; started: number; killedAt?: number; out: string; done: Promise<number | null> }
    const workers: W[] = []
    const until = Date.now() + 15_000
    const start = (i: number): W => {
      const log = path.join(dir, `w${i}.log`)
      const child = spawn(process.execPath, [WORKER, JSON.stringify({ name: `p${i}`, backend: 'sled', sledPath: folder, sessions: 4, files: 20, until, holdMs: 3, ttlMs: 1000, log })], { stdio: ['ignore', 'pipe', 'pipe'] })
      const w: W = { child, log, started: nowUs() / 1000, out: '', done: new Promise((r) => child.once('exit', (code) => r(code))) }
      child.stdout!.on('data', (d) => (w.out += d))
      child.stderr!.on('data', (d) => (w.out += d))
      workers.push(w)
      return w
    }
    const ready = async (w: W) => {
      for (let i = 0; i < 400 && !w.out.includes('READY'); i++) await sleep(10)
    }
    for (let i = 0; i < 6; i++) await ready(start(i))
    await sleep(500)
    const kills: number[] = []
    for (let k = 0; k < 20; k++) {
      let victim: W | undefined
      for (let tries = 0; !victim && tries < 200; tries++) {
        const pid = serverPid(folder)
        victim = workers.find((w) => w.child.pid === pid && w.killedAt === undefined)
        if (!victim) await sleep(10)
      }
      expect(victim, `kill ${k}: the serving process is one of the workers`).toBeDefined()
      victim!.killedAt = nowUs() / 1000 // ms on the workers' log clock
      victim!.child.kill('SIGKILL')
      await victim!.done
      kills.push(victim!.killedAt)
      start(6 + k) // a new process takes the dead one's place
      await sleep(450)
    }
    const codes = await Promise.all(workers.filter((w) => w.killedAt === undefined).map((w) => w.done))
    expect(codes.every((c) => c === 0)).toBe(true) // every survivor finished: no acquire hung
    const endsAt = Object.fromEntries(workers.filter((w) => w.killedAt).map((w) => [w.log, w.killedAt! * 1000]))
    const verdict = check(workers.map((w) => w.log), endsAt)
    const survivors = workers.filter((w) => w.killedAt === undefined).map((w) => JSON.parse(w.out.trim().split('\n').pop()!))
    const sum = (k: string) => survivors.reduce((n, c) => n + (c[k] ?? 0), 0)
    // every process alive across a kill grants again within 1 s of it
    const grants = new Map(workers.map((w) => [w, fs.readFileSync(w.log, 'utf8').split('\n').filter((l) => l.includes('"grant"')).map((l) => JSON.parse(l).t / 1000)]))
    const gaps: number[] = []
    for (const t of kills) {
      for (const w of workers) {
        const alive = w.started < t - 300 && (w.killedAt === undefined || w.killedAt > t + 1000)
        if (!alive) continue
        const next = grants.get(w)!.find((g) => g > t)
        gaps.push(next === undefined ? Infinity : next - t)
      }
    }
    console.log('shared store, 20 x kill -9 of the server', JSON.stringify({ grants: verdict.grants, double: verdict.doubleGrants.length, tokenRegressions: verdict.tokenRegressions, maxBackMs: Math.round(Math.max(...gaps)), p50BackMs: Math.round(gaps.sort((a, b) => a - b)[gaps.length >> 1]), maxAcquireMs: Math.max(...survivors.map((c) => c.maxAcquireMs)), releasedNotHeld: sum('releasedNotHeld'), errors: { EBACKEND: sum('EBACKEND'), ETIMEDOUT: sum('ETIMEDOUT') } }))
    expect(kills).toHaveLength(20)
    expect(verdict.grants).toBeGreaterThan(2000)
    expect(verdict.doubleGrants).toEqual([])
    expect(verdict.tokenRegressions).toBe(0)
    expect(Math.max(...gaps)).toBeLessThan(1000)
    expect(sum('releasedNotHeld')).toBe(0) // no live client's lock was lost
    expect(Math.max(...survivors.map((c) => c.maxAcquireMs))).toBeLessThan(5000)
  })
})

describe('only the same user, only our protocol', () => {
  it('a lock folder owned by another user is refused with a message saying so', async () => {
    let folder = tmpDir('ofl-other-user-')
    if (process.getuid!() === 0) fs.chownSync(folder, 65534, 65534)
    else folder = '/' // owned by root: another user's folder for anyone else
    const err = await SledCache.open({ path: folder }).catch((e) => e)
    expect(err.code).toBe('EBACKEND')
    expect(err.message).toContain('belongs to another user')
    expect(err.message).toContain('FILE_LOCK_PATH')
  })

  it('a process of another user is turned away even when the folder is opened up', async () => {
    const folder = path.join(tmpDir('ofl-peer-'), 'locks')
    const cache = await SledCache.open({ path: folder, namespace: 'locks' })
    const socket = (await cache.healthCheck()).shared.socket
    expect(fs.statSync(folder).mode & 0o777).toBe(0o700)
    expect(fs.statSync(socket).mode & 0o777).toBe(0o600)
    if (process.getuid!() === 0) {
      // open the folder and socket to everyone: the peer-credential check still says no
      fs.chmodSync(path.dirname(folder), 0o755)
      fs.chmodSync(folder, 0o755)
      fs.chmodSync(socket, 0o777)
      const script = `const s = require('net').connect(${JSON.stringify(socket)}); const h = Buffer.from(JSON.stringify({hello:'opencode-file-lock',protocol:2,version:'0',pid:process.pid}));
        const len = Buffer.alloc(4); len.writeUInt32LE(h.length); let connected = false; s.on('connect', () => { connected = true; s.write(Buffer.concat([len, h])) });
        let got = 0; s.on('data', (d) => (got += d.length)); s.on('close', () => console.log(JSON.stringify({ connected, got }))); s.on('error', () => {})`
      const r = spawnSync(process.execPath, ['-e', script], { uid: 65534, gid: 65534, encoding: 'utf8', cwd: '/', timeout: 10_000 })
      expect(JSON.parse(r.stdout.trim())).toEqual({ connected: true, got: 0 }) // connected, then closed without a word
    }
    const p = await acquireLock('/still/serving', 'a', 's', cache)
    expect(await releaseLock(p, 's', cache)).toBe(true)
    await cache.close()
  })

  it('garbage on the socket, and a client killed in the middle of a frame: dropped, nothing lost, the others still served', async () => {
    const folder = path.join(tmpDir('ofl-garbage-'), 'locks')
    const server = await lockProcess({ path: folder })
    const client = await lockProcess({ path: folder })
    await client.call('acquire', '/g/kept', 'session-c')
    const socket = (await server.call('health')).shared.socket
    const closedAfter = (bytes: Buffer) =>
      new Promise<number>((resolve) => {
        const s = net.connect(socket, () => s.write(bytes))
        let got = 0
        s.on('data', (d) => (got += d.length))
        s.on('close', () => resolve(got))
        s.on('error', () => {})
      })
    expect(await closedAfter(Buffer.from('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'))).toBe(0)
    expect(await closedAfter(Buffer.concat([Buffer.from([3, 0, 0, 0]), Buffer.from('{{{')]))).toBe(0)
    // a real client process killed while it writes a frame
    const script = `const s = require('net').connect(${JSON.stringify(socket)}, () => { s.write(Buffer.from([0, 1, 0, 0, 123, 34, 105])); setTimeout(() => process.kill(process.pid, 'SIGKILL'), 50) })`
    spawnSync(process.execPath, ['-e', script], { timeout: 10_000 })
    await expect(server.call('acquire', '/g/kept', 'session-s')).rejects.toMatchObject({ code: 'ELOCKED', holder: { sessionId: 'session-c' } })
    expect(await client.call('acquire', '/g/more', 'session-c')).toBe('/g/more')
    expect((await client.call('health')).shared).toMatchObject({ role: 'client', serverPid: server.pid })
  })
})

describe('the hybrid falls back to the shared folder', () => {
  it('with Redis down, two processes on one machine still exclude each other', async () => {
    const redis = await startRedis()
    const port = redis.port
    await redis.stop()
    const folder = path.join(tmpDir('ofl-hybrid-shared-'), 'locks')
    const cfg = { backend: 'hybrid', path: folder, redis: { port, connectTimeoutMs: 300, commandTimeoutMs: 300 }, failMode: 'open', recheckMs: 60_000 }
    const a = await lockProcess(cfg)
    const b = await lockProcess(cfg)
    await a.call('acquire', '/h/file', 'session-a')
    await expect(b.call('acquire', '/h/file', 'session-b')).rejects.toMatchObject({ code: 'ELOCKED', holder: { sessionId: 'session-a' } })
    expect((await b.call('health')).currentBackend).toBe('sled')
  })
})

describe('the CLI beside running processes', () => {
  it('list --json shows the lock another process holds, and status names the serving process', async () => {
    const state = tmpDir('ofl-cli-shared-')
    const env = { XDG_STATE_HOME: state, HOME: state }
    const holder = await lockProcess({ env })
    await holder.call('acquire', '/cli/held.ts', 'session-h')
    const cli = (...args: string[]) => spawnSync(process.execPath, [path.join(__dirname, '../bin/opencode-file-lock.js'), ...args], { encoding: 'utf8', env: { PATH: process.env.PATH, ...env } })
    const list = cli('list', '--json')
    expect(list.status).toBe(0)
    expect(JSON.parse(list.stdout)).toMatchObject([{ path: '/cli/held.ts', sessionId: 'session-h' }])
    const status = cli('status', '--json')
    expect(JSON.parse(status.stdout).shared).toMatchObject({ role: 'client', serverPid: holder.pid })
    const reader = await SledCache.open({ path: path.join(state, 'opencode-file-lock/locks'), namespace: 'locks' })
    try {
      expect(await listLocks(reader)).toHaveLength(1)
    } finally {
      // nothing may still write in the folder when the test's folders are removed
      await reader.close()
      await holder.kill()
    }
  })
})
