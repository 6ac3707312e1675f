'use strict'
// Where opencode looks for this plugin and what it loads: the opencode on PATH and its major
// version, the plugin files of a config folder (a project's .opencode, or ~/.config/opencode) and
// the opencode versions each one works in. install-plugin writes what the found version loads;
// doctor reads it all back.
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

/** opencode 1's own shape: a named plugin function (opencode 2 does not load it). */
const V1_FILE = "export { FileLockPlugin } from 'opencode-file-lock/plugin'\n"
/** One module for both: a default {id, setup, server} (opencode 1.18.29 and newer, and opencode 2). */
const DUAL_FILE = "export { default } from 'opencode-file-lock/server'\n"
/** The first opencode 1 release that reads a default export's `server`. */
const DUAL_SINCE = [1, 18, 29]

/** The opencode found on PATH (or `bin`), its version and major; `error` when there is none or it does not answer. */
function findOpencode({ bin, env = process.env } = {}) {
  let file = bin
  if (!file) {
    for (const dir of (env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
      for (const name of process.platform === 'win32' ? ['opencode.exe', 'opencode.cmd'] : ['opencode']) {
        const f = path.join(dir, name)
        try {
          fs.accessSync(f, fs.constants.X_OK)
          if (fs.statSync(f).isFile()) {
            file = f
            break
          }
        } catch {}
      }
      if (file) break
    }
  }
  if (!file) return { error: 'no opencode on PATH' }
  const r = spawnSync(file, ['--version'], { encoding: 'utf8', timeout: 15_000, env: { ...env, OPENCODE_DISABLE_AUTOUPDATE: '1' } })
  const m = `${r.stdout ?? ''}`.match(/(\d+)\.(\d+)\.(\d+)/)
  if (r.status !== 0 || !m) return { bin: file, error: `${file} --version did not answer with a version (${r.error?.message ?? `exit ${r.status}`}: ${`${r.stdout ?? ''}${r.stderr ?? ''}`.trim().slice(0, 200)})` }
  const version = m.slice(1, 4).map(Number)
  return { bin: file, version: m[0], major: version[0], dual: compare(version, DUAL_SINCE) >= 0 }
}

function compare(a, b) {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i] - b[i]
  return 0
}

/** The config folder opencode reads: a project's `.opencode`, or the user's `~/.config/opencode`. */
function configFolder({ project, global, env = process.env }) {
  if (global) return path.join(env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config'), 'opencode')
  return path.join(path.resolve(project ?? '.'), '.opencode')
}

/**
 * What a plugin file is, from its text: `dual` (loads in opencode 1.18.29+ and 2), `v1` (opencode 1
 * only), or null when it is not this package's plugin.
 */
function kindOf(text) {
  if (!/opencode-file-lock/.test(text)) return null
  if (/opencode-file-lock\/server/.test(text) || /\bsetup\b/.test(text)) return 'dual'
  return 'v1'
}

/** This package's plugin files in a config folder: [{file, kind}] (plugin/ and plugins/, .ts and .js). */
function pluginFiles(folder) {
  const out = []
  for (const sub of ['plugin', 'plugins']) {
    const dir = path.join(folder, sub)
    let names = []
    try {
      names = fs.readdirSync(dir)
    } catch {
      continue
    }
    for (const n of names.filter((n) => /\.(ts|js)$/.test(n)).sort()) {
      let text = ''
      try {
        text = fs.readFileSync(path.join(dir, n), 'utf8')
      } catch {
        continue
      }
      const kind = kindOf(text)
      if (kind) out.push({ file: path.join(dir, n), kind })
    }
  }
  return out
}

/** Entries for this package in the folder's opencode.json(c): opencode 1's `plugin` and opencode 2's `plugins`. */
function configEntries(folder) {
  const out = []
  for (const name of ['opencode.json', 'opencode.jsonc']) {
    const f = path.join(folder, name)
    let cfg
    try {
      // a .jsonc file's comments: a line's // and /* */ outside strings are rare in these files; strip the simple ones
      cfg = JSON.parse(fs.readFileSync(f, 'utf8').replace(/^\s*\/\/.*$/gm, ''))
    } catch {
      continue
    }
    for (const e of Array.isArray(cfg?.plugin) ? cfg.plugin : []) {
      const spec = Array.isArray(e) ? e[0] : e
      // the package's root is the library, not a plugin: opencode 1 needs the /server or /plugin entry
      if (typeof spec === 'string' && spec.includes('opencode-file-lock') && !spec.startsWith('-')) out.push({ file: f, key: 'plugin', spec, kind: spec.includes('/server') ? 'dual' : spec.includes('/plugin') ? 'v1' : 'library' })
    }
    for (const e of Array.isArray(cfg?.plugins) ? cfg.plugins : []) {
      const spec = typeof e === 'string' ? e : e?.package
      // "-opencode-file-lock" takes a plugin out: not a configured one
      if (typeof spec === 'string' && spec.includes('opencode-file-lock') && !spec.startsWith('-')) out.push({ file: f, key: 'plugins', spec, kind: 'dual' })
    }
  }
  return out
}

/** Whether a plugin of `kind` loads in an opencode of `major` (and, for 1, `dual`: 1.18.29+). */
function loadsIn(kind, oc) {
  if (kind === 'library') return false
  if (!oc || oc.error) return undefined
  if (oc.major >= 2) return kind === 'dual'
  return kind === 'v1' || oc.dual
}

/**
 * Writes the plugin file the found opencode loads: opencode 2 (and 1.18.29+) the one module of
 * both (`plugins/` for 2, `plugin/` for 1), an older opencode 1 its own shape; no opencode found:
 * the module of both in `plugin/`. Takes out this package's file from the other folder, so one
 * opencode never loads it twice. Returns what it wrote and removed.
 */
function writePluginFile(folder, oc, { force = false } = {}) {
  const v2 = oc && !oc.error && oc.major >= 2
  const text = oc && !oc.error && oc.major < 2 && !oc.dual ? V1_FILE : DUAL_FILE
  const file = path.join(folder, v2 ? 'plugins' : 'plugin', 'file-lock.ts')
  const ours = (t) => t === V1_FILE || t === DUAL_FILE
  if (fs.existsSync(file) && !ours(fs.readFileSync(file, 'utf8')) && !force) {
    const e = new Error(`${file} exists with other content; pass --force to replace it`)
    e.usage = true
    throw e
  }
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, text)
  const removed = []
  const other = path.join(folder, v2 ? 'plugin' : 'plugins', 'file-lock.ts')
  if (fs.existsSync(other) && ours(fs.readFileSync(other, 'utf8'))) {
    fs.rmSync(other)
    removed.push(other)
  }
  return { file, kind: text === V1_FILE ? 'v1' : 'dual', removed }
}

module.exports = { V1_FILE, DUAL_FILE, findOpencode, configFolder, pluginFiles, configEntries, loadsIn, writePluginFile, kindOf }
