'use strict'
// npm run demo: four simulated AI agents edit overlapping files of a throwaway project, taking
// real locks on the embedded sled store the way an editor plugin would: acquire, write, release.
// The demo checks what it shows: no file ever has two holders, no edit is lost, and no lock is
// left behind. It exits 1 if any of that fails.
//
// Env: FILE_LOCK_PATH=<folder> uses that sled folder (namespace "demo") instead of a temp one.

const fs = require('fs')
const os = require('os')
const path = require('path')
const L = require('../lib/index.js')

const RETRY_MS = 150 // back-off after being told to wait
const MAX_WAITS = 12 // per task, then the agent gives up on it (never expected here)
const NAMESPACE = 'demo'

// Each task is a list of files locked together: one file uses acquireLock, several use
// acquireLocks (all or nothing). Lists overlap on purpose so agents collide. Most agents come back
// later when refused; the reviewer instead waits (waitMs) and is handed the file at its release.
const AGENTS = [
  { name: 'coder-a', startMs: 0, tasks: [['src/app.ts'], ['src/db.ts'], ['src/routes.ts']] },
  { name: 'coder-b', startMs: 40, tasks: [['src/app.ts'], ['src/routes.ts'], ['src/config.ts']] },
  { name: 'planner', startMs: 80, tasks: [['src/config.ts', 'src/app.ts'], ['README.md']] },
  { name: 'reviewer', startMs: 120, waitMs: 2000, tasks: [['src/app.ts'], ['src/db.ts'], ['README.md']] },
]

const FILES = {
  'README.md': '# demo project\n',
  'src/app.ts': "import { routes } from './routes'\n",
  'src/config.ts': 'export const port = 8080\n',
  'src/db.ts': 'export const db = new Map()\n',
  'src/routes.ts': 'export const routes = []\n',
}

// ---- small helpers -------------------------------------------------------------------------

const t0 = Date.now()
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Seeded PRNG (mulberry32) so every run holds locks for the same times. */
function rng(seed) {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = Math.imul(s ^ (s >>> 15), 1 | s)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function seedOf(text) {
  let h = 2166136261
  for (const ch of text) h = Math.imul(h ^ ch.charCodeAt(0), 16777619)
  return h >>> 0
}

function log(agent, event, text) {
  const ms = `+${Date.now() - t0}ms`.padStart(8)
  console.log(`  ${ms}  ${agent.padEnd(9)} ${event.padEnd(9)} ${text}`)
}

function fmtLeft(ms) {
  const s = Math.max(0, Math.floor(ms / 1000)) // floor, like the error message
  return s >= 60 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${s}s`
}

// ---- shared state the demo tracks itself, independently of the store ------------------------

const state = {
  holders: new Map(), // rel path -> agent name, while the demo believes it holds the lock
  edits: new Map(), // rel path -> agent names, in edit order
  waits: 0,
  handedOver: 0, // grants that came after waiting for a release
  gaveUp: [],
  overlaps: 0, // grants of a file someone else held
  lostEdits: 0, // files whose content is not exactly the recorded edits
  violations: [],
  firstRefusal: null, // the err.message an agent reads, shown once in the summary
}

function violation(text) {
  state.violations.push(text)
  console.log(`  !! VIOLATION: ${text}`)
}

/** Called right after the store granted locks: nobody else may be holding them. */
function markHeld(agent, rels) {
  for (const rel of rels) {
    if (state.holders.has(rel)) {
      state.overlaps++
      violation(`${rel} granted to ${agent} while ${state.holders.get(rel)} holds it`)
    }
    state.holders.set(rel, agent)
  }
}

// ---- one agent -------------------------------------------------------------------------------

class Agent {
  constructor(spec, ctx) {
    this.name = spec.name
    this.startMs = spec.startMs
    this.waitMs = spec.waitMs
    this.sessionId = `ses_${spec.name}_${seedOf(spec.name).toString(16).slice(0, 4)}`
    this.queue = spec.tasks.map((files) => ({ files, waits: 0 }))
    this.random = rng(seedOf(spec.name))
    this.ctx = ctx
  }

  async run() {
    await sleep(this.startMs)
    while (this.queue.length > 0) {
      const task = this.queue.shift()
      if (await this.tryTask(task)) continue
      // Refused: come back to this task after the others (or retry it, if it is the last one).
      if (++task.waits >= MAX_WAITS) {
        log(this.name, 'GAVE UP', task.files.join(' + '))
        state.gaveUp.push(`${this.name}: ${task.files.join(' + ')}`)
      } else {
        this.queue.push(task)
      }
      await sleep(RETRY_MS)
    }
    log(this.name, 'done', `(${this.sessionId} ends)`)
  }

  /** Lock, edit, release. False when another agent holds (one of) the files. */
  async tryTask(task) {
    const { cache, project } = this.ctx
    const opts = { baseDir: project, ...(this.waitMs ? { waitMs: this.waitMs } : {}) }
    const asked = Date.now()
    let locked
    try {
      locked =
        task.files.length === 1
          ? [await L.acquireLock(task.files[0], this.name, this.sessionId, cache, opts)]
          : await L.acquireLocks(task.files, this.name, this.sessionId, cache, opts)
    } catch (err) {
      if (err.code !== 'ELOCKED') throw err
      await this.reportWait(task, err)
      return false
    }
    markHeld(this.name, task.files)
    const records = await Promise.all(locked.map((p) => L.getLock(p, cache)))
    const holdMs = 150 + Math.floor(this.random() * 250)
    const tokens = records.map((r) => r.token).join(', ')
    const waited = Date.now() - asked
    if (waited >= 20) state.handedOver++
    const after = waited >= 20 ? `after waiting ${waited}ms for its release, ` : ''
    log(this.name, 'locked', `${task.files.join(' + ')} (token ${tokens}), ${after}editing for ${holdMs}ms`)

    await this.edit(task.files, holdMs)

    for (let i = 0; i < locked.length; i++) {
      // Forget the holder before the store does, so the overlap check never misses a double grant.
      state.holders.delete(task.files[i])
      const released = await L.releaseLock(locked[i], this.sessionId, cache)
      if (!released) violation(`${this.name} could not release ${task.files[i]}`)
    }
    log(this.name, 'released', task.files.join(' + '))
    return true
  }

  /** Read, "think" while holding the lock, write back: without locks, concurrent edits would be lost. */
  async edit(rels, holdMs) {
    const abs = rels.map((rel) => path.join(this.ctx.project, rel))
    const before = abs.map((f) => fs.readFileSync(f, 'utf8'))
    await sleep(holdMs)
    rels.forEach((rel, i) => {
      state.edits.set(rel, [...(state.edits.get(rel) || []), this.name])
      fs.writeFileSync(abs[i], `${before[i]}// edited by ${this.name} (${this.sessionId})\n`)
    })
  }

  async reportWait(task, err) {
    state.waits++
    state.firstRefusal = state.firstRefusal || err.message
    const h = err.holder
    const heldRel = path.relative(this.ctx.project, h.path) || h.path
    const who = `held by ${h.agentId} (session ${h.sessionId}), expires in ${fmtLeft(h.expiresAt - Date.now())}`
    if (task.files.length === 1) {
      log(this.name, 'WAIT', `${task.files[0]} ${who}`)
      return
    }
    // All or nothing: check the store gave this session none of the files.
    const mine = await L.listLocks(this.ctx.cache, { sessionId: this.sessionId })
    if (mine.length > 0) violation(`${this.name} kept ${mine.length} lock(s) after a refused acquireLocks`)
    log(this.name, 'WAIT-ALL', `${task.files.join(' + ')}, got neither: ${heldRel} ${who}`)
  }
}

// ---- setup, run, summary ---------------------------------------------------------------------

function makeProject() {
  const project = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'file-lock-demo-project-')))
  for (const [rel, text] of Object.entries(FILES)) {
    fs.mkdirSync(path.dirname(path.join(project, rel)), { recursive: true })
    fs.writeFileSync(path.join(project, rel), text)
  }
  return project
}

/** Every recorded edit must be in the file, in order: a lost update would show up here. */
function checkFiles(project) {
  for (const [rel, initial] of Object.entries(FILES)) {
    const expected = initial + (state.edits.get(rel) || []).map((a) => `// edited by ${a} (${sessionOf(a)})\n`).join('')
    if (fs.readFileSync(path.join(project, rel), 'utf8') !== expected) {
      state.lostEdits++
      violation(`${rel} does not contain exactly the recorded edits`)
    }
  }
}

let agents = []
const sessionOf = (name) => agents.find((a) => a.name === name).sessionId

function printSummary(left) {
  console.log('\nSummary')
  for (const rel of Object.keys(FILES)) {
    const by = state.edits.get(rel) || []
    console.log(`  ${rel.padEnd(14)} edited by ${by.length ? by.join(' -> ') : '(nobody)'}`)
  }
  console.log(`  agents told to wait:   ${state.waits} times`)
  console.log(`  handed over on release: ${state.handedOver} times (an agent waiting with waitMs)`)
  if (state.gaveUp.length) console.log(`  gave up on:            ${state.gaveUp.join('; ')}`)
  console.log(`  two holders at once:   ${state.overlaps ? `${state.overlaps} times` : 'never'}`)
  console.log(`  files with lost edits: ${state.lostEdits || 'none'}`)
  console.log(`  locks left (listLocks): ${left.length}`)
  if (state.firstRefusal) console.log(`\nWhat a refused agent reads (err.message):\n  ${state.firstRefusal}`)
}

async function main() {
  const project = makeProject()
  const ownStore = !process.env.FILE_LOCK_PATH
  const storeDir = ownStore ? fs.mkdtempSync(path.join(os.tmpdir(), 'file-lock-demo-sled-')) : process.env.FILE_LOCK_PATH
  let cache
  try {
    cache = await L.SledCache.open({ path: storeDir, namespace: NAMESPACE })
    console.log(`project: ${project}\nsled:    ${storeDir} (namespace "${NAMESPACE}")\n`)
    agents = AGENTS.map((spec) => new Agent(spec, { cache, project }))
    await Promise.all(agents.map((a) => a.run()))

    checkFiles(project)
    // A shared store may hold other projects' locks; this project must have none left.
    const left = (await L.listLocks(cache)).filter((r) => r.path.startsWith(project + path.sep))
    if (left.length) violation(`${left.length} lock(s) left after every agent released`)
    printSummary(left)
  } finally {
    if (cache) {
      for (const a of agents) await L.releaseAllLocks({ sessionId: a.sessionId }, cache) // only matters after a crash
      await cache.close()
    }
    fs.rmSync(project, { recursive: true, force: true })
    if (ownStore) fs.rmSync(storeDir, { recursive: true, force: true })
  }
  if (state.violations.length) {
    console.log(`\nFAILED: ${state.violations.length} violation(s)`)
    process.exitCode = 1
  } else {
    console.log('\nOK: every file had at most one holder at a time, and nothing was lost or left locked.')
  }
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 2
})
