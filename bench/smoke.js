#!/usr/bin/env node
'use strict'
// npm run bench:smoke (part of npm test): the whole of `npm run bench` once, very short
// (0.2 s per subject, one run, one caller), so a broken peer or subject fails the tests instead of
// the next person who runs the benchmark. The numbers it prints mean nothing; it checks that every
// subject measured something and that the results were written.
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const SUBJECTS = ['native-redis', 'node-redis', 'ioredis', 'redlock', 'redis-benchmark EVALSHA', 'native-sled', 'native-sled-client', 'classic-level']
const out = fs.mkdtempSync(path.join(os.tmpdir(), 'ofl-bench-smoke-'))
const started = Date.now()
const run = spawnSync(process.execPath, [path.join(__dirname, 'compare.js')], {
  env: { ...process.env, BENCH_SECONDS: '0.2', BENCH_RUNS: '1', BENCH_CONCURRENCY: '1', BENCH_ONLY: '', BENCH_RESULTS_DIR: out },
  encoding: 'utf8',
  timeout: 300_000,
})
const fail = (why) => {
  console.error(`[bench:smoke] FAILED: ${why}\n${run.stdout ?? ''}\n${(run.stderr ?? '').split('\n').filter((l) => !l.startsWith('[bench]')).join('\n')}`)
  process.exit(1)
}
if (run.error) fail(run.error.message)
if (run.status !== 0) fail(`npm run bench exited with ${run.status ?? run.signal}`)
const results = JSON.parse(fs.readFileSync(path.join(out, 'compare-latest.json'), 'utf8')).results
for (const s of SUBJECTS) {
  const r = results.find((x) => x.subject === s)
  if (!r) fail(`no result for ${s}`)
  const rate = r.pairsPerSec ?? r.opsPerSec
  if (!(rate > 0)) fail(`${s} measured ${rate}`)
}
if (!fs.statSync(path.join(out, 'compare-latest.svg')).size) fail('no chart')
fs.rmSync(out, { recursive: true, force: true })
console.log(`[bench:smoke] npm run bench ran end to end: ${SUBJECTS.length} subjects measured in ${((Date.now() - started) / 1000).toFixed(1)} s`)
