'use strict'
// `opencode-file-lock doctor`: the chain a user cannot see, link by link, each failure with its fix.
// 1. an opencode on PATH, and its version; 2. the plugin configured where that opencode looks, in a
// shape that version loads, with the package installed beside it; 3. the native addon loads; 4. the
// store answers; 5. a running opencode has loaded the plugin (instances announce themselves in the
// store, see plugin/src/presence.ts). A plugin that is configured but never announced itself is
// the silent failure this exists for: opencode 2 skips an opencode 1 module with one log line.
const fs = require('node:fs')
const path = require('node:path')
const { configEntries, configFolder, findOpencode, loadsIn, pluginFiles } = require('./opencode-setup.js')
const { oneLine } = require('./text.js')

const KIND_WORDS = { v1: "opencode 1's shape (a named FileLockPlugin)", dual: 'one module for opencode 1.18.29+ and opencode 2', library: "the package's root, which is the library, not the plugin (name opencode-file-lock/server)" }

/** The checks, each {name, ok, detail, fix?}; `ok: null` is information, not a failure. */
/** `cache`: a store already open (status's), looked at instead of the one `env` names, and left open. */
async function doctor({ project, global = false, opencode, env = process.env, cache: given } = {}) {
  const checks = []
  const add = (name, ok, detail, fix) => checks.push({ name, ok, detail, ...(fix ? { fix } : {}) })
  const where = global ? 'the global config (~/.config/opencode)' : path.resolve(project ?? '.')
  const installHint = `npx opencode-file-lock install-plugin ${global ? '--global' : `--project ${path.resolve(project ?? '.')}`}`

  // 1. opencode
  const oc = findOpencode({ bin: opencode, env })
  if (oc.error) add('opencode', false, oc.error, 'install opencode (npm i -g opencode-ai) or put it on PATH; doctor --opencode <binary> names one')
  else add('opencode', true, `${oc.version} at ${oc.bin} (plugin API ${oc.major >= 2 ? '2: default {id, setup}' : oc.dual ? '1, which also reads a default {id, server}' : '1'})`)

  // 2. the plugin configured for it
  const folders = global ? [configFolder({ global: true, env })] : [configFolder({ project, env }), configFolder({ global: true, env })]
  const files = folders.flatMap((f) => [...pluginFiles(f), ...configEntries(f)])
  const loads = files.filter((f) => loadsIn(f.kind, oc) !== false)
  if (files.length === 0) add('plugin configured', false, `no opencode-file-lock plugin in ${folders.join(' or ')}`, installHint)
  else {
    for (const f of files) {
      const ok = loadsIn(f.kind, oc)
      const what = `${f.key ? `"${f.key}" entry ${f.spec} in ${f.file}` : f.file}: ${KIND_WORDS[f.kind]}`
      if (ok === false) add('plugin configured', false, `${what}, which ${oc.version ? `opencode ${oc.version}` : 'opencode'} does not load${oc.major >= 2 && f.kind !== 'library' ? ' (opencode 2 loads only a default export {id, setup}; it skips this file with one warning in its log)' : ''}`, installHint)
      else add('plugin configured', true, `${what}${ok === undefined ? '' : `, loaded by opencode ${oc.version}`}`)
    }
    for (const f of files.filter((x) => !x.key)) {
      const folder = path.dirname(path.dirname(f.file))
      const copy = installedBeside(folder)
      if (!copy) add('package installed', false, `opencode-file-lock is not installed beside ${f.file} (no ${path.join(folder, 'node_modules', 'opencode-file-lock')})`, `npm install in ${folder}, or ${installHint}`)
      else if (realpath(copy) !== realpath(path.join(__dirname, '..'))) {
        // the copy opencode loads, not this one: its addon may be missing (an install without
        // optional dependencies), and then the plugin refuses every write and cannot announce itself
        const why = addonOf(copy)
        if (why) add('native addon', false, `the copy opencode loads (${copy}) cannot lock: ${why}${lastInstallFailure()}`, `npm install in ${folder} (with optional dependencies), or ${installHint}`)
        else add('native addon', true, `loads in the copy opencode loads (${copy})`)
      }
    }
  }

  // 3. the native addon
  let L
  try {
    L = require('./index.js')
    add('native addon', true, 'loads')
  } catch (e) {
    add('native addon', false, `${String(e?.message ?? e)}${lastInstallFailure()}`, e?.code === 'ENOADDON' ? undefined : 'reinstall opencode-file-lock')
  }

  // 4. the store, and 5. the instances announced in it
  let instances = []
  if (L) {
    let cache
    try {
      cache = given ?? (await L.openCache({ env }))
      const health = await cache.healthCheck()
      add('store', health.healthy !== false, `${health.backend ?? L.configFromEnv(env).backend} answers (namespace ${cache.namespace})`)
      for await (const [, v] of cache.withNamespace('instances').entries({ limit: 10_000 })) instances.push(v)
    } catch (e) {
      add('store', false, `${e?.code ? `[${e.code}] ` : ''}${e?.message ?? e}`, 'check FILE_LOCK_CACHE_BACKEND / FILE_LOCK_PATH / REDIS_URL (docs/configuration.md); opencode must be started with the same settings')
    } finally {
      if (!given) await cache?.close().catch(() => {})
    }
  }
  const here = global ? undefined : realpath(path.resolve(project ?? '.'))
  const mine = instances.filter((i) => !here || realpath(i.project) === here || (here.startsWith(`${realpath(i.project)}${path.sep}`)))
  if (mine.length) {
    for (const i of mine) add('loaded by opencode', true, `opencode ${i.opencode} (plugin API ${i.api}), pid ${i.pid} on ${i.host}, project ${i.project}, store ${i.store}, since ${new Date(i.since).toISOString()}`)
  } else if (L) {
    const fix = loads.length
      ? `start opencode in ${where} with the same store settings; if it is running, it did not load the plugin: look for "opencode-file-lock" or "failed to load plugin" in its log (~/.local/share/opencode/log/)`
      : installHint
    add('loaded by opencode', false, files.length ? `configured but never loaded: no running opencode has announced this plugin${here ? ` for ${here}` : ''}` : 'no running opencode has loaded this plugin', fix)
  }
  return { ok: checks.every((c) => c.ok !== false), checks }
}

/** What the last failed install of this package said (scripts/install.js leaves it in the temp folder). */
function lastInstallFailure() {
  try {
    const { PKG } = require('./platform.js')
    const text = fs.readFileSync(path.join(require('node:os').tmpdir(), `${PKG.name}-install-failure.log`), 'utf8').trim()
    return text ? `\n  the last install that failed said:\n    ${text.split('\n').join('\n    ')}` : ''
  } catch {
    return ''
  }
}

/** The folder of the opencode-file-lock a plugin file in `folder` resolves to, or undefined. */
function installedBeside(folder) {
  for (let d = folder; ; d = path.dirname(d)) {
    const pkg = path.join(d, 'node_modules', 'opencode-file-lock')
    if (fs.existsSync(path.join(pkg, 'package.json'))) return pkg
    if (path.dirname(d) === d) return undefined
  }
}

/** Why the addon of the package at `root` does not load ('' when it does), asked of a child process (one addon per process). */
function addonOf(root) {
  const r = require('node:child_process').spawnSync(process.execPath, ['-e', `try { require(${JSON.stringify(path.join(root, 'lib', 'native.js'))}) } catch (e) { process.stdout.write(String(e && e.message || e)); process.exitCode = 3 }`], { encoding: 'utf8', timeout: 20_000 })
  if (r.status === 0) return ''
  return (r.stdout || r.stderr || `exit ${r.status}`).trim().split('\n')[0]
}

function realpath(p) {
  try {
    return fs.realpathSync(p)
  } catch {
    return p
  }
}

/** The checks as people read them: one line each, then its fix indented. */
function render(r) {
  // instance records come from other processes: shown as one line each, no control characters
  const lines = r.checks.map((c) => `${c.ok === false ? '✗' : '✓'} ${c.name.padEnd(19)} ${c.detail.split('\n').map((l) => /^ */.exec(l)[0] + oneLine(l, 2000)).join('\n')}${c.fix ? `\n  fix: ${oneLine(c.fix, 2000)}` : ''}`)
  lines.push('', r.ok ? 'everything checks out.' : 'some checks failed: see each fix above.')
  return lines.join('\n')
}

module.exports = { doctor, render }
