// opencode 2 conformance suite: NOT the opencode 2 binary (none installs here) but a harness
// written from its source (harness.ts) that loads this package as opencode 2's loader does and
// drives it as its tool runner does. On sled and on Redis: locks before every write tool (path and
// filePath, patch, custom writers), release on execute.after and, for calls that never get one, on
// session.tool.failed/success, idle, execution end and deletion; subagents share their parent's
// locks; turn scope; waiting; the agents' tools with codemode off; the holder's waiters line; the
// shell check; the stale-write check; notices as session messages; cleanup that leaves nothing.
import fs from 'node:fs'
import path from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { acquireLock, listLocks, openCache, type Cache } from '../../lib/index.js'
import { useRedis } from '../helpers/backends'
import { tmpDir } from '../helpers/tmp'
import { loadAsV2, makeLocation, v1View } from './harness'

const ROOT = path.resolve(__dirname, '../..')
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('loading, as opencode 2 and opencode 1 read the package', () => {
  it('opencode 2 finds exports["./server"] and a default {id, setup}; opencode 1 finds {id, server}; the library root is never the plugin', async () => {
    const { plugin, file } = await loadAsV2(ROOT)
    expect(path.relative(ROOT, file)).toBe(path.join('plugin', 'dist', 'server.js'))
    expect(plugin.id).toBe('opencode-file-lock')
    expect(typeof plugin.setup).toBe('function')
    expect(typeof v1View(plugin)).toBe('function')
    // the module imports nothing of @opencode/plugin at run time
    for (const f of fs.readdirSync(path.join(ROOT, 'plugin/dist')).filter((f) => f.endsWith('.js'))) {
      expect(fs.readFileSync(path.join(ROOT, 'plugin/dist', f), 'utf8'), f).not.toMatch(/from ['"]@opencode(-ai)?\/plugin/)
    }
    // the opencode 1 entry keeps working for existing installs
    const v1 = await import('../../plugin/dist/file-lock.js')
    expect(Object.keys(v1)).toEqual(['FileLockPlugin'])
  })

  it('a module with only a V1 function export is refused by the opencode 2 loader (what users of a V1-only install would hit)', async () => {
    const dir = tmpDir('ofl-v2-v1only-')
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'v1-only', type: 'module', exports: { '.': './index.js' } }))
    fs.writeFileSync(path.join(dir, 'index.js'), 'export const FileLockPlugin = async () => ({})\nexport default FileLockPlugin\n')
    await expect(loadAsV2(dir)).rejects.toThrow('Plugin must export a default definition with an id and an effect or setup function.')
  })
})

const backends = ['sled', 'redis'] as const

describe.each(backends)('opencode 2 on %s', (backend) => {
  const redis = useRedis()
  const opened: Cache[] = []
  const cleanups: (() => Promise<void>)[] = []
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c().catch(() => {})
    for (const c of opened.splice(0)) await c.close().catch(() => {})
    vi.unstubAllEnvs()
    vi.restoreAllMocks()
  })

  /** A location with the plugin set up as opencode 2 does, and the test's own view of the store. */
  async function start(options: Record<string, unknown> = {}, o: { asGiven?: boolean } = {}) {
    const dir = fs.realpathSync(tmpDir('ofl-v2-'))
    const ns = `v2-${Math.random().toString(36).slice(2)}`
    const env = backend === 'sled' ? { FILE_LOCK_CACHE_BACKEND: 'sled', FILE_LOCK_PATH: tmpDir('ofl-v2-sled-') } : { FILE_LOCK_CACHE_BACKEND: 'redis', REDIS_PORT: String(redis().port), REDIS_HOST: '127.0.0.1' }
    for (const [k, v] of Object.entries({ ...env, FILE_LOCK_NAMESPACE: ns })) vi.stubEnv(k, v)
    const store = await openCache()
    opened.push(store)
    const loc = makeLocation(dir, { options: o.asGiven ? options : { waitMs: 0, ...options } })
    const { plugin } = await loadAsV2(ROOT)
    const cleanup = await plugin.setup(loc.ctx)
    cleanups.push(() => loc.unload(cleanup))
    const file = (f: string) => path.join(dir, f)
    const write = (f: string, content: string) => (input: any) => void fs.writeFileSync(file(f), input?.content ?? content)
    const held = async () => (await listLocks(store)).map((l) => [path.relative(dir, l.path), l.sessionId])
    return { dir, loc, store, file, write, held, cleanup }
  }

  it('locks before write, edit, patch and a custom writer (path or filePath), and releases after', async () => {
    const { loc, file, held } = await start()
    const a = loc.session('ses_a')
    let during: unknown
    const r = await loc.call(a, 'write', { path: 'a.txt', content: 'a' }, { run: async () => ((during = await held()), 'Wrote a.txt') })
    expect(r.status).toBe('completed')
    expect(during).toEqual([['a.txt', a]])
    expect(await held()).toEqual([])
    fs.writeFileSync(file('e.txt'), 'one')
    expect((await loc.call(a, 'edit', { filePath: 'e.txt', oldString: 'one', newString: 'two' }, { run: async () => ((during = await held()), 'ok') })).status).toBe('completed')
    expect(during).toEqual([['e.txt', a]])
    const patch = ['*** Begin Patch', '*** Add File: p1.txt', '+x', '*** Update File: e.txt', '*** Move to: moved.txt', '*** Delete File: gone.txt', '*** End Patch'].join('\n')
    await loc.call(a, 'patch', { patchText: patch }, { run: async () => ((during = await held()), 'ok') })
    expect((during as string[][]).map((x) => x[0]).sort()).toEqual(['e.txt', 'gone.txt', 'moved.txt', 'p1.txt'])
    await loc.call(a, 'apply_patch', patch, { run: async () => ((during = await held()), 'ok') }) // the freeform alias: the input is the patch
    expect((during as string[][]).length).toBe(4)
    await loc.call(a, 'docs_write_file', { path: 'mcp.txt', content: 'm' }, { run: async () => ((during = await held()), 'ok') })
    expect(during).toEqual([['mcp.txt', a]])
    // an absolute path is the same file
    await loc.call(a, 'write', { path: file('abs.txt'), content: 'x' }, { run: async () => ((during = await held()), 'ok') })
    expect(during).toEqual([['abs.txt', a]])
    // a subagent call writes nothing itself: not locked (its child session's writes are)
    expect((await loc.call(a, 'subagent', { description: 'x', prompt: 'do it', subagent_type: 'general' }, { run: async () => ((during = await held()), 'ok') })).status).toBe('completed')
    expect(during).toEqual([])
    expect(await held()).toEqual([])
    // tools that write no file are not locked; a writer that names no file is refused
    expect((await loc.call(a, 'read', { path: 'a.txt' })).status).toBe('completed')
    const unnamed = await loc.call(a, 'update_notes', { text: 'x' })
    expect(unnamed).toMatchObject({ status: 'blocked', text: expect.stringContaining('FILE_LOCK_TOOLS="update_notes:<argument holding the path>"') })
  })

  it('a second session is refused, naming the holder and its title; with a wait it runs once the holder is done', async () => {
    const { loc, file } = await start({ waitMs: 3000 })
    const a = loc.session('ses_a', { title: 'Fix login', agent: 'build' })
    const b = loc.session('ses_b', { title: 'Other' })
    let release!: () => void
    const holding = loc.call(a, 'write', { path: 'w.txt', content: 'a' }, { run: () => new Promise<string>((r) => (release = () => (fs.writeFileSync(file('w.txt'), 'a'), r('ok')))) })
    await sleep(100)
    const waiting = loc.call(b, 'write', { path: 'w.txt', content: 'b' }, { run: () => (fs.writeFileSync(file('w.txt'), 'b'), 'ok') })
    await sleep(400)
    release()
    expect((await holding).status).toBe('completed')
    // it waited for A, then found the file A wrote and never read by B: refused as stale, naming A
    const r = await waiting
    expect(r).toMatchObject({ status: 'blocked' })
    expect(r.text).toMatch(/w\.txt exists and you have not read it \(the session “Fix login” \(agent build\) wrote it \d+s ago\)/)
    expect(fs.readFileSync(file('w.txt'), 'utf8')).toBe('a')
  })

  it('calls that never get an after-hook (blocked by another plugin, declined, aborted, crashed) release on session.tool.failed', async () => {
    const { loc, held } = await start()
    const a = loc.session('ses_a')
    const blockedByOther = await loc.call(a, 'write', { path: 'x.txt', content: 'x' }, {}, { beforeOthers: [() => { throw new Error('another plugin says no') }] })
    expect(blockedByOther.status).toBe('blocked')
    for (const outcome of ['declined', 'aborted', 'defect'] as const) {
      expect((await loc.call(a, 'write', { path: `${outcome}.txt`, content: 'x' }, { outcome })).status).toBe(outcome)
    }
    // the runner publishes session.tool.failed for each; the plugin reads the stream in the background
    const deadline = Date.now() + 3000
    while ((await held()).length && Date.now() < deadline) await sleep(20)
    expect(await held()).toEqual([])
    // a tool's own failure reaches the after-hook with status error: released at once
    expect((await loc.call(a, 'edit', { path: 'none.txt', oldString: 'q', newString: 'r' }, { run: () => { throw new Error('oldString not found') } })).status).toBe('error')
    expect(await held()).toEqual([])
  })

  it('turn scope: held until the session goes idle (session.status idle, session.idle or execution end); deletion releases the whole tree', async () => {
    const { loc, held, file } = await start({ scope: 'turn' })
    const a = loc.session('ses_a')
    for (const [i, ends] of [['session.status', { status: { type: 'idle' } }], ['session.idle', {}], ['session.execution.succeeded', {}], ['session.execution.failed', { error: 'x' }]] as const) {
      await loc.call(a, 'write', { path: `t${i}.txt`, content: 't' }, { run: () => (fs.writeFileSync(file(`t${i}.txt`), 't'), 'ok') })
      expect((await held()).map((h) => h[0])).toEqual([`t${i}.txt`])
      loc.emit(i, { sessionID: a, ...ends })
      const deadline = Date.now() + 3000
      while ((await held()).length && Date.now() < deadline) await sleep(20)
      expect(await held(), i).toEqual([])
    }
    await loc.call(a, 'write', { path: 'd.txt', content: 'd' }, { run: () => (fs.writeFileSync(file('d.txt'), 'd'), 'ok') })
    loc.emit('session.deleted', { sessionID: a })
    const deadline = Date.now() + 3000
    while ((await held()).length && Date.now() < deadline) await sleep(20)
    expect(await held()).toEqual([])
  })

  it('a subagent (parentID) shares its parent’s locks and views; another session is refused', async () => {
    const { loc, file, held } = await start({ scope: 'turn' })
    fs.writeFileSync(file('shared.txt'), 'before')
    const parent = loc.session('ses_parent', { title: 'Parent' })
    expect((await loc.call(parent, 'read', { path: 'shared.txt' })).status).toBe('completed')
    await loc.call(parent, 'write', { path: 'shared.txt', content: 'p' }, { run: () => (fs.writeFileSync(file('shared.txt'), 'p'), 'ok') })
    const child = loc.session('ses_child', { parentID: parent })
    const r = await loc.call(child, 'write', { path: 'shared.txt', content: 'c' }, { run: () => (fs.writeFileSync(file('shared.txt'), 'c'), 'ok') })
    expect(r.status).toBe('completed')
    expect(await held()).toEqual([['shared.txt', parent]])
    const other = loc.session('ses_other')
    const refused = await loc.call(other, 'write', { path: 'shared.txt', content: 'o' })
    expect(refused.status).toBe('blocked')
    expect(refused.text).toMatch(/is locked by another agent: .* It is held by the session “Parent”/)
  })

  it('file_locks and claim_files are model tools (codemode off), survive the registry replaying its transform, and claims name their reason', async () => {
    const { loc } = await start()
    expect([...loc.tools().keys()].sort()).toEqual(['claim_files', 'file_locks'])
    expect(loc.replays).toBeGreaterThanOrEqual(2)
    for (const t of loc.tools().values()) expect(t.options).toMatchObject({ codemode: false })
    const a = loc.session('ses_a', { title: 'Refactor' })
    const b = loc.session('ses_b')
    expect((await loc.call(a, 'claim_files', { paths: ['src/'], reason: 'rename the auth module' })).text).toContain('Claimed src/')
    expect((await loc.call(b, 'file_locks', {})).text).toMatch(/- src\/ \(claim: the folder and everything in it\): held by the session “Refactor” .*for this reason: “rename the auth module”/)
    const refused = await loc.call(b, 'write', { path: 'src/a.ts', content: 'x' })
    expect(refused.text).toMatch(/has claimed the folder .*src\/, which contains it, .*for this reason: “rename the auth module”/)
    // a refused claim is an answer in the tool's content, not a crash of the tool
    expect((await loc.call(b, 'claim_files', { paths: ['src/x.ts'] })).text).toMatch(/locked by another agent/)
  })

  it('the holder is told who waits for what it holds, in its next tool result', async () => {
    const { loc, file } = await start({ scope: 'turn', waitMs: 4000 })
    const a = loc.session('ses_a')
    const b = loc.session('ses_b')
    await loc.call(a, 'write', { path: 'h.txt', content: 'h' }, { run: () => (fs.writeFileSync(file('h.txt'), 'h'), 'ok') })
    const waiting = loc.call(b, 'edit', { path: 'h.txt', oldString: 'h', newString: 'b' })
    await sleep(300)
    const next = await loc.call(a, 'read', { path: 'h.txt' }, { run: () => 'h' })
    expect(next.text).toMatch(/\[opencode-file-lock\] agent .* \(session ses_b\) is waiting for h\.txt; finish with it or release it/)
    loc.emit('session.status', { sessionID: a, status: { type: 'idle' } })
    expect((await waiting).status).toBe('completed')
  })

  it('the shell check: a command that changes a file another session holds is told in its result and as a notice; its own files become its view', async () => {
    const { loc, file, store } = await start()
    fs.writeFileSync(file('theirs.txt'), 'original')
    fs.writeFileSync(file('mine.txt'), 'mine')
    await acquireLock(file('theirs.txt'), 'other-agent', 'ses_holder', store)
    const a = loc.session('ses_a')
    await loc.call(a, 'read', { path: 'mine.txt' })
    const r = await loc.call(a, 'shell', { command: 'sed -i ...' }, { run: () => (fs.writeFileSync(file('theirs.txt'), 'clobbered'), fs.writeFileSync(file('mine.txt'), 'mine, by sed'), 'done') })
    expect(r.text).toMatch(/This command changed a file that another agent holds a lock on:\n- \S*theirs\.txt \(modified\)/)
    expect(loc.synthetic).toContainEqual(expect.objectContaining({ sessionID: a, text: expect.stringContaining('A command changed a locked file') }))
    expect((await loc.call(a, 'write', { path: 'mine.txt', content: 'again' })).status).toBe('completed')
  })

  it('stale writes: A reads, B writes, A’s write is refused naming B; notices reach the session as messages', async () => {
    const { loc, file } = await start()
    fs.writeFileSync(file('app.ts'), 'v1')
    const a = loc.session('ses_a', { title: 'A' })
    const b = loc.session('ses_b', { title: 'Fix login', agent: 'build' })
    await loc.call(a, 'read', { path: 'app.ts' })
    await loc.call(b, 'read', { path: 'app.ts' })
    expect((await loc.call(b, 'write', { path: 'app.ts', content: 'b' }, { run: () => (fs.writeFileSync(file('app.ts'), 'b'), 'ok') })).status).toBe('completed')
    const r = await loc.call(a, 'write', { path: 'app.ts', content: 'a' }, { run: () => (fs.writeFileSync(file('app.ts'), 'a'), 'ok') })
    expect(r.status).toBe('blocked')
    expect(r.text).toMatch(/app\.ts changed since you read it: the session “Fix login” \(agent build\) wrote it \d+s ago\. Your change was not applied/)
    expect(fs.readFileSync(file('app.ts'), 'utf8')).toBe('b')
    expect(loc.synthetic).toContainEqual(expect.objectContaining({ sessionID: a, text: expect.stringContaining('Stale write refused') }))
  })

  it('several calls of one step at once, in one session and across sessions: each file has one holder and every refusal names its own file', async () => {
    const { loc, file } = await start()
    const a = loc.session('ses_a')
    const b = loc.session('ses_b')
    const slow = (f: string) => async () => (await sleep(150), fs.writeFileSync(file(f), 'x'), 'ok')
    const results = await Promise.all([
      loc.call(a, 'write', { path: 'one.txt', content: 'x' }, { run: slow('one.txt') }),
      loc.call(a, 'write', { path: 'two.txt', content: 'x' }, { run: slow('two.txt') }),
      loc.call(b, 'write', { path: 'one.txt', content: 'y' }, { run: slow('one.txt') }),
      loc.call(b, 'write', { path: 'two.txt', content: 'y' }, { run: slow('two.txt') }),
    ])
    const done = results.filter((r) => r.status === 'completed').length
    expect(done).toBe(2)
    const files = ['one.txt', 'two.txt', 'one.txt', 'two.txt']
    results.forEach((r, i) => {
      if (r.status !== 'blocked') return
      expect(r.text).toContain(files[i]) // its own file
      expect(r.text).not.toContain(files[i] === 'one.txt' ? 'two.txt' : 'one.txt')
    })
  })

  it('opencode 2.0.11’s #50331 (every blocked call of a batch shows the first one’s message): the message still names a file, and nothing of a blocked call is held or written', async () => {
    const { loc, file, held } = await start()
    const a = loc.session('ses_a')
    const b = loc.session('ses_b')
    for (const f of ['p.txt', 'q.txt']) await loc.call(a, 'claim_files', { paths: [f] })
    const results = await loc.batch([
      { session: b, tool: 'write', input: { path: 'p.txt', content: 'b' }, spec: { run: () => (fs.writeFileSync(file('p.txt'), 'b'), 'ok') } },
      { session: b, tool: 'write', input: { path: 'q.txt', content: 'b' }, spec: { run: () => (fs.writeFileSync(file('q.txt'), 'b'), 'ok') } },
      { session: b, tool: 'write', input: { path: 'r.txt', content: 'b' }, spec: { run: () => (fs.writeFileSync(file('r.txt'), 'b'), 'ok') } },
    ], { firstMessageBug: true })
    expect(results.map((r) => r.status)).toEqual(['blocked', 'blocked', 'completed'])
    expect(results[0].text).toBe(results[1].text)
    expect(results[0].text).toMatch(/[pq]\.txt is locked by another agent/)
    expect(fs.existsSync(file('p.txt')) || fs.existsSync(file('q.txt'))).toBe(false)
    expect((await held()).sort()).toEqual([['p.txt', a], ['q.txt', a]])
  })

  it('a call settled only on the event stream (session.tool.success, no after-hook) lets go of its lock by call id', async () => {
    const { loc, held } = await start()
    const a = loc.session('ses_a')
    let during: unknown
    const r = await loc.call(a, 'write', { path: 's.txt', content: 's' }, { noAfterHook: true, run: async () => ((during = await held()), 'ok') })
    expect(r.status).toBe('completed')
    expect(during).toEqual([['s.txt', a]])
    const deadline = Date.now() + 3000
    while ((await held()).length && Date.now() < deadline) await sleep(20)
    expect(await held()).toEqual([])
  })

  it('session.execution.interrupted ends the run, not the session: its waits stop and its holds go, but a run begun since (reason superseded) keeps what it took', async () => {
    const { loc, held, file } = await start({ scope: 'turn', waitMs: 8000 })
    const a = loc.session('ses_a')
    const b = loc.session('ses_b')
    await loc.call(b, 'write', { path: 'h.txt', content: 'b' }, { run: () => (fs.writeFileSync(file('h.txt'), 'b'), 'ok') })
    await loc.call(a, 'write', { path: 'old.txt', content: 'a' }, { run: () => (fs.writeFileSync(file('old.txt'), 'a'), 'ok') })
    const waiting = loc.call(a, 'edit', { path: 'h.txt', oldString: 'b', newString: 'a' })
    await sleep(300)
    const t = Date.now()
    loc.emit('session.execution.interrupted', { sessionID: a, reason: 'user' })
    const r = await waiting
    expect(Date.now() - t).toBeLessThan(3000)
    expect(r).toMatchObject({ status: 'blocked', text: expect.stringMatching(/stopped waiting for h\.txt after .*session interrupted \(user\)/) })
    for (let i = 0; i < 150 && (await held()).some((h) => h[0] === 'old.txt'); i++) await sleep(20)
    expect((await held()).sort()).toEqual([['h.txt', b]])
    // the session goes on: a new run takes a lock; an interrupt of the run before it (dated before) leaves it
    const before = Date.now() - 1
    await sleep(5)
    expect((await loc.call(a, 'write', { path: 'new.txt', content: 'n' }, { run: () => (fs.writeFileSync(file('new.txt'), 'n'), 'ok') })).status).toBe('completed')
    loc.emit('session.execution.interrupted', { sessionID: a, reason: 'superseded' }, before)
    await sleep(300)
    expect((await held()).sort()).toEqual([['h.txt', b], ['new.txt', a]])
    loc.emit('session.execution.interrupted', { sessionID: a, reason: 'superseded' })
    for (let i = 0; i < 150 && (await held()).length > 1; i++) await sleep(20)
    expect(await held()).toEqual([['h.txt', b]])
  })

  it('each loaded instance announces itself in the store (plugin API 2, the opencode version, pid, project), and doctor sees it loaded', async () => {
    const { dir, store } = await start()
    const mine = async () => {
      const out: any[] = []
      for await (const [, v] of store.withNamespace('instances').entries()) out.push(v)
      return out.filter((i) => i.project === dir)
    }
    for (let i = 0; i < 100 && (await mine()).length === 0; i++) await sleep(20)
    expect(await mine()).toMatchObject([{ api: 2, opencode: '2.3.0', pid: process.pid, project: dir, host: expect.any(String), since: expect.any(Number) }])
    const { doctor } = require('../../lib/doctor.js')
    const r = await doctor({ project: dir, env: process.env })
    expect(r.checks.find((c: any) => c.name === 'loaded by opencode')).toMatchObject({ ok: true, detail: expect.stringMatching(/^opencode 2\.3\.0 \(plugin API 2\), pid \d+ on .*, project /) })
  })

  it('options as opencode 2 passes them when none are configured ({}): the defaults, and writes are locked', async () => {
    const { loc, held } = await start({}, { asGiven: true })
    const a = loc.session('ses_a')
    let during: unknown
    expect((await loc.call(a, 'write', { path: 'd.txt', content: 'd' }, { run: async () => ((during = await held()), 'ok') })).status).toBe('completed')
    expect(during).toEqual([['d.txt', a]])
  })

  it('a bad option refuses every write with the reason, instead of letting opencode skip the plugin', async () => {
    vi.spyOn(console, 'error').mockImplementation(() => {})
    const { loc } = await start({ scope: 'sometimes' })
    const a = loc.session('ses_a')
    const r = await loc.call(a, 'write', { path: 'x.txt', content: 'x' })
    expect(r).toMatchObject({ status: 'blocked', text: expect.stringContaining("option scope must be 'call' or 'turn'") })
    expect((await loc.call(a, 'read', { path: 'x.txt' })).status).toBe('completed')
  })

  it('cleanup releases what it holds, takes its announcement out of the store, disposes its hooks, closes its event stream and leaves no timer', async () => {
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length
    const before = timers()
    const { loc, held, file, cleanup, store } = await start({ scope: 'turn' })
    const a = loc.session('ses_a')
    await loc.call(a, 'write', { path: 'k.txt', content: 'k' }, { run: () => (fs.writeFileSync(file('k.txt'), 'k'), 'ok') })
    expect((await held()).length).toBe(1)
    const instances = async () => {
      const out: any[] = []
      for await (const [, v] of store.withNamespace('instances').entries()) out.push(v)
      return out.filter((i) => i.pid === process.pid && i.api === 2)
    }
    for (let i = 0; i < 100 && (await instances()).length === 0; i++) await sleep(20)
    expect(await instances()).toHaveLength(1)
    await loc.unload(cleanup)
    cleanups.splice(0) // unloaded here
    expect(await held()).toEqual([])
    expect(await instances()).toEqual([]) // its announcement goes with it
    expect(loc.hooks).toMatchObject({ before: 0, after: 0, disposed: 2 })
    expect(loc.openStreams).toBe(0)
    await sleep(50)
    expect(timers()).toBeLessThanOrEqual(before)
  })
})
