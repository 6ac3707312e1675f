// No lost updates, below opencode: the versions and views on every store (sled, its shared store
// seen from another process, Redis, the hybrid, a Redis Cluster), and the plugin's hooks called as
// opencode calls them: refuse, warn and off, bash's own changes, reads, file_locks and reasons.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { FileLockPlugin } from '../plugin/src/file-lock.ts'
import { readsOf, writesOf } from '../plugin/src/tools.ts'
import { acquireLock, checkFresh, fileMark, lastWrites, recordView, recordWrites, SledCache, treeViews, type Cache } from '../lib/index.js'
import { CONTRACT_BACKENDS, cachesOn, useCluster, useRedis } from './helpers/backends'
import { startLockProcess } from './helpers/lock-process'
import { sleep, tmpDir } from './helpers/tmp'

const writer = (sessionId: string, extra: Record<string, string> = {}) => ({ sessionId, agentId: `agent-${sessionId}`, kind: 'opencode', ...extra })

describe.each(CONTRACT_BACKENDS)('versions and views on %s', (backend) => {
  useRedis()
  useCluster(backend === 'cluster')
  const open = cachesOn(backend)

  it('a write from an old view is stale and names its writer; reading again makes it fresh; a tree’s views are its own', async () => {
    const cache = await open()
    const f = path.join(tmpDir('ofl-views-'), 'app.ts')
    fs.writeFileSync(f, 'v1\n')
    expect(await recordView(f, 'A', cache, { unchangedSince: fileMark(f)! })).toBe(true)
    expect(await checkFresh([f], 'A', cache, { whole: true })).toMatchObject([{ path: f, ok: true, status: 'fresh' }])
    expect(await checkFresh([f], 'B', cache, { whole: true })).toMatchObject([{ ok: false, status: 'unread' }])
    expect(await checkFresh([f], 'B', cache, { whole: false })).toMatchObject([{ ok: true, status: 'unread' }])
    fs.writeFileSync(f, 'v2, from B\n')
    const [v] = await recordWrites([f], writer('B', { title: 'Fix login', agentName: 'build' }), cache)
    expect(v).toMatchObject({ sessionId: 'B', tree: 'B', title: 'Fix login', agentName: 'build', size: 11 })
    expect(await lastWrites([f], cache)).toEqual([v])
    const [stale] = await checkFresh([f], 'A', cache, { whole: false })
    expect(stale).toMatchObject({ ok: false, status: 'stale', byLastWrite: true, lastWrite: { sessionId: 'B', title: 'Fix login' } })
    expect(await checkFresh([f], 'B', cache, { whole: true })).toMatchObject([{ ok: true, status: 'fresh' }])
    fs.writeFileSync(f, 'v3, by hand\n')
    expect(await checkFresh([f], 'B', cache, { whole: true })).toMatchObject([{ ok: false, status: 'stale', byLastWrite: false }])
    await recordView(f, 'A', cache)
    expect(await checkFresh([f], 'A', cache)).toMatchObject([{ ok: true, status: 'fresh' }])
    expect((await treeViews('A', cache)).map((v) => [v.path, v.fresh])).toEqual([[f, true]])
    expect((await treeViews('B', cache)).map((v) => [v.path, v.fresh])).toEqual([[f, false]])
    expect(await treeViews('C', cache)).toEqual([])
  })

  it('a new file is fine for anyone; a deleted one drops its version and views; versions expire at their TTL', async () => {
    const cache = await open()
    const dir = tmpDir('ofl-views-')
    const f = path.join(dir, 'gone.txt')
    expect(await checkFresh([f, `${dir}/`], 'A', cache, { whole: true })).toMatchObject([{ path: f, ok: true, status: 'new' }]) // a folder claim is skipped
    fs.writeFileSync(f, 'x')
    await recordWrites([f], writer('A'), cache)
    fs.rmSync(f)
    expect(await recordWrites([f], writer('A'), cache)).toEqual([null])
    expect(await lastWrites([f], cache)).toEqual([null])
    expect(await treeViews('A', cache)).toEqual([])
    fs.writeFileSync(f, 'y')
    await recordWrites([f], writer('A'), cache, { ttlMs: 300 })
    expect((await lastWrites([f], cache))[0]).not.toBeNull()
    await sleep(500)
    expect(await lastWrites([f], cache)).toEqual([null])
    expect(await checkFresh([f], 'A', cache, { whole: true })).toMatchObject([{ ok: false, status: 'unread' }])
  })

  it('bad input is EINVAL', async () => {
    const cache = await open()
    await expect(checkFresh([], 'A', cache)).rejects.toMatchObject({ code: 'EINVAL' })
    await expect(checkFresh(['/x'], '', cache)).rejects.toMatchObject({ code: 'EINVAL' })
    await expect(checkFresh(['/x'], 'A', cache, { whole: 'yes' } as never)).rejects.toMatchObject({ code: 'EINVAL' })
    await expect(checkFresh(['/x'], 'A', cache, { wholeFile: true } as never)).rejects.toMatchObject({ code: 'EINVAL', message: expect.stringContaining('"wholeFile"') })
    await expect(recordWrites(['/x'], { sessionId: 'A' } as never, cache)).rejects.toMatchObject({ code: 'EINVAL' })
    await expect(recordView('rel.txt', 'A', cache, { baseDir: 'not/absolute' })).rejects.toMatchObject({ code: 'EINVAL' })
    await expect(recordView('/x', 'A', cache, { ttlMs: -1 })).rejects.toMatchObject({ code: 'EINVAL' })
    expect(fileMark('/no/such/file')).toBeNull()
  })
})

describe('versions and views on a Redis Cluster, beside their locks', () => {
  const cluster = useCluster()
  const open = cachesOn('cluster')

  it('a file’s version and views live in the hash slot of its lock key (and on its primary)', async () => {
    const cache = await open()
    const files = Array.from({ length: 5 }, (_, i) => path.join(tmpDir('ofl-views-slot-'), `f${i}.ts`))
    for (const f of files) fs.writeFileSync(f, 'x\n')
    await recordWrites(files, writer('S'), cache)
    await recordView(files[0], 'T', cache)
    const cli = (port: number, ...a: string[]) => execFileSync('redis-cli', ['-p', String(port), ...a], { encoding: 'utf8' }).trim()
    const keys = cluster().primaries().flatMap((p) => cli(p.port, '--scan', '--pattern', `${cache.namespace}/v*`).split('\n').filter(Boolean).map((k) => ({ k, port: p.port })))
    expect(keys.length).toBe(2 * files.length + 1) // each file's version, S's views of them, T's view of f0
    const port = cluster().nodes[0].port
    for (const { k, port: on } of keys) {
      const file = files.find((f) => k.endsWith(f))!
      expect(file, k).toBeDefined()
      const lockSlot = cli(port, 'CLUSTER', 'KEYSLOT', `${cache.namespace}\u241F${file}`)
      expect(cli(port, 'CLUSTER', 'KEYSLOT', k), k).toBe(lockSlot)
      expect(cluster().primaryOf(Number(lockSlot)).port).toBe(on)
    }
    // and read back through the API by path
    expect((await lastWrites(files, cache)).map((v) => v?.sessionId)).toEqual(files.map(() => 'S'))
    expect((await treeViews('T', cache)).map((v) => v.path)).toEqual([files[0]])
  })

})

describe('views are shared by the processes of one sled folder', () => {
  it('a tree’s view recorded in one process (the client) is what another (the server) checks against', async () => {
    const folder = tmpDir('ofl-views-shared-')
    const cache = await SledCache.open({ path: folder, namespace: 'locks' })
    const other = await startLockProcess({ path: folder, namespace: 'locks' })
    try {
      const f = path.join(tmpDir('ofl-views-'), 'f.txt')
      fs.writeFileSync(f, 'one\n')
      expect(await other.call('recordView', f, 'A')).toBe(true)
      expect(await checkFresh([f], 'A', cache, { whole: true })).toMatchObject([{ ok: true, status: 'fresh' }])
      fs.writeFileSync(f, 'two\n')
      await recordWrites([f], writer('B', { title: 'Other' }), cache)
      expect(await other.call('checkFresh', [f], 'A', { whole: true })).toMatchObject([{ ok: false, status: 'stale', lastWrite: { title: 'Other' } }])
    } finally {
      await other.kill()
      await cache.close()
    }
  })
})

describe('which calls write whole files and which read them', () => {
  it('write and whole-file writers replace; edit, patches’ updates and deletes do not; patches’ adds and moves do', () => {
    expect(writesOf('write', { filePath: 'a' })).toEqual([{ path: 'a', whole: true }])
    expect(writesOf('edit', { filePath: 'a' })).toEqual([{ path: 'a', whole: false }])
    expect(writesOf('fs_write_file', { path: 'a' })).toEqual([{ path: 'a', whole: true }])
    expect(writesOf('fs_edit_file', { path: 'a' })).toEqual([{ path: 'a', whole: false }])
    const patch = ['*** Begin Patch', '*** Add File: n', '+x', '*** Update File: u', '*** Move to: m', '*** Delete File: d', '*** End Patch'].join('\n')
    expect(writesOf('apply_patch', { patchText: patch })).toEqual([
      { path: 'n', whole: true },
      { path: 'u', whole: false },
      { path: 'm', whole: true },
      { path: 'd', whole: false },
    ])
  })

  it('read and MCP reads of whole files are reads; head/tail reads and other tools are not', () => {
    expect(readsOf('read', { filePath: 'a', offset: 10 })).toEqual(['a'])
    expect(readsOf('fs_read_file', { path: 'a' })).toEqual(['a'])
    expect(readsOf('fs_read_text_file', { path: 'a', head: 5 })).toBeNull()
    expect(readsOf('fs_read_multiple_files', { paths: ['a', 'b'] })).toEqual(['a', 'b'])
    expect(readsOf('grep', { path: 'a' })).toBeNull()
    expect(readsOf('write', { filePath: 'a' })).toBeNull()
  })
})

describe.each(['sled', 'redis'] as const)('the plugin’s stale-write check on %s', (backend) => {
  useRedis()
  const open = cachesOn(backend)
  afterEach(() => vi.restoreAllMocks())
  const call = (tool: string, sessionID: string, callID: string) => ({ tool, sessionID, callID })
  const out = (text = '') => ({ title: '', output: text, metadata: {} })
  const client = (sessions: Record<string, { title?: string; agent?: string; parentID?: string }>) => ({
    session: { get: async ({ path: { id } }: { path: { id: string } }) => ({ data: sessions[id] ?? {} }) },
    tui: { showToast: async (o: any) => void toasts.push(o.body) },
  })
  let toasts: { title: string; message: string }[] = []
  const setup = async (extra: Record<string, unknown> = {}) => {
    toasts = []
    const cache = await open({ defaultTtlMs: 5000 })
    const dir = tmpDir('ofl-stale-plugin-')
    const hooks = await FileLockPlugin({ agentId: 'test-agent', cache, baseDir: dir, waitMs: 0, client: client({ A: { title: 'Session A', agent: 'build' }, B: { title: 'Fix login', agent: 'build' } }), ...extra } as never)
    const read = async (session: string, file: string, id = `r-${Math.random()}`) => {
      await hooks['tool.execute.before'](call('read', session, id), { args: { filePath: file } })
      await hooks['tool.execute.after'](call('read', session, id), out('...'))
    }
    const write = async (session: string, file: string, content: string, tool = 'write', id = `w-${Math.random()}`) => {
      await hooks['tool.execute.before'](call(tool, session, id), { args: { filePath: file, content } })
      fs.writeFileSync(path.join(dir, file), content)
      const o = out('Wrote file successfully.')
      await hooks['tool.execute.after'](call(tool, session, id), o)
      return o.output
    }
    return { cache, dir, hooks, read, write }
  }

  it('refuse (default): the message names the writer, says the change was not applied and what to do; the lock is given back', async () => {
    const { cache, dir, read, write } = await setup()
    fs.writeFileSync(path.join(dir, 'app.ts'), 'v1\n')
    await read('A', 'app.ts')
    await read('B', 'app.ts')
    await write('B', 'app.ts', 'from B\n')
    const e = await write('A', 'app.ts', 'from A\n').catch((x) => x)
    expect(e.message).toMatch(/^opencode-file-lock refused this write call: app\.ts changed since you read it: the session “Fix login” \(agent build\) wrote it \d+s ago\. Your change was not applied \(the file was not changed\)\. Read app\.ts again and redo your change on what it holds now\.$/)
    expect(fs.readFileSync(path.join(dir, 'app.ts'), 'utf8')).toBe('from B\n')
    expect(await acquireLock(path.join(dir, 'app.ts'), 'x', 'C', cache)).toBe(path.join(fs.realpathSync(dir), 'app.ts')) // nothing left held
    expect(toasts).toContainEqual(expect.objectContaining({ title: 'Stale write refused', message: expect.stringContaining('the session “Fix login”') }))
  })

  it('warn: the write goes ahead, and the model and a toast are told what it overwrote', async () => {
    const { dir, read, write } = await setup({ stale: 'warn' })
    fs.writeFileSync(path.join(dir, 'app.ts'), 'v1\n')
    await read('A', 'app.ts')
    fs.writeFileSync(path.join(dir, 'app.ts'), 'by hand\n')
    const output = await write('A', 'app.ts', 'from A\n')
    expect(output).toContain('[opencode-file-lock] Warning: this write went ahead over changes you had not seen. app.ts changed since you read it: it was changed on disk outside any agent at')
    expect(fs.readFileSync(path.join(dir, 'app.ts'), 'utf8')).toBe('from A\n')
    expect(toasts).toContainEqual(expect.objectContaining({ title: 'Stale write' }))
    // and its own write is its view now
    expect(await write('A', 'app.ts', 'again\n')).toBe('Wrote file successfully.')
  })

  it('a bad FILE_LOCK_STALE refuses every write, naming the variable', async () => {
    vi.spyOn(console, 'error').mockImplementation(() => {})
    vi.stubEnv('FILE_LOCK_STALE', 'sometimes')
    try {
      const { write } = await setup()
      await expect(write('A', 'x.txt', 'x')).rejects.toThrow(/FILE_LOCK_STALE must be 'refuse', 'warn' or 'off', got "sometimes"/)
    } finally {
      vi.unstubAllEnvs()
    }
  })

  it('the session’s own bash changes to files it has seen are its view; another session’s are not', async () => {
    const { dir, hooks, read, write } = await setup()
    fs.writeFileSync(path.join(dir, 'gen.txt'), 'v1\n')
    await read('A', 'gen.txt')
    await read('B', 'gen.txt')
    await hooks['tool.execute.before'](call('bash', 'A', 'b1'), { args: { command: 'sed -i s/v1/v2/ gen.txt' } })
    fs.writeFileSync(path.join(dir, 'gen.txt'), 'v2\n') // what the command did
    await hooks['tool.execute.after'](call('bash', 'A', 'b1'), out('done'))
    expect(await write('A', 'gen.txt', 'v3 from A\n')).toBe('Wrote file successfully.')
    await expect(write('B', 'gen.txt', 'from B\n')).rejects.toThrow(/gen\.txt changed since you read it: the session “Session A” \(agent build\) wrote it/)
  })

  it('a read during which the file changes is not taken as seen', async () => {
    const { dir, hooks, write } = await setup()
    fs.writeFileSync(path.join(dir, 'f.txt'), 'one\n')
    await hooks['tool.execute.before'](call('read', 'A', 'r1'), { args: { filePath: 'f.txt' } })
    fs.writeFileSync(path.join(dir, 'f.txt'), 'two, meanwhile\n')
    await hooks['tool.execute.after'](call('read', 'A', 'r1'), out('one'))
    await expect(write('A', 'f.txt', 'from A\n')).rejects.toThrow(/f\.txt changed while you read it, so what you saw may not be what it holds\. .*Read f\.txt again/)
    // an edit too: what the model saw is not known
    await expect(write('A', 'f.txt', 'from A\n', 'edit')).rejects.toThrow(/changed while you read it/)
  })

  it('file_locks shows each file’s last writer and whether the caller’s view is current; claim_files’ reason reaches the refusal', async () => {
    const { dir, hooks, read, write } = await setup()
    fs.mkdirSync(path.join(dir, 'src'))
    fs.writeFileSync(path.join(dir, 'src/a.ts'), 'a\n')
    await read('A', 'src/a.ts')
    await write('B', 'src/b.ts', 'b\n')
    await read('B', 'src/a.ts')
    await write('B', 'src/a.ts', 'a from B\n')
    const claimed = await hooks.tool.claim_files.execute({ paths: ['src/'], reason: 'rename the\nauth module' }, { sessionID: 'B' })
    expect(claimed).toContain('Claimed src/')
    const listing = await hooks.tool.file_locks.execute({}, { sessionID: 'A' })
    expect(listing).toMatch(/- src\/ \(claim: the folder and everything in it\): held by the session “Fix login” \(agent build\) for \d+s, for this reason: “rename the auth module”/)
    expect(listing).toContain('Recently written files')
    expect(listing).toMatch(/- src\/a\.ts: last written by the session “Fix login” \(agent build\) \d+s ago; changed since you read it: read it again before writing it/)
    expect(listing).toMatch(/- src\/b\.ts: last written by the session “Fix login” \(agent build\) \d+s ago; you have not read it/)
    const e = await write('A', 'src/a.ts', 'x').catch((x) => x)
    expect(e.message).toMatch(/has claimed the folder \S+src\/, which contains it, since .*, for this reason: “rename the auth module”/)
    expect(e.message).toContain('It is claimed by the session “Fix login” (agent build) to rename the auth module.')
    // a reason of any length is kept as one line of at most 200 characters, not refused
    const long = `to ${'x'.repeat(1000)}\u001b[2J`
    expect(await hooks.tool.claim_files.execute({ paths: ['docs/'], reason: long }, { sessionID: 'B' })).toContain('Claimed docs/')
    const shown = await hooks.tool.file_locks.execute({}, { sessionID: 'A' })
    const kept = /docs\/ \(claim[^\n]*for this reason: “(to x+…)”/.exec(shown)
    expect([...kept![1]].length).toBe(200)
    const e2 = await write('A', 'docs/n.md', 'x').catch((x) => x)
    expect(e2.message).toMatch(/It is claimed by the session “Fix login” \(agent build\) to x{100,}…\./)
    expect(e2.message).not.toContain('\u001b')
  })

  it('edits and patch updates of a never-read file go ahead; a whole-file MCP write of one is refused; a patch that deletes or moves a stale file writes none of its files', async () => {
    const { dir, hooks, read, write } = await setup()
    for (const f of ['e.txt', 'm.txt', 'p.txt', 'q.txt']) fs.writeFileSync(path.join(dir, f), `${f} v1\n`)
    expect(await write('A', 'e.txt', 'e edited\n', 'edit')).toBe('Wrote file successfully.')
    const mcp = async (session: string, file: string, id = `m-${Math.random()}`) => {
      await hooks['tool.execute.before'](call('fs_write_file', session, id), { args: { path: file, content: 'x' } })
      await hooks['tool.execute.after'](call('fs_write_file', session, id), out('ok'))
    }
    await expect(mcp('A', 'm.txt')).rejects.toThrow(/refused this fs_write_file call: m\.txt exists and you have not read it: writing it whole would replace what is in it\. Your change was not applied \(the file was not changed\)\. Read m\.txt first/)
    await read('A', 'm.txt')
    await mcp('A', 'm.txt')
    // a patch: A read p and q; B changes q; a patch deleting q and moving p is refused whole
    await read('A', 'p.txt')
    await read('A', 'q.txt')
    await read('B', 'q.txt')
    await write('B', 'q.txt', 'q from B\n')
    const patch = ['*** Begin Patch', '*** Update File: p.txt', '*** Move to: p2.txt', '@@', '-p.txt v1', '+p moved', '*** Delete File: q.txt', '*** End Patch'].join('\n')
    const e = await hooks['tool.execute.before'](call('apply_patch', 'A', 'ap1'), { args: { patchText: patch } }).catch((x: any) => x)
    expect(e.message).toMatch(/^opencode-file-lock refused this apply_patch call: q\.txt changed since you read it: the session “Fix login” \(agent build\) wrote it \d+s ago\. Your change was not applied \(none of its 3 files was changed\)\./)
    // nothing of the patch is held afterwards: B may write all three
    await read('B', 'p.txt')
    expect(await write('B', 'p.txt', 'p from B\n')).toBe('Wrote file successfully.')
    expect(await write('B', 'p2.txt', 'new\n')).toBe('Wrote file successfully.')
  })

  it('another session’s write during this session’s bash command is not taken as the command’s own change', async () => {
    const { dir, hooks, read, write } = await setup()
    fs.writeFileSync(path.join(dir, 'shared.txt'), 'v1\n')
    await read('A', 'shared.txt')
    await read('B', 'shared.txt')
    await hooks['tool.execute.before'](call('bash', 'A', 'b-long'), { args: { command: 'sleep 10' } })
    await write('B', 'shared.txt', 'B was here\n') // while A's command runs
    await hooks['tool.execute.after'](call('bash', 'A', 'b-long'), out('done'))
    await expect(write('A', 'shared.txt', 'A overwrites\n')).rejects.toThrow(/shared\.txt changed since you read it: the session “Fix login” \(agent build\) wrote it/)
    expect(fs.readFileSync(path.join(dir, 'shared.txt'), 'utf8')).toBe('B was here\n')
    // a file another session holds, changed by hand while the command ran: not the command's either
    fs.writeFileSync(path.join(dir, 'held.txt'), 'h1\n')
    await read('A', 'held.txt')
    await hooks.tool.claim_files.execute({ paths: ['held.txt'] }, { sessionID: 'B' })
    await hooks['tool.execute.before'](call('bash', 'A', 'b-2'), { args: { command: 'true' } })
    fs.writeFileSync(path.join(dir, 'held.txt'), 'h2 by B\n')
    await hooks['tool.execute.after'](call('bash', 'A', 'b-2'), out('done'))
    await hooks.tool.claim_files.execute({ paths: ['held.txt'], release: true }, { sessionID: 'B' })
    await expect(write('A', 'held.txt', 'A\n')).rejects.toThrow(/held\.txt changed since you read it/)
  })

  it('FILE_LOCK_VERSION_TTL_MS sets how long versions and views are kept', async () => {
    vi.stubEnv('FILE_LOCK_VERSION_TTL_MS', '1000')
    try {
      const { cache, dir, read, write } = await setup()
      fs.writeFileSync(path.join(dir, 'ttl.txt'), 'v1\n')
      await read('A', 'ttl.txt')
      await write('A', 'ttl.txt', 'v2\n')
      const f = path.join(fs.realpathSync(dir), 'ttl.txt')
      expect((await lastWrites([f], cache))[0]).toMatchObject({ sessionId: 'A' })
      await sleep(1300)
      expect(await lastWrites([f], cache)).toEqual([null])
      expect(await treeViews('A', cache)).toEqual([])
      await expect(write('A', 'ttl.txt', 'v3\n')).rejects.toThrow(/ttl\.txt exists and you have not read it/)
    } finally {
      vi.unstubAllEnvs()
    }
  })
})
