// Reads the history the workers and the nemesis logged and proves three things, in the spirit of
// Jepsen's checkers:
// - no two holders overlapped: two sessions' holds of one path, or of a folder claim and a path
//   below it, never share a moment (a hold runs from its logged grant to its logged release, a
//   loss its holder was told of, or the kill of its process);
// - fencing tokens only grew: each new grant of a path carries a larger token than the one before;
// - no write was lost: each file's writes form one chain from no file to what is on disk, every
//   write extending the content the one before it left (a write logged by a process killed right
//   after is allowed not to have happened).
import crypto from 'node:crypto'
import fs from 'node:fs'

export interface Event {
  t: number
  p: string
  ev: 'grant' | 'release' | 'lost' | 'write' | 'read' | 'kill' | 'stop' | 'cont' | 'redis-kill' | 'redis-start' | 'skew'
  session?: string
  file?: string
  token?: number
  before?: string
  next?: string
  why?: string
  reason?: string
}

export interface Verdict {
  events: number
  grants: number
  writes: number
  nemesis: Record<string, number>
  overlaps: string[]
  tokenRegressions: string[]
  lostWrites: string[]
}

export function readLogs(files: string[]): Event[] {
  return files
    .flatMap((f) => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8').split('\n') : []))
    .filter(Boolean)
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as Event]
      } catch {
        return [] // the last line of a killed process may be cut
      }
    })
    .sort((a, b) => a.t - b.t)
}

const covers = (claimOrPath: string, path: string) => claimOrPath === path || (claimOrPath.endsWith('/') && path.startsWith(claimOrPath))
const overlapping = (a: string, b: string) => covers(a, b) || covers(b, a)
const sha = (s: string) => crypto.createHash('sha1').update(s).digest('hex').slice(0, 12)

export function check(events: Event[], disk: (file: string) => string | undefined): Verdict {
  const killedAt = new Map<string, number>()
  const nemesis: Record<string, number> = {}
  for (const e of events) if (e.p === 'nemesis' && ['kill', 'stop', 'cont', 'redis-kill', 'redis-start', 'skew'].includes(e.ev)) nemesis[e.ev] = (nemesis[e.ev] ?? 0) + 1
  for (const e of events) if (e.ev === 'kill') killedAt.set(e.p, e.t)

  // holds: grant -> release / loss / kill
  type Hold = { session: string; p: string; file: string; from: number; to: number; token?: number }
  const open = new Map<string, Hold>()
  const holds: Hold[] = []
  for (const e of events) {
    if (!e.session || !e.file) continue
    const k = `${e.session}\u0000${e.file}`
    if (e.ev === 'grant') {
      if (!open.has(k)) open.set(k, { session: e.session, p: e.p, file: e.file, from: e.t, to: Infinity, token: e.token })
    } else if (e.ev === 'release' || e.ev === 'lost') {
      const h = open.get(k)
      if (h) {
        h.to = e.t
        holds.push(h)
        open.delete(k)
      }
    }
  }
  for (const h of open.values()) holds.push({ ...h, to: killedAt.get(h.p) ?? Infinity })

  const overlaps: string[] = []
  const byStart = [...holds].sort((a, b) => a.from - b.from)
  for (let i = 0; i < byStart.length; i++) {
    const a = byStart[i]
    for (let j = i + 1; j < byStart.length && byStart[j].from < a.to; j++) {
      const b = byStart[j]
      if (b.session !== a.session && overlapping(a.file, b.file)) overlaps.push(`${a.file} held by ${a.session} [${a.from}, ${a.to}] and ${b.file} by ${b.session} from ${b.from}`)
    }
  }

  // tokens: each new grant of a path above the one before it (by grant time)
  const tokenRegressions: string[] = []
  const lastToken = new Map<string, { token: number; session: string }>()
  for (const h of [...holds].sort((a, b) => a.from - b.from)) {
    if (h.token == null) continue
    const last = lastToken.get(h.file)
    if (last && last.session !== h.session && h.token <= last.token) tokenRegressions.push(`${h.file}: ${h.session} got token ${h.token} after ${last.session}'s ${last.token}`)
    lastToken.set(h.file, { token: h.token, session: h.session })
  }

  // writes: one chain per file
  const lostWrites: string[] = []
  const writes = events.filter((e) => e.ev === 'write')
  for (const file of new Set(writes.map((w) => w.file!))) {
    const chain = writes.filter((w) => w.file === file)
    let at = 'absent'
    for (let i = 0; i < chain.length; i++) {
      const w = chain[i]
      if (w.before === at) {
        at = w.next!
        continue
      }
      // the write before was logged by a process killed before it wrote: it did not happen
      const prev = chain[i - 1]
      if (prev && killedAt.has(prev.p) && killedAt.get(prev.p)! >= prev.t && w.before === prev.before) {
        at = w.next!
        continue
      }
      lostWrites.push(`${file}: ${w.session} wrote over ${w.before}, but the write before left ${at}`)
      at = w.next!
    }
    const now = disk(file)
    const onDisk = now === undefined ? 'absent' : sha(now)
    const last = chain[chain.length - 1]
    if (onDisk !== at && !(last && killedAt.has(last.p) && onDisk === last.before)) lostWrites.push(`${file}: the disk holds ${onDisk}, the last write left ${at}`)
  }
  return { events: events.length, grants: holds.length, writes: writes.length, nemesis, overlaps, tokenRegressions, lostWrites }
}
