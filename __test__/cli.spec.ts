// The operator CLI, run as a process: every command, --json, exit codes, and the migration from a
// legacy LevelDB store (10,000 records written here with classic-level in level-cache's format).
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { ClassicLevel } from 'classic-level'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { acquireLock, getLock, RedisCache, SledCache } from '../lib/index.js'
import { useRedis } from './helpers/backends'
import { tmpDir } from './helpers/tmp'

vi.setConfig({ testTimeout: 120_000 })
const BIN = path.resolve(__dirname, '../bin/opencode-file-lock.js')
const SEP = '\u241F'

function cli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 110_000, maxBuffer: 64 << 20 })
  let json: any
  try {
    json = JSON.parse(r.stdout)
  } catch {}
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, json }
}

describe('operator CLI on a sled folder', () => {
  let folder: string
  const env = () => ({ FILE_LOCK_CACHE_BACKEND: 'sled', FILE_LOCK_PATH: folder })
  beforeAll(async () => {
    folder = tmpDir('ofl-cli-')
    const c = await SledCache.open({ path: folder, namespace: 'locks' })
    await acquireLock('/repo/a.ts', 'coder-a', 'ses_a', c)
    await acquireLock('/repo/b.ts', 'coder-b', 'ses_b', c)
    await acquireLock('/other/c.ts', 'coder-a', 'ses_a', c)
    await c.set('stale', 1, { ttlMs: 1 })
    await c.close()
  })

  it('status: backend and health, exit 0', () => {
    const r = cli(['status', '--json'], env())
    expect(r.code).toBe(0)
    expect(r.json).toMatchObject({ backend: 'sled', healthy: true, namespace: 'locks', records: expect.any(Number) })
  })

  it('list: who holds what, filtered by session, agent and path prefix', () => {
    expect(cli(['list', '--json'], env()).json.map((l: any) => l.path)).toEqual(['/other/c.ts', '/repo/a.ts', '/repo/b.ts'])
    expect(cli(['list', '--json', '--session', 'ses_a'], env()).json.map((l: any) => l.path)).toEqual(['/other/c.ts', '/repo/a.ts'])
    expect(cli(['list', '--json', '--agent', 'coder-b'], env()).json).toMatchObject([{ path: '/repo/b.ts', sessionId: 'ses_b' }])
    expect(cli(['list', '--json', '--prefix', '/repo/'], env()).json).toHaveLength(2)
    const human = cli(['list'], env())
    expect(human.stdout).toMatch(/\/repo\/a.ts\n\s+held by agent coder-a \(session ses_a\) since .* ago\), expires in/)
  })

  it('list shows a claim\u2019s reason and kind, as one line without control characters', async () => {
    const folder = tmpDir('ofl-cli-reason-')
    const c = await SledCache.open({ path: folder, namespace: 'locks' })
    await acquireLock('/repo/src/', 'build', 'ses_r', c, { reason: 'rename the\nauth \u001b[2Jmodule', kind: 'opencode', title: 'Rename' })
    await c.close()
    const r = cli(['list'], { FILE_LOCK_CACHE_BACKEND: 'sled', FILE_LOCK_PATH: folder })
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/\/repo\/src\/[^\n]*\n\s+held by agent build \(session ses_r, “Rename”\) \[opencode\].*for this reason: “rename the auth \[2Jmodule”/)
    expect(r.stdout).not.toContain('\u001b')
    expect(cli(['list', '--json'], { FILE_LOCK_CACHE_BACKEND: 'sled', FILE_LOCK_PATH: folder }).json).toMatchObject([{ path: '/repo/src/', reason: 'rename the auth [2Jmodule', kind: 'opencode' }])
  })

  it('release: refused without --force (exit 3); with it, released and recorded', async () => {
    const refused = cli(['release', '/repo/a.ts', '--json'], env())
    expect(refused.code).toBe(3)
    expect(refused.json).toMatchObject({ released: false })
    const done = cli(['release', '/repo/a.ts', '--force', '--by', 'oncall', '--json'], env())
    expect(done.code).toBe(0)
    expect(done.json).toMatchObject({ released: true, forcedBy: 'oncall', holder: { sessionId: 'ses_a' } })
    expect(done.stderr).toContain('forced release of /repo/a.ts')
    expect(cli(['release', '/repo/a.ts', '--force'], env()).code).toBe(1) // nothing left to release
    const c = await SledCache.open({ path: folder, namespace: 'locks' })
    expect(await getLock('/repo/a.ts', c)).toBeUndefined()
    const audit: any[] = []
    for await (const [, v] of c.withNamespace('audit').entries()) audit.push(v)
    expect(audit).toMatchObject([{ path: '/repo/a.ts', forcedBy: 'oncall' }])
    await c.close()
  })

  it('sweep and metrics', () => {
    expect(cli(['sweep', '--json'], env()).json).toEqual({ swept: 1 })
    const m = cli(['metrics'], env())
    expect(m.code).toBe(0)
    expect(m.stdout).toContain('# TYPE file_lock_acquisitions_total counter')
    expect(m.stdout).toContain('file_lock_active_count 2')
  })

  it('bad usage exits 2 with the help; --help shows examples', () => {
    expect(cli(['frobnicate']).code).toBe(2)
    expect(cli(['list', '--bogus']).code).toBe(2)
    expect(cli(['release']).code).toBe(2)
    expect(cli(['migrate', '--from', 'leveldb:/nowhere']).code).toBe(2)
    expect(cli(['--help']).stdout).toContain('examples:')
    expect(cli(['status'], { FILE_LOCK_CACHE_BACKEND: 'mongo' }).code).toBe(2)
  })
})

describe('migration from the legacy LevelDB store', () => {
  const redis = useRedis()
  let leveldb: string
  beforeAll(async () => {
    leveldb = tmpDir('ofl-leveldb-')
    const db = new ClassicLevel<string, string>(leveldb, { keyEncoding: 'utf8', valueEncoding: 'utf8' })
    const now = Date.now()
    const batch = []
    for (let i = 0; i < 10_000; i++) {
      const expired = i % 10 === 0 // 1,000 expired records the migration must skip
      const v = { sessionId: `ses_${i % 37}`, agentId: `agent-${i % 5}`, timestamp: now - 1000 }
      batch.push({ type: 'put' as const, key: `locks${SEP}/repo/file-${i}.ts`, value: JSON.stringify(i % 500 === 1 ? { v } : { v, x: expired ? now - 5000 : now + 600_000 }) })
    }
    await db.batch(batch)
    await db.close()
  })

  it('to sled: skips the expired, writes the rest with their TTL, verifies every key; a second run changes nothing', async () => {
    const sled = tmpDir('ofl-migrated-')
    const first = cli(['migrate', '--from', `leveldb:${leveldb}`, '--to', `sled:${sled}`, '--json'])
    expect(first.code, first.stderr).toBe(0)
    expect(first.json).toMatchObject({ read: 10_000, written: 9_000, unchanged: 0, skipped: 1_000, failed: 0, verified: 9_000, mismatched: 0, targetEntries: 9_000 })
    expect(first.stderr).toContain('read 5000') // progress on a large store
    const again = cli(['migrate', '--from', `leveldb:${leveldb}`, '--to', `sled:${sled}`, '--json'])
    expect(again.json).toMatchObject({ read: 10_000, written: 0, unchanged: 9_000, skipped: 1_000, verified: 9_000 })
    // the legacy records carry no path or expiresAt: the listing takes them from the key and envelope
    const listed = cli(['list', '--json'], { FILE_LOCK_PATH: sled })
    expect(listed.json).toHaveLength(9_000)
    for (const r of listed.json) {
      expect(r.path).toMatch(/^\/repo\/file-\d+\.ts$/)
      // 1 in 500 was written with no expiry at all (no x): that one has none to show
      if (Number(r.path.match(/\d+/)[0]) % 500 !== 1) expect(r.expiresAt).toBeGreaterThan(Date.now())
    }
    expect(listed.json.find((r: any) => r.path === '/repo/file-7.ts')).toMatchObject({ sessionId: 'ses_7' })
    const c = await SledCache.open({ path: sled, namespace: 'locks' })
    expect(await getLock('/repo/file-7.ts', c)).toMatchObject({ sessionId: 'ses_7', agentId: 'agent-2' })
    expect(await getLock('/repo/file-10.ts', c)).toBeUndefined() // expired in the source
    await c.close()
  })

  it('to Redis, then rollback from Redis to sled, each idempotent', async () => {
    const url = `redis://127.0.0.1:${redis().port}/0`
    const toRedis = cli(['migrate', '--from', `leveldb:${leveldb}`, '--to', url, '--json'])
    expect(toRedis.json).toMatchObject({ written: 9_000, skipped: 1_000, failed: 0, verified: 9_000, targetEntries: 9_000 })
    expect(cli(['migrate', '--from', `leveldb:${leveldb}`, '--to', url, '--json']).json).toMatchObject({ written: 0, unchanged: 9_000 })
    const r = await RedisCache.connect({ url, namespace: 'locks' })
    expect(await getLock('/repo/file-3.ts', r)).toMatchObject({ sessionId: 'ses_3' })
    const listed = cli(['list', '--json', '--backend', 'redis', '--redis-url', url])
    expect(listed.json.filter((l: any) => !l.path || (!(l.expiresAt > 0) && Number(l.path.match(/\d+/)[0]) % 500 !== 1))).toEqual([])
    await r.close()
    const back = tmpDir('ofl-rollback-')
    const rb = cli(['rollback', '--json'], { REDIS_URL: url, FILE_LOCK_PATH: back })
    expect(rb.code, rb.stderr).toBe(0)
    expect(rb.json).toMatchObject({ read: 9_000, written: 9_000, failed: 0, verified: 9_000 })
    expect(cli(['rollback', '--json'], { REDIS_URL: url, FILE_LOCK_PATH: back }).json).toMatchObject({ written: 0, unchanged: 9_000 })
  })
})

describe('demo command', () => {
  it('runs the demo and exits 0', () => {
    const r = cli(['demo'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toContain('two holders at once:   never')
    expect(r.stdout).toMatch(/handed over on release: [1-9]\d* times/) // the waiting agent got a file at its release
  })
})

describe('backup and restore', () => {
  const redis = useRedis()

  it('backs Redis up to a file with remaining TTLs, verified; restores it into sled, idempotently', async () => {
    const url = `redis://127.0.0.1:${redis().port}/0`
    const src = await RedisCache.connect({ url, namespace: 'locks' })
    await src.clear()
    for (let i = 0; i < 300; i++) await acquireLock(`/bk/file-${i}.ts`, 'agent-b', `ses_${i % 7}`, src, { ttlMs: 600_000 })
    await src.set('forever', { note: 'no ttl' })
    await src.set('gone', 1, { ttlMs: 1 })
    await new Promise((r) => setTimeout(r, 20))
    await src.close()
    const file = path.join(tmpDir('ofl-backup-'), 'locks.json')
    const backup = cli(['backup', '--to', file, '--json'], { FILE_LOCK_CACHE_BACKEND: 'redis', REDIS_URL: url })
    expect(backup.code, backup.stderr).toBe(0)
    expect(backup.json).toMatchObject({ read: 301, written: 301, skipped: 0, failed: 0, verified: 301, mismatched: 0, targetEntries: 301 })
    const doc = JSON.parse(require('node:fs').readFileSync(file, 'utf8'))
    expect(doc).toMatchObject({ format: 'opencode-file-lock-backup', version: 1, count: 301 })
    const lock = doc.entries.find((e: any) => e.key === `locks${SEP}/bk/file-3.ts`)
    expect(lock.value).toMatchObject({ sessionId: 'ses_3', agentId: 'agent-b' })
    expect(lock.ttlMs).toBeGreaterThan(590_000)
    expect(lock.ttlMs).toBeLessThanOrEqual(600_000)
    expect(doc.entries.find((e: any) => e.key === `locks${SEP}forever`).ttlMs).toBeUndefined()

    const sled = tmpDir('ofl-restored-')
    const restore = cli(['restore', '--from', file, '--json'], { FILE_LOCK_PATH: sled })
    expect(restore.code, restore.stderr).toBe(0)
    expect(restore.json).toMatchObject({ read: 301, written: 301, unchanged: 0, failed: 0, verified: 301 })
    expect(cli(['restore', '--from', file, '--json'], { FILE_LOCK_PATH: sled }).json).toMatchObject({ read: 301, written: 0, unchanged: 301, verified: 301 })
    const c = await SledCache.open({ path: sled, namespace: 'locks' })
    expect(await getLock('/bk/file-3.ts', c)).toMatchObject({ sessionId: 'ses_3' })
    await expect(acquireLock('/bk/file-3.ts', 'intruder', 'ses_x', c)).rejects.toMatchObject({ code: 'ELOCKED' })
    await c.close()
  })

  it('a missing or foreign backup file is refused (exit 2) and nothing is written', () => {
    const sled = tmpDir('ofl-restored-')
    const missing = cli(['restore', '--from', '/nonexistent/backup.json'], { FILE_LOCK_PATH: sled })
    expect(missing.code).toBe(2)
    expect(missing.stderr).toContain('does not exist')
    const foreign = path.join(tmpDir('ofl-backup-'), 'x.json')
    require('node:fs').writeFileSync(foreign, JSON.stringify({ hello: 'world' }))
    const bad = cli(['restore', '--from', foreign], { FILE_LOCK_PATH: sled })
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('is not an opencode-file-lock backup')
    expect(cli(['backup'], { FILE_LOCK_PATH: sled }).code).toBe(2)
    expect(cli(['list', '--json'], { FILE_LOCK_PATH: sled }).json).toEqual([])
  })
})

describe('version and large outputs', () => {
  it('--version prints the package version', () => {
    const r = cli(['--version'])
    expect(r.code).toBe(0)
    expect(r.stdout.trim()).toBe(`opencode-file-lock ${require('../package.json').version}`)
  })

  it('list --json of 5,000 locks reaches a pipe whole', async () => {
    const folder = tmpDir('ofl-cli-big-')
    const c = await SledCache.open({ path: folder, namespace: 'locks' })
    for (let i = 0; i < 5000; i++) await acquireLock(`/big/a-rather-long-folder-name/file-${i}.ts`, 'agent', `ses_${i % 3}`, c)
    await c.close()
    const r = cli(['list', '--json'], { FILE_LOCK_PATH: folder })
    expect(r.stdout.length).toBeGreaterThan(1_000_000)
    expect(r.json).toHaveLength(5000)
  })
})
