// A bash command can rewrite a file another agent holds, and no hook sees it do so. Before each
// bash call the plugin notes the files other sessions hold (one stat each, no tree walk); after
// it, it stats them again and tells the model (in the tool's output) and the log which changed.
import fs from 'node:fs'
import type { LockRecord } from '../../lib/index.js'

/** What a stat says of a file, enough to see that it changed (or appeared, or went). */
export type Mark = string

function mark(path: string): Mark {
  try {
    const s = fs.statSync(path, { bigint: true })
    return `${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`
  } catch {
    return 'absent'
  }
}

/** The locks of other sessions, with what each file looks like now. */
export interface Snapshot {
  locks: LockRecord[]
  marks: Mark[]
}

export function snapshot(locks: LockRecord[]): Snapshot {
  return { locks, marks: locks.map((l) => mark(l.path)) }
}

/** The files of `before` that look different now, and how. */
export function changes(before: Snapshot): { lock: LockRecord; how: string }[] {
  const out: { lock: LockRecord; how: string }[] = []
  before.locks.forEach((lock, i) => {
    const now = mark(lock.path)
    if (now === before.marks[i]) return
    const how = before.marks[i] === 'absent' ? 'created' : now === 'absent' ? 'deleted' : 'modified'
    out.push({ lock, how })
  })
  return out
}
