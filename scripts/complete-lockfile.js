#!/usr/bin/env node
// The registry this project builds against serves only the platform packages this machine can use,
// so `npm install` writes a lockfile without other platforms' optional packages (rollup's, for one)
// and `npm ci` then refuses it as out of sync. This adds those entries back (version only, marked
// optional); npm ci skips optional packages it cannot fetch. Run after every `npm install`.
const fs = require('fs')
const lock = JSON.parse(fs.readFileSync('package-lock.json', 'utf8'))
let added = 0
for (const [key, pkg] of Object.entries(lock.packages)) {
  for (const [name, range] of Object.entries(pkg.optionalDependencies ?? {})) {
    const where = `node_modules/${name}`
    if (!lock.packages[where]) {
      lock.packages[where] = { version: range.replace(/^[\^~]/, ''), dev: pkg.dev, optional: true }
      added++
    }
  }
}
fs.writeFileSync('package-lock.json', JSON.stringify(lock, null, 2) + '\n')
console.log(`complete-lockfile: added ${added} optional platform entries`)
