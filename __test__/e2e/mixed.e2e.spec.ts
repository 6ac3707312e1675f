// End to end with the real opencode 1.18.33 beside a person and the real Claude Code 2.1.332: a file
// a person holds with `opencode-file-lock lock --reason` is refused to opencode's write, naming the
// person and the reason, and `unlock` lets it through; a file a running opencode session holds is
// refused to Claude Code's Write (hooks installed), naming that session.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { call as claudeCall, claudeEnv, runClaude, startFakeApi, type FakeApi } from '../helpers/claude'
import { tmpDir } from '../helpers/tmp'
import { call, makeProject, readFile, run, script, startHarness, toolResults, waitForGate, type Harness } from './opencode'

vi.setConfig({ testTimeout: 120_000, hookTimeout: 180_000 })
const BIN = path.resolve(__dirname, '../../bin/opencode-file-lock.js')

let h: Harness
let api: FakeApi
beforeAll(async () => {
  ;[h, api] = await Promise.all([startHarness(), startFakeApi()])
}, 180_000)
afterAll(async () => {
  api?.stop()
  await h?.stop()
})

describe('locks people take by hand, in the real opencode', () => {
  it('lock --reason: opencode’s write is refused naming the person and the reason, the file unchanged; after unlock it lands', async () => {
    const dir = makeProject(h, 'people-lock')
    fs.writeFileSync(path.join(dir, 'notes.md'), 'mine\n')
    const env = { FILE_LOCK_CACHE_BACKEND: 'sled', FILE_LOCK_PATH: tmpDir('ofl-people-'), FILE_LOCK_WAIT_MS: '0' }
    const cli = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env } })
    const locked = cli('lock', path.join(dir, 'notes.md'), '--reason', 'editing by hand, back at 3', '--ttl', '2h')
    expect(locked.status, locked.stderr).toBe(0)
    const me = `${os.userInfo().username}@${os.hostname()}`
    expect(locked.stdout).toContain(me)
    const first = await run(h, dir, script(readFile('notes.md'), call('write', { filePath: 'notes.md', content: 'agent\n' }), 'FINAL tried'), { env })
    const refused = toolResults(first).find((t) => t.tool === 'write')!
    expect(refused.status).toBe('error')
    expect(refused.text).toContain(me)
    expect(refused.text).toContain('[human]')
    expect(refused.text).toContain('for this reason: “editing by hand, back at 3”')
    expect(fs.readFileSync(path.join(dir, 'notes.md'), 'utf8')).toBe('mine\n')
    // someone else's lock is not the person's to unlock; their own is
    const unlocked = cli('unlock', path.join(dir, 'notes.md'))
    expect(unlocked.status, unlocked.stdout + unlocked.stderr).toBe(0)
    const second = await run(h, dir, script(readFile('notes.md'), call('write', { filePath: 'notes.md', content: 'agent\n' }), 'FINAL wrote'), { env })
    expect(toolResults(second).map((t) => t.status)).toEqual(['completed', 'completed'])
    expect(fs.readFileSync(path.join(dir, 'notes.md'), 'utf8')).toBe('agent\n')
    const nothing = cli('unlock', path.join(dir, 'notes.md'))
    expect(nothing.status).toBe(1)
    expect(nothing.stdout).toMatch(/nothing is locked there/)
  })

  it('a file a running opencode session holds: Claude Code’s Write is refused naming that session, the file untouched; once opencode is done Claude writes it', async () => {
    const dir = makeProject(h, 'mixed-claude')
    const env = { FILE_LOCK_CACHE_BACKEND: 'sled', FILE_LOCK_PATH: tmpDir('ofl-mixed-'), FILE_LOCK_WAIT_MS: '0', FILE_LOCK_HOOK_KEEPER: 'off' }
    const hooks = spawnSync(process.execPath, [BIN, 'install-hooks', 'claude-code', '--project', dir], { encoding: 'utf8' })
    expect(hooks.status, hooks.stderr).toBe(0)
    // opencode holds shared.ts in slow_write until the test opens the gate
    const holding = run(h, dir, script(call('slow_write', { filePath: 'shared.ts', content: 'from opencode\n' }), 'FINAL opencode done'), { env })
    const open = await waitForGate(dir, 'shared.ts')
    const cenv = claudeEnv(api, tmpDir('ofl-mixed-home-'), env)
    try {
      const refused = await runClaude(dir, [claudeCall('Write', { file_path: 'shared.ts', content: 'from claude\n' }), 'FINAL tried'].join('\n'), cenv)
      expect(refused.tools[0].error).toBe(true)
      expect(refused.tools[0].text).toMatch(/shared\.ts is locked by another agent: agent opencode@\S+ \(session ses_\w+\) \[opencode\]/)
      expect(fs.existsSync(path.join(dir, 'shared.ts'))).toBe(false)
    } finally {
      open()
    }
    expect(toolResults(await holding).map((t) => t.status)).toEqual(['completed'])
    expect(fs.readFileSync(path.join(dir, 'shared.ts'), 'utf8')).toBe('from opencode\n')
    const after = await runClaude(dir, [claudeCall('Read', { file_path: 'shared.ts' }), claudeCall('Write', { file_path: 'shared.ts', content: 'from claude\n' }), 'FINAL wrote'].join('\n'), cenv)
    expect(after.tools.map((t) => t.error)).toEqual([false, false])
    expect(fs.readFileSync(path.join(dir, 'shared.ts'), 'utf8')).toBe('from claude\n')
  })
})
