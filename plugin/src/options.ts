// The plugin's settings: its options (from opencode's config, or a test) and the environment.
// A bad value is an error naming the option or variable; the plugin then refuses writes with it
// rather than letting opencode skip the plugin and write unlocked.
import os from 'node:os'
import type { Cache } from '../../lib/index.js'
import type { Scope } from './held.ts'
import { parseToolRules, type ToolRules } from './tools.ts'

export interface FileLockOptions {
  /** Recorded in every lock for people; locks are owned by opencode's sessionID. */
  agentId?: string
  /** Which store to open when no `cache` is given (default: FILE_LOCK_CACHE_BACKEND, else sled). */
  cacheBackend?: 'sled' | 'redis' | 'hybrid'
  /** A cache from this package to use (the plugin then never closes it). */
  cache?: Cache
  /** Lock lifetime; held locks are renewed while tools run (default: FILE_LOCK_TTL_MS, else 5 min). */
  ttlMs?: number
  /** Relative paths resolve against this folder (default: the project directory). */
  baseDir?: string
  /** `call` (default): held while one tool runs. `turn`: from a session's first write of a file until it goes idle. */
  scope?: Scope
  /** How long a tool waits for a held file before it is blocked (default: FILE_LOCK_WAIT_MS, else 5000; 0: block at once). */
  waitMs?: number
  /** Toasts in opencode's TUI when a write waits or is refused and when a lock is lost (default: FILE_LOCK_TOAST, else on). */
  toast?: boolean
  /** More tools that write, in FILE_LOCK_TOOLS's syntax (added to that variable's). */
  tools?: string
  /**
   * A write to a file that changed since its task last read it: `refuse` (default), `warn` (it goes
   * ahead, and the model is told what it overwrote) or `off` (no check). Default: FILE_LOCK_STALE.
   */
  stale?: StaleMode
}

export type StaleMode = 'refuse' | 'warn' | 'off'


export interface Settings {
  agentId: string
  cacheBackend?: 'sled' | 'redis' | 'hybrid'
  cache?: Cache
  ttlMs?: number
  baseDir: string
  scope: Scope
  waitMs: number
  renewal: boolean
  debug: boolean
  toast: boolean
  tools: ToolRules
  stale: StaleMode
  /** How long versions and views are kept (FILE_LOCK_VERSION_TTL_MS, default a day). */
  versionTtlMs: number
}

const OPTION_KEYS = ['agentId', 'cacheBackend', 'cache', 'redisCache', 'ttlMs', 'baseDir', 'scope', 'waitMs', 'toast', 'tools', 'stale'] as const
const STALE_MODES: StaleMode[] = ['refuse', 'warn', 'off']
const DAY_MS = 86_400_000
const MAX_WAIT_MS = 86_400_000 // the library's bound: a day
const MAX_TTL_MS = 2_147_483_647 // the library's bound: the longest a timer waits

const fail = (what: string, rule: string, got: unknown) => new Error(`opencode-file-lock: ${what} must be ${rule}, got ${JSON.stringify(got)}`)

/** A true/false environment variable, or undefined when unset. */
function flag(env: NodeJS.ProcessEnv, name: string): boolean | undefined {
  const v = env[name]?.trim().toLowerCase()
  if (v === undefined || v === '') return undefined
  if (['1', 'true', 'yes', 'on'].includes(v)) return true
  if (['0', 'false', 'no', 'off'].includes(v)) return false
  throw fail(name, 'true or false', env[name])
}

/** Whole milliseconds from `min` to `max`: the option if given, else the variable, else `fallback`. */
function millis(option: unknown, optionName: string, env: NodeJS.ProcessEnv, name: string, min: number, max: number, fallback: number | undefined): number | undefined {
  const rule = `a whole number of milliseconds from ${min} to ${max}`
  if (option !== undefined) {
    if (typeof option !== 'number' || !Number.isInteger(option) || option < min || option > max) throw fail(`option ${optionName}`, rule, option)
    return option
  }
  const v = env[name]?.trim()
  if (v === undefined || v === '') return fallback
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw fail(name, rule, env[name])
  return Number(v)
}

/**
 * The settings opencode's input (`directory`, ...) and config options ask for; a test may pass
 * the options in the input itself.
 */
export function settings(input: Record<string, unknown>, options: Record<string, unknown>, env: NodeJS.ProcessEnv): Settings {
  const opts: Record<string, unknown> = { ...(options ?? {}) }
  for (const k of OPTION_KEYS) if (input?.[k] !== undefined) opts[k] = input[k]
  for (const k of Object.keys(options ?? {})) {
    if (!(OPTION_KEYS as readonly string[]).includes(k)) throw new Error(`opencode-file-lock: unknown option ${JSON.stringify(k)} (it knows ${OPTION_KEYS.filter((o) => o !== 'redisCache').join(', ')})`)
  }
  const scope = opts.scope ?? (env.FILE_LOCK_SCOPE?.trim() || 'call')
  if (scope !== 'call' && scope !== 'turn') throw fail(opts.scope !== undefined ? 'option scope' : 'FILE_LOCK_SCOPE', "'call' or 'turn'", scope)
  const backend = opts.cacheBackend
  if (backend !== undefined && !['sled', 'redis', 'hybrid'].includes(backend as string)) throw fail('option cacheBackend', "'sled', 'redis' or 'hybrid'", backend)
  if (opts.toast !== undefined && typeof opts.toast !== 'boolean') throw fail('option toast', 'true or false', opts.toast)
  if (opts.tools !== undefined && typeof opts.tools !== 'string') throw fail('option tools', 'a string in FILE_LOCK_TOOLS syntax', opts.tools)
  const stale = opts.stale ?? (env.FILE_LOCK_STALE?.trim().toLowerCase() || 'refuse')
  if (!STALE_MODES.includes(stale as StaleMode)) throw fail(opts.stale !== undefined ? 'option stale' : 'FILE_LOCK_STALE', "'refuse', 'warn' or 'off'", opts.stale ?? env.FILE_LOCK_STALE)
  const fromEnv = parseToolRules(env.FILE_LOCK_TOOLS)
  const fromOption = parseToolRules(opts.tools as string | undefined, 'option tools')
  return {
    agentId: (opts.agentId as string | undefined) ?? env.FILE_LOCK_AGENT_ID ?? `opencode@${os.hostname()}:${process.pid}`,
    cacheBackend: backend as Settings['cacheBackend'],
    cache: (opts.cache ?? opts.redisCache) as Cache | undefined,
    ttlMs: millis(opts.ttlMs, 'ttlMs', env, 'FILE_LOCK_TTL_MS', 1, MAX_TTL_MS, undefined),
    baseDir: (opts.baseDir as string | undefined) ?? (input?.directory as string | undefined) ?? (input?.worktree as string | undefined) ?? process.cwd(),
    scope,
    waitMs: millis(opts.waitMs, 'waitMs', env, 'FILE_LOCK_WAIT_MS', 0, MAX_WAIT_MS, 5000)!,
    // ENABLE_LOCK_RENEWAL=false: a lock lives its TTL and no longer, however long the tool runs
    renewal: flag(env, 'ENABLE_LOCK_RENEWAL') ?? true,
    debug: flag(env, 'DEBUG_FILE_LOCK_CACHE') ?? flag(env, 'DEBUG_MODE') ?? false,
    toast: (opts.toast as boolean | undefined) ?? flag(env, 'FILE_LOCK_TOAST') ?? true,
    tools: { writes: new Map([...fromEnv.writes, ...fromOption.writes]), ignores: new Set([...fromEnv.ignores, ...fromOption.ignores]) },
    stale: stale as StaleMode,
    versionTtlMs: millis(undefined, 'versionTtlMs', env, 'FILE_LOCK_VERSION_TTL_MS', 1000, 30 * DAY_MS, DAY_MS)!,
  }
}
