'use strict'
// Public entry point: caches, locks and typed errors over the native addon.
const { Cache, SledCache, RedisCache, HybridCache, openCache, configFromEnv } = require('./cache.js')
const { normalizePath, acquireLock, acquireLocks, releaseLock, releaseAllLocks, renewLock, forceRelease, getLock, listLocks, listWaiters, lockSnapshot } = require('./locks.js')
const { checkFresh, recordWrites, recordView, treeViews, lastWrites, fileMark } = require('./versions.js')
const { FileLockError } = require('./errors.js')
const { oneLine } = require('./text.js')
const { promCollector } = require('./prometheus.js')
const { startReporting: reportFleetMetrics, fleetText: fleetMetrics, count: countFleet, recordEvent: recordFleetEvent } = require('./fleet.js')

module.exports = {
  Cache,
  SledCache,
  RedisCache,
  HybridCache,
  openCache,
  configFromEnv,
  normalizePath,
  acquireLock,
  acquireLocks,
  releaseLock,
  releaseAllLocks,
  renewLock,
  forceRelease,
  getLock,
  listLocks,
  listWaiters,
  lockSnapshot,
  checkFresh,
  recordWrites,
  recordView,
  treeViews,
  lastWrites,
  fileMark,
  FileLockError,
  oneLine,
  promCollector,
  reportFleetMetrics,
  fleetMetrics,
  countFleet,
  recordFleetEvent,
}
