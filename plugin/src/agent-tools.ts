// The two tools the plugin gives agents: `file_locks` (who holds or claims which files of the
// project, who waits) and `claim_files` (lock files or whole folders for the rest of the turn ahead
// of a multi-file change, and let them go). Both are read by people too, so they say who and how long.
import path from 'node:path'
import type { Cache, LockSnapshot } from '../../lib/index.js'
import { ago } from './messages.ts'

type Lib = typeof import('../../lib/index.js')

/** The zod the tools' arguments are declared with (opencode's plugin API wants zod schemas). */
export type Zod = typeof import('zod').z

/** What the tools need from the plugin's hooks. */
export interface ToolDeps {
  lib: Lib
  cache: () => Promise<Cache>
  baseDir: string
  /** The root of a session's task tree: the owner its locks are taken as. */
  root: (session: string) => Promise<string>
  /** "the session “title” (agent build)", or '' when opencode does not know it. */
  describe: (session: string) => Promise<string>
  /** Takes `paths` for `session` as `owner` until the turn ends; resolves to the normalized paths. */
  claim: (session: string, owner: string, paths: string[], signal?: AbortSignal) => Promise<string[]>
  /** Lets go of what `owner`'s tree holds through this plugin on `paths`; the paths let go of. */
  unclaim: (owner: string, paths: string[]) => Promise<string[]>
}

interface ToolContext {
  sessionID: string
  abort?: AbortSignal
}

/** A path as the project's people write it: relative inside the project, absolute outside. */
export function shown(p: string, baseDir: string): string {
  const rel = path.relative(baseDir, p)
  if (rel === '') return './'
  if (rel.startsWith('..') || path.isAbsolute(rel)) return p
  return p.endsWith('/') ? `${rel}/` : rel
}

const inProject = (p: string, baseDir: string) => p === `${baseDir}/` || p.startsWith(`${baseDir}/`) || p === baseDir

/** The `file_locks` answer: every lock and claim of the project, then who waits. */
export async function describeLocks(snap: LockSnapshot, baseDir: string, me: string, describe: ToolDeps['describe']): Promise<string> {
  const who = async (session: string, agent: string) => {
    if (session === me) return 'you (this task)'
    const d = await describe(session)
    return d || `agent ${agent} (session ${session})`
  }
  const locks = snap.locks.filter((l) => inProject(l.path, baseDir)).sort((a, b) => a.path.localeCompare(b.path))
  const waiters = snap.waiters.filter((w) => w.paths.some((p) => inProject(p, baseDir)))
  if (locks.length === 0 && waiters.length === 0) return `No file or folder in ${baseDir} is locked or claimed, and nobody waits.`
  const lines = [`Locks in ${baseDir} (${locks.length} held, ${waiters.length} waiting):`]
  for (const l of locks) {
    const what = l.path.endsWith('/') ? `${shown(l.path, baseDir)} (claim: the folder and everything in it)` : shown(l.path, baseDir)
    const left = l.expiresAt > 0 ? `, expires in ${ago(l.expiresAt - snap.now)} unless renewed` : ''
    lines.push(`- ${what}: held by ${await who(l.sessionId, l.agentId)} for ${ago(snap.now - l.timestamp)}${left}`)
  }
  for (const w of waiters) {
    const by = w.blockedBy.sessionId ? `, held up by ${await who(w.blockedBy.sessionId, 'unknown')} on ${shown(w.blockedBy.path || w.paths[0], baseDir)}` : ''
    lines.push(`- waiting: ${await who(w.sessionId, w.agentId)} for ${w.paths.map((p) => shown(p, baseDir)).join(', ')} since ${ago(w.waitedMs)} ago${by}`)
  }
  return lines.join('\n')
}

export function agentTools(z: Zod, d: ToolDeps) {
  return {
    file_locks: {
      description:
        'List the files and folders of this project that agents hold locks or claims on (a path ending in / is a claim on a whole folder), who holds each and for how long, ' +
        'and which agents wait for which files. Use it before a change that touches many files, or when a write was refused because another agent holds a file.',
      args: {},
      async execute(_args: Record<string, never>, ctx: ToolContext): Promise<string> {
        const snap = await d.lib.lockSnapshot(await d.cache())
        return describeLocks(snap, d.baseDir, await d.root(ctx.sessionID), d.describe)
      },
    },
    claim_files: {
      description:
        'Claim files or whole folders for the rest of this turn, ahead of a change that touches several of them, so no other agent writes them meanwhile: ' +
        'a path ending in / claims that folder and everything in it. All or nothing: if another agent holds any of them, nothing is claimed and the answer says who. ' +
        'With release: true, lets go of the given paths instead (files this session locked by writing them, too), so an agent waiting for them can go on.',
      args: {
        paths: z.array(z.string()).min(1).describe('Files, or folders ending in /, relative to the project (e.g. ["src/auth/", "README.md"])'),
        release: z.boolean().optional().describe('true: let go of these paths instead of claiming them'),
      },
      async execute(args: { paths: string[]; release?: boolean }, ctx: ToolContext): Promise<string> {
        const owner = await d.root(ctx.sessionID)
        const shownAll = (ps: string[]) => ps.map((p) => shown(p, d.baseDir)).join(', ')
        if (args.release) {
          const gone = await d.unclaim(owner, args.paths)
          if (gone.length === 0) return `Nothing to let go of: this session holds none of ${args.paths.join(', ')} through opencode-file-lock.`
          return `Let go of ${shownAll(gone)}; other agents may write there now.`
        }
        const got = await d.claim(ctx.sessionID, owner, args.paths, ctx.abort)
        const folders = got.filter((p) => p.endsWith('/'))
        const note = folders.length ? ` (${folders.length === 1 ? 'a folder claim covers' : 'folder claims cover'} everything inside)` : ''
        return `Claimed ${shownAll(got)}${note} until this turn ends; other agents' writes there are refused meanwhile. Release early with claim_files and release: true.`
      },
    },
  }
}
