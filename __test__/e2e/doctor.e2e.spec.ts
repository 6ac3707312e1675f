// `opencode-file-lock doctor` against the real opencode 1.18.33: the plugin configured and loaded by
// a running opencode (every link checks out, the instance named with its version and plugin API),
// configured but not loaded (no opencode running), and the silent case of opencode 2 (a stand-in
// binary that answers --version with 2.3.0, since none installs here) with a module only
// opencode 1 loads: "configured but never loaded".
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { tmpDir } from '../helpers/tmp'
import { makeProject, OPENCODE_BIN, serve, startHarness, type Harness } from './opencode'

vi.setConfig({ testTimeout: 120_000, hookTimeout: 180_000 })

const BIN = path.resolve(__dirname, '../../bin/opencode-file-lock.js')
let h: Harness

beforeAll(async () => {
  h = await startHarness()
}, 180_000)

afterAll(async () => {
  await h?.stop()
})

/** doctor as a user runs it: opencode on PATH, the same store settings as opencode. */
function doctor(project: string, env: Record<string, string>, ...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, 'doctor', '--project', project, ...args], { encoding: 'utf8', env })
  return { code: r.status, out: r.stdout + r.stderr }
}

const withOpencodeOnPath = (env: Record<string, string>, dir = path.dirname(OPENCODE_BIN)) => ({ ...env, PATH: `${dir}${path.delimiter}${env.PATH}` })

describe('doctor', () => {
  it('with opencode 1 running the plugin: every link checks out, and the instance is named; once that opencode is killed, its entry expires', async () => {
    const dir = makeProject(h, 'doctor-loaded')
    // a short instance TTL, so the entry of a killed opencode is gone within the test
    const env = { ...h.env, FILE_LOCK_PATH: tmpDir('ofl-doctor-sled-'), FILE_LOCK_INSTANCE_TTL_MS: '3000' }
    const oc = await serve(h, dir, env)
    try {
      // opencode loads a project's plugins when the project is first used: a session does that
      await oc.client.session.create({ body: { title: 'doctor' } })
      let r = doctor(dir, withOpencodeOnPath(env))
      for (let i = 0; i < 50 && !r.out.includes('✓ loaded by opencode'); i++) {
        await new Promise((res) => setTimeout(res, 200))
        r = doctor(dir, withOpencodeOnPath(env))
      }
      expect(r.out).toMatch(/✓ opencode +1\.18\.33 at \S+ \(plugin API 1, which also reads a default \{id, server\}\)/)
      expect(r.out).toMatch(/✓ plugin configured +\S+\/\.opencode\/plugin\/file-lock\.ts: one module for opencode 1\.18\.29\+ and opencode 2, loaded by opencode 1\.18\.33/)
      expect(r.out).toMatch(/✓ native addon +loads/)
      expect(r.out).toMatch(/✓ store +sled answers/)
      expect(r.out).toMatch(/✓ loaded by opencode +opencode 1\.18\.33 \(plugin API 1\), pid \d+ on \S+, project \S+doctor-loaded, store sled \S+, since /)
      expect(r.out).toContain('everything checks out.')
      expect(r.code).toBe(0)
      const json = JSON.parse(spawnSync(process.execPath, [BIN, 'doctor', '--project', dir, '--json'], { encoding: 'utf8', env: withOpencodeOnPath(env) }).stdout)
      expect(json.ok).toBe(true)
      oc.kill('SIGKILL')
      await new Promise((res) => setTimeout(res, 3500))
      const after = doctor(dir, withOpencodeOnPath(env))
      expect(after.out).toMatch(/✗ loaded by opencode +configured but never loaded/)
    } finally {
      await oc.stop()
    }
  })

  it('with opencode 1 running without the plugin: not configured and not loaded, each with its fix, while that opencode works', async () => {
    const dir = makeProject(h, 'doctor-without')
    fs.rmSync(path.join(dir, '.opencode/plugin/file-lock.ts'))
    const env = { ...h.env, FILE_LOCK_PATH: tmpDir('ofl-doctor-sled-') }
    const oc = await serve(h, dir, env)
    try {
      await oc.client.session.create({ body: { title: 'no plugin' } })
      await new Promise((res) => setTimeout(res, 1000)) // what a plugin would have announced by now
      const r = doctor(dir, withOpencodeOnPath(env))
      expect(r.out).toMatch(/✓ opencode +1\.18\.33 at /)
      expect(r.out).toMatch(/✗ plugin configured +no opencode-file-lock plugin in \S+doctor-without\/\.opencode or \S+\n {2}fix: npx opencode-file-lock install-plugin --project \S+doctor-without/)
      expect(r.out).toMatch(/✗ loaded by opencode +no running opencode has loaded this plugin/)
      expect(r.code).toBe(1)
    } finally {
      await oc.stop()
    }
  })

  it('configured but no opencode has loaded it: said, with the fix', () => {
    const dir = makeProject(h, 'doctor-idle')
    const r = doctor(dir, withOpencodeOnPath({ ...h.env, FILE_LOCK_PATH: tmpDir('ofl-doctor-sled-') }))
    expect(r.out).toMatch(/✓ plugin configured/)
    expect(r.out).toMatch(/✗ loaded by opencode +configured but never loaded: no running opencode has announced this plugin for \S+doctor-idle\n {2}fix: start opencode in \S+ with the same store settings/)
    expect(r.code).toBe(1)
  })

  it('the silent case: an opencode 1 module under opencode 2 is "configured but never loaded", and the fix reinstalls it', () => {
    const dir = makeProject(h, 'doctor-v2')
    fs.writeFileSync(path.join(dir, '.opencode/plugin/file-lock.ts'), "export { FileLockPlugin } from 'opencode-file-lock/plugin'\n")
    const fake = tmpDir('ofl-fake-opencode2-')
    fs.writeFileSync(path.join(fake, 'opencode'), '#!/bin/sh\necho 2.3.0\n', { mode: 0o755 }) // a stand-in: it only answers --version
    const r = doctor(dir, withOpencodeOnPath({ ...h.env, FILE_LOCK_PATH: tmpDir('ofl-doctor-sled-') }, fake))
    expect(r.out).toMatch(/✓ opencode +2\.3\.0 at \S+ \(plugin API 2: default \{id, setup\}\)/)
    expect(r.out).toMatch(/✗ plugin configured +\S+file-lock\.ts: opencode 1's shape \(a named FileLockPlugin\), which opencode 2\.3\.0 does not load \(opencode 2 loads only a default export \{id, setup\}; it skips this file with one warning in its log\)\n {2}fix: npx opencode-file-lock install-plugin --project /)
    expect(r.out).toMatch(/✗ loaded by opencode +configured but never loaded/)
    expect(r.code).toBe(1)
  })
})
