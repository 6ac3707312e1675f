'use strict'
// JS side of the completion bridge (src/binding/bridge.rs): Redis lock calls are submitted with an
// id; results come back in batches, and one wake-up of the JS thread settles all of them.
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

/** Runs `start(bridge, id)` and resolves with the value the native side completes `id` with. */
function submit(start) {
  bridge ??= new native.Bridge(wake)
  const id = nextId
  nextId = nextId === 0xffffffff ? 1 : nextId + 1
  return new Promise((resolve, reject) => {
    try {
      start(bridge, id)
    } catch (e) {
      reject(fromNative(e))
      return
    }
    pending.set(id, { resolve, reject })
    if (pending.size === 1) bridge.hold(true)
  })
}

/** Aborts waiting acquire `id` (it then settles with EABORTED). */
function cancel(id) {
  if (bridge && id !== undefined && pending.has(id)) bridge.cancel(id)
}

module.exports = { submit, cancel }
