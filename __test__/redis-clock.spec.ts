// Expiry is decided by Redis's clock, never a client's: clients whose clocks run 400 s ahead or
// behind (libfaketime on a child process) lock, expire, sweep and read exactly as one whose clock
// is right.
import { execFileSync } from 'node:child_process'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { acquireLock, getLock, RedisCache, releaseLock, type Cache } from '../lib/index.js'
import { useRedis } from './helpers/backends'
import { fenceKey } from './helpers/slots'
import { startLockProcess, type LockProcess } from './helpers/lock-process'
import { redisCliRaw, sleep } from './helpers/tmp'

vi.setConfig({ testTimeout: 30_000 })
const SEP = '\u241F'
// the timers of a skewed process keep real time: only its wall clock is off
const skewed = (offset: string) => ({ prefix: ['faketime', '-f', offset], env: { ...process.env, FAKETIME_DONT_FAKE_MONOTONIC: '1' } })

describe('clocks on other machines', () => {
  const redis = useRedis()
  let cache: Cache
  let ahead: LockProcess
  let behind: LockProcess
  const serverMs = () => {
    const [s, us] = redisCliRaw(redis().port, 'TIME').split('\n').map(Number)
    return s * 1000 + Math.floor(us / 1000)
  }
  beforeAll(async () => {
    cache = await RedisCache.connect({ port: redis().port, namespace: 'clock' })
    const cfg = { backend: 'redis', redis: { port: redis().port }, namespace: 'clock' }
    ;[ahead, behind] = await Promise.all([startLockProcess(cfg, skewed('+400s')), startLockProcess(cfg, skewed('-400s'))])
    // the children really are skewed
    expect((await ahead.call('now')) - Date.now()).toBeGreaterThan(390_000)
    expect(Date.now() - (await behind.call('now'))).toBeGreaterThan(390_000)
  })
  afterAll(async () => {
    await Promise.all([ahead?.kill(), behind?.kill()])
    await cache?.close()
  })

  it('a client 400 s ahead cannot take a file another holds for 300 s; its refusal counts on the server clock', async () => {
    const p = await acquireLock('/clock/held.txt', 'right', 'ses-right', cache, { ttlMs: 300_000 })
    const e = await ahead.call('acquire', '/clock/held.txt', 'ses-ahead').catch((e: any) => e)
    expect(e.code).toBe('ELOCKED')
    expect(e.holder.sessionId).toBe('ses-right')
    expect(e.message).toMatch(/\(\d+ms ago\); the lock expires in 4m 59s/)
    expect(await releaseLock(p, 'ses-right', cache)).toBe(true)
  })

  it('a client 400 s behind makes locks that expire at their TTL on the server clock, not 400 s later', async () => {
    const before = serverMs()
    await behind.call('acquire', '/clock/behind.txt', 'ses-behind', { ttlMs: 1500 })
    const rec = await getLock('/clock/behind.txt', cache)
    expect(rec!.timestamp).toBeGreaterThanOrEqual(before)
    expect(rec!.timestamp).toBeLessThan(before + 1000)
    expect(rec!.expiresAt - rec!.timestamp).toBe(1500)
    const pttl = Number(redisCliRaw(redis().port, 'PTTL', `clock${SEP}/clock/behind.txt`))
    expect(pttl).toBeGreaterThan(1000)
    expect(pttl).toBeLessThanOrEqual(1500)
    // the holder's own renewal pushes it out on the server clock too
    const renewed = await behind.call('renew', '/clock/behind.txt', 'ses-behind', { ttlMs: 1500 })
    expect(renewed.expiresAt).toBeLessThan(serverMs() + 1600)
    await sleep(1700)
    expect(await getLock('/clock/behind.txt', cache)).toBeUndefined()
    await expect(acquireLock('/clock/behind.txt', 'right', 'ses-right', cache)).resolves.toBe('/clock/behind.txt')
    await releaseLock('/clock/behind.txt', 'ses-right', cache)
  })

  it('a sweep from a client 400 s ahead deletes no live entry, and still deletes a dead one', async () => {
    const p = await acquireLock('/clock/live.txt', 'right', 'ses-right', cache, { ttlMs: 300_000 })
    await cache.set('value', { keep: true }, { ttlMs: 60_000 })
    // an entry an old client wrote without a Redis TTL, dead by the server's clock
    redisCliRaw(redis().port, 'SET', `clock${SEP}dead`, JSON.stringify({ v: 'gone', x: serverMs() - 10 }))
    expect(await ahead.call('sweep')).toBe(1)
    expect(await getLock(p, cache)).toMatchObject({ sessionId: 'ses-right' })
    expect(await cache.get('value')).toEqual({ keep: true })
    expect(redisCliRaw(redis().port, 'EXISTS', `clock${SEP}dead`)).toBe('0')
    // and what a skewed client reads is what the server says is live
    expect(await ahead.call('cacheGet', 'value')).toEqual({ keep: true })
    expect(await behind.call('cacheGet', 'value')).toEqual({ keep: true })
    await releaseLock(p, 'ses-right', cache)
  })

  it("a waiter 400 s behind is served when the holder's short lock runs out on the server clock", async () => {
    await acquireLock('/clock/wait.txt', 'right', 'ses-right', cache, { ttlMs: 800 })
    const t = Date.now()
    const got = await behind.call('acquire', '/clock/wait.txt', 'ses-behind', { waitMs: 5000 })
    expect(got).toBe('/clock/wait.txt')
    expect(Date.now() - t).toBeLessThan(2500)
    await behind.call('release', '/clock/wait.txt', 'ses-behind')
  })

  it('fencing tokens come from the server (its counter, floored at its clock), whoever asks', async () => {
    const a = await ahead.call('acquire', '/clock/token.txt', 'ses-ahead')
    const t1 = (await getLock(a, cache))!.token
    await ahead.call('release', a, 'ses-ahead')
    await behind.call('acquire', '/clock/token.txt', 'ses-behind')
    const t2 = (await getLock('/clock/token.txt', cache))!.token
    expect(t2).toBeGreaterThan(t1)
    // microseconds of the server clock: a lost counter still hands out larger tokens
    expect(Math.abs(t2 / 1000 - serverMs())).toBeLessThan(60_000)
    expect(execFileSync('redis-cli', ['-p', String(redis().port), 'GET', fenceKey('clock', '/clock/token.txt')], { encoding: 'utf8' }).trim()).toBe(String(t2))
    await behind.call('release', '/clock/token.txt', 'ses-behind')
  })
})
