// The lock API written in TypeScript on ioredis (EVALSHA through defineCommand).
import Redis from 'ioredis'
import { ACQUIRE_LUA, acquireReply, fenceKey, key, normalizePath, RELEASE_LUA, sessionKey } from './common'

export async function connect(port: number, ns = 'bench') {
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true })
  await client.connect()
  client.defineCommand('oflAcquire', { lua: ACQUIRE_LUA })
  client.defineCommand('oflRelease', { lua: RELEASE_LUA, numberOfKeys: 2 })
  const c = client as any
  return {
    async acquireLock(file: string, agentId: string, sessionId: string, ttlMs = 300_000): Promise<string> {
      const p = normalizePath(file)
      return acquireReply(await c.oflAcquire(3, key(ns, p), fenceKey(ns), sessionKey(ns, sessionId), sessionId, agentId, Date.now(), ttlMs, p))[0]
    },
    async releaseLock(p: string, sessionId: string): Promise<boolean> {
      const path = normalizePath(p)
      return (await c.oflRelease(key(ns, path), sessionKey(ns, sessionId), sessionId, Date.now(), path)) === 1
    },
    close: () => client.quit(),
  }
}
