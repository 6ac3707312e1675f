// The plugin's hooks, called as opencode calls them (shapes from opencode 1.18.33), on sled and Redis.
import { afterEach, describe, expect, it, vi } from 'vitest'
import { FileLockPlugin } from '../plugin/src/file-lock.ts'
import { filesTouchedBy, patchPaths } from '../plugin/src/tools.ts'
import { acquireLock, forceRelease, getLock, listLocks, RedisCache, SledCache } from '../lib/index.js'
import { cachesOn, useRedis } from './helpers/backends'
import { startRedis } from './helpers/redis-server'
import { sleep, tmpDir } from './helpers/tmp'

const PATCH = ['*** Begin Patch', '*** Add File: a.txt', '+x', '*** Update File: b.txt', '@@', '-y', '+z', '*** Update File: old.txt', '*** Move to: new.txt', '*** Delete File: gone.txt', '*** End Patch'].join('\n')

describe('which tools lock which files', () => {
  it('reads every path of an apply_patch patch', () => {
    expect(patchPaths(PATCH)).toEqual(['a.txt', 'b.txt', 'old.txt', 'new.txt', 'gone.txt'])
    expect(filesTouchedBy('apply_patch', { patchText: PATCH })).toHaveLength(5)
    expect(filesTouchedBy('patch', { patchText: PATCH })).toHaveLength(5)
  })

  it('locks write tools, ignores reads', () => {
    expect(filesTouchedBy('write', { filePath: 'x.ts', content: '' })).toEqual(['x.ts'])
    expect(filesTouchedBy('edit', { filePath: '/p/x.ts', oldString: 'a', newString: 'b' })).toEqual(['/p/x.ts'])
    expect(filesTouchedBy('multiedit', { filePath: 'm.ts', edits: [] })).toEqual(['m.ts'])
    for (const t of ['read', 'glob', 'grep', 'list', 'bash', 'webfetch', 'todowrite']) expect(filesTouchedBy(t, { filePath: 'x' })).toBeNull()
    expect(filesTouchedBy('str_replace_editor', { path: 'y.ts' })).toEqual(['y.ts'])
    expect(filesTouchedBy('fs_create_file', { file_path: 'n.ts' })).toEqual(['n.ts'])
    expect(filesTouchedBy('delete_files', { paths: ['a', { path: 'b' }] })).toEqual(['a', 'b'])
    expect(filesTouchedBy('insert_text', {})).toEqual([])
  })
})

describe.each(['sled', 'redis'] as const)('plugin hooks on %s', (backend) => {
  useRedis()
  const open = cachesOn(backend)
  const plugin = async (extra: Record<string, unknown> = {}) => {
    const cache = await open({ defaultTtlMs: 5000 })
    const hooks = await FileLockPlugin({ agentId: 'test-agent', cacheBackend: backend, cache, ...extra })
    return { cache, hooks }
  }
  const call = (tool: string, sessionID: string, callID: string) => ({ tool, sessionID, callID })
  const write = (filePath: string) => ({ args: { filePath } })

  it('locks before a write and unlocks after it (from the deployment guide)', async () => {
    const { cache, hooks } = await plugin()
    await hooks['tool.execute.before'](call('write', 's1', 'c1'), { args: { filePath: '/test/file.txt' } })
    expect(await cache.get('/test/file.txt')).toMatchObject({ agentId: 'test-agent', sessionId: 's1' })
    await hooks['tool.execute.after']({ ...call('write', 's1', 'c1'), args: { filePath: '/test/file.txt' } }, { title: '', output: '', metadata: {} })
    expect(await cache.get('/test/file.txt')).toBeUndefined()
  })

  it('ignores reads (from the deployment guide)', async () => {
    const { cache, hooks } = await plugin()
    await hooks['tool.execute.before'](call('read', 's1', 'c1'), { args: { filePath: '/test/file.txt' } })
    expect(await cache.get('/test/file.txt')).toBeUndefined()
  })

  it('session.end releases everything the agent holds (from the deployment guide)', async () => {
    const { cache, hooks } = await plugin()
    await cache.set('/test/file1.txt', { sessionId: 'test-session', timestamp: Date.now(), agentId: 'test-agent' })
    await cache.set('/test/file2.txt', { sessionId: 'test-session', timestamp: Date.now(), agentId: 'test-agent' })
    await hooks['session.end']()
    expect(await cache.get('/test/file1.txt')).toBeUndefined()
    expect(await cache.get('/test/file2.txt')).toBeUndefined()
  })

  it('blocks a second session with a message the model can act on, and locks nothing for it', async () => {
    const { cache, hooks } = await plugin({ waitMs: 0 })
    await hooks['tool.execute.before'](call('write', 's1', 'c1'), { args: { filePath: '/test/file.txt' } })
    const t0 = Date.now()
    const err = await hooks['tool.execute.before'](call('edit', 's2', 'c2'), { args: { filePath: '/test/file.txt' } }).catch((e: Error) => e)
    expect(Date.now() - t0).toBeLessThan(1000) // waitMs 0: at once
    expect(err).toBeInstanceOf(Error)
    expect(err.message).toMatch(/^File \/test\/file.txt is locked by another agent: agent test-agent \(session s1\)( \[[^\]]+\])? has held it since .* the lock expires in \d+s/)
    expect(err.message).toContain('Work on another file, or retry later')
    expect(err.message).toContain('(opencode-file-lock blocked this edit call; the file was not changed.)')
    expect(err.message).not.toContain('waited')
    expect((await listLocks(cache)).map((r) => r.sessionId)).toEqual(['s1'])
  })

  it('a failing tool (no after hook) leaves nothing locked', async () => {
    const { cache, hooks } = await plugin()
    await hooks['tool.execute.before'](call('edit', 's1', 'c9'), { args: { filePath: '/test/fail.txt', oldString: 'nope' } })
    expect(await getLock('/test/fail.txt', cache)).toBeDefined()
    await hooks.event({ event: { type: 'message.part.updated', properties: { part: { type: 'tool', tool: 'edit', callID: 'c9', state: { status: 'error', error: 'oldString not found' } } } } })
    expect(await getLock('/test/fail.txt', cache)).toBeUndefined()
  })

  it('apply_patch locks every file or none', async () => {
    const { cache, hooks } = await plugin({ baseDir: '/proj', waitMs: 0 })
    await acquireLock('/proj/b.txt', 'other', 'other-session', cache)
    await expect(hooks['tool.execute.before'](call('apply_patch', 's1', 'c1'), { args: { patchText: PATCH } })).rejects.toThrow(/none of its 5 files was changed/)
    expect((await listLocks(cache, { sessionId: 's1' })).length).toBe(0)
  })

  it('resolves relative paths against the project directory opencode passes', async () => {
    const dir = tmpDir()
    const cache = await open()
    const hooks = await FileLockPlugin({ directory: dir, worktree: dir }, { cache, agentId: 'a' })
    await hooks['tool.execute.before'](call('write', 's1', 'c1'), { args: { filePath: 'src/x.ts' } })
    expect(await getLock(`${dir}/src/x.ts`, cache)).toMatchObject({ sessionId: 's1' })
  })

  it('renews the locks of a tool that runs longer than its TTL', async () => {
    const { cache, hooks } = await plugin({ ttlMs: 600 })
    await hooks['tool.execute.before'](call('write', 's1', 'slow'), { args: { filePath: '/test/slow.txt' } })
    await sleep(1300)
    expect(await getLock('/test/slow.txt', cache)).toMatchObject({ sessionId: 's1' })
    await hooks['tool.execute.after']({ ...call('write', 's1', 'slow') }, {})
    expect(await getLock('/test/slow.txt', cache)).toBeUndefined()
  })

  it("scope 'turn' keeps a session's files until it goes idle", async () => {
    const { cache, hooks } = await plugin({ scope: 'turn', waitMs: 0 })
    await hooks['tool.execute.before'](call('write', 's1', 'c1'), { args: { filePath: '/t/a.txt' } })
    await hooks['tool.execute.after'](call('write', 's1', 'c1'), {})
    await hooks['tool.execute.before'](call('edit', 's1', 'c2'), { args: { filePath: '/t/a.txt' } })
    await hooks['tool.execute.after'](call('edit', 's1', 'c2'), {})
    await expect(hooks['tool.execute.before'](call('write', 's2', 'c3'), { args: { filePath: '/t/a.txt' } })).rejects.toThrow(/locked by another agent/)
    await hooks.event({ event: { type: 'session.idle', properties: { sessionID: 's1' } } })
    await hooks['tool.execute.before'](call('write', 's2', 'c3'), { args: { filePath: '/t/a.txt' } })
    expect(await getLock('/t/a.txt', cache)).toMatchObject({ sessionId: 's2' })
  })

  it('session.deleted, session.error and dispose release the session', async () => {
    const { cache, hooks } = await plugin({ scope: 'turn' })
    for (const [i, s] of ['s1', 's2', 's3'].entries()) {
      await hooks['tool.execute.before'](call('write', s, `c${i}`), { args: { filePath: `/d/${s}.txt` } })
    }
    await hooks.event({ event: { type: 'session.deleted', properties: { info: { id: 's1' } } } })
    await hooks.event({ event: { type: 'session.error', properties: { sessionID: 's2' } } })
    expect((await listLocks(cache)).map((r) => r.sessionId)).toEqual(['s3'])
    await hooks.dispose()
    expect(await listLocks(cache)).toEqual([])
  })

  it("a second session's write waits for the first session's file and runs as soon as that tool finishes", async () => {
    const { cache, hooks } = await plugin({ waitMs: 5000 })
    const other = await FileLockPlugin({ agentId: 'other-agent', cache, waitMs: 5000 }) // a second opencode on the same store
    await hooks['tool.execute.before'](call('write', 's1', 'c1'), write('/w/x.txt'))
    const started = Date.now()
    let doneAt = 0
    const second = other['tool.execute.before'](call('write', 's2', 'c2'), write('/w/x.txt')).then(() => (doneAt = Date.now()))
    await sleep(300)
    expect(doneAt).toBe(0) // still waiting, not refused
    expect(await getLock('/w/x.txt', cache)).toMatchObject({ sessionId: 's1' })
    const releasedAt = Date.now()
    await hooks['tool.execute.after'](call('write', 's1', 'c1'), {})
    await second
    // woken by the release itself: well before waitMs
    expect(doneAt - releasedAt).toBeLessThan(1000)
    expect(doneAt - started).toBeGreaterThanOrEqual(290)
    expect(doneAt - started).toBeLessThan(2500)
    expect(await getLock('/w/x.txt', cache)).toMatchObject({ sessionId: 's2', agentId: 'other-agent' })
    await other['tool.execute.after'](call('write', 's2', 'c2'), {})
    expect(await getLock('/w/x.txt', cache)).toBeUndefined()
    await other.dispose()
  })

  it('a write still blocked after waitMs fails with how long it waited, and locks nothing for it', async () => {
    const { cache, hooks } = await plugin({ waitMs: 200 })
    await hooks['tool.execute.before'](call('write', 's1', 'c1'), write('/w/held.txt'))
    const t0 = Date.now()
    const err = await hooks['tool.execute.before'](call('write', 's2', 'c2'), write('/w/held.txt')).catch((e: Error) => e)
    const took = Date.now() - t0
    expect(err).toBeInstanceOf(Error)
    expect(err.message).toMatch(/^File \/w\/held.txt is locked by another agent: agent test-agent \(session s1\)/)
    const [, seconds] = err.message.match(/\(opencode-file-lock waited (\d+\.\d) s for it, then blocked this write call; the file was not changed\.\)$/) ?? []
    expect(Number(seconds)).toBeGreaterThanOrEqual(0.2)
    expect(Number(seconds)).toBeLessThan(1.5)
    expect(took).toBeGreaterThanOrEqual(190)
    expect(took).toBeLessThan(1500)
    expect((await listLocks(cache)).map((r) => r.sessionId)).toEqual(['s1'])
  })

  it('a wait ends at once when its session is deleted, with an error that says so', async () => {
    const { cache, hooks } = await plugin({ waitMs: 20_000 })
    await hooks['tool.execute.before'](call('write', 's1', 'c1'), write('/w/gone.txt'))
    const t0 = Date.now()
    const waiting = hooks['tool.execute.before'](call('write', 's2', 'c2'), write('/w/gone.txt')).catch((e: Error) => e)
    await sleep(100)
    await hooks.event({ event: { type: 'session.deleted', properties: { info: { id: 's2' } } } })
    const err = await waiting
    expect(Date.now() - t0).toBeLessThan(3000)
    expect(err.message).toMatch(/^opencode-file-lock stopped waiting for \/w\/gone.txt after 0\.\d s \(session deleted\)\. The write call was not run and the file was not changed\.$/)
    expect((await listLocks(cache)).map((r) => r.sessionId)).toEqual(['s1'])
  })

  describe('lost locks', () => {
    const saved = process.env.DEBUG_FILE_LOCK_CACHE
    afterEach(() => {
      vi.restoreAllMocks()
      if (saved === undefined) delete process.env.DEBUG_FILE_LOCK_CACHE
      else process.env.DEBUG_FILE_LOCK_CACHE = saved
    })
    /** console.error lines naming `path`, waiting up to 3 s for the first. */
    const errorLines = async (spy: { mock: { calls: unknown[][] } }, path: string, wait = true) => {
      const lines = () => spy.mock.calls.map((a) => a.join(' ')).filter((l) => l.includes(path))
      for (let i = 0; wait && i < 60 && lines().length === 0; i++) await sleep(50)
      return lines()
    }

    it('a lock forced free while its tool runs is logged (debug off too) and neither renewed nor released as if held', async () => {
      delete process.env.DEBUG_FILE_LOCK_CACHE
      const errors = vi.spyOn(console, 'error').mockImplementation(() => {})
      const { cache, hooks } = await plugin({ ttlMs: 600, waitMs: 0 })
      await hooks['tool.execute.before'](call('write', 's1', 'c1'), write('/l/x.txt'))
      expect(await forceRelease('/l/x.txt', cache)).toMatchObject({ sessionId: 's1' })
      const [line] = await errorLines(errors, '/l/x.txt')
      expect(line).toMatch(/^\[opencode-file-lock\] lost the lock on \/l\/x.txt \(session s1, reason: released\); no longer renewing it$/)
      // The same session takes the file again elsewhere: the plugin must leave that hold alone.
      await acquireLock('/l/x.txt', 'elsewhere', 's1', cache, { ttlMs: 3000 })
      const { expiresAt } = (await getLock('/l/x.txt', cache))!
      await sleep(800) // more than two renewal periods (ttl 600 / 3, at least 250 ms)
      expect((await getLock('/l/x.txt', cache))?.expiresAt).toBe(expiresAt)
      await hooks['tool.execute.after'](call('write', 's1', 'c1'), {})
      expect(await getLock('/l/x.txt', cache)).toMatchObject({ agentId: 'elsewhere', sessionId: 's1', expiresAt })
      expect(await errorLines(errors, '/l/x.txt', false)).toHaveLength(1)
    })

    it('a lock that renewal finds gone (ELOST) is logged once and dropped, with no unhandled rejection', async () => {
      delete process.env.DEBUG_FILE_LOCK_CACHE
      const errors = vi.spyOn(console, 'error').mockImplementation(() => {})
      const unhandled: unknown[] = []
      const onUnhandled = (e: unknown) => unhandled.push(e)
      process.on('unhandledRejection', onUnhandled)
      try {
        const cache = await open({ defaultTtlMs: 5000 })
        // a view of the store that never reports losses: only the renewal can find out
        const deaf = Object.assign(Object.create(cache), { onLost: () => () => {} })
        const hooks = await FileLockPlugin({ agentId: 'a', cache: deaf, ttlMs: 600, waitMs: 0 })
        await hooks['tool.execute.before'](call('write', 's1', 'c1'), write('/r/x.txt'))
        expect(await cache.del('/r/x.txt')).toBe(true)
        const [line] = await errorLines(errors, '/r/x.txt')
        expect(line).toMatch(/^\[opencode-file-lock\] lost the lock on \/r\/x.txt \(session s1, reason: not renewable, expired or released\); no longer renewing it$/)
        await sleep(800)
        expect(await errorLines(errors, '/r/x.txt', false)).toHaveLength(1)
        expect(unhandled).toEqual([])
        await hooks.dispose()
      } finally {
        process.off('unhandledRejection', onUnhandled)
      }
    })
  })
})

describe('plugin configuration', () => {
  const saved = process.env.FILE_LOCK_WAIT_MS
  afterEach(() => {
    if (saved === undefined) delete process.env.FILE_LOCK_WAIT_MS
    else process.env.FILE_LOCK_WAIT_MS = saved
  })

  it('a bad FILE_LOCK_WAIT_MS or waitMs does not let writes through: the plugin loads and refuses them, naming the setting', async () => {
    const refuses = async (hooks: any, re: RegExp) => {
      const e = await hooks['tool.execute.before']({ tool: 'write', sessionID: 's', callID: 'c' }, { args: { filePath: '/x' } }).catch((e: Error) => e)
      expect(e).toBeInstanceOf(Error)
      expect(e.message).toMatch(/^opencode-file-lock refused this write call because it cannot lock files: /)
      expect(e.message).toMatch(re)
      // reads still run
      await hooks['tool.execute.before']({ tool: 'read', sessionID: 's', callID: 'c' }, { args: { filePath: '/x' } })
    }
    for (const bad of ['abc', '-1', '2.5', '5s', '86400001']) {
      process.env.FILE_LOCK_WAIT_MS = bad
      await refuses(await FileLockPlugin({ agentId: 'a' }), new RegExp(`FILE_LOCK_WAIT_MS must be a whole number of milliseconds from 0 to 86400000, got "${bad.replace('.', '\\.')}"`))
    }
    delete process.env.FILE_LOCK_WAIT_MS
    await refuses(await FileLockPlugin({ agentId: 'a', waitMs: -5 }), /option waitMs must be a whole number of milliseconds .* got -5/)
    await refuses(await FileLockPlugin({ agentId: 'a', waitMs: '100' as never }), /option waitMs must be .* got "100"/)
    await refuses(await FileLockPlugin({}, { scope: 'forever' } as never), /option scope must be 'call' or 'turn'/)
    await refuses(await FileLockPlugin({}, { waitMS: 5 } as never), /unknown option "waitMS"/)
    process.env.FILE_LOCK_SCOPE = 'session'
    await refuses(await FileLockPlugin({}), /FILE_LOCK_SCOPE must be 'call' or 'turn', got "session"/)
    delete process.env.FILE_LOCK_SCOPE
    process.env.FILE_LOCK_TOOLS = 'good,bad tool'
    await refuses(await FileLockPlugin({}), /FILE_LOCK_TOOLS entry "bad tool" is not a tool name/)
    delete process.env.FILE_LOCK_TOOLS
  })

  it('FILE_LOCK_WAIT_MS sets the wait; 0 blocks at once without claiming a wait', async () => {
    const cache = await SledCache.open({ path: tmpDir('ofl-sled-'), defaultTtlMs: 5000 })
    try {
      process.env.FILE_LOCK_WAIT_MS = '0'
      const now = await FileLockPlugin({ agentId: 'a', cache })
      await now['tool.execute.before']({ tool: 'write', sessionID: 's1', callID: 'c1' }, { args: { filePath: '/e/x' } })
      let t0 = Date.now()
      const refused = await now['tool.execute.before']({ tool: 'write', sessionID: 's2', callID: 'c2' }, { args: { filePath: '/e/x' } }).catch((e: Error) => e)
      expect(Date.now() - t0).toBeLessThan(150)
      expect(refused.message).toContain('(opencode-file-lock blocked this write call; the file was not changed.)')
      expect(refused.message).not.toMatch(/waited/)
      process.env.FILE_LOCK_WAIT_MS = '400'
      const waits = await FileLockPlugin({ agentId: 'b', cache })
      t0 = Date.now()
      const late = await waits['tool.execute.before']({ tool: 'write', sessionID: 's3', callID: 'c3' }, { args: { filePath: '/e/x' } }).catch((e: Error) => e)
      expect(Date.now() - t0).toBeGreaterThanOrEqual(390)
      expect(late.message).toMatch(/opencode-file-lock waited 0\.[45] s for it, then blocked this write call/)
      await now.dispose()
      await waits.dispose()
    } finally {
      await cache.close()
    }
  })
})

describe('plugin with the store down', () => {
  it('blocks the write with a clear tool error and keeps going when the store is back', async () => {
    const server = await startRedis()
    const cache = await RedisCache.connect({ port: server.port, commandTimeoutMs: 300, maxRetries: 1, baseDelayMs: 20 })
    const hooks = await FileLockPlugin({ agentId: 'a', cache })
    await server.kill()
    const err = await hooks['tool.execute.before']({ tool: 'write', sessionID: 's', callID: 'c' }, { args: { filePath: '/down/x' } }).catch((e: Error) => e)
    expect(err.message).toMatch(/lock store is unavailable \(EBACKEND/)
    expect(err.message).toContain('the file was not changed')
    await server.restart()
    let ok = false
    for (let i = 0; i < 40 && !ok; i++) {
      ok = await hooks['tool.execute.before']({ tool: 'write', sessionID: 's', callID: `c${i}` }, { args: { filePath: '/down/x' } }).then(() => true, () => false)
      if (!ok) await sleep(100)
    }
    expect(ok).toBe(true)
    await hooks.dispose()
    await cache.close()
    await server.stop()
  })
})
