//! Names of the keys the lock scripts use besides the lock keys themselves, laid out for Redis
//! Cluster (the same names on one server and under Sentinel).
//!
//! A lock key is `namespace\u{241F}path`, as the legacy caches wrote it. Every key a script touches
//! with it must live in the same hash slot, so the keys that go with a lock key carry a hash tag
//! (`{...}`) chosen to hash to the lock key's slot: `tag(slot(lock key))`. Per-slot keys (the
//! fencing counter, the ticket counter, a session's index) are one per namespace and slot. Keys of
//! the whole namespace that only one server can keep (the claim set, the waits hash, the epoch
//! marker) are untagged; a Cluster gets per-slot stand-ins that its scripts never write.

/// Internal keys (fencing counters, session indexes, waiter queues) start with U+241E, which no
/// namespaced key can start with unless its namespace does; scans skip them.
pub const INTERNAL: &str = "\u{241E}ofl:";

pub use crate::core::slot::{slot, tag};

fn tagged(kind: &str, tag: &str, rest: &str) -> String {
    format!("{INTERNAL}{kind}:{{{tag}}}{rest}")
}

/// A lock key's waiter queue (a sorted set of waiter ids by ticket) and its info (a hash of
/// waiter id -> lease, session, agent), in the lock key's slot (whose tag is `tag`).
pub fn queue_keys(tag: &str, lock_key: &str) -> (String, String) {
    (tagged("q", tag, lock_key), tagged("qh", tag, lock_key))
}

/// A lock key and the tag of its slot.
pub fn lock_key(ns: &str, path: &str) -> (String, &'static str) {
    let k = crate::core::envelope::storage_key(ns, path);
    let t = tag(slot(&k));
    (k, t)
}

/// The fencing counter of a namespace in one slot.
pub fn fence_key(tag: &str, ns: &str) -> String {
    tagged("fence", tag, ns)
}

/// The ticket counter (waiters' order) of a namespace in one slot.
pub fn ticket_key(tag: &str, ns: &str) -> String {
    tagged("ticket", tag, ns)
}

/// The paths a session holds in one slot of a namespace, on a Cluster (what releaseAllLocks goes
/// through there: an acquire can only write keys of its paths' slot).
pub fn session_index(tag: &str, ns: &str, session_id: &str) -> String {
    tagged("sess", tag, &format!("{ns}\u{241F}{session_id}"))
}

/// The paths a session holds in a namespace, on one server (and under Sentinel): one index per
/// session, so releaseAllLocks is one script whatever slots its paths hash to. (The name of the
/// layout before hash tags, so locks indexed then are found too.)
pub fn whole_session_index(ns: &str, session_id: &str) -> String {
    format!("{INTERNAL}sess:{ns}\u{241F}{session_id}")
}

/// An acquire attempt its client gave up on, in the slot the attempt ran in.
pub fn cancelled_key(tag: &str, nonce: &str) -> String {
    tagged("cancelled", tag, nonce)
}

/// The fencing counter of the slot a storage key lives in (`ns\u{241F}key`; a raw key without a
/// namespace belongs to "").
pub fn fence_key_of(storage_key: &str) -> String {
    fence_key(tag(slot(storage_key)), storage_key.split_once('\u{241F}').map_or("", |(ns, _)| ns))
}

/// The keys of a namespace that one server keeps for all its paths: on a Cluster, stand-ins in
/// `tag`'s slot, which the scripts are told not to use.
pub struct Whole {
    pub claims: String,
    pub waits: String,
    pub epoch: String,
    pub recovering: String,
    pub watching: String,
}

impl Whole {
    pub fn of(ns: &str, cluster_tag: Option<&str>) -> Whole {
        match cluster_tag {
            None => Whole { claims: claims_key(ns), waits: waits_key(ns), epoch: epoch_key(), recovering: recovering_key(), watching: watching_key() },
            Some(t) => Whole {
                claims: tagged("claims", t, ns),
                waits: tagged("waits", t, ns),
                epoch: tagged("epoch", t, ""),
                recovering: tagged("recovering", t, ""),
                watching: tagged("watching", t, ""),
            },
        }
    }
}

/// The claims (paths ending in `/`) that may be held or waited for in a namespace.
pub fn claims_key(ns: &str) -> String {
    format!("{INTERNAL}claims:{ns}")
}

/// The waiting acquires of a namespace: waiter id -> who waits for what, held up by whom. On a
/// Cluster, one per slot (`Whole`).
pub fn waits_key(ns: &str) -> String {
    format!("{INTERNAL}waits:{ns}")
}

/// Present while someone watches lock changes (`watch`): scripts announce changes only then.
pub fn watching_key() -> String {
    format!("{INTERNAL}watching")
}

/// One marker per database: planted by the first process that looks, gone when the server loses
/// its data (see `restart`).
pub fn epoch_key() -> String {
    format!("{INTERNAL}epoch")
}

/// Set for a while after the server lost its data: new grants wait (see common.lua).
pub fn recovering_key() -> String {
    format!("{INTERNAL}recovering")
}

/// SCAN MATCH treats `*?[]\` specially; a namespace may contain them.
pub fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A session's per-slot index names around their tag: (before it, after it). Scripts that look
/// for them check that a match has a tag there (a namespace's text may match a wildcard).
pub fn session_index_parts(ns: &str, session_id: &str) -> (String, String) {
    (format!("{INTERNAL}sess:{{"), format!("}}{ns}\u{241F}{session_id}"))
}


/// SCAN MATCH for every slot's `kind` key ending in `rest` (`tagged(kind, <any tag>, rest)`);
/// a superset, checked with `is_tagged`.
pub fn tagged_pattern(kind: &str, rest: &str) -> String {
    format!("{}*{}", glob_escape(&format!("{INTERNAL}{kind}:{{")), glob_escape(&format!("}}{rest}")))
}

/// Whether `key` is `tagged(kind, t, rest)` for some tag `t`.
pub fn is_tagged(key: &str, kind: &str, rest: &str) -> bool {
    let Some(after_kind) = key.strip_prefix(&format!("{INTERNAL}{kind}:{{")) else { return false };
    after_kind.split_once('}').is_some_and(|(t, after)| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric()) && after == rest)
}

/// Every internal key name of one namespace that does not depend on the slot, made once.
pub struct NsKeys {
    pub prefix: String,
    /// One server's whole-namespace keys (a Cluster makes per-slot stand-ins instead).
    pub whole: Whole,
}

impl NsKeys {
    pub fn of(ns: &str) -> NsKeys {
        NsKeys { prefix: crate::core::envelope::namespace_prefix(ns), whole: Whole::of(ns, None) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_lock_lands_in_its_slot() {
        for lock in ["locks\u{241F}/p/src/a.ts", "ns{x}\u{241F}/a}b", "\u{241F}/", "n\u{241F}/{weird}/path"] {
            let s = slot(lock);
            let t = tag(s);
            let (q, qh) = queue_keys(t, lock);
            for k in [q, qh, fence_key(t, "locks"), ticket_key(t, "locks"), session_index(t, "ns{x}", "ses}1"), cancelled_key(t, "n{o}nce")] {
                assert_eq!(slot(&k), s, "{k} for {lock}");
            }
        }
    }

    #[test]
    fn session_index_parts_surround_the_tag() {
        let (before, after) = session_index_parts("ns", "s1");
        assert_eq!(session_index(tag(7), "ns", "s1"), format!("{before}{}{after}", tag(7)));
        assert!(whole_session_index("ns", "s1") != session_index(tag(7), "ns", "s1"));
    }
}
