var __rewriteRelativeImportExtension = (this && this.__rewriteRelativeImportExtension) || function (path, preserveJsx) {
    if (typeof path === "string" && /^\.\.?\//.test(path)) {
        return path.replace(/\.(tsx)$|((?:\.d)?)((?:\.[^./]+?)?)\.([cm]?)ts$/i, function (m, tsx, d, ext, cm) {
            return tsx ? preserveJsx ? ".jsx" : ".js" : d && (!ext || !cm) ? m : (d + ext + "." + cm.toLowerCase() + "js");
        });
    }
    return path;
};
// `opencode-file-lock mcp`: the lock table for any MCP client (Claude Code, Codex, Cursor, Gemini
// CLI), over stdio with the official SDK. Tools: list_locks (holders, claims, waiters),
// claim_files (files or folders, with a reason and a TTL), release_files, check_file (may this
// file be written now, and who wrote it last). Claims live in the same table as opencode's and
// Claude Code's locks, held by this server's session (`mcp:<client>:<host>:<pid>`, kind
// `mcp:<client>`); they go when the client disconnects (no one is left to release them) or at
// their TTL. Text from other agents is made one line before it reaches the client.
import { createRequire } from 'node:module';
import os from 'node:os';
import { holderText, oneLine, reasonText } from '../../lib/text.js';
import { load } from './load.js';
import * as say from './messages.js';
const DEFAULT_TTL_MINUTES = 60;
/** The longest claim: a day (a claim nobody renews must not outlive the work for long). */
const MAX_TTL_MINUTES = 24 * 60;
const MAX_WAIT_SECONDS = 300;
const MAX_PATHS = 1000;
// some clients (Claude Code) show the structured content instead of the text: it leads with the text
const text = (t, structured) => ({ content: [{ type: 'text', text: t }], ...(structured ? { structuredContent: { summary: t, ...structured } } : {}) });
const failed = (t) => ({ content: [{ type: 'text', text: t }], isError: true });
/** A lock as a client sees it, every text field one line. */
function shownLock(r, now) {
    const x = r;
    return {
        path: oneLine(r.path, 4096),
        claim: r.path.endsWith('/'),
        holder: holderText(x),
        kind: oneLine(x.kind ?? 'opencode', 64),
        sessionId: oneLine(r.sessionId),
        agentId: oneLine(r.agentId),
        ...(x.reason ? { reason: oneLine(x.reason) } : {}),
        heldForSeconds: Math.max(0, Math.round((now - r.timestamp) / 1000)),
        expiresInSeconds: Math.max(0, Math.round((r.expiresAt - now) / 1000)),
    };
}
export function mcpTools(lib, cache, me, baseDir) {
    const normal = (p) => {
        const n = lib.normalizePath(p, baseDir);
        return p.endsWith('/') && !n.endsWith('/') ? `${n}/` : n;
    };
    return {
        async list(prefix) {
            const { now, locks, waiters } = await lib.lockSnapshot(await cache());
            const p = prefix ? normal(prefix) : '';
            const held = locks.filter((l) => !p || l.path.startsWith(p)).map((l) => shownLock(l, now));
            const waiting = waiters
                .filter((w) => !p || w.paths.some((x) => x.startsWith(p)))
                .map((w) => ({ holder: holderText(w), paths: w.paths.map((x) => oneLine(x, 4096)), waitedSeconds: Math.round(w.waitedMs / 1000), heldUpBy: oneLine(w.blockedBy.sessionId || 'unknown') }));
            const lines = [
                held.length ? held.map((l) => `${l.path}${l.claim ? ' (claim: the folder and everything in it)' : ''}: held by ${l.holder}${l.reason ? `, for this reason: “${l.reason}”` : ''}, for ${l.heldForSeconds}s, expires in ${l.expiresInSeconds}s`).join('\n') : 'No locks are held.',
                ...waiting.map((w) => `waiting: ${w.holder} for ${w.paths.join(', ')} for ${w.waitedSeconds}s, held up by session ${w.heldUpBy}`),
            ];
            return text(lines.join('\n'), { locks: held, waiters: waiting });
        },
        async claim(paths, reason, ttlMinutes = DEFAULT_TTL_MINUTES, waitSeconds = 0) {
            const who = me();
            const wanted = paths.map(normal);
            try {
                const got = await lib.acquireLocks(wanted, who.agentId, who.sessionId, await cache(), {
                    kind: who.kind,
                    ttlMs: Math.round(ttlMinutes * 60_000),
                    ...(reason ? { reason } : {}),
                    ...(waitSeconds > 0 ? { waitMs: Math.round(waitSeconds * 1000) } : {}),
                });
                return text(`Claimed ${got.join(', ')} for ${ttlMinutes} minutes${reason ? ` (reason: “${oneLine(reason)}”)` : ''}. Other agents' writes there are refused until you release them (release_files) or the claim expires.`, { claimed: got, ttlMinutes });
            }
            catch (e) {
                if (['ELOCKED', 'EDEADLK', 'EABORTED'].includes(e?.code))
                    return failed((await say.blocked('claim_files', wanted, e, waitSeconds * 1000, 'the wait ran out', async () => '')).message);
                throw e;
            }
        },
        async release(paths) {
            const who = me();
            const c = await cache();
            const released = [];
            const notHeld = [];
            for (const p of paths.map(normal)) {
                let any = false;
                for (let i = 0; i < 1000 && (await lib.releaseLock(p, who.sessionId, c)); i++)
                    any = true;
                (any ? released : notHeld).push(p);
            }
            return text([released.length ? `Released ${released.join(', ')}.` : '', notHeld.length ? `Not held by you: ${notHeld.join(', ')}.` : ''].filter(Boolean).join(' '), { released, notHeld });
        },
        async check(path) {
            const who = me();
            const p = normal(path);
            const c = await cache();
            const holders = (await lib.listLocks(c)).filter((l) => l.path === p || (l.path.endsWith('/') && p.startsWith(l.path)) || (p.endsWith('/') && l.path.startsWith(p)));
            const others = holders.filter((l) => l.sessionId !== who.sessionId);
            const [last] = p.endsWith('/') ? [null] : await lib.lastWrites([p], c);
            const lastText = last ? ` It was last written by ${say.writerOf(last)} ${say.ago(Date.now() - last.at)} ago.` : '';
            if (others.length) {
                const h = others[0];
                return text(`${oneLine(p, 4096)} may not be written now: it is held by ${holderText(h)}${reasonText(h)}${h.path !== p ? ` (through ${oneLine(h.path, 4096)})` : ''}.${lastText}`, { path: p, writable: false, holder: shownLock(h, Date.now()) });
            }
            return text(`${oneLine(p, 4096)} may be written: no one else holds it${holders.length ? ' (you hold it)' : ''}.${lastText}`, { path: p, writable: true });
        },
    };
}
/** Runs the stdio MCP server until the client goes; its claims go with it. */
export async function serveMcp(_argv = []) {
    const ready = await load({ directory: process.cwd() }, {});
    if ('why' in ready)
        throw new Error(`opencode-file-lock cannot lock files: ${ready.why}`);
    const { lib, s } = ready;
    const z = ready.z;
    if (!z)
        throw new Error('opencode-file-lock mcp needs zod, which did not load');
    const { McpServer, StdioServerTransport } = (await import(__rewriteRelativeImportExtension('./mcp-sdk.js')));
    const { PKG } = createRequire(import.meta.url)('../../lib/platform.js');
    const server = new McpServer({ name: 'opencode-file-lock', version: PKG.version });
    let opened;
    const cache = () => (opened ??= lib.openCache(s.cacheBackend ? { backend: s.cacheBackend } : {}));
    const me = () => {
        const client = oneLine(server.server.getClientVersion()?.name || 'client', 64).replace(/\s+/g, '-');
        return { sessionId: `mcp:${client}:${os.hostname()}:${process.pid}`, agentId: `${client}@${os.hostname()}`, kind: `mcp:${client}` };
    };
    const tools = mcpTools(lib, cache, me, s.baseDir);
    /** A tool's handler: bad input and store errors come back as tool errors, never as a crash. */
    const guarded = (f) => async (a) => {
        try {
            return await f(a);
        }
        catch (e) {
            return failed(`opencode-file-lock: ${e?.code ? `[${e.code}] ` : ''}${oneLine(e?.message ?? e, 1000)}`);
        }
    };
    const paths = z.array(z.string().min(1).max(4096)).min(1).max(MAX_PATHS);
    server.registerTool('list_locks', { description: 'List every lock, folder claim and waiter on files, whoever holds them: opencode and Claude Code sessions, MCP clients, people (with their reasons).', inputSchema: { prefix: z.string().max(4096).optional().describe('only paths under this folder') } }, guarded(({ prefix }) => tools.list(prefix)));
    server.registerTool('claim_files', {
        description: 'Claim files, or folders (a path ending in /: everything in it), so no other agent writes them until you release them or the claim expires. Refused, naming the holder, when someone else holds one.',
        inputSchema: {
            paths,
            reason: z.string().optional().describe('why, shown to the agents that are refused (kept as one line of at most 200 characters)'),
            ttl_minutes: z.number().min(1).max(MAX_TTL_MINUTES).optional().describe(`how long the claim lasts (default ${DEFAULT_TTL_MINUTES})`),
            wait_seconds: z.number().min(0).max(MAX_WAIT_SECONDS).optional().describe('how long to wait for a file someone else holds (default 0)'),
        },
    }, guarded(({ paths: p, reason, ttl_minutes, wait_seconds }) => tools.claim(p, reason, ttl_minutes, wait_seconds)));
    server.registerTool('release_files', { description: 'Release files or folders you claimed.', inputSchema: { paths } }, guarded(({ paths: p }) => tools.release(p)));
    server.registerTool('check_file', { description: 'Whether a file may be written now (no one else holds it), and who wrote it last.', inputSchema: { path: z.string().min(1).max(4096) } }, guarded(({ path }) => tools.check(path)));
    const transport = new StdioServerTransport();
    const closed = new Promise((resolve) => {
        transport.onclose = () => resolve();
        process.stdin.once('end', () => resolve());
    });
    await server.connect(transport);
    await closed;
    if (opened) {
        const c = await opened.catch(() => undefined);
        if (c) {
            await lib.releaseAllLocks({ sessionId: me().sessionId }, c).catch(() => 0);
            await c.close().catch(() => { });
        }
    }
}
