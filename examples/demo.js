#!/usr/bin/env node
'use strict'
// Simulated AI agents editing one project at once, through the real lock API on the embedded sled
// store: lock before writing, write, release after, exactly as the opencode plugin does. Prints a
// timeline of who got which file and who was told to wait, then checks that no file ever had two
// writers at once and that no lock is left behind.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { SledCache, acquireLock, acquireLocks, releaseLock, releaseAllLocks, listLocks } = require('../lib/index.js')

const t0 = Date.now()
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const stamp = () => `+${String(Date.now() - t0).padStart(5)}ms`
const say = (agent, what, detail) => console.log(`  ${stamp()}  ${agent.padEnd(9)} ${what.padEnd(9)} ${detail}`)

// Each agent's plan: files to edit (overlapping on purpose) and how long each edit takes.
const AGENTS = [
  { name: 'planner', files: ['README.md', 'src/app.ts'], editMs: 250 },
  { name: 'coder-a', files: ['src/app.ts', 'src/db.ts', 'src/util.ts'], editMs: 300 },
  { name: 'coder-b', files: ['src/db.ts', 'src/app.ts'], editMs: 200 },
  { name: 'reviewer', files: [['src/util.ts', 'src/db.ts']], editMs: 150 }, // one all-or-nothing edit of two files
]
const RETRY_MS = 180
const MAX_TRIES = 12

const writers = new Map() // file -> agent writing it now (the demo's own overlap check)
const history = new Map() // file -> agents in the order they wrote it
let waits = 0
let overlaps = 0

function edit(projectDir, file, agent) {
  if (writers.has(file)) overlaps++
  writers.set(file, agent)
  fs.appendFileSync(path.join(projectDir, file), `// edited by ${agent}\n`)
  history.set(file, [...(history.get(file) ?? []), agent])
}

function describeHolder(err) {
  const h = err.holder ?? {}
  const left = Math.max(0, Math.round((h.expiresAt - Date.now()) / 1000))
  return `held by ${h.agentId} (${h.sessionId}), lock expires in ${left}s`
}

async function work(agent, cache, projectDir) {
  const session = `ses_${agent.name}`
  for (const item of agent.files) {
    const files = Array.isArray(item) ? item : [item]
    for (let attempt = 1; ; attempt++) {
      try {
        const paths = await acquireLocks(files, agent.name, session, cache, { baseDir: projectDir })
        say(agent.name, 'locked', files.join(' + '))
        files.forEach((f) => edit(projectDir, f, agent.name))
        await sleep(agent.editMs)
        files.forEach((f) => writers.delete(f))
        for (const p of paths) await releaseLock(p, session, cache)
        say(agent.name, 'released', files.join(' + '))
        break
      } catch (err) {
        if (err.code !== 'ELOCKED') throw err
        waits++
        const rel = path.relative(projectDir, err.holder.path)
        const what = files.length > 1 ? `${files.join(' + ')} (none taken: ${rel} ${describeHolder(err)})` : `${rel} ${describeHolder(err)}`
        say(agent.name, 'WAIT', what)
        if (attempt === MAX_TRIES) throw new Error(`${agent.name} gave up on ${files.join(' + ')}`)
        await sleep(RETRY_MS)
      }
    }
  }
  // what the plugin does when a session ends: nothing may stay locked
  await releaseAllLocks({ sessionId: session }, cache)
}

async function main() {
  const projectDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ofl-demo-project-'))
  const sledDir = process.env.FILE_LOCK_PATH ?? fs.mkdtempSync(path.join(os.tmpdir(), 'ofl-demo-sled-'))
  fs.mkdirSync(path.join(projectDir, 'src'))
  for (const f of ['README.md', 'src/app.ts', 'src/db.ts', 'src/util.ts']) fs.writeFileSync(path.join(projectDir, f), '')

  const cache = await SledCache.open({ path: sledDir, namespace: 'locks', defaultTtlMs: 60_000 })
  console.log(`opencode-file-lock demo: ${AGENTS.length} agents, one project (${projectDir}), locks in sled (${sledDir})\n`)
  try {
    await Promise.all(AGENTS.map((a) => work(a, cache, projectDir)))
    const left = await listLocks(cache)
    console.log('\nwho edited what, in order:')
    for (const [file, agents] of [...history].sort()) console.log(`  ${file.padEnd(12)} ${agents.join(' -> ')}`)
    console.log(`\nagents told to wait: ${waits} times`)
    console.log(`files with two writers at once: ${overlaps}`)
    console.log(`locks left behind: ${left.length}`)
    if (overlaps !== 0 || left.length !== 0) process.exitCode = 1
  } finally {
    await cache.close()
    fs.rmSync(projectDir, { recursive: true, force: true })
    if (!process.env.FILE_LOCK_PATH) fs.rmSync(sledDir, { recursive: true, force: true })
  }
}

main().catch((e) => {
  console.error(`demo failed: ${e.code ? `[${e.code}] ` : ''}${e.message}`)
  process.exit(1)
})
