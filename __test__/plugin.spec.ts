// The plugin's hooks, called as opencode calls them (shapes from opencode 1.18.33), on sled and Redis.
import { describe, expect, it } from 'vitest'
import { FileLockPlugin } from '../plugin/file-lock.ts'
import { filesTouchedBy, patchPaths } from '../plugin/tools.ts'
import { acquireLock, getLock, listLocks, RedisCache } from '../lib/index.js'
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

  it('locks before a write and unlocks after it (seed test)', async () => {
    const { cache, hooks } = await plugin()
    await hooks['tool.execute.before'](call('write', 's1', 'c1'), { args: { filePath: '/test/file.txt' } })
    expect(await cache.get('/test/file.txt')).toMatchObject({ agentId: 'test-agent', sessionId: 's1' })
    await hooks['tool.execute.after']({ ...call('write', 's1', 'c1'), args: { filePath: '/test/file.txt' } }, { title: '', output: '', metadata: {} })
    expect(await cache.get('/test/file.txt')).toBeUndefined()
  })

  it('ignores reads (seed test)', async () => {
    const { cache, hooks } = await plugin()
    await hooks['tool.execute.before'](call('read', 's1', 'c1'), { args: { filePath: '/test/file.txt' } })
    expect(await cache.get('/test/file.txt')).toBeUndefined()
  })

  it('session.end releases everything the agent holds (seed test)', async () => {
    const { cache, hooks } = await plugin()
    await cache.set('/test/file1.txt', { sessionId: 'test-session', timestamp: Date.now(), agentId: 'test-agent' })
    await cache.set('/test/file2.txt', { sessionId: 'test-session', timestamp: Date.now(), agentId: 'test-agent' })
    await hooks['session.end']()
    expect(await cache.get('/test/file1.txt')).toBeUndefined()
    expect(await cache.get('/test/file2.txt')).toBeUndefined()
  })

  it('blocks a second session with a message the model can act on, and locks nothing for it', async () => {
    const { cache, hooks } = await plugin()
    await hooks['tool.execute.before'](call('write', 's1', 'c1'), { args: { filePath: '/test/file.txt' } })
    const err = await hooks['tool.execute.before'](call('edit', 's2', 'c2'), { args: { filePath: '/test/file.txt' } }).catch((e: Error) => e)
    expect(err).toBeInstanceOf(Error)
    expect(err.message).toMatch(/^File \/test\/file.txt is locked by another agent: agent test-agent \(session s1\) has held it since .* the lock expires in \d+s/)
    expect(err.message).toContain('Work on another file, or retry later')
    expect(err.message).toContain('the file was not changed')
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
    const { cache, hooks } = await plugin({ baseDir: '/proj' })
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
    const { cache, hooks } = await plugin({ scope: 'turn' })
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
