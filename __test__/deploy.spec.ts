// The deployment files in deploy/ match the code: every metric an alert rule uses is one that
// metrics() exposes, and the Redis templates render with every placeholder filled.
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { acquireLock, SledCache } from '../lib/index.js'
import { tmpDir } from './helpers/tmp'

const DEPLOY = path.resolve(__dirname, '../deploy')

describe('deploy/', () => {
  it('alert rules use only metric names that metrics() exposes', async () => {
    const c = await SledCache.open({ path: tmpDir(), namespace: 'locks' })
    await acquireLock('/d/x', 'a', 's', c)
    const exposed = new Set([...(await c.metrics()).matchAll(/^# TYPE (\S+) (\S+)/gm)].flatMap(([, name, type]) => (type === "histogram" ? [name, `${name}_bucket`, `${name}_sum`, `${name}_count`] : [name])))
    await c.close()
    const rules = fs.readFileSync(path.join(DEPLOY, 'prometheus/alerts.yml'), 'utf8')
    const used = [...rules.matchAll(/\b((?:file_lock|redis)_[a-z_]+)\b/g)].map((m) => m[1])
    expect(used.length).toBeGreaterThan(5)
    for (const name of used) expect(exposed, `${name} in alerts.yml`).toContain(name)
  })

  it('the Grafana dashboard parses, has the five panels, and queries only metrics serve exposes', async () => {
    const d = JSON.parse(fs.readFileSync(path.join(DEPLOY, 'grafana/opencode-file-lock.json'), 'utf8'))
    expect(d.panels).toHaveLength(5)
    const c = await SledCache.open({ path: tmpDir(), namespace: 'locks' })
    await acquireLock('/d/y', 'a', 's', c)
    const { fleetMetrics } = require('../lib/index.js')
    const exposed = new Set([...(await fleetMetrics(c)).matchAll(/^# TYPE (\S+) (\S+)/gm)].flatMap(([, name, type]) => (type === 'histogram' ? [name, `${name}_bucket`, `${name}_sum`, `${name}_count`] : [name])))
    await c.close()
    const exprs: string[] = d.panels.flatMap((p: any) => p.targets.map((t: any) => t.expr))
    for (const e of exprs) for (const [name] of e.matchAll(/\b(?:file_lock|redis)_[a-z_]+\b/g)) expect(exposed, `${name} in the Grafana dashboard`).toContain(name)
  })

  it('redis templates need every placeholder', () => {
    const { render } = require('../deploy/redis/render.js')
    expect(() => render('sentinel.conf', { PORT: 1 })).toThrow(/needs/)
    const text = render('replica.conf', { PORT: 1, BIND: '127.0.0.1', DIR: '/tmp', PASSWORD: 'p', PRIMARY_HOST: 'h', PRIMARY_PORT: 2 })
    expect(text).toContain('replicaof h 2')
    expect(text).not.toContain('${')
  })
})
