// A lock client process for the fault tests: S sessions loop over F files, taking a lock, holding
// it a few ms and releasing it, for `durationMs`. Every grant and release goes to a JSON-lines log
// with microsecond wall-clock times, which checker.js reads to prove no two holders overlapped.
// usage: node worker.js '<json config>'
'use strict'
const fs = require('node:fs')
const L = require('../../lib/index.js')

const cfg = JSON.parse(process.argv[2])
// µs on the machine-wide monotonic clock, the same in every process (a wall-clock origin sampled at
// each process's start is not: under load it is a few ms off, enough to fake an overlap)
const now = () => Number(process.hrtime.bigint() / 1000n)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const log = fs.openSync(cfg.log, 'a')
const write = (o) => fs.writeSync(log, JSON.stringify(o) + '\n')

async function open() {
  const redis = { port: cfg.port, commandTimeoutMs: cfg.commandTimeoutMs ?? 300, maxRetries: 1, baseDelayMs: 20, maxDelayMs: 100 }
  if (cfg.backend === 'redis') return L.RedisCache.connect({ ...redis, namespace: 'stress' })
  if (cfg.backend === 'cluster') return L.RedisCache.connect({ cluster: cfg.cluster, commandTimeoutMs: cfg.commandTimeoutMs ?? 1000, maxRetries: 3, baseDelayMs: 20, maxDelayMs: 200, namespace: 'stress' })
  if (cfg.backend === 'sled') return L.SledCache.open({ path: cfg.sledPath, namespace: 'stress' })
  if (cfg.backend === 'hybrid-shared') return L.HybridCache.open({ redis, sledPath: cfg.sledPath, namespace: 'stress', failMode: 'open', recheckMs: 60_000 })
  return L.HybridCache.open({ redis, sledPath: cfg.sledPath, namespace: 'stress', failMode: cfg.failMode, recheckMs: 200 })
}

async function session(cache, s, until, counts) {
  const id = `${cfg.name}-s${s}`
  let seed = (s + 1) * 7919 + process.pid
  const rand = (n) => (seed = (seed * 1103515245 + 12345) % 2147483648) % n
  // `maxGrants`: the process stops once it has had that many grants (a count to reach, not a rate)
  while (Date.now() < until && !(cfg.maxGrants && counts.grants >= cfg.maxGrants)) {
    // `multi`: that many files at once (all or nothing), else one
    const wanted = [...new Set(Array.from({ length: cfg.multi ?? 1 }, () => `/stress/file-${rand(cfg.files)}`))]
    let got
    const asked = performance.now()
    try {
      got = await L.acquireLocks(wanted, cfg.name, id, cache, { ttlMs: cfg.ttlMs ?? 30_000, ...(cfg.waitMs ? { waitMs: cfg.waitMs } : {}) })
    } catch (e) {
      counts[e.code] = (counts[e.code] ?? 0) + 1
      if (e.code !== 'ELOCKED') (counts.firstError ??= {})[e.code] ??= String(e.message).slice(0, 300)
      await sleep(e.code === 'ELOCKED' ? 1 : 20)
      continue
    } finally {
      counts.maxAcquireMs = Math.max(counts.maxAcquireMs, Math.round(performance.now() - asked))
    }
    for (const p of got) {
      const rec = await L.getLock(p, cache).catch(() => undefined)
      write({ ev: 'grant', t: now(), file: p, session: id, token: rec?.token })
    }
    counts.grants++
    // `longHoldEvery`: every that many grants of the process, hold `longHoldMs` (across a failover)
    const long = cfg.longHoldEvery && counts.grants % cfg.longHoldEvery === 0
    if (long) await sleep(cfg.longHoldMs)
    else if (cfg.holdMs) await sleep(rand(cfg.holdMs + 1))
    for (const p of got) {
      write({ ev: 'release', t: now(), file: p, session: id })
      // false: the lock was no longer this session's when it let go of it (lost)
      const held = await L.releaseLock(p, id, cache).catch((e) => (counts[`release_${e.code}`] = (counts[`release_${e.code}`] ?? 0) + 1))
      if (held === false) counts.releasedNotHeld++
    }
  }
}

async function main() {
  const cache = await open()
  if (cfg.holdForeverFile) {
    // the "client killed while holding locks" case: take one lock, say so, and wait to be killed
    await L.acquireLock(cfg.holdForeverFile, cfg.name, `${cfg.name}-holder`, cache, { ttlMs: cfg.ttlMs })
    console.log('HOLDING')
    setInterval(() => {}, 1000)
    return
  }
  const counts = { grants: 0, releasedNotHeld: 0, lost: 0, maxAcquireMs: 0 }
  if (cfg.watchLost) cache.onLost(() => counts.lost++)
  console.log('READY')
  const until = cfg.until ?? Date.now() + cfg.durationMs
  await Promise.all(Array.from({ length: cfg.sessions }, (_, s) => session(cache, s, until, counts)))
  await cache.close()
  console.log(JSON.stringify(counts))
}

main().catch((e) => {
  console.error(`worker failed: ${e.code ?? ''} ${e.message}`)
  process.exit(1)
})
