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

