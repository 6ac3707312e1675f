'use strict'
// `opencode-file-lock watch`: who holds, claims and waits for which files, per project, kept up to
// date as it happens. The store announces every change (cache.onChange); each announcement brings
// a fresh look (one listing), and the differences between two looks are the events `--json`
// prints. Between looks, ages move on by this process's monotonic clock from the store's `now`,
// so no client clock is ever compared with a record. Besides announcements, it looks again when
// a lock's expiry comes (expiries announce nothing) and, while someone waits, every few seconds
// (a waiter that died leaves silently when its lease runs out).
const fs = require('node:fs')
const path = require('node:path')
const L = require('./index.js')
const { oneLine, holderText, reasonText } = require('./text.js')

const WAITER_RELOOK_MS = 3000
const TICK_MS = 1000

const ago = (ms) => {
  const s = Math.max(0, Math.round(ms / 1000))
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`
}

/** The project a path belongs to: the nearest folder above it with .git or .opencode, else its folder. */
function projectFinder() {
  const known = new Map()
  const marked = (dir) => {
    if (!known.has(dir)) known.set(dir, ['.git', '.opencode'].some((m) => fs.existsSync(path.join(dir, m))))
    return known.get(dir)
  }
  return (p) => {
    const start = p.endsWith('/') ? p.slice(0, -1) || '/' : path.dirname(p)
    for (let dir = start; ; dir = path.dirname(dir)) {
      if (marked(dir)) return dir
      if (dir === path.dirname(dir)) return start
    }
  }
}

const lockKey = (l) => `${l.path}\0${l.token}`
/** What a lock record says of its holder besides its ids (kind, reason, title, agentName), as given. */
const holderFields = (l) => Object.fromEntries(['kind', 'reason', 'title', 'agentName'].filter((k) => typeof l[k] === 'string').map((k) => [k, l[k]]))
const waitKey = (w) => `${w.sessionId}\0${w.paths.join('\0')}`

/** What changed between two looks, as events (store clock `now` of the later look). */
function diff(prev, next) {
  const events = []
  const at = next.now
  const before = new Map(prev.locks.map((l) => [lockKey(l), l]))
  const after = new Map(next.locks.map((l) => [lockKey(l), l]))
  for (const [k, l] of after) {
    if (!before.has(k)) events.push({ type: 'acquired', at, path: l.path, claim: l.path.endsWith('/'), sessionId: l.sessionId, agentId: l.agentId, ...holderFields(l), token: l.token, expiresAt: l.expiresAt })
  }
  for (const [k, l] of before) {
    if (!after.has(k)) events.push({ type: l.expiresAt > 0 && l.expiresAt <= at ? 'expired' : 'released', at, path: l.path, claim: l.path.endsWith('/'), sessionId: l.sessionId, agentId: l.agentId, token: l.token, heldMs: at - l.timestamp })
  }
  const wb = new Map(prev.waiters.map((w) => [waitKey(w), w]))
  const wa = new Map(next.waiters.map((w) => [waitKey(w), w]))
  for (const [k, w] of wa) if (!wb.has(k)) events.push({ type: 'waiting', at, sessionId: w.sessionId, agentId: w.agentId, paths: w.paths, blockedBy: w.blockedBy })
  for (const [k, w] of wb) if (!wa.has(k)) events.push({ type: 'stopped-waiting', at, sessionId: w.sessionId, agentId: w.agentId, paths: w.paths, waitedMs: at - w.since })
  return events
}

/** The view: a header, then per project its holders, claims and waiters with their ages. */
function render(snap, storeNow, header, projectOf) {
  const groups = new Map()
  const group = (p) => {
    const g = projectOf(p)
    if (!groups.has(g)) groups.set(g, { locks: [], waiters: [] })
    return groups.get(g)
  }
  for (const l of snap.locks) group(l.path).locks.push(l)
  for (const w of snap.waiters) group(w.paths[0]).waiters.push(w)
  const rel = (root, p) => {
    const r = path.relative(root, p)
    return r === '' ? './' : r.startsWith('..') ? p : p.endsWith('/') ? `${r}/` : r
  }
  const lines = [header, `${snap.locks.length} held, ${snap.waiters.length} waiting · store clock ${new Date(storeNow).toISOString().slice(11, 19)} UTC`, '']
  if (groups.size === 0) lines.push('  nothing is locked, claimed or waited for')
  for (const [root, g] of [...groups].sort(([a], [b]) => a.localeCompare(b))) {
    lines.push(`${root}  (${g.locks.length} held, ${g.waiters.length} waiting)`)
    const rows = []
    for (const l of g.locks.sort((a, b) => a.path.localeCompare(b.path))) {
      const left = l.expiresAt > 0 ? `expires in ${ago(l.expiresAt - storeNow)}` : 'no expiry'
      rows.push([l.path.endsWith('/') ? 'CLAIM' : 'HELD', oneLine(rel(root, l.path), 4096), holderText(l), `held ${ago(storeNow - l.timestamp)}`, `${left}${reasonText(l)}`])
    }
    for (const w of g.waiters) {
      const by = w.blockedBy.sessionId ? `for session ${oneLine(w.blockedBy.sessionId)}${w.blockedBy.path ? ` (${oneLine(rel(root, w.blockedBy.path), 4096)})` : ''}` : ''
      rows.push(['WAIT', w.paths.map((p) => oneLine(rel(root, p), 4096)).join(', '), holderText(w), `waiting ${ago(storeNow - w.since)}`, by])
    }
    const widths = rows.reduce((w, r) => r.map((c, i) => Math.max(w[i] ?? 0, c.length)), [])
    for (const r of rows) lines.push(`  ${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ')}`)
    lines.push('')
  }
  return lines.join('\n')
}

/**
 * Runs the watch on `cache` until `q`, Ctrl-C, SIGTERM or `stop()`. `json`: one JSON event per
 * line (a `snapshot` first) instead of the view. Resolves when it has stopped.
 */
function watch(cache, { json = false, out = process.stdout, input = process.stdin, describe = '' } = {}) {
  const projectOf = projectFinder()
  const tty = !json && out.isTTY
  let snap
  let seenAt = 0 // performance.now() when `snap` was read
  let looking = false
  let again = false
  let relook
  let stopped = false
  let finish
  const done = new Promise((r) => (finish = r))
  const emit = (e) => out.write(`${JSON.stringify(e)}\n`)
  const storeNow = () => snap.now + (performance.now() - seenAt)
  const header = `opencode-file-lock watch · ${describe || cache.currentBackend?.() || 'store'} · namespace ${cache.namespace || '(none)'} · q or Ctrl-C quits`
  const draw = () => {
    if (!snap || json) return
    const view = render(snap, storeNow(), header, projectOf)
    out.write(tty ? `\x1b[H\x1b[2J${view}\n` : `${view}\n`)
  }

  const look = async () => {
    if (stopped) return
    if (looking) {
      again = true
      return
    }
    looking = true
    try {
      const next = await L.lockSnapshot(cache)
      if (stopped) return
      if (json) {
        if (!snap) emit({ type: 'snapshot', at: next.now, locks: next.locks, waiters: next.waiters })
        else for (const e of diff(snap, next)) emit(e)
      }
      const changed = !snap || diff(snap, next).length > 0
      snap = next
      seenAt = performance.now()
      if (changed || tty) draw()
      schedule()
    } catch (e) {
      if (json) emit({ type: 'error', code: e.code, message: e.message })
      else out.write(`${tty ? '\x1b[H\x1b[2J' : ''}${header}\n\ncannot read the locks: ${e.code ? `[${e.code}] ` : ''}${e.message}; trying again\n`)
      clearTimeout(relook)
      relook = setTimeout(look, 2000)
    } finally {
      looking = false
      if (again && !stopped) {
        again = false
        look()
      }
    }
  }
  // the next look that no announcement brings: the earliest expiry, or a waiter's lease
  const schedule = () => {
    clearTimeout(relook)
    const now = snap.now
    const waits = [...snap.locks.map((l) => l.expiresAt - now).filter((ms) => ms > 0), ...(snap.waiters.length ? [WAITER_RELOOK_MS] : [])]
    if (waits.length) relook = setTimeout(look, Math.min(...waits) + 30)
  }

  const off = cache.onChange(() => look())
  const ticker = tty ? setInterval(draw, TICK_MS) : undefined
  // the change feed does not keep the process alive by itself (a library's must not): this does
  const alive = setInterval(() => {}, 1 << 30)
  const stop = () => {
    if (stopped) return
    stopped = true
    off()
    clearInterval(ticker)
    clearInterval(alive)
    clearTimeout(relook)
    process.off('SIGINT', stop)
    process.off('SIGTERM', stop)
    if (tty) out.write('\x1b[?25h\x1b[?1049l') // the cursor and the screen as they were
    if (input.isTTY) {
      input.setRawMode(false)
      input.pause()
    }
    input.off('data', onKey)
    finish()
  }
  const onKey = (d) => {
    const k = String(d)
    if (k === 'q' || k === 'Q' || k === '\u0003' || k === '\u0004') stop()
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  if (input.isTTY) input.setRawMode(true)
  input.on('data', onKey)
  input.resume()
  if (tty) out.write('\x1b[?1049h\x1b[?25l') // a screen of its own, no cursor
  look()
  return { done, stop }
}

module.exports = { watch, diff, render, projectFinder }
