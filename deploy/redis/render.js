#!/usr/bin/env node
'use strict'
// Fills a deploy/redis/*.conf template: node render.js <template> KEY=value ... > out.conf
// Every ${KEY} must be given; a missing one is an error, not an empty string.
const fs = require('node:fs')
const path = require('node:path')

function render(template, values) {
  return fs.readFileSync(path.resolve(__dirname, template), 'utf8').replace(/\$\{([A-Z_]+)\}/g, (_, k) => {
    if (values[k] === undefined) throw new Error(`${template} needs ${k}`)
    return String(values[k])
  })
}

if (require.main === module) {
  const [template, ...pairs] = process.argv.slice(2)
  process.stdout.write(render(template, Object.fromEntries(pairs.map((p) => p.split(/=(.*)/s).slice(0, 2)))))
}

module.exports = { render }
