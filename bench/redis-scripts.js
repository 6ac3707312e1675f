#!/usr/bin/env node
'use strict'
// npm run bench:scripts: what the Redis store costs the server, from its own INFO commandstats and
// errorstats, on a redis-server started here (a free 127.0.0.1 port, stopped by pid):
// - server µs per call of each lock script (acquire, re-entry, release, renew, waiting acquire),
//   against SET NX PX and a plain EVALSHA of `return 1` on the same server;
// - releaseAllLocks of a session holding 1,000 locks: time, round trips, and commands run inside;
// - NOSCRIPT replies: 100 first acquires at once on a new connection, then 10,000 operations.
// BENCH_RUNS (default 5) repeats each measure; medians are printed.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { execFileSync } = require('node:child_process')
const L = require('../lib/index.js')

const RUNS = Number(process.env.BENCH_RUNS ?? 5)
const N = Number(process.env.BENCH_CALLS ?? 2000)
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const progress = (msg) => process.stderr.write(`[bench:scripts] ${msg}\n`)

function cli(port, ...args) {
  return execFileSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8' })
}

/** {command: {calls, usec}} and {error: count} from INFO. */
function stats(port) {
  const cmds = {}
  const errors = {}
  for (const line of cli(port, 'INFO', 'commandstats').split('\n')) {
    const m = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/.exec(line.trim())
    if (m) cmds[m[1]] = { calls: Number(m[2]), usec: Number(m[3]) }
  }
  for (const line of cli(port, 'INFO', 'errorstats').split('\n')) {
    const m = /^errorstat_([^:]+):count=(\d+)/.exec(line.trim())
    if (m) errors[m[1]] = Number(m[2])
  }
  return { cmds, errors }
}

const totalCalls = (s) => Object.entries(s.cmds).filter(([c]) => c !== 'info' && c !== 'config|resetstat').reduce((n, [, v]) => n + v.calls, 0)

/** Server µs per EVALSHA while `work` runs (after a reset of the stats). */
async function serverUs(port, work) {
  cli(port, 'CONFIG', 'RESETSTAT')
  await work()
  const s = stats(port).cmds.evalsha
  return s ? s.usec / s.calls : NaN
}

async function main() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ofl-bench-scripts-'))
  const redis = await require('./redis-server.js').startRedis(tmp)
  const stop = () => redis.child.exitCode === null && redis.child.kill('SIGKILL')
  process.on('exit', stop)
  const port = redis.port
  const out = {}
  try {
    // the peers on the same server: a plain SET NX PX, and the cheapest script
    const one = cli(port, 'SCRIPT', 'LOAD', 'return 1').trim()
    const base = { setnx: [], eval1: [] }
    for (let r = 0; r < RUNS; r++) {
      cli(port, 'CONFIG', 'RESETSTAT')
      execFileSync('redis-benchmark', ['-p', String(port), '-n', String(N * 5), '-r', '1000000', '-q', 'SET', 'plain:__rand_int__', 'x', 'NX', 'PX', '300000'])
      execFileSync('redis-benchmark', ['-p', String(port), '-n', String(N * 5), '-q', 'EVALSHA', one, '0'])
      const s = stats(port).cmds
      base.setnx.push(s.set.usec / s.set.calls)
      base.eval1.push(s.evalsha.usec / s.evalsha.calls)
    }
    out['SET NX PX (for scale)'] = median(base.setnx)
    out['EVALSHA of `return 1` (for scale)'] = median(base.eval1)

    const cache = await L.RedisCache.connect({ port, namespace: 'bench' })
    const runs = { acquire: [], reentry: [], release: [], renew: [], waiting: [], acquire3: [] }
    for (let r = 0; r < RUNS; r++) {
      progress(`scripts, run ${r + 1}/${RUNS}`)
      const s = `s-${r}`
      const files = Array.from({ length: N }, (_, i) => `/bench/scripts/${r}/${i}.ts`)
      runs.acquire.push(await serverUs(port, async () => {
        for (const f of files) await L.acquireLock(f, 'bench', s, cache)
      }))
      runs.reentry.push(await serverUs(port, async () => {
        for (const f of files) await L.acquireLock(f, 'bench', s, cache)
      }))
      runs.renew.push(await serverUs(port, async () => {
        for (const f of files) await L.renewLock(f, s, cache, { ttlMs: 300_000 })
      }))
      runs.release.push(await serverUs(port, async () => {
        for (const f of files) await L.releaseLock(f, s, cache)
        for (const f of files) await L.releaseLock(f, s, cache)
      }))
      runs.waiting.push(await serverUs(port, async () => {
        for (const f of files) await L.releaseLock(await L.acquireLock(f, 'bench', s, cache, { waitMs: 1000 }), s, cache)
      }) / 2)
      runs.acquire3.push(await serverUs(port, async () => {
        for (let i = 0; i < N / 4; i++) await L.acquireLocks([`/bench/three/${r}/${i}/a`, `/bench/three/${r}/${i}/b`, `/bench/three/${r}/${i}/c`], 'bench', s, cache)
      }))
      await L.releaseAllLocks({ sessionId: s }, cache)
    }
    out['acquire (a free file)'] = median(runs.acquire)
    out['acquire again by its holder (re-entry)'] = median(runs.reentry)
    out['renew'] = median(runs.renew)
    out['release (half of them the last hold)'] = median(runs.release)
    out['waiting acquire + release, per call'] = median(runs.waiting)
    out['acquire of 3 files at once'] = median(runs.acquire3)

    // releaseAllLocks of 1,000 locks: time and how many commands reached the server
    const bulk = { ms: [], commands: [], trips: [] }
    for (let r = 0; r < RUNS; r++) {
      const s = `bulk-${r}`
      for (let i = 0; i < 1000; i++) await L.acquireLock(`/bench/bulk/${r}/${i}.ts`, 'bench', s, cache)
      cli(port, 'CONFIG', 'RESETSTAT')
      const t = performance.now()
      const n = await L.releaseAllLocks({ sessionId: s }, cache)
      bulk.ms.push(performance.now() - t)
      const after = stats(port)
      bulk.commands.push(totalCalls(after))
      // what the client sent: the script (EVALSHA); the rest ran inside it
      bulk.trips.push(totalCalls(after) - Object.entries(after.cmds).filter(([c]) => c !== 'evalsha' && c !== 'info' && c !== 'config|resetstat').reduce((n, [, v]) => n + v.calls, 0))
      if (n !== 1000) throw new Error(`releaseAllLocks released ${n}, not 1000`)
    }
    await cache.close()

    // NOSCRIPT: a server that knows none of the scripts, 100 first acquires at once, then 10,000 operations
    cli(port, 'SCRIPT', 'FLUSH')
    cli(port, 'CONFIG', 'RESETSTAT')
    const fresh = await L.RedisCache.connect({ port, namespace: 'bench' })
    await Promise.all(Array.from({ length: 100 }, (_, i) => L.acquireLock(`/bench/herd/${i}`, 'bench', `herd-${i}`, fresh)))
    const herd = stats(port)
    for (let i = 0; i < 5000; i++) await L.releaseLock(await L.acquireLock(`/bench/steady/${i % 50}`, 'bench', 'steady', fresh), 'steady', fresh)
    const steady = stats(port)
    await fresh.close()

    console.log(`\nRedis server cost of the lock scripts (INFO commandstats usec_per_call, medians of ${RUNS} runs of ${N} calls); redis-server ${cli(port, 'INFO', 'server').match(/redis_version:(\S+)/)[1]}, ${os.cpus().length} cores, ${os.cpus()[0].model}\n`)
    console.log('| call | server µs per call |')
    console.log('|---|---:|')
    for (const [k, v] of Object.entries(out)) console.log(`| ${k} | ${v.toFixed(2)} |`)
    console.log('\n| measure | value |')
    console.log('|---|---:|')
    console.log(`| releaseAllLocks of 1,000 locks, median ms | ${median(bulk.ms).toFixed(2)} |`)
    console.log(`| releaseAllLocks of 1,000 locks, round trips (EVALSHA sent) | ${median(bulk.trips)} |`)
    console.log(`| releaseAllLocks of 1,000 locks, commands run on the server, inside the script included | ${median(bulk.commands)} |`)
    console.log(`| NOSCRIPT replies, 100 first acquires at once on a fresh connection | ${herd.errors.NOSCRIPT ?? 0} |`)
    console.log(`| SCRIPT LOAD calls for them | ${herd.cmds['script|load']?.calls ?? 0} |`)
    console.log(`| NOSCRIPT replies in the 10,000 operations after | ${(steady.errors.NOSCRIPT ?? 0) - (herd.errors.NOSCRIPT ?? 0)} |`)
  } finally {
    stop()
    fs.rmSync(tmp, { recursive: true, force: true })
  }
}

main().catch((e) => {
  console.error(`bench:scripts failed: ${e.code ? `[${e.code}] ` : ''}${e.stack ?? e.message}`)
  process.exit(1)
})
