'use strict'
// The level-cache `Cache<T>` contract over a native store. Every call goes through the bridge:
// sled calls (and most calls of a shared store's client) finish inside the call, so the promise
// is already settled; Redis calls settle when their answer arrives.
const native = require('./native.js')
const { FileLockError, fromNative, invalid } = require('./errors.js')
const { run, cancel, getBridge } = require('./bridge.js')
const check = require('./check.js')

const PAGE = 256

class Cache {
  /** @param {import('../index').NativeCache} handle */
  constructor(handle, lost) {
    handle.useBridge(getBridge())
    this._n = handle
    // onLost listeners, shared by every namespace view of the store (as the native watch is)
    this._lost = lost ?? { listeners: [], registered: false }
  }

  /**
   * Calls `listener(event)` when a lock this process acquired through this store is lost: it
   * expired (`reason: 'expired'`), someone forced it free (`'released'`), or the hybrid gave it to
   * another holder at recovery (`'conflict'`). Returns a function that removes the listener.
   * A listener that throws or rejects gets a process warning, never an unhandled rejection.
   */
  onLost(listener) {
    if (typeof listener !== 'function') throw invalid('onLost takes a function')
    const lost = this._lost
    lost.listeners.push(listener)
    if (!lost.registered) {
      lost.registered = true
      this._n.onLost((json) => {
        let event
        try {
          event = JSON.parse(json)
        } catch {
          return
        }
        const warn = (e) => process.emitWarning(`opencode-file-lock onLost listener failed: ${e?.message ?? e}`)
        for (const l of [...lost.listeners]) {
          try {
            Promise.resolve(l(event)).catch(warn)
          } catch (e) {
            warn(e)
          }
        }
      })
    }
    return () => {
      const i = lost.listeners.indexOf(listener)
      if (i >= 0) lost.listeners.splice(i, 1)
      if (lost.listeners.length === 0 && lost.registered) {
        // nobody listens: stop watching, so acquires cost what they cost without a listener
        lost.registered = false
        this._n.stopLostWatch()
      }
    }
  }

  /**
   * Calls `listener()` after changes to this namespace's locks and waiters, made by any process
   * on the store (grants, releases, waiters coming and going; several close together are told
   * once). A hint to look again (`lockSnapshot`), not a description of the change. Returns a
   * function that stops it. A listener that throws or rejects gets a process warning.
   */
  onChange(listener) {
    if (typeof listener !== 'function') throw invalid('onChange takes a function')
    const warn = (e) => process.emitWarning(`opencode-file-lock onChange listener failed: ${e?.message ?? e}`)
    let w = this._n.watchChanges(() => {
      try {
        Promise.resolve(listener()).catch(warn)
      } catch (e) {
        warn(e)
      }
    })
    return () => {
      w?.stop()
      w = undefined
    }
  }

  /**
   * Acquire that waits up to `waitMs` (woken by the release itself); `signal` aborts with
   * EABORTED. Whatever ends it, no queue entry is left, and an aborted wait holds no lock.
   */
  _acquireWaiting(paths, agentId, sessionId, ttlMs, baseDir, waitMs, signal, holder) {
    const started = Date.now()
    const aborted = () => {
      const e = new FileLockError('EABORTED', `the wait for ${paths.join(', ')} was aborted after ${Date.now() - started} ms; no lock was taken`)
      e.waitedMs = Date.now() - started
      return e
    }
    if (signal?.aborted) return Promise.reject(aborted())
    let id
    const onAbort = () => cancel(id)
    const p = this._call('acquire', [paths, agentId, sessionId, ttlMs, baseDir, waitMs, holder], (i) => (id = i), true)
    signal?.addEventListener('abort', onAbort, { once: true })
    return p.then(
      async (v) => {
        signal?.removeEventListener('abort', onAbort)
        const got = v.split('\0')
        if (signal?.aborted) {
          // granted in the same instant the caller gave up: it wanted no lock, so it keeps none
          const failed = []
          for (const path of got) await this._release(path, sessionId).catch((e) => failed.push(`${path} (${e.code}: ${e.message})`))
          const e = aborted()
          if (failed.length) {
            e.message = `the wait for ${paths.join(', ')} was aborted after ${e.waitedMs} ms, but it had been granted in the same instant and releasing ${failed.join(', ')} failed; that lock expires at its TTL`
          }
          throw e
        }
        return got
      },
      (e) => {
        signal?.removeEventListener('abort', onAbort)
        if (e.code === 'ELOCKED' || e.code === 'EABORTED') e.waitedMs = Date.now() - started
        throw e
      },
    )
  }

  /** Acquire, resolving to the normalized paths (the hot path: no generic dispatch). */
  _acquire(paths, agentId, sessionId, ttlMs, baseDir, holder) {
    const n = this._n
    return run((id) => n.acquire(id, paths, agentId, sessionId, ttlMs, baseDir, undefined, holder), splitPaths)
  }

  _release(path, sessionId) {
    const n = this._n
    return run((id) => n.release(id, path, sessionId), isOne)
  }

  /** Calls native method `name(id, ...args)`; resolves to its answer (a string). */
  _call(name, args, onId, wait) {
    return run((id) => this._n[name](id, ...args), undefined, onId, wait)
  }
  get namespace() {
    return this._n.namespace
  }

  async get(key) {
    const text = await this._call('get', [check.str(key, 'key')])
    return text === '' ? undefined : JSON.parse(text)
  }

  async has(key) {
    return (await this.get(key)) !== undefined
  }

  async set(key, value, opts) {
    check.str(key, 'key')
    const text = check.json(value, `the value for ${JSON.stringify(key)}`)
    const ttlMs = check.optMs(check.obj(opts, 'options').ttlMs, 'ttlMs')
    await this._call('set', [key, text, ttlMs])
  }

  async del(key) {
    return isOne(await this._call('del', [check.str(key, 'key')]))
  }

  async batch(ops) {
    if (!Array.isArray(ops)) throw invalid('batch() takes an array of {type, key, value?, ttlMs?}')
    const mapped = ops.map((op, i) => {
      if (op === null || typeof op !== 'object') throw invalid(`batch op ${i} must be an object {type, key, value?, ttlMs?}`)
      const key = check.str(op.key, `batch op ${i} key`)
      if (op.type === 'del') return { kind: 'del', key }
      if (op.type !== 'put') throw invalid(`batch op ${i} type must be 'put' or 'del', got ${JSON.stringify(op.type)}`)
      return { kind: 'put', key, valueJson: check.json(op.value, `batch op ${i} value`), ttlMs: check.optMs(op.ttlMs, `batch op ${i} ttlMs`) }
    })
    await this._call('batch', [mapped])
  }

  /** Live entries as [key, value], in pages; `limit` caps how many are yielded. */
  async *entries(opts) {
    for await (const [k, v] of this.entriesWithExpiry(opts)) yield [k, v]
  }

  /**
   * Live entries as [key, value, expiresAt | undefined, ttlMs | undefined]: the expiry (epoch ms,
   * the store's clock) and what is left of the TTL by the store's clock. What migrations copy.
   */
  async *entriesWithExpiry(opts) {
    const limit = check.obj(opts, 'options').limit
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 0)) throw invalid('limit must be a whole number >= 0')
    let cursor = null
    let n = 0
    do {
      const page = JSON.parse(await this._call('scan', [cursor, PAGE]))
      for (const [key, value, expiresAt] of page.items) {
        if (limit !== undefined && n >= limit) return
        n++
        yield [key, value, expiresAt ?? undefined, expiresAt == null ? undefined : expiresAt - page.now]
      }
      cursor = page.cursor
    } while (cursor != null)
  }

  /** Deletes expired entries of this namespace; returns how many. */
  async sweepExpired() {
    return Number(await this._call('sweepExpired', []))
  }

  /** Deletes every entry of this namespace; returns how many. */
  async clear() {
    return Number(await this._call('clear', []))
  }

  withNamespace(ns) {
    if (typeof ns !== 'string') throw invalid('withNamespace() takes a string')
    let handle
    try {
      handle = this._n.withNamespace(ns)
    } catch (e) {
      throw fromNative(e)
    }
    return new this.constructor(handle, this._lost)
  }

  /** Backend-specific health: Redis latency, memory and key count; sled folder size and records. */
  async healthCheck() {
    return JSON.parse(await this._call('health', []))
  }

  /** Prometheus text: this process's lock and Redis counters, and this namespace's live lock count. */
  async metrics() {
    return this._call('metrics', [])
  }

  /** Flushes and lets go of the store (for every namespace view of it). Later calls: ECLOSED. */
  async close() {
    await this._call('close', [])
  }
}

class SledCache extends Cache {
  /**
   * Opens the sled folder, shared by every process of the user on the machine: this process
   * serves it if no other does, else it becomes a client of the one that does.
   * @param {{path: string, namespace?: string, defaultTtlMs?: number}} opts
   */
  static async open(opts) {
    const o = check.known(check.obj(opts, 'SledCache.open options'), ['path', 'namespace', 'defaultTtlMs'], 'SledCache.open')
    const path = check.str(o.path, 'path')
    try {
      return new SledCache(await native.openSled(path, namespaceOf(o), check.optMs(o.defaultTtlMs, 'defaultTtlMs')))
    } catch (e) {
      throw fromNative(e)
    }
  }
}

/** The namespace option: a string ('' means raw keys, as level-cache without a namespace), or none. */
function namespaceOf(o) {
  if (o.namespace === undefined || o.namespace === null) return undefined
  if (typeof o.namespace !== 'string') throw invalid('namespace must be a string')
  return o.namespace
}

const REDIS_KEYS = ['url', 'host', 'port', 'username', 'password', 'database', 'tls', 'connectTimeoutMs', 'commandTimeoutMs', 'maxRetries', 'baseDelayMs', 'maxDelayMs', 'waitReplicas', 'waitTimeoutMs', 'sentinels', 'sentinelMaster', 'sentinelPassword', 'tlsCaFile', 'cluster']

function redisOptions(o, what) {
  check.known(o, [...REDIS_KEYS, ...(what === 'RedisCache.connect' ? ['namespace', 'defaultTtlMs'] : [])], what)
  const out = {}
  for (const k of REDIS_KEYS) if (o[k] !== undefined && o[k] !== null) out[k] = o[k]
  for (const k of ['url', 'host', 'username', 'password', 'sentinelMaster', 'sentinelPassword', 'tlsCaFile']) if (k in out) check.str(out[k], k)
  if ('sentinels' in out && (!Array.isArray(out.sentinels) || out.sentinels.some((x) => typeof x !== 'string'))) throw invalid('sentinels must be an array of "host:port" strings')
  if ('cluster' in out && (!Array.isArray(out.cluster) || out.cluster.length === 0 || out.cluster.some((x) => typeof x !== 'string'))) throw invalid('cluster must be a non-empty array of "redis://host:port" strings')
  for (const k of ['port', 'database', 'maxRetries', 'waitReplicas']) {
    if (k in out && (!Number.isInteger(out[k]) || out[k] < 0)) throw invalid(`${k} must be a whole number >= 0`)
  }
  for (const k of ['connectTimeoutMs', 'commandTimeoutMs', 'baseDelayMs', 'maxDelayMs', 'waitTimeoutMs']) check.optMs(out[k], k)
  if ('tls' in out && typeof out.tls !== 'boolean') throw invalid('tls must be true or false')
  return out
}

class RedisCache extends Cache {
  /** @param {object} opts url | host/port/username/password/database/tls, namespace, defaultTtlMs, timeouts */
  static async connect(opts) {
    const o = check.obj(opts, 'RedisCache.connect options')
    const r = redisOptions(o, 'RedisCache.connect')
    try {
      return new RedisCache(await native.connectRedis(r, namespaceOf(o), check.optMs(o.defaultTtlMs, 'defaultTtlMs')))
    } catch (e) {
      throw fromNative(e)
    }
  }
}

class HybridCache extends Cache {
  /** @param {{redis: object, sledPath: string, namespace?: string, defaultTtlMs?: number, failMode?: 'open'|'closed', recheckMs?: number, debug?: boolean, onLost?: (event: object) => void}} opts */
  static async open(opts) {
    const o = check.known(check.obj(opts, 'HybridCache.open options'), ['redis', 'sledPath', 'namespace', 'defaultTtlMs', 'failMode', 'recheckMs', 'debug', 'onLost'], 'HybridCache.open')
    const r = redisOptions(check.obj(o.redis, 'redis'), 'HybridCache.open redis')
    const hybrid = {
      sledPath: check.str(o.sledPath, 'sledPath'),
      failMode: check.optStr(o.failMode, 'failMode'),
      recheckMs: check.optMs(o.recheckMs, 'recheckMs'),
      debug: o.debug === undefined ? undefined : Boolean(o.debug),
    }
    if (o.onLost !== undefined && typeof o.onLost !== 'function') throw invalid('onLost must be a function')
    let cache
    try {
      cache = new HybridCache(await native.openHybrid(r, hybrid, namespaceOf(o), check.optMs(o.defaultTtlMs, 'defaultTtlMs')))
    } catch (e) {
      throw fromNative(e)
    }
    if (o.onLost) cache.onLost(o.onLost)
    return cache
  }

  /** 'redis' or 'sled': which store serves calls now. */
  currentBackend() {
    return this._n.currentBackend()
  }
}

const ENV_KEYS = [
  'FILE_LOCK_CACHE_BACKEND', 'FILE_LOCK_PATH', 'FILE_LOCK_NAMESPACE', 'FILE_LOCK_TTL_MS', 'FILE_LOCK_FAIL_MODE',
  'REDIS_URL', 'REDIS_HOST', 'REDIS_PORT', 'REDIS_PASSWORD', 'REDIS_USERNAME', 'REDIS_DATABASE', 'REDIS_TLS',
  'REDIS_CONNECT_TIMEOUT', 'REDIS_COMMAND_TIMEOUT', 'REDIS_MAX_RETRIES', 'REDIS_BASE_DELAY', 'REDIS_MAX_DELAY', 'REDIS_WAIT_REPLICAS', 'REDIS_WAIT_TIMEOUT', 'REDIS_SENTINELS', 'REDIS_SENTINEL_MASTER', 'REDIS_SENTINEL_PASSWORD', 'REDIS_TLS_CA', 'REDIS_CLUSTER_NODES',
  'DEBUG_FILE_LOCK_CACHE', 'XDG_STATE_HOME', 'HOME', 'USERPROFILE', 'TMPDIR',
  // the deployment guide's feature flags and pool sizes (see docs/configuration.md)
  'USE_REDIS_CACHE', 'ENABLE_DISTRIBUTED_LOCKS', 'ENABLE_METRICS', 'DEBUG_MODE', 'REDIS_POOL_MIN', 'REDIS_POOL_MAX', 'REDIS_POOL_TIMEOUT',
]
const said = new Set()

/** The configuration the environment describes (a bad variable is EINVAL naming it). */
function configFromEnv(env = process.env) {
  const picked = {}
  for (const k of ENV_KEYS) if (typeof env[k] === 'string') picked[k] = env[k]
  try {
    return native.configFromEnv(picked)
  } catch (e) {
    throw fromNative(e)
  }
}

/**
 * Opens the cache the environment asks for (FILE_LOCK_CACHE_BACKEND etc.); `overrides` win:
 * {backend?, path?, namespace?, defaultTtlMs?, failMode?, redis?: {...}, env?}.
 */
const NO_FOLDER =
  "the lock folder's default place is under XDG_STATE_HOME or HOME, and neither is set: set FILE_LOCK_PATH to a folder of your own (a shared temporary folder is never used: another user could have made it, or a link in its place)"

async function openCache(overrides) {
  const o = check.known(check.obj(overrides, 'openCache options'), ['backend', 'path', 'namespace', 'defaultTtlMs', 'failMode', 'redis', 'env'], 'openCache')
  const c = configFromEnv(o.env ?? process.env)
  for (const note of c.notes) if (!said.has(note) && said.add(note)) console.error(`[opencode-file-lock] note: ${note}`)
  const backend = o.backend ?? c.backend
  const namespace = o.namespace ?? c.namespace
  const defaultTtlMs = o.defaultTtlMs ?? c.ttlMs
  const redis = { ...c.redis, ...check.obj(o.redis, 'redis') }
  if (redis.url) for (const k of ['host', 'port']) if (!(o.redis && k in o.redis)) delete redis[k]
  const sledPath = o.path ?? c.sledPath
  if (!sledPath && backend !== 'redis') throw invalid(NO_FOLDER)
  switch (backend) {
    case 'sled':
    case 'leveldb':
      return SledCache.open({ path: sledPath, namespace, defaultTtlMs })
    case 'redis':
      return RedisCache.connect({ ...redis, namespace, defaultTtlMs })
    case 'hybrid':
      return HybridCache.open({ redis, sledPath, namespace, defaultTtlMs, failMode: o.failMode ?? c.failMode, debug: c.debug })
    default:
      throw invalid(`backend must be 'sled', 'redis' or 'hybrid', got ${JSON.stringify(backend)}`)
  }
}

const splitPaths = (v) => v.split('\0')
const isOne = (v) => v === '1'

module.exports = { Cache, SledCache, RedisCache, HybridCache, openCache, configFromEnv }
