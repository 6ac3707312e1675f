// The key layout of the Redis store (src/stores/redis/keys.rs), for tests that look at raw keys:
// Redis Cluster's hash slots, and the tag that puts a key in a lock key's slot.
const SEP = '\u241F'
const INTERNAL = '\u241Eofl:'

function crc16(bytes: Buffer): number {
  let crc = 0
  for (const b of bytes) {
    crc ^= b << 8
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
  }
  return crc
}

/** The hash slot of a key, as Redis Cluster computes it ({tag} rules included). */
export function slot(key: string): number {
  const b = Buffer.from(key)
  const open = b.indexOf('{')
  if (open >= 0) {
    const close = b.indexOf('}', open + 1)
    if (close > open + 1) return crc16(b.subarray(open + 1, close)) % 16384
  }
  return crc16(b) % 16384
}

let tags: string[] | undefined
/** The tag the store uses for a slot (the first base-36 number that hashes there). */
export function tagOf(s: number): string {
  if (!tags) {
    tags = new Array(16384).fill('')
    let left = 16384
    for (let i = 0; left > 0; i++) {
      const t = i.toString(36)
      const at = crc16(Buffer.from(t)) % 16384
      if (!tags[at]) {
        tags[at] = t
        left--
      }
    }
  }
  return tags[s]
}

export const lockKey = (ns: string, path: string) => `${ns}${SEP}${path}`
const tagged = (kind: string, lock: string, rest: string) => `${INTERNAL}${kind}:{${tagOf(slot(lock))}}${rest}`
/** A path's waiter queue (sorted set). */
export const queueKey = (ns: string, path: string) => tagged('q', lockKey(ns, path), lockKey(ns, path))
/** A path's waiter queue's info (hash). */
export const queueInfoKey = (ns: string, path: string) => tagged('qh', lockKey(ns, path), lockKey(ns, path))
/** The fencing counter of the slot a path lives in. */
export const fenceKey = (ns: string, path: string) => tagged('fence', lockKey(ns, path), ns)
/** The ticket counter (waiters' order) of the slot a path lives in. */
export const ticketKey = (ns: string, path: string) => tagged('ticket', lockKey(ns, path), ns)
/** An acquire attempt given up on, in the slot of the path it ran for. */
export const cancelledKey = (ns: string, path: string, nonce: string) => tagged('cancelled', lockKey(ns, path), nonce)
/** A session's one index on one server (or under Sentinel). */
export const sessionIndexKey = (ns: string, session: string) => `${INTERNAL}sess:${ns}${SEP}${session}`
/** The keys of a namespace one server keeps for all its paths. */
export const wholeKeys = (ns: string) => ({
  claims: `${INTERNAL}claims:${ns}`,
  waits: `${INTERNAL}waits:${ns}`,
  epoch: `${INTERNAL}epoch`,
  recovering: `${INTERNAL}recovering`,
  watching: `${INTERNAL}watching`,
})
