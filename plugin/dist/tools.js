// Which files a tool call is about to change. Kept apart from file-lock.ts because opencode
// calls every function a plugin module exports: the plugin module exports exactly one.
/** Tools that always write the file named by their `filePath`. */
const FILE_TOOLS = new Set(['write', 'edit', 'multiedit']);
/** Tools that carry a patch naming the files it adds, updates, deletes or moves. */
const PATCH_TOOLS = new Set(['patch', 'apply_patch']);
/** Other tools (MCP servers, custom tools) whose names say they change a file. */
const WRITE_WORDS = /(create|write|edit|replace|insert|delete|update)/i;
/** Tools that only look, whatever their names contain. */
const READ_ONLY = new Set(['read', 'glob', 'grep', 'list', 'ls', 'webfetch', 'todoread', 'todowrite', 'task', 'bash']);
const PATH_KEYS = ['filePath', 'file_path', 'path', 'filename', 'file', 'target_file', 'targetFile', 'target', 'destination', 'newPath', 'new_path', 'oldPath', 'old_path'];
const LIST_KEYS = ['filePaths', 'file_paths', 'paths', 'files'];
const PATCH_KEYS = ['patchText', 'patch_text', 'patch', 'input'];
/** Every path a patch in the apply_patch format touches: Add/Update/Delete File and Move to. */
export function patchPaths(patch) {
    const out = [];
    for (const line of patch.split(/\r?\n/)) {
        const m = line.match(/^\*\*\* (?:(?:Add|Update|Delete) File|Move to): (.+?)\s*$/);
        if (m && !out.includes(m[1]))
            out.push(m[1]);
    }
    return out;
}
function stringsOf(v) {
    if (typeof v === 'string')
        return v ? [v] : [];
    if (Array.isArray(v))
        return v.flatMap((x) => (typeof x === 'string' ? stringsOf(x) : x && typeof x === 'object' ? stringsOf(x.path ?? x.filePath) : []));
    return [];
}
/**
 * The files `tool` will change given `args`: null for tools that do not write files, [] for a
 * writing tool whose arguments name no file (nothing to lock).
 */
export function filesTouchedBy(tool, args) {
    const a = (args && typeof args === 'object' ? args : {});
    const name = String(tool);
    if (PATCH_TOOLS.has(name)) {
        const text = PATCH_KEYS.map((k) => a[k]).find((v) => typeof v === 'string');
        return text ? patchPaths(text) : [];
    }
    if (FILE_TOOLS.has(name))
        return stringsOf(a.filePath ?? a.file_path ?? a.path);
    if (READ_ONLY.has(name) || !WRITE_WORDS.test(name))
        return null;
    const found = [...PATH_KEYS.flatMap((k) => stringsOf(a[k])), ...LIST_KEYS.flatMap((k) => stringsOf(a[k]))];
    for (const k of PATCH_KEYS)
        if (typeof a[k] === 'string' && a[k].includes('*** Begin Patch'))
            found.push(...patchPaths(a[k]));
    return [...new Set(found)];
}
