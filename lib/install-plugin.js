'use strict'
// `opencode-file-lock install-plugin`: adds this package to an opencode config folder's
// package.json, writes the plugin file the opencode on PATH loads (lib/opencode-setup.js), and
// installs it there with npm. Everything it does and every failure is said on stdout/stderr, so
// nothing fails silently, whether run from a checkout, npx or a global install.
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { PKG, ROOT, isCheckout, platformSuffix } = require('./platform.js')
const { configFolder, findOpencode, writePluginFile } = require('./opencode-setup.js')

/**
 * `from`: npm specs; the first is this package's (default: a registry range, or this checkout),
 * the others are installed beside it (a platform package's tarball, for an install without the
 * registry: `npm run pack:local` prints the command).
 */
function installPlugin({ project, global, from = [], npm = true, force = false, opencode, env = process.env, out = console.log, err = console.error }) {
  const target = configFolder({ project, global, env })
  const oc = findOpencode({ bin: opencode, env })
  if (oc.error) out(`opencode    not found (${oc.error}): writing the module that opencode 1.18.29+ and opencode 2 both load`)
  else out(`opencode    ${oc.version} (${oc.bin}): ${oc.major >= 2 ? 'opencode 2 loads a default export {id, setup} from plugins/' : oc.dual ? 'opencode 1 loads the default export\'s server()' : 'an opencode 1 older than 1.18.29 loads a named plugin function'}`)

  // a registry spec, unless this runs from a developer's git checkout (an npx cache or another
  // project's node_modules is no place for a dependency to point at)
  const [spec, ...extra] = from.length ? from : [isCheckout() ? `file:${ROOT}` : `^${PKG.version}`]
  fs.mkdirSync(target, { recursive: true })
  const pkgPath = path.join(target, 'package.json')
  let pkg = {}
  if (fs.existsSync(pkgPath)) {
    try {
      pkg = JSON.parse(fs.readFileSync(pkgPath, 'utf8'))
    } catch (e) {
      const u = new Error(`${pkgPath} is not valid JSON (${e.message}); fix it and run again`)
      u.usage = true
      throw u
    }
  }
  const deps = { ...(pkg.dependencies ?? {}), 'opencode-file-lock': spec }
  for (const x of extra) deps[packageNameOf(x)] = x
  pkg.dependencies = deps
  fs.writeFileSync(pkgPath, JSON.stringify(pkg, null, 2) + '\n')
  out(`dependency  ${pkgPath}: ${Object.entries(deps).filter(([k]) => k.startsWith('opencode-file-lock')).map(([k, v]) => `${k} = ${v}`).join(', ')}`)

  const previous = snapshot(target)
  const wrote = writePluginFile(target, oc, { force })
  out(`plugin      ${wrote.file} (${wrote.kind === 'dual' ? "export { default } from 'opencode-file-lock/server'" : "export { FileLockPlugin } from 'opencode-file-lock/plugin'"})`)
  for (const r of wrote.removed) out(`removed     ${r} (the same plugin in the other folder would load twice)`)

  try {
    require('./native.js')
  } catch (e) {
    // this copy (an npx cache, say) has no binary: the folder's own install brings one, or says why
    err(`opencode-file-lock: note: this copy of the package cannot load its native addon (${e?.message ?? e})`)
  }
  if (npm) {
    out(`npm install in ${target} (brings the prebuilt native addon for ${platformSuffix()})...`)
    const r = spawnSync('npm', ['install', '--no-audit', '--no-fund'], { cwd: target, stdio: ['ignore', 'inherit', 'inherit'], env })
    if (r.status !== 0) {
      // a plugin file whose package is missing (or too old for it) would be skipped by opencode:
      // put back what was there, so whatever locked before still does
      previous.restore()
      err(`opencode-file-lock: npm install in ${target} failed (${r.error ? r.error.message : `exit ${r.status}`}); the plugin files there are as they were. Without the public registry, pack the package and its binary with \`npm run pack:local\` in a checkout and run the command it prints. \`npx opencode-file-lock doctor${global ? ' --global' : ` --project ${path.dirname(target)}`}\` checks the whole setup.`)
      return 1
    }
  }
  out(`\ndone. opencode now locks files before write, edit and patches in ${global ? 'every project' : path.dirname(target)}${oc.error ? '' : ` (opencode ${oc.version})`}.`)
  out('locks live in sled under ~/.local/state/opencode-file-lock by default, shared by every opencode of this user on this machine;')
  out('for several machines set FILE_LOCK_CACHE_BACKEND=redis and REDIS_URL (see docs/configuration.md).')
  out(`check it any time with: npx opencode-file-lock doctor${global ? ' --global' : ` --project ${path.dirname(target)}`}`)
  return 0
}

/** The plugin files of a config folder as they are now, and a way to put them back. */
function snapshot(folder) {
  const files = ['plugin', 'plugins'].map((d) => path.join(folder, d, 'file-lock.ts'))
  const before = files.map((f) => (fs.existsSync(f) ? fs.readFileSync(f) : undefined))
  return {
    restore() {
      files.forEach((f, i) => {
        if (before[i] === undefined) fs.rmSync(f, { force: true })
        else fs.writeFileSync(f, before[i])
      })
    },
  }
}

/** The package a spec installs: `name@range`, or a tarball named `<name>-<version>.tgz`. */
function packageNameOf(spec) {
  const base = path.basename(spec.replace(/^file:/, ''))
  const tgz = base.match(/^(.+?)-\d+\.\d+\.\d+.*\.tgz$/)
  if (tgz) return tgz[1]
  const at = spec.lastIndexOf('@')
  return at > 0 ? spec.slice(0, at) : spec
}

module.exports = { installPlugin, packageNameOf }
