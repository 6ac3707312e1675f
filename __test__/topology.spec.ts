// Redis deployments beyond a bare server, each started here on loopback: an ACL user, and a
// primary with a replica for WAIT (acknowledged grants).
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { acquireLock, openCache, RedisCache, releaseLock } from '../lib/index.js'
import { freePort, startRedis, type RedisServer } from './helpers/redis-server'
import { redisCliRaw, sleep, tmpDir } from './helpers/tmp'

/** A CA and a server certificate for 127.0.0.1, made with openssl for this test run. */
function makeCertificates(): { ca: string; cert: string; key: string } {
  const dir = tmpDir('ofl-tls-')
  const f = (n: string) => path.join(dir, n)
  const ssl = (...a: string[]) => execFileSync('openssl', a, { stdio: 'pipe' })
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=ofl-test-ca')
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1')
  fs.writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n')
  ssl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.pem'), '-days', '2', '-extfile', f('ext.cnf'))
  return { ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key') }
}

const servers: RedisServer[] = []
afterEach(async () => {
  for (const s of servers.splice(0)) {
    try { process.kill(s.pid, 'SIGCONT') } catch {}
    await s.stop()
  }
})
const server = async (extra: string[]) => {
  const s = await startRedis(extra)
  servers.push(s)
  return s
}

describe('Redis topologies', () => {
  it('an ACL user with a password, by options and by REDIS_URL; bad credentials never shown', async () => {
    const s = await server([])
    redisCliRaw(s.port, 'ACL', 'SETUSER', 'agent', 'on', '>agent-secret-1', '~*', '&*', '+@all')
    redisCliRaw(s.port, 'ACL', 'SETUSER', 'default', 'off')
    const c = await RedisCache.connect({ port: s.port, username: 'agent', password: 'agent-secret-1', namespace: 'acl' })
    const p = await acquireLock('/acl/file', 'a', 's', c)
    expect(await releaseLock(p, 's', c)).toBe(true)
    await c.close()
    const viaEnv = await openCache({ env: { FILE_LOCK_CACHE_BACKEND: 'redis', REDIS_URL: `redis://agent:agent-secret-1@127.0.0.1:${s.port}/0` } })
    await viaEnv.set('k', 1)
    expect(await viaEnv.get('k')).toBe(1)
    await viaEnv.close()
    const err = await RedisCache.connect({ port: s.port, username: 'agent', password: 'not-the-secret' }).catch((e) => e)
    expect(err.code).toBe('EBACKEND')
    expect(err.message).toContain('refused the credentials')
    expect(err.message).not.toContain('not-the-secret')
    expect((await RedisCache.connect({ port: s.port }).catch((e) => e)).code).toBe('EBACKEND') // default user is off
  })

  it('an ACL user without pub/sub rights still locks and waits (by polling, within about a second)', async () => {
    const s = await server([])
    redisCliRaw(s.port, 'ACL', 'SETUSER', 'nochan', 'on', '>nochan-secret', '~*', 'resetchannels', '+@all')
    const o = { port: s.port, username: 'nochan', password: 'nochan-secret', namespace: 'nochan' }
    const [a, b] = [await RedisCache.connect(o), await RedisCache.connect(o)]
    const p = await acquireLock('/nochan/file', 'a', 'holder', a)
    const waiting = acquireLock('/nochan/file', 'b', 'waiter', b, { waitMs: 5000 })
    await sleep(100)
    const t0 = performance.now()
    expect(await releaseLock(p, 'holder', a)).toBe(true) // the announcement is refused, the release is not
    expect(await waiting).toBe('/nochan/file')
    expect(performance.now() - t0).toBeLessThan(1500)
    await a.close()
    await b.close()
  })

  it('WAIT: a grant is acknowledged by the replica, or undone when the replica does not answer', async () => {
    const primary = await server([])
    const replica = await server(['--replicaof', '127.0.0.1', String(primary.port)])
    for (let i = 0; i < 100 && !redisCliRaw(replica.port, 'INFO', 'replication').includes('master_link_status:up'); i++) await sleep(50)
    const c = await RedisCache.connect({ port: primary.port, namespace: 'wait', waitReplicas: 1, waitTimeoutMs: 300 })
    const p = await acquireLock('/wait/file', 'a', 's1', c)
    expect(JSON.parse(redisCliRaw(replica.port, 'GET', `wait\u241F${p}`)).v.sessionId).toBe('s1')
    await releaseLock(p, 's1', c)
    process.kill(replica.pid, 'SIGSTOP')
    const t = performance.now()
    const err = await acquireLock('/wait/other', 'a', 's2', c).catch((e) => e)
    expect(err.code).toBe('EBACKEND')
    expect(err.message).toMatch(/only 0 of 1 replica\(s\) acknowledged it within 300 ms; it was released again/)
    expect(performance.now() - t).toBeLessThan(300 + 500)
    // undone: someone else can take it at once
    const other = await RedisCache.connect({ port: primary.port, namespace: 'wait' })
    expect(await acquireLock('/wait/other', 'b', 's3', other)).toBe('/wait/other')
    await other.close()
    await c.close()
  })

  it('TLS: rediss:// and tls: true with a CA the test made; an untrusted server is refused', async () => {
    const { ca, cert, key } = makeCertificates()
    const tlsPort = await freePort()
    await server(['--tls-port', String(tlsPort), '--tls-cert-file', cert, '--tls-key-file', key, '--tls-ca-cert-file', ca, '--tls-auth-clients', 'no'])
    const c = await RedisCache.connect({ host: '127.0.0.1', port: tlsPort, tls: true, tlsCaFile: ca, namespace: 'tls' })
    const p = await acquireLock('/tls/file', 'a', 's', c)
    expect((await c.healthCheck()).server).toBe(`redis (tls) 127.0.0.1:${tlsPort} db 0`)
    expect(await releaseLock(p, 's', c)).toBe(true)
    await c.close()
    const viaEnv = await openCache({ env: { FILE_LOCK_CACHE_BACKEND: 'redis', REDIS_URL: `rediss://127.0.0.1:${tlsPort}/0`, REDIS_TLS_CA: ca } })
    await viaEnv.set('k', 'over tls')
    expect(await viaEnv.get('k')).toBe('over tls')
    await viaEnv.close()
    const untrusted = await RedisCache.connect({ host: '127.0.0.1', port: tlsPort, tls: true, connectTimeoutMs: 2000 }).catch((e) => e)
    expect(['EBACKEND', 'ETIMEDOUT']).toContain(untrusted.code)
  })
})
