// End-to-end on a Redis Cluster: opencode processes whose plugin is configured as a user would,
// FILE_LOCK_CACHE_BACKEND=redis and REDIS_CLUSTER_NODES, against a real six-node Cluster.
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { acquireLock, listLocks, RedisCache, releaseLock } from '../../lib/index.js'
import { startCluster, type RedisCluster } from '../helpers/redis-cluster'
import { lockKey, slot } from '../helpers/slots'
import { makeProject, run, startHarness, toolResults, waitForGate, type Harness, readFile } from './opencode'

vi.setConfig({ testTimeout: 120_000, hookTimeout: 180_000 })

const LOCKED = /File .* is locked by another agent: agent .* \(session ses_[^)]+\)( \[[^\]]+\])? has held it since .* the lock expires in/
const script = (...lines: string[]) => ['scripted turn', ...lines].join('\n')
const write = (file: string, content: string) => `CALL write ${JSON.stringify({ filePath: file, content })}`
const slowWrite = (file: string, content: string) => `CALL slow_write ${JSON.stringify({ filePath: file, content })}`
const read = (dir: string, file: string) => (fs.existsSync(path.join(dir, file)) ? fs.readFileSync(path.join(dir, file), 'utf8') : undefined)

let h: Harness
let cluster: RedisCluster
let cache: RedisCache // the test's own view of the lock store
const clusterEnv = () => ({ FILE_LOCK_CACHE_BACKEND: 'redis', REDIS_CLUSTER_NODES: cluster.urls.slice(0, 3).map((u) => u.replace('redis://', '')).join(','), FILE_LOCK_NAMESPACE: 'locks' })
const NO_WAIT = { FILE_LOCK_WAIT_MS: '0' }

beforeAll(async () => {
  ;[h, cluster] = await Promise.all([startHarness(), startCluster()])
  cache = await RedisCache.connect({ cluster: cluster.urls, namespace: 'locks' })
}, 180_000)

afterAll(async () => {
  await cache?.close()
  await cluster?.stop()
  await h?.stop()
})

describe('opencode run: separate processes sharing a Redis Cluster', () => {
  it('two processes race for one file: the second is refused naming the holder; then it can write', async () => {
    const dir = makeProject(h, 'cluster-race')
    const first = run(h, dir, script(slowWrite('race.txt', 'from process one\n'), 'FINAL one done'), { env: clusterEnv() })
    const openGate = await waitForGate(dir, 'race.txt')
    const holder = (await listLocks(cache)).find((r) => r.path.endsWith('race.txt'))
    expect(holder).toBeDefined()
    const second = await run(h, dir, script(write('race.txt', 'from process two\n'), 'FINAL two blocked'), { env: { ...clusterEnv(), ...NO_WAIT } })
    const [blocked] = toolResults(second)
    expect(blocked).toMatchObject({ tool: 'write', status: 'error' })
    expect(blocked.text).toMatch(LOCKED)
    expect(blocked.text).toContain(holder!.sessionId)
    expect(read(dir, 'race.txt')).toBeUndefined()
    openGate()
    expect(toolResults(await first)).toMatchObject([{ tool: 'slow_write', status: 'completed' }])
    const third = await run(h, dir, script(readFile('race.txt'), write('race.txt', 'from process two\n'), 'FINAL two done'), { env: clusterEnv() })
    expect(toolResults(third)).toMatchObject([{ tool: 'read', status: 'completed' }, { tool: 'write', status: 'completed' }])
    expect(read(dir, 'race.txt')).toBe('from process two\n')
    expect(await listLocks(cache)).toEqual([])
  })

  it('apply_patch over three files in different hash slots, one held by another session: none is written, none left locked', async () => {
    const dir = makeProject(h, 'cluster-patch')
    const files = ['a.txt', 'b.txt', 'c.txt']
    expect(new Set(files.map((f) => slot(lockKey('locks', path.join(dir, f))))).size).toBeGreaterThan(1)
    const held = await acquireLock(path.join(dir, 'c.txt'), 'someone-else', 'ses_other', cache)
    const patch = ['*** Begin Patch', ...files.flatMap((f) => [`*** Add File: ${f}`, `+${f[0]}`]), '*** End Patch'].join('\n')
    const r = await run(h, dir, script(`CALL apply_patch ${JSON.stringify({ patchText: patch })}`, 'FINAL patched'), { model: 'mock/gpt-5-mock', env: { ...clusterEnv(), ...NO_WAIT } })
    const [result] = toolResults(r)
    expect(result).toMatchObject({ tool: 'apply_patch', status: 'error' })
    expect(result.text).toMatch(/File .*c\.txt is locked by another agent: agent someone-else \(session ses_other\)/)
    for (const f of files) expect(read(dir, f)).toBeUndefined()
    // the slots granted before the refusal were given back
    expect((await listLocks(cache)).map((l) => l.sessionId)).toEqual(['ses_other'])
    await releaseLock(held, 'ses_other', cache)
    const again = await run(h, dir, script(`CALL apply_patch ${JSON.stringify({ patchText: patch })}`, 'FINAL patched'), { model: 'mock/gpt-5-mock', env: clusterEnv() })
    expect(toolResults(again)).toMatchObject([{ tool: 'apply_patch', status: 'completed' }])
    expect(files.map((f) => read(dir, f))).toEqual(['a\n', 'b\n', 'c\n'])
    expect(await listLocks(cache)).toEqual([])
  })
  it('a Cluster that does not answer: the write is refused and the file not written (fail closed)', async () => {
    const dir = makeProject(h, 'cluster-down')
    const r = await run(h, dir, script(write('x.txt', 'unlocked?\n'), 'FINAL done'), { env: { ...clusterEnv(), REDIS_CLUSTER_NODES: '127.0.0.1:1', REDIS_CONNECT_TIMEOUT: '500' } })
    const [result] = toolResults(r)
    expect(result).toMatchObject({ tool: 'write', status: 'error' })
    expect(result.text).toMatch(/could not lock x\.txt because the lock store is unavailable .*The write call was not run and the file was not changed/)
    expect(result.text).toContain('127.0.0.1:1')
    expect(read(dir, 'x.txt')).toBeUndefined()
  })
})
