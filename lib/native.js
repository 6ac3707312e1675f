'use strict'
// Loads the native addon once. When it is missing (no prebuilt package, nothing built from
// source) or present but unloadable, the error says which, why that usually happens and how to
// fix it, with code ENOADDON.
const path = require('node:path')
const { FileLockError } = require('./errors.js')
const { ROOT, PKG, platformSuffix, prebuiltPackage, addonAdvice } = require('./platform.js')

/** The binary that is there but does not load, and why; undefined when none is there at all. */
function unloadable() {
  for (const candidate of [path.join(ROOT, `${PKG.name}.${platformSuffix()}.node`), prebuiltPackage()].filter(Boolean)) {
    let resolved
    try {
      resolved = require.resolve(candidate)
    } catch {
      continue
    }
    try {
      require(resolved)
    } catch (e) {
      return { file: resolved, why: String(e?.message ?? e).split('\n')[0] }
    }
  }
  return undefined
}

let native
try {
  native = require('../index.js')
} catch (e) {
  const bad = unloadable()
  const message = bad
    ? `the opencode-file-lock native addon for ${platformSuffix()} is installed (${bad.file}) but does not load: ${bad.why}. Reinstall opencode-file-lock; if that does not help, install Rust (https://rustup.rs) and reinstall it to build the addon for this machine from source.`
    : `the opencode-file-lock native addon is not installed for ${platformSuffix()}. ${addonAdvice()}`
  const err = new FileLockError('ENOADDON', message)
  err.cause = e
  throw err
}

module.exports = native
