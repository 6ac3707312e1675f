'use strict'
// JS side of the bridge (src/binding/bridge.rs). Every native store call takes (bridge, id, ...):
// it answers at once when it finished inside the call (sled, and usually the shared store's
// client), or null, and then its answer comes back later under `id`; one wake-up of the JS thread
// settles every answer that arrived meanwhile.
const native = require('../index.js')
const { fromNative } = require('./errors.js')

let bridge
let nextId = 1
const pending = new Map() // id -> { resolve, reject }

function wake() {
  const { ids, oks, values } = bridge.drain()
  for (let i = 0; i < ids.length; i++) {
    const p = pending.get(ids[i])
    if (!p) continue
    pending.delete(ids[i])
    if (oks[i]) p.resolve(values[i])
    else p.reject(fromNative({ message: values[i] }))
  }
  if (pending.size === 0) bridge.hold(false)
}

/**
 * Runs `start(bridge, id)` and resolves with its answer (a string), now or when it arrives.
 * `onId` learns the id first (to abort a wait with `cancel`).
 */
function run(start, onId) {
  bridge ??= new native.Bridge(wake)
  const id = nextId
  nextId = nextId === 0xffffffff ? 1 : nextId + 1
  onId?.(id)
  let now
  try {
    now = start(bridge, id)
  } catch (e) {
    return Promise.reject(fromNative(e))
  }
  if (now !== null && now !== undefined) return Promise.resolve(now)
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject })
    if (pending.size === 1) bridge.hold(true)
  })
}

/** Aborts waiting acquire `id` (it then settles with EABORTED). */
function cancel(id) {
  if (bridge && id !== undefined && pending.has(id)) bridge.cancel(id)
}

module.exports = { run, cancel }
