// The two tools the plugin gives agents: `file_locks` (who holds or claims which files of the
// project, who waits) and `claim_files` (lock files or whole folders for the rest of the turn ahead
// of a multi-file change, and let them go). Both are read by people too, so they say who and how long.
import path from 'node:path';
import { oneLine } from '../../lib/text.js';
import { ago, writerOf } from './messages.js';
/** How many recent writes `file_locks` lists besides the locked files. */
const RECENT_WRITES = 15;
/** What a file's status means for the caller, in `file_locks`. */
const VIEW_WORDS = {
    fresh: 'your view is current',
    own: 'your view is current (you wrote it)',
    stale: 'changed since you read it: read it again before writing it',
    unread: 'you have not read it',
    torn: 'it changed while you read it: read it again before writing it',
    new: 'no file there now',
    unreadable: 'cannot be read to compare',
};
/** A path as the project's people write it: relative inside the project, absolute outside. */
export function shown(p, baseDir) {
    const rel = path.relative(baseDir, p);
    if (rel === '')
        return './';
    if (rel.startsWith('..') || path.isAbsolute(rel))
        return p;
    return p.endsWith('/') ? `${rel}/` : rel;
}
const inProject = (p, baseDir) => p === `${baseDir}/` || p.startsWith(`${baseDir}/`) || p === baseDir;
/** The `file_locks` answer: every lock and claim of the project, then who waits, then recent writes. */
export async function describeLocks(snap, baseDir, me, describe, notes = new Map(), recent = []) {
    const who = async (session, agent, rec) => {
        if (session === me)
            return 'you (this task)';
        const d = await describe(session);
        return d || writerOf({ sessionId: session, agentId: agent, title: rec?.title, agentName: rec?.agentName, kind: rec?.kind });
    };
    const note = (p) => {
        const n = notes.get(p);
        if (!n)
            return '';
        const last = n.lastWrite ? `; last written by ${n.lastWrite.tree === me ? 'you' : writerOf(n.lastWrite)} ${ago(Date.now() - n.lastWrite.at)} ago` : '';
        const view = n.status && VIEW_WORDS[n.status] ? `; ${VIEW_WORDS[n.status]}` : '';
        return `${last}${view}`;
    };
    const locks = snap.locks.filter((l) => inProject(l.path, baseDir)).sort((a, b) => a.path.localeCompare(b.path));
    const waiters = snap.waiters.filter((w) => w.paths.some((p) => inProject(p, baseDir)));
    const lines = [];
    if (locks.length === 0 && waiters.length === 0)
        lines.push(`No file or folder in ${baseDir} is locked or claimed, and nobody waits.`);
    else
        lines.push(`Locks in ${baseDir} (${locks.length} held, ${waiters.length} waiting):`);
    for (const l of locks) {
        const what = l.path.endsWith('/') ? `${shown(l.path, baseDir)} (claim: the folder and everything in it)` : shown(l.path, baseDir);
        const left = l.expiresAt > 0 ? `, expires in ${ago(l.expiresAt - snap.now)} unless renewed` : '';
        const reason = typeof l.reason === 'string' && l.reason ? `, for this reason: “${oneLine(l.reason)}”` : '';
        lines.push(`- ${what}: held by ${await who(l.sessionId, l.agentId, l)} for ${ago(snap.now - l.timestamp)}${reason}${left}${note(l.path)}`);
    }
    for (const w of waiters) {
        const by = w.blockedBy.sessionId ? `, held up by ${await who(w.blockedBy.sessionId, 'unknown')} on ${shown(w.blockedBy.path || w.paths[0], baseDir)}` : '';
        lines.push(`- waiting: ${await who(w.sessionId, w.agentId)} for ${w.paths.map((p) => shown(p, baseDir)).join(', ')} since ${ago(w.waitedMs)} ago${by}`);
    }
    const unlocked = recent.filter((p) => !locks.some((l) => l.path === p) && notes.get(p)?.lastWrite);
    if (unlocked.length) {
        lines.push(`Recently written files (last writer; whether your view is current):`);
        for (const p of unlocked)
            lines.push(`- ${shown(p, baseDir)}${note(p).replace(/^; /, ': ')}`);
    }
    return lines.join('\n');
}
/** The project's most recently written files, newest first (from the versions beside the locks). */
async function recentWrites(cache, baseDir) {
    const found = [];
    for await (const [key, v] of cache.withNamespace('versions').entries({ limit: 5000 })) {
        // a version's key is its path behind the hash tag of the path's lock key ({tag}/p/a.ts; src/core/versions.rs)
        const p = key.replace(/^\{[^}]*\}/, '');
        if (inProject(p, baseDir) && typeof v?.at === 'number')
            found.push({ path: p, at: v.at });
    }
    return found.sort((a, b) => b.at - a.at).slice(0, RECENT_WRITES).map((f) => f.path);
}
export function agentTools(z, d) {
    return {
        file_locks: {
            description: 'List the files and folders of this project that agents hold locks or claims on (a path ending in / is a claim on a whole folder), who holds each and for how long, ' +
                'and which agents wait for which files. Use it before a change that touches many files, or when a write was refused because another agent holds a file.',
            args: {},
            async execute(_args, ctx) {
                const c = await d.cache();
                const snap = await d.lib.lockSnapshot(c);
                const me = await d.root(ctx.sessionID);
                const notes = new Map();
                let recent = [];
                if (d.views?.on) {
                    recent = await recentWrites(c, d.baseDir).catch(() => []);
                    const files = [...new Set([...snap.locks.filter((l) => inProject(l.path, d.baseDir)).map((l) => l.path), ...recent])];
                    for (const f of await d.views.describe(files, me).catch(() => []))
                        notes.set(f.path, f);
                }
                return describeLocks(snap, d.baseDir, me, d.describe, notes, recent);
            },
        },
        claim_files: {
            description: 'Claim files or whole folders for the rest of this turn, ahead of a change that touches several of them, so no other agent writes them meanwhile: ' +
                'a path ending in / claims that folder and everything in it. All or nothing: if another agent holds any of them, nothing is claimed and the answer says who. ' +
                'With release: true, lets go of the given paths instead (files this session locked by writing them, too), so an agent waiting for them can go on.',
            args: {
                paths: z.array(z.string()).min(1).describe('Files, or folders ending in /, relative to the project (e.g. ["src/auth/", "README.md"])'),
                release: z.boolean().optional().describe('true: let go of these paths instead of claiming them'),
                reason: z.string().optional().describe('One line saying why (e.g. "rename the auth module"): other agents see it when their writes there are refused. Kept as one line of at most 200 characters'),
            },
            async execute(args, ctx) {
                const owner = await d.root(ctx.sessionID);
                const shownAll = (ps) => ps.map((p) => shown(p, d.baseDir)).join(', ');
                if (args.release) {
                    const gone = await d.unclaim(owner, args.paths);
                    if (gone.length === 0)
                        return `Nothing to let go of: this session holds none of ${args.paths.join(', ')} through opencode-file-lock.`;
                    return `Let go of ${shownAll(gone)}; other agents may write there now.`;
                }
                const got = await d.claim(ctx.sessionID, owner, args.paths, ctx.abort, args.reason);
                const folders = got.filter((p) => p.endsWith('/'));
                const note = folders.length ? ` (${folders.length === 1 ? 'a folder claim covers' : 'folder claims cover'} everything inside)` : '';
                return `Claimed ${shownAll(got)}${note} until this turn ends; other agents' writes there are refused meanwhile. Release early with claim_files and release: true.`;
            },
        },
    };
}
