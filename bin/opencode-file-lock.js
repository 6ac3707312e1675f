#!/usr/bin/env node
'use strict'
// The package's command line. Today: `install-plugin`, which sets the plugin up in an opencode
// config folder (a project's .opencode, or ~/.config/opencode) in one command.
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const ROOT = path.resolve(__dirname, '..')
const PLUGIN_FILE = "export { FileLockPlugin } from 'opencode-file-lock/plugin'\n"

const HELP = `usage: opencode-file-lock <command> [options]

commands:
  install-plugin    set up the file-lock plugin for opencode

install-plugin options:
  --project <dir>   install into <dir>/.opencode (default: the current directory's project)
  --global          install into ~/.config/opencode (or $XDG_CONFIG_HOME/opencode) for every project
  --from <spec>     what npm installs (default: this checkout as file:..., or this version from npm)
  --no-npm          only write the files; opencode installs the dependency when it starts
  --force           replace an existing, different plugin/file-lock.ts

examples:
  npx opencode-file-lock install-plugin --global
  npx opencode-file-lock install-plugin --project ~/code/my-app
  node bin/opencode-file-lock.js install-plugin --project . --no-npm
`

function fail(msg, code = 2) {
  console.error(`opencode-file-lock: ${msg}`)
  process.exit(code)
}

function parse(argv) {
  const o = { project: undefined, global: false, from: undefined, npm: true, force: false }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--project') o.project = argv[++i] ?? fail('--project needs a folder')
    else if (a === '--global') o.global = true
    else if (a === '--from') o.from = argv[++i] ?? fail('--from needs an npm spec')
    else if (a === '--no-npm') o.npm = false
    else if (a === '--force') o.force = true
    else if (a === '--help' || a === '-h') (console.log(HELP), process.exit(0))
    else fail(`unknown option ${a}\n\n${HELP}`)
  }
  if (o.global && o.project) fail('choose --project or --global, not both')
  return o
}

function installPlugin(o) {
  const configHome = process.env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config')
  const target = o.global ? path.join(configHome, 'opencode') : path.join(path.resolve(o.project ?? '.'), '.opencode')
  const fromCheckout = fs.existsSync(path.join(ROOT, 'src')) && fs.existsSync(path.join(ROOT, 'Cargo.toml'))
  const version = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version
  const spec = o.from ?? (fromCheckout ? `file:${ROOT}` : `^${version}`)

  fs.mkdirSync(path.join(target, 'plugin'), { recursive: true })
  const pkgPath = path.join(target, 'package.json')
  let pkg = {}
  if (fs.existsSync(pkgPath)) {
    try {
      pkg = JSON.parse(fs.readFileSync(pkgPath, 'utf8'))
    } catch (e) {
      fail(`${pkgPath} is not valid JSON (${e.message}); fix it and run again`)
    }
  }
  pkg.dependencies = { ...(pkg.dependencies ?? {}), 'opencode-file-lock': spec }
  fs.writeFileSync(pkgPath, JSON.stringify(pkg, null, 2) + '\n')
  console.log(`dependency  ${pkgPath}: opencode-file-lock = ${spec}`)

  const pluginPath = path.join(target, 'plugin', 'file-lock.ts')
  if (fs.existsSync(pluginPath) && fs.readFileSync(pluginPath, 'utf8') !== PLUGIN_FILE && !o.force) {
    fail(`${pluginPath} exists with other content; pass --force to replace it`)
  }
  fs.writeFileSync(pluginPath, PLUGIN_FILE)
  console.log(`plugin      ${pluginPath}`)

  if (o.npm) {
    console.log(`npm install in ${target} (builds the native addon from source if no prebuilt binary fits)...`)
    const r = spawnSync('npm', ['install', '--no-audit', '--no-fund'], { cwd: target, stdio: 'inherit' })
    if (r.status !== 0) fail(`npm install in ${target} failed (exit ${r.status})`, 1)
  }
  console.log(`\ndone. opencode now locks files before write, edit and apply_patch in ${o.global ? 'every project' : path.dirname(target)}.`)
  console.log('locks live in sled under ~/.local/state/opencode-file-lock by default (one opencode process at a time);')
  console.log('for several processes or machines set FILE_LOCK_CACHE_BACKEND=redis and REDIS_URL (see the README).')
}

const [command, ...rest] = process.argv.slice(2)
if (!command || command === '--help' || command === '-h' || command === 'help') {
  console.log(HELP)
  process.exit(command ? 0 : 2)
}
if (command === 'install-plugin') installPlugin(parse(rest))
else fail(`unknown command ${command}\n\n${HELP}`)
