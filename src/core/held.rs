//! The locks this process holds, as a store granted them, with how long each has left by this
//! process's monotonic clock. A store that can lose what it holds (Redis restarted without
//! persistence, a failover to a replica that had not received a grant, a hybrid coming back from
//! its fallback) puts these back: same record, same token, the time they have left.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::lock::{LockFilter, LockRecord};
use super::lost::LostListener;

/// What putting a held lock back found.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum Reasserted {
    /// The store has it as the holder does.
    Kept,
    /// The store had lost it (or never saw the grant); it is written back, same record and token.
    Restored,
    /// Another session holds the path now.
    Conflict { holder: Value },
    /// It expired meanwhile; nothing is written back.
    Expired,
    /// It was taken away on purpose while the holder was away (an operator's forced release, a
    /// deadlock broken by letting it go): final, nothing is written back.
    Released,
}

/// The lost-lock event for a re-assertion that did not keep the lock (None when it did), and the
/// line said on stderr about a conflict, which means two holders may have written the file.
/// `after` says what happened ("a takeover of <folder>", "a restart of <server>").
pub fn settle(after: &str, ns: &str, rec: &LockRecord, outcome: Reasserted, listener: Option<&LostListener>) -> bool {
    let (reason, holder) = match outcome {
        Reasserted::Kept | Reasserted::Restored => return false,
        Reasserted::Conflict { holder } => ("conflict", holder),
        Reasserted::Expired => ("expired", Value::Null),
        Reasserted::Released => ("released", Value::Null),
    };
    if reason == "conflict" {
        eprintln!(
            "[opencode-file-lock] after {after}, the lock on {} of session {} could not be put back: session {} holds it now",
            rec.path,
            rec.session_id,
            holder["sessionId"].as_str().unwrap_or("unknown")
        );
    }
    let event = json!({ "reason": reason, "namespace": ns, "path": rec.path, "sessionId": rec.session_id, "lost": rec, "holder": holder });
    match listener {
        Some(l) => l(event),
        None => super::metrics::lost(reason),
    }
    true
}

/// One held lock: the record and the earliest its TTL can run out (re-entries and renewals only
/// push that out).
#[derive(Debug, Clone)]
pub struct Held {
    pub rec: LockRecord,
    pub until: Instant,
}

impl Held {
    /// What is left of its TTL, in ms (0 when it has run out).
    pub fn left_ms(&self) -> u64 {
        self.until.saturating_duration_since(Instant::now()).as_millis() as u64
    }
}

/// namespace -> path -> held lock.
#[derive(Default)]
pub struct HeldLocks(Mutex<HashMap<String, HashMap<String, Held>>>);

impl HeldLocks {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, Held>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Grants and re-entries of `ttl` (the records as the store answered).
    pub fn granted(&self, ns: &str, recs: &[LockRecord], ttl: Duration) {
        let until = Instant::now() + ttl;
        let mut m = self.map();
        let by_path = m.entry(ns.to_owned()).or_default();
        for rec in recs {
            let until = match by_path.get(&rec.path) {
                Some(h) if h.rec.token == rec.token && h.rec.session_id == rec.session_id => h.until.max(until),
                _ => until,
            };
            by_path.insert(rec.path.clone(), Held { rec: rec.clone(), until });
        }
    }

    /// A renewal: the record as it is now, with at least `ttl` left.
    pub fn renewed(&self, ns: &str, rec: &LockRecord, ttl: Duration) {
        self.granted(ns, std::slice::from_ref(rec), ttl);
    }

    /// One hold of `session_id` released; the last one forgets the lock.
    pub fn released(&self, ns: &str, path: &str, session_id: &str) {
        let mut m = self.map();
        let Some(by_path) = m.get_mut(ns) else { return };
        if let Some(h) = by_path.get_mut(path).filter(|h| h.rec.session_id == session_id) {
            h.rec.hold_count = h.rec.hold_count.saturating_sub(1);
            if h.rec.hold_count == 0 {
                by_path.remove(path);
            }
        }
    }

    /// Every matching lock released at once.
    pub fn released_all(&self, ns: &str, filter: &LockFilter) {
        if let Some(by_path) = self.map().get_mut(ns) {
            by_path.retain(|_, h| !filter.matches(&h.rec));
        }
    }

    /// The lock on `path` is no longer this process's (lost, forced free, not renewable); with a
    /// token, only if it is still that grant.
    pub fn forget(&self, ns: &str, path: &str, token: Option<u64>) {
        if let Some(by_path) = self.map().get_mut(ns) {
            if by_path.get(path).is_some_and(|h| token.is_none_or(|t| h.rec.token == t)) {
                by_path.remove(path);
            }
        }
    }

    pub fn get(&self, ns: &str, path: &str) -> Option<Held> {
        self.map().get(ns)?.get(path).cloned()
    }

    /// Everything held, by namespace.
    pub fn snapshot(&self) -> Vec<(String, Vec<Held>)> {
        self.map().iter().filter(|(_, m)| !m.is_empty()).map(|(ns, m)| (ns.clone(), m.values().cloned().collect())).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.map().values().all(HashMap::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(path: &str, session: &str, token: u64, holds: u32) -> LockRecord {
        LockRecord { session_id: session.into(), agent_id: "a".into(), path: path.into(), timestamp: 1, expires_at: 2, token, hold_count: holds, extra: Default::default() }
    }

    #[test]
    fn holds_count_down_and_ttls_only_grow() {
        let h = HeldLocks::default();
        h.granted("ns", &[rec("/a", "s1", 7, 1)], Duration::from_secs(60));
        h.granted("ns", &[rec("/a", "s1", 7, 2)], Duration::from_millis(10)); // a shorter re-entry
        assert!(h.get("ns", "/a").unwrap().left_ms() > 59_000);
        h.released("ns", "/a", "s2");
        h.released("ns", "/a", "s1");
        assert_eq!(h.get("ns", "/a").unwrap().rec.hold_count, 1);
        h.released("ns", "/a", "s1");
        assert!(h.get("ns", "/a").is_none() && h.is_empty());
        h.granted("ns", &[rec("/b", "s1", 8, 1), rec("/c", "s2", 9, 1)], Duration::from_secs(1));
        h.forget("ns", "/b", Some(99));
        assert!(h.get("ns", "/b").is_some(), "another grant's token forgets nothing");
        h.released_all("ns", &LockFilter { session_id: Some("s2".into()), agent_id: None });
        assert_eq!(h.snapshot()[0].1.len(), 1);
    }
}
