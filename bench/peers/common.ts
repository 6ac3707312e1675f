// What every TypeScript peer shares with the native package, so the comparison is of the same work:
// path canonicalisation, the owner record, and the very same Lua scripts (read from src/stores/redis/lua).
import fs from 'node:fs'
import path from 'node:path'

const LUA = path.resolve(__dirname, '../../src/stores/redis/lua')
const lua = (name: string) => fs.readFileSync(path.join(LUA, name), 'utf8')
export const ACQUIRE_LUA = `${lua('common.lua')}\n${lua('acquire.lua')}`
export const RELEASE_LUA = `${lua('common.lua')}\n${lua('release.lua')}`
export const RELEASE_SESSION_LUA = `${lua('common.lua')}\n${lua('release_session.lua')}`

export const SEP = '\u241F'
export const INTERNAL = '\u241Eofl:'
export const key = (ns: string, p: string) => `${ns}${SEP}${p}`
export const fenceKey = (ns: string) => `${INTERNAL}fence:${ns}`
export const sessionKey = (ns: string, session: string) => `${INTERNAL}sess:${ns}${SEP}${session}`
export const ticketKey = (ns: string) => `${INTERNAL}ticket:${ns}`
/** Where release scripts announce a freed lock (database 0). */
export const CHANNEL = `${INTERNAL}released:0`

let attempts = 0
/** KEYS and ARGV of the acquire script for a request that does not wait (as the native store sends, with its attempt nonce). */
export function acquireCall(ns: string, paths: string[], sessionId: string, agentId: string, ttlMs: number): [string[], (string | number)[]] {
  return [
    [...paths.map((p) => key(ns, p)), fenceKey(ns), sessionKey(ns, sessionId), ticketKey(ns)],
    [sessionId, agentId, ttlMs, '', 0, 3000, `${process.pid}.${Date.now()}.${++attempts}`, ...paths],
  ]
}

/** KEYS and ARGV of the release script. */
export function releaseCall(ns: string, path: string, sessionId: string): [string[], (string | number)[]] {
  return [[key(ns, path), sessionKey(ns, sessionId)], [sessionId, path, CHANNEL]]
}

/** KEYS and ARGV of the release-a-session script. */
export function releaseSessionCall(ns: string, sessionId: string): [string[], (string | number)[]] {
  return [[sessionKey(ns, sessionId)], [`${ns}${SEP}`, sessionId, '', CHANNEL]]
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

/** Interprets the acquire script's reply as the native store does. */
export function acquireReply(reply: string[]): string[] {
  if (reply[0] === 'ok') return reply.slice(1).map((r) => JSON.parse(r).path)
  if (reply[0] === 'locked') throw new LockedError(reply[1], JSON.parse(reply[2]))
  throw new Error(`acquire: ${reply.join(' ')}`)
}
