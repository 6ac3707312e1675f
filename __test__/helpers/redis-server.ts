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

/**
 * A server from one of deploy/redis's templates (primary.conf, replica.conf, sentinel.conf), with a
 * free loopback port and its own folder filled in: the deployment example, run as written.
 */
export async function startConfigured(template: string, values: Record<string, string | number>): Promise<RedisServer> {
  const { render } = require('../../deploy/redis/render.js')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ofl-deploy-'))
  const port = await freePort()
  const conf = path.join(dir, template)
  fs.writeFileSync(conf, render(template, { PORT: port, BIND: '127.0.0.1', DIR: dir, ...values }))
  const sentinel = template.startsWith('sentinel')
  const args = sentinel ? ['redis-server', conf, '--sentinel'] : ['redis-server', conf]
  const ready = sentinel ? /Sentinel ID is|monitor master/ : /Ready to accept connections/
  let child = await launchWith(args, ready)
  return {
    port,
    get pid() { return child.pid! },
    dir,
    async kill() { process.kill(child.pid!, 'SIGKILL'); await waitExit(child) },
    async restart() { child = await launchWith(args, ready) },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) await this.kill()
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** Any redis-server / redis-sentinel command line (for example one taken from a compose file), killed by pid. */
export async function startCommand(argv: string[], ready: RegExp): Promise<{ pid: number; kill(): Promise<void> }> {
  const child = await launchWith(argv, ready)
  return {
    pid: child.pid!,
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return
      process.kill(child.pid!, 'SIGKILL')
      await waitExit(child)
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
    child.once('error', (e) => { clearTimeout(timer); live.delete(child); reject(e) })
    child.once('exit', (code) => { clearTimeout(timer); live.delete(child); reject(new Error(`${cmd} exited ${code}: ${out}`)) })
  })
}
