// The record of the locks this plugin took: which session asked, under which owner (the root of
// the session's task tree: a subagent's locks are its parent's, so it may write what its parent
// holds), for one tool call or for the rest of a turn. Releases undo exactly these holds, one by
// one, so a subagent letting go never drops what its parent still holds.
export class HeldLocks {
    /** callID -> the holds of that tool call (scope call). */
    calls = new Map();
    /** session -> the holds it keeps until it goes idle (scope turn, and calls without a callID). */
    turns = new Map();
    /** Records holds just taken: for the call (`callID`) or, in turn scope or without a callID, for the session's turn. */
    took(scope, callID, session, owner, paths) {
        const at = Date.now();
        const holds = paths.map((path) => ({ session, owner, path, at }));
        if (scope === 'call' && callID)
            this.calls.set(callID, [...(this.calls.get(callID) ?? []), ...holds]);
        else
            this.turns.set(session, [...(this.turns.get(session) ?? []), ...holds]);
    }
    /** The holds of one tool call, forgotten (a call's after hook and its failure event may both come). */
    endCall(callID) {
        if (!callID)
            return [];
        const holds = this.calls.get(callID) ?? [];
        this.calls.delete(callID);
        return holds;
    }
    /** Every hold `session` took (its calls' and its turn's), forgotten; with `before`, only those taken before that time. */
    endSession(session, before) {
        const out = [];
        const mine = (h) => h.session === session && (before === undefined || (h.at ?? 0) < before);
        const take = (map) => {
            for (const [k, holds] of map) {
                if (!holds.some(mine))
                    continue;
                out.push(...holds.filter(mine));
                const rest = holds.filter((h) => !mine(h));
                if (rest.length)
                    map.set(k, rest);
                else
                    map.delete(k);
            }
        };
        take(this.turns);
        take(this.calls);
        return out;
    }
    /** Everything, forgotten (dispose). */
    endAll() {
        const out = [...this.calls.values(), ...this.turns.values()].flat();
        this.calls.clear();
        this.turns.clear();
        return out;
    }
    /** A lock `owner` lost: no hold on `path` under it is renewed or released as if held. True if it was held. */
    forget(owner, path) {
        let found = false;
        const drop = (holds) => {
            const rest = holds.filter((h) => !(h.owner === owner && h.path === path));
            found ||= rest.length !== holds.length;
            return rest;
        };
        for (const [k, holds] of this.calls) {
            const rest = drop(holds);
            if (rest.length)
                this.calls.set(k, rest);
            else
                this.calls.delete(k);
        }
        for (const [k, holds] of this.turns) {
            const rest = drop(holds);
            if (rest.length)
                this.turns.set(k, rest);
            else
                this.turns.delete(k);
        }
        return found;
    }
    /** Every hold of `owner`'s tree on one of `paths`, forgotten (an agent lets go of them early). */
    takeOwned(owner, paths) {
        const out = [];
        const take = (holds) => {
            const rest = holds.filter((h) => !(h.owner === owner && paths.includes(h.path)));
            out.push(...holds.filter((h) => h.owner === owner && paths.includes(h.path)));
            return rest;
        };
        for (const map of [this.calls, this.turns]) {
            for (const [k, holds] of map) {
                const rest = take(holds);
                if (rest.length)
                    map.set(k, rest);
                else
                    map.delete(k);
            }
        }
        return out;
    }
    /** Each (owner, path) held now, once: what the renewal keeps alive. */
    held() {
        const seen = new Map();
        for (const h of [...this.calls.values(), ...this.turns.values()].flat())
            seen.set(`${h.owner}\0${h.path}`, { owner: h.owner, path: h.path });
        return [...seen.values()];
    }
    /** The owners this plugin holds locks as (the sessions whose files are this plugin's). */
    owners() {
        return new Set([...this.calls.values(), ...this.turns.values()].flat().map((h) => h.owner));
    }
    get size() {
        return this.calls.size + this.turns.size;
    }
}
