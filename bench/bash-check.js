#!/usr/bin/env node
'use strict'
// What the plugin's bash check costs: before a bash call it lists the locks other sessions hold
// and stats each file; after it, it stats them again. Measured with 0 and 1,000 held files on the
// default store (sled, in this process), 9 runs of 50 calls each, medians. BASH_HELD sets the
// larger count.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const L = require('../lib/index.js')

const RUNS = 9
const CALLS = 50
const HELD = Number(process.env.BASH_HELD ?? 1000)
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

async function measure(held) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ofl-bash-bench-'))
  const cache = await L.SledCache.open({ path: path.join(dir, 'locks'), namespace: 'locks' })
  for (let i = 0; i < held; i++) {
    const f = path.join(dir, `held-${i}.txt`)
    fs.writeFileSync(f, 'x')
    await L.acquireLock(f, 'other', `ses-other-${i % 10}`, cache)
  }
  const { FileLockPlugin } = await import('../plugin/dist/file-lock.js')
  const hooks = await FileLockPlugin({ cache, agentId: 'bench' })
  const perCall = []
  for (let r = 0; r < RUNS; r++) {
    const t = process.hrtime.bigint()
    for (let i = 0; i < CALLS; i++) {
      const input = { tool: 'bash', sessionID: 'ses-bench', callID: `c${r}-${i}` }
      await hooks['tool.execute.before'](input, { args: { command: 'true' } })
      await hooks['tool.execute.after'](input, { title: '', output: '', metadata: {} })
    }
    perCall.push(Number(process.hrtime.bigint() - t) / 1e6 / CALLS)
  }
  await hooks.dispose()
  await cache.close()
  fs.rmSync(dir, { recursive: true, force: true })
  return median(perCall)
}

async function main() {
  const none = await measure(0)
  const many = await measure(HELD)
  console.log(`bash check per bash call (before + after hooks), medians of ${RUNS} runs x ${CALLS} calls, ${os.cpus().length} cores, node ${process.version}:`)
  console.log(`| files other sessions hold | ms per bash call |`)
  console.log(`|---:|---:|`)
  console.log(`| 0 | ${none.toFixed(3)} |`)
  console.log(`| ${HELD.toLocaleString('en-US')} | ${many.toFixed(3)} |`)
}

main().catch((e) => {
  console.error(`bench failed: ${e.message}`)
  process.exit(1)
})
