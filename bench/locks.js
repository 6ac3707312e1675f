#!/usr/bin/env node
'use strict'
// Lock throughput and latency of this package on its two stores: sled (embedded) and Redis (a
// redis-server started here on a free 127.0.0.1 port, in a temp folder, stopped by pid).
//
// For each backend and concurrency C, C async workers loop acquireLock + releaseLock for
// BENCH_SECONDS (default 2) after a short warm-up. Each worker has its own file and session, so
// pairs never contend: this measures the lock path itself, not waiting for a holder. Every
// measurement is repeated BENCH_RUNS times (default 5) and the table shows medians.
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const L = require('../lib/index.js')

const SECONDS = positiveNumber('BENCH_SECONDS', 2)
const RUNS = Math.round(positiveNumber('BENCH_RUNS', 5))
const WARMUP_MS = 300
const LEVELS = [1, 50]
const AGENT = 'bench-agent'
const REDIS_START_TIMEOUT_MS = 10_000

const progress = (msg) => process.stderr.write(`[bench] ${msg}\n`)
const fileOf = (worker) => `/bench/file-${worker}.txt`
const sessionOf = (worker) => `bench-session-${worker}`

function positiveNumber(name, fallback) {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got ${JSON.stringify(raw)}`)
  return n
}

// ---------------------------------------------------------------------------------------------
// redis-server: our own process, so the numbers do not depend on (or disturb) any other server.

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

/** One PING over a fresh connection; resolves true on +PONG, false on any failure. */
function ping(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port })
    let reply = ''
    const done = (ok) => {
      sock.destroy()
      resolve(ok)
    }
    sock.setTimeout(500, () => done(false))
    sock.once('error', () => done(false))
    sock.once('connect', () => sock.write('PING\r\n'))
    sock.on('data', (d) => {
      reply += d
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'))
    })
  })
}

async function startRedis(dir) {
  const port = await freePort()
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir]
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] })
  if (child.pid) startWatchdog(child.pid)
  // keep its output for the error message if it does not come up
  let log = ''
  const keep = (d) => (log = (log + d).slice(-4000))
  child.stdout.on('data', keep)
  child.stderr.on('data', keep)
  let exited = null
  child.once('exit', (code, signal) => (exited = signal ?? `code ${code}`))
  let spawnError = null
  child.once('error', (e) => (spawnError = e))

  // retry until it answers: the port may be taken between freePort() and redis binding it
  const deadline = Date.now() + REDIS_START_TIMEOUT_MS
  for (;;) {
    if (spawnError) throw new Error(`could not start redis-server: ${spawnError.message}`)
    if (exited) throw new Error(`redis-server exited (${exited}) before answering:\n${log}`)
    if (await ping(port)) return { port, child }
    if (Date.now() > deadline) {
      killNow(child)
      throw new Error(`redis-server on 127.0.0.1:${port} did not answer PING within ${REDIS_START_TIMEOUT_MS} ms:\n${log}`)
    }
    await sleep(50)
  }
}

/**
 * A tiny separate process that SIGKILLs redis-server if this one dies without running its 'exit'
 * handler (a native crash, SIGKILL). It exits by itself once redis-server is gone.
 */
function startWatchdog(redisPid) {
  const code = `
    const [parent, redis] = process.argv.slice(1).map(Number)
    const alive = (pid) => { try { process.kill(pid, 0); return true } catch { return false } }
    setInterval(() => {
      if (!alive(redis)) process.exit(0)
      if (!alive(parent)) { try { process.kill(redis, 'SIGKILL') } catch {} process.exit(0) }
    }, 250)`
  const dog = spawn(process.execPath, ['-e', code, String(process.pid), String(redisPid)], { stdio: 'ignore' })
  dog.unref()
  return dog
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const alive = (child) => child && child.exitCode === null && child.signalCode === null

/** Synchronous, so it also works from the 'exit' handler. */
function killNow(child) {
  if (!alive(child)) return
  try {
    process.kill(child.pid, 'SIGKILL')
  } catch {
    // already gone
  }
}

/** Polite stop (SIGTERM), SIGKILL if it lingers; resolves once the process is gone. */
async function stopRedis(child) {
  if (!alive(child)) return
  const gone = new Promise((r) => child.once('exit', r))
  process.kill(child.pid, 'SIGTERM')
  const timer = setTimeout(() => killNow(child), 2000)
  await gone
  clearTimeout(timer)
}

// ---------------------------------------------------------------------------------------------
// Measuring

/** One acquire + release by `worker` on its own path; fails loudly if the release did nothing. */
async function lockPair(cache, worker) {
  const session = sessionOf(worker)
  const normalized = await L.acquireLock(fileOf(worker), AGENT, session, cache)
  const released = await L.releaseLock(normalized, session, cache)
  if (released !== true) throw new Error(`releaseLock(${normalized}, ${session}) returned ${released}`)
}

/** `concurrency` workers loop lock pairs until `ms` have passed; returns this run's numbers. */
async function measure(cache, concurrency, ms) {
  const latenciesUs = []
  const deadline = process.hrtime.bigint() + BigInt(Math.round(ms * 1e6))
  const worker = async (w) => {
    while (process.hrtime.bigint() < deadline) {
      const start = process.hrtime.bigint()
      await lockPair(cache, w)
      latenciesUs.push(Number(process.hrtime.bigint() - start) / 1000)
    }
  }
  const cpu0 = process.cpuUsage()
  const t0 = process.hrtime.bigint()
  await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)))
  const elapsedS = Number(process.hrtime.bigint() - t0) / 1e9
  const cpu = process.cpuUsage(cpu0)

  const pairs = latenciesUs.length
  latenciesUs.sort((a, b) => a - b)
  return {
    pairs,
    elapsedS,
    pairsPerSec: pairs / elapsedS,
    p50Us: quantile(latenciesUs, 0.5),
    p99Us: quantile(latenciesUs, 0.99),
    cpuUs: cpu.user + cpu.system,
    cpuUsPerPair: (cpu.user + cpu.system) / pairs,
  }
}

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]

function median(xs) {
  const s = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}

/** Warm-up, then RUNS timed runs; medians of each metric, CPU/pair from the median-throughput run. */
async function benchmark(backend, cache, concurrency) {
  progress(`${backend} c=${concurrency} warm-up ${WARMUP_MS} ms`)
  await measure(cache, concurrency, WARMUP_MS)
  const runs = []
  for (let r = 1; r <= RUNS; r++) {
    progress(`${backend} c=${concurrency} run ${r}/${RUNS} (${SECONDS} s) ...`)
    runs.push(await measure(cache, concurrency, SECONDS * 1000))
  }
  // the run ranked in the middle by pairs/s (the lower middle one when RUNS is even)
  const byThroughput = runs.map((run, i) => ({ run, i })).sort((a, b) => a.run.pairsPerSec - b.run.pairsPerSec)
  const medianRun = byThroughput[Math.floor((runs.length - 1) / 2)]
  return {
    backend,
    concurrency,
    pairsPerSec: median(runs.map((r) => r.pairsPerSec)),
    p50Us: median(runs.map((r) => r.p50Us)),
    p99Us: median(runs.map((r) => r.p99Us)),
    cpuUsPerPair: medianRun.run.cpuUsPerPair,
    medianRunIndex: medianRun.i,
    runs,
  }
}

// ---------------------------------------------------------------------------------------------
// Reporting

function fmt(n, digits = 0) {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

function printTable(results) {
  const cpu = os.cpus()
  console.log(`\nlock acquire+release pairs: medians of ${RUNS} runs x ${SECONDS} s; node ${process.version}, ${cpu.length} cores, ${cpu[0]?.model ?? 'unknown CPU'}\n`)
  console.log('| backend | concurrency | pairs/s (median) | p50 µs | p99 µs | CPU µs/pair | runs |')
  console.log('|---|---:|---:|---:|---:|---:|---:|')
  for (const r of results) {
    console.log(`| ${r.backend} | ${r.concurrency} | ${fmt(r.pairsPerSec)} | ${fmt(r.p50Us, 1)} | ${fmt(r.p99Us, 1)} | ${fmt(r.cpuUsPerPair, 1)} | ${r.runs.length} |`)
  }
}

function writeJson(results) {
  const dir = path.join(__dirname, 'results')
  fs.mkdirSync(dir, { recursive: true })
  const file = path.join(dir, 'locks-latest.json')
  const cpus = os.cpus()
  const doc = {
    date: new Date().toISOString(),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpu: cpus[0]?.model ?? null,
    cores: cpus.length,
    secondsPerRun: SECONDS,
    runsPerMeasurement: RUNS,
    warmupMs: WARMUP_MS,
    results,
  }
  fs.writeFileSync(file, JSON.stringify(doc, null, 2) + '\n')
  progress(`wrote ${path.relative(process.cwd(), file) || file}`)
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ofl-bench-locks-'))
  let redis = null
  // never leave redis-server behind, however we leave (error, Ctrl-C, process.exit)
  process.on('exit', () => redis && killNow(redis.child))
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(sig === 'SIGINT' ? 130 : 143))

  try {
    fs.mkdirSync(path.join(tmp, 'redis'))
    progress('starting redis-server')
    redis = await startRedis(path.join(tmp, 'redis'))
    progress(`redis-server pid ${redis.child.pid} on 127.0.0.1:${redis.port}`)

    const backends = [
      ['sled', () => L.SledCache.open({ path: fs.mkdtempSync(path.join(tmp, 'sled-')), namespace: 'bench' })],
      ['redis', () => L.RedisCache.connect({ host: '127.0.0.1', port: redis.port, namespace: 'bench' })],
    ]
    const results = []
    for (const [backend, open] of backends) {
      const cache = await open()
      try {
        for (const c of LEVELS) results.push(await benchmark(backend, cache, c))
      } finally {
        await cache.close()
      }
    }
    printTable(results)
    writeJson(results)
  } finally {
    if (redis) await stopRedis(redis.child)
    fs.rmSync(tmp, { recursive: true, force: true })
  }
}

main().catch((e) => {
  console.error(`bench failed: ${e.code ? `[${e.code}] ` : ''}${e.stack ?? e.message}`)
  process.exit(1)
})
