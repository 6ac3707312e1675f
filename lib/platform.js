'use strict'
// Which prebuilt package fits this machine, named as napi-rs names them (the same rules as the
// generated ../index.js loader), and what to tell a user when none is there.
const fs = require('node:fs')
const path = require('node:path')

const ROOT = path.resolve(__dirname, '..')
const PKG = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
const TARGETS = {
  'linux-x64-gnu': 'x86_64-unknown-linux-gnu',
  'linux-arm64-gnu': 'aarch64-unknown-linux-gnu',
  'linux-x64-musl': 'x86_64-unknown-linux-musl',
  'linux-arm64-musl': 'aarch64-unknown-linux-musl',
  'darwin-x64': 'x86_64-apple-darwin',
  'darwin-arm64': 'aarch64-apple-darwin',
  'win32-x64-msvc': 'x86_64-pc-windows-msvc',
}

function isMusl() {
  try {
    return fs.readFileSync('/usr/bin/ldd', 'utf8').includes('musl')
  } catch {
    return !process.report?.getReport?.().header?.glibcVersionRuntime
  }
}

/** `linux-x64-gnu`, `darwin-arm64`, `win32-x64-msvc`, ... for this process. */
function platformSuffix() {
  const { platform, arch } = process
  if (platform === 'linux') return `linux-${arch}-${isMusl() ? 'musl' : 'gnu'}`
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}

/** The npm package carrying this machine's binary, or undefined when none is published for it. */
function prebuiltPackage() {
  const suffix = platformSuffix()
  return suffix in TARGETS ? `${PKG.name}-${suffix}` : undefined
}

/** True when this copy is a git checkout (a developer's tree), not an installed package. */
function isCheckout() {
  return fs.existsSync(path.join(ROOT, '.git'))
}

/** What to do when no binary is there: honest for a listed platform, for an unlisted one, and for a checkout. */
function addonAdvice() {
  const suffix = platformSuffix()
  const pkg = prebuiltPackage()
  if (isCheckout()) return `This is a git checkout: build the addon with \`npm install\` (or \`npm run build\`) in ${ROOT}; it needs Rust (https://rustup.rs).`
  if (pkg) {
    return (
      `The prebuilt binary for ${suffix} comes in the package ${pkg}@${PKG.version}, an optional dependency of ${PKG.name} that is not installed here ` +
      `(installs with --omit=optional or --no-optional leave it out, and so does a registry that lacks it). ` +
      `Fix: install again with optional dependencies (\`npm install ${PKG.name}@${PKG.version}\`), or add \`${pkg}@${PKG.version}\` beside it.`
    )
  }
  return `No prebuilt binary is published for ${suffix}. Fix: install Rust (https://rustup.rs), then install ${PKG.name} again: it builds the addon from source (about a minute).`
}

module.exports = { ROOT, PKG, TARGETS, platformSuffix, prebuiltPackage, isCheckout, addonAdvice }
