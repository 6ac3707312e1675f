/** The shell tool: `bash` in opencode 1, `shell` in opencode 2 (and Claude Code's `Bash`). */
export declare const isShell: (tool: string) => tool is "Bash" | "bash" | "shell";
/** Arguments that name one file or folder a writing tool touches (MCP servers' spellings too). */
export declare const PATH_KEYS: string[];
/**
 * What the user said about tools (FILE_LOCK_TOOLS): tools that write, with the arguments holding
 * their paths (empty: the usual ones), and tools that do not write files at all.
 */
export interface ToolRules {
    writes: Map<string, string[]>;
    ignores: Set<string>;
}
export declare const NO_RULES: ToolRules;
/**
 * FILE_LOCK_TOOLS: comma-separated `tool` (it writes; its paths are in the usual arguments),
 * `tool:arg+arg` (it writes the files these arguments name) or `-tool` (it writes no files).
 * Names match a tool exactly or as the end of an MCP tool's name (`server_tool`).
 */
export declare function parseToolRules(value: string | undefined, source?: string): ToolRules;
/** What a patch does to one path: `add` and `move` (its destination) write the whole file. */
export interface PatchEntry {
    path: string;
    op: 'add' | 'update' | 'delete' | 'move';
}
/**
 * Every path a patch in the apply_patch format touches, read as opencode 1.18.33 reads it: the
 * text trimmed and unwrapped from a heredoc, the part between the lines that trim to
 * `*** Begin Patch` and `*** End Patch`, headers at the start of a line with the path after the
 * colon trimmed (spaces, tabs, a CR; no space needed), `*** Move to:` only on the line right
 * after an Update header, a header with an empty path skipped.
 */
export declare function patchPaths(patch: string): string[];
/** The paths of a patch (as `patchPaths` reads them) with what the patch does to each; a path named twice keeps its first. */
export declare function patchEntries(patch: string): PatchEntry[];
/** A file a call writes, and whether the call replaces it whole (a file its task never read is then refused). */
export interface Write {
    path: string;
    whole: boolean;
}
/**
 * The files `tool` will change given `args`: null for a tool that does not write files, [] for a
 * writing tool whose arguments name no file (the caller must refuse it: it cannot be locked).
 */
export declare function filesTouchedBy(tool: string, args: unknown, rules?: ToolRules): string[] | null;
/** `filesTouchedBy`, with whether each file is written whole. */
export declare function writesOf(tool: string, args: unknown, rules?: ToolRules): Write[] | null;
/**
 * The files a call shows the model, whose content its task tree has then seen: null for a tool
 * that reads no file.
 */
export declare function readsOf(tool: string, args: unknown): string[] | null;
