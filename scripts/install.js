#!/usr/bin/env node
'use strict'
// npm install hook. An installed package normally finds its binary in the prebuilt package for
// this platform (an optional dependency); then there is nothing to do. Otherwise it builds the
// addon from the shipped sources with cargo: in a git checkout into ./target (kept, incremental),
// in an installed package into a temporary target folder that is removed afterwards, so nothing
// big is left in node_modules. cargo's own progress goes to the terminal: npm hides a
// dependency's install output.
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { ROOT, PKG, platformSuffix, prebuiltPackage, isCheckout } = require('../lib/platform.js')

// npm hides a dependency's install output, and npx hides all of it: every line also goes to the
// terminal when there is one, and a failure's lines to a file that `doctor` points at.
let tty
try {
  tty = process.platform === 'win32' || isCheckout() ? undefined : fs.openSync('/dev/tty', 'w')
} catch {}
const said = []
const log = (msg) => {
  const line = `[${PKG.name}] ${msg}`
  said.push(line)
  console.error(line)
  if (tty !== undefined) {
    try {
      fs.writeSync(tty, `${line}\n`)
    } catch {}
  }
}
/** Where a failed install leaves what it said. */
const FAILURE_LOG = path.join(os.tmpdir(), `${PKG.name}-install-failure.log`)

/**
 * The install cannot give this package its binary. Under `npm install` that fails the install;
 * under npx (npm exec) the command the user asked for runs anyway and says the same when it needs
 * the addon (install-plugin and doctor work without it), since npx shows nothing of this script.
 */
function cannotInstall(code) {
  try {
    fs.writeFileSync(FAILURE_LOG, `${new Date().toISOString()} installing ${PKG.name}@${PKG.version} in ${ROOT}\n${said.join('\n')}\n`)
    log(`(this is also in ${FAILURE_LOG})`)
  } catch {}
  if (process.env.npm_command === 'exec') {
    log('continuing without the native addon: the command runs, and says what is missing where it needs it')
    process.exit(0)
  }
  process.exit(code)
}
const local = path.join(ROOT, `${PKG.name}.${platformSuffix()}.node`)

function newestSourceMtime() {
  let newest = 0
  const visit = (p) => {
    const st = fs.statSync(p)
    if (st.isDirectory()) for (const f of fs.readdirSync(p)) visit(path.join(p, f))
    else newest = Math.max(newest, st.mtimeMs)
  }
  for (const p of ['src', 'Cargo.toml', 'Cargo.lock', 'build.rs']) if (fs.existsSync(path.join(ROOT, p))) visit(path.join(ROOT, p))
  return newest
}

function prebuiltLoads() {
  const pkg = prebuiltPackage()
  if (!pkg) return false
  try {
    require(pkg)
    return true
  } catch {
    return false
  }
}

/** Where cargo's progress goes: the terminal when there is one (npm would hide it), else our stderr. */
function progressOutput() {
  if (process.platform === 'win32' || isCheckout()) return 'inherit'
  try {
    return fs.openSync('/dev/tty', 'w')
  } catch {
    return 'inherit'
  }
}

function noCargo() {
  const suffix = platformSuffix()
  const pkg = prebuiltPackage()
  if (pkg) {
    log(`no prebuilt binary for ${suffix} is installed: it comes in ${pkg}@${PKG.version}, an optional dependency that was left out`)
    log('(npm leaves optional dependencies out with --omit=optional or --no-optional, or when the registry does not have them),')
    log('and building from source needs Rust, which is not installed (no cargo on PATH). Fix one of:')
    log(`  - install again with optional dependencies: npm install ${PKG.name}@${PKG.version}`)
    log(`  - or add the binary package yourself: npm install ${pkg}@${PKG.version}`)
    log('  - or install Rust (https://rustup.rs) and install again: the addon is then built from source (about a minute)')
  } else {
    log(`no prebuilt binary is published for ${suffix}, and building from source needs Rust, which is not installed (no cargo on PATH).`)
    log(`Fix: install Rust (https://rustup.rs), then install ${PKG.name} again; it builds the addon from source (about a minute).`)
  }
  log(`without the public registry: in a checkout of ${PKG.name}, \`npm run pack:local\` packs this package and its binary and prints the command that installs both`)
  cannotInstall(1)
}

function build() {
  if (spawnSync('cargo', ['--version'], { encoding: 'utf8' }).status !== 0) return noCargo()
  const checkout = isCheckout()
  const targetDir = checkout ? (process.env.CARGO_TARGET_DIR ?? path.join(ROOT, 'target')) : fs.mkdtempSync(path.join(os.tmpdir(), `${PKG.name}-build-`))
  const out = progressOutput()
  const where = typeof out === 'number' ? "; cargo's progress is on your terminal" : ''
  log(`building the native addon from source for ${platformSuffix()} with cargo (about a minute on 2 cores)${where}${checkout ? '' : `; its build folder ${targetDir} is removed afterwards`}...`)
  const t = Date.now()
  try {
    const args = ['build', '--release', '--lib', ...(checkout ? [] : ['--locked'])]
    const r = spawnSync('cargo', args, { cwd: ROOT, stdio: ['ignore', out, out], env: { ...process.env, CARGO_TARGET_DIR: targetDir } })
    if (r.status !== 0) {
      log(`cargo build failed (exit ${r.status ?? r.signal}); its output is above${out === 'inherit' ? '' : ' on the terminal'}.`)
      cannotInstall(r.status ?? 1)
    }
    const lib = { win32: 'opencode_file_lock.dll', darwin: 'libopencode_file_lock.dylib' }[process.platform] ?? 'libopencode_file_lock.so'
    fs.copyFileSync(path.join(targetDir, 'release', lib), local)
  } finally {
    if (typeof out === 'number') fs.closeSync(out)
    if (!checkout) fs.rmSync(targetDir, { recursive: true, force: true })
  }
  log(`built ${path.basename(local)} in ${((Date.now() - t) / 1000).toFixed(0)} s`)
}

function main() {
  if (process.env.OPENCODE_FILE_LOCK_SKIP_BUILD === '1') return
  if (isCheckout()) {
    // a developer's tree: rebuild whenever the sources changed since the binary was made
    if (fs.existsSync(local) && fs.statSync(local).mtimeMs >= newestSourceMtime()) return
    return build()
  }
  if (prebuiltLoads() || fs.existsSync(local)) return
  build()
}

main()
