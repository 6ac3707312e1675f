'use strict'
// The benchmarks' own redis-server: a free 127.0.0.1 port, no persistence, stopped by pid.
const { spawn } = require('node:child_process')
const net = require('node:net')

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
async function startRedis(dir) {
  const port = await freePort()
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] })
  await new Promise((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (d) => (out += d).includes('Ready to accept connections') && resolve())
    child.once('exit', (code) => reject(new Error(`redis-server exited ${code}: ${out}`)))
    setTimeout(() => reject(new Error('redis-server did not start in 10 s')), 10_000).unref()
  })
  return { port, child }
}

module.exports = { startRedis }
