'use strict'
// Locks people take by hand (`opencode-file-lock lock` / `unlock`): held in the same table as
// agents' locks, by `user@host` (kind `human`), with a reason and a TTL. Agents' writes there are
// refused naming the person and the reason; `list` and `watch` show them like any holder.
const fs = require('node:fs')
const os = require('node:os')

const DEFAULT_TTL_MS = 3_600_000
const MAX_TTL_MS = 2_147_483_647 // the library's bound (about 24.8 days)
const UNITS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** Who runs this: the owner people see (`user@host`) and the session their locks live in. */
function person() {
  let user = process.env.USER || process.env.USERNAME || 'someone'
  try {
    user = os.userInfo().username || user
  } catch {}
  const owner = `${user}@${os.hostname()}`
  return { owner, sessionId: `human:${owner}` }
}

function usage(message) {
  const e = new Error(message)
  e.code = 'EINVAL'
  return e
}

/** `90m`, `2h`, `1h30m`, `45s`, `2d` or plain milliseconds, as milliseconds. */
function parseDuration(text) {
  const t = String(text).trim()
  if (/^\d+$/.test(t)) return Number(t)
  const compact = t.replace(/\s+/g, '')
  if (!/^(\d+(\.\d+)?(ms|s|m|h|d))+$/.test(compact)) throw usage(`--ttl must be a duration such as 90m, 2h or 1h30m, got ${JSON.stringify(text)}`)
  const parts = [...compact.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)]
  return Math.round(parts.reduce((ms, p) => ms + Number(p[1]) * UNITS[p[2]], 0))
}

/** A path as the lock table has it: a folder (given with or without its /) is claimed whole. */
function lockPath(L, p) {
  const n = L.normalizePath(p)
  if (n.endsWith('/')) return n
  try {
    if (fs.statSync(n).isDirectory()) return `${n}/`
  } catch {}
  return p.endsWith('/') ? `${n}/` : n
}

/** Locks `paths` for the person running this; refused (ELOCKED, naming the holder) when someone holds one. */
async function lockForPerson(paths, { reason, ttl } = {}, cache) {
  const L = require('./index.js')
  const ttlMs = ttl === undefined ? DEFAULT_TTL_MS : parseDuration(ttl)
  if (!(ttlMs >= 1000 && ttlMs <= MAX_TTL_MS)) throw usage(`--ttl must be from 1s to 24 days, got ${JSON.stringify(ttl)}`)
  if (reason !== undefined && (typeof reason !== 'string' || !reason.trim())) throw usage('--reason needs a text')
  const me = person()
  const wanted = paths.map((p) => lockPath(L, p))
  const got = await L.acquireLocks(wanted, me.owner, me.sessionId, cache, { ttlMs, kind: 'human', title: me.owner, ...(reason ? { reason } : {}) })
  const recs = await Promise.all(got.map((p) => L.getLock(p, cache)))
  return { paths: got, owner: me.owner, reason: reason ?? null, expiresAt: Math.max(...recs.map((r) => r?.expiresAt ?? 0)) }
}

/** Lets go of what `lock` took on `paths` (every hold, however many times it was locked). */
async function unlockForPerson(paths, cache) {
  const L = require('./index.js')
  const me = person()
  const results = []
  for (const p of paths) {
    const path = lockPath(L, p)
    const rec = await L.getLock(path, cache)
    if (!rec) {
      results.push({ path, released: false, why: 'nothing is locked there' })
      continue
    }
    if (rec.sessionId !== me.sessionId) {
      results.push({ path, released: false, why: `it is held by ${require('./text.js').holderText(rec)}, not by you (release --force takes it from them)` })
      continue
    }
    let released = false
    for (let i = 0; i < 1000 && (await L.releaseLock(path, me.sessionId, cache)); i++) released = true
    results.push({ path, released, ...(released ? {} : { why: 'it was released meanwhile' }) })
  }
  return { owner: me.owner, results }
}

module.exports = { person, parseDuration, lockForPerson, unlockForPerson }
