// A separate process holding a lock store, driven over stdin/stdout with JSON lines: the tests
// use it to play another opencode (or any process of the user) on the same machine.
// usage: node lock-process-child.js '<json: {path, namespace?, backend?, redis?}>'
// in:  {"id": 1, "op": "acquire" | "release" | "renew" | "list" | "health" | "get" | "set" | "cacheGet"
//       | "sweep" | "now" | "lost" | "forceRelease" | "recordWrites" | "recordView" | "checkFresh" | "close", "args": [...]}
// out: {"id": 1, "ok": value} or {"id": 1, "err": {"code", "message", "holder"}}; first line READY <pid>
'use strict'
const readline = require('node:readline')
const L = require('../../lib/index.js')

const cfg = JSON.parse(process.argv[2] ?? '{}')
const lost = []

async function open() {
  if (cfg.backend === 'hybrid') return L.HybridCache.open({ redis: cfg.redis, sledPath: cfg.path, namespace: cfg.namespace ?? 'locks', failMode: cfg.failMode, recheckMs: cfg.recheckMs })
  if (cfg.backend === 'redis') return L.RedisCache.connect({ ...cfg.redis, namespace: cfg.namespace ?? 'locks' })
  if (cfg.env) return L.openCache({ env: cfg.env })
  return L.SledCache.open({ path: cfg.path, namespace: cfg.namespace ?? 'locks' })
}

const ops = {
  acquire: (c, [file, session, opts]) => L.acquireLock(file, 'agent-' + process.pid, session, c, opts),
  acquireMany: (c, [files, session, opts]) => L.acquireLocks(files, 'agent-' + process.pid, session, c, opts),
  release: (c, [file, session]) => L.releaseLock(file, session, c),
  renew: (c, [file, session, opts]) => L.renewLock(file, session, c, opts),
  set: (c, [key, value, opts]) => c.set(key, value, opts),
  cacheGet: (c, [key]) => c.get(key),
  sweep: (c) => c.sweepExpired(),
  now: () => Date.now(),
  list: (c) => L.listLocks(c),
  waiters: (c) => L.listWaiters(c),
  get: (c, [file]) => L.getLock(file, c),
  health: (c) => c.healthCheck(),
  lost: () => lost,
  forceRelease: (c, [file]) => L.forceRelease(file, c),
  recordWrites: (c, [files, writer, opts]) => L.recordWrites(files, writer, c, opts),
  recordView: (c, [file, tree, opts]) => L.recordView(file, tree, c, opts),
  checkFresh: (c, [files, tree, opts]) => L.checkFresh(files, tree, c, opts),
  close: (c) => c.close(),
}

open().then(
  (cache) => {
    cache.onLost((e) => lost.push(e))
    console.log(`READY ${process.pid}`)
    readline.createInterface({ input: process.stdin }).on('line', async (line) => {
      const { id, op, args } = JSON.parse(line)
      try {
        const ok = await ops[op](cache, args ?? [])
        console.log(JSON.stringify({ id, ok: ok ?? null }))
      } catch (e) {
        console.log(JSON.stringify({ id, err: { code: e.code, message: e.message, holder: e.holder, cycle: e.cycle, released: e.released } }))
      }
    })
  },
  (e) => {
    console.log(JSON.stringify({ id: 0, err: { code: e.code, message: e.message } }))
    process.exit(1)
  },
)
