// The plugin's coordination on a real store: the agents' tools (file_locks, claim_files), holders
// told that others wait for what they hold, and a deadlock between two sessions' writes.
import { afterEach, describe, expect, it } from 'vitest'
import { acquireLock, getLock, listLocks, SledCache, type Cache } from '../lib/index.js'
import { FileLockPlugin } from '../plugin/src/file-lock.ts'
import { sleep, tmpDir } from './helpers/tmp'

const opened: Cache[] = []
afterEach(async () => {
  for (const c of opened.splice(0)) await c.close()
})
async function store() {
  const c = await SledCache.open({ path: tmpDir('ofl-coord-') })
  opened.push(c)
  return c
}
const call = (tool: string, sessionID: string, callID: string) => ({ tool, sessionID, callID })
const writeArgs = (filePath: string) => ({ args: { filePath } })
const idle = (sessionID: string) => ({ event: { type: 'session.idle', properties: { sessionID } } })
const ctx = (sessionID: string) => ({ sessionID, messageID: 'm', agent: 'build', abort: new AbortController().signal })

describe('the agents’ lock tools', () => {
  it('claim_files claims a folder for the turn: another session’s write below it is refused, file_locks shows it, release lets go', async () => {
    const cache = await store()
    const hooks = await FileLockPlugin({ cache, baseDir: '/proj', waitMs: 0 } as never)
    expect(Object.keys(hooks.tool)).toEqual(['file_locks', 'claim_files'])
    const claimed: string = await hooks.tool.claim_files.execute({ paths: ['src/', 'README.md'] }, ctx('alice'))
    expect(claimed).toMatch(/^Claimed src\/, README\.md \(a folder claim covers everything inside\) until this turn ends/)
    expect(await getLock('/proj/src/', cache)).toMatchObject({ sessionId: 'alice', path: '/proj/src/' })

    const refused = await hooks['tool.execute.before'](call('write', 'bob', 'b1'), writeArgs('src/deep/a.ts')).catch((e: Error) => e)
    expect(refused).toBeInstanceOf(Error)
    expect(refused.message).toMatch(/^File \/proj\/src\/deep\/a\.ts is locked by another agent: agent .* \(session alice\)( \[[^\]]+\])? has claimed the folder \/proj\/src\/, which contains it/)
    expect(refused.message).toContain('blocked this write call')
    // the claimant itself writes below its claim
    await hooks['tool.execute.before'](call('write', 'alice', 'a1'), writeArgs('src/deep/a.ts'))
    await hooks['tool.execute.after'](call('write', 'alice', 'a1'), { output: 'ok' })

    const listed: string = await hooks.tool.file_locks.execute({}, ctx('bob'))
    expect(listed).toMatch(/^Locks in \/proj \(2 held, 0 waiting\):/)
    expect(listed).toMatch(/- src\/ \(claim: the folder and everything in it\): held by agent .* \(session alice\)( \[[^\]]+\])? for \d+s, expires in/)
    expect(listed).toContain('- README.md: held by agent')
    expect(await hooks.tool.file_locks.execute({}, ctx('alice'))).toContain('held by you (this task)')

    // a claim over something another session holds is refused whole, naming the holder
    await acquireLock('/proj/lib/x.ts', 'carol', 'carol', cache)
    const over = await hooks.tool.claim_files.execute({ paths: ['lib/', 'docs/'] }, ctx('alice')).catch((e: Error) => e)
    expect(over.message).toMatch(/^Folder \/proj\/lib\/ is locked by another agent: agent carol \(session carol\)( \[[^\]]+\])? has held \/proj\/lib\/x\.ts, inside it/)
    expect(await getLock('/proj/docs/', cache)).toBeUndefined()

    expect(await hooks.tool.claim_files.execute({ paths: ['src/'], release: true }, ctx('alice'))).toBe('Let go of src/; other agents may write there now.')
    await hooks['tool.execute.before'](call('write', 'bob', 'b2'), writeArgs('src/deep/a.ts'))
    await hooks['tool.execute.after'](call('write', 'bob', 'b2'), { output: 'ok' })
    await hooks.event(idle('alice'))
    expect((await listLocks(cache)).map((l) => l.path)).toEqual(['/proj/lib/x.ts'])
  })

  it('a holder’s next tool result says who waits for what it holds, until they stop waiting', async () => {
    const cache = await store()
    const hooks = await FileLockPlugin({ cache, baseDir: '/proj', scope: 'turn', waitMs: 3000 } as never)
    await hooks['tool.execute.before'](call('write', 'alice', 'a1'), writeArgs('src/app.ts'))
    await hooks['tool.execute.after'](call('write', 'alice', 'a1'), { output: 'Wrote file' })
    const waiting = hooks['tool.execute.before'](call('edit', 'bob', 'b1'), writeArgs('src/app.ts'))
    await sleep(100)
    const out = { output: 'contents of README' }
    await hooks['tool.execute.after'](call('read', 'alice', 'a2'), out)
    expect(out.output).toMatch(/\n\n\[opencode-file-lock\] agent \S+ \(session bob\) is waiting for src\/app\.ts; finish with it or release it \(claim_files with release: true\)\.$/)
    // a session nobody waits for hears nothing
    const other = { output: 'x' }
    await hooks['tool.execute.after'](call('read', 'bob-idle', 'z'), other)
    expect(other.output).toBe('x')
    await hooks.event(idle('alice')) // the turn ends: bob gets the file
    await waiting
    const later = { output: 'y' }
    await hooks['tool.execute.after'](call('read', 'alice', 'a3'), later)
    expect(later.output).toBe('y')
  })

  it('two sessions that each hold what the other wants: the second is refused with EDEADLK at once and the first gets its file', async () => {
    const cache = await store()
    const hooks = await FileLockPlugin({ cache, baseDir: '/proj', scope: 'turn', waitMs: 10_000 } as never)
    await hooks['tool.execute.before'](call('write', 'alice', 'a1'), writeArgs('x.ts'))
    await hooks['tool.execute.before'](call('write', 'bob', 'b1'), writeArgs('y.ts'))
    const t0 = Date.now()
    const alice = hooks['tool.execute.before'](call('edit', 'alice', 'a2'), writeArgs('y.ts'))
    await sleep(100)
    const bob = await hooks['tool.execute.before'](call('edit', 'bob', 'b2'), writeArgs('x.ts')).catch((e: Error) => e)
    expect(bob.message).toMatch(/^Deadlock: session bob .* would wait for \/proj\/x\.ts, held by session alice, which waits for \/proj\/y\.ts, held by session bob/)
    expect(bob.message).toContain("session bob's lock on /proj/y.ts was let go")
    expect(bob.message).toContain('refused this edit call at once')
    await alice // bob's y.ts was let go of, so alice's edit goes on
    expect(Date.now() - t0).toBeLessThan(3000)
    expect(await getLock('/proj/y.ts', cache)).toMatchObject({ sessionId: 'alice' })
  })
})
