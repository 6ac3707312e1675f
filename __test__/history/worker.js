// One client process of the history test: S sessions doing random acquires (some waiting, some of
// several files, some claims of a folder), writes under their locks (checked against the session's
// view first, as the plugin does), reads, renewals and releases over F files, until a deadline.
// Every event goes to a JSON-lines log, times on the machine-wide monotonic clock (µs), for
// checker.ts. Runs under a nemesis: it may be killed, stopped, or run with a skewed clock.
// usage: node worker.js '<json: {name, store, dir, sessions, files, until, log, seed}>'
'use strict'
const crypto = require('node:crypto')
const fs = require('node:fs')
const path = require('node:path')
const L = require('../../lib/index.js')

const cfg = JSON.parse(process.argv[2])
const now = () => Number(process.hrtime.bigint() / 1000n)
const out = fs.openSync(cfg.log, 'a')
const log = (o) => fs.writeSync(out, `${JSON.stringify({ t: now(), p: cfg.name, ...o })}\n`)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const hash = (s) => (s === undefined ? 'absent' : crypto.createHash('sha1').update(s).digest('hex').slice(0, 12))
const disk = (f) => {
  try {
    return fs.readFileSync(f, 'utf8')
  } catch {
    return undefined
  }
}
let seed = (cfg.seed ?? 1) * 7919 + process.pid
const rand = (n) => (seed = (seed * 1103515245 + 12345) % 2147483648) % n

async function open() {
  const s = cfg.store
  if (s.backend === 'redis') return L.RedisCache.connect({ port: s.port, namespace: 'history', commandTimeoutMs: 1000, maxRetries: 2 })
  if (s.backend === 'hybrid') return L.HybridCache.open({ redis: { port: s.port, commandTimeoutMs: 1000, maxRetries: 2 }, sledPath: s.sledPath, namespace: 'history', failMode: 'closed', recheckMs: 200 })
  return L.SledCache.open({ path: s.sledPath, namespace: 'history' })
}

const counts = { grants: 0, refused: 0, deadlocks: 0, errors: 0, writes: 0, staleRefused: 0, lost: 0, renewals: 0 }

async function session(cache, s) {
  const id = `${cfg.name}-s${s}`
  const file = (i) => path.join(cfg.dir, `f${i}.txt`)
  while (Date.now() < cfg.until) {
    const r = rand(100)
    // what to take: one file, two or three at once, or the folder of half of them (a claim)
    const wanted = r < 10 ? [`${cfg.dir}/sub/`] : r < 30 ? [...new Set([file(rand(cfg.files)), file(rand(cfg.files)), file(rand(cfg.files))])] : [file(rand(cfg.files))]
    const waitMs = rand(3) === 0 ? 0 : 1500
    let got
    try {
      got = await L.acquireLocks(wanted, cfg.name, id, cache, { ttlMs: 30_000, ...(waitMs ? { waitMs } : {}) })
    } catch (e) {
      if (e.code === 'ELOCKED') counts.refused++
      else if (e.code === 'EDEADLK') {
        counts.deadlocks++
        // a session here never holds while it waits: a cycle is only possible through a lock the
        // server holds for it that it does not know of; logged to be read
        log({ ev: 'deadlock', session: id, cycle: e.cycle, released: e.released })
        for (const p of e.released ?? []) log({ ev: 'release', session: id, file: p, why: 'deadlock' })
      } else {
        counts.errors++
        ;(counts.firstError ??= {})[e.code] ??= String(e.message).slice(0, 200)
      }
      await sleep(rand(5))
      continue
    }
    for (const p of got) {
      const rec = await L.getLock(p, cache).catch(() => undefined)
      // the token of this grant (a record of another session means the lock was lost meanwhile)
      log({ ev: 'grant', session: id, file: p, token: rec?.sessionId === id ? rec.token : undefined })
    }
    counts.grants++
    // under the locks: write a file it holds (a claim: a file below it), checked as the plugin does
    const files = got.flatMap((p) => (p.endsWith('/') ? [path.join(p, `c${rand(3)}.txt`)] : [p]))
    const target = files[rand(files.length)]
    if (rand(2) === 0) {
      const [fresh] = await L.checkFresh([target], id, cache, { whole: true }).catch(() => [{ ok: false, status: 'error' }])
      const before = disk(target)
      if (fresh.ok) {
        const next = `${before ?? ''}${id}#${counts.writes}\n`
        // logged before it is done: a process killed in between logged a write that did not happen
        log({ ev: 'write', session: id, file: target, before: hash(before), next: hash(next), status: fresh.status })
        fs.mkdirSync(path.dirname(target), { recursive: true })
        fs.writeFileSync(target, next)
        await L.recordWrites([target], { sessionId: id, agentId: cfg.name }, cache).catch(() => {})
        counts.writes++
      } else {
        counts.staleRefused++
        // it reads the file again: its view is what is there now
        await L.recordView(target, id, cache).catch(() => {})
        log({ ev: 'read', session: id, file: target, seen: hash(disk(target)) })
      }
    }
    if (rand(8) === 0) {
      for (const p of got) {
        await L.renewLock(p, id, cache, { ttlMs: 30_000 }).then(() => counts.renewals++, () => {})
      }
    }
    await sleep(rand(4))
    for (const p of got) {
      log({ ev: 'release', session: id, file: p })
      await L.releaseLock(p, id, cache).catch(() => {})
    }
  }
}

async function main() {
  const cache = await open()
  cache.onLost((e) => {
    counts.lost++
    log({ ev: 'lost', session: e.sessionId, file: e.path, reason: e.reason })
  })
  console.log('READY')
  await Promise.all(Array.from({ length: cfg.sessions }, (_, s) => session(cache, s)))
  await cache.close().catch(() => {})
  fs.closeSync(out)
  console.log(JSON.stringify(counts))
  process.exit(0)
}

main().catch((e) => {
  console.error(`history worker failed: ${e.code ?? ''} ${e.message}`)
  process.exit(1)
})
