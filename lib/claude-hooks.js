'use strict'
// `opencode-file-lock install-hooks claude-code`: merges this package's hooks into a Claude Code
// settings file (a project's .claude/settings.json, or ~/.claude/settings.json) and takes them
// out again with --remove, leaving every other setting as it was. The hook command names node and
// this package by absolute path, so it runs without the registry (npx would fetch the package on
// every tool call, or fail offline).
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { ROOT } = require('./platform.js')

/**
 * The events and the tools each hook runs for (see plugin/src/claude-code.ts). After a write or a
 * read the hook runs in the background (`async`): a tool call waits for one hook process, not two.
 * After Bash it runs in the foreground: what it finds is told to the model.
 */
const TOOLS = 'Write|Edit|MultiEdit|NotebookEdit|Read|Bash|mcp__.*'
const FILE_TOOLS = 'Write|Edit|MultiEdit|NotebookEdit|Read|mcp__.*'
const ENTRIES = [
  { event: 'PreToolUse', matcher: TOOLS },
  { event: 'PostToolUse', matcher: FILE_TOOLS, async: true },
  { event: 'PostToolUse', matcher: 'Bash' },
  { event: 'PostToolUseFailure', matcher: TOOLS, async: true },
  { event: 'Stop' },
  { event: 'SessionEnd' },
]
const EVENTS = [...new Set(ENTRIES.map((e) => e.event))]
/** What marks a hook entry as ours, whatever path it was installed from. */
const MARK = /opencode-file-lock[^\s"']*["']?\s+hook\s+claude-code\b/

/** A word for sh: as is when plain, else single-quoted. */
function shellWord(s) {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`
}

/** The command Claude Code runs for every hook event. */
function hookCommand(node = process.execPath, root = ROOT) {
  return `${shellWord(node)} ${shellWord(path.join(root, 'bin', 'opencode-file-lock.js'))} hook claude-code`
}

function settingsFile({ project, global, env = process.env }) {
  if (global) return path.join(env.CLAUDE_CONFIG_DIR || path.join(env.HOME || os.homedir(), '.claude'), 'settings.json')
  return path.join(path.resolve(project ?? process.cwd()), '.claude', 'settings.json')
}

function usage(message) {
  const e = new Error(message)
  e.usage = true
  return e
}

/** `settings` without our hook entries (and without the groups and events only they made). */
function withoutOurs(settings) {
  const hooks = settings.hooks && typeof settings.hooks === 'object' ? settings.hooks : undefined
  if (!hooks) return { settings, removed: 0 }
  let removed = 0
  const out = {}
  for (const [event, groups] of Object.entries(hooks)) {
    if (!Array.isArray(groups)) {
      out[event] = groups
      continue
    }
    const kept = []
    for (const g of groups) {
      if (!g || !Array.isArray(g.hooks)) {
        kept.push(g)
        continue
      }
      const left = g.hooks.filter((h) => !(h && typeof h.command === 'string' && MARK.test(h.command)))
      removed += g.hooks.length - left.length
      if (left.length) kept.push({ ...g, hooks: left })
    }
    if (kept.length) out[event] = kept
  }
  const next = { ...settings, hooks: out }
  if (Object.keys(out).length === 0) delete next.hooks
  return { settings: next, removed }
}

/**
 * Installs (or with `remove`, takes out) the hooks. Returns what it did; throws a usage error for a
 * settings file that is not JSON (it is left untouched).
 */
function installClaudeHooks({ project, global, remove = false, env = process.env, out = console.log, node, root, timeoutSeconds = 60 } = {}) {
  if (project && global) throw usage('choose --project or --global, not both')
  const file = settingsFile({ project, global, env })
  let settings = {}
  if (fs.existsSync(file)) {
    const text = fs.readFileSync(file, 'utf8')
    if (text.trim()) {
      try {
        settings = JSON.parse(text)
      } catch (e) {
        throw usage(`${file} is not valid JSON (${e.message}); fix it and run again (it was not changed)`)
      }
      if (!settings || typeof settings !== 'object' || Array.isArray(settings)) throw usage(`${file} does not hold a JSON object; fix it and run again (it was not changed)`)
    }
  } else if (remove) {
    out(`nothing to remove: ${file} does not exist`)
    return { file, removed: 0, installed: 0 }
  }
  const cleaned = withoutOurs(settings)
  let next = cleaned.settings
  let installed = 0
  if (!remove) {
    const command = hookCommand(node, root)
    const hooks = { ...(next.hooks ?? {}) }
    for (const { event, matcher, async } of ENTRIES) {
      const entry = { type: 'command', command, timeout: timeoutSeconds, ...(async ? { async: true } : {}) }
      hooks[event] = [...(Array.isArray(hooks[event]) ? hooks[event] : []), matcher ? { matcher, hooks: [entry] } : { hooks: [entry] }]
      installed++
    }
    next = { ...next, hooks }
  }
  fs.mkdirSync(path.dirname(file), { recursive: true })
  // written whole to a temporary file first: a crash leaves the old settings, never half of them
  const tmp = `${file}.${process.pid}.tmp`
  fs.writeFileSync(tmp, JSON.stringify(next, null, 2) + '\n')
  fs.renameSync(tmp, file)
  if (remove) out(`removed ${cleaned.removed} opencode-file-lock hook(s) from ${file}; other settings untouched`)
  else out(`installed opencode-file-lock hooks in ${file} (${EVENTS.join(', ')}; tools ${TOOLS})${cleaned.removed ? `, replacing ${cleaned.removed} older one(s)` : ''}\n  command: ${hookCommand(node, root)}`)
  if (!remove && /[\\/]_npx[\\/]/.test(root ?? ROOT)) out('note: this copy of opencode-file-lock runs from npx\'s cache, which npm may clear; install the package (npm install -g opencode-file-lock, or in the project) and run install-hooks from there')
  return { file, removed: cleaned.removed, installed }
}

module.exports = { installClaudeHooks, hookCommand, MARK }
