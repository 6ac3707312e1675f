'use strict'
// Argument checks shared by the cache and lock functions: a wrong type is EINVAL, said plainly.
const { invalid } = require('./errors.js')

function str(v, name) {
  if (typeof v !== 'string' || v.length === 0) throw invalid(`${name} must be a non-empty string, got ${describe(v)}`)
  return v
}

function optStr(v, name) {
  return v === undefined || v === null ? undefined : str(v, name)
}

function optMs(v, name) {
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
    throw invalid(`${name} must be a whole number of milliseconds >= 1, got ${describe(v)}`)
  }
  return v
}

/** A wait in milliseconds: a whole number >= 0 (0: do not wait), at most a day. */
function optWait(v, name) {
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 86_400_000) {
    throw invalid(`${name} must be a whole number of milliseconds from 0 to 86400000 (a day), got ${describe(v)}`)
  }
  return v
}

/** An AbortSignal (anything with `aborted` and `addEventListener`). */
function optSignal(v, name) {
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'object' || typeof v.aborted !== 'boolean' || typeof v.addEventListener !== 'function') {
    throw invalid(`${name} must be an AbortSignal, got ${describe(v)}`)
  }
  return v
}

function obj(v, name) {
  if (v === undefined || v === null) return {}
  if (typeof v !== 'object' || Array.isArray(v)) throw invalid(`${name} must be an object, got ${describe(v)}`)
  return v
}

/** Options an object may carry: any other key is a mistake (a typo, an option of another version) and EINVAL naming it. */
function known(o, allowed, what) {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) throw invalid(`${what} has an option it does not know: ${JSON.stringify(k)} (it knows ${allowed.join(', ')})`)
  }
  return o
}

function json(value, what) {
  let text
  try {
    text = JSON.stringify(value)
  } catch (e) {
    throw invalid(`${what} cannot be stored as JSON: ${e.message}`)
  }
  if (text === undefined) throw invalid(`${what} cannot be stored as JSON (got ${describe(value)})`)
  return text
}

function describe(v) {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  if (typeof v === 'string') return v.length > 40 ? `a string of ${v.length} characters` : JSON.stringify(v)
  return typeof v === 'object' ? 'an object' : `${typeof v} ${String(v)}`
}

module.exports = { str, optStr, optMs, optWait, optSignal, obj, known, json }
