// The package as it is published: every version equal, the release workflow building every
// target and publishing the platform packages before the main one, the committed plugin build
// matching its sources, and a tarball that carries what users run and nothing big.
import { execFileSync, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import YAML from 'yaml'
import { tmpDir } from './helpers/tmp'

const ROOT = path.resolve(__dirname, '..')
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
const PLATFORMS = ['linux-x64-gnu', 'linux-arm64-gnu', 'linux-x64-musl', 'linux-arm64-musl', 'darwin-x64', 'darwin-arm64', 'win32-x64-msvc']

describe('packaging', () => {
  it('every version is the same, and the main package lists each platform package at it', () => {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts/version.js'), '--check'], { encoding: 'utf8' })
    expect(r.status, r.stderr).toBe(0)
    expect(Object.keys(pkg.optionalDependencies).sort()).toEqual(PLATFORMS.map((p) => `opencode-file-lock-${p}`).sort())
    for (const p of PLATFORMS) {
      const sub = JSON.parse(fs.readFileSync(path.join(ROOT, 'npm', p, 'package.json'), 'utf8'))
      expect(sub).toMatchObject({ name: `opencode-file-lock-${p}`, version: pkg.version, main: `opencode-file-lock.${p}.node`, files: [`opencode-file-lock.${p}.node`], repository: pkg.repository })
      expect(sub.os).toHaveLength(1)
      expect(sub.cpu).toHaveLength(1)
      if (p.startsWith('linux')) expect(sub.libc).toEqual([p.endsWith('musl') ? 'musl' : 'glibc'])
    }
  })

  it('version.js refuses a bad version and finds a file left behind', () => {
    const copy = tmpDir('ofl-version-')
    for (const f of ['package.json', 'Cargo.toml', 'Cargo.lock', 'index.js']) fs.copyFileSync(path.join(ROOT, f), path.join(copy, f))
    fs.cpSync(path.join(ROOT, 'npm'), path.join(copy, 'npm'), { recursive: true })
    fs.cpSync(path.join(ROOT, 'scripts'), path.join(copy, 'scripts'), { recursive: true })
    fs.cpSync(path.join(ROOT, 'lib'), path.join(copy, 'lib'), { recursive: true })
    const run = (...a: string[]) => spawnSync(process.execPath, [path.join(copy, 'scripts/version.js'), ...a], { encoding: 'utf8' })
    expect(run('one.two').status).toBe(2)
    expect(run('9.8.7').status).toBe(0)
    expect(run('--check').status).toBe(0)
    expect(fs.readFileSync(path.join(copy, 'index.js'), 'utf8')).toContain("bindingPackageVersion !== '9.8.7'")
    expect(fs.readFileSync(path.join(copy, 'Cargo.toml'), 'utf8')).toMatch(/^version = "9.8.7"/m)
    const stale = JSON.parse(fs.readFileSync(path.join(copy, 'npm/darwin-x64/package.json'), 'utf8'))
    fs.writeFileSync(path.join(copy, 'npm/darwin-x64/package.json'), JSON.stringify({ ...stale, version: '9.8.6' }))
    const check = run('--check')
    expect(check.status).toBe(1)
    expect(check.stderr).toContain('npm/darwin-x64/package.json says 9.8.6')
  })

  it('the release workflow builds every napi target, then publishes the platform packages, then the main one', () => {
    const wf = YAML.parse(fs.readFileSync(path.join(ROOT, '.github/workflows/release.yml'), 'utf8'))
    expect(wf.on.push.tags).toEqual(['v*'])
    const built = wf.jobs.build.strategy.matrix.settings.map((s: { target: string }) => s.target)
    expect(built.sort()).toEqual([...pkg.napi.targets].sort())
    expect(wf.jobs.publish.needs).toEqual(expect.arrayContaining(['build', 'smoke']))
    const script = wf.jobs.publish.steps.map((s: { run?: string }) => s.run ?? '').join('\n')
    expect(script).toContain('scripts/version.js --check')
    expect(script).toContain('napi artifacts')
    expect(script.indexOf('npm publish "$dir"')).toBeGreaterThan(-1)
    expect(script.indexOf('npm publish "$dir"')).toBeLessThan(script.lastIndexOf('npm publish --access public'))
  })

  it('the committed plugin build (plugin/dist) is what tsc makes of plugin/src today, and the bundled MCP SDK is what the bundler makes of it', () => {
    const out = tmpDir('ofl-plugin-build-')
    execFileSync(path.join(ROOT, 'node_modules/.bin/tsc'), ['-p', path.join(ROOT, 'plugin'), '--outDir', out], { encoding: 'utf8' })
    const files = fs.readdirSync(out).sort()
    expect(fs.readdirSync(path.join(ROOT, 'plugin/dist')).filter((f) => f !== 'mcp-sdk.js').sort()).toEqual(files)
    const bundled = fs.readFileSync(path.join(ROOT, 'plugin/dist/mcp-sdk.js'), 'utf8')
    execFileSync(process.execPath, [path.join(ROOT, 'scripts/bundle-mcp-sdk.js')], { encoding: 'utf8' })
    expect(fs.readFileSync(path.join(ROOT, 'plugin/dist/mcp-sdk.js'), 'utf8') === bundled, 'plugin/dist/mcp-sdk.js: run npm run build:plugin').toBe(true)
    for (const f of files) expect(fs.readFileSync(path.join(ROOT, 'plugin/dist', f), 'utf8'), `plugin/dist/${f}: run npm run build:plugin`).toBe(fs.readFileSync(path.join(out, f), 'utf8'))
  })

  it('the tarball carries the plugin build, the demo, the sources for a fallback build, and no binary or build folder', () => {
    const [packed] = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8' }))
    const files: string[] = packed.files.map((f: { path: string }) => f.path)
    for (const f of ['plugin/dist/file-lock.js', 'plugin/dist/file-lock.d.ts', 'plugin/package.json', 'examples/demo.js', 'lib/index.js', 'lib/index.d.ts', 'index.js', 'bin/opencode-file-lock.js', 'scripts/install.js', 'Cargo.toml', 'src/lib.rs']) expect(files).toContain(f)
    expect(files.filter((f) => f.endsWith('.node') || f.startsWith('target/') || f.startsWith('__test__/') || f.startsWith('plugin/src/'))).toEqual([])
    expect(packed.size).toBeLessThan(1_000_000)
  })

  it('the README is a short first screen for the opencode user; docs and comments carry no project-history words', () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')
    expect(readme.split('\n').length).toBeLessThan(150)
    const headings = [...readme.matchAll(/^## (.+)$/gm)].map((m) => m[1])
    expect(headings.slice(0, 3)).toEqual(['Install into opencode', 'What an agent sees', 'Configuration'])
    for (const link of readme.matchAll(/\]\(((?:docs\/)?[\w.-]+\.md)\)/g)) expect(fs.existsSync(path.join(ROOT, link[1])), link[1]).toBe(true)
    const files = execFileSync('git', ['ls-files', 'README.md', 'CONTRIBUTING.md', 'docs', 'src', 'lib', 'plugin/src', 'bin', 'scripts', 'deploy'], { cwd: ROOT, encoding: 'utf8' }).split('\n').filter(Boolean)
    for (const f of files) expect(fs.readFileSync(path.join(ROOT, f), 'utf8'), f).not.toMatch(/\bthe seeds?\b|\bseeds'|\bissue \d+/i)
  })
})
