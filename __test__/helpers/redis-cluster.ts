// A real Redis Cluster for tests: six `redis-server --cluster-enabled yes` processes on free
// 127.0.0.1 ports, joined by `redis-cli --cluster create ... --cluster-replicas 1`, each killed
// by pid afterwards.
import { execFileSync } from 'node:child_process'
import { startRedis, type RedisServer } from './redis-server'

export interface RedisCluster {
  nodes: RedisServer[]
  /** "redis://127.0.0.1:port" of every node, for `cluster` / REDIS_CLUSTER_NODES. */
  urls: string[]
  /** The nodes serving as primaries now, and which slot ranges each serves. */
  primaries(): { port: number; pid: number; slots: [number, number][] }[]
  /** The node serving `slot` now (or in `shards`, a `primaries()` taken earlier: each call of
   *  `primaries()` runs redis-cli). */
  primaryOf(slot: number, shards?: ReturnType<RedisCluster['primaries']>): RedisServer
  /** Until every node says cluster_state:ok, the primaries cover all 16384 slots, and every
   *  replica has synced (a replica that never synced is not eligible to take over). */
  settled(ms?: number): Promise<void>
  stop(): Promise<void>
}

const cli = (port: number, ...args: string[]) => execFileSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8', timeout: 10_000 }).trim()

export async function startCluster(opts: { nodeTimeoutMs?: number } = {}): Promise<RedisCluster> {
  const extra = ['--cluster-enabled', 'yes', '--cluster-node-timeout', String(opts.nodeTimeoutMs ?? 2000), '--cluster-config-file', 'nodes.conf', '--appendonly', 'no', '--repl-diskless-sync-delay', '0']
  const nodes = await Promise.all(Array.from({ length: 6 }, () => startRedis(extra)))
  execFileSync('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '1', '--cluster-yes'], { encoding: 'utf8', timeout: 60_000 })
  const byPort = new Map(nodes.map((n) => [n.port, n]))
  const alive = () => nodes.filter((n) => {
    try {
      return cli(n.port, 'PING') === 'PONG'
    } catch {
      return false
    }
  })
  const cluster: RedisCluster = {
    nodes,
    urls: nodes.map((n) => `redis://127.0.0.1:${n.port}`),
    primaries() {
      const [first] = alive()
      const shards = cli(first.port, 'CLUSTER', 'NODES').split('\n')
      return shards
        .map((l) => l.split(' '))
        .filter((f) => f[2]?.includes('master') && !f[2].includes('fail'))
        .map((f) => {
          const port = Number(f[1].split('@')[0].split(':')[1])
          const slots = f.slice(8).filter((s) => /^\d/.test(s)).map((s) => s.split('-').map(Number) as [number, number]).map(([a, b]) => [a, b ?? a] as [number, number])
          return { port, pid: byPort.get(port)!.pid, slots }
        })
        .filter((p) => p.slots.length > 0)
    },
    primaryOf(slot, shards = cluster.primaries()) {
      const p = shards.find((x) => x.slots.some(([a, b]) => slot >= a && slot <= b))
      if (!p) throw new Error(`no primary serves slot ${slot}`)
      return byPort.get(p.port)!
    },
    async settled(ms = 30_000) {
      const end = Date.now() + ms
      for (;;) {
        try {
          const ok = alive().every((n) => cli(n.port, 'CLUSTER', 'INFO').includes('cluster_state:ok'))
          const covered = cluster.primaries().reduce((s, p) => s + p.slots.reduce((t, [a, b]) => t + b - a + 1, 0), 0)
          const synced = alive().every((n) => {
            const info = cli(n.port, 'INFO', 'replication')
            return info.includes('role:master') || info.includes('master_link_status:up')
          })
          if (ok && covered === 16384 && synced) return
        } catch {}
        if (Date.now() > end) throw new Error('the cluster did not settle')
        await new Promise((r) => setTimeout(r, 100))
      }
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()))
    },
  }
  await cluster.settled()
  return cluster
}
