#!/usr/bin/env node
'use strict'
// Lock acquire+release pairs per second and latency, on sled and on Redis, at concurrency 1 and 50.
// Starts its own redis-server on a free 127.0.0.1 port and stops it by pid. Each measurement runs
// BENCH_RUNS times (default 5) for BENCH_SECONDS (default 2); the table shows medians.
// Workers use distinct paths and sessions, so pairs never contend: this measures the lock path.
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const { SledCache, RedisCache, acquireLock, releaseLock } = require('../lib/index.js')

const SECONDS = Number(process.env.BENCH_SECONDS ?? 2)
const RUNS = Number(process.env.BENCH_RUNS ?? 5)
const LEVELS = (process.env.BENCH_CONCURRENCY ?? '1,50').split(',').map(Number)
const progress = (msg) => process.stderr.write(`[bench] ${msg}\n`)

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

async function startRedis(dir) {
  const port = await freePort()
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] })
  await new Promise((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (d) => (out += d).includes('Ready to accept connections') && resolve())
    child.once('exit', (code) => reject(new Error(`redis-server exited ${code}: ${out}`)))
    setTimeout(() => reject(new Error('redis-server did not start in 10 s')), 10_000).unref()
  })
  return { port, child }
}

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

/** C workers, each locking and unlocking its own file for `ms` milliseconds. */
async function measure(cache, concurrency, ms, record) {
  const latencies = []
  const deadline = performance.now() + ms
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      const file = `/bench/file-${w}.txt`
      const session = `bench-session-${w}`
      while (performance.now() < deadline) {
        const start = process.hrtime.bigint()
        const p = await acquireLock(file, 'bench-agent', session, cache)
        await releaseLock(p, session, cache)
        if (record) latencies.push(Number(process.hrtime.bigint() - start) / 1000)
      }
    }),
  )
  const elapsed = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  latencies.sort((a, b) => a - b)
  return {
    pairs: latencies.length,
    pairsPerSec: latencies.length / elapsed,
    p50us: quantile(latencies, 0.5),
    p99us: quantile(latencies, 0.99),
    cpuUsPerPair: (cpu.user + cpu.system) / latencies.length,
  }
}

async function main() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ofl-bench-'))
  const redis = await startRedis(tmp)
  const stop = () => redis.child.exitCode === null && redis.child.kill('SIGKILL')
  process.on('exit', stop)
  process.on('SIGINT', () => process.exit(130))
  const results = []
  try {
    const backends = {
      sled: await SledCache.open({ path: path.join(tmp, 'sled'), namespace: 'bench' }),
      redis: await RedisCache.connect({ port: redis.port, namespace: 'bench' }),
    }
    for (const [backend, cache] of Object.entries(backends)) {
      for (const c of LEVELS) {
        progress(`${backend} c=${c} warm-up`)
        await measure(cache, c, 300, false)
        const runs = []
        for (let r = 1; r <= RUNS; r++) {
          progress(`${backend} c=${c} run ${r}/${RUNS} (${SECONDS}s)`)
          runs.push(await measure(cache, c, SECONDS * 1000, true))
        }
        const mid = runs.find((x) => x.pairsPerSec === median(runs.map((y) => y.pairsPerSec)))
        results.push({
          backend,
          concurrency: c,
          pairsPerSec: mid.pairsPerSec,
          p50us: median(runs.map((x) => x.p50us)),
          p99us: median(runs.map((x) => x.p99us)),
          cpuUsPerPair: mid.cpuUsPerPair,
          runs,
        })
      }
      await cache.close()
    }
  } finally {
    stop()
  }
  const fmt = (n, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d })
  console.log(`\nlock acquire+release pairs, medians of ${RUNS} runs x ${SECONDS}s (node ${process.version}, ${os.cpus().length} cores, ${os.cpus()[0].model})\n`)
  console.log('| backend | concurrency | pairs/s | p50 µs | p99 µs | CPU µs/pair |')
  console.log('|---|---:|---:|---:|---:|---:|')
  for (const r of results) console.log(`| ${r.backend} | ${r.concurrency} | ${fmt(r.pairsPerSec)} | ${fmt(r.p50us, 1)} | ${fmt(r.p99us, 1)} | ${fmt(r.cpuUsPerPair, 1)} |`)
  const out = path.join(__dirname, 'results')
  fs.mkdirSync(out, { recursive: true })
  const meta = { date: new Date().toISOString(), node: process.version, cpu: os.cpus()[0].model, cores: os.cpus().length, seconds: SECONDS, runs: RUNS }
  fs.writeFileSync(path.join(out, 'locks-latest.json'), JSON.stringify({ ...meta, results }, null, 2))
  fs.rmSync(tmp, { recursive: true, force: true })
}

main().catch((e) => {
  console.error(`bench failed: ${e.code ? `[${e.code}] ` : ''}${e.message}`)
  process.exit(1)
})
