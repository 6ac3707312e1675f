// The one-command installer: `opencode-file-lock install-plugin`.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { tmpDir } from './helpers/tmp'

const BIN = path.resolve(__dirname, '../bin/opencode-file-lock.js')
const OPENCODE_1 = path.resolve(__dirname, '../node_modules/opencode-linux-x64/bin/opencode')
const cli = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, XDG_CONFIG_HOME: tmpDir('ofl-xdg-') } })
const DUAL = "export { default } from 'opencode-file-lock/server'\n"
const V1 = "export { FileLockPlugin } from 'opencode-file-lock/plugin'\n"

/** A stand-in for an opencode binary of another version (none installs here): it only answers --version. */
function fakeOpencode(version: string): string {
  const dir = tmpDir('ofl-fake-opencode-')
  const bin = path.join(dir, 'opencode')
  fs.writeFileSync(bin, `#!/bin/sh\necho ${version}\n`, { mode: 0o755 })
  return bin
}

describe('install-plugin', () => {
  it('writes the dependency and the plugin file, keeps other dependencies, and is idempotent', () => {
    const project = tmpDir('ofl-proj-')
    fs.mkdirSync(path.join(project, '.opencode'))
    fs.writeFileSync(path.join(project, '.opencode/package.json'), JSON.stringify({ dependencies: { '@opencode-ai/plugin': '1.18.33' } }))
    for (let i = 0; i < 2; i++) {
      const r = cli('install-plugin', '--project', project, '--no-npm', '--opencode', OPENCODE_1)
      expect(r.status, r.stderr).toBe(0)
      expect(r.stdout).toContain("opencode    1.18.33 (")
      expect(r.stdout).toContain("opencode 1 loads the default export's server()")
    }
    const pkg = JSON.parse(fs.readFileSync(path.join(project, '.opencode/package.json'), 'utf8'))
    expect(pkg.dependencies).toEqual({ '@opencode-ai/plugin': '1.18.33', 'opencode-file-lock': `file:${path.resolve(__dirname, '..')}` })
    expect(fs.readFileSync(path.join(project, '.opencode/plugin/file-lock.ts'), 'utf8')).toBe(DUAL)
  })

  it('writes what the opencode found loads: opencode 2 a default {id, setup} in plugins/, an opencode 1 older than 1.18.29 its named function; none found: the module both load', () => {
    const project = tmpDir('ofl-proj-')
    const v2 = cli('install-plugin', '--project', project, '--no-npm', '--opencode', fakeOpencode('2.3.0'))
    expect(v2.status, v2.stderr).toBe(0)
    expect(v2.stdout).toContain('opencode    2.3.0')
    expect(v2.stdout).toMatch(/plugin {6}\S+\/\.opencode\/plugins\/file-lock\.ts \(export \{ default \} from 'opencode-file-lock\/server'\)/)
    expect(fs.readFileSync(path.join(project, '.opencode/plugins/file-lock.ts'), 'utf8')).toBe(DUAL)
    const old = cli('install-plugin', '--project', project, '--no-npm', '--opencode', fakeOpencode('1.17.5'))
    expect(fs.readFileSync(path.join(project, '.opencode/plugin/file-lock.ts'), 'utf8')).toBe(V1)
    expect(fs.existsSync(path.join(project, '.opencode/plugins/file-lock.ts'))).toBe(false) // one opencode never loads it twice
    expect(old.stdout).toContain('removed     ')
    const none = spawnSync(process.execPath, [BIN, 'install-plugin', '--project', project, '--no-npm'], { encoding: 'utf8', env: { ...process.env, PATH: path.dirname(process.execPath) } })
    expect(none.stdout).toContain('opencode    not found (no opencode on PATH): writing the module that opencode 1.18.29+ and opencode 2 both load')
    expect(fs.readFileSync(path.join(project, '.opencode/plugin/file-lock.ts'), 'utf8')).toBe(DUAL)
  })

  it('when npm install fails, the plugin files are put back as they were and the failure says what to do', () => {
    const project = tmpDir('ofl-proj-')
    fs.mkdirSync(path.join(project, '.opencode/plugin'), { recursive: true })
    fs.writeFileSync(path.join(project, '.opencode/plugin/file-lock.ts'), V1)
    const r = cli('install-plugin', '--project', project, '--opencode', OPENCODE_1, '--from', `file:${tmpDir('ofl-empty-')}/nothing-here.tgz`)
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/npm install in \S+ failed \(exit \d+\); the plugin files there are as they were\. Without the public registry, .*npm run pack:local/)
    expect(fs.readFileSync(path.join(project, '.opencode/plugin/file-lock.ts'), 'utf8')).toBe(V1)
  })

  it('refuses to overwrite a different plugin file without --force, and a broken package.json', () => {
    const project = tmpDir('ofl-proj-')
    fs.mkdirSync(path.join(project, '.opencode/plugin'), { recursive: true })
    fs.writeFileSync(path.join(project, '.opencode/plugin/file-lock.ts'), '// mine\n')
    const r = cli('install-plugin', '--project', project, '--no-npm', '--opencode', OPENCODE_1)
    expect(r.status).toBe(2)
    expect(r.stderr).toContain('--force')
    expect(fs.readFileSync(path.join(project, '.opencode/plugin/file-lock.ts'), 'utf8')).toBe('// mine\n')
    expect(cli('install-plugin', '--project', project, '--no-npm', '--force', '--opencode', OPENCODE_1).status).toBe(0)
    expect(fs.readFileSync(path.join(project, '.opencode/plugin/file-lock.ts'), 'utf8')).toBe(DUAL)
    fs.writeFileSync(path.join(project, '.opencode/package.json'), '{ not json')
    const bad = cli('install-plugin', '--project', project, '--no-npm')
    expect(bad.status).toBe(2)
    expect(bad.stderr).toContain('not valid JSON')
  })

  it('installs globally with npm, and the installed package loads its native addon', () => {
    const xdg = tmpDir('ofl-xdg-')
    const r = spawnSync(process.execPath, [BIN, 'install-plugin', '--global'], { encoding: 'utf8', env: { ...process.env, XDG_CONFIG_HOME: xdg, OPENCODE_FILE_LOCK_SKIP_BUILD: '1' } })
    expect(r.status, r.stderr).toBe(0)
    const target = path.join(xdg, 'opencode')
    expect(fs.existsSync(path.join(target, 'plugin/file-lock.ts'))).toBe(true)
    const load = spawnSync(process.execPath, ['-e', "const l = require('opencode-file-lock'); console.log(typeof l.acquireLock, l.normalizePath('/a/./b'))"], { cwd: target, encoding: 'utf8' })
    expect(load.stdout.trim()).toBe('function /a/b')
  })

  it('npm run pack:local packs the package and its binary; the command it prints installs both into opencode with no registry package of ours', () => {
    const out = tmpDir('ofl-pack-')
    const pack = spawnSync('npm', ['run', '--silent', 'pack:local', '--', '--out', out], { cwd: path.resolve(__dirname, '..'), encoding: 'utf8' })
    expect(pack.status, pack.stderr).toBe(0)
    const [main, platform] = ['opencode-file-lock-', 'opencode-file-lock-linux-x64-gnu-'].map((p) => path.join(out, fs.readdirSync(out).find((f) => f.startsWith(p) && /^[\d.]+\.tgz$/.test(f.slice(p.length)))!))
    const command = pack.stdout.split('\n').find((l) => l.trim().startsWith('npx '))!.trim()
    expect(command).toBe(`npx -y -p ${platform} -p ${main} opencode-file-lock install-plugin --global --from ${main} --from ${platform}`)
    const home = tmpDir('ofl-pack-home-')
    const env = { ...process.env, HOME: home, XDG_CONFIG_HOME: path.join(home, '.config'), npm_config_cache: path.join(home, '.npm'), PATH: process.env.PATH! }
    const r = spawnSync('sh', ['-c', command], { cwd: home, encoding: 'utf8', env })
    expect(r.status, r.stdout + r.stderr).toBe(0)
    const target = path.join(home, '.config/opencode')
    expect(fs.readFileSync(path.join(target, 'plugin/file-lock.ts'), 'utf8')).toBe(DUAL)
    const load = spawnSync(process.execPath, ['-e', "import('opencode-file-lock/server').then((m) => console.log(m.default.id, typeof require('opencode-file-lock').acquireLock))"], { cwd: target, encoding: 'utf8' })
    expect(load.stdout.trim()).toBe('opencode-file-lock function')
  }, 120_000)

  it('npx with the package alone, no binary and no Rust: nothing fails silently (the install script lets the command run, the command says what failed)', () => {
    const out = tmpDir('ofl-pack-')
    expect(spawnSync('npm', ['run', '--silent', 'pack:local', '--', '--out', out], { cwd: path.resolve(__dirname, '..'), encoding: 'utf8' }).status).toBe(0)
    const main = path.join(out, fs.readdirSync(out).find((f) => /^opencode-file-lock-[\d.]+\.tgz$/.test(f))!)
    const home = tmpDir('ofl-npx-home-')
    const tmp = tmpDir('ofl-npx-tmp-')
    // no cargo on this PATH: node and npm only
    const env = { ...process.env, HOME: home, TMPDIR: tmp, XDG_CONFIG_HOME: path.join(home, '.config'), npm_config_cache: path.join(home, '.npm'), PATH: path.dirname(process.execPath) }
    const r = spawnSync('npx', ['-y', '-p', main, 'opencode-file-lock', 'install-plugin', '--global'], { cwd: home, encoding: 'utf8', env })
    const said = r.stdout + r.stderr
    expect(said).toContain('opencode-file-lock: note: this copy of the package cannot load its native addon (the opencode-file-lock native addon is not installed for linux-x64-gnu.')
    expect(said).toMatch(/npm install in \S+ failed .*npm run pack:local/)
    expect(r.status).toBe(1)
    // what the install script said is kept for doctor
    expect(fs.readFileSync(path.join(tmp, 'opencode-file-lock-install-failure.log'), 'utf8')).toContain('building from source needs Rust, which is not installed (no cargo on PATH)')
  }, 120_000)

  it('says how to use it, and fails on unknown input', () => {
    expect(cli('--help').stdout).toContain('install-plugin')
    expect(cli('install-plugin', '--bogus').status).toBe(2)
    expect(cli('frobnicate').status).toBe(2)
    expect(cli('install-plugin', '--global', '--project', '.').status).toBe(2)
  })
})
