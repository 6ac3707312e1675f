// End-to-end: the plugin inside the real opencode binary (opencode-ai, pinned), driven by a
// scripted fake model on 127.0.0.1, on sled and on Redis. A test tool (slow_write) holds a lock
// until the test opens its gate, so every race here is decided by the test, not by timing.
// A blocked tool waits FILE_LOCK_WAIT_MS (default 5 s) first: scenarios about the refusal itself
// set it to 0, those about the wait set it long and open the gate while the second tool waits.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { acquireLock, listLocks, RedisCache, releaseLock } from '../../lib/index.js'
import { startRedis, type RedisServer } from '../helpers/redis-server'
import { tmpDir } from '../helpers/tmp'
import { makeProject, readFile, run, serve, startHarness, toolResults, waitForGate, type Harness, type Serve } from './opencode'

// each opencode start takes seconds; a slow CI machine gets room
vi.setConfig({ testTimeout: 120_000, hookTimeout: 180_000 })

const LOCKED = /File .* is locked by another agent: agent .* \(session ses_[^)]+\)( \[[^\]]+\])? has held it since .* the lock expires in/

const script = (...lines: string[]) => ['scripted turn', ...lines].join('\n')
const write = (file: string, content: string) => `CALL write ${JSON.stringify({ filePath: file, content })}`
const slowWrite = (file: string, content: string) => `CALL slow_write ${JSON.stringify({ filePath: file, content })}`
const read = (dir: string, file: string) => (fs.existsSync(path.join(dir, file)) ? fs.readFileSync(path.join(dir, file), 'utf8') : undefined)

let h: Harness
let redis: RedisServer
let cache: RedisCache // the test's own view of the Redis lock store
const redisEnv = () => ({ FILE_LOCK_CACHE_BACKEND: 'redis', REDIS_HOST: '127.0.0.1', REDIS_PORT: String(redis.port), FILE_LOCK_NAMESPACE: 'locks' })
const sledEnv = () => ({ FILE_LOCK_CACHE_BACKEND: 'sled', FILE_LOCK_PATH: tmpDir('ofl-e2e-sled-') })
const NO_WAIT = { FILE_LOCK_WAIT_MS: '0' } // blocked at once: the refusal is what these scenarios check
// far longer than the test holds the gate shut; these scenarios are about the wait, so the waiter
// is not refused for writing over the holder's change (stale.e2e.spec.ts shows that it is by default)
const LONG_WAIT = { FILE_LOCK_WAIT_MS: '20000', FILE_LOCK_STALE: 'off' }
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** The session's tool parts with their state times (the harness's tools() leaves the times out). */
const toolParts = async (oc: Serve, id: string): Promise<any[]> =>
  ((await oc.client.session.messages({ path: { id } })).data ?? []).flatMap((m: any) => m.parts.filter((p: any) => p.type === 'tool'))

/** Waits until the session has a `tool` part that has started running (or already ended). */
async function started(oc: Serve, id: string, tool: string, ms = 60_000): Promise<any> {
  const deadline = Date.now() + ms
  for (;;) {
    const part = (await toolParts(oc, id)).find((p) => p.tool === tool && p.state.status !== 'pending')
    if (part) return part
    if (Date.now() > deadline) throw new Error(`no ${tool} call started in session ${id} within ${ms} ms`)
    await sleep(50)
  }
}

/**
 * Session A (in `holder`) holds shared.txt in the gated slow_write; session B (in `waiter`) writes
 * shared.txt and must wait rather than fail; the test opens the gate; B's write must then land.
 * Returns how long B's plugin reports it waited and how soon after the gate B's write ended.
 */
async function waitThenWrite(dir: string, holder: Serve, waiter: Serve) {
  const a = (await holder.client.session.create({ body: { title: 'holder' } })).data!.id
  const b = (await waiter.client.session.create({ body: { title: 'waiter' } })).data!.id
  await holder.prompt(a, script(slowWrite('shared.txt', 'from session A\n'), 'FINAL A done'))
  const openGate = await waitForGate(dir, 'shared.txt') // A holds the lock now
  await waiter.prompt(b, script(write('shared.txt', 'from session B\n'), 'FINAL B done'))
  const running = await started(waiter, b, 'write')
  expect(running.state.status).toBe('running')
  await sleep(1500)
  // still running, neither refused nor written: it is waiting for A
  expect((await toolParts(waiter, b)).map((p) => p.state.status)).toEqual(['running'])
  expect(read(dir, 'shared.txt')).toBeUndefined()
  const gateOpenedAt = Date.now()
  openGate()
  await waiter.idle(b)
  await holder.idle(a)
  expect(await holder.tools(a)).toMatchObject([{ tool: 'slow_write', status: 'completed' }])
  const [w] = await toolParts(waiter, b)
  expect(w).toMatchObject({ tool: 'write', state: { status: 'completed' } })
  expect(w.state.output).not.toMatch(/locked by another agent|opencode-file-lock/)
  expect(read(dir, 'shared.txt')).toBe('from session B\n') // after A's write, not instead of it
  expect(w.state.time.start).toBeLessThan(gateOpenedAt)
  expect(w.state.time.end).toBeGreaterThanOrEqual(gateOpenedAt)
  const afterGateMs = w.state.time.end - gateOpenedAt
  expect(afterGateMs).toBeLessThan(10_000) // woken by A's release, long before its 20 s wait ran out
  const [, waited] = waiter.stderr().match(/locked \S*shared\.txt for write \(session [^,]+, scope call, after waiting (\d+) ms\)/) ?? []
  expect(Number(waited)).toBeGreaterThanOrEqual(1500)
  expect(Number(waited)).toBeLessThan(20_000)
  console.log(`B's write waited ${waited} ms for A's lock and ended ${afterGateMs} ms after the gate opened`)
  return { waited: Number(waited), afterGateMs }
}

beforeAll(async () => {
  ;[h, redis] = await Promise.all([startHarness(), startRedis()])
  cache = await RedisCache.connect({ port: redis.port, namespace: 'locks' })
}, 120_000)

afterAll(async () => {
  await cache?.close()
  await redis?.stop()
  await h?.stop()
})

describe('opencode serve: two sessions in one process', () => {
  it('race for one file on sled: one write lands, the other gets the lock error; after the first tool finishes the second can write', async () => {
    const dir = makeProject(h, 'serve-race')
    const oc = await serve(h, dir, { ...sledEnv(), ...NO_WAIT })
    try {
      const s1 = (await oc.client.session.create({ body: { title: 'one' } })).data!.id
      const s2 = (await oc.client.session.create({ body: { title: 'two' } })).data!.id
      await oc.prompt(s1, script(slowWrite('shared.txt', 'from session one\n'), 'FINAL one done'))
      const openGate = await waitForGate(dir, 'shared.txt') // session one holds the lock now
      await oc.prompt(s2, script(write('shared.txt', 'from session two\n'), 'FINAL two blocked'))
      await oc.idle(s2)
      const [blocked] = await oc.tools(s2)
      expect(blocked).toMatchObject({ tool: 'write', status: 'error' })
      expect(blocked.text).toMatch(LOCKED)
      expect(blocked.text).toContain('Work on another file, or retry later')
      expect(read(dir, 'shared.txt')).toBeUndefined()
      openGate()
      await oc.idle(s1)
      expect(await oc.tools(s1)).toMatchObject([{ tool: 'slow_write', status: 'completed' }])
      expect(read(dir, 'shared.txt')).toBe('from session one\n')
      await oc.prompt(s2, script(readFile('shared.txt'), write('shared.txt', 'from session two\n'), 'FINAL two done'))
      await oc.idle(s2)
      expect((await oc.tools(s2)).pop()).toMatchObject({ tool: 'write', status: 'completed' })
      expect(read(dir, 'shared.txt')).toBe('from session two\n')
    } finally {
      await oc.stop()
    }
  })

  it("scope 'turn' on sled: a session that wrote a file and is still working keeps it until it goes idle", async () => {
    const dir = makeProject(h, 'serve-turn')
    const oc = await serve(h, dir, { ...sledEnv(), ...NO_WAIT, FILE_LOCK_SCOPE: 'turn' })
    try {
      const s1 = (await oc.client.session.create({ body: { title: 'one' } })).data!.id
      const s2 = (await oc.client.session.create({ body: { title: 'two' } })).data!.id
      // session one writes t.txt, then keeps working (its next step waits at the gate)
      await oc.prompt(s1, script(write('t.txt', 'one\n'), slowWrite('notes.txt', 'thinking\n'), 'FINAL one done'))
      const openGate = await waitForGate(dir, 'notes.txt')
      await oc.prompt(s2, script(write('t.txt', 'two\n'), 'FINAL two blocked'))
      await oc.idle(s2)
      const [blocked] = await oc.tools(s2)
      expect(blocked.status).toBe('error')
      expect(blocked.text).toMatch(LOCKED)
      expect(read(dir, 't.txt')).toBe('one\n')
      openGate()
      await oc.idle(s1)
      await oc.prompt(s2, script(readFile('t.txt'), write('t.txt', 'two\n'), 'FINAL two done'))
      await oc.idle(s2)
      expect((await oc.tools(s2)).pop()).toMatchObject({ tool: 'write', status: 'completed' })
      expect(read(dir, 't.txt')).toBe('two\n')
    } finally {
      await oc.stop()
    }
  })

  it('on sled: a write to a file another session holds waits for it, and lands as soon as that tool finishes', async () => {
    const dir = makeProject(h, 'serve-wait')
    const oc = await serve(h, dir, { ...sledEnv(), ...LONG_WAIT })
    try {
      await waitThenWrite(dir, oc, oc)
    } finally {
      await oc.stop()
    }
  })

  it('on Redis: a failing tool leaves no lock, and deleting a session releases its locks', async () => {
    const dir = makeProject(h, 'serve-redis')
    fs.writeFileSync(path.join(dir, 'exists.txt'), 'hello\n')
    const oc = await serve(h, dir, { ...redisEnv(), FILE_LOCK_SCOPE: 'turn' })
    try {
      // (d) edit with an oldString that is not there: the tool fails, opencode skips the after hook
      const s1 = (await oc.client.session.create({ body: { title: 'fails' } })).data!.id
      await oc.prompt(s1, script(`CALL edit ${JSON.stringify({ filePath: 'exists.txt', oldString: 'NOT THERE', newString: 'x' })}`, 'FINAL failed'))
      await oc.idle(s1)
      expect(await oc.tools(s1)).toMatchObject([{ tool: 'edit', status: 'error' }])
      expect(oc.stderr()).toMatch(/locked .*exists.txt for edit/)
      expect(await listLocks(cache)).toEqual([])

      // (e) a session holding a lock (turn scope, still working) is deleted
      const s2 = (await oc.client.session.create({ body: { title: 'deleted' } })).data!.id
      await oc.prompt(s2, script(write('e.txt', 'e\n'), slowWrite('wait.txt', 'w\n'), 'FINAL never'))
      const openGate = await waitForGate(dir, 'wait.txt')
      expect((await listLocks(cache, { sessionId: s2 })).map((r) => path.basename(r.path)).sort()).toEqual(['e.txt', 'wait.txt'])
      await oc.client.session.delete({ path: { id: s2 } })
      const deadline = Date.now() + 10_000
      while ((await listLocks(cache, { sessionId: s2 })).length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
      expect(await listLocks(cache, { sessionId: s2 })).toEqual([])
      openGate()
    } finally {
      await oc.stop()
    }
  })
})

describe('opencode run: separate processes sharing Redis', () => {
  it('two processes race for one file: one write lands, the other gets the lock error; then it can write', async () => {
    const dir = makeProject(h, 'runs-race')
    const first = run(h, dir, script(slowWrite('race.txt', 'from process one\n'), 'FINAL one done'), { env: redisEnv() })
    const openGate = await waitForGate(dir, 'race.txt')
    const holder = (await listLocks(cache)).find((r) => r.path.endsWith('race.txt'))
    expect(holder).toBeDefined()
    const second = await run(h, dir, script(write('race.txt', 'from process two\n'), 'FINAL two blocked'), { env: { ...redisEnv(), ...NO_WAIT } })
    expect(second.code).toBe(0)
    const [blocked] = toolResults(second)
    expect(blocked).toMatchObject({ tool: 'write', status: 'error' })
    expect(blocked.text).toMatch(LOCKED)
    expect(blocked.text).toContain(holder!.sessionId)
    expect(read(dir, 'race.txt')).toBeUndefined()
    openGate()
    const one = await first
    expect(toolResults(one)).toMatchObject([{ tool: 'slow_write', status: 'completed' }])
    expect(read(dir, 'race.txt')).toBe('from process one\n')
    const third = await run(h, dir, script(readFile('race.txt'), write('race.txt', 'from process two\n'), 'FINAL two done'), { env: redisEnv() })
    expect(toolResults(third)).toMatchObject([{ tool: 'read', status: 'completed' }, { tool: 'write', status: 'completed' }])
    expect(read(dir, 'race.txt')).toBe('from process two\n')
    expect(await listLocks(cache)).toEqual([])
  })

  it('apply_patch over three files, one held by another session: none of the three is written', async () => {
    const dir = makeProject(h, 'runs-patch')
    const held = await acquireLock(path.join(dir, 'b.txt'), 'someone-else', 'ses_other', cache)
    const patch = ['*** Begin Patch', '*** Add File: a.txt', '+a', '*** Add File: b.txt', '+b', '*** Add File: c.txt', '+c', '*** End Patch'].join('\n')
    const r = await run(h, dir, script(`CALL apply_patch ${JSON.stringify({ patchText: patch })}`, 'FINAL patched'), { model: 'mock/gpt-5-mock', env: { ...redisEnv(), ...NO_WAIT } })
    const [result] = toolResults(r)
    expect(result).toMatchObject({ tool: 'apply_patch', status: 'error' })
    expect(result.text).toMatch(/File .*b\.txt is locked by another agent: agent someone-else \(session ses_other\)/)
    expect(result.text).toContain('none of its 3 files was changed')
    for (const f of ['a.txt', 'b.txt', 'c.txt']) expect(read(dir, f)).toBeUndefined()
    expect((await listLocks(cache)).map((l) => l.sessionId)).toEqual(['ses_other'])
    await releaseLock(held, 'ses_other', cache)
    const again = await run(h, dir, script(`CALL apply_patch ${JSON.stringify({ patchText: patch })}`, 'FINAL patched'), { model: 'mock/gpt-5-mock', env: redisEnv() })
    expect(toolResults(again)).toMatchObject([{ tool: 'apply_patch', status: 'completed' }])
    expect([read(dir, 'a.txt'), read(dir, 'b.txt'), read(dir, 'c.txt')]).toEqual(['a\n', 'b\n', 'c\n'])
    expect(await listLocks(cache)).toEqual([])
  })
})

describe('existing opencode 1 installs: the plugin file that re-exports opencode-file-lock/plugin', () => {
  it('still locks: a write to a file another session holds is refused naming it; once it is let go, the write lands', async () => {
    const dir = makeProject(h, 'legacy-entry')
    const { V1_FILE } = require('../../lib/opencode-setup.js')
    fs.writeFileSync(path.join(dir, '.opencode/plugin/file-lock.ts'), V1_FILE)
    expect(V1_FILE).toContain("from 'opencode-file-lock/plugin'")
    const held = await acquireLock(path.join(dir, 'legacy.txt'), 'someone-else', 'ses_legacy_holder', cache)
    const r = await run(h, dir, script(write('legacy.txt', 'from the legacy plugin\n'), 'FINAL blocked'), { env: { ...redisEnv(), ...NO_WAIT } })
    const [blocked] = toolResults(r)
    expect(blocked).toMatchObject({ tool: 'write', status: 'error' })
    expect(blocked.text).toMatch(/File .*legacy\.txt is locked by another agent: agent someone-else \(session ses_legacy_holder\)/)
    expect(read(dir, 'legacy.txt')).toBeUndefined()
    await releaseLock(held, 'ses_legacy_holder', cache)
    const again = await run(h, dir, script(write('legacy.txt', 'from the legacy plugin\n'), 'FINAL done'), { env: redisEnv() })
    expect(toolResults(again)).toMatchObject([{ tool: 'write', status: 'completed' }])
    expect(read(dir, 'legacy.txt')).toBe('from the legacy plugin\n')
    expect(await listLocks(cache)).toEqual([])
  })
})

describe('opencode serve: separate processes sharing Redis', () => {
  it('a write to a file another process holds waits for it, and lands as soon as that tool finishes', async () => {
    const dir = makeProject(h, 'serves-wait')
    const [one, two] = await Promise.all([serve(h, dir, { ...redisEnv(), ...LONG_WAIT }), serve(h, dir, { ...redisEnv(), ...LONG_WAIT })])
    try {
      await waitThenWrite(dir, one, two)
      expect(await listLocks(cache)).toEqual([])
    } finally {
      await Promise.all([one.stop(), two.stop()])
    }
  })
})

describe('default configuration, no Redis: every opencode process of the user shares one lock table', () => {
  // No FILE_LOCK_CACHE_BACKEND, no FILE_LOCK_PATH: the sled folder in the user's state folder,
  // served by the first process that opens it to the others.
  const cli = (...args: string[]) => spawnSync(process.execPath, [path.join(__dirname, '../../bin/opencode-file-lock.js'), ...args], { encoding: 'utf8', env: h.env })

  it('two opencode processes in one project race for a file: the second is refused naming the holder, the CLI lists the lock, then the second lands', async () => {
    const dir = makeProject(h, 'default-race')
    const [one, two] = await Promise.all([serve(h, dir, NO_WAIT), serve(h, dir, NO_WAIT)])
    try {
      const a = (await one.client.session.create({ body: { title: 'holder' } })).data!.id
      const b = (await two.client.session.create({ body: { title: 'second' } })).data!.id
      await one.prompt(a, script(slowWrite('shared.txt', 'from process one\n'), 'FINAL one done'))
      const openGate = await waitForGate(dir, 'shared.txt') // process one holds the lock now
      await two.prompt(b, script(write('shared.txt', 'from process two\n'), 'FINAL two blocked'))
      await two.idle(b)
      const [blocked] = await two.tools(b)
      expect(blocked).toMatchObject({ tool: 'write', status: 'error' })
      expect(blocked.text).toMatch(LOCKED)
      expect(blocked.text).toContain(`(session ${a})`)
      expect(read(dir, 'shared.txt')).toBeUndefined()
      // the operator's view, from a third process, while both run
      const listed = cli('list', '--json')
      expect(listed.status).toBe(0)
      expect(JSON.parse(listed.stdout)).toMatchObject([{ path: path.join(fs.realpathSync(dir), 'shared.txt'), sessionId: a }])
      openGate()
      await one.idle(a)
      expect(read(dir, 'shared.txt')).toBe('from process one\n')
      await two.prompt(b, script(readFile('shared.txt'), write('shared.txt', 'from process two\n'), 'FINAL two done'))
      await two.idle(b)
      expect((await two.tools(b)).pop()).toMatchObject({ tool: 'write', status: 'completed' })
      expect(read(dir, 'shared.txt')).toBe('from process two\n')
      expect(JSON.parse(cli('list', '--json').stdout)).toEqual([])
    } finally {
      await Promise.all([one.stop(), two.stop()])
    }
  })

  it('two opencode processes in two unrelated projects both write freely', async () => {
    const p1 = makeProject(h, 'default-proj-one')
    const p2 = makeProject(h, 'default-proj-two')
    // process one holds its file (its tool waits at the gate) while process two writes in its project
    const first = run(h, p1, script(slowWrite('one.txt', 'project one\n'), 'FINAL one done'), { env: NO_WAIT })
    const openGate = await waitForGate(p1, 'one.txt')
    const second = await run(h, p2, script(write('two.txt', 'project two\n'), write('one.txt', 'not the same one.txt\n'), 'FINAL two done'), { env: NO_WAIT })
    expect(second.code).toBe(0)
    expect(toolResults(second)).toMatchObject([
      { tool: 'write', status: 'completed' },
      { tool: 'write', status: 'completed' },
    ])
    expect(second.stderr).not.toMatch(/lock store is unavailable|in use by another process/)
    openGate()
    const one = await first
    expect(toolResults(one)).toMatchObject([{ tool: 'slow_write', status: 'completed' }])
    expect([read(p1, 'one.txt'), read(p2, 'two.txt'), read(p2, 'one.txt')]).toEqual(['project one\n', 'project two\n', 'not the same one.txt\n'])
  })
})
