import { changes, snapshot } from './bash.js';
import * as say from './messages.js';
import { Views } from './stale.js';
import { NO_RULES, writesOf } from './tools.js';
export const KIND = 'claude-code';
/** Where one event leaves what the next needs (keyed by tool_use_id). */
const CALLS_NAMESPACE = 'claude-code-calls';
const CALL_STATE_TTL_MS = 3_600_000;
/** The files a Claude Code tool call writes: null for one that writes none. */
export function claudeWrites(tool, input, s) {
    const file = (k) => (typeof input[k] === 'string' && input[k] ? [input[k]] : []);
    switch (tool) {
        case 'Write':
            return file('file_path').map((path) => ({ path, whole: true }));
        case 'Edit':
        case 'MultiEdit':
            return file('file_path').map((path) => ({ path, whole: false }));
        case 'NotebookEdit':
            return [...file('notebook_path'), ...file('file_path')].map((path) => ({ path, whole: false }));
        case 'Read':
        case 'Bash':
        case 'Glob':
        case 'Grep':
        case 'LS':
        case 'WebFetch':
        case 'WebSearch':
        case 'TodoWrite':
        case 'Agent':
        case 'Task':
            return null;
        default:
            // MCP tools (mcp__server__write_file) and others: by their name and arguments, as in opencode
            return writesOf(tool.startsWith('mcp__') ? tool.split('__').slice(2).join('__') : tool, input, s.tools);
    }
}
/** The file a Read shows whole (a read of some lines only is not a view of the file). */
function wholeRead(input) {
    if (input.offset !== undefined || input.limit !== undefined || input.pages !== undefined)
        return null;
    return typeof input.file_path === 'string' && input.file_path ? input.file_path : null;
}
export function claudeHooks(lib, s, openCache) {
    const log = (msg) => {
        if (s.debug)
            console.error(`[opencode-file-lock] ${msg}`);
    };
    const views = new Views(lib, openCache, s, log);
    const shown = (p) => p;
    const calls = async () => (await openCache()).withNamespace(CALLS_NAMESPACE);
    const callKey = (ev) => `${ev.session_id}:${ev.tool_use_id}`;
    const holder = (ev) => ({ kind: KIND, ...(ev.agent_type ? { agentName: ev.agent_type } : {}) });
    /** Under the file: a read whose view is not recorded yet, and a write whose PostToolUse has not run. */
    const readKey = (session, path) => `read:${session}:${path}`;
    const writeKey = (session, path) => `write:${session}:${path}`;
    const lockTtl = () => s.ttlMs ?? 300_000;
    /**
     * What the session's background PostToolUse hooks have not recorded yet, applied before a check:
     * a read of `path` that found it unchanged is a view of it; a write of the session's own whose
     * lock it still holds (no one else could write since) leaves the disk as its view.
     */
    async function catchUp(session, path, c) {
        const k = await calls();
        const read = (await k.get(readKey(session, path)));
        if (read?.mark)
            await lib.recordView(path, session, c, { unchangedSince: read.mark, ttlMs: s.versionTtlMs }).catch(() => false);
        const wrote = await k.get(writeKey(session, path));
        if (wrote) {
            const lock = await lib.getLock(path, c);
            if (lock?.sessionId === session && lock.holdCount > 1)
                await lib.recordView(path, session, c, { ttlMs: s.versionTtlMs });
        }
    }
    const normal = (p, ev) => lib.normalizePath(p, ev.cwd || s.baseDir);
    const block = (e) => ({ exit: 2, stderr: e.message });
    /** A refusal for serve's page; never fails the hook. */
    const fleetEvent = async (event) => {
        if (typeof lib.recordFleetEvent === 'function')
            await lib.recordFleetEvent(await openCache(), event).catch(() => { });
    };
    /** PreToolUse of a write: lock, then check the session's view; block on either. */
    async function beforeWrite(ev, writes, signal) {
        const tool = ev.tool_name;
        const session = ev.session_id;
        const files = writes.map((w) => w.path);
        if (files.length === 0)
            return block(say.noPaths(tool, ev.tool_input));
        let paths;
        try {
            const c = await openCache();
            paths = await lib.acquireLocks(files, ev.agent_id ?? s.agentId, session, c, {
                baseDir: ev.cwd || s.baseDir,
                ...holder(ev),
                ...(s.ttlMs ? { ttlMs: s.ttlMs } : {}),
                ...(s.waitMs ? { waitMs: s.waitMs, signal } : {}),
            });
        }
        catch (e) {
            log(`refused ${tool} of ${files.join(', ')} for Claude Code session ${session}: ${e?.code ?? ''} ${e?.message}`);
            if (e?.code === 'ELOCKED' || e?.code === 'EDEADLK')
                await fleetEvent({ kind: e.code === 'ELOCKED' ? 'refused' : 'deadlock', path: e.path ?? files[0], who: `${KIND} session ${session}`, by: e.holder ? say.writerOf(e.holder) : undefined });
            return block(await say.blocked(tool, files, e, s.waitMs, signal.reason, async () => ''));
        }
        const giveBack = async () => {
            const c = await openCache();
            for (const p of paths)
                await lib.releaseLock(p, session, c).catch(() => false);
        };
        let stale;
        try {
            if (views.on)
                for (const p of paths)
                    await catchUp(session, p, await openCache());
            stale = await views.check(paths, writes.map((w) => ({ ...w, path: normal(w.path, ev) })), session);
        }
        catch (e) {
            if (s.stale === 'refuse') {
                await giveBack();
                return block(say.cannotCheck(tool, files, e));
            }
            stale = [];
        }
        if (stale.length > 0 && s.stale === 'refuse') {
            await giveBack();
            for (const f of stale)
                await fleetEvent({ kind: 'stale', path: f.path, who: `${KIND} session ${session}`, by: f.lastWrite && f.byLastWrite ? say.writerOf(f.lastWrite) : 'outside any agent' });
            return block(say.staleRefusal(tool, stale, files, shown));
        }
        const k = await calls();
        for (const p of paths)
            await k.set(writeKey(session, p), ev.tool_use_id ?? '', { ttlMs: lockTtl() });
        log(`locked ${paths.join(', ')} for ${tool} of Claude Code session ${session}`);
        return { exit: 0 };
    }
    /** PostToolUse of a write: what the file now holds is the session's view and the last version; then the lock goes. */
    async function afterWrite(ev, writes, ran) {
        const session = ev.session_id;
        const paths = writes.map((w) => normal(w.path, ev));
        if (ran)
            await views.wrote(paths, { sessionId: session, tree: session, ...holder(ev) });
        const c = await openCache();
        const k = await calls();
        for (const p of paths)
            if ((await k.get(writeKey(session, p))) === (ev.tool_use_id ?? ''))
                await k.del(writeKey(session, p));
        for (const p of paths) {
            try {
                if (!(await lib.releaseLock(p, session, c)))
                    log(`${p} was no longer held by Claude Code session ${session} after ${ev.tool_name}`);
            }
            catch (e) {
                console.error(say.releaseFailed(p, session, `${ev.tool_name} finished`, e));
            }
        }
        return { exit: 0 };
    }
    async function beforeRead(ev) {
        const file = wholeRead(ev.tool_input ?? {});
        if (!file || !views.on)
            return { exit: 0 };
        const [m] = views.marks([normal(file, ev)]);
        if (m.path && m.mark !== null)
            await (await calls()).set(readKey(ev.session_id, m.path), { mark: m.mark, id: ev.tool_use_id ?? '' }, { ttlMs: CALL_STATE_TTL_MS });
        return { exit: 0 };
    }
    async function afterRead(ev) {
        const file = wholeRead(ev.tool_input ?? {});
        if (!file || !views.on)
            return { exit: 0 };
        const path = normal(file, ev);
        const k = await calls();
        const saved = (await k.get(readKey(ev.session_id, path)));
        // a later read of the same file replaced it: that one's PostToolUse records it
        if (!saved?.mark || saved.id !== (ev.tool_use_id ?? ''))
            return { exit: 0 };
        await views.read([{ path, mark: saved.mark }], ev.session_id);
        await k.del(readKey(ev.session_id, path));
        return { exit: 0 };
    }
    async function beforeShell(ev) {
        const session = ev.session_id;
        const others = (await lib.listLocks(await openCache())).filter((l) => l.sessionId !== session);
        const seen = views.on ? await views.beforeCommand(session) : [];
        await (await calls()).set(callKey(ev), { shell: snapshot(others), seen }, { ttlMs: CALL_STATE_TTL_MS });
        return { exit: 0 };
    }
    async function afterShell(ev) {
        const c = await calls();
        const saved = (await c.get(callKey(ev)));
        if (!saved?.shell)
            return { exit: 0 };
        await c.del(callKey(ev));
        if (saved.seen?.length)
            await views.afterCommand(saved.seen, ev.session_id, saved.shell.locks);
        const found = changes(saved.shell);
        if (found.length === 0)
            return { exit: 0 };
        const text = say.bashChanged(found.map((f) => ({ path: f.lock.path, how: f.how, who: say.writerOf(f.lock) }))).trim();
        console.error(`[opencode-file-lock] a Bash command of Claude Code session ${ev.session_id} changed ${found.map((f) => f.lock.path).join(', ')}, which other sessions hold`);
        return { exit: 0, stdout: JSON.stringify({ hookSpecificOutput: { hookEventName: 'PostToolUse', additionalContext: text } }) };
    }
    async function endSession(ev, why) {
        try {
            const n = await lib.releaseAllLocks({ sessionId: ev.session_id }, await openCache());
            if (n)
                log(`released ${n} lock(s) of Claude Code session ${ev.session_id} (${why})`);
        }
        catch (e) {
            console.error(`[opencode-file-lock] releasing the locks of Claude Code session ${ev.session_id} failed (${why}): ${e?.message ?? e}; they expire at their TTL`);
        }
        return { exit: 0 };
    }
    /** One event: what the hook process should do. PreToolUse of a write fails closed; the rest never block. */
    async function handle(ev, signal) {
        const event = ev.hook_event_name;
        if (typeof ev.session_id !== 'string' || !ev.session_id) {
            if (event === 'PreToolUse' && ev.tool_name && claudeWrites(ev.tool_name, ev.tool_input ?? {}, s))
                return block(new Error('opencode-file-lock could not tell which Claude Code session this call belongs to (no session_id in the hook input); the call was not run'));
            return { exit: 0 };
        }
        const tool = ev.tool_name ?? '';
        const input = (ev.tool_input && typeof ev.tool_input === 'object' ? ev.tool_input : {});
        const writes = tool ? claudeWrites(tool, input, s) : null;
        switch (event) {
            case 'PreToolUse':
                if (writes)
                    return beforeWrite(ev, writes, signal);
                if (tool === 'Read')
                    return beforeRead(ev);
                if (tool === 'Bash')
                    return beforeShell(ev);
                return { exit: 0 };
            case 'PostToolUse':
                if (writes)
                    return afterWrite(ev, writes, true);
                if (tool === 'Read')
                    return afterRead(ev);
                if (tool === 'Bash')
                    return afterShell(ev);
                return { exit: 0 };
            case 'PostToolUseFailure':
                if (writes)
                    return afterWrite(ev, writes, false);
                if (tool === 'Bash')
                    await (await calls()).del(callKey(ev)).catch(() => false);
                return { exit: 0 };
            case 'Stop':
                // a subagent still running in the background may hold a file for a write in progress
                if (Array.isArray(ev.background_tasks) && ev.background_tasks.length > 0)
                    return { exit: 0 };
                return endSession(ev, 'Claude Code stopped');
            case 'SessionEnd':
                return endSession(ev, 'the Claude Code session ended');
            default:
                return { exit: 0 };
        }
    }
    return { handle };
}
/** How long a hook process may take beyond its wait for a lock before it gives up (failing closed). */
const HOOK_SLACK_MS = 10_000;
/**
 * One hook process's whole work: the event's JSON text in, what to exit with and print out. It
 * never hangs (bounded by FILE_LOCK_HOOK_TIMEOUT_MS, default the wait plus 10 s) and never lets a
 * write run unlocked without saying so: a PreToolUse of a write that cannot be locked or checked
 * is blocked with the reason.
 */
export async function runClaudeHook(text, env = process.env) {
    let ev;
    try {
        ev = JSON.parse(text);
        if (!ev || typeof ev !== 'object')
            throw new Error('not a JSON object');
    }
    catch (e) {
        return { exit: 2, stderr: `opencode-file-lock could not read the hook's input (${e?.message ?? e}); the call was not run` };
    }
    const isWrite = (s) => ev.hook_event_name === 'PreToolUse' && !!ev.tool_name && claudeWrites(ev.tool_name, ev.tool_input ?? {}, s ?? { tools: NO_RULES }) !== null;
    const { load } = await import('./load.js');
    const ready = await load({ directory: typeof ev.cwd === 'string' ? ev.cwd : process.cwd() }, {}, { tools: false });
    if ('why' in ready) {
        // nothing can be locked: writes are refused, saying why; other events pass
        return isWrite() ? { exit: 2, stderr: say.cannotLock(ev.tool_name, ready.why).message } : { exit: 0 };
    }
    const { lib, s } = ready;
    if (!env.FILE_LOCK_AGENT_ID)
        s.agentId = `${KIND}@${(await import('node:os')).hostname()}`;
    let opened;
    const openCache = () => (opened ??= lib.openCache(s.cacheBackend ? { backend: s.cacheBackend } : {}));
    const limitMs = Number(env.FILE_LOCK_HOOK_TIMEOUT_MS) > 0 ? Number(env.FILE_LOCK_HOOK_TIMEOUT_MS) : s.waitMs + HOOK_SLACK_MS;
    /** A failure: a write is blocked with `forWrite`; any other event passes, noting `otherwise`. */
    const failed = (forWrite, otherwise) => (isWrite(s) ? { exit: 2, stderr: forWrite } : { exit: 0, stderr: `[opencode-file-lock] ${otherwise}` });
    const ac = new AbortController();
    let timer;
    const late = new Promise((resolve) => {
        timer = setTimeout(() => {
            ac.abort(`the hook's own time limit of ${limitMs} ms ran out`);
            const msg = `opencode-file-lock did not finish within ${limitMs} ms (the lock store is slow or unreachable)`;
            resolve(failed(`${msg}; the ${ev.tool_name} call was not run and the file was not changed.`, `${msg}.`));
        }, limitMs);
    });
    try {
        return await Promise.race([
            claudeHooks(lib, s, openCache).handle(ev, ac.signal).catch((e) => {
                const msg = `${e?.code ? `[${e.code}] ` : ''}${e?.message ?? e}`;
                return failed(say.cannotLock(ev.tool_name, `the lock store failed: ${msg}`).message, `${ev.hook_event_name} hook failed: ${msg}`);
            }),
            late,
        ]);
    }
    finally {
        clearTimeout(timer);
        if (opened) {
            const c = await opened.catch(() => undefined);
            if (c)
                await keepServing(c, env);
            await Promise.race([c?.close().catch(() => { }), new Promise((r) => setTimeout(r, 2000))]);
        }
    }
}
/**
 * Each hook is a short process. When it is the one serving the sled folder (no opencode or other
 * process does), the next hook would open the folder again: it starts a keeper instead, a detached
 * process that serves the folder while hooks keep coming (`hook-keeper`; FILE_LOCK_HOOK_KEEPER=off
 * turns it off), so the next hooks are quick clients of it.
 */
async function keepServing(c, env) {
    try {
        const h = (await c.healthCheck());
        if (!h.folder)
            return;
        const fs = await import('node:fs');
        const path = await import('node:path');
        // a hook was here: the keeper stays while this keeps being touched (opened without following a
        // link, as everything in the folder: a link planted there must not lead a write elsewhere)
        const { O_CREAT, O_WRONLY, O_NOFOLLOW } = fs.constants;
        const fd = fs.openSync(path.join(h.folder, 'hook-keeper.touch'), O_CREAT | O_WRONLY | O_NOFOLLOW, 0o600);
        try {
            const now = new Date();
            fs.futimesSync(fd, now, now);
        }
        finally {
            fs.closeSync(fd);
        }
        if (h.shared?.role !== 'server' || ['0', 'off', 'false', 'no'].includes(String(env.FILE_LOCK_HOOK_KEEPER ?? '').toLowerCase()))
            return;
        const { spawn } = await import('node:child_process');
        const { fileURLToPath } = await import('node:url');
        const bin = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'opencode-file-lock.js');
        spawn(process.execPath, [bin, 'hook-keeper', '--path', h.folder], { detached: true, stdio: 'ignore', env }).unref();
    }
    catch {
        // a keeper is an optimisation: without one, every hook opens the folder itself
    }
}
