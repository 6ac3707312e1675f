#!/usr/bin/env node
'use strict'
// npm run bench:wake: how soon a waiting acquire gets a lock after its holder releases it.
//
// Each sample: a holder takes a file, a waiter starts waiting for it (on a second connection for
// Redis), the holder releases; the sample is the time from the release call to the waiter's grant.
// Subjects: this package on sled (in-process wake-ups) and on Redis (pub/sub wake-ups), and
// redlock v5 on ioredis, which waits by retrying (its defaults: every 200 ms + up to 200 ms jitter).
// WAKE_RUNS runs (default 5) of WAKE_SAMPLES samples (default 100; redlock 20); the table shows the
// median over runs of each run's p50 and p99. redis-server is started here on a free 127.0.0.1 port.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const L = require('../lib/index.js')

const RUNS = Number(process.env.WAKE_RUNS ?? 5)
const SAMPLES = Number(process.env.WAKE_SAMPLES ?? 100)
const progress = (msg) => process.stderr.write(`[bench:wake] ${msg}\n`)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ofl-wake-'))

const startRedis = () => require('./redis-server.js').startRedis(tmp)

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]
}
const median = (xs) => quantile(xs, 0.5)

/** One run: `samples` hand-overs; `take(file)` resolves when the holder has it and returns its release. */
async function run(samples, hold, wait) {
  const lat = []
  for (let i = 0; i < samples; i++) {
    const file = `/wake/${i % 10}`
    const release = await hold(file)
    let woke = 0
    const waiting = wait(file).then((releaseWaiter) => {
      woke = performance.now()
      return releaseWaiter
    })
    await sleep(5) // the waiter has tried, queued and is asleep
    const t0 = performance.now()
    await release()
    const releaseWaiter = await waiting
    lat.push(woke - t0)
    await releaseWaiter()
  }
  return { p50: quantile(lat, 0.5), p99: quantile(lat, 0.99) }
}

async function subject(name, samples, setup) {
  const runs = []
  for (let r = 0; r < RUNS; r++) {
    const { hold, wait, close } = await setup(r)
    runs.push(await run(samples, hold, wait))
    await close()
    progress(`${name} run ${r + 1}/${RUNS}: p50 ${runs.at(-1).p50.toFixed(2)} ms, p99 ${runs.at(-1).p99.toFixed(2)} ms`)
  }
  return { subject: name, samples, runs, p50: median(runs.map((x) => x.p50)), p99: median(runs.map((x) => x.p99)) }
}

function locks(holderCache, waiterCache) {
  return {
    hold: async (file) => {
      const p = await L.acquireLock(file, 'holder', 'holder', holderCache)
      return () => L.releaseLock(p, 'holder', holderCache)
    },
    wait: async (file) => {
      const p = await L.acquireLock(file, 'waiter', 'waiter', waiterCache, { waitMs: 10_000 })
      return () => L.releaseLock(p, 'waiter', waiterCache)
    },
  }
}

async function main() {
  const redis = await startRedis()
  const results = []
  try {
    results.push(
      await subject('native-sled', SAMPLES, async (r) => {
        const c = await L.SledCache.open({ path: path.join(tmp, `sled-${r}`), namespace: 'wake' })
        return { ...locks(c, c), close: () => c.close() }
      }),
    )
    results.push(
      await subject('native-redis', SAMPLES, async (r) => {
        const a = await L.RedisCache.connect({ port: redis.port, namespace: `wake-${r}` })
        const b = await L.RedisCache.connect({ port: redis.port, namespace: `wake-${r}` })
        return { ...locks(a, b), close: async () => (await a.close(), await b.close()) }
      }),
    )
    const Redis = require('ioredis')
    const Redlock = require('redlock').default
    results.push(
      await subject('redlock (retry 200 ms + jitter)', Math.min(SAMPLES, 20), async () => {
        const ca = new Redis({ host: '127.0.0.1', port: redis.port })
        const cb = new Redis({ host: '127.0.0.1', port: redis.port })
        const holder = new Redlock([ca], { retryCount: 0 })
        const waiter = new Redlock([cb], { retryCount: 100 }) // default delay and jitter
        return {
          hold: async (file) => {
            const lock = await holder.acquire([`redlock:${file}`], 300_000)
            return () => lock.release()
          },
          wait: async (file) => {
            const lock = await waiter.acquire([`redlock:${file}`], 300_000)
            return () => lock.release()
          },
          close: async () => (await ca.quit(), await cb.quit()),
        }
      }),
    )
  } finally {
    redis.child.kill('SIGKILL')
    fs.rmSync(tmp, { recursive: true, force: true })
  }
  const peer = results.find((r) => r.subject.startsWith('redlock'))
  console.log(`\nWake-up after release: medians of ${RUNS} runs (each run's p50 / p99)\n`)
  console.log('| subject | samples/run | p50 ms | p99 ms | p50 vs redlock |')
  console.log('|---|---|---|---|---|')
  for (const r of results) {
    console.log(`| ${r.subject} | ${r.samples} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${(r.p50 / peer.p50).toFixed(4)}x |`)
  }
  const out = path.join(__dirname, 'results', 'wake-latest.json')
  fs.mkdirSync(path.dirname(out), { recursive: true })
  fs.writeFileSync(out, JSON.stringify({ at: new Date().toISOString(), runs: RUNS, results }, null, 2) + '\n')
  console.log(`\nwritten to ${path.relative(process.cwd(), out)}`)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
