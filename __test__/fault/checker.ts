// Reads the workers' grant/release logs and finds every pair of holders whose recorded intervals
// overlap on one file. A recorded interval [grant, release] lies inside the real holding time, so
// any overlap here is a real double grant. Also checks that fencing tokens grow per file.
import fs from 'node:fs'

/** Now in µs on the clock the workers log with (monotonic, the same in every process of the machine). */
export const nowUs = () => Number(process.hrtime.bigint() / 1000n)

export interface Verdict {
  grants: number
  doubleGrants: { file: string; a: string; b: string }[]
  tokenRegressions: number
}

/**
 * `endsAt`: for the log of a process that was killed, when (µs) it died: what it held ends there
 * (a dead process writes nothing; the store lets its locks go at their TTL).
 */
export function check(logFiles: string[], endsAt: Record<string, number> = {}): Verdict {
  const intervals = intervalsOf(logFiles, endsAt)
  const verdict: Verdict = { grants: 0, doubleGrants: [], tokenRegressions: 0 }
  for (const [file, list] of intervals) {
    list.sort((a, b) => a.from - b.from)
    verdict.grants += list.length
    let last = list[0]
    for (let i = 1; i < list.length; i++) {
      const cur = list[i]
      if (cur.from < last.to && cur.session !== last.session) verdict.doubleGrants.push({ file, a: last.session, b: cur.session })
      if (cur.token != null && last.token != null && cur.token <= last.token && cur.session !== last.session) verdict.tokenRegressions++
      if (cur.to > last.to) last = cur
    }
  }
  return verdict
}

/** How many recorded holds (of any file) began at or after `tUs` (µs, the logs' clock). */
export function grantedFrom(logFiles: string[], tUs: number): number {
  let n = 0
  for (const list of intervalsOf(logFiles).values()) n += list.filter((i) => i.from >= tUs).length
  return n
}

/** How many recorded holds (of any file) were held at `tUs` (µs, the logs' clock). */
export function heldAt(logFiles: string[], tUs: number): number {
  let n = 0
  for (const list of intervalsOf(logFiles).values()) n += list.filter((i) => i.from < tUs && tUs < i.to).length
  return n
}

type Interval = { session: string; from: number; to: number; token?: number }

/** Every recorded hold, by file. */
function intervalsOf(logFiles: string[], endsAt: Record<string, number> = {}): Map<string, Interval[]> {
  const events = logFiles.flatMap((f) =>
    fs.existsSync(f)
      ? fs.readFileSync(f, 'utf8').split('\n').filter(Boolean).flatMap((l) => {
          try {
            return [{ ...JSON.parse(l), end: endsAt[f] ?? Infinity }]
          } catch {
            return [] // the last line of a killed process may be cut
          }
        })
      : [],
  )
  const open = new Map<string, { session: string; t: number }>() // session|file -> grant
  const intervals = new Map<string, Interval[]>()
  for (const e of events.sort((a, b) => a.t - b.t)) {
    const k = `${e.session}|${e.file}`
    if (e.ev === 'grant') open.set(k, { session: e.session, t: e.t, token: e.token, end: e.end } as any)
    else if (open.has(k)) {
      const g = open.get(k) as any
      open.delete(k)
      const list = intervals.get(e.file) ?? []
      list.push({ session: e.session, from: g.t, to: e.t, token: g.token })
      intervals.set(e.file, list)
    }
  }
  // a holder killed mid-hold never logged its release: its interval runs to the end
  for (const [k, g] of open as any) {
    const file = k.slice(k.indexOf('|') + 1)
    const list = intervals.get(file) ?? []
    list.push({ session: g.session, from: g.t, to: g.end, token: g.token })
    intervals.set(file, list)
  }
  return intervals
}
