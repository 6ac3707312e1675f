#!/usr/bin/env node
'use strict'
// The operator's command line: status, list, release --force, sweep, metrics, migrate, rollback,
// demo, and install-plugin. Every command takes --json. Exit codes: 0 done, 1 the operation failed
// (store unreachable, unhealthy, verification failed, nothing to release), 2 bad usage, 3 refused
// (release without --force).
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const ROOT = path.resolve(__dirname, '..')
const { PKG } = require('../lib/platform.js')
const { oneLine, holderText, reasonText } = require('../lib/text.js')

const HELP = `usage: opencode-file-lock <command> [options] [--json]
       opencode-file-lock --version

commands:
  status                      which store serves, and its health (exit 1 when unhealthy), then
                              doctor's checks of the chain (as information)
      --project <dir> | --global   --opencode <binary>
  list                        who holds and claims what, since when, expiring when, and who waits
      --session <id>  --agent <id>  --prefix <path>
  watch                       a live view of holders, claims and waiters per project, updated as
                              they change; q or Ctrl-C quits. --json: one event per line instead
  release <path> --force      delete a lock whoever holds it (a path ending in / is a folder's
                              claim); refused without --force (exit 3)
      --by <name>             who forced it (default: user@host), kept in the audit namespace
  sweep                       delete expired entries; prints how many
  metrics                     Prometheus text of this process's counters and the live lock count
  migrate --from leveldb:<folder>|redis://...|sled:<folder> --to redis://...|sled:<folder>
                              copy live entries with their remaining TTL, then verify every key
  rollback [--from redis://...] [--to sled:<folder>]
                              migrate Redis back to sled (defaults: REDIS_URL and FILE_LOCK_PATH)
  backup --to <file.json> [--from <store>]
                              write every live entry with its remaining TTL to a file (default
                              store: the configured one); verified by reading the file back
  restore --from <file.json> [--to <store>]
                              write a backup's entries back with the TTLs they had left; entries
                              already there unchanged are not written again
  --version                   print the version
  demo                        simulated agents contending for files on a temporary sled folder
  install-plugin              set up the opencode plugin for the opencode on PATH (1 or 2)
      --project <dir> | --global   --from <npm spec> (again: more packages beside it, e.g. a
      platform tarball)   --opencode <binary>   --no-npm   --force
  doctor                      check the chain: opencode and its version, the plugin configured for
                              it, the native addon, the store, and a running opencode that loaded it
      --project <dir> | --global   --opencode <binary>
  lock <path...>              hold files or folders (a folder: everything in it) for yourself
                              (user@host): agents' writes there are refused, naming you and the reason
      --reason <text>   --ttl <duration> (e.g. 90m, 2h; default 1h)
  unlock <path...>            let go of what lock took
  install-hooks claude-code   merge the hooks into Claude Code's settings, so its writes take the
                              same locks (--remove takes them out; other settings are kept)
      --project <dir> | --global   --remove
  hook claude-code            what those hooks run: one Claude Code hook event as JSON on stdin
  serve                       the fleet's metrics (summed over every process that reports to the
                              store) at /metrics, /healthz, and a live page of holders and waiters
      --host <addr> (default 127.0.0.1)   --port <n> (default 9464)   --token <secret> (needed
      when not on loopback; or FILE_LOCK_SERVE_TOKEN)
  mcp                         a stdio MCP server with lock tools for any MCP client (list, claim,
                              release, check a file)

store options (status, list, watch, release, sweep, metrics; default: the environment, see README):
  --backend sled|redis|hybrid   --path <sled folder>   --redis-url <url>   --namespace <ns>

examples:
  npx opencode-file-lock status --json
  npx opencode-file-lock list --prefix /home/me/repo --json
  npx opencode-file-lock watch
  npx opencode-file-lock release /home/me/repo/src/app.ts --force --by ops-oncall
  npx opencode-file-lock migrate --from leveldb:/tmp/opencode/file-locks --to redis://127.0.0.1:6379
  npx opencode-file-lock rollback --from redis://127.0.0.1:6379 --to sled:/var/lib/file-locks
  npx opencode-file-lock backup --to locks-backup.json
  npx opencode-file-lock install-plugin --global
  npx opencode-file-lock doctor --project ~/code/app
  npx opencode-file-lock lock src/auth/ --reason "rewriting the login flow" --ttl 2h
  npx opencode-file-lock install-hooks claude-code --project .
`

class UsageError extends Error {}

/** --flag value / --flag / positional, with the flags each command accepts (`repeated`: given as a list). */
function parseArgs(argv, valueFlags, boolFlags, repeated = []) {
  const o = { _: [] }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (!a.startsWith('--')) o._.push(a)
    else if (valueFlags.includes(a.slice(2))) {
      if (i + 1 >= argv.length) throw new UsageError(`${a} needs a value`)
      const k = a.slice(2)
      if (repeated.includes(k)) (o[k] ??= []).push(argv[++i])
      else o[k] = argv[++i]
    } else if (boolFlags.includes(a.slice(2))) o[a.slice(2)] = true
    else throw new UsageError(`unknown option ${a}`)
  }
  return o
}

const STORE_FLAGS = ['backend', 'path', 'redis-url', 'namespace']

function openFromFlags(o) {
  const L = require('../lib/index.js')
  const overrides = {}
  if (o.backend) overrides.backend = o.backend
  if (o.path) overrides.path = o.path
  if (o.namespace) overrides.namespace = o.namespace
  if (o['redis-url']) overrides.redis = { url: o['redis-url'] }
  return L.openCache(overrides)
}

/** Opens the store the flags (or the environment) name, runs `fn` on it, and always closes it. */
async function withStore(o, fn) {
  const cache = await openFromFlags(o)
  try {
    return await fn(cache)
  } finally {
    await cache.close()
  }
}

function print(o, json, human) {
  if (json) console.log(JSON.stringify(o, null, 2))
  else console.log(human(o))
}

const ago = (ms) => {
  const s = Math.round(Math.abs(ms) / 1000)
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`
}

const commands = {
  async status(argv) {
    const o = parseArgs(argv, [...STORE_FLAGS, 'project', 'opencode'], ['json', 'global'])
    if (o.global && o.project) throw new UsageError('choose --project or --global, not both')
    const { doctor, render } = require('../lib/doctor.js')
    return withStore(o, async (cache) => {
      const health = await cache.healthCheck()
      // the plugin instances running opencodes announced in this store (doctor checks the rest)
      const plugins = []
      for await (const [, i] of cache.withNamespace('instances').entries({ limit: 1000 })) plugins.push(`opencode ${oneLine(i?.opencode)} (plugin API ${i?.api}), pid ${i?.pid}, ${oneLine(i?.project, 4096)}`)
      const r = { namespace: cache.namespace, ...health, plugins: plugins.length ? plugins : 'none loaded by a running opencode (the checks below say why)' }
      // and the chain doctor checks (opencode, the plugin configured for it, the addon, this store, a
      // running opencode that loaded it), as information: the exit code says whether the store is healthy
      const chain = await doctor({ project: o.project, global: o.global, opencode: o.opencode, cache })
      print({ ...r, checks: chain.checks }, o.json, (h) => `${Object.entries(h).filter(([k]) => k !== 'checks').map(([k, v]) => `${k.padEnd(16)} ${typeof v === 'object' ? JSON.stringify(v) : v}`).join('\n')}\n\n${render(chain)}`)
      return health.healthy ? 0 : 1
    })
  },

  async list(argv) {
    const o = parseArgs(argv, [...STORE_FLAGS, 'session', 'agent', 'prefix'], ['json'])
    const L = require('../lib/index.js')
    return withStore(o, async (cache) => {
      // ages by the store's clock, which dated the records
      const { now, locks: all, waiters: allWaiters } = await L.lockSnapshot(cache)
      const wanted = (sessionId, agentId) => (!o.session || sessionId === o.session) && (!o.agent || agentId === o.agent)
      const locks = all.filter((r) => wanted(r.sessionId, r.agentId) && (!o.prefix || r.path.startsWith(o.prefix))).sort((a, b) => a.path.localeCompare(b.path))
      const waiters = allWaiters.filter((w) => wanted(w.sessionId, w.agentId) && (!o.prefix || w.paths.some((p) => p.startsWith(o.prefix))))
      print(locks, o.json, (ls) =>
        [
          ls.length === 0 ? 'no locks held' : '',
          ...ls.map((r) => `${oneLine(r.path, 4096)}${r.path.endsWith('/') ? '  (claim: the folder and everything in it)' : ''}\n    held by ${holderText(r)} since ${new Date(r.timestamp).toISOString()} (${ago(now - r.timestamp)} ago)${reasonText(r)}, expires in ${ago(r.expiresAt - now)}, token ${r.token}`),
          ...waiters.map((w) => `waiting: ${holderText(w)} for ${w.paths.map((p) => oneLine(p, 4096)).join(', ')} for ${ago(w.waitedMs)}, held up by session ${oneLine(w.blockedBy.sessionId || 'unknown')}${w.blockedBy.path ? ` on ${oneLine(w.blockedBy.path, 4096)}` : ''}`),
        ].filter(Boolean).join('\n'),
      )
      return 0
    })
  },

  async watch(argv) {
    const o = parseArgs(argv, STORE_FLAGS, ['json'])
    const cache = await openFromFlags(o)
    try {
      const health = await cache.healthCheck().catch(() => ({}))
      const where = health.folder ? `sled ${health.folder}` : health.server ? `redis ${health.server}` : health.backend === 'hybrid' ? `hybrid (serving from ${health.currentBackend})` : cache.currentBackend?.()
      await require('../lib/watch.js').watch(cache, { json: o.json, describe: where }).done
    } finally {
      await cache.close()
    }
    return 0
  },

  async release(argv) {
    const o = parseArgs(argv, [...STORE_FLAGS, 'by'], ['json', 'force'])
    if (o._.length !== 1) throw new UsageError('release takes one path')
    const L = require('../lib/index.js')
    const file = L.normalizePath(o._[0])
    if (!o.force) {
      print({ released: false, path: file, reason: 'refused without --force' }, o.json, () => `refused: releasing ${file} takes the lock from whoever holds it; pass --force if you mean it`)
      return 3
    }
    return withStore(o, async (cache) => {
      // one atomic step, announced so that the holder's onLost listeners hear of it at once
      const holder = await L.forceRelease(file, cache)
      if (!holder) {
        print({ released: false, path: file, reason: 'no lock held' }, o.json, () => `no lock is held on ${file}`)
        return 1
      }
      const audit = { path: file, holder, forcedBy: o.by ?? `${os.userInfo().username}@${os.hostname()}`, at: new Date().toISOString() }
      // who forced what stays on record for 30 days, beside the locks
      await cache.withNamespace('audit').set(`forced-release:${Date.now()}:${file}`, audit, { ttlMs: 30 * 24 * 3600 * 1000 })
      console.error(`[opencode-file-lock] forced release of ${file} (held by agent ${holder.agentId}, session ${holder.sessionId}) by ${audit.forcedBy}`)
      print({ released: true, ...audit }, o.json, (a) => `released ${a.path}, which agent ${holder.agentId} (session ${holder.sessionId}) held; recorded as forced by ${a.forcedBy}`)
      return 0
    })
  },

  async sweep(argv) {
    const o = parseArgs(argv, STORE_FLAGS, ['json'])
    return withStore(o, async (cache) => {
      const swept = await cache.sweepExpired()
      print({ swept }, o.json, (r) => `deleted ${r.swept} expired entr${r.swept === 1 ? 'y' : 'ies'}`)
      return 0
    })
  },

  async metrics(argv) {
    const o = parseArgs(argv, STORE_FLAGS, ['json'])
    return withStore(o, async (cache) => {
      print({ text: await cache.metrics() }, o.json, (r) => r.text.trimEnd())
      return 0
    })
  },

  async migrate(argv, defaults = {}, verb = 'migrate') {
    const o = parseArgs(argv, ['from', 'to'], ['json'])
    const { migrate } = require('../lib/migrate.js')
    const from = o.from ?? defaults.from
    const to = o.to ?? defaults.to
    if (!from || !to) throw new UsageError(`${verb} needs --from and --to`)
    const t = Date.now()
    const r = await migrate({ from, to, progress: (c) => console.error(`[opencode-file-lock] ${verb}: read ${c.read}, written ${c.written}, unchanged ${c.unchanged}, skipped ${c.skipped}, failed ${c.failed}...`) })
    r.seconds = (Date.now() - t) / 1000
    print(r, o.json, (c) =>
      [
        `read ${c.read}, written ${c.written}, unchanged ${c.unchanged}, skipped (expired) ${c.skipped}, failed ${c.failed} in ${c.seconds.toFixed(1)} s`,
        `verification: ${c.verified} read back equal, ${c.mismatched} different; the target now holds ${c.targetEntries} entries`,
        ...c.failures.map((f) => `  failed: ${f.key}: ${f.error}`),
      ].join('\n'),
    )
    return r.failed === 0 && r.mismatched === 0 ? 0 : 1
  },

  async backup(argv) {
    const o = parseArgs(argv, ['from', 'to'], ['json'])
    if (!o.to) throw new UsageError('backup needs --to <file.json>')
    return commands.migrate([...argv.filter((a, i) => a !== '--to' && argv[i - 1] !== '--to'), '--to', `json:${o.to}`], { from: 'env' }, 'backup')
  },

  async restore(argv) {
    const o = parseArgs(argv, ['from', 'to'], ['json'])
    if (!o.from) throw new UsageError('restore needs --from <file.json>')
    return commands.migrate([...argv.filter((a, i) => a !== '--from' && argv[i - 1] !== '--from'), '--from', `json:${o.from}`], { to: 'env' }, 'restore')
  },

  async rollback(argv) {
    const L = require('../lib/index.js')
    // read the REDIS_* variables even where the configured backend is sled
    const c = L.configFromEnv({ ...process.env, FILE_LOCK_CACHE_BACKEND: 'redis' })
    const redis = c.redis.url ?? `redis://${c.redis.host}:${c.redis.port}/${c.redis.database}`
    return commands.migrate(argv, { from: redis, to: `sled:${c.sledPath}` })
  },

  async demo() {
    return spawnSync(process.execPath, [path.join(ROOT, 'examples/demo.js')], { stdio: 'inherit' }).status ?? 1
  },

  async 'install-plugin'(argv) {
    const o = parseArgs(argv, ['project', 'from', 'opencode'], ['global', 'no-npm', 'force', 'json'], ['from'])
    if (o.global && o.project) throw new UsageError('choose --project or --global, not both')
    try {
      return require('../lib/install-plugin.js').installPlugin({ project: o.project, global: o.global, from: o.from ?? [], npm: !o['no-npm'], force: o.force, opencode: o.opencode })
    } catch (e) {
      if (e.usage) throw new UsageError(e.message)
      throw e
    }
  },

  async lock(argv) {
    const o = parseArgs(argv, [...STORE_FLAGS, 'reason', 'ttl'], ['json'])
    if (o._.length === 0) throw new UsageError('lock takes one or more paths')
    const { lockForPerson, person } = require('../lib/people.js')
    return withStore(o, async (cache) => {
      const r = await lockForPerson(o._, { reason: o.reason, ttl: o.ttl }, cache)
      print(r, o.json, (x) => `${x.paths.map((p) => `locked ${oneLine(p, 4096)}`).join('\n')}\n  for ${person().owner}${x.reason ? ` (reason: “${oneLine(x.reason)}”)` : ''} until ${new Date(x.expiresAt).toISOString()}; agents' writes there are refused until you run unlock`)
      return 0
    })
  },

  async unlock(argv) {
    const o = parseArgs(argv, STORE_FLAGS, ['json'])
    if (o._.length === 0) throw new UsageError('unlock takes one or more paths')
    const { unlockForPerson } = require('../lib/people.js')
    return withStore(o, async (cache) => {
      const r = await unlockForPerson(o._, cache)
      print(r, o.json, (x) => x.results.map((e) => (e.released ? `unlocked ${oneLine(e.path, 4096)}` : `not unlocked ${oneLine(e.path, 4096)}: ${e.why}`)).join('\n'))
      return r.results.every((e) => e.released) ? 0 : 1
    })
  },

  async 'install-hooks'(argv) {
    const o = parseArgs(argv, ['project'], ['global', 'remove', 'json'])
    if (o._[0] !== 'claude-code' || o._.length !== 1) throw new UsageError('install-hooks takes the client to hook: install-hooks claude-code')
    try {
      const r = require('../lib/claude-hooks.js').installClaudeHooks({ project: o.project, global: o.global, remove: o.remove, out: o.json ? () => {} : console.log })
      if (o.json) console.log(JSON.stringify(r, null, 2))
      return 0
    } catch (e) {
      if (e.usage) throw new UsageError(e.message)
      throw e
    }
  },

  async hook(argv) {
    if (argv[0] !== 'claude-code' || argv.length !== 1) throw new UsageError('hook takes the client whose hook event is on stdin: hook claude-code')
    // exit 1 would let Claude Code run the call unlocked: every failure here is exit 2, saying why
    let r
    try {
      const text = await readStdin(64 << 20, 10_000)
      const { runClaudeHook } = await import('../plugin/dist/claude-code.js')
      r = await runClaudeHook(text)
    } catch (e) {
      r = { exit: 2, stderr: redact(`opencode-file-lock could not run its Claude Code hook (${e?.message ?? e}); the call was not run`) }
    }
    if (r.stdout) process.stdout.write(r.stdout + '\n')
    if (r.stderr) process.stderr.write(r.stderr + '\n')
    return r.exit
  },

  async serve(argv) {
    const o = parseArgs(argv, [...STORE_FLAGS, 'host', 'port', 'token'], [])
    const port = o.port === undefined ? 9464 : Number(o.port)
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be a port number, got ${JSON.stringify(o.port)}`)
    const cache = await openFromFlags(o)
    let server
    try {
      server = await require('../lib/serve.js').serve(cache, { host: o.host ?? '127.0.0.1', port, token: o.token ?? process.env.FILE_LOCK_SERVE_TOKEN })
    } catch (e) {
      await cache.close()
      if (e.usage) throw new UsageError(e.message)
      throw e
    }
    const { address, port: bound } = server.address()
    console.log(`serving http://${address.includes(':') ? `[${address}]` : address}:${bound}/ (metrics at /metrics, health at /healthz); Ctrl-C stops`)
    await new Promise((resolve) => {
      for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, resolve)
    })
    server.close()
    await cache.close()
    return 0
  },

  // not in the help: started by the Claude Code hook (plugin/src/claude-code.ts, keepServing)
  async 'hook-keeper'(argv) {
    const o = parseArgs(argv, ['path'], [])
    if (!o.path) throw new UsageError('hook-keeper needs --path')
    const L = require('../lib/index.js')
    const idleMs = Number(process.env.FILE_LOCK_HOOK_KEEPER_IDLE_MS) > 0 ? Number(process.env.FILE_LOCK_HOOK_KEEPER_IDLE_MS) : 600_000
    const touch = path.join(o.path, 'hook-keeper.touch')
    const cache = await L.openCache({ backend: 'sled', path: o.path })
    try {
      // another process serves the folder already: nothing to keep
      if ((await cache.healthCheck()).shared?.role !== 'server') return 0
      for (;;) {
        await new Promise((r) => setTimeout(r, Math.min(5000, idleMs)))
        let last = 0
        try {
          last = fs.statSync(touch).mtimeMs
        } catch {}
        const h = await cache.healthCheck().catch(() => ({}))
        if (Date.now() - last > idleMs && !(h.shared?.clients > 0)) return 0
      }
    } finally {
      await cache.close()
    }
  },

  async mcp(argv) {
    parseArgs(argv, STORE_FLAGS, [])
    const { serveMcp } = await import('../plugin/dist/mcp.js')
    await serveMcp(argv)
    return null
  },

  async doctor(argv) {
    const o = parseArgs(argv, ['project', 'opencode'], ['global', 'json'])
    if (o.global && o.project) throw new UsageError('choose --project or --global, not both')
    const { doctor, render } = require('../lib/doctor.js')
    const r = await doctor({ project: o.project, global: o.global, opencode: o.opencode })
    print(r, o.json, render)
    return r.ok ? 0 : 1
  },
}

async function main() {
  const [command, ...rest] = process.argv.slice(2)
  if (command === '--version' || command === '-v' || command === '-V' || command === 'version') {
    console.log(`${PKG.name} ${PKG.version}`)
    return 0
  }
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    console.log(HELP)
    return command ? 0 : 2
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(HELP)
    return 0
  }
  const run = commands[command]
  if (!run) throw new UsageError(`unknown command ${command}`)
  return run(rest)
}

/** Standard input as text, at most `max` bytes, within `ms` (a hook must never hang on a stalled pipe). */
function readStdin(max, ms) {
  return new Promise((resolve, reject) => {
    const chunks = []
    let size = 0
    const timer = setTimeout(() => reject(new Error(`no complete input on stdin within ${ms} ms`)), ms)
    process.stdin.on('data', (c) => {
      size += c.length
      if (size > max) {
        clearTimeout(timer)
        reject(new Error(`the input on stdin is over ${max} bytes`))
        process.stdin.destroy()
      } else chunks.push(c)
    })
    process.stdin.on('end', () => {
      clearTimeout(timer)
      resolve(Buffer.concat(chunks).toString('utf8'))
    })
    process.stdin.on('error', (e) => {
      clearTimeout(timer)
      reject(e)
    })
  })
}

/** No message shows a password, whatever threw it (the native core's own are redacted already). */
function redact(text) {
  try {
    return require('../lib/migrate.js').redact(text)
  } catch {
    return String(text).replace(/:\/\/([^:@\s]*):[^\s]*@/g, '://$1:***@') // the addon is missing: a rougher cut
  }
}

/** Exits once stdout and stderr have written everything (a pipe takes large outputs in pieces). */
function exit(code) {
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)))
}

main().then(
  (code) => code !== null && exit(code ?? 0),
  (e) => {
    if (e instanceof UsageError) {
      console.error(`opencode-file-lock: ${e.message}\n\n${HELP}`)
      return exit(2)
    }
    console.error(redact(`opencode-file-lock: ${e.code ? `[${e.code}] ` : ''}${e.message}`))
    exit(e.code === 'EINVAL' ? 2 : 1)
  },
)
