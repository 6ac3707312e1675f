// Starts fault/worker.js in its own process with a JSON config; `done` is its last stdout line
// (its counts) once it exits 0. Children go into `children`, for the caller to kill afterwards.
import { spawn, type ChildProcess } from 'node:child_process'
import path from 'node:path'

const WORKER = path.join(__dirname, 'worker.js')

export function spawnWorker(cfg: Record<string, unknown>, children: ChildProcess[]): { child: ChildProcess; done: Promise<Record<string, any>>; out: () => string } {
  const child = spawn(process.execPath, [WORKER, JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  let out = ''
  let err = ''
  child.stdout!.on('data', (d) => (out += d))
  child.stderr!.on('data', (d) => (err += d))
  const done = new Promise<Record<string, any>>((resolve, reject) =>
    child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop()!)) : reject(new Error(`worker ${cfg.name} exited ${code}: ${err}`)))),
  )
  return { child, done, out: () => out }
}
