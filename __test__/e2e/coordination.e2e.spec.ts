// End to end in the real opencode 1.18.33: an agent claims src/ with the plugin's claim_files tool,
// another session's write below it is refused (and file_locks shows the claim), and while a third
// session waits for a file under the claim, the claimant's next tool result says so.
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { listLocks, listWaiters, SledCache, type Cache } from '../../lib/index.js'
import { sleep, tmpDir } from '../helpers/tmp'
import { makeProject, run, startHarness, toolResults, waitForGate, type Harness } from './opencode'

vi.setConfig({ testTimeout: 150_000, hookTimeout: 180_000 })

const script = (...lines: string[]) => ['scripted turn', ...lines].join('\n')
const call = (tool: string, args: unknown) => `CALL ${tool} ${JSON.stringify(args)}`

let h: Harness
let folder: string
let store: Cache // the test's view of the sled folder the opencode processes share

beforeAll(async () => {
  h = await startHarness()
  folder = path.join(tmpDir('ofl-coord-e2e-'), 'locks')
  store = await SledCache.open({ path: folder, namespace: 'locks' })
}, 180_000)

afterAll(async () => {
  await store?.close()
  await h?.stop()
})

describe('agents coordinate in the real opencode', () => {
  it('claim_files claims src/: another session’s write below it is refused; a session waiting under it is named in the claimant’s next tool result', async () => {
    const dir = makeProject(h, 'claims')
    const real = fs.realpathSync(dir)
    fs.mkdirSync(path.join(dir, 'src/deep'), { recursive: true })
    fs.writeFileSync(path.join(dir, 'README.md'), 'readme\n')
    const env = { FILE_LOCK_PATH: folder }

    // the claimant: claims src/, then holds its turn open in slow_write until the test lets it go,
    // then reads a file (the result that should say someone waits), then ends its turn
    const claimant = run(h, dir, script(call('claim_files', { paths: ['src/'] }), call('slow_write', { filePath: 'notes.txt', content: 'n' }), call('read', { filePath: 'README.md' }), 'FINAL done'), { env: { ...env, FILE_LOCK_WAIT_MS: '0' } })
    const open = await waitForGate(dir, 'notes.txt')
    expect((await listLocks(store)).map((l) => l.path)).toContain(`${real}/src/`)

    // another session: its write below the claim is refused, and file_locks shows who claimed what
    const refused = await run(h, dir, script(call('write', { filePath: 'src/deep/x.ts', content: 'x' }), call('file_locks', {}), 'FINAL ok'), { env: { ...env, FILE_LOCK_WAIT_MS: '0' } })
    const [w, listed] = toolResults(refused)
    expect(w).toMatchObject({ tool: 'write', status: 'error' })
    expect(w.text).toMatch(new RegExp(`File ${real}/src/deep/x\\.ts is locked by another agent: agent \\S+ \\(session ses_\\w+\\)( \\[[^\\]]+\\])? has claimed the folder ${real}/src/, which contains it`))
    expect(fs.existsSync(path.join(dir, 'src/deep/x.ts'))).toBe(false)
    expect(listed).toMatchObject({ tool: 'file_locks', status: 'completed' })
    expect(listed.text).toMatch(/- src\/ \(claim: the folder and everything in it\): held by .* for \d+s/)

    // a third session waits for a file under the claim
    const waiter = run(h, dir, script(call('write', { filePath: 'src/app.ts', content: 'app' }), 'FINAL written'), { env: { ...env, FILE_LOCK_WAIT_MS: '60000' } })
    let waiting: any[] = []
    for (let i = 0; i < 200 && waiting.length === 0; i++) {
      await sleep(100)
      waiting = await listWaiters(store)
    }
    expect(waiting).toHaveLength(1)
    const waiterSession = waiting[0].sessionId
    open()

    const [claim, slow, readme] = toolResults(await claimant)
    expect(claim).toMatchObject({ tool: 'claim_files', status: 'completed' })
    expect(claim.text).toMatch(/^Claimed src\/ \(a folder claim covers everything inside\) until this turn ends/)
    expect(slow).toMatchObject({ tool: 'slow_write', status: 'completed' })
    expect(readme).toMatchObject({ tool: 'read', status: 'completed' })
    expect(readme.text).toContain(`[opencode-file-lock] agent `)
    expect(readme.text).toContain(`(session ${waiterSession}) is waiting for src/app.ts; finish with it or release it`)

    // the claimant's turn ended: its claim went, and the waiter wrote
    const [written] = toolResults(await waiter)
    expect(written).toMatchObject({ tool: 'write', status: 'completed' })
    expect(fs.readFileSync(path.join(dir, 'src/app.ts'), 'utf8')).toBe('app')
    expect((await listLocks(store)).filter((l) => l.path.startsWith(real))).toEqual([])
  })
})
