#!/usr/bin/env node
'use strict'
// What folder claims cost the file-only path: acquire+release pairs of files (no claim anywhere),
// this checkout against an earlier build of the package (`--before <folder>`: a checkout of the
// earlier commit, built with `npm run build`), in the same run, alternating, on sled (in the
// process serving the folder) and Redis; and this checkout with a claim held elsewhere in the
// namespace (file acquires then look at the folders above them). Each measurement is its own
// process: BENCH_SECONDS (2) of BENCH_CONCURRENCY (50) workers, BENCH_RUNS (5) runs, medians.
//
//   node bench/claims-cost.js --before ../before
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const SECONDS = Number(process.env.BENCH_SECONDS ?? 2)
const RUNS = Number(process.env.BENCH_RUNS ?? 5)
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 50)
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

/** In a worker process: pairs/s of `lib` on `backend`, optionally with a claim held elsewhere. */
async function worker([libDir, backend, port, claim]) {
  const L = require(path.resolve(libDir, 'lib/index.js'))
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ofl-claims-bench-'))
  const cache = backend === 'sled' ? await L.SledCache.open({ path: dir, namespace: 'bench' }) : await L.RedisCache.connect({ port: Number(port), namespace: `bench-${process.pid}` })
  if (claim === 'claim') await L.acquireLock('/elsewhere/', 'other', 'other-session', cache, { ttlMs: 600_000 })
  let pairs = 0
  const until = performance.now() + SECONDS * 1000
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, i) => {
      const file = `/bench/w${i}/src/deep/file.ts`
      while (performance.now() < until) {
        await L.acquireLock(file, 'bench', `s${i}`, cache)
        await L.releaseLock(file, `s${i}`, cache)
        pairs++
      }
    }),
  )
  await cache.close()
  fs.rmSync(dir, { recursive: true, force: true })
  console.log(JSON.stringify({ pairsPerSecond: pairs / SECONDS }))
}

function measure(libDir, backend, port, claim = '') {
  const r = spawnSync(process.execPath, [__filename, '--worker', libDir, backend, String(port), claim], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`worker failed: ${r.stderr}`)
  return JSON.parse(r.stdout.trim().split('\n').pop()).pairsPerSecond
}

async function main() {
  const args = process.argv.slice(2)
  if (args[0] === '--worker') return worker(args.slice(1))
  const at = args.indexOf('--before')
  const before = at >= 0 ? path.resolve(args[at + 1]) : undefined
  if (before && !fs.existsSync(path.join(before, 'lib/index.js'))) throw new Error(`--before ${before}: no lib/index.js there (a checkout of the earlier commit, built)`)
  const here = path.resolve(__dirname, '..')
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ofl-claims-bench-redis-'))
  const redis = await require('./redis-server.js').startRedis(tmp)
  try {
    const subjects = [...(before ? [['before', before, '']] : []), ['after', here, ''], ['after, a claim elsewhere', here, 'claim']]
    const rows = []
    for (const backend of ['sled', 'redis']) {
      const got = new Map(subjects.map(([name]) => [name, []]))
      for (let r = 0; r < RUNS; r++) {
        for (const [name, dir, claim] of subjects) {
          got.get(name).push(measure(dir, backend, redis.port, claim))
          process.stderr.write(`\r${backend} run ${r + 1}/${RUNS} ${name}        `)
        }
      }
      const base = before ? median(got.get('before')) : undefined
      for (const [name] of subjects) {
        const m = median(got.get(name))
        rows.push(`| ${backend} | ${name} | ${Math.round(m).toLocaleString('en-US')} | ${base ? `${(m / base).toFixed(3)}x` : ''} |`)
      }
    }
    process.stderr.write('\n')
    console.log(`file acquire+release pairs/s, ${CONCURRENCY} workers, medians of ${RUNS} runs x ${SECONDS}s, alternating; node ${process.version}, ${os.cpus().length} cores`)
    console.log('| store | build | pairs/s | vs before |')
    console.log('|---|---|---:|---:|')
    for (const r of rows) console.log(r)
  } finally {
    redis.child.kill('SIGKILL')
    fs.rmSync(tmp, { recursive: true, force: true })
  }
}

main().catch((e) => {
  console.error(`bench failed: ${e.message}`)
  process.exit(1)
})
