// Real redis-server processes for tests: each on its own free 127.0.0.1 port, killed by pid.
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

/**
 * A free 127.0.0.1 port, reserved for this process until it exits. Test files run side by side, and
 * several kill a server and start it again on the same port: a port handed out by the kernel's
 * listen(0) could go to another file's new server in between, whose clients would then talk to it
 * (a Redis process's script loads counted in someone else's test). So ports come from 10000-19999,
 * below the kernel's own range, each claimed by a file that names the claiming pid (a dead pid's
 * claim is taken over); the port 10000 above (a Cluster node's bus) is left free as well.
 */
export async function freePort(): Promise<number> {
  fs.mkdirSync(PORTS, { recursive: true })
  for (let tries = 0; tries < 500; tries++) {
    const port = 10000 + Math.floor(Math.random() * 10000)
    if (!claim(port)) continue
    if ((await canListen(port)) && (await canListen(port + 10000))) return port
    // taken by something else on the machine: keep the claim (nobody else should try it) and go on
  }
  throw new Error('no free port in 10000-19999 after 500 tries')
}

const PORTS = path.join(os.tmpdir(), 'ofl-test-ports')
const claimed = new Set<string>()
process.on('exit', () => {
  for (const f of claimed) try { fs.unlinkSync(f) } catch {}
})

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e: any) {
    return e.code === 'EPERM'
  }
}

/** Claims `port` for this process: false when a live process holds it. */
function claim(port: number): boolean {
  const f = path.join(PORTS, String(port))
  try {
    fs.writeFileSync(f, String(process.pid), { flag: 'wx' })
    claimed.add(f)
    return true
  } catch (e: any) {
    if (e.code !== 'EEXIST') throw e
  }
  // held, or left by a process that died: one taker at a time looks (mkdir either makes the
  // folder or finds it), so two cannot both take a dead process's port
  const taking = `${f}.taking`
  try { fs.mkdirSync(taking) } catch { return false }
  try {
    const owner = Number(fs.readFileSync(f, 'utf8').trim())
    if (owner > 0 && alive(owner)) return false
    fs.writeFileSync(f, String(process.pid))
    claimed.add(f)
    return true
  } catch {
    return false
  } finally {
    fs.rmdirSync(taking)
  }
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer()
    s.once('error', () => resolve(false))
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)))
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
