// DEBUG_FILE_LOCK_CACHE=true: one stderr line per lock decision and backend switch, no secret.
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { startRedis } from './helpers/redis-server'
import { tmpDir } from './helpers/tmp'

const LIB = path.resolve(__dirname, '../lib/index.js')

describe('DEBUG_FILE_LOCK_CACHE', () => {
  it('logs grants, refusals, releases and hybrid switches, one line each, never the password', async () => {
    const server = await startRedis(['--requirepass', 'debug-secret-42'])
    const script = `
      const L = require(${JSON.stringify(LIB)})
      ;(async () => {
        const c = await L.HybridCache.open({ redis: { port: ${server.port}, password: 'debug-secret-42', commandTimeoutMs: 300, maxRetries: 1 }, sledPath: ${JSON.stringify(tmpDir())} })
        const p = await L.acquireLock('/dbg/a', 'agent-1', 'ses-1', c)
        await L.acquireLock('/dbg/a', 'agent-2', 'ses-2', c).catch(() => {})
        await L.releaseLock(p, 'ses-1', c)
        process.kill(${server.pid}, 'SIGKILL')
        await L.acquireLock('/dbg/b', 'agent-1', 'ses-1', c)
        await c.close()
      })()`
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, DEBUG_FILE_LOCK_CACHE: 'true' }, timeout: 20_000 })
    await server.stop()
    const lines = r.stderr.trim().split('\n')
    expect(lines.some((l) => /acquire granted \/dbg\/a for session ses-1 agent agent-1 on redis/.test(l))).toBe(true)
    expect(lines.some((l) => /acquire refused \/dbg\/a for session ses-2 .*held by session "ses-1"/.test(l))).toBe(true)
    expect(lines.some((l) => /release \/dbg\/a for session ses-1 on redis: released/.test(l))).toBe(true)
    expect(lines.some((l) => /hybrid: now serving from sled/.test(l))).toBe(true)
    expect(lines.some((l) => /acquire granted \/dbg\/b .* on sled/.test(l))).toBe(true)
    expect(lines.every((l) => l.startsWith('[opencode-file-lock]'))).toBe(true)
    expect(r.stderr).not.toContain('debug-secret-42')
  })
})
