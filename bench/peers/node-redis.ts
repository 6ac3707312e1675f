// The lock API written in TypeScript on node-redis v5: the fair peer of the native Redis store.
// node-redis writes and parses on the JS thread and runs scripts with EVALSHA (defineScript).
import { createClient } from 'redis'
import { ACQUIRE_LUA, acquireCall, acquireReply, EPOCH_MARKER, normalizePath, RELEASE_LUA, RELEASE_SESSION_LUA, releaseCall, releaseSessionCall } from './common'

export async function connect(port: number, ns = 'bench') {
  const client = createClient({ url: `redis://127.0.0.1:${port}` })
  await client.connect()
  await client.set(EPOCH_MARKER[0], EPOCH_MARKER[1], { NX: true })
  const [acq, rel, relSession] = await Promise.all([ACQUIRE_LUA, RELEASE_LUA, RELEASE_SESSION_LUA].map((s) => client.scriptLoad(s)))
  const evalsha = (sha: string, keys: string[], args: string[]) => client.evalSha(sha, { keys, arguments: args })
  return {
    async acquireLocks(files: string[], agentId: string, sessionId: string, ttlMs = 300_000): Promise<string[]> {
      const paths = [...new Set(files.map((f) => normalizePath(f)))]
      const reply = (await evalsha(acq, ...acquireCall(ns, paths, sessionId, agentId, ttlMs))) as string[]
      return acquireReply(reply, paths)
    },
    async acquireLock(file: string, agentId: string, sessionId: string): Promise<string> {
      return (await this.acquireLocks([file], agentId, sessionId))[0]
    },
    async releaseLock(p: string, sessionId: string): Promise<boolean> {
      const path = normalizePath(p)
      return (await evalsha(rel, ...releaseCall(ns, path, sessionId))) === 1
    },
    async releaseAllLocks(sessionId: string): Promise<number> {
      return (await evalsha(relSession, ...releaseSessionCall(ns, sessionId))) as number
    },
    close: () => client.quit(),
  }
}
