#!/usr/bin/env node
'use strict'
// npm run bench: this package against the code it replaces, side by side on one machine and one
// redis-server (started here on a free 127.0.0.1 port, stopped by pid).
//
// Subjects: native Redis store; the same lock semantics in TypeScript on node-redis v5 and on ioredis
// (bench/peers, same Lua scripts); redlock v5; redis-benchmark EVALSHA of the acquire script (the
// server's ceiling); native sled store in the process that serves it, and seen from a client process
// (another process serves the folder); TypeScript on classic-level with level-cache's record format.
// Each (subject, concurrency) runs BENCH_RUNS times (default 5) for BENCH_SECONDS (default 2); the
// table shows medians. Workers use distinct files and sessions: this measures the lock path itself.
const { spawnSync, execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const esbuild = require('esbuild')
const L = require('../lib/index.js')
const { renderChart } = require('./chart.js')

const SECONDS = Number(process.env.BENCH_SECONDS ?? 2)
const RUNS = Number(process.env.BENCH_RUNS ?? 5)
const LEVELS = (process.env.BENCH_CONCURRENCY ?? '1,50,500').split(',').map(Number)
const ONLY = process.env.BENCH_ONLY ? process.env.BENCH_ONLY.split(',') : null
const progress = (msg) => process.stderr.write(`[bench] ${msg}\n`)
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ofl-bench-'))

const startRedis = () => require('./redis-server.js').startRedis(tmp)

/** The TypeScript peers, bundled to CommonJS with esbuild (no build step for users of the bench). */
const peers = {}
function loadPeer(name) {
  if (peers[name]) return peers[name]
  // beside the sources, so the bundle resolves redis/ioredis/classic-level from node_modules
  const out = path.join(__dirname, '.build', `${name}.js`)
  esbuild.buildSync({ entryPoints: [path.join(__dirname, 'peers', `${name}.ts`)], bundle: true, platform: 'node', format: 'cjs', outfile: out, external: ['redis', 'ioredis', 'classic-level'], logLevel: 'error' })
  return (peers[name] = require(out))
}

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

/** C workers, each locking and unlocking its own file, for `ms` milliseconds. */
async function measure(pair, concurrency, ms) {
  const latencies = []
  const deadline = performance.now() + ms
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      while (performance.now() < deadline) {
        const start = performance.now()
        await pair(w)
        latencies.push((performance.now() - start) * 1000)
      }
    }),
  )
  const elapsed = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  latencies.sort((a, b) => a - b)
  return { pairs: latencies.length, pairsPerSec: latencies.length / elapsed, p50us: quantile(latencies, 0.5), p99us: quantile(latencies, 0.99), cpuUsPerPair: (cpu.user + cpu.system) / latencies.length }
}

async function runSubject(name, pair, results) {
  for (const c of LEVELS) {
    progress(`${name} c=${c} warm-up`)
    await measure(pair, c, 300)
    const runs = []
    for (let r = 1; r <= RUNS; r++) {
      progress(`${name} c=${c} run ${r}/${RUNS}`)
      runs.push(await measure(pair, c, SECONDS * 1000))
    }
    const mid = median(runs.map((x) => x.pairsPerSec))
    results.push({ subject: name, concurrency: c, pairsPerSec: mid, p50us: median(runs.map((x) => x.p50us)), p99us: median(runs.map((x) => x.p99us)), cpuUsPerPair: median(runs.map((x) => x.cpuUsPerPair)), runs })
  }
}

/** redis-benchmark EVALSHA of the acquire script on fresh keys, with the keys and arguments the
 * store sends (the peers' acquireCall): what the server can do at most. */
function evalshaCeiling(port, sha, c) {
  const n = c === 1 ? 20_000 : 200_000
  const [keys, args] = loadPeer('common').acquireCall('bench', ['/ceiling/__rand_int__'], 'ceiling', 'agent', 300_000)
  const runs = []
  for (let r = 0; r < RUNS; r++) {
    const out = execFileSync('redis-benchmark', ['-h', '127.0.0.1', '-p', String(port), '-c', String(c), '-n', String(n), '-r', '1000000', '--csv', 'EVALSHA', sha, String(keys.length), ...keys, ...args], { encoding: 'utf8' })
    // the CSV's first field is the command, quotes of the record head unescaped: count from the end
    const fields = out.trim().split('\n').pop().split(',')
    runs.push(Number(JSON.parse(fields[fields.length - 7])))
  }
  return median(runs)
}

async function main() {
  const redis = await startRedis()
  const stop = () => redis.child.exitCode === null && redis.child.kill('SIGKILL')
  process.on('exit', stop)
  process.on('SIGINT', () => process.exit(130))
  const want = (s) => !ONLY || ONLY.includes(s)
  const results = []
  const extras = {}
  const file = (w) => `/bench/file-${w}.txt`
  const session = (w) => `bench-session-${w}`

  if (want('native-redis')) {
    const cache = await L.RedisCache.connect({ port: redis.port, namespace: 'bench' })
    await runSubject('native-redis', async (w) => L.releaseLock(await L.acquireLock(file(w), 'bench', session(w), cache), session(w), cache), results)
    extras.native = await extraTimings({
      acquireLocks: (files, s) => L.acquireLocks(files, 'bench', s, cache),
      releaseAll: (s) => L.releaseAllLocks({ sessionId: s }, cache),
      acquireLock: (f, s) => L.acquireLock(f, 'bench', s, cache),
    })
    await cache.close()
  }
  if (want('node-redis')) {
    const peer = await loadPeer('node-redis').connect(redis.port)
    await runSubject('node-redis', async (w) => peer.releaseLock(await peer.acquireLock(file(w), 'bench', session(w)), session(w)), results)
    extras.nodeRedis = await extraTimings({
      acquireLocks: (files, s) => peer.acquireLocks(files, 'bench', s),
      releaseAll: (s) => peer.releaseAllLocks(s),
      acquireLock: (f, s) => peer.acquireLock(f, 'bench', s),
    })
    await peer.close()
  }
  if (want('ioredis')) {
    const peer = await loadPeer('ioredis').connect(redis.port)
    await runSubject('ioredis', async (w) => peer.releaseLock(await peer.acquireLock(file(w), 'bench', session(w)), session(w)), results)
    await peer.close()
  }
  if (want('redlock')) {
    const Redis = require('ioredis')
    const Redlock = require('redlock').default
    const client = new Redis({ host: '127.0.0.1', port: redis.port })
    const redlock = new Redlock([client], { retryCount: 0 })
    // the store's lock key for the same file (redlock's own value and scripts)
    const lockKey = (w) => `bench\u241F${file(w)}`
    await runSubject('redlock', async (w) => (await redlock.acquire([lockKey(w)], 300_000)).release(), results)
    await client.quit()
  }
  if (want('redis-benchmark')) {
    const common = loadPeer('common')
    execFileSync('redis-cli', ['-p', String(redis.port), 'SET', ...common.EPOCH_MARKER, 'NX'])
    const sha = execFileSync('redis-cli', ['-p', String(redis.port), 'SCRIPT', 'LOAD', common.ACQUIRE_LUA], { encoding: 'utf8' }).trim()
    for (const c of LEVELS) {
      progress(`redis-benchmark EVALSHA c=${c}`)
      results.push({ subject: 'redis-benchmark EVALSHA', concurrency: c, opsPerSec: evalshaCeiling(redis.port, sha, c) })
    }
  }
  stop()
  if (want('native-sled')) {
    const cache = await L.SledCache.open({ path: path.join(tmp, 'sled'), namespace: 'bench' })
    await runSubject('native-sled', async (w) => L.releaseLock(await L.acquireLock(file(w), 'bench', session(w), cache), session(w), cache), results)
    await cache.close()
  }
  if (want('native-sled-client')) {
    // the shared store seen from a client: another process serves the folder, this one asks it
    const folder = path.join(tmp, 'shared')
    const server = require('node:child_process').spawn(process.execPath, ['-e', `require(${JSON.stringify(path.join(__dirname, '../lib/index.js'))}).SledCache.open({ path: ${JSON.stringify(folder)} }).then(() => { console.log('READY'); setInterval(() => {}, 1000) })`], { stdio: ['ignore', 'pipe', 'inherit'] })
    await new Promise((resolve) => server.stdout.once('data', resolve))
    const cache = await L.SledCache.open({ path: folder, namespace: 'bench' })
    const role = (await cache.healthCheck()).shared.role
    if (role !== 'client') throw new Error(`the bench process should be a client of the serving process, but it is the ${role}`)
    await runSubject('native-sled-client', async (w) => L.releaseLock(await L.acquireLock(file(w), 'bench', session(w), cache), session(w), cache), results)
    await cache.close()
    server.kill('SIGKILL')
  }
  if (want('classic-level')) {
    const peer = await loadPeer('level').open(path.join(tmp, 'level'))
    await runSubject('classic-level', async (w) => peer.releaseLock(await peer.acquireLock(file(w), 'bench', session(w)), session(w)), results)
    await peer.close()
  }
  report(results, extras)
  fs.rmSync(tmp, { recursive: true, force: true })
}

/** releaseAllLocks of a session holding 1,000 locks, and a 3-file acquireLocks (with its release). */
async function extraTimings(api) {
  const releaseAllMs = []
  for (let r = 0; r < RUNS; r++) {
    const s = `bulk-${r}-${Math.random()}`
    for (let i = 0; i < 1000; i++) await api.acquireLock(`/bulk/${r}/${i}`, s)
    const t = performance.now()
    const n = await api.releaseAll(s)
    releaseAllMs.push(performance.now() - t)
    if (n !== 1000) throw new Error(`releaseAll released ${n}, not 1000`)
  }
  const threeUs = []
  for (let i = 0; i < 2000; i++) {
    const s = `three-${i}`
    const t = performance.now()
    await api.acquireLocks(['/three/a.ts', '/three/b.ts', '/three/c.ts'], s)
    threeUs.push((performance.now() - t) * 1000)
    await api.releaseAll(s)
  }
  return { releaseAll1000Ms: median(releaseAllMs), acquireLocks3p50us: quantile(threeUs.sort((a, b) => a - b), 0.5) }
}

function report(results, extras) {
  const fmt = (n, d = 0) => (n == null ? '' : n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }))
  const get = (s, c) => results.find((r) => r.subject === s && r.concurrency === c)
  const ratio = (a, b) => (a && b ? `${(a / b).toFixed(2)}x` : '')
  console.log(`\nlock acquire+release pairs, medians of ${RUNS} runs x ${SECONDS}s; node ${process.version}, ${os.cpus().length} cores, ${os.cpus()[0].model}\n`)
  console.log('| subject | concurrency | pairs/s | p50 µs | p99 µs | CPU µs/pair | native vs it (pairs/s) | native vs it (CPU/pair) |')
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|')
  for (const r of results) {
    if (r.opsPerSec) {
      const n = get('native-redis', r.concurrency)
      console.log(`| ${r.subject} (ops/s) | ${r.concurrency} | ${fmt(r.opsPerSec)} ops/s | | | | native ops/s: ${n ? ratio(2 * n.pairsPerSec, r.opsPerSec) : ''} | |`)
      continue
    }
    const native = get(r.subject === 'classic-level' || r.subject === 'native-sled' ? 'native-sled' : 'native-redis', r.concurrency)
    const vs = r.subject.startsWith('native') ? '' : ratio(native?.pairsPerSec, r.pairsPerSec)
    const vsCpu = r.subject.startsWith('native') ? '' : ratio(native?.cpuUsPerPair, r.cpuUsPerPair)
    console.log(`| ${r.subject} | ${r.concurrency} | ${fmt(r.pairsPerSec)} | ${fmt(r.p50us, 1)} | ${fmt(r.p99us, 1)} | ${fmt(r.cpuUsPerPair, 1)} | ${vs} | ${vsCpu} |`)
  }
  const client = (c) => get('native-sled-client', c)
  const rows = []
  const redlock = (c) => get('redlock', c)
  const native = (c) => get('native-redis', c)
  if (native(1) && redlock(1)) rows.push(['Redis store pair p50 at c=1, vs redlock', `${fmt(native(1).p50us, 1)} µs vs ${fmt(redlock(1).p50us, 1)} µs (${ratio(native(1).p50us, redlock(1).p50us)})`, 'no higher than redlock'])
  if (native(50) && redlock(50)) rows.push(['Redis store pairs/s at c=50, vs redlock', ratio(native(50).pairsPerSec, redlock(50).pairsPerSec), 'at least 1x'])
  if (native(500) && redlock(500)) rows.push(['Redis store pairs/s at c=500, vs redlock', ratio(native(500).pairsPerSec, redlock(500).pairsPerSec), 'at least 1.2x'])
  if (extras.native) rows.push(['releaseAllLocks of 1,000 locks (median)', `${fmt(extras.native.releaseAll1000Ms, 2)} ms`, 'at most 10 ms'])
  if (client(1)) rows.push(['shared sled client pair p50 at c=1', `${fmt(client(1).p50us, 1)} µs`, 'under 30 µs'])
  for (const c of [50, 500]) if (client(c) && native(c)) rows.push([`shared sled client pairs/s vs native-redis at c=${c}`, ratio(client(c).pairsPerSec, native(c).pairsPerSec), c === 50 ? 'at least 2x' : 'none (for scale)'])
  if (get('native-sled', 1)) rows.push(['serving process (in-process sled) pair p50 at c=1', `${fmt(get('native-sled', 1).p50us, 1)} µs`, 'under 10 µs'])
  if (rows.length) {
    console.log('\nagainst the targets:\n')
    console.log('| measure | value | target |')
    console.log('|---|---:|---|')
    for (const r of rows) console.log(`| ${r.join(' | ')} |`)
  }
  if (extras.native || extras.nodeRedis) {
    console.log('\n| operation | native | node-redis peer |')
    console.log('|---|---:|---:|')
    console.log(`| releaseAllLocks, session holding 1,000 locks (median ms) | ${fmt(extras.native?.releaseAll1000Ms, 2)} | ${fmt(extras.nodeRedis?.releaseAll1000Ms, 2)} |`)
    console.log(`| acquireLocks of 3 files, p50 µs | ${fmt(extras.native?.acquireLocks3p50us, 1)} | ${fmt(extras.nodeRedis?.acquireLocks3p50us, 1)} |`)
  }
  // BENCH_RESULTS_DIR: where the JSON and chart go (the smoke run keeps the published ones)
  const out = process.env.BENCH_RESULTS_DIR || path.join(__dirname, 'results')
  fs.mkdirSync(out, { recursive: true })
  const meta = { date: new Date().toISOString(), node: process.version, cpu: os.cpus()[0].model, cores: os.cpus().length, seconds: SECONDS, runs: RUNS }
  fs.writeFileSync(path.join(out, 'compare-latest.json'), JSON.stringify({ ...meta, results, extras }, null, 2))
  fs.writeFileSync(path.join(out, 'compare-latest.svg'), renderChart(results, meta))
  progress(`wrote ${path.relative(process.cwd(), out) || '.'}/compare-latest.json and compare-latest.svg`)
}

main().catch((e) => {
  console.error(`bench failed: ${e.code ? `[${e.code}] ` : ''}${e.stack ?? e.message}`)
  process.exit(1)
})
