'use strict'
// `opencode-file-lock serve`: the fleet's metrics and a live page over HTTP (default 127.0.0.1:9464).
// GET /metrics: Prometheus text of every reporting process's counters summed, plus live gauges
// (fleet.js). GET /healthz: the store's health check as JSON (503 when unhealthy). GET /: holders,
// claims and waiters, live (GET /events: server-sent events of the same snapshot watch shows).
// Read-only. A bind other than loopback needs a token (Authorization: Bearer, or ?token=). Nothing
// secret is on any page: records carry no credentials and every text from an agent is one line and
// HTML-escaped.
const http = require('node:http')
const { oneLine, holderText, reasonText } = require('./text.js')
const { fleetText, parse, recentEvents, toOpenMetrics } = require('./fleet.js')

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost'])
const EVENT_EVERY_MS = 500
/** The key metrics are sampled this often and kept for an hour. */
const SAMPLE_EVERY_MS = 15_000
const KEEP_SAMPLES = 240
const DURATION_BUCKETS_RE = /^file_lock_acquisition_duration_seconds_bucket\{.*le="([^"]+)"\}$/

/** The p95 of a histogram's bucket counts (le -> cumulative count), by linear interpolation. */
function p95(buckets) {
  const les = [...buckets.keys()].filter((le) => le !== '+Inf').map(Number).sort((a, b) => a - b)
  const total = buckets.get('+Inf') ?? 0
  if (!total) return 0
  const want = total * 0.95
  let prevLe = 0
  let prevCount = 0
  for (const le of les) {
    const c = buckets.get(String(le)) ?? buckets.get(le.toString()) ?? 0
    if (c >= want) return prevLe + ((le - prevLe) * (want - prevCount)) / Math.max(c - prevCount, 1e-9)
    prevLe = le
    prevCount = c
  }
  return prevLe
}

/** The five key metrics over the last hour: sampled by this process from the fleet's sums and the store's health. */
function keyMetrics(cache) {
  const samples = []
  const sample = async () => {
    try {
      const { samples: rows } = parse(await fleetText(cache))
      const sum = (pred) => rows.filter(([k]) => pred(k)).reduce((n, [, v]) => n + v, 0)
      const buckets = new Map()
      for (const [k, v] of rows) {
        const m = DURATION_BUCKETS_RE.exec(k)
        if (m) buckets.set(m[1], (buckets.get(m[1]) ?? 0) + v)
      }
      const h = await cache.healthCheck().catch(() => ({}))
      samples.push({
        t: Date.now(),
        acquisitions: sum((k) => k.startsWith('file_lock_acquisitions_total')),
        buckets: Object.fromEntries(buckets),
        active: sum((k) => k.startsWith('file_lock_active_count')),
        redisErrors: sum((k) => k.startsWith('redis_connection_errors_total')),
        redisLatencyMs: typeof h.latencyMs === 'number' ? h.latencyMs : null,
        redisMemoryBytes: typeof h.usedMemoryBytes === 'number' ? h.usedMemoryBytes : null,
      })
      if (samples.length > KEEP_SAMPLES) samples.shift()
    } catch {
      // a missed sample is a gap in the charts
    }
  }
  const every = Number(process.env.FILE_LOCK_SERVE_SAMPLE_MS) > 0 ? Number(process.env.FILE_LOCK_SERVE_SAMPLE_MS) : SAMPLE_EVERY_MS
  const timer = setInterval(sample, every)
  timer.unref?.()
  void sample()
  /** Per interval: acquisitions per minute, p95 acquisition ms, active locks, Redis errors per minute, latency, memory. */
  const series = () =>
    samples.slice(1).map((b, i) => {
      const a = samples[i]
      const minutes = Math.max((b.t - a.t) / 60_000, 1e-9)
      const delta = new Map(Object.entries(b.buckets).map(([le, v]) => [le, v - (a.buckets[le] ?? 0)]))
      return { t: b.t, acquisitionsPerMinute: (b.acquisitions - a.acquisitions) / minutes, p95Ms: p95(delta) * 1000, active: b.active, redisErrorsPerMinute: (b.redisErrors - a.redisErrors) / minutes, redisLatencyMs: b.redisLatencyMs, redisMemoryMB: b.redisMemoryBytes === null ? null : b.redisMemoryBytes / 1e6 }
    })
  return { series, stop: () => clearInterval(timer), sample }
}

function usage(message) {
  const e = new Error(message)
  e.usage = true
  return e
}

/** One snapshot of the lock table, every text one line (the page escapes it again as HTML). */
async function tableOf(cache) {
  const L = require('./index.js')
  const { now, locks, waiters } = await L.lockSnapshot(cache)
  return {
    now,
    locks: locks
      .sort((a, b) => a.path.localeCompare(b.path))
      .map((l) => ({ path: oneLine(l.path, 4096), claim: l.path.endsWith('/'), holder: holderText(l), reason: reasonText(l), heldSeconds: Math.round((now - l.timestamp) / 1000), expiresSeconds: Math.round((l.expiresAt - now) / 1000) })),
    waiters: waiters.map((w) => ({ paths: w.paths.map((p) => oneLine(p, 4096)), holder: holderText(w), waitedSeconds: Math.round(w.waitedMs / 1000), heldUpBy: oneLine(w.blockedBy?.sessionId || 'unknown') })),
  }
}

const html = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c])

/** The tables' rows as the page's script makes them, for the first paint (the page then goes live). */
function rows(t) {
  const locks = t.locks.map((l) => `<tr class="${l.claim ? 'claim' : ''}"><td>${html(l.path)}${l.claim ? ' (claim)' : ''}</td><td>${html(l.holder + l.reason)}</td><td>${l.heldSeconds} s</td><td>${l.expiresSeconds} s</td></tr>`).join('') || '<tr><td colspan="4">no locks held</td></tr>'
  const waiters = t.waiters.map((w) => `<tr class="wait"><td>${html(w.paths.join(', '))}</td><td>${html(w.holder)}</td><td>${w.waitedSeconds} s</td><td>${html(w.heldUpBy)}</td></tr>`).join('') || '<tr><td colspan="4">nobody waits</td></tr>'
  return { locks, waiters }
}

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>opencode-file-lock</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:4px 8px;border-bottom:1px solid #ddd;vertical-align:top}th{background:#f4f4f4}.claim{color:#7a4}.wait{color:#a60}#state{color:#888}</style></head>
<body><h1>File locks</h1><p id="state">connecting…</p>
<h2>Holders and claims</h2><table><thead><tr><th>path</th><th>held by</th><th>for</th><th>expires in</th></tr></thead><tbody id="locks">LOCK_ROWS</tbody></table>
<h2>Waiting</h2><table><thead><tr><th>paths</th><th>who</th><th>waited</th><th>held up by</th></tr></thead><tbody id="waiters">WAITER_ROWS</tbody></table>
<h2>The last hour</h2><div id="charts">CHARTS</div>
<h2>Recent refusals, deadlocks, stale writes and forced releases</h2><table><thead><tr><th>when</th><th>what</th><th>path</th><th>who</th><th>because of</th></tr></thead><tbody id="recent">RECENT_ROWS</tbody></table>
<p>Metrics: <a href="metrics">/metrics</a> · health: <a href="healthz">/healthz</a></p>
<script>
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c])
const q = location.search
const es = new EventSource('events' + q)
es.onmessage = (m) => {
  const t = JSON.parse(m.data)
  document.getElementById('state').textContent = 'live, ' + t.locks.length + ' held, ' + t.waiters.length + ' waiting, at ' + new Date(t.now).toLocaleTimeString()
  document.getElementById('locks').innerHTML = t.locks.map((l) => '<tr class="' + (l.claim ? 'claim' : '') + '"><td>' + esc(l.path) + (l.claim ? ' (claim)' : '') + '</td><td>' + esc(l.holder + l.reason) + '</td><td>' + l.heldSeconds + ' s</td><td>' + l.expiresSeconds + ' s</td></tr>').join('') || '<tr><td colspan="4">no locks held</td></tr>'
  document.getElementById('waiters').innerHTML = t.waiters.map((w) => '<tr class="wait"><td>' + esc(w.paths.join(', ')) + '</td><td>' + esc(w.holder) + '</td><td>' + w.waitedSeconds + ' s</td><td>' + esc(w.heldUpBy) + '</td></tr>').join('') || '<tr><td colspan="4">nobody waits</td></tr>'
}
es.addEventListener('charts', (m) => { document.getElementById('charts').innerHTML = JSON.parse(m.data) })
es.addEventListener('recent', (m) => { document.getElementById('recent').innerHTML = JSON.parse(m.data) })
es.onerror = () => { document.getElementById('state').textContent = 'reconnecting…' }
</script></body></html>
`

/**
 * Serves `cache` until the returned server is closed. `token`: required on every request when set
 * (and for any bind that is not loopback).
 */
/** One small line chart as SVG. */
function chart(title, unit, points) {
  const w = 320
  const h = 70
  const vals = points.map((p) => p.v).filter((v) => typeof v === 'number' && Number.isFinite(v))
  const max = Math.max(...vals, 1e-9)
  const last = vals.length ? vals[vals.length - 1] : null
  const xs = points.length > 1 ? points.map((p, i) => (i * w) / (points.length - 1)) : []
  const line = points.map((p, i) => (typeof p.v === 'number' ? `${xs[i].toFixed(1)},${(h - (p.v / max) * (h - 4) - 2).toFixed(1)}` : null)).filter(Boolean).join(' ')
  return `<figure style="display:inline-block;margin:0 16px 12px 0"><figcaption>${html(title)}: <b>${last === null ? 'no data yet' : `${last.toFixed(last < 10 ? 2 : 0)} ${html(unit)}`}</b></figcaption><svg width="${w}" height="${h}" style="background:#fafafa;border:1px solid #ddd"><polyline fill="none" stroke="#36c" stroke-width="1.5" points="${line}"/></svg></figure>`
}

function charts(series) {
  const s = series()
  const of = (k) => s.map((p) => ({ v: p[k] }))
  return [
    chart('Lock acquisitions', 'per minute', of('acquisitionsPerMinute')),
    chart('Acquisition time, p95', 'ms', of('p95Ms')),
    chart('Active locks', '', of('active')),
    chart('Redis latency', 'ms', of('redisLatencyMs')) + chart('Redis connection errors', 'per minute', of('redisErrorsPerMinute')),
    chart('Redis memory', 'MB', of('redisMemoryMB')),
  ].join('')
}

function recentRows(events) {
  return (
    events
      .map((e) => `<tr><td>${html(new Date(e.at).toLocaleTimeString())}</td><td>${html(oneLine(e.kind, 32))}</td><td>${html(oneLine(e.path ?? '', 4096))}</td><td>${html(oneLine(e.who ?? '', 300))}</td><td>${html(oneLine([e.by, e.why].filter(Boolean).join(': '), 300))}</td></tr>`)
      .join('') || '<tr><td colspan="5">nothing in the last hour</td></tr>'
  )
}

/** Forced releases (kept by release --force in the audit namespace) as events. */
async function forcedEvents(cache, since) {
  const out = []
  for await (const [k, a] of cache.withNamespace('audit').entries({ limit: 10_000 })) {
    if (!String(k).startsWith('forced-release:') || !a) continue
    const at = Date.parse(a.at)
    if (at >= since) out.push({ at, kind: 'forced', path: a.path, who: a.forcedBy, by: a.holder ? holderText(a.holder) : '' })
  }
  return out
}

async function recent(cache) {
  const events = [...(await recentEvents(cache, 50)), ...(await forcedEvents(cache, Date.now() - 3_600_000))]
  return events.sort((a, b) => b.at - a.at).slice(0, 50)
}

function serve(cache, { host = '127.0.0.1', port = 9464, token } = {}) {
  if (!LOOPBACK.has(host) && !token) throw usage(`serving on ${host} (not loopback) needs a token: --token <secret> or FILE_LOCK_SERVE_TOKEN; requests then carry Authorization: Bearer <secret>`)
  const metrics = keyMetrics(cache)
  const allowed = (req, url) => !token || req.headers.authorization === `Bearer ${token}` || url.searchParams.get('token') === token
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    const send = (status, type, body) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' })
      res.end(body)
    }
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain', 'read-only: GET only\n')
      if (!allowed(req, url)) return send(401, 'text/plain', 'a token is needed (Authorization: Bearer <token>, or ?token=)\n')
      if (url.pathname === '/metrics') {
        // OpenMetrics when the scraper asks for it (Prometheus does), else Prometheus text
        if (/application\/openmetrics-text/.test(String(req.headers.accept))) return send(200, 'application/openmetrics-text; version=1.0.0; charset=utf-8', toOpenMetrics(await fleetText(cache)))
        return send(200, 'text/plain; version=0.0.4; charset=utf-8', await fleetText(cache))
      }
      if (url.pathname === '/healthz') {
        const h = await cache.healthCheck().catch((e) => ({ healthy: false, error: oneLine(e?.message ?? e, 500) }))
        return send(h.healthy ? 200 : 503, 'application/json', JSON.stringify(h))
      }
      if (url.pathname === '/') {
        const r = rows(await tableOf(cache))
        const ev = recentRows(await recent(cache))
        return send(200, 'text/html; charset=utf-8', PAGE.replace('LOCK_ROWS', () => r.locks).replace('WAITER_ROWS', () => r.waiters).replace('CHARTS', () => charts(metrics.series)).replace('RECENT_ROWS', () => ev))
      }
      if (url.pathname === '/history') return send(200, 'application/json', JSON.stringify(metrics.series()))
      if (url.pathname === '/events') {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' })
        let last = ''
        const tick = async () => {
          try {
            const t = await tableOf(cache)
            const body = JSON.stringify({ locks: t.locks, waiters: t.waiters })
            if (body !== last) res.write(`data: ${JSON.stringify(t)}\n\n`)
            last = body
          } catch (e) {
            res.write(`event: error\ndata: ${JSON.stringify(oneLine(e?.message ?? e, 500))}\n\n`)
          }
        }
        let lastRecent = ''
        let lastCharts = ''
        const slow = async () => {
          try {
            const rr = recentRows(await recent(cache))
            if (rr !== lastRecent) res.write(`event: recent\ndata: ${JSON.stringify(rr)}\n\n`)
            lastRecent = rr
            const ch = charts(metrics.series)
            if (ch !== lastCharts) res.write(`event: charts\ndata: ${JSON.stringify(ch)}\n\n`)
            lastCharts = ch
          } catch {}
        }
        await tick()
        await slow()
        const timer = setInterval(tick, EVENT_EVERY_MS)
        const slower = setInterval(slow, 2000)
        req.on('close', () => {
          clearInterval(timer)
          clearInterval(slower)
        })
        return
      }
      return send(404, 'text/plain', 'not found: /, /metrics, /healthz, /events, /history\n')
    } catch (e) {
      if (!res.headersSent) send(500, 'text/plain', `${oneLine(e?.message ?? e, 500)}\n`)
      else res.end()
    }
  })
  server.on('close', () => metrics.stop())
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => resolve(server))
  })
}

module.exports = { serve, tableOf }
