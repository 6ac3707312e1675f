import type { Cache, FileVersion, Freshness } from '../../lib/index.js';
import type { Settings } from './options.ts';
import type { Write } from './tools.ts';
type Lib = typeof import('../../lib/index.js');
/** Who a write is recorded as. */
export interface WriterInfo {
    sessionId: string;
    tree: string;
    title?: string;
    agentName?: string;
    /** `opencode` (default), `claude-code`, ... */
    kind?: string;
}
/** A tree's files before a command that may change them: the ones it saw as they are on disk. */
export type BashViews = {
    path: string;
    mark: string;
}[];
export declare class Views {
    private lib;
    private cache;
    private s;
    private log;
    constructor(lib: Lib, cache: () => Promise<Cache>, s: Settings, log: (msg: string) => void);
    get on(): boolean;
    /**
     * Whether `tree` may write these files now (`paths`: the locked, normalized paths, in the order
     * of `writes`' paths once normalized). Only the files that may not are returned.
     */
    check(paths: string[], writes: Write[], tree: string): Promise<Freshness[]>;
    /** After a write, before its locks go: what each file now holds, and that the writer's tree saw it. */
    wrote(paths: string[], w: WriterInfo): Promise<void>;
    /** Before a read: each file's mark, so a change during the read is not taken as seen. */
    marks(paths: string[]): {
        path: string;
        mark: string | null;
    }[];
    /** After a read: the tree has seen these files (those unchanged since `marks`). */
    read(before: {
        path: string;
        mark: string | null;
    }[], tree: string): Promise<void>;
    /** Before a command of `tree`'s: the files it has seen that are still as it saw them. */
    beforeCommand(tree: string): Promise<BashViews>;
    /**
     * After it: the command's own changes to those files are the tree's view now, not someone else's
     * change. A file another session held before the command (`heldBefore`: other sessions' locks
     * then) or holds after it, or whose content is what another tree's recorded write left, changed
     * by their hand, not the command's: the view stays as it was, so the tree's next write there is
     * refused until it reads the file again.
     */
    afterCommand(before: BashViews, tree: string, heldBefore: {
        path: string;
    }[]): Promise<string[]>;
    /** The last writes of `paths`, and for each whether `tree`'s view of it is current: for `file_locks`. */
    describe(paths: string[], tree: string): Promise<{
        path: string;
        lastWrite?: FileVersion;
        status?: Freshness['status'];
    }[]>;
    private normal;
}
export {};
