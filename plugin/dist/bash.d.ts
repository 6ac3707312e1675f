import type { LockRecord } from '../../lib/index.js';
/** What a stat says of a file, enough to see that it changed (or appeared, or went). */
export type Mark = string;
/** The locks of other sessions, with what each file looks like now. */
export interface Snapshot {
    locks: LockRecord[];
    marks: Mark[];
}
export declare function snapshot(locks: LockRecord[]): Snapshot;
/** The files of `before` that look different now, and how. */
export declare function changes(before: Snapshot): {
    lock: LockRecord;
    how: string;
}[];
