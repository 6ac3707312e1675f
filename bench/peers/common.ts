// What every TypeScript peer shares with the native package, so the comparison is of the same work:
// path canonicalisation, the owner record, the store's key layout on one server (hash tags, the
// session's one index; __test__/helpers/slots.ts mirrors src/stores/redis/keys.rs) and the very
// same Lua scripts (read from src/stores/redis/lua), called with the arguments the store sends.
import fs from 'node:fs'
import path from 'node:path'
import { cancelledKey, fenceKey, lockKey, queueInfoKey, queueKey, sessionIndexKey, ticketKey, wholeKeys } from '../../__test__/helpers/slots'

const LUA = path.resolve(__dirname, '../../src/stores/redis/lua')
const lua = (name: string) => fs.readFileSync(path.join(LUA, name), 'utf8')
export const ACQUIRE_LUA = `${lua('common.lua')}\n${lua('acquire.lua')}`
export const RELEASE_LUA = `${lua('common.lua')}\n${lua('release.lua')}`
export const RELEASE_SESSION_LUA = `${lua('common.lua')}\n${lua('release_session.lua')}`

export const key = lockKey
/** Where release scripts announce a freed lock (database 0). */
export const CHANNEL = '\u241Eofl:released:0'
/** How long a waiter's queue entry lives without renewal (src/core/wait.rs). */
const WAITER_LEASE_MS = 3000

/** A new grant's record as the client sends it: its JSON without the closing brace, keys sorted
 * (the script adds the server's timestamp, token and expiry). */
function recordHead(sessionId: string, agentId: string, p: string, nonce: string): string {
  return JSON.stringify({ agentId, holdCount: 1, nonce, path: p, sessionId }).slice(0, -1)
}

let attempts = 0
/** KEYS and ARGV of the acquire script for a request that does not wait, as the native store sends them. */
export function acquireCall(ns: string, paths: string[], sessionId: string, agentId: string, ttlMs: number): [string[], string[]] {
  const nonce = `${process.pid}.${Date.now()}.${++attempts}`
  const keys: string[] = []
  for (const p of paths) keys.push(key(ns, p), queueKey(ns, p), queueInfoKey(ns, p), fenceKey(ns, p), sessionIndexKey(ns, sessionId), ticketKey(ns, p))
  const w = wholeKeys(ns)
  keys.push(cancelledKey(ns, paths[0], nonce), w.claims, w.waits, w.epoch, w.recovering, w.watching)
  const args = [sessionId, agentId, String(ttlMs), '', '0', String(WAITER_LEASE_MS), nonce, `${ns}\u241F`, CHANNEL, '0', '', ...paths, ...paths.map((p) => recordHead(sessionId, agentId, p, nonce))]
  return [keys, args]
}

/** The epoch marker a store plants when it first connects (epoch.lua: only if missing). */
export const EPOCH_MARKER: [string, string] = [wholeKeys('').epoch, `peer-${process.pid}`]

/** KEYS and ARGV of the release script. */
export function releaseCall(ns: string, p: string, sessionId: string): [string[], string[]] {
  const w = wholeKeys(ns)
  return [[key(ns, p), sessionIndexKey(ns, sessionId), queueKey(ns, p), w.waits, w.watching], [sessionId, p, CHANNEL]]
}

/** KEYS and ARGV of the release-a-session script. */
export function releaseSessionCall(ns: string, sessionId: string): [string[], string[]] {
  const w = wholeKeys(ns)
  return [[sessionIndexKey(ns, sessionId), w.waits, w.watching], [`${ns}\u241F`, sessionId, '', CHANNEL]]
}

/** path.resolve, symlinks of the longest existing prefix resolved, NFC: what normalizePath does. */
export function normalizePath(input: string, baseDir = process.cwd()): string {
  if (!input || input.includes('\0')) throw Object.assign(new Error('bad path'), { code: 'EINVAL' })
  const full = path.resolve(baseDir, input.normalize('NFC'))
  let prefix = full
  const rest: string[] = []
  for (;;) {
    try {
      return path.join(fs.realpathSync.native(prefix), ...rest.reverse()).normalize('NFC')
    } catch {
      const parent = path.dirname(prefix)
      if (parent === prefix) return full
      rest.push(path.basename(prefix))
      prefix = parent
    }
  }
}

export class LockedError extends Error {
  code = 'ELOCKED'
  constructor(public path: string, public holder: any) {
    super(`File ${path} is locked by another agent: agent ${holder?.agentId} (session ${holder?.sessionId})`)
  }
}

/** Interprets the acquire script's reply as the native store does: the paths granted. */
export function acquireReply(reply: string[], paths: string[]): string[] {
  if (reply[0] === 'granted') return paths
  if (reply[0] === 'ok') return reply.slice(1).map((r) => JSON.parse(r).path)
  if (reply[0] === 'locked') throw new LockedError(reply[1], JSON.parse(reply[2]))
  throw new Error(`acquire: ${reply.join(' ')}`)
}
