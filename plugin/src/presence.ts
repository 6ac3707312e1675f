// Every loaded instance of the plugin says so in the store: which opencode (and plugin API) loaded
// it, its process, project and store, and since when. The entry lives 30 s and is renewed every
// 10 s, so it is gone soon after its process ends or stops renewing (and at once when opencode
// disposes the plugin or exits normally). `opencode-file-lock doctor`
// reads these to tell a plugin that is configured from one that actually runs.
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { Core } from './core.ts'

type Lib = typeof import('../../lib/index.js')

/** How long an instance's entry lives unrenewed (FILE_LOCK_INSTANCE_TTL_MS, 1 s to 10 min; default 30 s); renewed every third of it. */
export function instanceTtlMs(env: NodeJS.ProcessEnv = process.env): number {
  const v = Number(env.FILE_LOCK_INSTANCE_TTL_MS)
  return Number.isInteger(v) && v >= 1000 && v <= 600_000 ? v : 30_000
}

/** What an instance says of itself (`<namespace>/instances`, keyed by `id`). */
export interface Instance {
  id: string
  /** The plugin API that loaded it: 1 (`server(input, options)`) or 2 (`setup(ctx)`). */
  api: 1 | 2
  opencode: string
  plugin: string
  pid: number
  host: string
  project: string
  store: string
  since: number
  seen: number
}

/** The version of the opencode binary running this process, from its package beside it, else ''. */
export function opencodeVersion(): string {
  try {
    // npm's opencode-ai ships the binary in opencode-<platform>/bin/opencode
    const pkg = JSON.parse(fs.readFileSync(path.join(path.dirname(process.execPath), '..', 'package.json'), 'utf8'))
    return typeof pkg?.name === 'string' && pkg.name.startsWith('opencode') && typeof pkg.version === 'string' ? pkg.version : ''
  } catch {
    return ''
  }
}

/** The store as people name it, with no secret: `sled <folder>`, `redis <host:port>`, ... */
export function storeLabel(lib: Lib, backend?: string): string {
  try {
    const cfg = lib.configFromEnv(process.env)
    const b = backend ?? cfg.backend
    if (b === 'sled') return `sled ${cfg.sledPath}`
    const r = cfg.redis
    let where = `${r.host}:${r.port}`
    if (r.cluster?.length) where = `cluster of ${r.cluster.length} node(s)`
    else if (r.sentinels?.length) where = `sentinel ${r.sentinelMaster}`
    else if (r.url) {
      try {
        const u = new URL(r.url)
        where = `${u.hostname}:${u.port || 6379}`
      } catch {
        where = 'REDIS_URL'
      }
    }
    return `${b} ${where}`
  } catch {
    return backend ?? 'unknown'
  }
}

function pluginVersion(): string {
  try {
    return JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version ?? ''
  } catch {
    return ''
  }
}

/** Announces this instance now and every 10 s until `stop()`, which takes the entry out. */
export function announce(lib: Lib, core: Core, o: { api: 1 | 2; opencodeVersion?: string; project: string }) {
  const id = `${os.hostname()}:${process.pid}:${crypto.randomBytes(4).toString('hex')}`
  const since = Date.now()
  const record = (): Instance => ({
    id,
    api: o.api,
    opencode: o.opencodeVersion || opencodeVersion() || 'unknown',
    plugin: pluginVersion(),
    pid: process.pid,
    host: os.hostname(),
    project: o.project,
    store: storeLabel(lib, core.settings.cacheBackend),
    since,
    seen: Date.now(),
  })
  let stopped = false
  const ttlMs = instanceTtlMs()
  const put = async () => {
    try {
      const c = await core.cache()
      if (!stopped) await c.withNamespace('instances').set(id, record(), { ttlMs })
    } catch (e: any) {
      core.log(`could not announce this plugin instance in the store: ${e?.code ?? ''} ${e?.message ?? e}`)
    }
  }
  const first = put()
  const timer = setInterval(put, Math.floor(ttlMs / 3))
  timer.unref?.()
  // an opencode that exits without disposing its plugins: take the entry out on the way (a store
  // in this process or its shared-store client does it within the call; else it expires in 30 s)
  const onExit = () => {
    if (stopped) return
    stopped = true
    core.cache().then((c) => c.withNamespace('instances').del(id)).catch(() => {})
  }
  process.once('exit', onExit)
  return {
    id,
    async stop(): Promise<void> {
      stopped = true
      clearInterval(timer)
      process.removeListener('exit', onExit)
      await first
      try {
        await (await core.cache()).withNamespace('instances').del(id)
        core.log(`this plugin instance (${id}) is no longer announced`)
      } catch (e: any) {
        core.log(`could not take this plugin instance out of the store (${e?.message ?? e}); its entry expires in ${ttlMs / 1000} s`)
      }
    },
  }
}
