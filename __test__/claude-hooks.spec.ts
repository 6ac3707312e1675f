// `install-hooks claude-code` (merging into a settings file and taking its hooks out again) and
// `hook claude-code` as the short process Claude Code runs: fed the events Claude Code 2.1.332 sends
// (shapes from its own hook stdin), failing closed, bounded in time, and what it adds per call.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, expect, it, vi } from 'vitest'
import { getLock, openCache } from '../lib/index.js'
import { freePort, startRedis } from './helpers/redis-server'
import { tmpDir } from './helpers/tmp'

vi.setConfig({ testTimeout: 60_000 })
const BIN = path.resolve(__dirname, '../bin/opencode-file-lock.js')
const cli = (args: string[], o: { env?: Record<string, string>; input?: string; cwd?: string } = {}) =>
  spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, FILE_LOCK_HOOK_KEEPER: 'off', ...o.env }, input: o.input, cwd: o.cwd })

describe('install-hooks claude-code', () => {
  it('merges its hooks into .claude/settings.json keeping every other setting, does it once however often it runs, and --remove takes out only its own', () => {
    const project = tmpDir('ofl-hooks-')
    const file = path.join(project, '.claude/settings.json')
    fs.mkdirSync(path.dirname(file))
    const mine = { permissions: { allow: ['Bash(npm test)'] }, model: 'opus', hooks: { PreToolUse: [{ matcher: 'Bash', hooks: [{ type: 'command', command: 'my-own-check.sh' }] }], Notification: [{ hooks: [{ type: 'command', command: 'notify-send hi' }] }] } }
    fs.writeFileSync(file, JSON.stringify(mine, null, 2))
    for (let i = 0; i < 2; i++) expect(cli(['install-hooks', 'claude-code', '--project', project]).status).toBe(0)
    const s = JSON.parse(fs.readFileSync(file, 'utf8'))
    expect(s.permissions).toEqual(mine.permissions)
    expect(s.model).toBe('opus')
    expect(s.hooks.Notification).toEqual(mine.hooks.Notification)
    expect(s.hooks.PreToolUse[0]).toEqual(mine.hooks.PreToolUse[0])
    const ours = (e: string) => (s.hooks[e] ?? []).flatMap((g: any) => g.hooks).filter((h: any) => / hook claude-code$/.test(h.command))
    for (const e of ['PreToolUse', 'PostToolUseFailure', 'Stop', 'SessionEnd']) expect(ours(e), e).toHaveLength(1)
    // after a write or a read in the background (a call waits for one hook process); after Bash not
    expect(ours('PostToolUse').map((h: any) => !!h.async).sort()).toEqual([false, true])
    expect(ours('PreToolUse')[0].async).toBeUndefined()
    // an absolute node and an absolute path to this package: no registry, no PATH lookup
    const command: string = ours('PreToolUse')[0].command
    expect(command.startsWith(`${process.execPath} `)).toBe(true)
    expect(command).toContain(BIN)
    expect(command).not.toMatch(/npx/)
    expect(s.hooks.PreToolUse.find((g: any) => g.hooks.some((h: any) => h.command === command)).matcher).toMatch(/Write\|Edit/)
    expect(cli(['install-hooks', 'claude-code', '--project', project, '--remove']).status).toBe(0)
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toEqual(mine)
  })

  it('--global writes $CLAUDE_CONFIG_DIR/settings.json; a settings file that is not JSON is left untouched with a clear error; bad usage exits 2', () => {
    const config = tmpDir('ofl-hooks-global-')
    expect(cli(['install-hooks', 'claude-code', '--global'], { env: { CLAUDE_CONFIG_DIR: config } }).status).toBe(0)
    expect(JSON.parse(fs.readFileSync(path.join(config, 'settings.json'), 'utf8')).hooks.SessionEnd).toHaveLength(1)
    const project = tmpDir('ofl-hooks-bad-')
    fs.mkdirSync(path.join(project, '.claude'))
    fs.writeFileSync(path.join(project, '.claude/settings.json'), '{ "model": "opus", ')
    const r = cli(['install-hooks', 'claude-code', '--project', project])
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(/settings\.json is not valid JSON .*it was not changed/)
    expect(fs.readFileSync(path.join(project, '.claude/settings.json'), 'utf8')).toBe('{ "model": "opus", ')
    expect(cli(['install-hooks', 'cursor']).status).toBe(2)
    expect(cli(['install-hooks', 'claude-code', '--project', project, '--global']).status).toBe(2)
  })
})

describe('hook claude-code, the process Claude Code runs', () => {
  const event = (o: Record<string, unknown>) => JSON.stringify({ session_id: 'sess-1', transcript_path: '/dev/null', cwd: o.cwd ?? '/tmp', hook_event_name: 'PreToolUse', ...o })

  it('fails closed: a write it cannot lock (store unreachable, input that is not JSON) is blocked with exit 2 and the reason; other events pass', async () => {
    const port = await freePort()
    const redis = { FILE_LOCK_CACHE_BACKEND: 'redis', REDIS_URL: `redis://:hook-secret-pw@127.0.0.1:${port}`, REDIS_CONNECT_TIMEOUT_MS: '500', FILE_LOCK_HOOK_TIMEOUT_MS: '4000' }
    const w = cli(['hook', 'claude-code'], { env: redis, input: event({ tool_name: 'Write', tool_input: { file_path: '/tmp/ofl-x.txt', content: 'x' }, tool_use_id: 't1' }) })
    expect(w.status).toBe(2)
    expect(w.stderr).toMatch(/opencode-file-lock .*(unavailable|could not|cannot lock|did not finish)/)
    expect(w.stderr).toMatch(/not run/)
    expect(w.stderr).not.toContain('hook-secret-pw')
    const stop = cli(['hook', 'claude-code'], { env: redis, input: event({ hook_event_name: 'Stop', background_tasks: [] }) })
    expect(stop.status).toBe(0)
    const garbage = cli(['hook', 'claude-code'], { input: '{"session_id": ' })
    expect(garbage.status).toBe(2)
    expect(garbage.stderr).toMatch(/could not read the hook's input/)
  })

  it('never hangs: with the store stopped (SIGSTOP), a write is blocked when the hook’s own time limit runs out, saying so', async () => {
    const redis = await startRedis()
    try {
      process.kill(redis.pid, 'SIGSTOP')
      const t = Date.now()
      const w = cli(['hook', 'claude-code'], { env: { FILE_LOCK_CACHE_BACKEND: 'redis', REDIS_URL: `redis://127.0.0.1:${redis.port}`, FILE_LOCK_HOOK_TIMEOUT_MS: '1500' }, input: event({ tool_name: 'Edit', tool_input: { file_path: '/tmp/ofl-stalled.txt', old_string: 'a', new_string: 'b' }, tool_use_id: 't1' }) })
      const ms = Date.now() - t
      expect(w.status).toBe(2)
      expect(w.stderr).toMatch(/opencode-file-lock (did not finish within 1500 ms|could not lock|refused)/)
      expect(w.stderr).toMatch(/not run/)
      expect(ms).toBeLessThan(10_000)
    } finally {
      process.kill(redis.pid, 'SIGCONT')
      await redis.stop()
    }
  })

  it('PreToolUse locks for the session (a subagent shares it), PostToolUse records the write and releases; the time each hook process adds is reported', async () => {
    const store = tmpDir('ofl-hook-store-')
    const dir = fs.realpathSync(tmpDir('ofl-hook-project-'))
    const env = { FILE_LOCK_CACHE_BACKEND: 'sled', FILE_LOCK_PATH: store, FILE_LOCK_WAIT_MS: '0' }
    const file = path.join(dir, 'new.ts')
    const times: number[] = []
    const timed = (input: string) => {
      const t = performance.now()
      const r = cli(['hook', 'claude-code'], { env, input })
      times.push(performance.now() - t)
      return r
    }
    const pre = timed(event({ cwd: dir, tool_name: 'Write', tool_input: { file_path: file, content: 'x' }, tool_use_id: 'w1' }))
    expect(pre.status, pre.stderr).toBe(0)
    let c = await openCache({ backend: 'sled', path: store })
    expect(await getLock(file, c)).toMatchObject({ sessionId: 'sess-1', kind: 'claude-code' })
    await c.close()
    // the subagent (agent_id) of the same session writes the file it holds: re-entry, not a refusal
    const sub = timed(event({ cwd: dir, tool_name: 'Edit', tool_input: { file_path: file, old_string: 'a', new_string: 'b' }, tool_use_id: 'e1', agent_id: 'sub-1', agent_type: 'general-purpose' }))
    expect(sub.status, sub.stderr).toBe(0)
    // another session is refused, naming the holder
    const other = timed(event({ session_id: 'sess-2', cwd: dir, tool_name: 'Write', tool_input: { file_path: file, content: 'y' }, tool_use_id: 'w2' }))
    expect(other.status).toBe(2)
    expect(other.stderr).toMatch(/is locked by another agent/)
    expect(other.stderr).toContain('sess-1')
    expect(other.stderr).toContain('[claude-code]')
    fs.writeFileSync(file, 'x')
    for (const [id, tool] of [['e1', 'Edit'], ['w1', 'Write']]) expect(timed(event({ cwd: dir, hook_event_name: 'PostToolUse', tool_name: tool, tool_input: { file_path: file, content: 'x' }, tool_response: {}, tool_use_id: id })).status).toBe(0)
    c = await openCache({ backend: 'sled', path: store })
    try {
      expect(await getLock(file, c)).toBeUndefined()
    } finally {
      await c.close()
    }
    const sorted = [...times].sort((a, b) => a - b)
    const node = [0, 1, 2].map(() => {
      const t = performance.now()
      spawnSync(process.execPath, ['-e', '0'])
      return performance.now() - t
    })
    console.log(`hook process wall time per event: p50 ${sorted[Math.floor(sorted.length / 2)].toFixed(0)} ms (${sorted.map((x) => x.toFixed(0)).join(', ')}); a bare node -e 0: ${node.map((x) => x.toFixed(0)).join(', ')} ms; ${os.cpus().length} cores`)
    expect(sorted[Math.floor(sorted.length / 2)]).toBeLessThan(5000)
  })

  it('the PostToolUse hooks run in the background: a PreToolUse that comes before them is not refused for the session’s own read or write, and another session still is', async () => {
    const store = tmpDir('ofl-hook-store-')
    const dir = fs.realpathSync(tmpDir('ofl-hook-project-'))
    const env = { FILE_LOCK_CACHE_BACKEND: 'sled', FILE_LOCK_PATH: store, FILE_LOCK_WAIT_MS: '0' }
    const file = path.join(dir, 'app.ts')
    fs.writeFileSync(file, 'v1\n')
    const hook = (o: Record<string, unknown>) => cli(['hook', 'claude-code'], { env, input: event({ cwd: dir, ...o }) })
    // another session reads v1
    for (const name of ['PreToolUse', 'PostToolUse']) expect(hook({ session_id: 'sess-2', hook_event_name: name, tool_name: 'Read', tool_input: { file_path: file }, tool_response: {}, tool_use_id: 'o0' }).status).toBe(0)
    // a read, its PostToolUse not run yet, then a write of the whole file
    expect(hook({ tool_name: 'Read', tool_input: { file_path: file }, tool_use_id: 'r1' }).status).toBe(0)
    const w1 = hook({ tool_name: 'Write', tool_input: { file_path: file, content: 'v2' }, tool_use_id: 'w1' })
    expect(w1.status, w1.stderr).toBe(0)
    fs.writeFileSync(file, 'v2\n')
    // the write's PostToolUse not run yet either: the next edit of the session goes on
    const e1 = hook({ tool_name: 'Edit', tool_input: { file_path: file, old_string: 'v2', new_string: 'v3' }, tool_use_id: 'e1' })
    expect(e1.status, e1.stderr).toBe(0)
    fs.writeFileSync(file, 'v3\n')
    // the background hooks run, late and out of order
    for (const [id, tool] of [['w1', 'Write'], ['r1', 'Read'], ['e1', 'Edit']]) expect(hook({ hook_event_name: 'PostToolUse', tool_name: tool, tool_input: { file_path: file }, tool_response: {}, tool_use_id: id }).status).toBe(0)
    const c = await openCache({ backend: 'sled', path: store })
    try {
      expect(await getLock(file, c)).toBeUndefined()
    } finally {
      await c.close()
    }
    // another session that read v1 is refused: the file changed since, by sess-1
    const other = hook({ session_id: 'sess-2', tool_name: 'Edit', tool_input: { file_path: file, old_string: 'v3', new_string: 'x' }, tool_use_id: 'o1' })
    expect(other.status).toBe(2)
    expect(other.stderr).toMatch(/app\.ts changed since you read it: agent \S+ \(session sess-1\) \[claude-code\] wrote it/)
    // and the session itself, having written v3 last, may go on
    const again = hook({ tool_name: 'Edit', tool_input: { file_path: file, old_string: 'v3', new_string: 'v4' }, tool_use_id: 'e2' })
    expect(again.status, again.stderr).toBe(0)
  })

  it('Bash: a command that changes a file another session holds is told to the model (additionalContext) naming the holder; the session’s own changes become its view', async () => {
    const store = tmpDir('ofl-hook-store-')
    const dir = fs.realpathSync(tmpDir('ofl-hook-project-'))
    const env = { FILE_LOCK_CACHE_BACKEND: 'sled', FILE_LOCK_PATH: store, FILE_LOCK_WAIT_MS: '0' }
    const theirs = path.join(dir, 'theirs.ts')
    const mine = path.join(dir, 'mine.ts')
    fs.writeFileSync(theirs, 'a\n')
    fs.writeFileSync(mine, 'm1\n')
    const hook = (o: Record<string, unknown>) => cli(['hook', 'claude-code'], { env, input: event({ cwd: dir, ...o }) })
    // sess-2 holds theirs.ts (a write in progress); sess-1 has read mine.ts
    expect(hook({ session_id: 'sess-2', tool_name: 'Write', tool_input: { file_path: theirs, content: 'b' }, tool_use_id: 'h1' }).status).toBe(2) // never read: refused
    expect(hook({ session_id: 'sess-2', tool_name: 'Read', tool_input: { file_path: theirs }, tool_use_id: 'h2' }).status).toBe(0)
    expect(hook({ session_id: 'sess-2', hook_event_name: 'PostToolUse', tool_name: 'Read', tool_input: { file_path: theirs }, tool_response: {}, tool_use_id: 'h2' }).status).toBe(0)
    expect(hook({ session_id: 'sess-2', tool_name: 'Edit', tool_input: { file_path: theirs, old_string: 'a', new_string: 'b' }, tool_use_id: 'h3' }).status).toBe(0)
    for (const name of ['PreToolUse', 'PostToolUse']) expect(hook({ hook_event_name: name, tool_name: 'Read', tool_input: { file_path: mine }, tool_response: {}, tool_use_id: 'r1' }).status).toBe(0)
    const bash = { tool_name: 'Bash', tool_input: { command: 'sed -i s/a/x/ theirs.ts; echo m2 > mine.ts' }, tool_use_id: 'b1' }
    expect(hook(bash).status).toBe(0)
    fs.writeFileSync(theirs, 'x\n')
    fs.writeFileSync(mine, 'm2\n')
    const after = hook({ ...bash, hook_event_name: 'PostToolUse', tool_response: { stdout: '' } })
    expect(after.status).toBe(0)
    const out = JSON.parse(after.stdout)
    expect(out.hookSpecificOutput.hookEventName).toBe('PostToolUse')
    expect(out.hookSpecificOutput.additionalContext).toContain(theirs)
    expect(out.hookSpecificOutput.additionalContext).toContain('sess-2')
    expect(out.hookSpecificOutput.additionalContext).not.toContain(mine)
    // its own change to mine.ts is its view now: an edit of it goes on
    const edit = hook({ tool_name: 'Edit', tool_input: { file_path: mine, old_string: 'm2', new_string: 'm3' }, tool_use_id: 'e1' })
    expect(edit.status, edit.stderr).toBe(0)
  })

  it('Bash: a change made during the command to a file another session holds (its write in progress) is not taken as the command’s own', async () => {
    const store = tmpDir('ofl-hook-store-')
    const dir = fs.realpathSync(tmpDir('ofl-hook-project-'))
    const env = { FILE_LOCK_CACHE_BACKEND: 'sled', FILE_LOCK_PATH: store, FILE_LOCK_WAIT_MS: '0' }
    const shared = path.join(dir, 'shared.ts')
    fs.writeFileSync(shared, 'v1\n')
    const hook = (o: Record<string, unknown>) => cli(['hook', 'claude-code'], { env, input: event({ cwd: dir, ...o }) })
    for (const name of ['PreToolUse', 'PostToolUse']) expect(hook({ hook_event_name: name, tool_name: 'Read', tool_input: { file_path: shared }, tool_response: {}, tool_use_id: 'r1' }).status).toBe(0)
    const bash = { tool_name: 'Bash', tool_input: { command: 'sleep 5' }, tool_use_id: 'b1' }
    expect(hook(bash).status).toBe(0)
    // meanwhile sess-2 edits shared.ts: locked by its PreToolUse, its PostToolUse not run yet
    const edit2 = { session_id: 'sess-2', tool_name: 'Edit', tool_input: { file_path: shared, old_string: 'v1', new_string: 'v2' }, tool_use_id: 'o1' }
    expect(hook(edit2).status).toBe(0)
    fs.writeFileSync(shared, 'v2 from sess-2\n')
    expect(hook({ ...bash, hook_event_name: 'PostToolUse', tool_response: { stdout: '' } }).status).toBe(0)
    expect(hook({ ...edit2, hook_event_name: 'PostToolUse', tool_response: {} }).status).toBe(0)
    const mine = hook({ tool_name: 'Edit', tool_input: { file_path: shared, old_string: 'v2', new_string: 'v3' }, tool_use_id: 'e1' })
    expect(mine.status).toBe(2)
    expect(mine.stderr).toMatch(/shared\.ts changed since you read it: agent \S+ \(session sess-2\) \[claude-code\] wrote it/)
    expect(fs.readFileSync(shared, 'utf8')).toBe('v2 from sess-2\n')
  })

  it('the mark it leaves in the lock folder for the keeper is written without following a link planted there', async () => {
    const store = tmpDir('ofl-hook-store-')
    const env = { FILE_LOCK_CACHE_BACKEND: 'sled', FILE_LOCK_PATH: store }
    expect(cli(['hook', 'claude-code'], { env, input: event({ hook_event_name: 'Stop', background_tasks: [] }) }).status).toBe(0)
    const victim = path.join(tmpDir('ofl-hook-victim-'), 'victim.txt')
    fs.writeFileSync(victim, 'keep me\n')
    fs.rmSync(path.join(store, 'hook-keeper.touch'), { force: true })
    fs.symlinkSync(victim, path.join(store, 'hook-keeper.touch'))
    expect(cli(['hook', 'claude-code'], { env, input: event({ hook_event_name: 'Stop', background_tasks: [] }) }).status).toBe(0)
    expect(fs.readFileSync(victim, 'utf8')).toBe('keep me\n')
  })
})
