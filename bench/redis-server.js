'use strict'
// The benchmarks' own redis-server (a free 127.0.0.1 port, no persistence, stopped by pid), and a
// six-node Redis Cluster of them.
const { execFileSync, spawn } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const path = require('node:path')

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

/** Starts redis-server with its working files in `dir`; resolves to {port, child} once it serves. */
async function startRedis(dir, extra = []) {
  const port = await freePort()
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] })
  await new Promise((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (d) => (out += d).includes('Ready to accept connections') && resolve())
    child.once('exit', (code) => reject(new Error(`redis-server exited ${code}: ${out}`)))
    setTimeout(() => reject(new Error('redis-server did not start in 10 s')), 10_000).unref()
  })
  return { port, child }
}

/** Six cluster-enabled servers (each in its own folder under `dir`) joined into a Cluster of three
 *  primaries with a replica each; resolves once every node says cluster_state:ok. */
async function startCluster(dir) {
  const nodes = []
  for (let i = 0; i < 6; i++) {
    const d = path.join(dir, `node${i}`)
    fs.mkdirSync(d, { recursive: true })
    nodes.push(await startRedis(d, ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--repl-diskless-sync-delay', '0']))
  }
  execFileSync('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '1', '--cluster-yes'], { stdio: 'ignore', timeout: 60_000 })
  for (let i = 0; ; i++) {
    const ok = nodes.every((n) => execFileSync('redis-cli', ['-p', String(n.port), 'CLUSTER', 'INFO'], { encoding: 'utf8' }).includes('cluster_state:ok'))
    if (ok) break
    if (i > 300) throw new Error('the cluster did not settle in 30 s')
    await new Promise((r) => setTimeout(r, 100))
  }
  return { nodes, urls: nodes.map((n) => `redis://127.0.0.1:${n.port}`), stop: () => nodes.forEach((n) => n.child.kill('SIGKILL')) }
}

module.exports = { startRedis, startCluster }
