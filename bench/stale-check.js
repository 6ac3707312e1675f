#!/usr/bin/env node
'use strict'
// What the stale-write check adds to a write: the plugin's before and after hooks of one `write`
// call with FILE_LOCK_STALE=refuse against the same with =off, for a 10 KB and a 5 MB file, on the
// default store (sled) and on Redis (its own redis-server, when redis-server is installed). The
// file's own write is not timed, only the hooks. Two cases:
// - "after a read": the session read a file last changed long ago, then writes it (the usual
//   case: one stat settles the check, the after hook hashes the new content once);
// - "rewrite": the session writes a file it wrote a moment ago (the check hashes too: a mark
//   younger than the filesystem's clock tick does not settle it).
// BENCH_RUNS runs (default 5) of BENCH_WRITES writes each; medians of the runs' p50s.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { execFileSync } = require('node:child_process')
const L = require('../lib/index.js')
const { startRedis } = require('./redis-server.js')

const RUNS = Number(process.env.BENCH_RUNS ?? 5)
const WRITES = Number(process.env.BENCH_WRITES ?? 60)
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const SIZES = { '10 KB': 10 * 1024, '5 MB': 5 * 1024 * 1024 }
const OLD = new Date(Date.now() - 3600_000)

async function p50(cache, stale, size, kase) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ofl-stale-bench-'))
  const { FileLockPlugin } = await import('../plugin/dist/file-lock.js')
  const hooks = await FileLockPlugin({ cache, agentId: 'bench', baseDir: dir, stale })
  const file = path.join(dir, 'f.txt')
  const times = []
  for (let i = 0; i < WRITES; i++) {
    const session = kase === 'after a read' ? `ses-${i}` : 'ses-rewrite'
    const content = Buffer.alloc(size, 97 + (i % 26))
    if (kase === 'after a read' || i === 0) {
      fs.writeFileSync(file, content)
      fs.utimesSync(file, OLD, OLD)
      const read = { tool: 'read', sessionID: session, callID: `r${i}` }
      await hooks['tool.execute.before'](read, { args: { filePath: file } })
      await hooks['tool.execute.after'](read, { title: '', output: '', metadata: {} })
    }
    const call = { tool: 'write', sessionID: session, callID: `w${i}` }
    const t0 = process.hrtime.bigint()
    await hooks['tool.execute.before'](call, { args: { filePath: file, content: '' } })
    const t1 = process.hrtime.bigint()
    fs.writeFileSync(file, content) // the tool itself: not timed
    const t2 = process.hrtime.bigint()
    await hooks['tool.execute.after'](call, { title: '', output: '', metadata: {} })
    const t3 = process.hrtime.bigint()
    if (i > 0) times.push(Number(t1 - t0 + (t3 - t2)) / 1e6)
  }
  await hooks.dispose()
  fs.rmSync(dir, { recursive: true, force: true })
  return median(times)
}

async function measure(name, open) {
  const rows = []
  for (const [label, size] of Object.entries(SIZES)) {
    for (const kase of ['after a read', 'rewrite']) {
      const on = []
      const off = []
      for (let r = 0; r < RUNS; r++) {
        const cache = await open()
        off.push(await p50(cache, 'off', size, kase))
        on.push(await p50(cache, 'refuse', size, kase))
        await cache.close()
      }
      const [a, b] = [median(on), median(off)]
      rows.push({ store: name, file: label, case: kase, 'write p50, check off (ms)': b.toFixed(3), 'check on (ms)': a.toFixed(3), 'added (ms)': (a - b).toFixed(3) })
      process.stderr.write(`  ${name} ${label} ${kase}: +${(a - b).toFixed(3)} ms\n`)
    }
  }
  return rows
}

async function main() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ofl-stale-bench-store-'))
  const rows = await measure('sled', () => L.SledCache.open({ path: path.join(tmp, `sled-${Math.random()}`), namespace: 'locks' }))
  let redis
  try {
    execFileSync('redis-server', ['--version'])
    redis = await startRedis(tmp)
  } catch {
    console.error('redis-server is not installed: Redis is left out')
  }
  if (redis) {
    try {
      rows.push(...(await measure('redis', () => L.RedisCache.connect({ port: redis.port, namespace: `locks-${Math.random()}` }))))
    } finally {
      redis.child.kill('SIGKILL')
    }
  }
  console.log(`stale-write check, ${RUNS} runs x ${WRITES} writes, medians of p50s (${os.cpus().length} cores, ${os.cpus()[0]?.model ?? ''}, node ${process.version})`)
  console.table(rows)
  fs.rmSync(tmp, { recursive: true, force: true })
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
