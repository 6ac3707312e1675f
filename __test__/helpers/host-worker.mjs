// One "machine" of the multi-host stale-write test: run inside its own UTS and mount namespaces
// (its own host name, its own checkout bound at the shared path), it drives the built plugin's
// hooks as opencode would for the reads and writes in OPS, on the shared Redis, and prints what
// each did: "read", "wrote", or "refused: <message>".
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { FileLockPlugin } from '../../plugin/dist/file-lock.js'
import lib from '../../lib/index.js'

const [port, repo] = process.argv.slice(2)
const cache = await lib.RedisCache.connect({ port: Number(port), namespace: 'hosts' })
const titles = { A: { title: 'Session A', agent: 'build' }, B: { title: 'Fix login', agent: 'build' }, X: { title: 'Roaming' } }
const client = { session: { get: async ({ path: { id } }) => ({ data: titles[id] ?? {} }) }, tui: { showToast: async () => {} } }
const hooks = await FileLockPlugin({ agentId: `agent-${os.hostname()}`, cache, baseDir: repo, waitMs: 0, toast: false, client })
const out = []
let n = 0
for (const op of JSON.parse(process.env.OPS)) {
  const call = { tool: op.read ? 'read' : 'write', sessionID: op.session, callID: `c${++n}` }
  try {
    await hooks['tool.execute.before'](call, { args: op.read ? { filePath: op.read } : { filePath: op.write, content: op.content } })
    if (op.write) fs.writeFileSync(path.join(repo, op.write), op.content)
    await hooks['tool.execute.after'](call, { title: '', output: op.read ? '...' : 'Wrote file successfully.', metadata: {} })
    out.push(op.read ? 'read' : 'wrote')
  } catch (e) {
    out.push(`refused: ${e?.message ?? e}`)
  }
}
console.log(JSON.stringify(out))
process.exit(0)
