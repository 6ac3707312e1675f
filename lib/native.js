'use strict'
// Loads the native addon once. When it is missing (no prebuilt package, nothing built from
// source), the error says so, says why it usually happens and how to fix it, with code ENOADDON.
const { FileLockError } = require('./errors.js')
const { platformSuffix, addonAdvice } = require('./platform.js')

let native
try {
  native = require('../index.js')
} catch (e) {
  const cause = String(e?.cause?.message ?? e?.message ?? e).split('\n')[0]
  const err = new FileLockError('ENOADDON', `the opencode-file-lock native addon is not installed for ${platformSuffix()} (${cause}). ${addonAdvice()}`)
  err.cause = e
  throw err
}

module.exports = native
