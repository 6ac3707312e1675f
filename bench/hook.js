#!/usr/bin/env node
'use strict'
// npm run bench:hook: what the Claude Code hook adds to a tool call. Each hook event is a process
// (`opencode-file-lock hook claude-code`, the event's JSON on stdin); a write is two (PreToolUse and
// PostToolUse), of which the call waits for the first (install-hooks runs the second in the background). Measured against a bare `node -e 0` in the same run, on a sled folder served by the
// hook keeper (as when no opencode runs) and, for comparison, with the keeper off (each hook opens
// the folder itself). BENCH_RUNS (default 5) runs of BENCH_CALLS (default 20) writes; medians.
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const RUNS = Number(process.env.BENCH_RUNS ?? 5)
const CALLS = Number(process.env.BENCH_CALLS ?? 20)
const BIN = path.join(__dirname, '..', 'bin', 'opencode-file-lock.js')
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const progress = (m) => process.stderr.write(`[bench:hook] ${m}\n`)

function timed(args, input, env) {
  const t = process.hrtime.bigint()
  const r = spawnSync(process.execPath, args, { input, env, encoding: 'utf8' })
  const ms = Number(process.hrtime.bigint() - t) / 1e6
  if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}: ${r.stderr}`)
  return ms
}

function writes(keeper) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ofl-bench-hook-'))
  const env = { ...process.env, FILE_LOCK_CACHE_BACKEND: 'sled', FILE_LOCK_PATH: path.join(tmp, 'locks'), FILE_LOCK_HOOK_KEEPER: keeper ? 'on' : 'off', FILE_LOCK_HOOK_KEEPER_IDLE_MS: '3000' }
  const per = { pre: [], post: [] }
  for (let i = 0; i < CALLS; i++) {
    const ev = (name) => JSON.stringify({ session_id: 'bench', cwd: tmp, hook_event_name: name, tool_name: 'Write', tool_input: { file_path: path.join(tmp, `f${i}.ts`), content: 'x' }, tool_use_id: `w${i}`, tool_response: {} })
    per.pre.push(timed([BIN, 'hook', 'claude-code'], ev('PreToolUse'), env))
    fs.writeFileSync(path.join(tmp, `f${i}.ts`), 'x')
    per.post.push(timed([BIN, 'hook', 'claude-code'], ev('PostToolUse'), env))
  }
  return { pre: median(per.pre.slice(1)), post: median(per.post.slice(1)), tmp }
}

const rows = { node: [], keeperPre: [], keeperPost: [], alonePre: [], alonePost: [] }
for (let r = 1; r <= RUNS; r++) {
  progress(`run ${r}/${RUNS}`)
  rows.node.push(median(Array.from({ length: CALLS }, () => timed(['-e', '0'], '', process.env))))
  const k = writes(true)
  rows.keeperPre.push(k.pre)
  rows.keeperPost.push(k.post)
  const a = writes(false)
  rows.alonePre.push(a.pre)
  rows.alonePost.push(a.post)
}
const f = (x) => `${median(x).toFixed(0)} ms`
console.log(`\nClaude Code hook processes, medians of ${RUNS} runs x ${CALLS} writes (the first of each run left out); node ${process.version}, ${os.cpus().length} cores, ${os.cpus()[0].model}\n`)
console.log('| measure | p50 |')
console.log('|---|---:|')
console.log(`| a bare \`node -e 0\` | ${f(rows.node)} |`)
console.log(`| PreToolUse of a Write (lock + stale check), keeper serving the folder | ${f(rows.keeperPre)} |`)
console.log(`| PostToolUse of a Write (record + release), keeper serving the folder | ${f(rows.keeperPost)} |`)
console.log(`| what a Write waits for, as installed (PreToolUse; PostToolUse runs in the background), keeper serving | ${f(rows.keeperPre)} |`)
console.log(`| both hooks, were they both in the foreground, keeper serving | ${(median(rows.keeperPre) + median(rows.keeperPost)).toFixed(0)} ms |`)
console.log(`| PreToolUse, each hook opening the folder itself (keeper off) | ${f(rows.alonePre)} |`)
console.log(`| PostToolUse, keeper off | ${f(rows.alonePost)} |`)
