// One process of the no-lost-updates property test: the built plugin (as opencode loads it) with
// several sessions reading, writing and editing a few shared files at random, concurrently, for a
// while. Every write that lands is logged with the content its session based it on, what the file
// held just before it (read under the lock) and what it wrote, so the test can check that no write
// went over a change its writer had not seen.
// usage: node stale-worker.mjs '<json: {dir, files, sessions, ms, seed, log, env}>'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'

const cfg = JSON.parse(process.argv[2])
Object.assign(process.env, cfg.env)
const { FileLockPlugin } = await import('../../plugin/dist/file-lock.js')

const hash = (s) => (s === undefined ? 'absent' : crypto.createHash('sha1').update(s).digest('hex').slice(0, 12))
const disk = (f) => {
  try {
    return fs.readFileSync(f, 'utf8')
  } catch {
    return undefined
  }
}
// a small seeded generator, so a failing run can be told apart from another
let state = cfg.seed >>> 0 || 1
const rand = () => ((state = (state * 1103515245 + 12345) >>> 0) / 2 ** 32)

const hooks = await FileLockPlugin({ directory: cfg.dir, agentId: `worker-${process.pid}`, waitMs: cfg.waitMs ?? 300 })
const out = fs.openSync(cfg.log, 'a')
const counts = { reads: 0, writes: 0, edits: 0, stale: 0, torn: 0, unread: 0, locked: 0, deadlock: 0, other: 0 }
let n = 0

async function session(id) {
  const seen = new Map() // file -> the content this session last read or wrote
  const deadline = Date.now() + cfg.ms
  while (Date.now() < deadline) {
    const file = `f${Math.floor(rand() * cfg.files)}.txt`
    const abs = path.join(cfg.dir, file)
    const callID = `${id}-${++n}`
    const r = rand()
    if (r < 0.4) {
      await hooks['tool.execute.before']({ tool: 'read', sessionID: id, callID }, { args: { filePath: file } })
      const content = disk(abs)
      await hooks['tool.execute.after']({ tool: 'read', sessionID: id, callID }, { title: '', output: '', metadata: {} })
      if (content !== undefined) seen.set(file, content)
      counts.reads++
      continue
    }
    const tool = r < 0.85 ? 'write' : 'edit'
    try {
      await hooks['tool.execute.before']({ tool, sessionID: id, callID }, { args: { filePath: file, content: 'x' } })
    } catch (e) {
      const m = String(e.message)
      if (/changed since you read it/.test(m)) counts.stale++
      else if (/changed while you read it/.test(m)) counts.torn++
      else if (/you have not read it/.test(m)) counts.unread++
      else if (/locked by another agent/.test(m)) counts.locked++
      else if (/^Deadlock/.test(m)) counts.deadlock++
      else {
        counts.other++
        if (counts.other <= 3) console.error(`other refusal: ${m}`)
      }
      continue
    }
    // the tool runs, under the lock: a write replaces the file with what the session saw plus a line;
    // an edit applies its change to what is on disk
    const before = disk(abs)
    const saw = seen.get(file)
    const base = tool === 'write' ? saw : before
    const next = `${base ?? ''}${id}#${n}\n`
    fs.writeFileSync(abs, next)
    await hooks['tool.execute.after']({ tool, sessionID: id, callID }, { title: '', output: '', metadata: {} })
    seen.set(file, next)
    counts[tool === 'write' ? 'writes' : 'edits']++
    fs.writeSync(out, `${JSON.stringify({ file, session: id, tool, saw: hash(saw), base: hash(base), before: hash(before), next: hash(next) })}\n`)
  }
}

await Promise.all(cfg.sessions.map(session))
await hooks.dispose()
fs.closeSync(out)
console.log(JSON.stringify(counts))
process.exit(0)
