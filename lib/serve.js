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
const { fleetText } = require('./fleet.js')

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost'])
const EVENT_EVERY_MS = 500

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
es.onerror = () => { document.getElementById('state').textContent = 'reconnecting…' }
</script></body></html>
`

/**
 * Serves `cache` until the returned server is closed. `token`: required on every request when set
 * (and for any bind that is not loopback).
 */
function serve(cache, { host = '127.0.0.1', port = 9464, token } = {}) {
  if (!LOOPBACK.has(host) && !token) throw usage(`serving on ${host} (not loopback) needs a token: --token <secret> or FILE_LOCK_SERVE_TOKEN; requests then carry Authorization: Bearer <secret>`)
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
      if (url.pathname === '/metrics') return send(200, 'text/plain; version=0.0.4; charset=utf-8', await fleetText(cache))
      if (url.pathname === '/healthz') {
        const h = await cache.healthCheck().catch((e) => ({ healthy: false, error: oneLine(e?.message ?? e, 500) }))
        return send(h.healthy ? 200 : 503, 'application/json', JSON.stringify(h))
      }
      if (url.pathname === '/') {
        const r = rows(await tableOf(cache))
        return send(200, 'text/html; charset=utf-8', PAGE.replace('LOCK_ROWS', () => r.locks).replace('WAITER_ROWS', () => r.waiters))
      }
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
        await tick()
        const timer = setInterval(tick, EVENT_EVERY_MS)
        req.on('close', () => clearInterval(timer))
        return
      }
      return send(404, 'text/plain', 'not found: /, /metrics, /healthz, /events\n')
    } catch (e) {
      if (!res.headersSent) send(500, 'text/plain', `${oneLine(e?.message ?? e, 500)}\n`)
      else res.end()
    }
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => resolve(server))
  })
}

module.exports = { serve, tableOf }
