// Starts __test__/helpers/lock-process-child.js: another process of the user with a lock store.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import path from 'node:path'
import readline from 'node:readline'

const SCRIPT = path.join(__dirname, 'lock-process-child.js')
const live = new Set<ChildProcess>()
process.on('exit', () => {
  for (const c of live) if (c.exitCode === null) try { process.kill(c.pid!, 'SIGKILL') } catch {}
})

export interface LockProcess {
  pid: number
  child: ChildProcess
  /** Runs one operation in that process; rejects with its error (code, message, holder). */
  call(op: string, ...args: unknown[]): Promise<any>
  kill(signal?: NodeJS.Signals): Promise<void>
}

/** `prefix`: a command the process runs under, e.g. ['faketime', '-f', '+400s'] for a skewed clock. */
export function startLockProcess(cfg: Record<string, unknown>, opts: SpawnOptions & { prefix?: string[] } = {}): Promise<LockProcess> {
  const [cmd, ...args] = [...(opts.prefix ?? []), process.execPath, SCRIPT, JSON.stringify(cfg)]
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], ...opts })
  live.add(child)
  child.once('exit', () => live.delete(child))
  let stderr = ''
  child.stderr!.on('data', (d) => (stderr += d))
  const waiting = new Map<number, { resolve: (v: any) => void; reject: (e: any) => void }>()
  let next = 1
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`lock process did not start: ${stderr}`)), 15_000)
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.startsWith('READY ')) {
        clearTimeout(timer)
        resolve(proc)
        return
      }
      const msg = JSON.parse(line)
      if (msg.id === 0) {
        clearTimeout(timer)
        reject(Object.assign(new Error(msg.err.message), msg.err))
        return
      }
      const w = waiting.get(msg.id)
      waiting.delete(msg.id)
      if (msg.err) w?.reject(Object.assign(new Error(msg.err.message), msg.err))
      else w?.resolve(msg.ok)
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      for (const w of waiting.values()) w.reject(new Error(`lock process exited ${code}: ${stderr}`))
      reject(new Error(`lock process exited ${code}: ${stderr}`))
    })
    const proc: LockProcess = {
      pid: child.pid!,
      child,
      call(op, ...args) {
        const id = next++
        return new Promise((res, rej) => {
          waiting.set(id, { resolve: res, reject: rej })
          child.stdin!.write(JSON.stringify({ id, op, args }) + '\n')
        })
      },
      async kill(signal = 'SIGKILL') {
        if (child.exitCode !== null || child.signalCode !== null) return
        const gone = new Promise((r) => child.once('exit', r))
        child.kill(signal)
        await gone
      },
    }
  })
}
