'use strict'
// Copies every live entry from one store to another in the shared wire format: from the legacy
// LevelDB store the TypeScript plugin left (level-cache: utf8 keys `ns\u241Fkey`, JSON {v,x}), from
// Redis, sled, the configured store or a backup file; to Redis, sled, the configured store or a
// backup file. Expired entries are skipped, the rest keep their remaining TTL, entries the target
// already holds unchanged are not written again (so a second run changes nothing), and a
// verification pass reads every copied key back.
const { isDeepStrictEqual } = require('node:util')
const { SledCache, RedisCache, openCache } = require('./cache.js')
const { invalid } = require('./errors.js')
const backupFile = require('./backup-file.js')

const native = require('./native.js')

/** The one redaction the native core applies to its own messages: URL userinfo, known passwords. */
const redact = (text) => native.redactSecrets(String(text))

/** `leveldb:<folder>`, `sled:<folder>`, `redis://...`, `rediss://...`, `json:<file>` or `env` (the configured store). */
function parseStore(spec, role) {
  if (typeof spec !== 'string' || !spec) throw invalid(`--${role} needs a store: leveldb:<folder>, sled:<folder>, redis://host:port or json:<file>`)
  if (spec === 'env') return { kind: 'env' }
  if (spec.startsWith('leveldb:')) return { kind: 'leveldb', folder: spec.slice(8) }
  if (spec.startsWith('sled:')) return { kind: 'sled', folder: spec.slice(5) }
  if (spec.startsWith('json:')) return { kind: 'json', file: spec.slice(5) }
  if (spec.startsWith('redis://') || spec.startsWith('rediss://')) return { kind: 'redis', url: spec }
  throw invalid(`--${role} ${JSON.stringify(redact(spec))} is not leveldb:<folder>, sled:<folder>, redis://... or json:<file>`)
}

/** Opens a store with no namespace, so keys are the raw `ns\u241Fkey` storage keys. */
async function openStore(store, role) {
  if (store.kind === 'sled') return SledCache.open({ path: store.folder, namespace: '' })
  if (store.kind === 'redis') return RedisCache.connect({ url: store.url, namespace: '' })
  if (store.kind === 'env') return openCache({ namespace: '' })
  if (store.kind === 'json' && role === 'to') return backupFile.writer(store.file)
  throw invalid(`${store.kind} can only be read (--from), not written`)
}

/** classic-level is an optional peer: only reading a legacy LevelDB folder needs it. */
function classicLevel() {
  try {
    return require('classic-level')
  } catch (e) {
    if (e.code !== 'MODULE_NOT_FOUND') throw e
    throw invalid('reading a LevelDB folder needs the optional package classic-level, which is not installed: run `npm install classic-level@3` beside opencode-file-lock, then migrate again')
  }
}

/**
 * Milliseconds a legacy LevelDB entry has left: its expiry was written by the old plugin on this
 * machine's clock, the only clock it has. (Stores say what is left by their own clocks.)
 */
const remaining = (expiresAt) => (typeof expiresAt === 'number' ? expiresAt - Date.now() : undefined)

/** Every entry of the source as {key, value, ttlMs}, or {key, error} when unreadable. */
async function* readSource(store) {
  if (store.kind === 'json') {
    yield* backupFile.read(store.file)
    return
  }
  if (store.kind === 'leveldb') {
    const { ClassicLevel } = classicLevel()
    const db = new ClassicLevel(store.folder, { keyEncoding: 'utf8', valueEncoding: 'utf8', createIfMissing: false })
    try {
      await db.open()
    } catch (e) {
      throw invalid(`cannot open the LevelDB folder ${store.folder}: ${e.cause?.message ?? e.message}`)
    }
    try {
      for await (const [key, raw] of db.iterator()) {
        let env
        try {
          env = JSON.parse(raw)
        } catch {
          yield { key, error: 'not JSON' }
          continue
        }
        if (env === null || typeof env !== 'object' || !('v' in env)) yield { key, error: 'not a {v,x} record' }
        else yield { key, value: env.v, ttlMs: remaining(env.x) }
      }
    } finally {
      await db.close()
    }
    return
  }
  const cache = await openStore(store, 'from')
  try {
    for await (const [key, value, , ttlMs] of cache.entriesWithExpiry()) yield { key, value, ttlMs }
  } finally {
    await cache.close()
  }
}

/**
 * Copies `from` into `to`. `progress(counts)` is called every `every` records read.
 * Returns {read, written, unchanged, skipped, failed, verified, mismatched, targetEntries, failures}.
 */
async function migrate({ from, to, progress = () => {}, every = 1000 }) {
  const source = parseStore(from, 'from')
  const target = parseStore(to, 'to')
  if (target.kind === 'leveldb') throw invalid('--to cannot be leveldb: the legacy store is only read')
  const counts = { read: 0, written: 0, unchanged: 0, skipped: 0, failed: 0, verified: 0, mismatched: 0, targetEntries: 0 }
  const failures = []
  const copied = new Map()
  const out = await openStore(target, 'to')
  try {
    for await (const e of readSource(source)) {
      counts.read++
      if (counts.read % every === 0) progress({ ...counts })
      if (e.error) {
        counts.failed++
        failures.push({ key: e.key, error: e.error })
        continue
      }
      if (e.ttlMs !== undefined && e.ttlMs <= 0) {
        counts.skipped++
        continue
      }
      try {
        if (isDeepStrictEqual(await out.get(e.key), e.value)) counts.unchanged++
        else {
          await out.set(e.key, e.value, e.ttlMs === undefined ? undefined : { ttlMs: Math.max(1, Math.round(e.ttlMs)) })
          counts.written++
        }
        copied.set(e.key, e.value)
      } catch (err) {
        counts.failed++
        failures.push({ key: e.key, error: `${err.code ?? ''} ${err.message}`.trim() })
      }
    }
    // a backup file is written (atomically) here and read back from disk for the verification
    await out.flush?.()
    // verification: every copied key reads back equal (entries that expired meanwhile excepted)
    for (const [key, value] of copied) {
      const back = await out.get(key)
      if (isDeepStrictEqual(back, value)) counts.verified++
      else if (back !== undefined) counts.mismatched++
    }
    for await (const _ of out.entries()) counts.targetEntries++
  } finally {
    await out.close()
  }
  return { ...counts, failures: failures.slice(0, 20) }
}

module.exports = { migrate, parseStore, redact }
