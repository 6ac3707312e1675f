#!/usr/bin/env node
'use strict'
// npm install hook: use a prebuilt binary when one fits this platform (an npm/<platform> package
// or a local .node file that is newer than the sources); otherwise build from source with cargo.
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.resolve(__dirname, '..')
const log = (msg) => console.error(`[opencode-file-lock] ${msg}`)

function platformSuffix() {
  const { platform, arch } = process
  if (platform === 'linux') {
    const glibc = process.report?.getReport?.().header?.glibcVersionRuntime
    return `linux-${arch}-${glibc ? 'gnu' : 'musl'}`
  }
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}

function newestSourceMtime() {
  let newest = 0
  const visit = (p) => {
    const st = fs.statSync(p)
    if (st.isDirectory()) for (const f of fs.readdirSync(p)) visit(path.join(p, f))
    else newest = Math.max(newest, st.mtimeMs)
  }
  for (const p of ['src', 'Cargo.toml', 'Cargo.lock', 'build.rs']) if (fs.existsSync(path.join(root, p))) visit(path.join(root, p))
  return newest
}

function binaryIsCurrent(file) {
  if (!fs.existsSync(file)) return false
  return fs.statSync(file).mtimeMs >= newestSourceMtime()
}

function prebuiltLoads() {
  try {
    require(path.join(root, 'index.js'))
    return true
  } catch {
    return false
  }
}

function build(target) {
  const cargo = spawnSync('cargo', ['--version'], { encoding: 'utf8' })
  if (cargo.status !== 0) {
    log(`no prebuilt binary fits ${platformSuffix()} and cargo is not installed.`)
    log('Install Rust (https://rustup.rs) and run `npm rebuild opencode-file-lock`, or use a supported platform.')
    process.exit(1)
  }
  log(`building the native addon from source for ${platformSuffix()} (cargo build --release, about a minute)...`)
  const t = Date.now()
  const r = spawnSync('cargo', ['build', '--release', '--lib'], { cwd: root, stdio: 'inherit' })
  if (r.status !== 0) {
    log('cargo build failed; see the output above.')
    process.exit(r.status ?? 1)
  }
  const lib = { win32: 'opencode_file_lock.dll', darwin: 'libopencode_file_lock.dylib' }[process.platform] ?? 'libopencode_file_lock.so'
  const targetDir = process.env.CARGO_TARGET_DIR ?? path.join(root, 'target')
  fs.copyFileSync(path.join(targetDir, 'release', lib), target)
  log(`built ${path.basename(target)} in ${((Date.now() - t) / 1000).toFixed(0)} s`)
}

function main() {
  if (process.env.OPENCODE_FILE_LOCK_SKIP_BUILD === '1') return
  const local = path.join(root, `opencode-file-lock.${platformSuffix()}.node`)
  const hasSources = fs.existsSync(path.join(root, 'src'))
  if (fs.existsSync(local)) {
    // a checkout rebuilds when the sources changed since the binary was made
    if (!hasSources || binaryIsCurrent(local)) return
    return build(local)
  }
  if (prebuiltLoads()) return // an npm/<platform> package fits
  if (!hasSources) {
    log(`no prebuilt binary fits ${platformSuffix()} and the package has no sources to build from.`)
    process.exit(1)
  }
  build(local)
}

main()
