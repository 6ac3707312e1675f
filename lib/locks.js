'use strict'
// File locks stored through a Cache: the record lives at the normalized path, so
// `cache.get(path)` returns {sessionId, agentId, path, timestamp, expiresAt, token, holdCount}.
// Each function is one native call: normalization, the atomic store operation and the record.
const native = require('./native.js')
const { Cache } = require('./cache.js')
const { fromNative, invalid } = require('./errors.js')
const check = require('./check.js')

function cacheOf(cache) {
  if (!(cache instanceof Cache)) throw invalid('cache must be a RedisCache, SledCache or HybridCache (from this package)')
  return cache
}

/** The canonical form of a path, as locks key it. */
function normalizePath(filePath, baseDir) {
  check.str(filePath, 'filePath')
  try {
    return native.normalizePath(filePath, check.optStr(baseDir, 'baseDir'))
  } catch (e) {
    throw fromNative(e)
  }
}

/**
 * Locks `filePath` for `sessionId` (re-entrant for that session). Resolves to the normalized path;
 * rejects with code ELOCKED (and `err.holder`) when another session holds it.
 */
async function acquireLock(filePath, agentId, sessionId, cache, opts) {
  const [path] = await acquire([check.str(filePath, 'filePath')], agentId, sessionId, cache, opts)
  return path
}

/** Locks every path or none. Resolves to the normalized paths (duplicates folded). */
async function acquireLocks(filePaths, agentId, sessionId, cache, opts) {
  if (!Array.isArray(filePaths) || filePaths.length === 0) throw invalid('filePaths must be a non-empty array of strings')
  filePaths.forEach((p, i) => check.str(p, `filePaths[${i}]`))
  return acquire(filePaths, agentId, sessionId, cache, opts)
}

function acquire(filePaths, agentId, sessionId, cache, opts) {
  check.str(agentId, 'agentId')
  check.str(sessionId, 'sessionId')
  const c = cacheOf(cache)
  if (opts === undefined) return c._acquire(filePaths, agentId, sessionId)
  const o = check.known(check.obj(opts, 'options'), ACQUIRE_OPTIONS, 'acquireLock')
  const ttlMs = check.optMs(o.ttlMs, 'ttlMs')
  const baseDir = check.optStr(o.baseDir, 'baseDir')
  const waitMs = check.optWait(o.waitMs, 'waitMs')
  const signal = check.optSignal(o.signal, 'signal')
  const holder = holderOf(o)
  if (!waitMs && !signal) return c._acquire(filePaths, agentId, sessionId, ttlMs, baseDir, holder)
  return c._acquireWaiting(filePaths, agentId, sessionId, ttlMs, baseDir, waitMs ?? 0, signal, holder)
}

const HOLDER_KEYS = ['kind', 'reason', 'title', 'agentName']
const ACQUIRE_OPTIONS = ['ttlMs', 'baseDir', 'waitMs', 'signal', ...HOLDER_KEYS]

/** What the record says of its holder (kind, reason, title, agentName), or undefined. */
function holderOf(o) {
  let holder
  for (const k of HOLDER_KEYS) {
    if (o[k] === undefined || o[k] === null || o[k] === '') continue
    if (typeof o[k] !== 'string') throw invalid(`${k} must be a string (one line of text), got ${typeof o[k]}`)
    ;(holder ??= {})[k] = o[k]
  }
  return holder
}

/** Undoes one hold of `sessionId`. False when that session does not hold the lock. */
async function releaseLock(normalizedPath, sessionId, cache) {
  return cacheOf(cache)._release(check.str(normalizedPath, 'normalizedPath'), check.str(sessionId, 'sessionId'))
}

/** Deletes every lock of a session and/or agent, whatever its hold count. Returns how many. */
async function releaseAllLocks(filter, cache) {
  const f = check.obj(filter, 'filter')
  const sessionId = check.optStr(f.sessionId, 'sessionId')
  const agentId = check.optStr(f.agentId, 'agentId')
  if (!sessionId && !agentId) throw invalid('releaseAllLocks needs {sessionId} and/or {agentId}; to drop every entry use cache.clear()')
  return Number(await cacheOf(cache)._call('releaseAll', [sessionId, agentId]))
}

/**
 * Extends a lock the session holds to now + ttlMs and resolves to the record. A lock that is no
 * longer held (expired, forced free, taken by another) rejects with code ELOST and stays lost.
 */
async function renewLock(normalizedPath, sessionId, cache, opts) {
  const c = cacheOf(cache)
  const ttlMs = check.optMs(check.obj(opts, 'options').ttlMs, 'ttlMs')
  const text = await c._call('renew', [check.str(normalizedPath, 'normalizedPath'), check.str(sessionId, 'sessionId'), ttlMs])
  return JSON.parse(text)[0]
}

/**
 * Deletes the lock on a path whoever holds it (an operator's last resort). The holder's onLost
 * listeners hear of it. Resolves to the removed record, or undefined when nothing was held.
 */
async function forceRelease(filePath, cache, opts) {
  const c = cacheOf(cache)
  const path = normalizePath(filePath, check.obj(opts, 'options').baseDir)
  const text = await c._call('forceRelease', [path])
  return text === '' ? undefined : JSON.parse(text)[0]
}

/** The live lock record for a path, or undefined. */
async function getLock(filePath, cache, opts) {
  const c = cacheOf(cache)
  const path = normalizePath(filePath, check.obj(opts, 'options').baseDir)
  const rec = await c.get(path)
  return rec && typeof rec === 'object' && typeof rec.sessionId === 'string' ? rec : undefined
}

/** Live locks, optionally only a session's or an agent's. */
async function listLocks(cache, filter) {
  const c = cacheOf(cache)
  const f = check.obj(filter, 'filter')
  return JSON.parse(await c._call('listLocks', [check.optStr(f.sessionId, 'sessionId'), check.optStr(f.agentId, 'agentId')]))
}

/** The waiting acquires: who waits for which paths, held up by whom, since when (the store's clock). */
async function listWaiters(cache) {
  return JSON.parse(await cacheOf(cache)._call('listWaiters', []))
}

/** Locks and waiters together, with the store's clock (`now`) to tell their ages by. */
async function lockSnapshot(cache) {
  return JSON.parse(await cacheOf(cache)._call('snapshot', []))
}

module.exports = { normalizePath, acquireLock, acquireLocks, releaseLock, releaseAllLocks, renewLock, forceRelease, getLock, listLocks, listWaiters, lockSnapshot }
