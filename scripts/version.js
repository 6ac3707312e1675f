#!/usr/bin/env node
'use strict'
// Keeps every version of the release equal: the main package, its optionalDependencies on the
// per-platform packages, each npm/<platform>/package.json, the crate (Cargo.toml, Cargo.lock) and
// the version the generated loader (index.js) expects. Platform packages also get the main
// package's description, license, engines and repository.
//   node scripts/version.js 0.2.0    set every version to 0.2.0
//   node scripts/version.js --check  exit 1, naming each file, when any version differs
const fs = require('node:fs')
const path = require('node:path')

const root = path.resolve(__dirname, '..')
const read = (f) => fs.readFileSync(path.join(root, f), 'utf8')
const write = (f, text) => fs.writeFileSync(path.join(root, f), text)
const json = (f) => JSON.parse(read(f))
const SEMVER = /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$/

const main = json('package.json')
const platforms = Object.keys(require('../lib/platform.js').TARGETS)
const platformFile = (p) => `npm/${p}/package.json`
const platformName = (p) => `${main.name}-${p}`

/** [file, version it states] for every place a version lives. */
function versions() {
  const out = [['package.json', main.version]]
  for (const p of platforms) {
    out.push([platformFile(p), json(platformFile(p)).version])
    out.push([`package.json optionalDependencies ${platformName(p)}`, main.optionalDependencies?.[platformName(p)]])
  }
  out.push(['Cargo.toml', read('Cargo.toml').match(/^version = "([^"]+)"/m)?.[1]])
  out.push(['Cargo.lock', read('Cargo.lock').match(new RegExp(`name = "${main.name}"\\nversion = "([^"]+)"`))?.[1]])
  for (const v of new Set(read('index.js').match(/expected [^ ]+ but got/g) ?? [])) out.push(['index.js', v.split(' ')[1]])
  return out
}

function set(version) {
  main.version = version
  main.optionalDependencies = Object.fromEntries(platforms.map((p) => [platformName(p), version]))
  write('package.json', JSON.stringify(main, null, 2) + '\n')
  for (const p of platforms) {
    const pkg = json(platformFile(p))
    Object.assign(pkg, { version, description: main.description, license: main.license, engines: main.engines, repository: main.repository })
    write(platformFile(p), JSON.stringify(pkg, null, 2) + '\n')
  }
  write('Cargo.toml', read('Cargo.toml').replace(/^version = "[^"]+"/m, `version = "${version}"`))
  write('Cargo.lock', read('Cargo.lock').replace(new RegExp(`(name = "${main.name}"\\nversion = )"[^"]+"`), `$1"${version}"`))
  write('index.js', read('index.js').replace(/bindingPackageVersion !== '[^']+'/g, `bindingPackageVersion !== '${version}'`).replace(/expected [^ ]+ but got/g, `expected ${version} but got`))
}

const arg = process.argv[2]
if (arg === '--check') {
  const wrong = versions().filter(([, v]) => v !== main.version)
  for (const [file, v] of wrong) console.error(`version: ${file} says ${v ?? 'nothing'}, package.json says ${main.version}`)
  if (wrong.length === 0) console.log(`version: every file says ${main.version}`)
  process.exit(wrong.length ? 1 : 0)
} else if (arg && SEMVER.test(arg)) {
  set(arg)
  console.log(`version: set ${versions().length} places to ${arg}; commit, then tag v${arg} to release`)
} else {
  console.error('usage: node scripts/version.js <x.y.z> | --check')
  process.exit(2)
}
