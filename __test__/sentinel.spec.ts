// Sentinel, with the deployment example of deploy/redis: one primary (with a password), one replica,
// three sentinels, all on loopback. After the primary is killed and the sentinels promote the
// replica, locks keep working.
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, describe, expect, it, vi } from 'vitest'
import { acquireLock, checkFresh, getLock, HybridCache, openCache, RedisCache, recordView, recordWrites, releaseLock, treeViews } from '../lib/index.js'
import { freePort, startCommand, startConfigured, startRedis, type RedisServer } from './helpers/redis-server'
import { redisCliRaw, sleep, tmpDir } from './helpers/tmp'

vi.setConfig({ testTimeout: 60_000 })
const PASSWORD = 'sentinel-test-secret'
const started: RedisServer[] = []
afterAll(async () => {
  for (const s of started.splice(0)) await s.stop()
})

describe('Redis Sentinel', () => {
  it('follows a failover: locks work again within the sentinel failover time', async () => {
    // the deployment example in deploy/redis, as written, on loopback
    const primary = await startConfigured('primary.conf', { PASSWORD })
    const replica = await startConfigured('replica.conf', { PASSWORD, PRIMARY_HOST: '127.0.0.1', PRIMARY_PORT: primary.port })
    started.push(primary, replica)
    const sentinelValues = { PASSWORD, MASTER: 'mymaster', PRIMARY_HOST: '127.0.0.1', PRIMARY_PORT: primary.port, DOWN_AFTER_MS: 500, FAILOVER_TIMEOUT_MS: 2000 }
    const sentinels = [await startConfigured('sentinel.conf', sentinelValues), await startConfigured('sentinel.conf', sentinelValues), await startConfigured('sentinel.conf', sentinelValues)]
    started.push(...sentinels)
    const cli = (port: number, ...a: string[]) => redisCliRaw(port, '-a', PASSWORD, '--no-auth-warning', ...a)
    for (let i = 0; i < 100 && !cli(replica.port, 'INFO', 'replication').includes('master_link_status:up'); i++) await sleep(50)

    const options = {
      sentinels: sentinels.map((s) => `127.0.0.1:${s.port}`),
      sentinelMaster: 'mymaster',
      password: PASSWORD,
      commandTimeoutMs: 500,
      maxRetries: 1,
      baseDelayMs: 50,
      maxDelayMs: 200,
      namespace: 'sentinel',
    }
    const cache = await RedisCache.connect(options)
    expect((await cache.healthCheck()).sentinelPrimary).toBe(`127.0.0.1:${primary.port}`)
    // no lost updates through Sentinel: tree A's view and B's later write of a file
    const f = path.join(tmpDir('ofl-sentinel-views-'), 'app.ts')
    fs.writeFileSync(f, 'v1\n')
    expect(await recordView(f, 'A', cache)).toBe(true)
    expect(await checkFresh([f], 'A', cache, { whole: true })).toMatchObject([{ ok: true, status: 'fresh' }])
    fs.writeFileSync(f, 'v2 from B\n')
    await recordWrites([f], { sessionId: 'B', agentId: 'agent-B', title: 'Fix login' }, cache)
    expect(await checkFresh([f], 'A', cache, { whole: true })).toMatchObject([{ ok: false, status: 'stale', byLastWrite: true, lastWrite: { sessionId: 'B', title: 'Fix login' } }])
    // WAIT for the replica, so this grant (and the view and version written before it) is on it before the primary dies
    const strict = await RedisCache.connect({ ...options, waitReplicas: 1 })
    const held = await acquireLock('/sentinel/held', 'a', 'before', strict)
    await strict.close()

    await primary.kill()
    const t = Date.now()
    let ok = false
    let errors = 0
    while (!ok && Date.now() - t < 30_000) {
      ok = await acquireLock('/sentinel/after', 'a', 'after', cache).then(() => true, () => (errors++, false))
      if (!ok) await sleep(100)
    }
    const recoveredMs = Date.now() - t
    console.log(`sentinel failover: locks work again ${recoveredMs} ms after the primary was killed (${errors} failed attempts)`)
    expect(ok).toBe(true)
    expect(recoveredMs).toBeLessThan(15_000)
    expect((await cache.healthCheck()).sentinelPrimary).toBe(`127.0.0.1:${replica.port}`)
    // the lock granted (and acknowledged by the replica) before the failover survived it
    expect(await getLock(held, cache)).toMatchObject({ sessionId: 'before' })
    await expect(acquireLock('/sentinel/held', 'b', 'intruder', cache)).rejects.toMatchObject({ code: 'ELOCKED' })
    expect(await releaseLock(held, 'before', cache)).toBe(true)
    // the view and the version came through the failover: A is still refused, naming B; B is not
    expect(await checkFresh([f], 'A', cache, { whole: true })).toMatchObject([{ ok: false, status: 'stale', byLastWrite: true, lastWrite: { sessionId: 'B', title: 'Fix login' } }])
    expect(await checkFresh([f], 'B', cache, { whole: true })).toMatchObject([{ ok: true, status: 'fresh' }])
    expect((await treeViews('A', cache)).map((v) => [v.path, v.fresh])).toEqual([[f, false]])
    await cache.close()

    // the same through the environment
    const viaEnv = await openCache({ env: { FILE_LOCK_CACHE_BACKEND: 'redis', REDIS_SENTINELS: sentinels.map((s) => `127.0.0.1:${s.port}`).join(','), REDIS_SENTINEL_MASTER: 'mymaster', REDIS_PASSWORD: PASSWORD } })
    expect((await viaEnv.healthCheck()).sentinelPrimary).toBe(`127.0.0.1:${replica.port}`)
    await viaEnv.close()
  })
})

describe('Sentinel options', () => {
  const cmds: { kill(): Promise<void> }[] = []
  afterAll(async () => {
    for (const c of cmds.splice(0)) await c.kill()
  })
  /** A primary on `port` and one sentinel on `sentinelPort` watching it (extra sentinel args appended). */
  async function primaryAndSentinel(port: number, sentinelPort: number, primaryArgs: string[] = [], sentinelArgs: string[] = []) {
    const dir = tmpDir('ofl-sent-')
    cmds.push(await startCommand(['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir, ...primaryArgs], /Ready to accept connections/))
    const conf = path.join(dir, 'sentinel.conf')
    fs.writeFileSync(conf, '')
    cmds.push(
      await startCommand(
        ['redis-server', conf, '--sentinel', '--port', String(sentinelPort), '--bind', '127.0.0.1', '--dir', dir, '--sentinel', 'monitor', 'opts', '127.0.0.1', String(port), '1', ...sentinelArgs],
        /Sentinel ID is|monitor master/,
      ),
    )
  }

  it('a hybrid configured with sentinels never talks to host/port, not even while no sentinel answers', async () => {
    const decoy = await startRedis()
    started.push(decoy)
    const [port, sentinelPort] = [await freePort(), await freePort()]
    const hybrid = await HybridCache.open({
      redis: { host: '127.0.0.1', port: decoy.port, sentinels: [`127.0.0.1:${sentinelPort}`], sentinelMaster: 'opts', commandTimeoutMs: 300, connectTimeoutMs: 300 },
      sledPath: tmpDir('ofl-sent-hy-'),
      namespace: 'sentopts',
      failMode: 'open',
      recheckMs: 200,
    })
    const p = await acquireLock('/sent/held.txt', 'a', 's1', hybrid) // on the fallback: no sentinel answers
    expect(hybrid.currentBackend()).toBe('sled')
    await primaryAndSentinel(port, sentinelPort)
    for (let i = 0; i < 100 && hybrid.currentBackend() !== 'redis'; i++) {
      await hybrid.get('poke')
      await sleep(100)
    }
    expect(hybrid.currentBackend()).toBe('redis')
    expect(redisCliRaw(port, 'EXISTS', `sentopts\u241F/sent/held.txt`)).toBe('1') // put back into the primary
    expect(redisCliRaw(decoy.port, 'DBSIZE')).toBe('0') // and host/port never saw a thing
    expect(await releaseLock(p, 's1', hybrid)).toBe(true)
    await hybrid.close()
  })

  it("a URL's user, password and database are kept when sentinels find the primary; the sentinels' own password is theirs", async () => {
    const [port, sentinelPort] = [await freePort(), await freePort()]
    await primaryAndSentinel(port, sentinelPort, [], ['--requirepass', 'sentinel-secret'])
    redisCliRaw(port, 'ACL', 'SETUSER', 'locker', 'on', '>url-pass/with@odd#chars', '~*', '&*', '+@all')
    // percent-encoded, as a URL must carry /, @ and #
    const url = 'redis://locker:url-pass%2Fwith%40odd%23chars@not-the-primary.invalid:1/3'
    const cache = await RedisCache.connect({ url, sentinels: [`127.0.0.1:${sentinelPort}`], sentinelMaster: 'opts', sentinelPassword: 'sentinel-secret' })
    const p = await acquireLock('/sent/url.txt', 'a', 's1', cache)
    expect(redisCliRaw(port, '-n', '3', 'EXISTS', '/sent/url.txt')).toBe('1') // no namespace given: the raw key
    expect(redisCliRaw(port, 'CLIENT', 'LIST')).toMatch(/user=locker/)
    await releaseLock(p, 's1', cache)
    await cache.close()
    // without the sentinels' password: refused, and neither password shows
    const e: any = await RedisCache.connect({ url, sentinels: [`127.0.0.1:${sentinelPort}`], sentinelMaster: 'opts', connectTimeoutMs: 1000 }).catch((e) => e)
    expect(e.code).toBe('EBACKEND')
    expect(e.message).toContain(`sentinel 127.0.0.1:${sentinelPort}`)
    for (const secret of ['url-pass', 'sentinel-secret', 'odd%23chars']) expect(e.message).not.toContain(secret)
  })
})
