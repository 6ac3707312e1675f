'use strict'
// Typed errors with a stable `code`. The native layer encodes {code, message, holder} as JSON
// after a \u0001 marker (napi's async rejections carry only fixed status codes).

const MARKER = '\u0001'

class FileLockError extends Error {
  constructor(code, message, holder) {
    super(message)
    this.name = 'FileLockError'
    this.code = code
    if (holder != null) this.holder = holder
    // EDEADLK: every wait of the cycle, and the caller's locks let go of to break it
    if (code === 'EDEADLK' && holder) {
      this.cycle = holder.cycle ?? []
      this.released = holder.released ?? []
    }
  }
}

function invalid(message) {
  return new FileLockError('EINVAL', message)
}

/** Turns whatever the native layer threw into a FileLockError (argument conversion errors are EINVAL). */
function fromNative(e) {
  if (e instanceof FileLockError) return e
  const msg = e && typeof e.message === 'string' ? e.message : String(e)
  if (msg.startsWith(MARKER)) {
    try {
      const p = JSON.parse(msg.slice(1))
      return new FileLockError(p.code, p.message, p.holder)
    } catch {
      // fall through
    }
  }
  // napi-rs rejects arguments of the wrong type before our code runs
  if (e && (e.code === 'InvalidArg' || e.code === 'NumberExpected' || e.code === 'StringExpected' || e instanceof TypeError)) {
    return invalid(msg)
  }
  return new FileLockError('EBACKEND', msg)
}

module.exports = { FileLockError, fromNative, invalid }
