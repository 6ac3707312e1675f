// Installed the way users install it: the platform package for this machine and the main package
// are published to a real npm registry on 127.0.0.1 (verdaccio), then, with no cargo on PATH,
// installed into fresh projects (CommonJS, ESM, TypeScript --strict in nodenext and bundler
// modes, Bun), set up with `npx opencode-file-lock install-plugin`, and installed by opencode
// itself into a plugin folder, where a write is locked; with the binary package removed, the
// plugin refuses writes instead of letting them run unlocked.
import { execFileSync, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { acquireLock, releaseLock, SledCache } from '../lib/index.js'
import { OPENCODE_BIN, makeProject, run, startHarness, toolResults, type Harness } from './e2e/opencode'
import { startRegistry, type Registry } from './helpers/registry'
import { tmpDir } from './helpers/tmp'

vi.setConfig({ testTimeout: 240_000, hookTimeout: 240_000 })
const REPO = path.resolve(__dirname, '..')
const { version } = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8'))
const { platformSuffix } = require('../lib/platform.js')
const PLATFORM_PKG = `opencode-file-lock-${platformSuffix()}`
const TSC = path.join(REPO, 'node_modules/.bin/tsc')
// a user's shell without Rust: cargo lives in ~/.cargo/bin, which is not on this PATH
const PATH = '/usr/local/bin:/usr/bin:/bin'

let registry: Registry
let userEnv: Record<string, string>

function sh(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}) {
  const t = Date.now()
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...userEnv, ...env, PWD: cwd }, timeout: 180_000 })
  return { ...r, ms: Date.now() - t, out: `${r.stdout}\n${r.stderr}` }
}

function duBytes(dir: string): number {
  return Number(execFileSync('du', ['-sb', dir], { encoding: 'utf8' }).split('\t')[0])
}

function freshProject(name: string, pkg: Record<string, unknown> = {}): string {
  const dir = tmpDir(`ofl-user-${name}-`)
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: `user-${name}`, version: '1.0.0', private: true, ...pkg }, null, 2))
  return dir
}

/** A script that locks a file on a sled folder of its own, refuses a second session, and prints 'locked <path>'. */
const LOCK_SCRIPT = (folder: string, importLine: string) => `${importLine}
const cache = await openCache({ backend: 'sled', path: ${JSON.stringify(folder)} })
const p = await acquireLock('/user/a.txt', 'agent-a', 'ses-a', cache)
const refused = await acquireLock('/user/a.txt', 'agent-b', 'ses-b', cache).catch((e) => e)
if (refused.code !== 'ELOCKED') throw new Error('expected ELOCKED, got ' + refused)
await releaseLock(p, 'ses-a', cache)
await cache.close()
console.log('locked ' + p)
`

beforeAll(async () => {
  registry = await startRegistry()
  const home = tmpDir('ofl-user-home-')
  userEnv = { HOME: home, PATH, LANG: 'C.UTF-8', XDG_STATE_HOME: path.join(home, 'state'), XDG_CONFIG_HOME: path.join(home, 'config'), ...registry.env }
  expect(spawnSync('cargo', ['--version'], { env: userEnv }).error).toBeDefined() // really no cargo
  // the platform package as the release workflow makes it: npm/<platform> plus the built binary
  const binary = path.join(REPO, `opencode-file-lock.${platformSuffix()}.node`)
  const platformDir = path.join(tmpDir('ofl-platform-'), platformSuffix())
  fs.cpSync(path.join(REPO, 'npm', platformSuffix()), platformDir, { recursive: true })
  fs.copyFileSync(binary, path.join(platformDir, path.basename(binary)))
  registry.publish(platformDir)
  const packDir = tmpDir('ofl-pack-')
  const [packed] = JSON.parse(execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', packDir], { cwd: REPO, encoding: 'utf8' }))
  registry.publish(path.join(packDir, packed.filename))
})

afterAll(async () => {
  await registry?.stop()
})

describe('installed from a registry, with no compiler', () => {
  it('npm install into a fresh project takes the prebuilt binary: seconds and megabytes, no build, no target folder', () => {
    const dir = freshProject('npm')
    const r = sh('npm', ['install', `opencode-file-lock@${version}`], dir)
    expect(r.status, r.out).toBe(0)
    const size = duBytes(path.join(dir, 'node_modules'))
    console.log(`registry install: ${(r.ms / 1000).toFixed(1)} s, node_modules ${(size / 1e6).toFixed(1)} MB`)
    expect(r.ms).toBeLessThan(20_000)
    expect(size).toBeLessThan(15e6)
    expect(fs.existsSync(path.join(dir, 'node_modules', PLATFORM_PKG, `opencode-file-lock.${platformSuffix()}.node`))).toBe(true)
    expect(fs.existsSync(path.join(dir, 'node_modules/opencode-file-lock/target'))).toBe(false)
    expect(r.out).not.toContain('building the native addon')
    // CommonJS
    fs.writeFileSync(path.join(dir, 'index.cjs'), `(async () => {\n${LOCK_SCRIPT(tmpDir(), "const { openCache, acquireLock, releaseLock } = require('opencode-file-lock')")}})().catch((e) => { console.error(e); process.exit(1) })\n`)
    const cjs = sh(process.execPath, ['index.cjs'], dir)
    expect(cjs.stdout.trim(), cjs.out).toBe('locked /user/a.txt')
    // ESM, with the plugin imported as Node imports it
    fs.writeFileSync(
      path.join(dir, 'index.mjs'),
      LOCK_SCRIPT(tmpDir(), "import { openCache, acquireLock, releaseLock } from 'opencode-file-lock'\nimport { FileLockPlugin } from 'opencode-file-lock/plugin'\nif (typeof FileLockPlugin !== 'function') throw new Error('no plugin')"),
    )
    const esm = sh(process.execPath, ['index.mjs'], dir)
    expect(esm.stdout.trim(), esm.out).toBe('locked /user/a.txt')
    // the README's library quick start, pasted into a file as it says
    const readme = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8')
    const quickStart = readme.slice(readme.indexOf('## Use it as a library')).match(/```js\n([\s\S]*?)```/)![1]
    fs.writeFileSync(path.join(dir, 'lock.mjs'), quickStart)
    const pasted = sh(process.execPath, ['lock.mjs'], dir)
    expect(pasted.status, pasted.out).toBe(0)
    expect(pasted.stdout).toContain(`locked ${fs.realpathSync(dir)}/src/app.ts`)
    // the MCP server from the package, with no MCP SDK installed (its stdio server ships bundled):
    // initialize and tools/list over stdio, as a client sends them
    expect(fs.existsSync(path.join(dir, 'node_modules/@modelcontextprotocol'))).toBe(false)
    const mcpIn = [
      { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'registry-test', version: '1' } } },
      { jsonrpc: '2.0', method: 'notifications/initialized' },
      { jsonrpc: '2.0', id: 2, method: 'tools/list' },
    ].map((m) => JSON.stringify(m)).join('\n') + '\n'
    const mcp = spawnSync(process.execPath, [path.join(dir, 'node_modules/opencode-file-lock/bin/opencode-file-lock.js'), 'mcp'], { cwd: dir, input: mcpIn, encoding: 'utf8', env: { ...userEnv, FILE_LOCK_PATH: tmpDir() }, timeout: 30_000 })
    const replies = mcp.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l))
    expect(replies.find((r) => r.id === 2)?.result?.tools?.map((t: any) => t.name).sort(), mcp.stderr).toEqual(['check_file', 'claim_files', 'list_locks', 'release_files'])
    // the CLI from the package: --version, the demo (examples/ ships), and migrate without classic-level
    expect(sh('npx', ['opencode-file-lock', '--version'], dir).stdout.trim()).toBe(`opencode-file-lock ${version}`)
    const demo = sh('npx', ['opencode-file-lock', 'demo'], dir)
    expect(demo.status, demo.out).toBe(0)
    expect(demo.stdout).toContain('two holders at once:   never')
    const migrate = sh('npx', ['opencode-file-lock', 'migrate', '--from', `leveldb:${tmpDir()}`, '--to', `sled:${tmpDir()}`], dir)
    expect(migrate.status).toBe(2)
    expect(migrate.stderr).toContain('needs the optional package classic-level')
  })

  it.each(['nodenext', 'bundler'] as const)('TypeScript --strict in %s mode type-checks code that uses the library and the plugin', (mode) => {
    const dir = freshProject(`ts-${mode}`, { type: 'module' })
    const r = sh('npm', ['install', `opencode-file-lock@${version}`, '@types/node@20'], dir)
    expect(r.status, r.out).toBe(0)
    const compilerOptions =
      mode === 'nodenext' ? { module: 'nodenext', moduleResolution: 'nodenext' } : { module: 'esnext', moduleResolution: 'bundler' }
    fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { ...compilerOptions, target: 'es2022', strict: true, noEmit: true, types: ['node'] }, include: ['index.ts'] }))
    fs.writeFileSync(
      path.join(dir, 'index.ts'),
      `import { openCache, acquireLock, FileLockError, type LockRecord } from 'opencode-file-lock'
import { FileLockPlugin, type FileLockOptions } from 'opencode-file-lock/plugin'
const options: FileLockOptions = { waitMs: 1000, scope: 'turn' }
export async function main(): Promise<string> {
  const cache = await openCache()
  const record: LockRecord | undefined = await cache.get('x')
  const hooks = await FileLockPlugin({ directory: '/tmp' }, options)
  await hooks['tool.execute.before']?.({ tool: 'write', sessionID: 's', callID: 'c' }, { args: { filePath: 'a' } })
  try {
    return await acquireLock('a.txt', 'agent', 'session', cache, { waitMs: 10 })
  } catch (e) {
    if (e instanceof FileLockError && e.code === 'ELOCKED') return String(record?.token)
    throw e
  }
}
`,
    )
    const tsc = sh(TSC, ['-p', dir], dir)
    expect(tsc.status, tsc.out).toBe(0)
    // and a type error in the consumer's own code is still caught: the types are really checked
    fs.appendFileSync(path.join(dir, 'index.ts'), "export const wrong: FileLockOptions = { waitMs: 'soon' }\n")
    const bad = sh(TSC, ['-p', dir], dir)
    expect(bad.status).not.toBe(0)
    expect(bad.stdout).toMatch(/index\.ts\(16,\d+\): error TS2322/)
  })

  it('Bun (the runtime opencode runs plugins in) installs it, skipping its install script, and locks', () => {
    const dir = freshProject('bun', { type: 'module' })
    const bun = (...args: string[]) => sh(OPENCODE_BIN, args, dir, { BUN_BE_BUN: '1', BUN_INSTALL_CACHE_DIR: path.join(dir, '.bun-cache') })
    const add = bun('add', `opencode-file-lock@${version}`, '--registry', registry.url)
    expect(add.status, add.out).toBe(0)
    expect(fs.existsSync(path.join(dir, 'node_modules', PLATFORM_PKG))).toBe(true)
    fs.writeFileSync(path.join(dir, 'index.ts'), LOCK_SCRIPT(tmpDir(), "import { openCache, acquireLock, releaseLock } from 'opencode-file-lock'\nimport { FileLockPlugin } from 'opencode-file-lock/plugin'\nvoid FileLockPlugin"))
    const r = bun('run', 'index.ts')
    expect(r.stdout.trim(), r.out).toBe('locked /user/a.txt')
  })

  it('npx opencode-file-lock install-plugin --project writes a registry spec and installs the prebuilt binary beside it', () => {
    const dir = freshProject('npx')
    const r = sh('npx', ['--yes', `opencode-file-lock@${version}`, 'install-plugin', '--project', dir], dir)
    expect(r.status, r.out).toBe(0)
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, '.opencode/package.json'), 'utf8'))
    expect(pkg.dependencies['opencode-file-lock']).toBe(`^${version}`)
    // the opencode on PATH (1.18.33) reads a default {id, server}: the module opencode 2 loads too
    expect(fs.readFileSync(path.join(dir, '.opencode/plugin/file-lock.ts'), 'utf8')).toBe("export { default } from 'opencode-file-lock/server'\n")
    expect(fs.existsSync(path.join(dir, '.opencode/node_modules', PLATFORM_PKG))).toBe(true)
    const load = sh(process.execPath, ['-e', "console.log(require('opencode-file-lock').normalizePath('/a/./b'))"], path.join(dir, '.opencode'))
    expect(load.stdout.trim(), load.out).toBe('/a/b')
  })
})

describe('opencode installs the plugin folder itself (install-plugin --no-npm), from the registry', () => {
  let h: Harness
  beforeAll(async () => {
    h = await startHarness({
      env: { ...registry.env, PATH, FILE_LOCK_WAIT_MS: '0' },
      install: (template) => {
        const r = sh('npx', ['--yes', `opencode-file-lock@${version}`, 'install-plugin', '--project', template, '--no-npm'], tmpDir('ofl-user-cwd-'))
        if (r.status !== 0) throw new Error(`install-plugin failed: ${r.out}`)
        const spec = JSON.parse(fs.readFileSync(path.join(template, '.opencode/package.json'), 'utf8')).dependencies['opencode-file-lock']
        if (spec !== `^${version}`) throw new Error(`install-plugin wrote ${spec}`)
      },
    })
  })
  afterAll(async () => {
    await h?.stop()
  })

  it('a write is locked: refused while another session holds the file, naming it; written once it is free', async () => {
    const dir = makeProject(h, 'registry-locked')
    expect(fs.existsSync(path.join(dir, '.opencode/node_modules', PLATFORM_PKG))).toBe(true)
    // this test process holds the file in the default store opencode uses (the user's state folder)
    const holder = await SledCache.open({ path: path.join(h.env.XDG_STATE_HOME, 'opencode-file-lock/locks'), namespace: 'locks' })
    const file = path.join(fs.realpathSync(dir), 'held.txt')
    const held = await acquireLock(file, 'test-holder', 'ses-test-holder', holder)
    try {
      const write = (name: string) => `CALL write ${JSON.stringify({ filePath: name, content: `written ${name}\n` })}`
      const r = await run(h, dir, [write('held.txt'), write('free.txt'), 'FINAL done'].join('\n'))
      const [refused, free] = toolResults(r)
      expect(refused).toMatchObject({ tool: 'write', status: 'error' })
      expect(refused.text).toContain(`File ${file} is locked by another agent: agent test-holder (session ses-test-holder)`)
      expect(free).toMatchObject({ tool: 'write', status: 'completed' })
      expect(fs.existsSync(file)).toBe(false)
      await releaseLock(held, 'ses-test-holder', holder)
      const again = await run(h, dir, [write('held.txt'), 'FINAL done'].join('\n'))
      expect(toolResults(again)).toMatchObject([{ tool: 'write', status: 'completed' }])
      expect(fs.readFileSync(file, 'utf8')).toBe('written held.txt\n')
    } finally {
      await holder.close()
    }
  })

  it('with the binary package removed, the plugin still loads and refuses every write, saying why and how to fix it', async () => {
    const dir = makeProject(h, 'registry-no-addon')
    fs.rmSync(path.join(dir, '.opencode/node_modules', PLATFORM_PKG), { recursive: true })
    const r = await run(h, dir, `CALL write ${JSON.stringify({ filePath: 'unlocked.txt', content: 'x\n' })}\nFINAL done`)
    const [refused] = toolResults(r)
    expect(refused).toMatchObject({ tool: 'write', status: 'error' })
    expect(refused.text).toContain('opencode-file-lock refused this write call because it cannot lock files')
    expect(refused.text).toContain(`native addon is not installed for ${platformSuffix()}`)
    expect(refused.text).toContain(`${PLATFORM_PKG}@${version}`)
    expect(fs.existsSync(path.join(dir, 'unlocked.txt'))).toBe(false)
    expect(r.stderr.match(/\[opencode-file-lock\] the opencode-file-lock native addon is not installed/g)).toHaveLength(1)
  })
})
