#!/usr/bin/env node
// npm run soak: the history check of __test__/history under its nemesis for a long run, each store
// (sled, redis, hybrid) for HISTORY_SECONDS (default 600: 30 minutes in all), printing each store's
// counts (grants, writes, nemesis events, anomalies). It fails if the checker finds any anomaly.
'use strict'
const { spawnSync } = require('node:child_process')
const path = require('node:path')

const seconds = process.env.HISTORY_SECONDS ?? '600'
if (!/^\d+$/.test(seconds) || Number(seconds) < 5) {
  console.error(`HISTORY_SECONDS must be a whole number of seconds, 5 or more (got ${JSON.stringify(seconds)})`)
  process.exit(2)
}
console.log(`soak: the history check, ${seconds} s per store (sled, redis, hybrid), about ${Math.ceil((3 * Number(seconds)) / 60)} minutes`)
const vitest = path.join(__dirname, '..', 'node_modules', 'vitest', 'vitest.mjs')
// further arguments go to vitest: `npm run soak -- -t redis` runs one store
const run = spawnSync(process.execPath, [vitest, 'run', '__test__/history', ...process.argv.slice(2)], {
  cwd: path.join(__dirname, '..'),
  stdio: 'inherit',
  env: { ...process.env, HISTORY_SECONDS: seconds },
})
process.exit(run.status ?? 1)
