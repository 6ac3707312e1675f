#!/usr/bin/env node
'use strict'
// `npm run pack:local`: the two tarballs a machine without the public registry installs from: the
// main package and this platform's binary package (npm/<platform> with the built .node in it),
// then the commands that install them, into opencode or into a project. Run it in a checkout after
// `npm install` (which builds the addon). `--out <dir>` (default ./pack).
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { ROOT, PKG, platformSuffix, prebuiltPackage } = require('../lib/platform.js')

const fail = (msg) => {
  console.error(`pack:local: ${msg}`)
  process.exit(1)
}

const args = process.argv.slice(2)
const outIndex = args.indexOf('--out')
const out = path.resolve(outIndex >= 0 ? args[outIndex + 1] ?? fail('--out needs a folder') : path.join(ROOT, 'pack'))
const suffix = platformSuffix()
const platformPkg = prebuiltPackage()
if (!platformPkg) fail(`no binary package is defined for ${suffix}; the main package alone builds from source there (npm pack)`)
const binary = path.join(ROOT, `${PKG.name}.${suffix}.node`)
if (!fs.existsSync(binary)) fail(`${binary} is not built yet: run npm install (or npm run build) in ${ROOT} first`)
fs.mkdirSync(out, { recursive: true })

// the plugin as the sources say now, not whatever plugin/dist a checkout last built: compiled aside
// and compared (when the TypeScript compiler is here: a checkout after npm install); rebuilt only
// when it differs, so a current plugin/dist is never touched while something else reads it
if (fs.existsSync(path.join(ROOT, 'node_modules', 'typescript'))) {
  const aside = fs.mkdtempSync(path.join(os.tmpdir(), 'ofl-plugin-check-'))
  try {
    const tsc = spawnSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(ROOT, 'plugin'), '--outDir', aside], { encoding: 'utf8' })
    if (tsc.status !== 0) fail(`the plugin does not compile: ${(tsc.stdout || tsc.stderr).trim()}`)
    const stale = fs.readdirSync(aside).filter((f) => {
      const dist = path.join(ROOT, 'plugin', 'dist', f)
      return !fs.existsSync(dist) || !fs.readFileSync(dist).equals(fs.readFileSync(path.join(aside, f)))
    })
    if (stale.length) {
      console.error(`pack:local: plugin/dist is older than plugin/src (${stale.join(', ')}): npm run build:plugin`)
      const b = spawnSync('npm', ['run', '--silent', 'build:plugin'], { cwd: ROOT, encoding: 'utf8' })
      if (b.status !== 0) fail(`npm run build:plugin failed (exit ${b.status}): ${(b.stderr || b.stdout).trim()}`)
    }
  } finally {
    fs.rmSync(aside, { recursive: true, force: true })
  }
}

function pack(dir) {
  const r = spawnSync('npm', ['pack', '--json', '--pack-destination', out], { cwd: dir, encoding: 'utf8' })
  if (r.status !== 0) fail(`npm pack in ${dir} failed (exit ${r.status}): ${(r.stderr || r.stdout).trim()}`)
  const [info] = JSON.parse(r.stdout.slice(r.stdout.indexOf('[')))
  return path.join(out, info.filename)
}

// the platform package as the release builds it: its folder from npm/, with the binary put in
const staging = fs.mkdtempSync(path.join(os.tmpdir(), 'ofl-pack-'))
try {
  fs.cpSync(path.join(ROOT, 'npm', suffix), staging, { recursive: true })
  fs.copyFileSync(binary, path.join(staging, path.basename(binary)))
  const platformTgz = pack(staging)
  const mainTgz = pack(ROOT)
  const size = (f) => `${(fs.statSync(f).size / 1024 / 1024).toFixed(1)} MB`
  console.log(`packed:
  ${mainTgz} (${size(mainTgz)})
  ${platformTgz} (${size(platformTgz)}, the ${suffix} binary)

into opencode, for every project (or --project <dir> for one), with no registry needed:
  npx -y -p ${platformTgz} -p ${mainTgz} opencode-file-lock install-plugin --global --from ${mainTgz} --from ${platformTgz}

as a library, in a project:
  npm install ${platformTgz} ${mainTgz}

then check the setup:
  npx -p ${platformTgz} -p ${mainTgz} opencode-file-lock doctor --global`)
} finally {
  fs.rmSync(staging, { recursive: true, force: true })
}
