//! Names of the keys the lock scripts use besides the lock keys themselves.

/// Internal keys (fencing counters, session indexes, waiter queues) start with U+241E, which no
/// namespaced key can start with unless its namespace does; scans skip them. common.lua spells
/// the queue prefixes out too.
pub const INTERNAL: &str = "\u{241E}ofl:";

pub fn fence_key(ns: &str) -> String {
    format!("{INTERNAL}fence:{ns}")
}

pub fn ticket_key(ns: &str) -> String {
    format!("{INTERNAL}ticket:{ns}")
}

/// The claims (paths ending in `/`) that may be held or waited for in a namespace (common.lua).
pub fn claims_key(ns: &str) -> String {
    format!("{INTERNAL}claims:{ns}")
}

/// The waiting acquires of a namespace: waiter id -> who waits for what, held up by whom.
pub fn waits_key(ns: &str) -> String {
    format!("{INTERNAL}waits:{ns}")
}

/// Present while someone watches lock changes (`watch`): scripts announce changes only then.
pub fn watching_key() -> String {
    format!("{INTERNAL}watching")
}

pub fn session_index_prefix(ns: &str) -> String {
    format!("{INTERNAL}sess:{ns}\u{241F}")
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


/// One marker per database: planted by the first process that looks, gone when the server loses
/// its data (see `restart`).
pub fn epoch_key() -> String {
    format!("{INTERNAL}epoch")
}

/// Set for a while after the server lost its data: new grants wait (see common.lua).
pub fn recovering_key() -> String {
    format!("{INTERNAL}recovering")
}

/// The fencing counter of the namespace a storage key belongs to (`ns\u{241F}key`; a raw key
/// without a namespace belongs to "").
pub fn fence_key_of(storage_key: &str) -> String {
    fence_key(storage_key.split_once('\u{241F}').map_or("", |(ns, _)| ns))
}

/// Every internal key name of one namespace, made once (the hot scripts name several per call).
pub struct NsKeys {
    pub prefix: String,
    pub fence: String,
    pub ticket: String,
    pub claims: String,
    pub waits: String,
    pub session_prefix: String,
}

impl NsKeys {
    pub fn of(ns: &str) -> NsKeys {
        NsKeys {
            prefix: crate::core::envelope::namespace_prefix(ns),
            fence: fence_key(ns),
            ticket: ticket_key(ns),
            claims: claims_key(ns),
            waits: waits_key(ns),
            session_prefix: session_index_prefix(ns),
        }
    }

    pub fn session_index(&self, session_id: &str) -> String {
        format!("{}{session_id}", self.session_prefix)
    }
}
