// The serving process under a client that abuses the socket (each failed before its fix): frames
// declared huge and sent slowly, more connections than file descriptors. Memory stays bounded, the
// server does not spin, and a normal client keeps being served.
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { startLockProcess, type LockProcess } from './helpers/lock-process'
import { tmpDir } from './helpers/tmp'

const sockets: net.Socket[] = []
const procs: (LockProcess | ChildProcess)[] = []
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy()
  for (const p of procs.splice(0)) 'call' in p ? await p.kill().catch(() => {}) : p.kill('SIGKILL')
})

const rssMb = (pid: number) => Number(fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)![1]) / 1024
const cpuSeconds = (pid: number) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(f[11]) + Number(f[12])) / 100 // utime + stime, in clock ticks of 1/100 s
}
const hello = () => {
  const h = Buffer.from(JSON.stringify({ hello: 'opencode-file-lock', protocol: 3, version: '0.1.0', pid: process.pid }))
  const len = Buffer.alloc(4)
  len.writeUInt32LE(h.length)
  return Buffer.concat([len, h])
}
function connect(socket: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(socket, () => resolve(s))
    s.on('error', reject)
    sockets.push(s)
  })
}

/** A normal client's acquire and release, timed. */
async function served(client: LockProcess, n: number): Promise<number> {
  const t = performance.now()
  const p = await client.call('acquire', `/abuse/normal-${n}`, 'normal')
  await client.call('release', p, 'normal')
  return performance.now() - t
}

describe('the serving process under abuse', () => {
  it('8 clients declaring 60 MiB frames, and 8 trickling frames just under the limit: the server grows by less than 64 MB and a normal client is served', async () => {
    const folder = path.join(tmpDir('ofl-abuse-'), 'locks')
    const server = await startLockProcess({ path: folder })
    procs.push(server)
    const normal = await startLockProcess({ path: folder })
    procs.push(normal)
    const socket = path.join(fs.realpathSync(folder), 'ofl.sock')
    // what a Node process serving the folder holds before anyone abuses it (Node alone is tens of MB)
    await served(normal, -1)
    const baseline = rssMb(server.pid)
    const declare = (bytes: number) => {
      const len = Buffer.alloc(4)
      len.writeUInt32LE(bytes)
      return len
    }
    const abusers: net.Socket[] = []
    for (let i = 0; i < 16; i++) {
      const s = await connect(socket)
      s.on('error', () => {})
      s.write(hello())
      s.write(declare(i < 8 ? 60 << 20 : (4 << 20) - 100))
      abusers.push(s)
    }
    // trickle 256 KiB per client every 50 ms for 6 s (the huge ones are cut off at their first bytes)
    const chunk = Buffer.alloc(256 << 10, 120)
    let peak = 0
    const latencies: number[] = []
    const until = Date.now() + 6000
    for (let n = 0; Date.now() < until; n++) {
      for (const s of abusers) if (!s.destroyed) s.write(chunk)
      peak = Math.max(peak, rssMb(server.pid))
      latencies.push(await served(normal, n))
      await new Promise((r) => setTimeout(r, 50))
    }
    console.log(`under abuse: server RSS ${baseline.toFixed(1)} MB before, peak ${peak.toFixed(1)} MB (+${(peak - baseline).toFixed(1)} MB), normal client p50 ${latencies.sort((a, b) => a - b)[latencies.length >> 1].toFixed(2)} ms, max ${Math.max(...latencies).toFixed(1)} ms`)
    expect(peak - baseline).toBeLessThan(64)
    expect(Math.max(...latencies)).toBeLessThan(1000)
    expect(abusers.slice(0, 8).every((s) => s.destroyed || s.readableEnded || s.writableEnded || s.closed)).toBe(true)
  }, 60_000)

  it('out of file descriptors: the server backs off instead of spinning, and serves again once they are free', async () => {
    const folder = path.join(tmpDir('ofl-emfile-'), 'locks')
    // the serving process with room for only a few connections
    const child = spawn('prlimit', ['--nofile=48:48', process.execPath, path.join(__dirname, 'helpers/lock-process-child.js'), JSON.stringify({ path: folder })], { stdio: ['pipe', 'pipe', 'inherit'] })
    procs.push(child)
    await new Promise<void>((r) => child.stdout!.on('data', (d) => String(d).includes('READY') && r()))
    const socket = path.join(fs.realpathSync(folder), 'ofl.sock')
    const flood: net.Socket[] = []
    for (let i = 0; i < 120; i++) {
      const s = net.connect(socket)
      s.on('error', () => {})
      sockets.push(s)
      flood.push(s)
    }
    await new Promise((r) => setTimeout(r, 500))
    const before = cpuSeconds(child.pid!)
    await new Promise((r) => setTimeout(r, 2000))
    const spent = cpuSeconds(child.pid!) - before
    console.log(`out of descriptors for 2 s: the server used ${spent.toFixed(2)} s of CPU`)
    expect(spent).toBeLessThan(0.5)
    for (const s of flood) s.destroy()
    await new Promise((r) => setTimeout(r, 300))
    const normal = await startLockProcess({ path: folder })
    procs.push(normal)
    expect(await served(normal, 0)).toBeLessThan(2000)
  }, 60_000)
})
