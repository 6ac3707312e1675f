// A bash command can rewrite a file another agent holds, and no hook sees it do so. Before each
// bash call the plugin notes the files other sessions hold (one stat each, no tree walk); after
// it, it stats them again and tells the model (in the tool's output) and the log which changed.
import fs from 'node:fs';
function mark(path) {
    try {
        const s = fs.statSync(path, { bigint: true });
        return `${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
    }
    catch {
        return 'absent';
    }
}
export function snapshot(locks) {
    return { locks, marks: locks.map((l) => mark(l.path)) };
}
/** The files of `before` that look different now, and how. */
export function changes(before) {
    const out = [];
    before.locks.forEach((lock, i) => {
        const now = mark(lock.path);
        if (now === before.marks[i])
            return;
        const how = before.marks[i] === 'absent' ? 'created' : now === 'absent' ? 'deleted' : 'modified';
        out.push({ lock, how });
    });
    return out;
}
