// What a takeover of the shared store puts back (each case failed before its fix): only what a
// client still holds by its own record. A lock an operator forced free, or one let go of to break
// a deadlock, stays gone after the serving process dies; a release in flight when it dies is
// carried out, not reported to its holder as a lost lock.
import fs from 'node:fs'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { startLockProcess, type LockProcess } from './helpers/lock-process'
import { tmpDir } from './helpers/tmp'

const procs: LockProcess[] = []
afterEach(async () => {
  for (const p of procs.splice(0)) await p.kill().catch(() => {})
})
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function processes(n: number) {
  const folder = path.join(tmpDir('ofl-takeover-'), 'locks')
  const out: LockProcess[] = []
  for (let i = 0; i < n; i++) {
    const p = await startLockProcess({ path: folder })
    procs.push(p)
    out.push(p)
  }
  return out // the first serves the folder
}

/** Until `p` answers as the server or a client of a live one. */
async function settled(p: LockProcess) {
  for (let i = 0; i < 100; i++) {
    const h = await p.call('health').catch(() => undefined)
    if (h?.shared?.role === 'server' || h?.shared?.role === 'client') return
    await sleep(20)
  }
}

describe('a takeover puts back only what clients still hold', () => {
  it('a lock an operator forced free stays free after the serving process is killed, and its holder hears it was released', async () => {
    const [server, holder, operator] = await processes(3)
    const p = await holder.call('acquire', '/g/forced.txt', 'holder-session')
    expect(await operator.call('forceRelease', p)).toMatchObject({ sessionId: 'holder-session' })
    await server.kill('SIGKILL')
    await settled(holder)
    await settled(operator)
    await sleep(200)
    await expect(operator.call('acquire', p, 'someone-else')).resolves.toBe(p) // not put back
    const lost = await holder.call('lost')
    expect(lost.map((e: any) => [e.path, e.reason])).toContainEqual([p, 'released'])
  })

  it('a lock let go of to break a deadlock is not put back by its old holder after the serving process is killed', async () => {
    const [server, c, d, e] = await processes(4)
    const x = await c.call('acquire', '/g/x', 'C')
    const y = await d.call('acquire', '/g/y', 'D')
    const cWaits = c.call('acquire', '/g/y', 'C', { waitMs: 5000 })
    await sleep(150)
    const refused = await d.call('acquire', '/g/x', 'D', { waitMs: 5000 }).catch((err) => err)
    expect(refused.code).toBe('EDEADLK')
    expect(refused.released).toEqual([y])
    expect(await cWaits).toBe(y)
    await c.call('release', x, 'C')
    await c.call('release', y, 'C')
    await server.kill('SIGKILL')
    for (const p of [c, d, e]) await settled(p)
    await sleep(200)
    // D let go of /g/y for good: nobody holds it after the takeover
    await expect(e.call('acquire', y, 'E')).resolves.toBe(y)
  })

  it('a release in flight when the serving process dies is carried out, not reported as a lost lock', async () => {
    const [server, holder, other] = await processes(3)
    const p = await holder.call('acquire', '/g/inflight.txt', 'H')
    process.kill(server.pid, 'SIGSTOP')
    const releasing = holder.call('release', p, 'H').then((r: boolean) => ({ r }), (err: any) => ({ err: err.code }))
    await sleep(200)
    await server.kill('SIGKILL')
    const outcome = await releasing
    await settled(holder)
    await settled(other)
    await sleep(200)
    await expect(other.call('acquire', p, 'O')).resolves.toBe(p) // released, not put back
    expect((await holder.call('lost')).filter((e: any) => e.path === p)).toEqual([])
    console.log(`the release in flight at the kill answered ${JSON.stringify(outcome)}`)
  })
})
