// The deployment guide's feature flags and pool settings: each honoured, or accepted with a
// one-line note; never silently ignored. A bad value names its variable.
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { configFromEnv, getLock } from '../lib/index.js'
import { FileLockPlugin } from '../plugin/src/file-lock.ts'
import { SledCache } from '../lib/index.js'
import { sleep, tmpDir } from './helpers/tmp'

const LIB = path.resolve(__dirname, '../lib/index.js')
function node(script: string, env: Record<string, string>) {
  return spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, ...env } })
}

describe('feature flags', () => {
  it('USE_REDIS_CACHE and ENABLE_DISTRIBUTED_LOCKS choose the backend, and a contradiction is an error naming both', () => {
    expect(configFromEnv({ USE_REDIS_CACHE: 'true' }).backend).toBe('redis')
    expect(configFromEnv({ USE_REDIS_CACHE: 'true', ENABLE_DISTRIBUTED_LOCKS: 'true' }).backend).toBe('redis')
    expect(configFromEnv({ ENABLE_DISTRIBUTED_LOCKS: 'false' }).backend).toBe('sled')
    expect(() => configFromEnv({ USE_REDIS_CACHE: 'true', FILE_LOCK_CACHE_BACKEND: 'sled' })).toThrow(/USE_REDIS_CACHE=true contradicts FILE_LOCK_CACHE_BACKEND=sled/)
    expect(() => configFromEnv({ ENABLE_DISTRIBUTED_LOCKS: 'true' })).toThrow(expect.objectContaining({ code: 'EINVAL', message: expect.stringContaining('ENABLE_DISTRIBUTED_LOCKS=true') }))
    expect(() => configFromEnv({ ENABLE_METRICS: 'sometimes' })).toThrow(/ENABLE_METRICS must be true or false/)
  })

  it('ENABLE_METRICS=false stops counting in that process; metrics() says so', () => {
    const script = `const L = require(${JSON.stringify(LIB)}); (async () => {
      const c = await L.SledCache.open({ path: ${JSON.stringify(tmpDir())} }); await L.acquireLock('/m/x', 'a', 's', c)
      process.stdout.write(await c.metrics()); await c.close() })()`
    const off = node(script, { ENABLE_METRICS: 'false' })
    expect(off.stdout).toBe('# opencode-file-lock metrics are off in this process (ENABLE_METRICS=false)\n')
    const on = node(script, { ENABLE_METRICS: 'true' })
    expect(on.stdout).toContain('file_lock_acquisitions_total{status="granted",agent_id="a"} 1')
  })

  it('DEBUG_MODE=true turns on the debug lines, as DEBUG_FILE_LOCK_CACHE does', () => {
    const script = `const L = require(${JSON.stringify(LIB)}); (async () => {
      const c = await L.SledCache.open({ path: ${JSON.stringify(tmpDir())} }); await L.acquireLock('/d/x', 'a', 's', c); await c.close() })()`
    expect(node(script, { DEBUG_MODE: 'true' }).stderr).toContain('[opencode-file-lock]')
    expect(node(script, { DEBUG_MODE: 'false' }).stderr).toBe('')
  })

  it('REDIS_POOL_MIN/MAX/TIMEOUT are checked, and named once in a note since one multiplexed connection has no pool', () => {
    const script = `const L = require(${JSON.stringify(LIB)}); (async () => {
      for (let i = 0; i < 3; i++) await (await L.openCache({ path: ${JSON.stringify(tmpDir())} + '/' + i })).close() })()`
    const r = node(script, { REDIS_POOL_MIN: '2', REDIS_POOL_MAX: '10', REDIS_POOL_TIMEOUT: '5000' })
    expect(r.status, r.stderr).toBe(0)
    const notes = r.stderr.split('\n').filter((l) => l.includes('REDIS_POOL'))
    expect(notes).toEqual(['[opencode-file-lock] note: REDIS_POOL_MIN, REDIS_POOL_MAX, REDIS_POOL_TIMEOUT are accepted and not used: each process keeps one multiplexed Redis connection that carries every call at once, so there is no pool to size'])
    expect(() => configFromEnv({ REDIS_POOL_MAX: 'ten' })).toThrow(/REDIS_POOL_MAX must be a non-negative whole number/)
  })

  it('ENABLE_LOCK_RENEWAL=false: a lock lives its TTL however long the tool runs; a bad value names the variable', async () => {
    const cache = await SledCache.open({ path: tmpDir(), defaultTtlMs: 5000 })
    const saved = process.env.ENABLE_LOCK_RENEWAL
    try {
      process.env.ENABLE_LOCK_RENEWAL = 'false'
      const hooks = await FileLockPlugin({ cache, agentId: 'a', ttlMs: 600 })
      await hooks['tool.execute.before']({ tool: 'write', sessionID: 's1', callID: 'c1' }, { args: { filePath: '/renew/off.txt' } })
      await sleep(1000)
      expect(await getLock('/renew/off.txt', cache)).toBeUndefined()
      process.env.ENABLE_LOCK_RENEWAL = 'maybe'
      const refusing = await FileLockPlugin({ cache })
      await expect(refusing['tool.execute.before']({ tool: 'write', sessionID: 's1', callID: 'c2' }, { args: { filePath: '/renew/x.txt' } })).rejects.toThrow(/ENABLE_LOCK_RENEWAL must be true or false/)
    } finally {
      if (saved === undefined) delete process.env.ENABLE_LOCK_RENEWAL
      else process.env.ENABLE_LOCK_RENEWAL = saved
      await cache.close()
    }
  })
})
