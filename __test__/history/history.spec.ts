// The history check, in the spirit of Jepsen: 4 client processes x 8 sessions acquire (waiting or
// not, several files at once, a folder claim), write under their locks after the stale-view check,
// renew and release over 20 files, logging every event, while a nemesis works on them: kill -9 of
// the process serving the shared store (a new client takes its place), SIGSTOP/SIGCONT of a
// process, a client whose clock is skewed (faketime), and on Redis kill -9 of the server and a
// restart without its data. checker.ts then proves no two holders overlapped, tokens only grew, and
// no write was lost. HISTORY_SECONDS sets each store's run (default 16 s; `npm run soak` runs 10
// minutes each and prints the counts).
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { startRedis, type RedisServer } from '../helpers/redis-server'
import { tmpDir } from '../helpers/tmp'
import { check, readLogs } from './checker'

const SECONDS = Number(process.env.HISTORY_SECONDS ?? 16)
const WORKER = path.join(__dirname, 'worker.js')
const nowUs = () => Number(process.hrtime.bigint() / 1000n)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const children: ChildProcess[] = []
const killed = new Set<string>() // the workers the nemesis killed
const died: string[] = [] // workers that ended otherwise than with 0 or by the nemesis
afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL')
})

interface Worker {
  name: string
  child: ChildProcess
  done: Promise<Record<string, any> | undefined>
}

function startWorker(name: string, cfg: Record<string, unknown>, prefix: string[] = []): Worker {
  const [cmd, ...args] = [...prefix, process.execPath, WORKER, JSON.stringify({ name, ...cfg })]
  // a skewed clock is the wall clock only: the monotonic clock the logs are ordered by stays true
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FAKETIME_DONT_FAKE_MONOTONIC: '1' } })
  children.push(child)
  let out = ''
  child.stdout!.on('data', (d) => (out += d))
  child.stderr!.on('data', (d) => (out += d))
  const done = new Promise<Record<string, any> | undefined>((resolve) =>
    child.once('exit', (code, signal) => {
      // a nemesis kill is logged as such; any other end but 0 is the worker's failure, told
      if (code !== 0 && !(signal === 'SIGKILL' && killed.has(name))) {
        died.push(`${name} ${code ?? signal}`)
        console.error(`history worker ${name} ended with ${code ?? signal}: ${out.slice(-2000)}`)
      }
      try {
        resolve(code === 0 ? JSON.parse(out.trim().split('\n').pop()!) : undefined)
      } catch {
        resolve(undefined)
      }
    }),
  )
  return { name, child, done }
}

async function history(store: 'sled' | 'redis' | 'hybrid') {
  const dir = fs.realpathSync(tmpDir(`ofl-history-${store}-`))
  fs.mkdirSync(path.join(dir, 'sub'))
  const nemesisLog = path.join(dir, '.nemesis.jsonl')
  const logNemesis = (o: Record<string, unknown>) => fs.appendFileSync(nemesisLog, `${JSON.stringify({ t: nowUs(), p: 'nemesis', ...o })}\n`)
  let redis: RedisServer | undefined
  if (store !== 'sled') redis = await startRedis()
  const sledPath = path.join(dir, '.locks')
  const until = Date.now() + SECONDS * 1000
  const cfg = (i: number) => ({ store: { backend: store, sledPath, port: redis?.port }, dir, sessions: 8, files: 20, until, log: path.join(dir, `.w${i}.jsonl`), seed: i + 1 })
  const logs = [nemesisLog]
  const workers: Worker[] = []
  let n = 0
  const add = (skew?: string) => {
    const i = n++
    logs.push(cfg(i).log)
    // a client whose clock is off: on Redis far off (the server's clock decides), on the shared store
    // (one machine, its serving process's clock decides) a little
    const w = startWorker(`w${i}`, cfg(i), skew ? ['faketime', '-f', skew] : [])
    if (skew) logNemesis({ ev: 'skew', target: `w${i}`, by: skew })
    workers.push(w)
    return w
  }
  for (let i = 0; i < 4; i++) add(i === 3 ? (store === 'sled' ? '+2s' : '+400s') : undefined)
  const alive = () => workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null)
  const serving = () => {
    try {
      return Number(fs.readFileSync(path.join(sledPath, 'ofl.lock'), 'utf8').trim())
    } catch {
      return 0
    }
  }
  // the nemesis, until the workers' deadline
  await sleep(800)
  for (let round = 0; Date.now() < until - 1500; round++) {
    const pick = round % 3
    if (pick === 0 && store !== 'redis') {
      // kill -9 of the process serving the shared store (on a hybrid: its fallback's server)
      const victim = alive().find((w) => w.child.pid === serving()) ?? alive()[0]
      if (victim) {
        logNemesis({ ev: 'kill', target: victim.name })
        fs.appendFileSync(nemesisLog, `${JSON.stringify({ t: nowUs(), p: victim.name, ev: 'kill' })}\n`)
        killed.add(victim.name)
        victim.child.kill('SIGKILL')
        add()
      }
    } else if (pick === 1 || store === 'redis') {
      const victim = alive()[round % Math.max(1, alive().length)]
      if (victim) {
        logNemesis({ ev: 'stop', target: victim.name })
        victim.child.kill('SIGSTOP')
        await sleep(300 + (round % 3) * 250)
        victim.child.kill('SIGCONT')
        logNemesis({ ev: 'cont', target: victim.name })
      }
    }
    if (pick === 2 && redis) {
      logNemesis({ ev: 'redis-kill' })
      await redis.kill()
      await sleep(300)
      await redis.restart() // without its data: no persistence
      logNemesis({ ev: 'redis-start' })
    }
    await sleep(900)
  }
  const totals = (await Promise.all(workers.map((w) => w.done))).filter(Boolean) as Record<string, any>[]
  await redis?.stop()
  const verdict = check(readLogs(logs), (f) => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : undefined))
  const sum = (k: string) => totals.reduce((a, t) => a + (t[k] ?? 0), 0)
  // which errors the clients met (a hybrid failing closed while Redis is down refuses every call)
  const errorCodes = [...new Set(totals.flatMap((t) => Object.keys(t.firstError ?? {})))]
  const report = { store, seconds: SECONDS, processes: workers.length, grants: verdict.grants, writes: verdict.writes, refused: sum('refused'), deadlocks: sum('deadlocks'), staleRefused: sum('staleRefused'), lost: sum('lost'), errors: sum('errors'), errorCodes, nemesis: verdict.nemesis, overlaps: verdict.overlaps.length, tokenRegressions: verdict.tokenRegressions.length, lostWrites: verdict.lostWrites.length }
  console.log(`history ${JSON.stringify(report)}`)
  if (verdict.overlaps.length + verdict.tokenRegressions.length + verdict.lostWrites.length > 0) {
    // the history outlives the test's temporary folder, to be read again with checker.ts
    const kept = fs.mkdtempSync(path.join(os.tmpdir(), `ofl-history-failed-${store}-`))
    for (const f of logs) if (fs.existsSync(f)) fs.copyFileSync(f, path.join(kept, path.basename(f)))
    console.log(`history: anomalies found; the logs are kept in ${kept}`)
  }
  return { verdict, report }
}

describe('history check under a nemesis: 4 processes x 8 sessions x 20 files', () => {
  for (const store of ['sled', 'redis', 'hybrid'] as const) {
    it(`${store}: no two holders overlap, tokens only grow, no write is lost`, async () => {
      const { verdict, report } = await history(store)
      expect(died).toEqual([])
      expect(verdict.overlaps.slice(0, 5)).toEqual([])
      expect(verdict.tokenRegressions.slice(0, 5)).toEqual([])
      expect(verdict.lostWrites.slice(0, 5)).toEqual([])
      expect(report.grants).toBeGreaterThan(100)
      expect(report.writes).toBeGreaterThan(20)
      expect(Object.values(report.nemesis).reduce((a, b) => a + b, 0)).toBeGreaterThan(3)
    }, (SECONDS + 60) * 1000)
  }
})
