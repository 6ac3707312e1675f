// No lost updates, as a property of many processes: 4 processes x 4 sessions read, write and edit
// 10 files at random through the built plugin, on the shared sled store and on Redis. From the
// logged history the test checks that every write that landed extends the version its writer last
// saw (a whole-file write: what it read or wrote; an edit: what was on disk, and what it saw if it
// saw the file), and that each file's landed writes form one chain from nothing to what is on disk.
// The same workload with FILE_LOCK_STALE=off loses updates: the check is what prevents it.
import { spawn } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { useRedis } from './helpers/backends'
import { tmpDir } from './helpers/tmp'

const WORKER = path.join(__dirname, 'helpers/stale-worker.mjs')
const PROCESSES = 4
const SESSIONS = 4
const FILES = 10

interface Landed {
  file: string
  session: string
  tool: 'write' | 'edit'
  saw: string
  base: string
  before: string
  next: string
}

function worker(cfg: Record<string, unknown>): Promise<Record<string, number>> {
  const child = spawn(process.execPath, [WORKER, JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (d) => (out += d))
  child.stderr.on('data', (d) => (err += d))
  return new Promise((resolve, reject) =>
    child.once('exit', (code) => {
      if (err) console.error(err.slice(-2000))
      if (code === 0) resolve(JSON.parse(out.trim().split('\n').pop()!))
      else reject(new Error(`worker exited ${code}: ${err.slice(-2000)}`))
    }),
  )
}

/** Runs the workload; the history's anomalies and counts. */
async function history(env: Record<string, string>, ms: number) {
  const dir = tmpDir('ofl-history-')
  const logs = Array.from({ length: PROCESSES }, (_, p) => path.join(dir, `.log-${p}.jsonl`))
  const counts = await Promise.all(
    logs.map((log, p) => worker({ dir, files: FILES, sessions: Array.from({ length: SESSIONS }, (_, s) => `p${p}s${s}`), ms, seed: 1 + p, log, env })),
  )
  const landed: Landed[] = logs.flatMap((l) => fs.readFileSync(l, 'utf8').trim().split('\n').filter(Boolean).map((x) => JSON.parse(x)))
  const anomalies: string[] = []
  for (const w of landed) {
    // a whole-file write replaces the file with what its session saw: that must be what was there
    if (w.tool === 'write' && w.base !== w.before) anomalies.push(`${w.session} wrote ${w.file} over ${w.before} from its view ${w.base}`)
    // an edit applies to what is there; if its session had seen the file, that must be what it saw
    if (w.tool === 'edit' && w.saw !== 'absent' && w.saw !== w.before) anomalies.push(`${w.session} edited ${w.file} (${w.before}) from its view ${w.saw}`)
  }
  // per file: the landed writes chain from no file to what is on disk now, each exactly once
  const sha = (s: string) => crypto.createHash('sha1').update(s).digest('hex').slice(0, 12)
  for (let i = 0; i < FILES; i++) {
    const file = `f${i}.txt`
    const writes = landed.filter((w) => w.file === file)
    const after = new Map(writes.map((w) => [w.before, w]))
    let at = 'absent'
    let steps = 0
    while (after.has(at) && steps <= writes.length) {
      at = after.get(at)!.next
      steps++
    }
    const onDisk = fs.existsSync(path.join(dir, file)) ? sha(fs.readFileSync(path.join(dir, file), 'utf8')) : 'absent'
    if (steps !== writes.length || at !== onDisk) anomalies.push(`${file}: ${writes.length} writes landed, ${steps} chain from nothing; the chain ends at ${at}, the disk holds ${onDisk}`)
  }
  const total = counts.reduce((a, c) => Object.fromEntries(Object.keys(c).map((k) => [k, (a[k] ?? 0) + c[k]])), {} as Record<string, number>)
  return { anomalies, total, landed: landed.length }
}

describe('no lost updates across 4 processes x 4 sessions x 10 files', () => {
  const redis = useRedis()

  it('on the shared sled store: every landed write extends what its writer saw, and each file is one chain', async () => {
    const r = await history({ FILE_LOCK_CACHE_BACKEND: 'sled', FILE_LOCK_PATH: tmpDir('ofl-history-sled-') }, 6000)
    console.log(`stale-write history on sled: ${JSON.stringify({ ...r.total, landed: r.landed, anomalies: r.anomalies.length })}`)
    expect(r.anomalies).toEqual([])
    expect(r.landed).toBeGreaterThan(200)
    expect(r.total.stale).toBeGreaterThan(20) // the check had work to do
    expect(r.total.other).toBe(0)
  }, 60_000)

  it('on Redis: the same', async () => {
    const r = await history({ FILE_LOCK_CACHE_BACKEND: 'redis', REDIS_HOST: '127.0.0.1', REDIS_PORT: String(redis().port), FILE_LOCK_NAMESPACE: 'history' }, 6000)
    console.log(`stale-write history on Redis: ${JSON.stringify({ ...r.total, landed: r.landed, anomalies: r.anomalies.length })}`)
    expect(r.anomalies).toEqual([])
    expect(r.landed).toBeGreaterThan(200)
    expect(r.total.stale).toBeGreaterThan(20)
  }, 60_000)

  it('on the hybrid (Redis, sled behind it): the same', async () => {
    const r = await history({ FILE_LOCK_CACHE_BACKEND: 'hybrid', REDIS_HOST: '127.0.0.1', REDIS_PORT: String(redis().port), FILE_LOCK_PATH: tmpDir('ofl-history-hybrid-'), FILE_LOCK_NAMESPACE: 'history-hybrid' }, 6000)
    console.log(`stale-write history on the hybrid: ${JSON.stringify({ ...r.total, landed: r.landed, anomalies: r.anomalies.length })}`)
    expect(r.anomalies).toEqual([])
    expect(r.landed).toBeGreaterThan(200)
    expect(r.total.stale).toBeGreaterThan(20)
  }, 60_000)

  it('with FILE_LOCK_STALE=off the same workload loses updates (locks alone do not prevent it)', async () => {
    const r = await history({ FILE_LOCK_CACHE_BACKEND: 'sled', FILE_LOCK_PATH: tmpDir('ofl-history-off-'), FILE_LOCK_STALE: 'off' }, 2000)
    console.log(`the same with FILE_LOCK_STALE=off: ${JSON.stringify({ ...r.total, landed: r.landed, anomalies: r.anomalies.length })}`)
    expect(r.anomalies.length).toBeGreaterThan(10)
  }, 60_000)
})
