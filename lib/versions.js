'use strict'
// No lost updates: per path the last write's version, per task tree its view of each file (see
// src/core/versions.rs). A writer checks, under its locks, that the files on disk are as its tree
// last saw them (checkFresh), records what it wrote before letting go (recordWrites), and records
// what it read (recordView). Each function is one native call.
const native = require('./native.js')
const { Cache } = require('./cache.js')
const { invalid } = require('./errors.js')
const check = require('./check.js')

function cacheOf(cache) {
  if (!(cache instanceof Cache)) throw invalid('cache must be a RedisCache, SledCache or HybridCache (from this package)')
  return cache
}

function pathList(paths, name) {
  if (!Array.isArray(paths) || paths.length === 0) throw invalid(`${name} must be a non-empty array of strings`)
  paths.forEach((p, i) => check.str(p, `${name}[${i}]`))
  return paths
}

function optTtl(v) {
  return check.optMs(v, 'ttlMs')
}

/**
 * For each path (folder claims skipped), whether `tree` may write it now: `{path, ok, status,
 * lastWrite?, byLastWrite, modifiedAt?, viewedAt?}`. `whole` (a boolean, or one per path): the
 * write replaces the whole file, so a file the tree never read is refused too.
 */
async function checkFresh(paths, tree, cache, opts) {
  const c = cacheOf(cache)
  pathList(paths, 'paths')
  check.str(tree, 'tree')
  const o = check.known(check.obj(opts, 'options'), ['whole', 'baseDir'], 'checkFresh')
  const whole = o.whole === undefined ? [false] : Array.isArray(o.whole) ? o.whole : [o.whole]
  if (whole.length === 0 || whole.some((w) => typeof w !== 'boolean')) throw invalid('whole must be a boolean or an array of booleans')
  return JSON.parse(await c._call('checkFresh', [paths, whole, tree, check.optStr(o.baseDir, 'baseDir')]))
}

/**
 * After a write, before its locks go: records each path's new version (what the file holds now,
 * and `writer`: {sessionId, tree?, agentId, title?, agentName?, kind?}) and the writer's tree's
 * view. A path with no file any more drops both. Resolves to the versions (null where none).
 */
async function recordWrites(paths, writer, cache, opts) {
  const c = cacheOf(cache)
  pathList(paths, 'paths')
  const w = check.known(check.obj(writer, 'writer'), ['sessionId', 'tree', 'agentId', 'title', 'agentName', 'kind'], 'the writer')
  const o = check.known(check.obj(opts, 'options'), ['baseDir', 'ttlMs'], 'recordWrites')
  const nw = { sessionId: check.str(w.sessionId, 'writer.sessionId'), agentId: check.str(w.agentId, 'writer.agentId') }
  for (const k of ['tree', 'title', 'agentName', 'kind']) if (w[k] != null && w[k] !== '') nw[k] = check.str(w[k], `writer.${k}`)
  return JSON.parse(await c._call('recordWrites', [paths, nw, check.optStr(o.baseDir, 'baseDir'), optTtl(o.ttlMs)]))
}

/**
 * After a read: records `tree`'s view of the file as it is now. With `unchangedSince` (a mark from
 * `fileMark` taken before the read) nothing is recorded if the file changed meanwhile. True when
 * a view was recorded.
 */
async function recordView(path, tree, cache, opts) {
  const c = cacheOf(cache)
  check.str(path, 'path')
  check.str(tree, 'tree')
  const o = check.known(check.obj(opts, 'options'), ['baseDir', 'unchangedSince', 'ttlMs'], 'recordView')
  return (await c._call('recordView', [path, tree, check.optStr(o.unchangedSince, 'unchangedSince'), check.optStr(o.baseDir, 'baseDir'), optTtl(o.ttlMs)])) === '1'
}

/** Every file `tree` has a view of: `{path, fresh, mark}` (mark: the file's stat mark now, null when absent). */
async function treeViews(tree, cache) {
  return JSON.parse(await cacheOf(cache)._call('treeViews', [check.str(tree, 'tree')]))
}

/** The last recorded write of each path (null where none). */
async function lastWrites(paths, cache, opts) {
  const c = cacheOf(cache)
  pathList(paths, 'paths')
  const o = check.known(check.obj(opts, 'options'), ['baseDir'], 'lastWrites')
  return JSON.parse(await c._call('lastWrites', [paths, check.optStr(o.baseDir, 'baseDir')]))
}

/** One stat: a mark that changes with every write of the file, or null when no regular file is there. */
function fileMark(path) {
  return native.fileMark(check.str(path, 'path')) ?? null
}

module.exports = { checkFresh, recordWrites, recordView, treeViews, lastWrites, fileMark }
