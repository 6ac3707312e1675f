import { agentTools, shown } from './agent-tools.js';
import { changes, snapshot } from './bash.js';
import { HeldLocks } from './held.js';
import * as say from './messages.js';
import { Sessions } from './sessions.js';
import { Views } from './stale.js';
import { isShell, readsOf, writesOf } from './tools.js';
/** How long a write waits before the person at the keyboard is told that it waits. */
const TELL_WAITING_AFTER_MS = 250;
export function lockingCore(lib, s, host, z) {
    const log = (msg) => {
        if (s.debug)
            console.error(`[opencode-file-lock] ${msg}`);
    };
    const kind = host.kind ?? 'opencode';
    const sessions = new Sessions(host.lookup);
    const held = new HeldLocks();
    const waits = new Map(); // session -> acquires still waiting
    const waitStarted = new WeakMap();
    const shellBefore = new Map(); // callID -> the other sessions' files before a shell call
    const shellViews = new Map(); // callID -> the files its tree saw, before a shell call
    const reading = new Map(); // callID -> a read's files before it ran
    // callID -> what a write call locked, for recording what it wrote (and what it overwrote, with FILE_LOCK_STALE=warn)
    const writing = new Map();
    const notify = (n, session) => {
        if (!s.toast || !host.notify)
            return;
        try {
            host.notify(n, session);
        }
        catch (e) {
            log(`notice failed: ${e?.message ?? e}`); // a notice never fails a call
        }
    };
    /** A holder as the host knows it, else as the lock record names it. */
    const who = async (rec) => (rec.sessionId && (await sessions.describe(rec.sessionId))) || say.writerOf(rec);
    // A lost lock is said whatever the debug setting: the tool holding it no longer excludes anyone.
    const lost = (owner, path, reason, holder) => {
        if (!held.forget(owner, path))
            return log(`lock on ${path} of session ${owner} lost (${reason}) after this plugin let it go`);
        console.error(say.lostNotice(path, owner, reason, holder));
        notify(say.toasts.lost(path, reason), owner);
    };
    // Opened on first use, and again after a failure: a store that is down at start may come back.
    const offLost = [];
    const watch = (c) => {
        if (typeof c?.onLost === 'function')
            offLost.push(c.onLost((ev) => lost(ev.sessionId, ev.path, ev.reason, ev.holder)));
        return c;
    };
    if (s.cache)
        watch(s.cache);
    let opening;
    // the store-wide counters `opencode-file-lock serve` sums: reported for the cache the plugin opens
    let stopReporting;
    const report = (c) => {
        if (typeof lib.reportFleetMetrics === 'function')
            stopReporting = lib.reportFleetMetrics(c);
        return c;
    };
    const cache = () => {
        if (s.cache)
            return Promise.resolve(s.cache);
        opening ??= lib.openCache(s.cacheBackend ? { backend: s.cacheBackend } : {}).then((c) => report(watch(c)), (e) => {
            opening = undefined;
            throw e;
        });
        return opening;
    };
    // While anything is held, one timer renews it all every third of the TTL.
    let renewer;
    let renewing = false;
    const renewEvery = Math.max(250, Math.floor((s.ttlMs ?? 300_000) / 3));
    const keepRenewing = () => {
        if (!s.renewal || renewer)
            return;
        renewer = setInterval(async () => {
            if (held.size === 0) {
                clearInterval(renewer);
                renewer = undefined;
                return;
            }
            if (renewing)
                return; // a slow store must not stack renewals up
            renewing = true;
            try {
                const c = await cache();
                for (const { owner, path } of held.held()) {
                    try {
                        await lib.renewLock(path, owner, c, s.ttlMs ? { ttlMs: s.ttlMs } : undefined);
                    }
                    catch (e) {
                        // ELOST: expired or forced free; renewing never takes it back, so stop trying.
                        if (e?.code === 'ELOST')
                            lost(owner, path, 'not renewable, expired or released', e.holder);
                        else
                            log(`renewing ${path} for session ${owner} failed: ${e?.code ?? ''} ${e?.message ?? e}`);
                    }
                }
            }
            catch (e) {
                log(`renewing failed: ${e?.message ?? e}`);
            }
            finally {
                renewing = false;
            }
        }, renewEvery);
        renewer.unref?.();
    };
    const stopRenewing = () => {
        clearInterval(renewer);
        renewer = undefined;
    };
    /** Undoes these holds, every one of them whatever happens to the others. */
    const release = async (holds, why) => {
        if (holds.length === 0)
            return;
        let c;
        try {
            c = await cache();
        }
        catch (e) {
            for (const h of holds)
                console.error(say.releaseFailed(h.path, h.owner, why, e));
            return;
        }
        const failed = [];
        for (const h of holds) {
            try {
                if (!(await lib.releaseLock(h.path, h.owner, c)))
                    log(`${h.path} was no longer held by session ${h.owner} when ${why}`);
            }
            catch (e) {
                failed.push(h.path);
                console.error(say.releaseFailed(h.path, h.owner, why, e));
            }
        }
        log(`released ${holds.filter((h) => !failed.includes(h.path)).map((h) => h.path).join(', ') || 'nothing'} (${why})`);
    };
    /** A session that ends (or a plugin that is disposed) stops its tools' waits: they fail at once. */
    const stopWaiting = (session, why, before) => {
        const mine = waits.get(session);
        for (const ac of mine ?? []) {
            if (before !== undefined && (waitStarted.get(ac) ?? 0) >= before)
                continue;
            ac.abort(why);
            mine.delete(ac);
        }
        if (mine?.size === 0)
            waits.delete(session);
    };
    /** A run of the session was interrupted at `at` (user, shutdown, a new message superseding it): its
     *  waits stop and what it held goes, but not what a run begun since holds. The session lives on. */
    const interrupted = async (session, why, at) => {
        if (!session)
            return;
        stopWaiting(session, why, at);
        await release(held.endSession(session, at), why);
    };
    /** Everything a session took; for a root that ends, whatever else its tree still holds too. */
    const endSession = async (session, why, ends) => {
        if (!session)
            return;
        if (ends)
            stopWaiting(session, why);
        await release(held.endSession(session), why);
        if (!ends || (await sessions.root(session)) !== session)
            return;
        try {
            const n = await lib.releaseAllLocks({ sessionId: session }, await cache());
            if (n)
                log(`released ${n} more lock(s) of session ${session}'s tree (${why})`);
        }
        catch (e) {
            console.error(`[opencode-file-lock] releasing the locks of session ${session} failed (${why}): ${e?.message ?? e}; they expire at their TTL`);
        }
    };
    /** A refusal for serve's page; never delays or fails the call. */
    const tellFleet = (event) => {
        // only on a store the plugin opened itself (a cache handed to it is its owner's to fill)
        if (s.cache || typeof lib.recordFleetEvent !== 'function')
            return;
        cache().then((c) => lib.recordFleetEvent(c, event)).catch(() => { });
    };
    /** Tells the person at the keyboard that a write waits, and for whom. */
    const tellWaiting = async (c, files, session) => {
        for (const f of files) {
            const rec = (await lib.getLock(f, c, { baseDir: s.baseDir }).catch(() => undefined));
            if (rec)
                return notify(say.toasts.waiting(files, await who(rec), s.waitMs), session);
        }
    };
    /** A deadlock was broken by letting go of some of `owner`'s locks: they are no longer held here. */
    const letGoForDeadlock = (owner, e, session) => {
        for (const p of e.released ?? [])
            held.forget(owner, p);
        notify(say.toasts.deadlock(e.released ?? []), session);
    };
    /** The description of a session that lock records and versions carry. */
    const holderInfo = async (session) => {
        const i = await sessions.info(session);
        return { kind, title: i.title, agentName: i.agent };
    };
    /** Takes `paths` (files, or folders ending in /) for the rest of `session`'s turn, as `owner`. */
    const claim = async (session, owner, paths, signal, reason) => {
        const ac = new AbortController();
        const stop = () => ac.abort(signal?.reason ?? 'the tool call was aborted');
        signal?.addEventListener('abort', stop, { once: true });
        try {
            const c = await cache();
            const got = await lib.acquireLocks(paths, s.agentId, owner, c, { baseDir: s.baseDir, ...(await holderInfo(owner)), ...(reason ? { reason } : {}), ...(s.ttlMs ? { ttlMs: s.ttlMs } : {}), ...(s.waitMs ? { waitMs: s.waitMs, signal: ac.signal } : {}) });
            held.took('turn', undefined, session, owner, got);
            keepRenewing();
            log(`claimed ${got.join(', ')} for session ${session} until its turn ends`);
            return got;
        }
        catch (e) {
            if (e?.code === 'ELOCKED' && e.holder)
                notify(say.toasts.refused(paths, await who(e.holder)), session);
            if (e?.code === 'EDEADLK')
                letGoForDeadlock(owner, e, session);
            throw await say.blocked('claim_files', paths, e, s.waitMs, ac.signal.reason, (id) => sessions.describe(id));
        }
        finally {
            signal?.removeEventListener('abort', stop);
        }
    };
    const unclaim = async (owner, paths) => {
        const normalized = paths.map((p) => lib.normalizePath(p, s.baseDir));
        const holds = held.takeOwned(owner, normalized);
        await release(holds, 'released with claim_files');
        return [...new Set(holds.map((h) => h.path))];
    };
    /** While others wait for what `session`'s task tree holds, its tool results say so (one line per waiter). */
    const tellHolder = async (session, append) => {
        try {
            const owner = await sessions.root(session);
            if (!held.owners().has(owner))
                return;
            const waiting = (await lib.listWaiters(await cache())).filter((w) => w.blockedBy.sessionId === owner && w.sessionId !== owner);
            if (waiting.length === 0)
                return;
            append(say.othersWait(waiting.map((w) => ({ agentId: w.agentId, sessionId: w.sessionId, paths: w.paths.map((p) => shown(p, s.baseDir)) }))));
            log(`told session ${session} that ${waiting.map((w) => w.sessionId).join(', ')} wait(s) for what it holds`);
        }
        catch (e) {
            log(`could not look for waiters: ${e?.message ?? e}`);
        }
    };
    const views = new Views(lib, cache, s, log);
    const shownHere = (p) => shown(p, s.baseDir);
    /** Undoes the holds one acquire of `owner`'s just took (a write refused after its locks were granted). */
    const giveBack = async (paths, owner, session) => release(paths.map((path) => ({ session, owner, path })), 'the write was refused');
    /** Before a shell command: what other sessions hold, and which files this tree saw are still as it saw them. */
    const beforeShell = async (call) => {
        if (!call.callID)
            return;
        try {
            const owner = await sessions.root(call.session);
            const others = (await lib.listLocks(await cache())).filter((l) => l.sessionId !== owner);
            shellBefore.set(call.callID, snapshot(others));
            if (views.on)
                shellViews.set(call.callID, await views.beforeCommand(owner));
        }
        catch (e) {
            log(`could not note the held files before ${call.tool}: ${e?.message ?? e}`);
        }
    };
    /** After it: the tree's own changes become its view; changes to files others hold are told. */
    const afterShell = async (call, append) => {
        const before = call.callID ? shellBefore.get(call.callID) : undefined;
        const seen = call.callID ? shellViews.get(call.callID) : undefined;
        if (call.callID) {
            shellBefore.delete(call.callID);
            shellViews.delete(call.callID);
        }
        if (seen?.length) {
            const adopted = await views.afterCommand(seen, await sessions.root(call.session), before?.locks ?? []);
            if (adopted.length)
                log(`session ${call.session}'s ${call.tool} command changed ${adopted.join(', ')}: its view follows`);
        }
        const found = before ? changes(before) : [];
        if (found.length > 0) {
            const described = await Promise.all(found.map(async (f) => ({ path: f.lock.path, how: f.how, who: await who(f.lock) })));
            append?.(say.bashChanged(described));
            console.error(`[opencode-file-lock] a ${call.tool} command of session ${call.session} changed ${described.map((d) => `${d.path} (${d.how}, held by ${d.who})`).join(', ')}`);
            notify(say.toasts.bash(described.map((d) => d.path)), call.session);
        }
    };
    /** Before a write: lock every file it touches (waiting up to waitMs), then check each against the tree's view. Throws to block. */
    const beforeWrite = async (call) => {
        const { tool, session } = call;
        const writes = writesOf(tool, call.args, s.tools);
        if (writes === null)
            return;
        const files = writes.map((w) => w.path);
        if (files.length === 0)
            throw say.noPaths(tool, call.args);
        const owner = await sessions.root(session);
        const ac = new AbortController();
        const mine = waits.get(session) ?? new Set();
        waits.set(session, mine.add(ac));
        waitStarted.set(ac, Date.now());
        const started = Date.now();
        let paths;
        let telling;
        try {
            const c = await cache();
            if (s.waitMs > 0 && s.toast)
                telling = setTimeout(() => void tellWaiting(c, files, session), TELL_WAITING_AFTER_MS);
            paths = await lib.acquireLocks(files, s.agentId, owner, c, { baseDir: s.baseDir, ...(await holderInfo(owner)), ...(s.ttlMs ? { ttlMs: s.ttlMs } : {}), ...(s.waitMs ? { waitMs: s.waitMs, signal: ac.signal } : {}) });
        }
        catch (e) {
            log(`refused ${tool} of ${files.join(', ')} for session ${session}: ${e?.code ?? ''} ${e?.message}`);
            if (e?.code === 'ELOCKED' && e.holder)
                notify(say.toasts.refused(files, await who(e.holder)), session);
            if (e?.code === 'EDEADLK')
                letGoForDeadlock(owner, e, session);
            if (e?.code === 'ELOCKED' || e?.code === 'EDEADLK')
                tellFleet({ kind: e.code === 'ELOCKED' ? 'refused' : 'deadlock', path: e.path ?? files[0], who: `${kind} session ${session}`, by: e.holder ? say.writerOf(e.holder) : undefined });
            throw await say.blocked(tool, files, e, s.waitMs, ac.signal.reason, (id) => sessions.describe(id));
        }
        finally {
            clearTimeout(telling);
            mine.delete(ac);
            if (mine.size === 0 && waits.get(session) === mine)
                waits.delete(session);
        }
        const waited = Date.now() - started;
        const as = owner === session ? '' : ` as its task tree's root ${owner}`;
        log(`locked ${paths.join(', ')} for ${tool} (session ${session}${as}, scope ${s.scope}${waited >= 50 ? `, after waiting ${waited} ms` : ''})`);
        // under the locks (after any wait): is every file as this tree last saw it?
        let stale = [];
        try {
            stale = await views.check(paths, writes, owner);
        }
        catch (e) {
            if (s.stale === 'refuse') {
                await giveBack(paths, owner, session);
                throw say.cannotCheck(tool, files, e);
            }
            log(`could not check ${files.join(', ')} for changes since session ${session} read them (${e?.code ?? ''} ${e?.message ?? e}); FILE_LOCK_STALE=warn lets the write go ahead`);
        }
        if (stale.length > 0) {
            const changedBy = stale.map((f) => (f.lastWrite && f.byLastWrite ? say.writerOf(f.lastWrite) : 'outside any agent')).join(', ');
            log(`${s.stale === 'refuse' ? 'refused' : 'warned about'} ${tool} of ${stale.map((f) => `${f.path} (${f.status})`).join(', ')} for session ${session}: changed since its task saw it`);
            notify(say.toasts.stale(stale.map((f) => shownHere(f.path)), changedBy, s.stale === 'refuse'), session);
            if (s.stale === 'refuse') {
                await giveBack(paths, owner, session);
                lib.countFleet?.('file_lock_stale_refusals_total', `kind="${kind}"`);
                for (const f of stale)
                    tellFleet({ kind: 'stale', path: f.path, who: `${kind} session ${session}`, by: changedBy });
                throw say.staleRefusal(tool, stale, files, shownHere);
            }
        }
        held.took(s.scope, call.callID, session, owner, paths);
        if (call.callID)
            writing.set(call.callID, { paths, session, owner, overwrote: stale });
        keepRenewing();
    };
    const tools = z ? agentTools(z, { lib, cache, baseDir: s.baseDir, root: (id) => sessions.root(id), describe: (id) => sessions.describe(id), claim, unclaim, views }) : undefined;
    return {
        settings: s,
        /** The agents' lock tools (file_locks, claim_files), when zod loaded. */
        tools,
        /** What the host learnt of a session (a created or updated event), so nobody asks. */
        saw: (info) => sessions.saw(info),
        /** Before a call runs: notes reads and shell commands, locks and checks writes. Throws to block it. */
        async before(call) {
            if (isShell(call.tool))
                return beforeShell(call);
            const reads = readsOf(call.tool, call.args);
            if (reads !== null) {
                if (call.callID && reads.length)
                    reading.set(call.callID, views.marks(reads));
                return;
            }
            return beforeWrite(call);
        },
        /**
         * After a call that completed: records what it read or wrote, releases its locks (scope call),
         * and adds to its output (`append`, when the host lets it) what others need it to know.
         */
        async after(call, append) {
            const read = call.callID ? reading.get(call.callID) : undefined;
            if (read) {
                reading.delete(call.callID);
                await views.read(read, await sessions.root(call.session));
            }
            const wrote = call.callID ? writing.get(call.callID) : undefined;
            if (wrote) {
                // before the locks go: the next holder compares the disk with this
                writing.delete(call.callID);
                await views.wrote(wrote.paths, { sessionId: wrote.session, tree: wrote.owner, ...(await holderInfo(wrote.session)) });
                if (wrote.overwrote.length)
                    append?.(say.staleWarning(wrote.overwrote, shownHere));
            }
            if (isShell(call.tool))
                await afterShell(call, append);
            else if (s.scope === 'call')
                await release(held.endCall(call.callID), `${call.tool} finished`);
            // after the call's own locks went: what is still held is what others may be waiting for
            if (append)
                await tellHolder(call.session, append);
        },
        /** A call that ended some other way (failed, blocked by another plugin, aborted): nothing is recorded; its locks go (scope call). */
        async ended(callID, tool, failed) {
            if (!callID)
                return;
            if (failed)
                for (const m of [shellBefore, shellViews, reading, writing])
                    m.delete(callID);
            if (s.scope === 'call')
                await release(held.endCall(callID), `${tool} ${failed ? 'failed' : 'completed'}`);
        },
        /** The session's turn is over: turn-scope holds and whatever a call left go. */
        idle: (session) => endSession(session, 'session idle', false),
        /** The session is gone (deleted, errored): its waits stop and everything its tree holds goes. */
        sessionEnded: (session, why) => endSession(session, why, true),
        interrupted,
        /** Every lock of this agent id (the old plugin's `session.end` with no session). */
        async endAgent() {
            for (const k of [...waits.keys()])
                stopWaiting(k, 'session end');
            stopRenewing();
            held.endAll();
            try {
                const n = await lib.releaseAllLocks({ agentId: s.agentId }, await cache());
                log(`released ${n} lock(s) of agent ${s.agentId} (session end)`);
            }
            catch (e) {
                console.error(`[opencode-file-lock] releasing the locks of agent ${s.agentId} failed: ${e?.message ?? e}; they expire at their TTL`);
            }
        },
        /** The store, opened on first use (for the host's own bookkeeping). */
        cache,
        log,
        async dispose() {
            for (const k of [...waits.keys()])
                stopWaiting(k, 'dispose');
            await release(held.endAll(), 'dispose');
            stopRenewing();
            for (const off of offLost.splice(0))
                off();
            if (!s.cache && opening) {
                const c = await opening.catch(() => undefined);
                opening = undefined;
                await stopReporting?.().catch(() => { });
                await c?.close().catch(() => { });
            }
        },
    };
}
