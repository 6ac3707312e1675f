// The plugin's hooks on a real store, with an opencode client that knows sessions' parents and
// takes toasts: subagents share their task tree's locks, releases never stop early, a bash command
// that changes a held file is reported, the person at the keyboard is told.
import fs from 'node:fs'
import path from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { acquireLock, getLock, listLocks, SledCache, type Cache } from '../lib/index.js'
import { FileLockPlugin } from '../plugin/src/file-lock.ts'
import { sleep, tmpDir } from './helpers/tmp'

const opened: Cache[] = []
afterEach(async () => {
  for (const c of opened.splice(0)) await c.close()
  vi.restoreAllMocks()
})
async function store() {
  const c = await SledCache.open({ path: tmpDir('ofl-trees-') })
  opened.push(c)
  return c
}

/** What opencode's SDK client answers about sessions, and the toasts it was asked to show. */
function opencodeClient(sessions: Record<string, { title: string; agent: string; parentID?: string }>) {
  const toasts: any[] = []
  return {
    toasts,
    session: { get: async ({ path: { id } }: any) => (sessions[id] ? { data: { id, ...sessions[id] } } : { error: { name: 'NotFound' } }) },
    tui: { showToast: async ({ body }: any) => void toasts.push(body) },
  }
}
const call = (tool: string, sessionID: string, callID: string) => ({ tool, sessionID, callID })
const writeArgs = (filePath: string) => ({ args: { filePath } })
const idle = (sessionID: string) => ({ event: { type: 'session.idle', properties: { sessionID } } })

describe('task trees: a subagent may write what its parent holds', () => {
  it('turn scope: the child writes the parent’s file, an unrelated session is refused, each releases only its own holds', async () => {
    const cache = await store()
    const client = opencodeClient({ parent: { title: 'Refactor auth', agent: 'build' }, child: { title: 'write tests (@general subagent)', agent: 'general', parentID: 'parent' }, grandchild: { title: 'deeper', agent: 'general', parentID: 'child' }, other: { title: 'Unrelated', agent: 'build' } })
    const hooks = await FileLockPlugin({ cache, client, scope: 'turn', waitMs: 0 } as never)
    await hooks['tool.execute.before'](call('write', 'parent', 'p1'), writeArgs('/tree/a.ts'))
    await hooks['tool.execute.before'](call('edit', 'child', 'c1'), writeArgs('/tree/a.ts')) // the parent's file: allowed
    await hooks['tool.execute.before'](call('write', 'grandchild', 'g1'), writeArgs('/tree/b.ts'))
    expect(await getLock('/tree/a.ts', cache)).toMatchObject({ sessionId: 'parent', holdCount: 2 })
    expect(await getLock('/tree/b.ts', cache)).toMatchObject({ sessionId: 'parent' }) // owned by the tree's root
    const refused = await hooks['tool.execute.before'](call('write', 'other', 'o1'), writeArgs('/tree/a.ts')).catch((e: Error) => e)
    expect(refused.message).toMatch(/File \/tree\/a\.ts is locked by another agent: .* \(session parent\)/)
    expect(refused.message).toContain('It is held by the session “Refactor auth” (agent build).')
    await hooks.event(idle('child'))
    await hooks.event(idle('grandchild'))
    expect(await getLock('/tree/a.ts', cache)).toMatchObject({ sessionId: 'parent', holdCount: 1 }) // the parent keeps its own
    expect(await getLock('/tree/b.ts', cache)).toBeUndefined()
    await hooks.event(idle('parent'))
    expect(await listLocks(cache)).toEqual([])
  })

  it('call scope: a child’s call takes one more hold of a file its parent’s running call holds, and gives back only that', async () => {
    const cache = await store()
    const client = opencodeClient({ root: { title: 'root', agent: 'build' }, sub: { title: 'sub', agent: 'general', parentID: 'root' } })
    const hooks = await FileLockPlugin({ cache, client, waitMs: 0 } as never)
    await hooks['tool.execute.before'](call('slow_write', 'root', 'r1'), writeArgs('/tree/c.ts'))
    await hooks['tool.execute.before'](call('write', 'sub', 's1'), writeArgs('/tree/c.ts'))
    await hooks['tool.execute.after'](call('write', 'sub', 's1'), {})
    expect(await getLock('/tree/c.ts', cache)).toMatchObject({ sessionId: 'root', holdCount: 1 })
    await hooks['tool.execute.after'](call('slow_write', 'root', 'r1'), {})
    expect(await getLock('/tree/c.ts', cache)).toBeUndefined()
  })

  it('a session opencode does not know (no client answer) is its own root: it is refused its neighbour’s files', async () => {
    const cache = await store()
    const hooks = await FileLockPlugin({ cache, client: opencodeClient({}), waitMs: 0 } as never)
    await hooks['tool.execute.before'](call('write', 'a', 'a1'), writeArgs('/tree/d.ts'))
    await expect(hooks['tool.execute.before'](call('write', 'b', 'b1'), writeArgs('/tree/d.ts'))).rejects.toThrow(/locked by another agent/)
  })
})

describe('releases never stop early', () => {
  it('one release that fails (a corrupt record) is said on stderr and left to its TTL; the others are released', async () => {
    const cache = await store()
    const errors: string[] = []
    vi.spyOn(console, 'error').mockImplementation((m: string) => void errors.push(String(m)))
    const hooks = await FileLockPlugin({ cache, waitMs: 0 } as never)
    const patch = ['*** Begin Patch', '*** Add File: /rel/a', '+a', '*** Add File: /rel/b', '+b', '*** Add File: /rel/c', '+c', '*** End Patch'].join('\n')
    await hooks['tool.execute.before'](call('apply_patch', 's', 'p'), { args: { patchText: patch } })
    await cache.set('/rel/a', 'not a lock record any more')
    await hooks['tool.execute.after'](call('apply_patch', 's', 'p'), {})
    expect(await getLock('/rel/b', cache)).toBeUndefined()
    expect(await getLock('/rel/c', cache)).toBeUndefined()
    expect(errors.find((e) => e.includes('could not release /rel/a'))).toMatch(/\(session s, apply_patch finished\): ECORRUPT .* it is left to expire at its TTL/)
  })
})

describe('bash: a command that changes a file another session holds is reported', () => {
  it('says so in the tool output and on stderr, names the holder as opencode knows it; its own files are not reported', async () => {
    const cache = await store()
    const dir = tmpDir('ofl-bash-')
    const theirs = path.join(dir, 'theirs.txt')
    const mine = path.join(dir, 'mine.txt')
    fs.writeFileSync(theirs, 'original\n')
    fs.writeFileSync(mine, 'mine\n')
    await acquireLock(theirs, 'agent-a', 'ses-a', cache)
    const client = opencodeClient({ 'ses-a': { title: 'Fix the parser', agent: 'build' }, 'ses-b': { title: 'B', agent: 'build' } })
    const errors: string[] = []
    vi.spyOn(console, 'error').mockImplementation((m: string) => void errors.push(String(m)))
    const hooks = await FileLockPlugin({ cache, client, scope: 'turn' } as never)
    // it read its file first (a whole-file write of a file never read is refused)
    await hooks['tool.execute.before'](call('read', 'ses-b', 'r1'), { args: { filePath: mine } })
    await hooks['tool.execute.after'](call('read', 'ses-b', 'r1'), { title: 'read', output: 'mine\n', metadata: {} })
    await hooks['tool.execute.before'](call('write', 'ses-b', 'w1'), writeArgs(mine))
    await hooks['tool.execute.before'](call('bash', 'ses-b', 'b1'), { args: { command: 'sed -i s/original/clobbered/ theirs.txt' } })
    fs.writeFileSync(theirs, 'clobbered\n') // what the command did
    fs.writeFileSync(mine, 'changed too\n')
    const output = { title: 'bash', output: 'done\n', metadata: {} }
    await hooks['tool.execute.after'](call('bash', 'ses-b', 'b1'), output)
    expect(output.output).toContain('[opencode-file-lock] This command changed a file that another agent holds a lock on:')
    expect(output.output).toContain(`- ${theirs} (modified), which the session “Fix the parser” (agent build) holds`)
    expect(output.output).not.toContain('mine.txt')
    expect(errors.some((e) => e.includes(`a bash command of session ses-b changed ${theirs}`))).toBe(true)
    expect(client.toasts.map((t) => t.title)).toContain('A command changed a locked file')
    // a command that touches nothing held adds nothing
    await hooks['tool.execute.before'](call('bash', 'ses-b', 'b2'), { args: { command: 'ls' } })
    const quiet = { title: 'bash', output: 'ls\n', metadata: {} }
    await hooks['tool.execute.after'](call('bash', 'ses-b', 'b2'), quiet)
    expect(quiet.output).toBe('ls\n')
  })
})

describe('the person at the keyboard is told', () => {
  it('a write that waits, one that is refused, and a lock that is lost each show a toast naming the file and the holder', async () => {
    const cache = await store()
    const client = opencodeClient({ holder: { title: 'Holder session', agent: 'build' }, waiter: { title: 'W', agent: 'plan' } })
    vi.spyOn(console, 'error').mockImplementation(() => {})
    const holder = await FileLockPlugin({ cache, client, waitMs: 0 } as never)
    const waiter = await FileLockPlugin({ cache, client, waitMs: 600 } as never)
    await holder['tool.execute.before'](call('write', 'holder', 'h1'), writeArgs('/toast/a.ts'))
    const t = Date.now()
    const e = await waiter['tool.execute.before'](call('write', 'waiter', 'w1'), writeArgs('/toast/a.ts')).catch((e: Error) => e)
    expect(Date.now() - t).toBeGreaterThan(550)
    expect(e.message).toContain('It is held by the session “Holder session” (agent build).')
    expect(client.toasts).toEqual([
      expect.objectContaining({ title: 'Waiting for a file lock', variant: 'warning', message: '/toast/a.ts is held by the session “Holder session” (agent build); this write waits up to 0.6 s.' }),
      expect.objectContaining({ title: 'Write blocked', variant: 'error', message: '/toast/a.ts is held by the session “Holder session” (agent build); the write was refused.' }),
    ])
    const { forceRelease } = await import('../lib/index.js')
    await forceRelease('/toast/a.ts', cache)
    for (let i = 0; i < 40 && client.toasts.length < 3; i++) await sleep(25)
    expect(client.toasts[2]).toMatchObject({ title: 'File lock lost', variant: 'error', message: expect.stringContaining('/toast/a.ts') })
  })

  it('FILE_LOCK_TOAST=false (or toast: false): no toasts', async () => {
    const cache = await store()
    const client = opencodeClient({})
    process.env.FILE_LOCK_TOAST = 'false'
    try {
      const a = await FileLockPlugin({ cache, client, waitMs: 0 } as never)
      await a['tool.execute.before'](call('write', 'x', '1'), writeArgs('/toast/b.ts'))
      await a['tool.execute.before'](call('write', 'y', '2'), writeArgs('/toast/b.ts')).catch(() => {})
    } finally {
      delete process.env.FILE_LOCK_TOAST
    }
    const b = await FileLockPlugin({ cache, client, waitMs: 0, toast: false } as never)
    await b['tool.execute.before'](call('write', 'z', '3'), writeArgs('/toast/b.ts')).catch(() => {})
    expect(client.toasts).toEqual([])
  })
})
