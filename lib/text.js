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

module.exports = { oneLine }
