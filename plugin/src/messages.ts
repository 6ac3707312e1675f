// What the plugin says: to the model (tool errors, a line added to a tool's output) and to the
// person at the keyboard (stderr, toasts). Every message names the file, who holds it and what
// happened to the call. Text other agents wrote (ids, titles, reasons) goes through oneLine.
import os from 'node:os'
import type { FileVersion, Freshness } from '../../lib/index.js'
import { oneLine } from '../../lib/text.js'

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`

/** A duration as people say it: 45s, 3m 12s, 2h 5m. */
export function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`
}

/** A time of day on this machine's clock (14:03:07), with the date when it is not today. */
export function clock(ms: number): string {
  const d = new Date(ms)
  const time = d.toTimeString().slice(0, 8)
  return d.toDateString() === new Date().toDateString() ? time : `${d.toISOString().slice(0, 10)} ${time}`
}

/** "the session “Fix login” (agent build)", else "agent <id> (session <id>)", with where it ran when that is another machine. */
export function writerOf(v: { sessionId?: string; agentId?: string; title?: string; agentName?: string; kind?: string; host?: string }): string {
  const title = v.title ? oneLine(v.title) : ''
  const base = title ? `the session “${title}”${v.agentName ? ` (agent ${oneLine(v.agentName, 64)})` : ''}` : `agent ${oneLine(v.agentId ?? 'unknown')} (session ${oneLine(v.sessionId ?? 'unknown')})`
  const kind = v.kind && v.kind !== 'opencode' ? ` [${oneLine(v.kind, 64)}]` : ''
  const host = v.host && v.host !== os.hostname() ? ` on ${oneLine(v.host, 64)}` : ''
  return `${base}${kind}${host}`
}

const wroteIt = (v: FileVersion) => `${writerOf(v)} wrote it ${ago(Date.now() - v.at)} ago`

/** What happened to one file since the task saw it, as one sentence. */
function staleLine(f: Freshness, shown: (p: string) => string): string {
  const file = shown(f.path)
  const last = f.lastWrite
  switch (f.status) {
    case 'unread':
      return `${file} exists and you have not read it${last && f.byLastWrite ? ` (${wroteIt(last)})` : ''}: writing it whole would replace what is in it.`
    case 'torn':
      return `${file} changed while you read it, so what you saw may not be what it holds${last && f.byLastWrite ? ` (${wroteIt(last)})` : ''}.`
    case 'unreadable':
      return `${file} could not be read to see whether it changed since you read it (${oneLine(f.error ?? 'unknown error')}).`
    default:
      if (last && f.byLastWrite) return `${file} changed since you read it: ${wroteIt(last)}.`
      return `${file} changed since you read it: it was changed on disk outside any agent${f.modifiedAt ? ` at ${clock(f.modifiedAt)}` : ''}${last ? ` (the last agent write, by ${writerOf(last)} ${ago(Date.now() - last.at)} ago, is not what it holds now)` : ''}.`
  }
}

/** A write refused because its task's view of a file is out of date (or it never read a file it would replace). */
export function staleRefusal(tool: string, found: Freshness[], files: string[], shown: (p: string) => string): Error {
  const lines = found.map((f) => staleLine(f, shown))
  const names = found.map((f) => shown(f.path)).join(', ')
  const unreadOnly = found.every((f) => f.status === 'unread')
  const advice = unreadOnly ? `Read ${names} first, then make your change.` : `Read ${names} again and redo your change on what ${found.length > 1 ? 'they hold' : 'it holds'} now.`
  return new Error(`opencode-file-lock refused this ${tool} call: ${lines.join(' ')} Your change was not applied (${changed(files)}). ${advice}`)
}

/** FILE_LOCK_STALE=warn: appended to the output of a write that went ahead over changes its task had not seen. */
export function staleWarning(found: Freshness[], shown: (p: string) => string): string {
  return `\n\n[opencode-file-lock] Warning: this write went ahead over changes you had not seen. ${found.map((f) => staleLine(f, shown)).join(' ')} Read ${found.map((f) => shown(f.path)).join(', ')} again to check nothing of theirs was lost.`
}

/** Added to a holder's tool result while other agents wait for what it holds: one line each. */
export function othersWait(waiting: { agentId: string; sessionId: string; paths: string[] }[]): string {
  const lines = waiting.map((w) => {
    const them = w.paths.length === 1 ? 'it' : 'them'
    return `[opencode-file-lock] agent ${oneLine(w.agentId)} (session ${oneLine(w.sessionId)}) is waiting for ${w.paths.join(', ')}; finish with ${them} or release ${them} (claim_files with release: true).`
  })
  return `\n\n${lines.join('\n')}`
}
const changed = (files: string[]) => (files.length > 1 ? `none of its ${files.length} files was changed` : 'the file was not changed')

/** A lock with a reason was claimed (claim_files, an MCP claim, a person's lock; writes give none): " It is claimed by <who> to rename the auth module." */
function claimedFor(h: any, who: string): string {
  const reason = typeof h?.reason === 'string' ? oneLine(h.reason).replace(/^to\s+/i, '') : ''
  if (!reason) return ''
  return ` It is claimed by ${who || writerOf(h)} to ${reason}.`
}

/** "the session “Fix the parser” (agent build)" when opencode knows the holder's session. */
export type Describe = (sessionId: string) => Promise<string>

/** A refused or failed acquire, as the tool's error. */
export async function blocked(tool: string, files: string[], e: any, waitMs: number, why: unknown, describe: Describe): Promise<Error> {
  if (e?.code === 'ELOCKED') {
    const waited = waitMs > 0 && typeof e.waitedMs === 'number' ? `waited ${seconds(e.waitedMs)} for it, then ` : ''
    const who = (e.holder?.sessionId ? await describe(e.holder.sessionId) : '') || (e.holder?.title ? writerOf(e.holder) : '')
    const known = who ? ` It is held by ${who}.` : ''
    const claim = claimedFor(e.holder, who)
    return new Error(`${e.message}${claim || known} (opencode-file-lock ${waited}blocked this ${tool} call; ${changed(files)}.)`)
  }
  if (e?.code === 'EDEADLK') {
    return new Error(`${e.message} (opencode-file-lock refused this ${tool} call at once: waiting would never end; ${changed(files)}.)`)
  }
  if (e?.code === 'EABORTED') {
    return new Error(`opencode-file-lock stopped waiting for ${files.join(', ')} after ${seconds(e.waitedMs ?? 0)} (${why ?? 'the session ended'}). The ${tool} call was not run and ${changed(files)}.`)
  }
  return new Error(
    `opencode-file-lock could not lock ${files.join(', ')} because the lock store is unavailable (${e?.code ?? 'error'}: ${e?.message ?? e}). ` +
      `The ${tool} call was not run and ${changed(files)}; retry in a moment.`,
  )
}

/** The check for changes since the task read its files could not run: the write is refused (it fails closed). */
export function cannotCheck(tool: string, files: string[], e: any): Error {
  return new Error(
    `opencode-file-lock could not check whether ${files.join(', ')} changed since you read ${files.length > 1 ? 'them' : 'it'} (${e?.code ?? 'error'}: ${e?.message ?? e}). ` +
      `The ${tool} call was not run and ${changed(files)}; retry in a moment.`,
  )
}

/** A tool whose name says it writes, with no argument naming a file: it cannot be locked. */
export function noPaths(tool: string, args: unknown): Error {
  const keys = args && typeof args === 'object' ? Object.keys(args) : []
  const base = tool
  return new Error(
    `opencode-file-lock refused this ${tool} call: it is a tool that writes files, but none of its arguments (${keys.join(', ') || 'none'}) names a file it can lock, ` +
      `so it would run unlocked. If it writes files, set FILE_LOCK_TOOLS="${base}:<argument holding the path>"; if it writes none, FILE_LOCK_TOOLS="-${base}" ` +
      `(in the environment opencode starts with). A patch must name its files in *** Add/Update/Delete File: lines between *** Begin Patch and *** End Patch.`,
  )
}

/** The plugin cannot lock at all (the native addon is missing, a setting is wrong): every write is refused. */
export function cannotLock(tool: string, why: string): Error {
  return new Error(`opencode-file-lock refused this ${tool} call because it cannot lock files: ${why} The call was not run, so no file was changed without a lock.`)
}

/** Said once on stderr when the plugin cannot lock at all. */
export function cannotLockNotice(why: string): string {
  return `[opencode-file-lock] ${why} Until this is fixed, every write, edit and patch opencode tries is refused.`
}

/** A lock the plugin held is gone. */
export function lostNotice(path: string, session: string, reason: string, holder?: { agentId?: string; sessionId?: string } | null): string {
  const now = holder?.sessionId ? `; now held by agent ${oneLine(holder.agentId)} (session ${oneLine(holder.sessionId)})` : ''
  return `[opencode-file-lock] lost the lock on ${path} (session ${session}, reason: ${reason}${now}); no longer renewing it`
}

/** A release that failed: the lock stays until its TTL. */
export function releaseFailed(path: string, owner: string, why: string, e: any): string {
  return `[opencode-file-lock] could not release ${path} (session ${owner}, ${why}): ${e?.code ?? ''} ${e?.message ?? e}; it is left to expire at its TTL`
}

/** What a bash command did to files other sessions hold: appended to its output for the model. */
export function bashChanged(changes: { path: string; who: string; how: string }[]): string {
  const lines = changes.map((c) => `- ${c.path} (${c.how}), which ${c.who} holds`)
  return (
    `\n\n[opencode-file-lock] This command changed ${changes.length === 1 ? 'a file' : `${changes.length} files`} that another agent holds a lock on:\n${lines.join('\n')}\n` +
    'That agent may be writing it right now. Check the file, and do not change it again until its lock is released; use write or edit, which wait for the lock.'
  )
}

export const toasts = {
  stale: (files: string[], who: string, refused: boolean) => ({ title: refused ? 'Stale write refused' : 'Stale write', message: `${files.join(', ')} changed since this session read it (${who}); ${refused ? 'the write was refused' : 'the write went ahead over it'}.`, variant: (refused ? 'error' : 'warning') as 'warning' | 'error' }),
  waiting: (files: string[], who: string, waitMs: number) => ({ title: 'Waiting for a file lock', message: `${files.join(', ')} is held by ${who}; this write waits up to ${seconds(waitMs)}.`, variant: 'warning' as const }),
  refused: (files: string[], who: string) => ({ title: 'Write blocked', message: `${files.join(', ')} is held by ${who}; the write was refused.`, variant: 'error' as const }),
  lost: (path: string, reason: string) => ({ title: 'File lock lost', message: `The lock on ${path} is gone (${reason}); another agent may write it.`, variant: 'error' as const }),
  deadlock: (released: string[]) => ({ title: 'Deadlock between agents', message: `Two agents waited for each other's files; ${released.length ? `${released.join(', ')} was let go so the other can go on` : 'this write was refused'}.`, variant: 'warning' as const }),
  bash: (paths: string[]) => ({ title: 'A command changed a locked file', message: `${paths.join(', ')} (held by another agent) changed under a bash command.`, variant: 'warning' as const }),
}
