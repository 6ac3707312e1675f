// Which files a tool call is about to change. Kept apart from file-lock.ts because opencode
// calls every function a plugin module exports: the plugin module exports exactly one.
import { fileURLToPath } from 'node:url'

/** Tools that always write the file named by their `filePath`. */
const FILE_TOOLS = new Set(['write', 'edit', 'multiedit'])
/** Tools that carry a patch naming the files it adds, updates, deletes or moves. */
const PATCH_TOOLS = new Set(['patch', 'apply_patch'])
/** Other tools (MCP servers, custom tools) whose names say they change a file or folder. */
const WRITE_WORDS = /(create|write|edit|replace|insert|delete|update|move|rename|remove|patch|diff|append|save|mkdir|unlink|copy|notebook)/i
/** Tools that only look (or, like bash and the code-mode runner, are watched another way), whatever their names contain. */
const READ_ONLY = new Set(['read', 'glob', 'grep', 'list', 'ls', 'webfetch', 'websearch', 'codesearch', 'todoread', 'todowrite', 'task', 'subagent', 'bash', 'shell', 'execute', 'lsp', 'skill', 'question', 'file_locks', 'claim_files'])

/** The shell tool: `bash` in opencode 1, `shell` in opencode 2 (and Claude Code's `Bash`). */
export const isShell = (tool: string) => tool === 'bash' || tool === 'shell' || tool === 'Bash'

/** Arguments that name one file or folder a writing tool touches (MCP servers' spellings too). */
export const PATH_KEYS = [
  'filePath', 'file_path', 'path', 'filename', 'file', 'target_file', 'targetFile', 'target', 'notebook_path', 'notebookPath', 'uri',
  'source', 'destination', 'src', 'dest', 'from', 'to', 'newPath', 'new_path', 'oldPath', 'old_path',
]
/** Arguments that name several. */
const LIST_KEYS = ['filePaths', 'file_paths', 'paths', 'files']
const PATCH_KEYS = ['patchText', 'patch_text', 'patch', 'input']

/**
 * What the user said about tools (FILE_LOCK_TOOLS): tools that write, with the arguments holding
 * their paths (empty: the usual ones), and tools that do not write files at all.
 */
export interface ToolRules {
  writes: Map<string, string[]>
  ignores: Set<string>
}

export const NO_RULES: ToolRules = { writes: new Map(), ignores: new Set() }

const NAME = /^[A-Za-z0-9_.-]+$/

/**
 * FILE_LOCK_TOOLS: comma-separated `tool` (it writes; its paths are in the usual arguments),
 * `tool:arg+arg` (it writes the files these arguments name) or `-tool` (it writes no files).
 * Names match a tool exactly or as the end of an MCP tool's name (`server_tool`).
 */
export function parseToolRules(value: string | undefined, source = 'FILE_LOCK_TOOLS'): ToolRules {
  const rules: ToolRules = { writes: new Map(), ignores: new Set() }
  if (value === undefined || value.trim() === '') return rules
  for (const raw of value.split(',')) {
    const entry = raw.trim()
    const fail = (why: string) => new Error(`opencode-file-lock: ${source} entry ${JSON.stringify(entry)} ${why}; write tool, tool:arg+arg or -tool, separated by commas (e.g. my_writer:dest,-create_issue)`)
    if (entry.startsWith('-')) {
      if (!NAME.test(entry.slice(1))) throw fail('is not a tool name')
      rules.ignores.add(entry.slice(1))
      continue
    }
    const [tool, args, ...more] = entry.split(':')
    if (more.length || !NAME.test(tool ?? '')) throw fail('is not a tool name')
    const list = args === undefined ? [] : args.split('+').map((a) => a.trim())
    if (args !== undefined && (list.length === 0 || list.some((a) => !NAME.test(a)))) throw fail('names no argument after its colon')
    rules.writes.set(tool, list)
  }
  return rules
}

/** `name` is `rule`, or an MCP tool (`server_rule`) of that name. */
const named = (name: string, rule: string) => name === rule || name.endsWith(`_${rule}`)

function findRule<T>(name: string, rules: Map<string, T> | Set<string>): boolean | T | undefined {
  for (const k of rules instanceof Map ? rules.keys() : rules) if (named(name, k)) return rules instanceof Map ? rules.get(k) : true
  return undefined
}

/** A heredoc around the whole patch (`cat <<'EOF' ... EOF`), as opencode strips it. */
function stripHeredoc(text: string): string {
  const m = text.match(/^(?:cat\s+)?<<['"]?(\w+)['"]?\s*\n([\s\S]*?)\n\1\s*$/)
  return m ? m[2] : text
}

const HEADERS = ['*** Add File:', '*** Delete File:', '*** Update File:']
const MOVE = '*** Move to:'

/** What a patch does to one path: `add` and `move` (its destination) write the whole file. */
export interface PatchEntry {
  path: string
  op: 'add' | 'update' | 'delete' | 'move'
}

const OPS: Record<string, PatchEntry['op']> = { '*** Add File:': 'add', '*** Delete File:': 'delete', '*** Update File:': 'update' }

/**
 * Every path a patch in the apply_patch format touches, read as opencode 1.18.33 reads it: the
 * text trimmed and unwrapped from a heredoc, the part between the lines that trim to
 * `*** Begin Patch` and `*** End Patch`, headers at the start of a line with the path after the
 * colon trimmed (spaces, tabs, a CR; no space needed), `*** Move to:` only on the line right
 * after an Update header, a header with an empty path skipped.
 */
export function patchPaths(patch: string): string[] {
  return patchEntries(patch).map((e) => e.path)
}

/** The paths of a patch (as `patchPaths` reads them) with what the patch does to each; a path named twice keeps its first. */
export function patchEntries(patch: string): PatchEntry[] {
  const lines = stripHeredoc(patch.trim()).split('\n')
  const begin = lines.findIndex((l) => l.trim() === '*** Begin Patch')
  const end = lines.findIndex((l) => l.trim() === '*** End Patch')
  if (begin === -1 || end === -1 || begin >= end) return []
  const out: PatchEntry[] = []
  const add = (path: string, op: PatchEntry['op']) => path && !out.some((e) => e.path === path) && out.push({ path, op })
  for (let i = begin + 1; i < end; i++) {
    const header = HEADERS.find((h) => lines[i].startsWith(h))
    if (!header) continue
    add(lines[i].slice(header.length).trim(), OPS[header])
    if (header === '*** Update File:' && lines[i + 1]?.startsWith(MOVE)) add(lines[i + 1].slice(MOVE.length).trim(), 'move')
  }
  return out
}

/** A path argument as a file path: strings, `file://` URIs, and arrays of either (or of {path}). */
function stringsOf(v: unknown): string[] {
  if (typeof v === 'string') {
    if (!v) return []
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(v)) return v.startsWith('file://') ? [fileURLToPath(v)] : []
    return [v]
  }
  if (Array.isArray(v)) return v.flatMap((x) => (typeof x === 'string' ? stringsOf(x) : x && typeof x === 'object' ? stringsOf((x as any).path ?? (x as any).filePath) : []))
  return []
}

/** A file a call writes, and whether the call replaces it whole (a file its task never read is then refused). */
export interface Write {
  path: string
  whole: boolean
}

/** Tools other than opencode's own whose names say they replace a file whole (MCP's write_file, a custom `save`). */
const WHOLE_WRITERS = /(^|_)(write|create|save|overwrite)(_?file)?$/i

/**
 * The files `tool` will change given `args`: null for a tool that does not write files, [] for a
 * writing tool whose arguments name no file (the caller must refuse it: it cannot be locked).
 */
export function filesTouchedBy(tool: string, args: unknown, rules: ToolRules = NO_RULES): string[] | null {
  return writesOf(tool, args, rules)?.map((w) => w.path) ?? null
}

/** `filesTouchedBy`, with whether each file is written whole. */
export function writesOf(tool: string, args: unknown, rules: ToolRules = NO_RULES): Write[] | null {
  const a = (args && typeof args === 'object' ? args : {}) as Record<string, unknown>
  const name = String(tool)
  if (findRule(name, rules.ignores)) return null
  const whole = name === 'write' || WHOLE_WRITERS.test(name)
  const each = (paths: string[]) => [...new Set(paths)].map((path) => ({ path, whole }))
  const configured = findRule(name, rules.writes) as string[] | undefined
  if (configured !== undefined && configured.length > 0) return each(configured.flatMap((k) => stringsOf(a[k])))
  if (configured === undefined) {
    if (PATCH_TOOLS.has(name)) {
      // a freeform patch call carries the patch itself as its input
      const text = typeof args === 'string' ? args : (PATCH_KEYS.map((k) => a[k]).find((v) => typeof v === 'string') as string | undefined)
      return text ? fromPatch(text) : []
    }
    if (FILE_TOOLS.has(name)) return each(stringsOf(a.filePath ?? a.file_path ?? a.path))
    if (READ_ONLY.has(name) || !WRITE_WORDS.test(name)) return null
    // an editor tool asked only to look (str_replace_based_edit_tool's view)
    if (a.command === 'view') return null
  }
  const found = each([...PATH_KEYS.flatMap((k) => stringsOf(a[k])), ...LIST_KEYS.flatMap((k) => stringsOf(a[k]))])
  for (const k of PATCH_KEYS) {
    if (typeof a[k] === 'string' && (a[k] as string).includes('*** Begin Patch')) for (const w of fromPatch(a[k] as string)) if (!found.some((f) => f.path === w.path)) found.push(w)
  }
  return found
}

function fromPatch(text: string): Write[] {
  return patchEntries(text).map((e) => ({ path: e.path, whole: e.op === 'add' || e.op === 'move' }))
}

/** Tools that return whole files: opencode's `read`, and MCP filesystem servers' reads. */
const MCP_READ = /(^|_)read_(text_)?file$/
const MCP_READ_MANY = /(^|_)read_multiple_files$/
/** Arguments that make a read return part of a file only (MCP's head/tail). */
const PARTIAL_READ_KEYS = ['head', 'tail']

/**
 * The files a call shows the model, whose content its task tree has then seen: null for a tool
 * that reads no file.
 */
export function readsOf(tool: string, args: unknown): string[] | null {
  const a = (args && typeof args === 'object' ? args : {}) as Record<string, unknown>
  const name = String(tool)
  if (name === 'read') return stringsOf(a.filePath ?? a.file_path ?? a.path)
  if (PARTIAL_READ_KEYS.some((k) => a[k] !== undefined && a[k] !== null)) return null
  if (MCP_READ.test(name)) return stringsOf(a.path ?? a.filePath ?? a.file_path)
  if (MCP_READ_MANY.test(name)) return LIST_KEYS.flatMap((k) => stringsOf(a[k]))
  return null
}
