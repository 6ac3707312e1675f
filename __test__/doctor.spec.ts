// `opencode-file-lock doctor` (and `status`) where a link of the chain is broken, run as a user runs
// them: no opencode on PATH, a store that does not answer, config entries that load nothing (the
// library's root named as a plugin, a removal entry), and an install script's failure shown again.
// doctor.e2e.spec.ts covers the real opencode with the plugin loaded and the silent opencode 2 case.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { freePort } from './helpers/redis-server'
import { tmpDir } from './helpers/tmp'

const BIN = path.resolve(__dirname, '../bin/opencode-file-lock.js')

/** A PATH with node but no opencode on it. */
function pathWithoutOpencode(): string {
  const bin = tmpDir('ofl-doctor-path-')
  fs.symlinkSync(process.execPath, path.join(bin, 'node'))
  return `${bin}${path.delimiter}/usr/bin${path.delimiter}/bin`
}

function run(args: string[], env: Record<string, string>, cwd?: string) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd, env: { HOME: tmpDir('ofl-doctor-home-'), ...env }, timeout: 60_000 })
  return { code: r.status, out: r.stdout + r.stderr, stdout: r.stdout }
}

/** A stand-in opencode that only answers --version (no opencode 2 installs here). */
function fakeOpencode(version: string): string {
  const dir = tmpDir('ofl-fake-opencode-')
  fs.writeFileSync(path.join(dir, 'opencode'), `#!/bin/sh\necho ${version}\n`, { mode: 0o755 })
  return path.join(dir, 'opencode')
}

describe('doctor where a link is broken', () => {
  it('no opencode on PATH, nothing configured: each said with its fix, exit 1', () => {
    const project = tmpDir('ofl-doctor-proj-')
    const r = run(['doctor', '--project', project], { PATH: pathWithoutOpencode(), FILE_LOCK_CACHE_BACKEND: 'sled', FILE_LOCK_PATH: tmpDir('ofl-doctor-sled-') })
    expect(r.out).toMatch(/✗ opencode +no opencode on PATH\n {2}fix: install opencode \(npm i -g opencode-ai\) or put it on PATH/)
    expect(r.out).toMatch(/✗ plugin configured +no opencode-file-lock plugin in \S+\/\.opencode or \S+\n {2}fix: npx opencode-file-lock install-plugin --project /)
    expect(r.out).toMatch(/✓ native addon +loads/)
    expect(r.out).toMatch(/✓ store +sled answers/)
    expect(r.out).toMatch(/✗ loaded by opencode +no running opencode has loaded this plugin/)
    expect(r.out).toContain('some checks failed: see each fix above.')
    expect(r.code).toBe(1)
  })

  it('a store that does not answer: said with the store settings to check, and no secret in it', async () => {
    const project = tmpDir('ofl-doctor-proj-')
    const port = await freePort() // nothing listens there
    const r = run(['doctor', '--project', project, '--opencode', fakeOpencode('1.18.33')], { PATH: pathWithoutOpencode(), FILE_LOCK_CACHE_BACKEND: 'redis', REDIS_URL: `redis://:doctor-secret-pw@127.0.0.1:${port}`, REDIS_CONNECT_TIMEOUT: '500' })
    expect(r.out).toMatch(/✓ opencode +1\.18\.33 at /)
    expect(r.out).toMatch(/✗ store +\[E[A-Z]+\] .*127\.0\.0\.1:\d+/)
    expect(r.out).toMatch(/fix: check FILE_LOCK_CACHE_BACKEND \/ FILE_LOCK_PATH \/ REDIS_URL/)
    expect(r.out).not.toContain('doctor-secret-pw')
    expect(r.code).toBe(1)
  })

  it('config entries that load nothing: the library root named as an opencode 1 plugin, and an opencode 2 removal entry', () => {
    const project = tmpDir('ofl-doctor-proj-')
    fs.mkdirSync(path.join(project, '.opencode'))
    fs.writeFileSync(path.join(project, '.opencode/opencode.json'), JSON.stringify({ plugin: ['opencode-file-lock'], plugins: ['-opencode-file-lock'] }))
    const env = { PATH: pathWithoutOpencode(), FILE_LOCK_CACHE_BACKEND: 'sled', FILE_LOCK_PATH: tmpDir('ofl-doctor-sled-') }
    const r = run(['doctor', '--project', project, '--opencode', fakeOpencode('1.18.33')], env)
    expect(r.out).toMatch(/✗ plugin configured +"plugin" entry opencode-file-lock in \S+opencode\.json: the package's root, which is the library, not the plugin \(name opencode-file-lock\/server\), which opencode 1\.18\.33 does not load\n {2}fix: npx opencode-file-lock install-plugin/)
    expect(r.out).not.toMatch(/"plugins" entry -opencode-file-lock/)
    expect(r.code).toBe(1)
    const json = JSON.parse(run(['doctor', '--project', project, '--opencode', fakeOpencode('2.3.0'), '--json'], env).stdout)
    expect(json.checks.filter((c: any) => c.name === 'plugin configured')).toHaveLength(1)
  })

  it('status shows the store and then the same checks, as information (its exit code is the store\u2019s health)', () => {
    const project = tmpDir('ofl-doctor-proj-')
    const env = { PATH: pathWithoutOpencode(), FILE_LOCK_CACHE_BACKEND: 'sled', FILE_LOCK_PATH: tmpDir('ofl-doctor-sled-') }
    const r = run(['status', '--project', project, '--opencode', fakeOpencode('2.3.0')], env)
    expect(r.out).toMatch(/^healthy +true$/m)
    expect(r.out).toMatch(/✓ opencode +2\.3\.0 at \S+ \(plugin API 2: default \{id, setup\}\)/)
    expect(r.out).toMatch(/✗ plugin configured +no opencode-file-lock plugin/)
    expect(r.code).toBe(0)
    const json = JSON.parse(run(['status', '--json', '--project', project], env).stdout)
    expect(json).toMatchObject({ healthy: true, checks: expect.arrayContaining([expect.objectContaining({ name: 'store', ok: true })]) })
  })

  it('a copy of the package without its native binary: the addon check says so, with what the last failed install said', () => {
    // the package as npx leaves it when the binary's install failed: no .node beside it, no platform package
    const ROOT = path.resolve(__dirname, '..')
    const pkg = path.join(tmpDir('ofl-doctor-nobin-'), 'opencode-file-lock')
    for (const f of ['package.json', 'index.js', 'lib', 'bin']) fs.cpSync(path.join(ROOT, f), path.join(pkg, f), { recursive: true })
    const { PKG } = require('../lib/platform.js')
    const log = path.join(os.tmpdir(), `${PKG.name}-install-failure.log`)
    const had = fs.existsSync(log) ? fs.readFileSync(log) : null
    try {
      fs.writeFileSync(log, 'the prebuilt binary is not installed (a test wrote this)\n')
      const r = spawnSync(process.execPath, [path.join(pkg, 'bin/opencode-file-lock.js'), 'doctor', '--project', tmpDir('ofl-doctor-proj-')], { encoding: 'utf8', env: { HOME: tmpDir('ofl-doctor-home-'), PATH: pathWithoutOpencode() }, timeout: 60_000 })
      const out = r.stdout + r.stderr
      expect(out).toMatch(/✗ native addon +the opencode-file-lock native addon is not installed for linux-x64-gnu\./)
      expect(out).toMatch(/the last install that failed said:\n {4}the prebuilt binary is not installed \(a test wrote this\)/)
      expect(out).not.toMatch(/✓ store/) // nothing to open it with
      expect(r.status).toBe(1)
    } finally {
      if (had) fs.writeFileSync(log, had)
      else fs.rmSync(log, { force: true })
    }
  })

  it('the copy of the package opencode loads is checked, not the one doctor runs from: without its binary it is said to refuse every write, with the fix', () => {
    const ROOT = path.resolve(__dirname, '..')
    const project = tmpDir('ofl-doctor-proj-')
    const { DUAL_FILE } = require('../lib/opencode-setup.js')
    fs.mkdirSync(path.join(project, '.opencode/plugin'), { recursive: true })
    fs.writeFileSync(path.join(project, '.opencode/plugin/file-lock.ts'), DUAL_FILE)
    // installed without optional dependencies: the package without its platform binary
    const copy = path.join(project, '.opencode/node_modules/opencode-file-lock')
    for (const f of ['package.json', 'index.js', 'lib', 'bin']) fs.cpSync(path.join(ROOT, f), path.join(copy, f), { recursive: true })
    const env = { PATH: pathWithoutOpencode(), FILE_LOCK_CACHE_BACKEND: 'sled', FILE_LOCK_PATH: tmpDir('ofl-doctor-sled-') }
    const r = run(['doctor', '--project', project, '--opencode', fakeOpencode('1.18.33')], env)
    expect(r.out).toMatch(/✓ plugin configured +\S+file-lock\.ts: one module for opencode 1\.18\.29\+ and opencode 2, loaded by opencode 1\.18\.33/)
    expect(r.out).toMatch(/✗ native addon +the copy opencode loads \(\S+\.opencode\/node_modules\/opencode-file-lock\) cannot lock: the opencode-file-lock native addon is not installed for linux-x64-gnu\./)
    expect(r.out).toMatch(/fix: npm install in \S+\.opencode \(with optional dependencies\)/)
    expect(r.code).toBe(1)
    // with its binary beside it: that copy loads
    const addon = `opencode-file-lock.${require('../lib/platform.js').platformSuffix()}.node`
    fs.copyFileSync(path.join(ROOT, addon), path.join(copy, addon))
    const ok = run(['doctor', '--project', project, '--opencode', fakeOpencode('1.18.33')], env)
    expect(ok.out).toMatch(/✓ native addon +loads in the copy opencode loads \(\S+\.opencode\/node_modules\/opencode-file-lock\)/)
  })
})
