// The one-command installer: `opencode-file-lock install-plugin`.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { tmpDir } from './helpers/tmp'

const BIN = path.resolve(__dirname, '../bin/opencode-file-lock.js')
const cli = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, XDG_CONFIG_HOME: tmpDir('ofl-xdg-') } })
const PLUGIN = "export { FileLockPlugin } from 'opencode-file-lock/plugin'\n"

describe('install-plugin', () => {
  it('writes the dependency and the plugin file, keeps other dependencies, and is idempotent', () => {
    const project = tmpDir('ofl-proj-')
    fs.mkdirSync(path.join(project, '.opencode'))
    fs.writeFileSync(path.join(project, '.opencode/package.json'), JSON.stringify({ dependencies: { '@opencode-ai/plugin': '1.18.33' } }))
    for (let i = 0; i < 2; i++) {
      const r = cli('install-plugin', '--project', project, '--no-npm')
      expect(r.status, r.stderr).toBe(0)
    }
    const pkg = JSON.parse(fs.readFileSync(path.join(project, '.opencode/package.json'), 'utf8'))
    expect(pkg.dependencies).toEqual({ '@opencode-ai/plugin': '1.18.33', 'opencode-file-lock': `file:${path.resolve(__dirname, '..')}` })
    expect(fs.readFileSync(path.join(project, '.opencode/plugin/file-lock.ts'), 'utf8')).toBe(PLUGIN)
  })

  it('refuses to overwrite a different plugin file without --force, and a broken package.json', () => {
    const project = tmpDir('ofl-proj-')
    fs.mkdirSync(path.join(project, '.opencode/plugin'), { recursive: true })
    fs.writeFileSync(path.join(project, '.opencode/plugin/file-lock.ts'), '// mine\n')
    const r = cli('install-plugin', '--project', project, '--no-npm')
    expect(r.status).toBe(2)
    expect(r.stderr).toContain('--force')
    expect(fs.readFileSync(path.join(project, '.opencode/plugin/file-lock.ts'), 'utf8')).toBe('// mine\n')
    expect(cli('install-plugin', '--project', project, '--no-npm', '--force').status).toBe(0)
    expect(fs.readFileSync(path.join(project, '.opencode/plugin/file-lock.ts'), 'utf8')).toBe(PLUGIN)
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

  it('says how to use it, and fails on unknown input', () => {
    expect(cli('--help').stdout).toContain('install-plugin')
    expect(cli('install-plugin', '--bogus').status).toBe(2)
    expect(cli('frobnicate').status).toBe(2)
    expect(cli('install-plugin', '--global', '--project', '.').status).toBe(2)
  })
})
