// A real npm registry (verdaccio) on a free 127.0.0.1 port, in a temp folder, stopped by pid.
// This package's names (opencode-file-lock, opencode-file-lock-*) are served only from what the
// test publishes; anything else (@opencode-ai/plugin for opencode, @types/node) comes through to
// the registry this machine's npm uses, as a user's install would.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { freePort } from './redis-server'
import { tmpDir } from './tmp'

const REPO = path.resolve(__dirname, '../..')

export interface Registry {
  url: string
  /** An npm userconfig (.npmrc) pointing at the registry, with a token that lets the test publish. */
  npmrc: string
  /** npm and npx settings for a user of this registry (registry, a fresh cache). */
  env: Record<string, string>
  publish(dirOrTarball: string): void
  stop(): Promise<void>
}

export async function startRegistry(): Promise<Registry> {
  const root = tmpDir('ofl-registry-')
  const port = await freePort()
  const url = `http://127.0.0.1:${port}/`
  const upstream = execFileSync('npm', ['config', 'get', 'registry'], { encoding: 'utf8' }).trim()
  const ours = { access: '$all', publish: '$anonymous', unpublish: '$anonymous' }
  const config = {
    storage: path.join(root, 'storage'),
    auth: { htpasswd: { file: path.join(root, 'htpasswd'), max_users: -1 } },
    uplinks: { upstream: { url: upstream } },
    packages: { 'opencode-file-lock': ours, 'opencode-file-lock-*': ours, '**': { access: '$all', proxy: 'upstream' } },
    listen: `127.0.0.1:${port}`,
    max_body_size: '200mb',
    log: { type: 'stdout', format: 'pretty', level: 'warn' },
    publish: { allow_offline: true },
  }
  fs.writeFileSync(path.join(root, 'config.yaml'), JSON.stringify(config)) // YAML is a superset of JSON
  const npmrc = path.join(root, 'npmrc')
  fs.writeFileSync(npmrc, `registry=${url}\n//127.0.0.1:${port}/:_authToken=test-token\n`)
  const child: ChildProcess = spawn(process.execPath, [path.join(REPO, 'node_modules/verdaccio/bin/verdaccio'), '--config', path.join(root, 'config.yaml')], { stdio: ['ignore', 'pipe', 'pipe'] })
  let log = ''
  child.stdout!.on('data', (d) => (log += d))
  child.stderr!.on('data', (d) => (log += d))
  process.on('exit', () => child.exitCode === null && process.kill(child.pid!, 'SIGKILL'))
  const deadline = Date.now() + 30_000
  for (;;) {
    const up = await fetch(`${url}-/ping`).then((r) => r.ok, () => false)
    if (up) break
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`verdaccio did not start: ${log}`)
    await new Promise((r) => setTimeout(r, 100))
  }
  const env = { npm_config_userconfig: npmrc, npm_config_cache: path.join(root, 'npm-cache'), npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' }
  return {
    url,
    npmrc,
    env,
    publish(target) {
      execFileSync('npm', ['publish', target, '--access', 'public', '--ignore-scripts'], { env: { ...process.env, ...env }, encoding: 'utf8', stdio: 'pipe' })
    },
    async stop() {
      if (child.exitCode === null) {
        process.kill(child.pid!, 'SIGKILL')
        await new Promise((r) => child.once('exit', r))
      }
    },
  }
}
