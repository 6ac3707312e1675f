// End to end in the real opencode 1.18.33: no lost updates. A write made from a stale view of a
// file (someone else changed it since the session read it) is refused, naming who changed it, on
// sled and on Redis; the session's own writes, its formatter and its subagents never count against
// it; a waiter learns what its holder changed; FILE_LOCK_STALE=off is the lock-only behaviour.
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { startRedis, type RedisServer } from '../helpers/redis-server'
import { tmpDir } from '../helpers/tmp'
import { call, makeProject, readFile, run, script, serve, sessionOf, startHarness, toolResults, waitForGate, type Harness } from './opencode'

vi.setConfig({ testTimeout: 120_000, hookTimeout: 180_000 })

const write = (file: string, content: string) => call('write', { filePath: file, content })
const edit = (file: string, oldString: string, newString: string) => call('edit', { filePath: file, oldString, newString })
const disk = (dir: string, file: string) => (fs.existsSync(path.join(dir, file)) ? fs.readFileSync(path.join(dir, file), 'utf8') : undefined)
const NOT_APPLIED = /Your change was not applied \(the file was not changed\)\. Read \S+ again and redo your change/

/** A formatter opencode runs after each write of a .fmt file: upper-cases it (so its rewrite shows). */
const FORMATTER = `import fs from 'node:fs'; const f = process.argv[2]; fs.writeFileSync(f, fs.readFileSync(f, 'utf8').toUpperCase())`

let h: Harness
let redis: RedisServer

beforeAll(async () => {
  ;[h, redis] = await Promise.all([startHarness(), startRedis()])
}, 180_000)

afterAll(async () => {
  await redis?.stop()
  await h?.stop()
})

const stores = {
  sled: () => ({ FILE_LOCK_CACHE_BACKEND: 'sled', FILE_LOCK_PATH: tmpDir('ofl-stale-sled-') }),
  redis: () => ({ FILE_LOCK_CACHE_BACKEND: 'redis', REDIS_HOST: '127.0.0.1', REDIS_PORT: String(redis.port), FILE_LOCK_NAMESPACE: `stale-${Math.random().toString(36).slice(2)}` }),
}

describe.each(Object.keys(stores) as (keyof typeof stores)[])('stale writes on %s', (backend) => {
  const project = (name: string) => makeProject(h, `${backend}-${name}`)

  it('A reads, B writes, A’s write is refused naming B and the file keeps B’s content, also when A goes on in a new process; after reading again A’s write lands', async () => {
    const dir = project('read-write')
    fs.writeFileSync(path.join(dir, 'app.ts'), 'v1\n')
    const env = stores[backend]()
    const oc = await serve(h, dir, env)
    let a: string
    try {
      a = (await oc.client.session.create({ body: { title: 'Session A' } })).data!.id
      const b = (await oc.client.session.create({ body: { title: 'Fix login' } })).data!.id
      await oc.prompt(a, script(readFile('app.ts'), 'FINAL read'))
      await oc.idle(a)
      await oc.prompt(b, script(readFile('app.ts'), write('app.ts', 'from B\n'), 'FINAL B wrote'))
      await oc.idle(b)
      expect((await oc.tools(b)).map((t) => t.status)).toEqual(['completed', 'completed'])
      await oc.prompt(a, script(write('app.ts', 'from A\n'), 'FINAL A tried'))
      await oc.idle(a)
      const refused = (await oc.tools(a)).pop()!
      expect(refused).toMatchObject({ tool: 'write', status: 'error' })
      expect(refused.text).toMatch(/app\.ts changed since you read it: the session “Fix login” \(agent build\) wrote it \d+s ago\./)
      expect(refused.text).toMatch(NOT_APPLIED)
      expect(disk(dir, 'app.ts')).toBe('from B\n')
    } finally {
      await oc.stop()
    }
    // A goes on in a new process: its view is in the store, so it is still refused
    const resumed = await run(h, dir, script(write('app.ts', 'from A, resumed\n'), 'FINAL tried again'), { env, session: a })
    const [again] = toolResults(resumed)
    expect(again).toMatchObject({ tool: 'write', status: 'error' })
    expect(again.text).toMatch(/changed since you read it: the session “Fix login” \(agent build\) wrote it/)
    expect(disk(dir, 'app.ts')).toBe('from B\n')
    // once it has read the file again, the same write lands
    const redone = await run(h, dir, script(readFile('app.ts'), write('app.ts', 'from A, on B\n'), 'FINAL done'), { env, session: a })
    expect(toolResults(redone).map((t) => t.status)).toEqual(['completed', 'completed'])
    expect(disk(dir, 'app.ts')).toBe('from A, on B\n')
  })

  it('a person’s edit between A’s read and A’s edit is refused as changed outside any agent; after a read the same edit lands', async () => {
    const dir = project('human')
    fs.writeFileSync(path.join(dir, 'notes.md'), 'line one\n')
    const env = stores[backend]()
    const first = await run(h, dir, script(readFile('notes.md'), 'FINAL read'), { env })
    const a = sessionOf(first)
    fs.writeFileSync(path.join(dir, 'notes.md'), 'line one\nadded by hand\n') // the person at the keyboard
    const tried = await run(h, dir, script(edit('notes.md', 'line one', 'line ONE'), 'FINAL tried'), { env, session: a })
    const [refused] = toolResults(tried)
    expect(refused).toMatchObject({ tool: 'edit', status: 'error' })
    expect(refused.text).toMatch(/notes\.md changed since you read it: it was changed on disk outside any agent at \d\d:\d\d:\d\d\./)
    expect(disk(dir, 'notes.md')).toBe('line one\nadded by hand\n')
    const redone = await run(h, dir, script(readFile('notes.md'), edit('notes.md', 'line one', 'line ONE'), 'FINAL done'), { env, session: a })
    expect(toolResults(redone).map((t) => t.status)).toEqual(['completed', 'completed'])
    expect(disk(dir, 'notes.md')).toBe('line ONE\nadded by hand\n')
  })

  it('a session rewriting its own file without reading it is not refused, nor is it after its formatter rewrote the file; a whole-file write over a file it never read is', async () => {
    const dir = project('own')
    fs.writeFileSync(path.join(dir, 'fmt.mjs'), FORMATTER)
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'opencode.json'), 'utf8'))
    cfg.formatter = { upper: { command: ['node', path.join(dir, 'fmt.mjs'), '$FILE'], extensions: ['.fmt'] } }
    fs.writeFileSync(path.join(dir, 'opencode.json'), JSON.stringify(cfg))
    fs.writeFileSync(path.join(dir, 'theirs.txt'), 'not read\n')
    const r = await run(h, dir, script(write('own.txt', 'one\n'), write('own.txt', 'two\n'), write('x.fmt', 'lower\n'), write('x.fmt', 'again\n'), edit('x.fmt', 'AGAIN', 'AGAIN, EDITED'), write('theirs.txt', 'over it\n'), 'FINAL done'), { env: stores[backend]() })
    const results = toolResults(r)
    expect(results.slice(0, 5).map((t) => t.status)).toEqual(['completed', 'completed', 'completed', 'completed', 'completed'])
    expect(disk(dir, 'own.txt')).toBe('two\n')
    expect(disk(dir, 'x.fmt')).toBe('AGAIN, EDITED\n') // the formatter ran after each write
    expect(results[5]).toMatchObject({ tool: 'write', status: 'error' })
    expect(results[5].text).toMatch(/theirs\.txt exists and you have not read it: writing it whole would replace what is in it\. .*Read \S*theirs\.txt first, then make your change\./)
    expect(disk(dir, 'theirs.txt')).toBe('not read\n')
  })

  it('a subagent writes from its parent’s view', async () => {
    const dir = project('subagent')
    fs.writeFileSync(path.join(dir, 'shared.txt'), 'before\n')
    const oc = await serve(h, dir, stores[backend]())
    try {
      const parent = (await oc.client.session.create({ body: { title: 'Parent' } })).data!.id
      const sub = { description: 'child writes', prompt: script(write('shared.txt', 'from the subagent\n'), 'FINAL child done'), subagent_type: 'general' }
      await oc.prompt(parent, script(readFile('shared.txt'), call('task', sub), 'FINAL parent done'))
      await oc.idle(parent)
      expect(disk(dir, 'shared.txt')).toBe('from the subagent\n')
      const child = ((await oc.client.session.children({ path: { id: parent } })).data ?? [])[0]
      expect(child).toBeDefined()
      expect((await oc.tools(child.id)).map((t) => [t.tool, t.status])).toEqual([['write', 'completed']])
    } finally {
      await oc.stop()
    }
  })

  it('a waiter whose holder changed the file is refused after the wait, naming the holder', async () => {
    const dir = project('waiter')
    fs.writeFileSync(path.join(dir, 'w.txt'), 'original\n')
    const oc = await serve(h, dir, { ...stores[backend](), FILE_LOCK_WAIT_MS: '20000' })
    try {
      const holder = (await oc.client.session.create({ body: { title: 'Holder' } })).data!.id
      const waiter = (await oc.client.session.create({ body: { title: 'Waiter' } })).data!.id
      await oc.prompt(holder, script(readFile('w.txt'), call('slow_write', { filePath: 'w.txt', content: 'from the holder\n' }), 'FINAL holder done'))
      const openGate = await waitForGate(dir, 'w.txt')
      await oc.prompt(waiter, script(readFile('w.txt'), write('w.txt', 'from the waiter\n'), 'FINAL waiter done'))
      const deadline = Date.now() + 30_000
      while ((await oc.tools(waiter)).length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
      await new Promise((r) => setTimeout(r, 500)) // the write is waiting for the holder's lock
      expect(disk(dir, 'w.txt')).toBe('original\n')
      openGate()
      await oc.idle(holder)
      await oc.idle(waiter)
      const refused = (await oc.tools(waiter)).pop()!
      expect(refused).toMatchObject({ tool: 'write', status: 'error' })
      expect(refused.text).toMatch(/w\.txt changed since you read it: the session “Holder” \(agent build\) wrote it \d+s ago\./)
      expect(disk(dir, 'w.txt')).toBe('from the holder\n')
    } finally {
      await oc.stop()
    }
  })

  it('apply_patch over three files with one changed since the session read it writes none of them', async () => {
    const dir = project('patch')
    for (const f of ['a', 'b', 'c']) fs.writeFileSync(path.join(dir, `${f}.txt`), `${f}\n`)
    const env = stores[backend]()
    const first = await run(h, dir, script(readFile('a.txt'), readFile('b.txt'), readFile('c.txt'), 'FINAL read'), { env, model: 'mock/gpt-5-mock' })
    fs.writeFileSync(path.join(dir, 'b.txt'), 'b, changed by hand\n')
    const patch = ['*** Begin Patch', ...['a', 'b', 'c'].flatMap((f) => [`*** Update File: ${f}.txt`, `@@`, `-${f}`, `+${f.toUpperCase()}`]), '*** End Patch'].join('\n')
    const r = await run(h, dir, script(call('apply_patch', { patchText: patch }), 'FINAL patched'), { env, model: 'mock/gpt-5-mock', session: sessionOf(first) })
    const [refused] = toolResults(r)
    expect(refused).toMatchObject({ tool: 'apply_patch', status: 'error' })
    expect(refused.text).toMatch(/b\.txt changed since you read it: it was changed on disk outside any agent/)
    expect(refused.text).toContain('none of its 3 files was changed')
    expect([disk(dir, 'a.txt'), disk(dir, 'b.txt'), disk(dir, 'c.txt')]).toEqual(['a\n', 'b, changed by hand\n', 'c\n'])
  })

  it('FILE_LOCK_STALE=off: the lock-only behaviour, a write over a change the session never saw lands', async () => {
    const dir = project('off')
    fs.writeFileSync(path.join(dir, 'app.ts'), 'v1\n')
    const env = { ...stores[backend](), FILE_LOCK_STALE: 'off' }
    const first = await run(h, dir, script(readFile('app.ts'), 'FINAL read'), { env })
    fs.writeFileSync(path.join(dir, 'app.ts'), 'changed by someone else\n')
    const r = await run(h, dir, script(write('app.ts', 'from A\n'), 'FINAL wrote'), { env, session: sessionOf(first) })
    expect(toolResults(r)).toMatchObject([{ tool: 'write', status: 'completed' }])
    expect(disk(dir, 'app.ts')).toBe('from A\n')
  })
})
