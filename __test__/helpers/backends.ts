// The same tests run on every backend: `openOn` opens a fresh, empty cache on one of them.
// Call `useRedis()` inside a describe block: it starts one redis-server for the file's tests.
import { afterAll, afterEach, beforeAll } from 'vitest'
import { SledCache, RedisCache, HybridCache, type Cache } from '../../lib/index.js'
import { startCluster, type RedisCluster } from './redis-cluster'
import { startRedis, type RedisServer } from './redis-server'
import { tmpDir } from './tmp'

export const BACKENDS = ['sled', 'redis', 'hybrid'] as const
/** The contract suite's stores: every backend, and Redis Cluster. */
export const CONTRACT_BACKENDS = [...BACKENDS, 'cluster'] as const
export type BackendName = (typeof CONTRACT_BACKENDS)[number]

let redis: RedisServer | undefined
let cluster: RedisCluster | undefined
let n = 0

export function useRedis(extra: string[] = []) {
  beforeAll(async () => {
    redis = await startRedis(extra)
  })
  afterAll(async () => {
    await redis?.stop()
    redis = undefined
  })
  return () => redis!
}

/** Inside a describe block: a Redis Cluster (six nodes) for the file's tests, when `wanted`. */
export function useCluster(wanted = true) {
  beforeAll(async () => {
    if (wanted) cluster = await startCluster()
  }, 60_000)
  afterAll(async () => {
    await cluster?.stop()
    cluster = undefined
  })
  return () => cluster!
}

export function openOn(name: BackendName, o: { namespace?: string; defaultTtlMs?: number } = {}): Promise<Cache> {
  // a fresh namespace per cache keeps tests on the shared Redis apart
  const namespace = `${o.namespace ?? 'locks'}-${++n}`
  switch (name) {
    case 'sled':
      return SledCache.open({ path: tmpDir('ofl-sled-'), ...o, namespace })
    case 'redis':
      return RedisCache.connect({ port: redis!.port, commandTimeoutMs: 2000, ...o, namespace })
    case 'hybrid':
      return HybridCache.open({ redis: { port: redis!.port, commandTimeoutMs: 2000 }, sledPath: tmpDir('ofl-hybrid-'), ...o, namespace })
    case 'cluster':
      return RedisCache.connect({ cluster: cluster!.urls, commandTimeoutMs: 2000, ...o, namespace })
  }
}

/** An opener for fresh caches on `name`; every cache it opened is closed after each test. */
export function cachesOn(name: BackendName) {
  const opened: Cache[] = []
  afterEach(async () => {
    for (const c of opened.splice(0)) await c.close()
  })
  return async (o?: { namespace?: string; defaultTtlMs?: number }) => {
    const c = await openOn(name, o)
    opened.push(c)
    return c
  }
}
