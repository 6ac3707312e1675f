'use strict'
// Store-wide metrics: every long-lived process that locks (the opencode plugin, a library user that
// asks) adds its counters to the store it uses, and `opencode-file-lock serve` sums them, so one
// scrape sees the fleet. Each process writes the whole of its counters and histograms every few
// seconds under its own key (host, pid, start), so a process that dies loses at most its last few
// seconds of counts and the rest stays; the entries expire 30 days after their last write. Gauges are
// not summed: serve reads them live from the store. Agent ids lose their process number, so label
// values stay bounded by hosts and kinds of agent.
const os = require('node:os')

const NAMESPACE = 'fleet-metrics'
/** Recent refusals, deadlocks and stale writes, for serve's page (kept an hour). */
const EVENTS = 'fleet-events'
const EVENT_KEEP_MS = 3_600_000
const EVERY_MS = 5000
const KEEP_MS = 30 * 24 * 3600 * 1000
/** A process counts as live in `file_lock_fleet_processes` while it reported this recently. */
const LIVE_MS = 30_000

/** Prometheus text as {meta: name -> {help, type}, samples: [[name{labels}, value]]}. */
function parse(text) {
  const meta = new Map()
  const samples = []
  for (const line of String(text).split('\n')) {
    let m
    if ((m = /^# HELP (\S+) (.*)$/.exec(line))) meta.set(m[1], { ...meta.get(m[1]), help: m[2] })
    else if ((m = /^# TYPE (\S+) (\S+)$/.exec(line))) meta.set(m[1], { ...meta.get(m[1]), type: m[2] })
    else if ((m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$/.exec(line))) samples.push([`${m[1]}${m[2] ?? ''}`, Number(m[3])])
  }
  return { meta, samples }
}

/** The family a sample belongs to (a histogram's _bucket, _sum and _count are its family's). */
function familyOf(sample, meta) {
  const name = sample.replace(/\{.*$/, '')
  if (meta.has(name)) return name
  const base = name.replace(/_(bucket|sum|count)$/, '')
  return meta.has(base) ? base : name
}

/** `agent_id="opencode@host:4242"` -> `agent_id="opencode@host"`: one value per host and kind of agent. */
function bounded(sample) {
  return sample.replace(/agent_id="([^"]*?):\d+"/g, 'agent_id="$1"')
}

/** Counters kept in JavaScript (what only the plugin sees), reported with the native ones. */
const LOCAL_META = new Map([['file_lock_stale_refusals_total', { help: 'Writes refused because the file changed since the writer last saw it, by kind of writer.', type: 'counter' }]])
const local = new Map()

/** Adds one to a counter kept here (`labels`: Prometheus label text without braces). */
function count(name, labels = '') {
  const k = `${name}${labels ? `{${labels}}` : ''}`
  local.set(k, (local.get(k) ?? 0) + 1)
}

/** Records what happened for serve's page: a refusal, a deadlock, a stale write (text from agents made one line when shown). */
async function recordEvent(cache, event) {
  const at = Date.now()
  await cache.withNamespace(EVENTS).set(`${at}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`, { at, ...event }, { ttlMs: EVENT_KEEP_MS })
}

/** The last `n` events, newest first. */
async function recentEvents(cache, n = 50) {
  const out = []
  for await (const [, e] of cache.withNamespace(EVENTS).entries({ limit: 10_000 })) if (e && typeof e === 'object') out.push(e)
  return out.sort((a, b) => b.at - a.at).slice(0, n)
}

/** This process's counters and histograms, summed by their bounded labels. */
function snapshot(text) {
  const { meta, samples } = parse(text)
  for (const [k, v] of LOCAL_META) meta.set(k, v)
  samples.push(...local)
  const out = new Map()
  for (const [s, v] of samples) {
    const type = meta.get(familyOf(s, meta))?.type
    if (type !== 'counter' && type !== 'histogram') continue
    const k = bounded(s)
    out.set(k, (out.get(k) ?? 0) + v)
  }
  return [...out]
}

/**
 * Starts writing this process's counters to `cache`'s store every `everyMs` (and once more when
 * stopped). Returns the stop function. Never throws: a store that is down only delays the report.
 */
function startReporting(cache, { everyMs = EVERY_MS } = {}) {
  const key = `${os.hostname()}:${process.pid}:${Date.now()}`
  const store = cache.withNamespace(NAMESPACE)
  let busy = false
  const report = async () => {
    if (busy) return
    busy = true
    try {
      await store.set(key, { at: Date.now(), host: os.hostname(), pid: process.pid, samples: snapshot(await cache.metrics()) }, { ttlMs: KEEP_MS })
    } catch {
      // the next report carries the counts
    } finally {
      busy = false
    }
  }
  const timer = setInterval(report, everyMs)
  timer.unref?.()
  void report()
  return async () => {
    clearInterval(timer)
    await report()
  }
}

/** Prometheus text of the whole fleet: every process's last report summed, plus live gauges. */
async function fleetText(cache) {
  const L = require('./index.js')
  const own = parse(await cache.metrics())
  for (const [k, v] of LOCAL_META) own.meta.set(k, v)
  const sums = new Map()
  let live = 0
  let reports = 0
  const now = Date.now()
  for await (const [, r] of cache.withNamespace(NAMESPACE).entries({ limit: 100_000 })) {
    if (!r || !Array.isArray(r.samples)) continue
    reports++
    if (now - Number(r.at) < LIVE_MS) live++
    for (const [s, v] of r.samples) if (typeof s === 'string' && Number.isFinite(v)) sums.set(s, (sums.get(s) ?? 0) + v)
  }
  let forced = 0
  for await (const [k] of cache.withNamespace('audit').entries({ limit: 100_000 })) if (String(k).startsWith('forced-release:')) forced++
  const { locks, waiters } = await L.lockSnapshot(cache)
  const lines = []
  const family = (name, help, type, rows) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...rows)
  }
  for (const [name, m] of own.meta) {
    if (m.type !== 'counter' && m.type !== 'histogram') continue
    const rows = [...sums].filter(([s]) => familyOf(s, own.meta) === name).map(([s, v]) => `${s} ${v}`)
    family(name, `${m.help} Summed over every process that reports to this store.`, m.type, rows)
  }
  family('file_lock_forced_releases_total', 'Locks taken from their holder with release --force (kept 30 days in the audit namespace).', 'counter', [`file_lock_forced_releases_total ${forced}`])
  family('file_lock_active_count', 'Live locks and claims in the store now.', 'gauge', [`file_lock_active_count ${locks.length}`])
  family('file_lock_waiting_count', 'Acquires waiting in the store now.', 'gauge', [`file_lock_waiting_count ${waiters.length}`])
  family('file_lock_fleet_processes', 'Processes whose counters this store holds: live ones (reported in the last 30 s) and all.', 'gauge', [`file_lock_fleet_processes{state="live"} ${live}`, `file_lock_fleet_processes{state="all"} ${reports}`])
  return lines.join('\n') + '\n'
}

/**
 * The same text as OpenMetrics 1.0 (what Prometheus asks for first): a counter family is named
 * without its `_total`, and the exposition ends with `# EOF`.
 */
function toOpenMetrics(text) {
  const counters = new Set([...text.matchAll(/^# TYPE (\S+)_total counter$/gm)].map((m) => m[1]))
  const out = text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const m = /^# (HELP|TYPE) (\S+)_total (.*)$/.exec(l)
      return m && counters.has(m[2]) ? `# ${m[1]} ${m[2]} ${m[3]}` : l
    })
  return `${out.join('\n')}\n# EOF\n`
}

module.exports = { startReporting, fleetText, toOpenMetrics, snapshot, parse, count, recordEvent, recentEvents, NAMESPACE }
