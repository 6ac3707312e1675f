// `opencode-file-lock watch`, driven as a person uses it: in a real terminal (tmux: send-keys,
// capture-pane) while locks, claims and waiters come and go, and as a stream of JSON events.
import { execFileSync, spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import readline from 'node:readline'
import { afterAll, describe, expect, it } from 'vitest'
import { acquireLock, HybridCache, RedisCache, releaseLock, SledCache, type Cache } from '../lib/index.js'
import { useRedis } from './helpers/backends'
import { redisCli, sleep, tmpDir } from './helpers/tmp'

const CLI = path.join(__dirname, '../bin/opencode-file-lock.js')
const sessions: string[] = []
afterAll(() => {
  for (const s of sessions) try { execFileSync('tmux', ['kill-session', '-t', s]) } catch {}
})

/** A tmux session running `watch` with these arguments and environment, 160x40. */
function tmuxWatch(args: string[], env: Record<string, string>) {
  const name = `ofl-watch-${process.pid}-${sessions.length}`
  sessions.push(name)
  const vars = Object.entries(env).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(' ')
  const cmd = `${vars} ${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} watch ${args.join(' ')}; echo "WATCH EXITED $?"; sleep 600`
  execFileSync('tmux', ['new-session', '-d', '-s', name, '-x', '160', '-y', '40', cmd])
  const screen = () => execFileSync('tmux', ['capture-pane', '-p', '-t', name], { encoding: 'utf8' })
  return {
    screen,
    keys: (...k: string[]) => execFileSync('tmux', ['send-keys', '-t', name, ...k]),
    /** The screen once `test` holds, within `ms` (else the last screen, for the message). */
    async until(test: (s: string) => boolean, ms = 3000): Promise<string> {
      const end = Date.now() + ms
      let s = screen()
      while (!test(s) && Date.now() < end) {
        await sleep(50)
        s = screen()
      }
      expect(test(s), `screen:\n${s}`).toBe(true)
      return s
    },
  }
}

/** A project folder (its .git marks it), and a file path inside it. */
function project() {
  const root = fs.realpathSync(tmpDir('ofl-watch-proj-'))
  fs.mkdirSync(path.join(root, '.git'))
  return { root, p: (rel: string) => path.join(root, rel) + (rel.endsWith('/') ? '/' : '') }
}

async function comeAndGo(open: () => Promise<Cache>, view: ReturnType<typeof tmuxWatch>) {
  const { root, p } = project()
  await view.until((s) => s.includes('q or Ctrl-C quits'))
  const c = await open()
  try {
    await acquireLock(p('src/'), 'build', 'ses_claimer', c, { reason: 'rename the\u001b[31m auth module' })
    await acquireLock(p('README.md'), 'build', 'ses_claimer', c)
    const waiting = acquireLock(p('src/app.ts'), 'plan', 'ses_waiter', c, { waitMs: 20_000 })
    waiting.catch(() => {}) // awaited below; a failed assertion before must not leave it unhandled
    let s = await view.until((x) => x.includes('WAIT') && x.includes('CLAIM'))
    expect(s).toContain(`${root}  (2 held, 1 waiting)`)
    expect(s).toMatch(/CLAIM\s+src\/\s+agent build \(session ses_claimer\)\s+held \d+s\s+expires in [45]m \d+s, for this reason: “rename the \[31m auth module”/)
    expect(s).toMatch(/HELD\s+README\.md\s+agent build \(session ses_claimer\)/)
    expect(s).toMatch(/WAIT\s+src\/app\.ts\s+agent plan \(session ses_waiter\)\s+waiting \d+s\s+for session ses_claimer \(src\/\)/)
    // ages move on between changes, without a change
    await view.until((x) => /CLAIM\s+src\/\s+agent build \(session ses_claimer\)\s+held [2-9]s/.test(x), 4000)
    await releaseLock(p('src/'), 'ses_claimer', c)
    await waiting
    s = await view.until((x) => !x.includes('CLAIM') && !x.includes('WAIT') && /HELD\s+src\/app\.ts\s+agent plan \(session ses_waiter\)/.test(x))
    expect(s).toContain('(2 held, 0 waiting)')
    await releaseLock(p('src/app.ts'), 'ses_waiter', c)
    await releaseLock(p('README.md'), 'ses_claimer', c)
    await view.until((x) => x.includes('nothing is locked, claimed or waited for'))
  } finally {
    await c.close()
  }
}

describe('watch in a terminal', () => {
  const server = useRedis()

  it('on sled: shows claims, holders and waiters per project as they come and go, and quits on q', async () => {
    const folder = tmpDir('ofl-watch-sled-')
    const view = tmuxWatch([], { FILE_LOCK_PATH: folder })
    await comeAndGo(() => SledCache.open({ path: folder, namespace: 'locks' }), view)
    view.keys('q')
    await view.until((s) => s.includes('WATCH EXITED 0'))
  })

  it('on Redis: the same, listing only when something changes, and quits on Ctrl-C', async () => {
    const view = tmuxWatch(['--backend', 'redis', '--redis-url', `redis://127.0.0.1:${server().port}`], {})
    await comeAndGo(() => RedisCache.connect({ port: server().port, namespace: 'locks' }), view)
    // idle: no listing at all (the waits hash is read once per look)
    const looks = () => Number(/cmdstat_hgetall:calls=(\d+)/.exec(redisCli(server().port, 'info', 'commandstats'))?.[1] ?? 0)
    const before = looks()
    await sleep(3000)
    expect(looks() - before).toBe(0)
    view.keys('C-c')
    await view.until((s) => s.includes('WATCH EXITED 0'))
  })
})

describe('watch --json', () => {
  const server = useRedis()

  for (const backend of ['sled', 'redis', 'hybrid'] as const) {
    it(`on ${backend}: a snapshot, then one event per change`, async () => {
      const folder = tmpDir('ofl-watch-json-')
      const url = `redis://127.0.0.1:${server().port}`
      const ns = `watch-${backend}-${Date.now()}`
      const flags = backend === 'sled' ? ['--path', folder] : backend === 'redis' ? ['--backend', 'redis', '--redis-url', url] : ['--backend', 'hybrid', '--redis-url', url, '--path', folder]
      const child = spawn(process.execPath, [CLI, 'watch', '--json', '--namespace', ns, ...flags], { stdio: ['ignore', 'pipe', 'pipe'] })
      const events: any[] = []
      readline.createInterface({ input: child.stdout! }).on('line', (l) => events.push(JSON.parse(l)))
      const seen = async (type: string, n = 1) => {
        for (let i = 0; i < 100 && events.filter((e) => e.type === type).length < n; i++) await sleep(30)
        return events.filter((e) => e.type === type)
      }
      expect(await seen('snapshot')).toHaveLength(1)
      const c = backend === 'sled' ? await SledCache.open({ path: folder, namespace: ns }) : backend === 'redis' ? await RedisCache.connect({ port: server().port, namespace: ns }) : await HybridCache.open({ redis: { port: server().port }, sledPath: folder, namespace: ns })
      try {
        await acquireLock('/j/src/', 'build', 'A', c)
        expect((await seen('acquired'))[0]).toMatchObject({ path: '/j/src/', claim: true, sessionId: 'A', agentId: 'build' })
        const w = acquireLock('/j/src/a.ts', 'plan', 'B', c, { waitMs: 10_000 })
        w.catch(() => {})
        expect((await seen('waiting'))[0]).toMatchObject({ sessionId: 'B', paths: ['/j/src/a.ts'], blockedBy: { sessionId: 'A', path: '/j/src/' } })
        await sleep(100)
        await releaseLock('/j/src/', 'A', c)
        await w
        expect((await seen('released'))[0]).toMatchObject({ path: '/j/src/', sessionId: 'A' })
        expect((await seen('stopped-waiting'))[0]).toMatchObject({ sessionId: 'B' })
        expect((await seen('acquired', 2))[1]).toMatchObject({ path: '/j/src/a.ts', sessionId: 'B' })
      } finally {
        await c.close()
      }
      const code = new Promise((r) => child.once('exit', r))
      child.kill('SIGINT')
      expect(await code).toBe(0)
    })
  }
})
