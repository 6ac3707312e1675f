// Our metrics in prom-client: registered on a Registry beside prom-client's own metrics, they show
// in registry.metrics(), getMetricsAsJSON() and an OpenMetrics registry; the plain text stays.
import client from 'prom-client'
import { afterEach, describe, expect, it } from 'vitest'
import { acquireLock, promCollector, releaseLock, SledCache, type Cache } from '../lib/index.js'
import { tmpDir } from './helpers/tmp'

const opened: Cache[] = []
afterEach(async () => {
  for (const c of opened.splice(0)) await c.close()
})
/** A cache on which `agent` (a name of this test's own: the counters are the process's) was granted twice and refused once. */
async function busyCache(agent: string) {
  const c = await SledCache.open({ path: tmpDir('ofl-prom-'), namespace: 'locks' })
  opened.push(c)
  await acquireLock('/prom/a', agent, 's1', c)
  await acquireLock('/prom/a', agent, 's2', c).catch(() => {}) // refused
  await releaseLock('/prom/a', 's1', c)
  await acquireLock('/prom/held', agent, 's1', c)
  return c
}

describe('metrics in prom-client', () => {
  it('registry.metrics(): our series beside prom-client’s, in the text format, counted as the plain export counts them', async () => {
    const cache = await busyCache('text-agent')
    const registry = new client.Registry()
    new client.Counter({ name: 'app_requests_total', help: 'the app’s own', registers: [registry] }).inc(3)
    promCollector(cache).register(registry)
    const text = await registry.metrics()
    expect(text).toContain('app_requests_total 3')
    expect(text).toContain('# TYPE file_lock_acquisitions_total counter')
    expect(text).toMatch(/^file_lock_acquisitions_total\{status="granted",agent_id="text-agent"\} 2$/m)
    expect(text).toMatch(/^file_lock_acquisitions_total\{status="refused",agent_id="text-agent"\} 1$/m)
    expect(text).toMatch(/^file_lock_acquisition_duration_seconds_bucket\{status="granted",le="\+Inf"\} \d+$/m)
    expect(text).toMatch(/^file_lock_acquisition_duration_seconds_count\{status="granted"\} \d+$/m)
    expect(text).toMatch(/^file_lock_active_count 1$/m)
    // the same numbers as the plain export, which stays
    const plain = await cache.metrics()
    for (const line of plain.split('\n').filter((l) => l.startsWith('file_lock_acquisitions_total{'))) expect(text).toContain(line)
    // the same name cannot be registered twice on one registry
    expect(() => promCollector(cache).register(registry)).toThrow(/already been registered/)
  })

  it('getMetricsAsJSON(): each family with its type, help and values', async () => {
    const cache = await busyCache('json-agent')
    const registry = new client.Registry()
    promCollector(cache).register(registry)
    const json = await registry.getMetricsAsJSON()
    const acq = json.find((m: any) => m.name === 'file_lock_acquisitions_total') as any
    expect(acq).toMatchObject({ type: 'counter', help: expect.stringContaining('Lock acquisitions') })
    expect(acq.values).toContainEqual({ labels: { status: 'granted', agent_id: 'json-agent' }, value: 2 })
    const hist = json.find((m: any) => m.name === 'file_lock_acquisition_duration_seconds') as any
    expect(hist.type).toBe('histogram')
    expect(hist.values.some((v: any) => v.metricName === 'file_lock_acquisition_duration_seconds_bucket' && v.labels.le === '+Inf' && v.value >= 2)).toBe(true)
    expect(json.find((m: any) => m.name === 'file_lock_active_count')).toMatchObject({ type: 'gauge', values: [{ labels: {}, value: 1 }] })
  })

  it('an OpenMetrics registry: counters named as OpenMetrics names them, one # EOF at the very end', async () => {
    const cache = await busyCache('om-agent')
    const registry = new client.Registry(client.Registry.OPENMETRICS_CONTENT_TYPE)
    new client.Counter({ name: 'app_requests_total', help: 'the app’s own', registers: [registry] }).inc()
    const collector = promCollector(cache).register(registry)
    const text = await registry.metrics()
    const lines = text.trimEnd().split('\n')
    expect(lines.filter((l) => l === '# EOF')).toHaveLength(1)
    expect(lines.at(-1)).toBe('# EOF')
    expect(text).toContain('# TYPE file_lock_acquisitions counter')
    expect(text).toMatch(/^file_lock_acquisitions_total\{status="granted",agent_id="om-agent"\} 2$/m)
    expect(text).not.toContain('_total_total')
    expect(text).toMatch(/^file_lock_active_count 1$/m)
    // a second scrape reads the store again
    await acquireLock('/prom/more', 'o', 's1', cache)
    expect(await registry.metrics()).toMatch(/^file_lock_active_count 2$/m)
    collector.unregister(registry)
    expect(await registry.metrics()).not.toContain('file_lock_')
  })
})
