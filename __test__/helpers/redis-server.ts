// Real redis-server processes for tests: each on its own free 127.0.0.1 port, killed by pid.
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo
      s.close(() => resolve(port))
    })
  })
}

export interface RedisServer {
  port: number
  pid: number
  dir: string
  /** Stops the server with SIGKILL (no goodbye to clients). */
  kill(): Promise<void>
  /** Starts it again on the same port. */
  restart(): Promise<void>
  stop(): Promise<void>
}

const live = new Set<ChildProcess>()
process.on('exit', () => {
  for (const c of live) if (c.exitCode === null) try { process.kill(c.pid!, 'SIGKILL') } catch {}
})

function launch(port: number, dir: string, extra: string[]): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extra], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    live.add(child)
    let out = ''
    const timer = setTimeout(() => reject(new Error(`redis-server on ${port} did not start: ${out}`)), 10_000)
    const onData = (d: Buffer) => {
      out += d
      if (out.includes('Ready to accept connections')) {
        clearTimeout(timer)
        resolve(child)
      }
    }
    child.stdout!.on('data', onData)
    child.stderr!.on('data', onData)
    child.once('error', (e) => { clearTimeout(timer); reject(e) })
    child.once('exit', (code) => { clearTimeout(timer); live.delete(child); reject(new Error(`redis-server exited ${code}: ${out}`)) })
  })
}

function waitExit(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()))
}

export async function startRedis(extra: string[] = []): Promise<RedisServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ofl-redis-'))
  const port = await freePort()
  let child = await launch(port, dir, extra)
  const server: RedisServer = {
    port,
    get pid() { return child.pid! },
    dir,
    async kill() {
      process.kill(child.pid!, 'SIGKILL')
      await waitExit(child)
      live.delete(child)
    },
    async restart() {
      child = await launch(port, dir, extra)
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) await server.kill()
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
  return server
}

/** A redis-sentinel watching `master` at 127.0.0.1:`primaryPort` (quorum 2, quick failover). */
export async function startSentinel(primaryPort: number, master = 'mymaster', auth?: string): Promise<RedisServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ofl-sentinel-'))
  const port = await freePort()
  const conf = path.join(dir, 'sentinel.conf')
  fs.writeFileSync(
    conf,
    [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor ${master} 127.0.0.1 ${primaryPort} 2`,
      `sentinel down-after-milliseconds ${master} 500`,
      `sentinel failover-timeout ${master} 2000`,
      `sentinel parallel-syncs ${master} 1`,
      ...(auth ? [`sentinel auth-pass ${master} ${auth}`] : []),
    ].join('\n') + '\n',
  )
  let child = await launchWith(['redis-server', conf, '--sentinel'], /Sentinel ID is|monitor master/)
  return {
    port,
    get pid() { return child.pid! },
    dir,
    async kill() { process.kill(child.pid!, 'SIGKILL'); await waitExit(child) },
    async restart() { child = await launchWith(['redis-server', conf, '--sentinel'], /Sentinel ID is|monitor master/) },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) await this.kill()
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}

function launchWith([cmd, ...args]: string[], ready: RegExp): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    live.add(child)
    let out = ''
    const timer = setTimeout(() => reject(new Error(`${cmd} did not start: ${out}`)), 10_000)
    const onData = (d: Buffer) => {
      out += d
      if (ready.test(out)) {
        clearTimeout(timer)
        resolve(child)
      }
    }
    child.stdout!.on('data', onData)
    child.stderr!.on('data', onData)
    child.once('exit', (code) => { clearTimeout(timer); live.delete(child); reject(new Error(`${cmd} exited ${code}: ${out}`)) })
  })
}
