'use strict'
// The backup file of `opencode-file-lock backup` / `restore`: JSON holding every live entry of a
// store under its raw storage key, with the TTL it had left when the backup was taken. Written to
// a temporary file and renamed over the target, so a crash leaves the old backup whole.
const fs = require('node:fs')
const path = require('node:path')
const { invalid } = require('./errors.js')

const FORMAT = 'opencode-file-lock-backup'

/** The entries of a backup file as {key, value, ttlMs}; a file of another shape is EINVAL. */
async function* read(file) {
  let doc
  try {
    doc = JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch (e) {
    throw invalid(`cannot read the backup file ${file}: ${e.code === 'ENOENT' ? 'it does not exist' : e.message}`)
  }
  if (doc?.format !== FORMAT || doc.version !== 1 || !Array.isArray(doc.entries)) throw invalid(`${file} is not an opencode-file-lock backup (format ${FORMAT}, version 1)`)
  for (const e of doc.entries) {
    if (typeof e?.key !== 'string' || !('value' in e) || (e.ttlMs !== undefined && typeof e.ttlMs !== 'number')) yield { key: String(e?.key), error: 'not a {key, value, ttlMs?} entry' }
    else yield { key: e.key, value: e.value, ttlMs: e.ttlMs }
  }
}

/** A write-only store for migrate(): entries collect in memory; flush() writes and reads back. */
function writer(file) {
  if (!file) throw invalid('the backup needs a file: --to <file.json>')
  let entries = new Map()
  return {
    async get(key) {
      return entries.get(key)?.value
    },
    async set(key, value, opts) {
      entries.set(key, { key, value, ...(opts?.ttlMs !== undefined ? { ttlMs: opts.ttlMs } : {}) })
    },
    async flush() {
      const doc = { format: FORMAT, version: 1, createdAt: new Date().toISOString(), count: entries.size, entries: [...entries.values()] }
      const tmp = path.join(path.dirname(path.resolve(file)), `.${path.basename(file)}.${process.pid}.tmp`)
      const fd = fs.openSync(tmp, 'w', 0o600)
      try {
        fs.writeSync(fd, JSON.stringify(doc, null, 1) + '\n')
        fs.fsyncSync(fd)
      } finally {
        fs.closeSync(fd)
      }
      fs.renameSync(tmp, file)
      // what verification sees is what is on disk now
      const back = new Map()
      for await (const e of read(file)) back.set(e.key, e)
      entries = back
    },
    async *entries() {
      for (const e of entries.values()) yield [e.key, e.value]
    },
    async close() {},
  }
}

module.exports = { read, writer, FORMAT }
