'use strict'
// Our metrics inside a prom-client Registry: one metric object per series family, in the shape
// prom-client's own metrics have (name, help, type, get()), so `registry.metrics()`,
// `getMetricsAsJSON()` and an OpenMetrics registry (counters then lose and regain `_total` as
// prom-client does for its own) all show them. Every scrape reads `cache.metrics()` once, however
// many families ask. prom-client itself is not loaded here: a registry only needs the shape.
const { invalid } = require('./errors.js')

/** The families `cache.metrics()` prints: name, type, help. */
const FAMILIES = [
  ['file_lock_acquisitions_total', 'counter', 'Lock acquisitions by outcome (granted, refused, aborted, deadlock, error) and agent.'],
  ['file_lock_acquisition_duration_seconds', 'histogram', 'Time to acquire (or be refused) a lock.'],
  ['file_lock_wait_duration_seconds', 'histogram', 'How long acquires that were willing to wait (waitMs) waited, by outcome.'],
  ['file_lock_lost_total', 'counter', 'Locks this process held and lost (expired unrenewed, forced free, lost at recovery).'],
  ['file_lock_active_count', 'gauge', "Live locks in the store's namespace."],
  ['redis_connection_errors_total', 'counter', 'Redis calls that failed to reach the server or timed out.'],
  ['redis_operation_duration_seconds', 'histogram', 'Time of Redis calls by operation and outcome.'],
  ['file_lock_backend_switches_total', 'counter', 'Hybrid switches between Redis and the sled fallback.'],
  ['file_lock_recovery_conflicts_total', 'counter', "Locks granted on the hybrid's fallback that another holder had taken in Redis."],
  ['file_lock_shared_takeovers_total', 'counter', 'Times the process serving the sled folder went away and this process took over, by the role it got.'],
  ['file_lock_shared_rejected_total', 'counter', "Connections to this process's lock socket that it dropped (another user, garbage, oversized frames)."],
]

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g

function parseLabels(text) {
  const labels = {}
  if (!text) return labels
  for (const m of text.matchAll(LABEL)) labels[m[1]] = m[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c))
  return labels
}

function parseValue(v) {
  if (v === '+Inf') return Infinity
  if (v === '-Inf') return -Infinity
  return Number(v)
}

/** Samples of the text exposition, by sample name. */
function parse(text) {
  const out = new Map()
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue
    const m = SAMPLE.exec(line)
    if (!m) continue
    if (!out.has(m[1])) out.set(m[1], [])
    out.get(m[1]).push({ labels: parseLabels(m[2]), value: parseValue(m[3]) })
  }
  return out
}

/**
 * prom-client metric objects for `cache`'s metrics. `register(registry)` adds them to a
 * prom-client Registry (the default one, an OpenMetrics one, any); `unregister(registry)` takes
 * them out. One collector per registry: the counters are the whole process's.
 */
function promCollector(cache) {
  if (!cache || typeof cache.metrics !== 'function') throw invalid('promCollector takes a cache from this package')
  let scrape // one read of cache.metrics() shared by every family of one scrape
  const samples = () => {
    if (scrape) return scrape
    const mine = cache.metrics().then(parse, (e) => {
      // a store that cannot be read (closed, unreachable): the families show no samples
      process.emitWarning(`opencode-file-lock metrics could not be read: ${e?.message ?? e}`)
      return new Map()
    })
    // a registry asks every family at once, before any answer: they share this read, and the
    // next scrape (after it settled) reads again
    scrape = mine
    mine.then(() => {
      if (scrape === mine) scrape = undefined
    })
    return mine
  }
  const metrics = FAMILIES.map(([name, type, help]) => {
    const metric = {
      name,
      help,
      type,
      aggregator: 'sum',
      async get() {
        const s = await samples()
        const values = []
        if (type === 'histogram') {
          for (const suffix of ['_bucket', '_sum', '_count']) for (const v of s.get(name + suffix) ?? []) values.push({ ...v, metricName: name + suffix })
        } else {
          values.push(...(s.get(name) ?? []))
        }
        // an OpenMetrics registry renames counters to their base name: report the name it uses
        return { name: metric.name, help, type, values, aggregator: 'sum' }
      },
    }
    return metric
  })
  return {
    metrics,
    register(registry) {
      if (!registry || typeof registry.registerMetric !== 'function') throw invalid('register takes a prom-client Registry')
      for (const m of metrics) registry.registerMetric(m)
      return this
    },
    unregister(registry) {
      // by the names they were registered under (an OpenMetrics registry renames counters)
      for (const [name] of FAMILIES) registry.removeSingleMetric?.(name)
    },
  }
}

module.exports = { promCollector, parse }
