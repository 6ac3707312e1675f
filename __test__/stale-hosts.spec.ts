// No lost updates across machines that share Redis and each have their own checkout: two "machines"
// here are processes in their own UTS and mount namespaces (their own host name, their own checkout
// bound at the same path), driving the built plugin's hooks. The comparison is always with the
// caller's own disk; a refusal names a writer only when this disk holds what that writer's recorded
// write left; views are per machine, so one path on two machines never shares a view.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { useRedis } from './helpers/backends'
import { tmpDir } from './helpers/tmp'

const WORKER = path.resolve(__dirname, 'helpers/host-worker.mjs')

describe('two machines sharing Redis, each with its own checkout at the same path', () => {
  const redis = useRedis()

  it('each compares with its own disk, names the other machine’s writer only when its disk holds that write, and keeps its own views', () => {
    const repo = tmpDir('ofl-hosts-repo-') // the path both checkouts are at
    const checkout = { 'host-a': tmpDir('ofl-hosts-a-'), 'host-b': tmpDir('ofl-hosts-b-') }
    for (const dir of Object.values(checkout)) for (const f of ['f1.ts', 'f2.ts', 'f3.ts', 'f4.ts']) fs.writeFileSync(path.join(dir, f), `${f} v1\n`)
    const on = (host: 'host-a' | 'host-b', ops: object[]): string[] => {
      const r = spawnSync('unshare', ['--uts', '--mount', 'sh', '-c', `hostname ${host} && mount --bind "$CHECKOUT" "$REPO" && exec "$NODE" "$WORKER" "$PORT" "$REPO"`], {
        encoding: 'utf8',
        timeout: 60_000,
        env: { ...process.env, OPS: JSON.stringify(ops), CHECKOUT: checkout[host], REPO: repo, NODE: process.execPath, WORKER, PORT: String(redis().port) },
      })
      if (r.status !== 0) throw new Error(`${host} failed (${r.status}): ${r.stderr}`)
      return JSON.parse(r.stdout.trim().split('\n').pop()!)
    }
    expect(on('host-a', [{ session: 'A', read: 'f1.ts' }, { session: 'A', read: 'f2.ts' }, { session: 'A', read: 'f3.ts' }, { session: 'X', read: 'f4.ts' }])).toEqual(['read', 'read', 'read', 'read'])
    expect(on('host-b', [{ session: 'B', read: 'f1.ts' }, { session: 'B', write: 'f1.ts', content: 'f1 from B\n' }, { session: 'B', read: 'f3.ts' }, { session: 'B', write: 'f3.ts', content: 'f3 from B\n' }])).toEqual(['read', 'wrote', 'read', 'wrote'])
    // B's writes changed B's disk, not A's: A's own file is as A saw it, so A's write lands
    expect(on('host-a', [{ session: 'A', write: 'f3.ts', content: 'f3 from A\n' }])).toEqual(['wrote'])
    // A's checkout gets B's f1 (a pull) and a hand edit of f2: both refused, B named only for f1
    fs.writeFileSync(path.join(checkout['host-a'], 'f1.ts'), 'f1 from B\n')
    fs.writeFileSync(path.join(checkout['host-a'], 'f2.ts'), 'f2 edited by hand\n')
    const [f1, f2] = on('host-a', [{ session: 'A', write: 'f1.ts', content: 'f1 from A\n' }, { session: 'A', write: 'f2.ts', content: 'f2 from A\n' }])
    expect(f1).toMatch(/^refused: opencode-file-lock refused this write call: f1\.ts changed since you read it: the session “Fix login” \(agent build\) on host-b wrote it \d+s ago\./)
    expect(f2).toMatch(/^refused: opencode-file-lock refused this write call: f2\.ts changed since you read it: it was changed on disk outside any agent at \d\d:\d\d:\d\d/)
    expect(fs.readFileSync(path.join(checkout['host-a'], 'f1.ts'), 'utf8')).toBe('f1 from B\n')
    // X read f4 on host-a; host-b's f4 (the same content) was never read there by X: a view does not cross machines
    const [f4] = on('host-b', [{ session: 'X', write: 'f4.ts', content: 'f4 from X\n' }])
    expect(f4).toMatch(/^refused: .*f4\.ts exists and you have not read it: writing it whole would replace what is in it\./)
    expect(fs.readFileSync(path.join(checkout['host-b'], 'f4.ts'), 'utf8')).toBe('f4.ts v1\n')
    // the shared path itself was never written: each machine wrote its own checkout
    expect(fs.readdirSync(repo)).toEqual([])
  })
})
