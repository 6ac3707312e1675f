// The lock API written in TypeScript on ioredis (EVALSHA through defineCommand).
import Redis from 'ioredis'
import { ACQUIRE_LUA, acquireCall, acquireReply, EPOCH_MARKER, normalizePath, RELEASE_LUA, releaseCall } from './common'

export async function connect(port: number, ns = 'bench') {
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true })
  await client.connect()
  await client.set(...EPOCH_MARKER, 'NX')
  client.defineCommand('oflAcquire', { lua: ACQUIRE_LUA })
  client.defineCommand('oflRelease', { lua: RELEASE_LUA })
  const c = client as any
  return {
    async acquireLock(file: string, agentId: string, sessionId: string, ttlMs = 300_000): Promise<string> {
      const p = normalizePath(file)
      const [keys, args] = acquireCall(ns, [p], sessionId, agentId, ttlMs)
      return acquireReply(await c.oflAcquire(keys.length, ...keys, ...args), [p])[0]
    },
    async releaseLock(p: string, sessionId: string): Promise<boolean> {
      const path = normalizePath(p)
      const [keys, args] = releaseCall(ns, path, sessionId)
      return (await c.oflRelease(keys.length, ...keys, ...args)) === 1
    },
    close: () => client.quit(),
  }
}
