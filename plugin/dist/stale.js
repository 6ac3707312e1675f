export class Views {
    lib;
    cache;
    s;
    log;
    constructor(lib, cache, s, log) {
        this.lib = lib;
        this.cache = cache;
        this.s = s;
        this.log = log;
    }
    get on() {
        return this.s.stale !== 'off';
    }
    /**
     * Whether `tree` may write these files now (`paths`: the locked, normalized paths, in the order
     * of `writes`' paths once normalized). Only the files that may not are returned.
     */
    async check(paths, writes, tree) {
        if (!this.on)
            return [];
        const whole = paths.map((p) => writes.some((w) => w.whole && this.normal(w.path) === p));
        const found = await this.lib.checkFresh(paths, tree, await this.cache(), { whole });
        return found.filter((f) => !f.ok);
    }
    /** After a write, before its locks go: what each file now holds, and that the writer's tree saw it. */
    async wrote(paths, w) {
        if (!this.on || paths.length === 0)
            return;
        try {
            await this.lib.recordWrites(paths, { sessionId: w.sessionId, tree: w.tree, agentId: this.s.agentId, title: w.title, agentName: w.agentName, kind: w.kind ?? 'opencode' }, await this.cache(), { ttlMs: this.s.versionTtlMs });
        }
        catch (e) {
            // the write landed; without its version the next writer may be told "changed outside any agent"
            console.error(`[opencode-file-lock] could not record the write of ${paths.join(', ')} (${e?.code ?? ''} ${e?.message ?? e}); other sessions may see it as a change made outside any agent`);
        }
    }
    /** Before a read: each file's mark, so a change during the read is not taken as seen. */
    marks(paths) {
        if (!this.on)
            return [];
        return paths.map((p) => {
            const path = this.normal(p);
            return { path, mark: path ? this.lib.fileMark(path) : null };
        });
    }
    /** After a read: the tree has seen these files (those unchanged since `marks`). */
    async read(before, tree) {
        if (!this.on)
            return;
        for (const { path, mark } of before) {
            if (!path || mark === null)
                continue;
            try {
                const seen = await this.lib.recordView(path, tree, await this.cache(), { unchangedSince: mark, ttlMs: this.s.versionTtlMs });
                if (!seen)
                    this.log(`${path} changed while session tree ${tree} read it: its next write there is refused until it reads it again`);
            }
            catch (e) {
                this.log(`could not record that session tree ${tree} read ${path}: ${e?.code ?? ''} ${e?.message ?? e}`);
            }
        }
    }
    /** Before a command of `tree`'s: the files it has seen that are still as it saw them. */
    async beforeCommand(tree) {
        if (!this.on)
            return [];
        const views = await this.lib.treeViews(tree, await this.cache());
        return views.filter((v) => v.fresh && v.mark !== null).map((v) => ({ path: v.path, mark: v.mark }));
    }
    /**
     * After it: the command's own changes to those files are the tree's view now, not someone else's
     * change. A file another session held before the command (`heldBefore`: other sessions' locks
     * then) or holds after it, or whose content is what another tree's recorded write left, changed
     * by their hand, not the command's: the view stays as it was, so the tree's next write there is
     * refused until it reads the file again.
     */
    async afterCommand(before, tree, heldBefore) {
        const changed = before.map((b) => ({ ...b, now: this.lib.fileMark(b.path) })).filter((b) => b.now !== null && b.now !== b.mark);
        if (changed.length === 0)
            return [];
        const adopted = [];
        try {
            const c = await this.cache();
            // the locks now, only when there is a change to judge; unreadable, any file may be someone else's
            const after = await this.lib.listLocks(c).catch(() => null);
            const others = after && [...heldBefore, ...after.filter((l) => l.sessionId !== tree)].map((l) => l.path);
            const othersHeld = (p) => !others || others.some((h) => h === p || (h.endsWith('/') && p.startsWith(h)));
            const found = await this.lib.checkFresh(changed.map((x) => x.path), tree, c, { whole: false });
            for (const [i, { path, now }] of changed.entries()) {
                const f = found[i];
                if (othersHeld(path) || (f?.byLastWrite && f.lastWrite && f.lastWrite.tree !== tree)) {
                    this.log(`${path} changed during session tree ${tree}'s command, but another session held or wrote it: not taken as the tree's own change`);
                    continue;
                }
                if (await this.lib.recordView(path, tree, c, { unchangedSince: now, ttlMs: this.s.versionTtlMs }))
                    adopted.push(path);
            }
        }
        catch (e) {
            this.log(`could not record session tree ${tree}'s own changes to ${changed.map((x) => x.path).join(', ')}: ${e?.code ?? ''} ${e?.message ?? e}`);
        }
        return adopted;
    }
    /** The last writes of `paths`, and for each whether `tree`'s view of it is current: for `file_locks`. */
    async describe(paths, tree) {
        const files = paths.filter((p) => !p.endsWith('/'));
        if (files.length === 0)
            return [];
        const found = await this.lib.checkFresh(files, tree, await this.cache(), { whole: false });
        return found.map((f) => ({ path: f.path, lastWrite: f.lastWrite, status: f.status }));
    }
    normal(p) {
        try {
            return this.lib.normalizePath(p, this.s.baseDir);
        }
        catch {
            return '';
        }
    }
}
