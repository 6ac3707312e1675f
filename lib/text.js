'use strict'
// Text that came from another agent (ids, titles, reasons) is shown as one line with no control
// characters, so no escape sequence of theirs reaches a terminal or a model's context as such.
// Plain CommonJS with no native code: the plugin's messages use it even when the addon is missing.

const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g

/** `s` as one line: control characters (escape sequences' ESC among them) become spaces, runs of spaces one, cut to `max` characters. */
function oneLine(s, max = 200) {
  const t = String(s ?? '').replace(CONTROL, ' ').replace(/\s+/g, ' ').trim()
  const chars = [...t]
  return chars.length > max ? `${chars.slice(0, max - 1).join('')}…` : t
}

/** A lock's holder as people read it: `agent <id> (session <id>, “title”) [kind]` (opencode, claude-code, mcp:<client>, human), each part one line. */
function holderText(r) {
  const title = r?.title ? `, “${oneLine(r.title)}”` : ''
  const kind = r?.kind ? ` [${oneLine(r.kind, 64)}]` : ''
  return `agent ${oneLine(r?.agentId ?? 'unknown')} (session ${oneLine(r?.sessionId ?? 'unknown')}${title})${kind}`
}

/** `, for this reason: “...”` when the lock record gives one, else ''. */
function reasonText(r) {
  return r?.reason ? `, for this reason: “${oneLine(r.reason)}”` : ''
}

module.exports = { oneLine, holderText, reasonText }
