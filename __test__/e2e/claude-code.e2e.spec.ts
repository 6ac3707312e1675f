// End to end with the real Claude Code (npm @anthropic-ai/claude-code 2.1.332, `claude -p` driven by
// a scripted fake Anthropic API): after `install-hooks claude-code`, Claude's writes take the same
// locks and views as opencode's, a person's `lock` stops it, and its sessions release what they
// hold when they end.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { acquireLock, getLock, openCache, releaseLock, type Cache } from '../../lib/index.js'
import { call, claudeEnv, claudeProject, runClaude, startClaude, startFakeApi, type FakeApi } from '../helpers/claude'
import { sleep, tmpDir } from '../helpers/tmp'

vi.setConfig({ testTimeout: 120_000, hookTimeout: 60_000 })
const BIN = path.resolve(__dirname, '../../bin/opencode-file-lock.js')

let api: FakeApi
beforeAll(async () => {
  api = await startFakeApi()
})
afterAll(() => api?.stop())

/** One store folder and project per test, with the hooks installed the way a user installs them. */
function setup(files: Record<string, string> = {}, extra: Record<string, string> = {}) {
  const project = claudeProject(files)
  const store = tmpDir('ofl-claude-store-')
  const home = tmpDir('ofl-claude-home-')
  const storeEnv = { FILE_LOCK_CACHE_BACKEND: 'sled', FILE_LOCK_PATH: store, FILE_LOCK_WAIT_MS: '0', FILE_LOCK_HOOK_KEEPER: 'off', ...extra }
  const r = spawnSync(process.execPath, [BIN, 'install-hooks', 'claude-code', '--project', project], { encoding: 'utf8', env: { ...process.env, ...storeEnv } })
  expect(r.status, r.stderr).toBe(0)
  const env = claudeEnv(api, home, storeEnv)
  const cache = () => openCache({ backend: 'sled', path: store })
  return { project, store, env, storeEnv, cache, read: (f: string) => fs.readFileSync(path.join(project, f), 'utf8') }
}

const cli = (args: string[], env: Record<string, string>, cwd?: string) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, cwd })

describe('Claude Code with the hooks installed', () => {
  it('a Write to a file an opencode session holds is refused naming the holder, and the file is unchanged; a free file is written and left unlocked', async () => {
    const t = setup({ 'held.ts': 'opencode is on it\n' })
    let c: Cache | undefined = await t.cache()
    const held = path.join(t.project, 'held.ts')
    await acquireLock(held, `opencode@${os.hostname()}:4242`, 'ses_opencode_1', c, { title: 'Fix login', kind: 'opencode' } as any)
    await c.close()
    c = undefined
    // and on the free file, its own edits one after the other (the hook after each runs in the
    // background: the next one must not be refused for the session's own write)
    const run = await runClaude(
      t.project,
      [call('Write', { file_path: 'held.ts', content: 'claude was here\n' }), call('Write', { file_path: 'free.ts', content: 'new file\n' }), call('Edit', { file_path: 'free.ts', old_string: 'new', new_string: 'newer' }), call('Edit', { file_path: 'free.ts', old_string: 'newer', new_string: 'newest' }), 'FINAL done'].join('\n'),
      t.env,
    )
    expect(run.tools.map((x) => x.name)).toEqual(['Write', 'Write', 'Edit', 'Edit'])
    expect(run.tools.slice(2).map((x) => [x.error, x.text.slice(0, 300)])).toEqual([[false, expect.any(String)], [false, expect.any(String)]])
    expect(run.tools[0].error).toBe(true)
    expect(run.tools[0].text).toMatch(/held\.ts is locked by another agent/)
    expect(run.tools[0].text).toMatch(/ses_opencode_1/)
    expect(run.tools[0].text).toMatch(/Fix login/)
    expect(t.read('held.ts')).toBe('opencode is on it\n')
    expect(run.tools[1].error).toBe(false)
    expect(t.read('free.ts')).toBe('newest file\n')
    c = await t.cache()
    try {
      expect(await getLock(path.join(t.project, 'free.ts'), c)).toBeUndefined()
      const still = await getLock(held, c)
      expect(still?.sessionId).toBe('ses_opencode_1')
    } finally {
      await c.close()
    }
  })

  it('a failing Edit leaves no lock', async () => {
    const t = setup({ 'locked.txt': 'original\n' })
    // Claude reads it, then its Edit passes the hook and fails on the disk: the file is immutable
    // (chattr +i; even root cannot replace it), so Claude's rename over it fails with EPERM
    const target = path.join(t.project, 'locked.txt')
    expect(spawnSync('chattr', ['+i', target]).status, 'chattr +i works here').toBe(0)
    try {
      const run = await runClaude(t.project, [call('Read', { file_path: 'locked.txt' }), call('Edit', { file_path: 'locked.txt', old_string: 'original', new_string: 'changed' }), 'FINAL done'].join('\n'), t.env)
      const edit = run.tools.find((x) => x.name === 'Edit')!
      expect(edit.error).toBe(true)
      expect(edit.text).toMatch(/EPERM|not permitted/)
    } finally {
      spawnSync('chattr', ['-i', target])
    }
    expect(t.read('locked.txt')).toBe('original\n')
    const c = await t.cache()
    try {
      expect(await getLock(target, c)).toBeUndefined()
    } finally {
      await c.close()
    }
  })

  it('two Claude sessions: A reads, B writes, A’s write is refused as stale, naming B; after reading again A’s write lands, also in a session resumed with --resume', async () => {
    const t = setup({ 'app.ts': 'v1\n' })
    const a = await runClaude(t.project, [call('Read', { file_path: 'app.ts' }), 'FINAL read'].join('\n'), t.env)
    expect(a.tools[0].error).toBe(false)
    const b = await runClaude(t.project, [call('Read', { file_path: 'app.ts' }), call('Write', { file_path: 'app.ts', content: 'from B\n' }), 'FINAL B wrote'].join('\n'), t.env)
    expect(b.tools.map((x) => x.error)).toEqual([false, false])
    expect(t.read('app.ts')).toBe('from B\n')
    // A goes on in a new process, resuming its session
    const a2 = await runClaude(t.project, [call('Edit', { file_path: 'app.ts', old_string: 'from B', new_string: 'from A' }), 'FINAL A tried'].join('\n'), t.env, ['--resume', a.sessionId!])
    const refused = a2.tools.find((x) => x.name === 'Edit')!
    expect(refused.error).toBe(true)
    expect(refused.text).toMatch(/app\.ts changed since you read it: agent \S+ \(session [0-9a-f-]+\) \[claude-code\] wrote it \d+s ago/)
    expect(refused.text).toContain(b.sessionId!)
    expect(t.read('app.ts')).toBe('from B\n')
    const a3 = await runClaude(t.project, [call('Read', { file_path: 'app.ts' }), call('Edit', { file_path: 'app.ts', old_string: 'from B', new_string: 'from A' }), 'FINAL A wrote'].join('\n'), t.env, ['--resume', a.sessionId!])
    expect(a3.tools.map((x) => x.error)).toEqual([false, false])
    expect(t.read('app.ts')).toBe('from A\n')
  })

  it('a file a person locked with lock --reason is refused, naming the person and the reason; unlock lets the write through', async () => {
    const t = setup({ 'docs/plan.md': 'the plan\n' })
    const locked = cli(['lock', path.join(t.project, 'docs') + '/', '--reason', 'rewriting the plan by hand', '--ttl', '2h'], t.storeEnv)
    expect(locked.status, locked.stderr).toBe(0)
    expect(locked.stdout).toMatch(/locked .*docs\//)
    const me = `${os.userInfo().username}@${os.hostname()}`
    const list = cli(['list'], t.storeEnv)
    expect(list.stdout).toContain(`[human]`)
    expect(list.stdout).toContain('rewriting the plan by hand')
    const run = await runClaude(t.project, [call('Read', { file_path: 'docs/plan.md' }), call('Edit', { file_path: 'docs/plan.md', old_string: 'the plan', new_string: 'my plan' }), 'FINAL done'].join('\n'), t.env)
    const edit = run.tools.find((x) => x.name === 'Edit')!
    expect(edit.error).toBe(true)
    expect(edit.text).toContain(me)
    expect(edit.text).toContain('for this reason: “rewriting the plan by hand”')
    expect(t.read('docs/plan.md')).toBe('the plan\n')
    const unlocked = cli(['unlock', path.join(t.project, 'docs')], t.storeEnv)
    expect(unlocked.status, unlocked.stdout + unlocked.stderr).toBe(0)
    const again = await runClaude(t.project, [call('Read', { file_path: 'docs/plan.md' }), call('Edit', { file_path: 'docs/plan.md', old_string: 'the plan', new_string: 'my plan' }), 'FINAL done'].join('\n'), t.env)
    expect(again.tools.map((x) => x.error)).toEqual([false, false])
    expect(t.read('docs/plan.md')).toBe('my plan\n')
  })

  it('a session killed with SIGTERM releases what it holds (SessionEnd); one killed with SIGKILL loses it at the TTL', async () => {
    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      const t = setup({}, { FILE_LOCK_TTL_MS: '4000' })
      // while a long Bash call runs, the session holds a file (as a PreToolUse of a write leaves it
      // until its PostToolUse), then Claude is killed
      const c = await t.cache()
      const file = path.join(t.project, 'slow.txt')
      const { child, done } = startClaude(t.project, [call('Bash', { command: `node -e "setTimeout(() => {}, 30000)"`, description: 'wait' }), 'FINAL done'].join('\n'), t.env)
      let sessionId: string | undefined
      for (let i = 0; i < 200 && !sessionId; i++) {
        await sleep(100)
        const dir = path.join(t.env.CLAUDE_CONFIG_DIR!, 'projects')
        const found = fs.existsSync(dir) ? fs.readdirSync(dir).flatMap((d) => fs.readdirSync(path.join(dir, d)).filter((f) => f.endsWith('.jsonl'))) : []
        if (found.length) sessionId = found[0].replace(/\.jsonl$/, '')
      }
      expect(sessionId, 'the session started').toBeTruthy()
      await acquireLock(file, 'claude-code', sessionId!, c, { kind: 'claude-code', ttlMs: 4000 } as any)
      await sleep(1500) // the Bash call is running
      expect((await getLock(file, c))?.sessionId, 'held while the Bash call runs').toBe(sessionId)
      child.kill(signal)
      await done
      await sleep(signal === 'SIGTERM' ? 1500 : 0)
      const right = await getLock(file, c)
      if (signal === 'SIGTERM') expect(right, 'released by SessionEnd').toBeUndefined()
      else {
        expect(right?.sessionId, 'still held right after SIGKILL').toBe(sessionId)
        await sleep(4500)
        expect(await getLock(file, c), 'gone at its TTL').toBeUndefined()
      }
      await c.close()
    }
  })
})
