#!/usr/bin/env node
// npm run bench:fleet: what reporting the fleet metrics (reportFleetMetrics, which the opencode plugin
// starts) costs the lock path: sled pairs/s at 50 callers with and without it, 5 runs of 2 s
// alternating, medians. The counting itself is the native counters every call already updated.
const L = require('../lib/index.js')
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
;(async () => {
  const c = await L.SledCache.open({ path: require('node:fs').mkdtempSync(require('node:path').join(require('node:os').tmpdir(), 'ofl-bench-fleet-')), namespace: 'bench' })
  const run = async (ms) => {
    let n = 0
    const end = Date.now() + ms
    await Promise.all(Array.from({ length: 50 }, async (_, w) => { while (Date.now() < end) { await L.releaseLock(await L.acquireLock(`/rc/f${w}`, 'a', `s${w}`, c), `s${w}`, c); n++ } }))
    return n / (ms / 1000)
  }
  await run(500)
  const off = [], on = []
  for (let i = 0; i < 5; i++) {
    off.push(await run(2000))
    const stop = L.reportFleetMetrics(c, { everyMs: 5000 })
    on.push(await run(2000))
    await stop()
  }
  console.log(`sled c=50 pairs/s, medians of 5 x 2 s: without reporting ${median(off).toFixed(0)}, with reporting every 5 s ${median(on).toFixed(0)} (${((median(on) / median(off) - 1) * 100).toFixed(1)}%)`)
  await c.close()
})()
