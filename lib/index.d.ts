// Public typings of opencode-file-lock (the generated ../index.d.ts types the raw binding).

export type ErrorCode = 'ELOCKED' | 'EINVAL' | 'EBACKEND' | 'ETIMEDOUT' | 'ECORRUPT' | 'ECLOSED' | 'ELOST' | 'EABORTED' | 'EDEADLK' | 'ENOADDON'

/** Every error this package raises. `holder` is set for ELOCKED. */
export declare class FileLockError extends Error {
  name: 'FileLockError'
  code: ErrorCode
  /** ELOCKED, ELOST: who holds the file. For a free file promised to an earlier waiter: `{sessionId, agentId, path, queued: true}`. */
  holder?: LockRecord | QueuedHolder
  /** On a refusal after waiting (ELOCKED) or an aborted wait (EABORTED): how long it waited. */
  waitedMs?: number
  /** EDEADLK: every wait of the cycle, the caller's first. */
  cycle?: DeadlockStep[]
  /** EDEADLK: the caller's locks let go of so that the wait before its own in the cycle goes on. */
  released?: string[]
}

/** One wait of a deadlock cycle: `sessionId` waits for `waitsFor`, which `heldBy` holds (or is first in line for). */
export interface DeadlockStep {
  sessionId: string
  agentId: string
  waitsFor: string
  heldBy: string
}

/** A waiting acquire, as `listWaiters` and `lockSnapshot` list it. */
export interface Waiter {
  sessionId: string
  agentId: string
  /** The paths it asks for (normalized; a claim ends in `/`). */
  paths: string[]
  /** The session holding it up, and the path that session holds (or is first in line for). */
  blockedBy: { sessionId: string; path: string }
  /** When it started waiting, and for how long it has, by the store's clock. */
  since: number
  waitedMs: number
}

/** Locks and waiters of a namespace, and the store's clock to tell their ages by. */
export interface LockSnapshot {
  now: number
  locks: LockRecord[]
  waiters: Waiter[]
}

/** The waiter a free file is promised to, named by a refusal. */
export interface QueuedHolder {
  sessionId: string
  agentId: string
  path: string
  queued: true
}

/** What `onLost` listeners receive when a lock this process held is gone. */
export interface LostLockEvent {
  /** expired: its TTL ran out unrenewed; released: someone forced it free; conflict: the hybrid gave it to another holder at recovery. */
  reason: 'expired' | 'released' | 'conflict'
  namespace: string
  path: string
  sessionId: string
  lost: LockRecord
  /** Who holds the path now, if anyone. */
  holder: LockRecord | null
}

/** The record stored (as `v`) under the normalized path of a locked file. */
export interface LockRecord {
  sessionId: string
  agentId: string
  path: string
  /** When this session was first granted the lock (epoch ms). */
  timestamp: number
  expiresAt: number
  /** Fencing token: strictly greater for every new grant of a path. */
  token: number
  /** How many times the owning session holds it (re-entrant acquire). */
  holdCount: number
  [extra: string]: unknown
}

export type BatchOp<T> = { type: 'put'; key: string; value: T; ttlMs?: number } | { type: 'del'; key: string }

/** The level-cache `Cache<T>` contract. */
export declare class Cache<T = any> {
  readonly namespace: string
  /** Calls `listener` when a lock this process acquired through this store is lost. Returns an unsubscribe function. */
  onLost(listener: (event: LostLockEvent) => void | Promise<void>): () => void
  /** Calls `listener` after changes to this namespace's locks and waiters (by any process on the store): a hint to look again. Returns a function that stops it. */
  onChange(listener: () => void | Promise<void>): () => void
  /** The value, or `undefined` (never `null`) when missing or expired. */
  get(key: string): Promise<T | undefined>
  has(key: string): Promise<boolean>
  set(key: string, value: T, opts?: { ttlMs?: number }): Promise<void>
  /** True when something was deleted. */
  del(key: string): Promise<boolean>
  /** All or nothing. */
  batch(ops: ReadonlyArray<BatchOp<T>>): Promise<void>
  entries(opts?: { limit?: number }): AsyncIterableIterator<[string, T]>
  /** Like entries(), with each entry's expiry (epoch ms, the store's clock) and what is left of its TTL by the store's clock (ms), or undefined: what migrations copy. */
  entriesWithExpiry(opts?: { limit?: number }): AsyncIterableIterator<[string, T, number | undefined, number | undefined]>
  /** Deletes expired entries of this namespace; returns how many. */
  sweepExpired(): Promise<number>
  /** A view of the same store under `${namespace}/${ns}`. */
  withNamespace(ns: string): this
  /** Deletes every entry of this namespace; returns how many. */
  clear(): Promise<number>
  healthCheck(): Promise<Record<string, unknown> & { healthy: boolean }>
  /** Prometheus text format: this process's counters and this namespace's live lock count. */
  metrics(): Promise<string>
  /** Flushes and lets go of the store, for every namespace view of it. Later calls: ECLOSED. */
  close(): Promise<void>
}

export interface RedisOptions {
  /** redis://[user:password@]host:port/db; wins over host/port/... */
  url?: string
  host?: string
  port?: number
  username?: string
  password?: string
  database?: number
  /** Connect with TLS (as a rediss:// url does). */
  tls?: boolean
  /** A PEM file of CA certificates to trust instead of the system's. */
  tlsCaFile?: string
  connectTimeoutMs?: number
  commandTimeoutMs?: number
  maxRetries?: number
  baseDelayMs?: number
  maxDelayMs?: number
  /** After each acquire, wait for this many replicas to acknowledge it (Redis WAIT); a grant
   * that fewer acknowledge within waitTimeoutMs (default 1000) is undone and fails with EBACKEND. */
  waitReplicas?: number
  waitTimeoutMs?: number
  /** Sentinels ("host:port"): connect to the primary they name for `sentinelMaster`, and follow failovers. */
  sentinels?: string[]
  sentinelMaster?: string
  sentinelPassword?: string
  /** Redis Cluster: some of its nodes ("redis://host:port" or "rediss://..."); the client finds the
   * rest and follows MOVED/ASK and failovers. Excludes url/host/port/database, sentinels and
   * waitReplicas. Claims (paths ending in "/") are refused there (EINVAL); see docs/deployment.md. */
  cluster?: string[]
}

/** How a sled cache shares its folder with the user's other processes (`healthCheck().shared`). */
export interface SharedRole {
  /** 'server': this process serves the folder; 'client': another process does; 'moving': a takeover is under way. */
  role: 'server' | 'client' | 'moving'
  pid?: number
  /** Server: how many client connections it has. */
  clients?: number
  /** Client: the process serving the folder, and its package version. */
  serverPid?: number
  serverVersion?: string
  socket?: string
}

/**
 * The sled folder, shared by every process of the user on the machine: the first process that
 * opens it serves it over a Unix socket, the others are its clients, and a client takes over when
 * the server exits or dies (see docs/shared-store.md).
 */
export declare class SledCache<T = any> extends Cache<T> {
  static open<T = any>(opts: { path: string; namespace?: string; defaultTtlMs?: number }): Promise<SledCache<T>>
}

export declare class RedisCache<T = any> extends Cache<T> {
  static connect<T = any>(opts?: RedisOptions & { namespace?: string; defaultTtlMs?: number }): Promise<RedisCache<T>>
}

export declare class HybridCache<T = any> extends Cache<T> {
  static open<T = any>(opts: {
    redis: RedisOptions
    sledPath: string
    namespace?: string
    defaultTtlMs?: number
    /** 'open' (default): serve from sled while Redis is down. 'closed': refuse. */
    failMode?: 'open' | 'closed'
    /** How often Redis is probed while sled serves (default 1000). */
    recheckMs?: number
    debug?: boolean
    /** A lock granted on the fallback was taken by someone else in Redis during the outage. */
    onLost?: (event: LostLockEvent) => void
  }): Promise<HybridCache<T>>
  currentBackend(): 'redis' | 'sled'
}

export interface EnvConfig {
  backend: 'sled' | 'redis' | 'hybrid'
  sledPath: string
  namespace: string
  ttlMs: number
  failMode: 'open' | 'closed'
  debug: boolean
  redis: RedisOptions
}

/** The configuration FILE_LOCK_* / REDIS_* describe; a bad value is EINVAL naming the variable. */
export declare function configFromEnv(env?: Record<string, string | undefined>): EnvConfig

/** Opens the cache the environment asks for; the overrides win. */
export declare function openCache(overrides?: {
  backend?: 'sled' | 'redis' | 'hybrid' | 'leveldb'
  path?: string
  namespace?: string
  defaultTtlMs?: number
  failMode?: 'open' | 'closed'
  redis?: RedisOptions
  env?: Record<string, string | undefined>
}): Promise<Cache<LockRecord>>

export interface AcquireOptions {
  /** Lock lifetime; default the cache's defaultTtlMs, else 300000. */
  ttlMs?: number
  /** Relative paths resolve against this (absolute) folder; default process.cwd(). */
  baseDir?: string
  /** Wait up to this long (ms, 0 to 86400000) for the holder and earlier waiters, woken by their release; default 0: refuse at once. */
  waitMs?: number
  /** Aborts a wait: the promise rejects with EABORTED and no lock or queue entry is left. */
  signal?: AbortSignal
  // Written into the lock record for people and other agents to read (one line each, control
  // characters removed, at most 200 characters):
  /** What holds it: `opencode`, `claude-code`, `mcp:<client>`, `human`. */
  kind?: string
  /** Why it is held ("rename the auth module"): shown in refusals, listings and `watch`. */
  reason?: string
  /** The holder's session title. */
  title?: string
  /** The holder's agent name in its host (opencode's `build`, `plan`, ...). */
  agentName?: string
}

export declare function normalizePath(filePath: string, baseDir?: string): string
/**
 * Locks a file for a session (re-entrant). A path ending in `/` claims that folder and everything
 * below it: it conflicts with any other session's lock inside it, and a file lock conflicts with
 * another session's claim on any folder above it. Rejects with ELOCKED (`err.holder`), or with
 * EDEADLK when waiting would close a cycle of waits.
 */
export declare function acquireLock(filePath: string, agentId: string, sessionId: string, cache: Cache, opts?: AcquireOptions): Promise<string>
export declare function acquireLocks(filePaths: string[], agentId: string, sessionId: string, cache: Cache, opts?: AcquireOptions): Promise<string[]>
export declare function releaseLock(normalizedPath: string, sessionId: string, cache: Cache): Promise<boolean>
export declare function releaseAllLocks(filter: { sessionId?: string; agentId?: string }, cache: Cache): Promise<number>
/** Rejects with code ELOST when the lock is no longer held by that session (it is not resurrected). */
export declare function renewLock(normalizedPath: string, sessionId: string, cache: Cache, opts?: { ttlMs?: number }): Promise<LockRecord>
/** Deletes a lock whoever holds it; the holder's onLost listeners hear of it. The removed record, or undefined. */
export declare function forceRelease(filePath: string, cache: Cache, opts?: { baseDir?: string }): Promise<LockRecord | undefined>
export declare function getLock(filePath: string, cache: Cache, opts?: { baseDir?: string }): Promise<LockRecord | undefined>
export declare function listLocks(cache: Cache, filter?: { sessionId?: string; agentId?: string }): Promise<LockRecord[]>
/** Who waits for which paths, held up by whom, since when (the store's clock), first come first. */
export declare function listWaiters(cache: Cache): Promise<Waiter[]>
/** Locks and waiters together, with the store's clock. */
export declare function lockSnapshot(cache: Cache): Promise<LockSnapshot>

/** A prom-client metric object (the shape a Registry takes). */
export interface PromMetric {
  name: string
  help: string
  type: 'counter' | 'gauge' | 'histogram'
  aggregator: 'sum'
  get(): Promise<{ name: string; help: string; type: string; values: { value: number; labels: Record<string, string>; metricName?: string }[]; aggregator: 'sum' }>
}

/** This package's metrics as prom-client metrics: `promCollector(cache).register(registry)` (any prom-client Registry, OpenMetrics too). */
export declare function promCollector(cache: Cache): {
  metrics: PromMetric[]
  register(registry: { registerMetric(metric: any): void }): ReturnType<typeof promCollector>
  unregister(registry: { removeSingleMetric(name: string): void }): void
}

/** Who wrote a file (`recordWrites`). */
export interface Writer {
  sessionId: string
  /** The root of the writer's task tree (a subagent shares its root's views); default: sessionId. */
  tree?: string
  agentId: string
  title?: string
  agentName?: string
  /** `opencode`, `claude-code`, `mcp:<client>`, `human`. */
  kind?: string
}

/** The last write of a path: what the file held after it, and who wrote it, where and when. */
export interface FileVersion {
  size: number
  /** xxh3-64 of the content, 16 hex digits. */
  hash: string
  sessionId: string
  tree: string
  agentId: string
  title?: string
  agentName?: string
  kind?: string
  /** The writer's machine. */
  host: string
  /** When it was recorded (epoch ms, the writer's clock). */
  at: number
}

/** Whether a task tree may write a path now (`checkFresh`). */
export interface Freshness {
  path: string
  ok: boolean
  /**
   * new: no file there; fresh: as the tree last saw it; own: as the tree itself last wrote it;
   * unread: the tree never read or wrote it (refused for a whole-file write); stale: changed since
   * the tree saw it; torn: it changed while the tree read it; unreadable: the file could not be
   * read to tell.
   */
  status: 'new' | 'fresh' | 'own' | 'unread' | 'stale' | 'torn' | 'unreadable'
  /** The path's last recorded write, whoever made it. */
  lastWrite?: FileVersion
  /** The file on this disk is what that write left (so that writer made the change). */
  byLastWrite: boolean
  /** The file's modification time on this disk (epoch ms). */
  modifiedAt?: number
  /** When the tree's view was taken (epoch ms). */
  viewedAt?: number
  error?: string
}

/**
 * Whether `tree` may write each path now, comparing the file on this machine's disk with the
 * tree's view of it; call it under the paths' locks. `whole`: the write replaces the whole file
 * (one value, or one per path), so a file the tree never read is refused too.
 */
export declare function checkFresh(paths: string[], tree: string, cache: Cache, opts?: { whole?: boolean | boolean[]; baseDir?: string }): Promise<Freshness[]>
/** After a write, before its locks go: each path's new version and the writer's tree's view (null where no file is left). */
export declare function recordWrites(paths: string[], writer: Writer, cache: Cache, opts?: { baseDir?: string; ttlMs?: number }): Promise<(FileVersion | null)[]>
/** After a read: the tree's view of the file as it is now; with `unchangedSince` (a `fileMark` from before the read) nothing is recorded if it changed meanwhile. */
export declare function recordView(path: string, tree: string, cache: Cache, opts?: { baseDir?: string; unchangedSince?: string; ttlMs?: number }): Promise<boolean>
/** Every file `tree` has a view of, and whether the disk still matches it (mark: the file's stat mark now, null when absent). */
export declare function treeViews(tree: string, cache: Cache): Promise<{ path: string; fresh: boolean; mark: string | null }[]>
/** The last recorded write of each path (null where none). */
export declare function lastWrites(paths: string[], cache: Cache, opts?: { baseDir?: string }): Promise<(FileVersion | null)[]>
/** One stat: a mark that changes with every write of the file, or null when no regular file is there. */
export declare function fileMark(path: string): string | null

/** Text another agent wrote (ids, titles, reasons) as one line with no control characters, cut to `max` characters (default 200): what this package shows of it. */
export { oneLine } from './text.js'

/**
 * Writes this process's counters and histograms to `cache`'s store every `everyMs` (default 5 s), so
 * `fleetMetrics` (and `opencode-file-lock serve`) see the sum over every process. Returns a function
 * that stops it after one last report. The opencode plugin starts it for the cache it opens.
 */
export declare function reportFleetMetrics(cache: Cache, opts?: { everyMs?: number }): () => Promise<void>

/** Prometheus text of every reporting process's counters summed, with live gauges from the store. */
export declare function fleetMetrics(cache: Cache): Promise<string>

/** Adds one to a counter reported with this process's fleet metrics (`labels`: label text without braces). */
export declare function countFleet(name: 'file_lock_stale_refusals_total', labels?: string): void

/** Records a refusal, a deadlock or a stale write for `serve`'s page (kept an hour). */
export declare function recordFleetEvent(cache: Cache, event: { kind: 'refused' | 'deadlock' | 'stale' | 'forced'; path: string; who?: string; by?: string; why?: string }): Promise<void>
