#!/usr/bin/env node
'use strict'
// npm run bench:cluster: the Redis store on a Redis Cluster beside the same store on one
// redis-server, in the same run, alternating. The Cluster is six cluster-enabled servers (three
// primaries, a replica each) started here on free 127.0.0.1 ports, joined with
// `redis-cli --cluster create`, stopped by pid. Each measurement is its own process: BENCH_SECONDS
// (2) of C workers, BENCH_RUNS (5) runs, medians. Measures: one file's acquire+release at c=1 and
// c=50, and a 3-file acquireLocks+release whose files hash to three slots (on the Cluster: three
// scripts in slot order, mostly on different primaries; on one server: one script).
//
// Every server shares this machine's cores, so this shows what the Cluster's routing and slot
// grouping cost a client, not the throughput a Cluster of separate machines adds.
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const SECONDS = Number(process.env.BENCH_SECONDS ?? 2)
const RUNS = Number(process.env.BENCH_RUNS ?? 5)
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const progress = (msg) => process.stderr.write(`[bench:cluster] ${msg}\n`)

/** In a worker process: pairs/s and p50 µs of `files` files at once, `concurrency` workers. */
async function worker([target, concurrency, files]) {
  const L = require('../lib/index.js')
  const t = JSON.parse(target)
  const namespace = `bench-${process.pid}`
  const cache = t.cluster ? await L.RedisCache.connect({ cluster: t.cluster, namespace }) : await L.RedisCache.connect({ port: t.port, namespace })
  const c = Number(concurrency)
  const n = Number(files)
  // a worker's files hash to different slots (their lock keys differ)
  const sets = Array.from({ length: c }, (_, w) => Array.from({ length: n }, (_, f) => `/bench/w${w}/part${f}/file.ts`))
  const latencies = []
  const until = performance.now() + SECONDS * 1000
  await Promise.all(
    sets.map(async (paths, w) => {
      while (performance.now() < until) {
        const t0 = performance.now()
        if (n === 1) {
          await L.acquireLock(paths[0], 'bench', `s${w}`, cache)
          await L.releaseLock(paths[0], `s${w}`, cache)
        } else {
          await L.acquireLocks(paths, 'bench', `s${w}`, cache)
          await Promise.all(paths.map((p) => L.releaseLock(p, `s${w}`, cache)))
        }
        latencies.push((performance.now() - t0) * 1000)
      }
    }),
  )
  await cache.close()
  latencies.sort((a, b) => a - b)
  console.log(JSON.stringify({ pairsPerSecond: latencies.length / SECONDS, p50us: latencies[Math.floor(latencies.length / 2)] }))
}

function measure(target, concurrency, files) {
  const r = spawnSync(process.execPath, [__filename, '--worker', JSON.stringify(target), String(concurrency), String(files)], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`worker failed: ${r.stderr}`)
  return JSON.parse(r.stdout.trim().split('\n').pop())
}

async function main() {
  const args = process.argv.slice(2)
  if (args[0] === '--worker') return worker(args.slice(1))
  const { startRedis, startCluster } = require('./redis-server.js')
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ofl-cluster-bench-'))
  progress('starting one redis-server and a six-node cluster')
  const single = await startRedis(tmp)
  const cluster = await startCluster(tmp)
  try {
    const targets = [['one server', { port: single.port }], ['cluster', { cluster: cluster.urls }]]
    const cases = [['1 file', 1, 1], ['1 file', 50, 1], ['3 files (3 slots)', 50, 3]]
    const rows = []
    for (const [what, c, files] of cases) {
      const got = new Map(targets.map(([name]) => [name, []]))
      for (let r = 0; r < RUNS; r++) {
        for (const [name, target] of targets) {
          got.get(name).push(measure(target, c, files))
          progress(`${what}, c=${c}: run ${r + 1}/${RUNS} on ${name}`)
        }
      }
      const med = (name, k) => median(got.get(name).map((x) => x[k]))
      rows.push({ what, c, single: { pairsPerSecond: med('one server', 'pairsPerSecond'), p50us: med('one server', 'p50us') }, cluster: { pairsPerSecond: med('cluster', 'pairsPerSecond'), p50us: med('cluster', 'p50us') } })
    }
    const fmt = (x) => Math.round(x).toLocaleString('en-US')
    console.log(`acquire+release pairs/s and p50 latency, medians of ${RUNS} runs x ${SECONDS}s, alternating; node ${process.version}, ${os.cpus().length} cores, all servers on this machine`)
    console.log('| acquire | workers | one server pairs/s | cluster pairs/s | cluster / one server | one server p50 µs | cluster p50 µs |')
    console.log('|---|---:|---:|---:|---:|---:|---:|')
    for (const r of rows) console.log(`| ${r.what} | ${r.c} | ${fmt(r.single.pairsPerSecond)} | ${fmt(r.cluster.pairsPerSecond)} | ${(r.cluster.pairsPerSecond / r.single.pairsPerSecond).toFixed(2)}x | ${fmt(r.single.p50us)} | ${fmt(r.cluster.p50us)} |`)
    fs.mkdirSync(path.join(__dirname, 'results'), { recursive: true })
    fs.writeFileSync(path.join(__dirname, 'results', 'cluster-latest.json'), JSON.stringify({ node: process.version, cores: os.cpus().length, runs: RUNS, seconds: SECONDS, rows }, null, 2) + '\n')
  } finally {
    single.child.kill('SIGKILL')
    cluster.stop()
    fs.rmSync(tmp, { recursive: true, force: true })
  }
}

main().catch((e) => {
  console.error(`bench failed: ${e.message}`)
  process.exit(1)
})
