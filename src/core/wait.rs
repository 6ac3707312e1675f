//! Waiting for a lock: FIFO queues of waiters per path, and the wait loop every store shares.
//!
//! A waiter that is refused joins the queue of each path it asks for, under one ticket (so a
//! waiter for several paths is ahead or behind another on all of them). A free path goes to the
//! first live waiter of another session in its queue; even an acquire that does not wait is
//! refused while someone queues for the path, except by the session that waiter is itself waiting
//! for: a waiter for [b, a] blocked by the holder of `a` does not keep that holder from `b`, which
//! would have each wait for the other. Queue entries carry a lease the waiter refreshes every
//! `REFRESH_MS`: a waiter that dies leaves the queue when its lease runs out, so it blocks nobody
//! for longer than `WAITER_LEASE_MS`.
//!
//! The loop sleeps until a release wakes it (see `wake.rs`), the holder's expiry, the lease
//! refresh, or the deadline, whichever is first; a lost wake-up therefore costs at most
//! `REFRESH_MS`, never the wait.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::Notify;

use super::error::{Error, Result};
use super::lock::{LockRecord, LockRequest};
use super::store::Store;
use super::time::now_ms;

/// A waiter whose lease ran out is presumed dead and leaves the queue.
pub const WAITER_LEASE_MS: i64 = 3_000;
/// How often a waiter refreshes its lease, and so the longest it sleeps without looking again.
pub const REFRESH_MS: i64 = 1_000;
/// The longest wait anyone may ask for (a day): longer is surely a unit mistake.
pub const MAX_WAIT_MS: u64 = 24 * 3600 * 1000;

/// One waiting acquire: its id in the queues and, once queued, its ticket there.
#[derive(Debug, Clone)]
pub struct Waiter {
    pub id: String,
    pub ticket: u64,
    /// Which store issued `ticket` ("sled" or "redis"): a hybrid that switches stores mid-wait
    /// asks the other store for a ticket of its own.
    pub ticket_from: &'static str,
}

impl Waiter {
    pub fn new() -> Waiter {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        // unique across processes and machines sharing a Redis: pid, start time, counter
        // plus random bits: two containers may both run their agent as pid 1
        let random = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), NEXT.load(Ordering::Relaxed));
        let id = format!("{}.{}.{}.{:x}", std::process::id(), now_ms(), NEXT.fetch_add(1, Ordering::Relaxed), random);
        Waiter { id, ticket: 0, ticket_from: "" }
    }
}

impl Default for Waiter {
    fn default() -> Self {
        Waiter::new()
    }
}

/// The outcome of one try.
#[derive(Debug)]
pub enum Attempt {
    Granted(Vec<LockRecord>),
    /// Refused; the waiter is queued under `ticket`. Nothing can change for `retry_in_ms` (by the
    /// store's clock: the holder's expiry, a waiter's lease) except through a release, which wakes
    /// the waiter.
    Blocked { error: Error, retry_in_ms: i64, ticket: u64 },
}

/// A queued waiter, as the sled store keeps it in memory.
#[derive(Debug, Clone)]
pub struct Queued {
    pub waiter: String,
    pub session_id: String,
    pub agent_id: String,
    pub lease_until: i64,
    /// The session this waiter was refused for at its last try: that session is not made to wait for it.
    pub waits_for: String,
}

/// In-memory FIFO queues per storage key (the sled store; Redis keeps the same in sorted sets).
#[derive(Debug, Default)]
pub struct Queues {
    /// In ticket order; the waiter id breaks ties (a hybrid waiter may bring a ticket from Redis).
    by_key: HashMap<String, BTreeMap<(u64, String), Queued>>,
    next_ticket: u64,
}

impl Queues {
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The first live waiter of another session ahead of `me` (everyone, when `me` is not queued)
    /// on `key`, as a holder record for the refusal, and its lease expiry. Dead waiters are dropped.
    pub fn ahead(&mut self, key: &str, path: &str, session_id: &str, me: Option<&Waiter>, now: i64) -> Option<(Value, i64)> {
        let q = self.by_key.get_mut(key)?;
        q.retain(|_, w| w.lease_until > now);
        let mine = me.map(|w| w.ticket).filter(|t| *t > 0);
        let found = q
            .iter()
            .take_while(|((t, _), _)| mine.is_none_or(|m| *t < m))
            .find(|(_, w)| w.session_id != session_id && w.waits_for != session_id)
            .map(|(_, w)| (queued_holder(path, &w.session_id, &w.agent_id), w.lease_until));
        if q.is_empty() {
            self.by_key.remove(key);
        }
        found
    }

    /// Puts `w` in the queues of `keys` (assigning its ticket on first use) or refreshes its lease
    /// and whom it waits for.
    pub fn enqueue(&mut self, keys: &[String], w: &Waiter, req: &LockRequest, waits_for: &str, now: i64) -> u64 {
        let ticket = if w.ticket > 0 {
            w.ticket
        } else {
            // Tickets follow the clock (microseconds), so a server that takes a folder over after
            // a crash hands out tickets behind those of the waiters it inherits (see stores::shared).
            self.next_ticket = (self.next_ticket + 1).max(now.max(0) as u64 * 1000);
            self.next_ticket
        };
        // later waiters line up behind this one, wherever its ticket came from
        self.next_ticket = self.next_ticket.max(ticket);
        for k in keys {
            self.by_key.entry(k.clone()).or_default().insert(
                (ticket, w.id.clone()),
                Queued {
                    waiter: w.id.clone(),
                    session_id: req.session_id.clone(),
                    agent_id: req.agent_id.clone(),
                    lease_until: now + WAITER_LEASE_MS,
                    waits_for: waits_for.to_owned(),
                },
            );
        }
        ticket
    }

    /// Takes `w` out of the queues of `keys`; returns the keys someone still waits on.
    pub fn leave(&mut self, keys: &[String], w: &Waiter) -> Vec<String> {
        let mut still = Vec::new();
        for k in keys {
            if let Some(q) = self.by_key.get_mut(k) {
                q.retain(|_, e| e.waiter != w.id);
                if q.is_empty() {
                    self.by_key.remove(k);
                } else {
                    still.push(k.clone());
                }
            }
        }
        still
    }

    /// How many waiters queue on `key`.
    #[cfg(test)]
    fn len(&self, key: &str) -> usize {
        self.by_key.get(key).map_or(0, BTreeMap::len)
    }
}

/// The holder a refusal names when the path is free but promised to a waiter ahead.
pub fn queued_holder(path: &str, session_id: &str, agent_id: &str) -> Value {
    json!({ "sessionId": session_id, "agentId": agent_id, "path": path, "queued": true })
}

/// The refusal for a path that is free but promised to the first waiter in its queue.
pub fn queued_error(path: &str, holder: Value) -> Error {
    let get = |k: &str| holder.get(k).and_then(Value::as_str).unwrap_or("unknown").to_owned();
    let message = format!(
        "File {path} is locked by another agent: agent {} (session {}) is waiting for it and comes first. Work on another file, or retry later.",
        get("agentId"),
        get("sessionId")
    );
    Error::Locked { message, holder }
}

/// A refusal after waiting: the same error, saying how long it waited.
fn waited(e: Error, waited: Duration) -> Error {
    let note = format!(" (waited {} ms for it)", waited.as_millis());
    match e {
        Error::Locked { mut message, holder } => {
            match message.strip_suffix(". Work on another file, or retry later.") {
                Some(head) => message = format!("{head}{note}. Work on another file, or retry later."),
                None => message.push_str(&note),
            }
            Error::Locked { message, holder }
        }
        other => other,
    }
}

/// Acquires `paths` for `req`, waiting up to `wait` for holders and earlier waiters. `cancel`
/// (notified once) aborts with EABORTED. Whatever ends the wait, the waiter leaves the queues.
pub async fn acquire_waiting<S: Store>(store: &S, ns: &str, paths: &[String], req: &LockRequest, wait: Duration, cancel: &Notify) -> Result<Vec<LockRecord>> {
    let started = Instant::now();
    let deadline = started + wait;
    let wake = Arc::new(Notify::new());
    // listening before the first try: a release between the try and the sleep still wakes us
    let _listening = store.listen(ns, paths, &wake);
    let mut me = Waiter::new();
    let leave = |me: Waiter| async move {
        if me.ticket > 0 {
            // best effort: if the store is unreachable, the lease drops the entry
            let _ = store.leave_queue(ns, paths, &me).await;
        }
    };
    loop {
        let (error, retry_in_ms) = match store.try_acquire_queued(ns, paths, req, &me).await {
            Ok(Attempt::Granted(recs)) => return Ok(recs),
            Ok(Attempt::Blocked { error, retry_in_ms, ticket }) => {
                me.ticket = ticket;
                me.ticket_from = store.backend();
                (error, retry_in_ms)
            }
            Err(e) => {
                leave(me).await;
                return Err(e);
            }
        };
        let now = Instant::now();
        if now >= deadline {
            leave(me).await;
            return Err(waited(error, started.elapsed()));
        }
        let until_retry = Duration::from_millis(retry_in_ms.clamp(1, REFRESH_MS) as u64);
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(until_retry.min(deadline - now)) => {}
            _ = cancel.notified() => {
                leave(me).await;
                return Err(Error::Aborted(format!(
                    "the wait for {} was aborted after {} ms; no lock was taken",
                    paths.join(", "),
                    started.elapsed().as_millis()
                )));
            }
        }
    }
}

/// Checks a wait given in milliseconds (a JS number): whole, from 0 to a day.
pub fn check_wait(ms: f64) -> Result<Duration> {
    if !(ms.is_finite() && ms >= 0.0 && ms.fract() == 0.0 && ms <= MAX_WAIT_MS as f64) {
        return Err(Error::invalid(format!("waitMs must be a whole number of milliseconds from 0 to {MAX_WAIT_MS} (a day), got {ms}")));
    }
    Ok(Duration::from_millis(ms as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> LockRequest {
        LockRequest::new(s, "agent", Some(1000)).unwrap()
    }

    #[test]
    fn waiters_are_served_in_ticket_order_and_dead_ones_are_dropped() {
        let mut q = Queues::default();
        let keys = vec!["k".to_owned()];
        let mut a = Waiter::new();
        let mut b = Waiter::new();
        a.ticket = q.enqueue(&keys, &a, &req("sa"), "holder", 0);
        b.ticket = q.enqueue(&keys, &b, &req("sb"), "holder", 0);
        assert!(q.ahead("k", "/p", "sa", Some(&a), 1).is_none(), "a is first");
        assert_eq!(q.ahead("k", "/p", "sb", Some(&b), 1).unwrap().0["sessionId"], "sa", "b is behind a");
        assert_eq!(q.ahead("k", "/p", "sc", None, 1).unwrap().0["sessionId"], "sa", "a newcomer is behind everyone");
        // b refreshes its lease, a does not: once a's runs out, b is first
        q.enqueue(&keys, &b, &req("sb"), "holder", 10);
        assert!(q.ahead("k", "/p", "sb", Some(&b), WAITER_LEASE_MS + 1).is_none());
        assert_eq!(q.len("k"), 1);
        assert!(q.leave(&keys, &b).is_empty());
        assert!(q.is_empty());
    }

    #[test]
    fn a_waiters_own_session_does_not_block_it() {
        let mut q = Queues::default();
        let keys = vec!["k".to_owned()];
        let a = Waiter::new();
        q.enqueue(&keys, &a, &req("s"), "holder", 0);
        assert!(q.ahead("k", "/p", "s", None, 1).is_none());
    }

    #[test]
    fn a_waiter_does_not_hold_up_the_session_it_waits_for() {
        let mut q = Queues::default();
        let keys = vec!["b".to_owned(), "a".to_owned()];
        let t = Waiter::new();
        q.enqueue(&keys, &t, &req("t"), "s", 0); // t waits for [b, a]; s holds a
        assert!(q.ahead("b", "/b", "s", None, 1).is_none(), "s may take b: t is waiting for s");
        assert_eq!(q.ahead("b", "/b", "u", None, 1).unwrap().0["sessionId"], "t", "anyone else queues behind t");
    }

    #[test]
    fn the_refusal_says_how_long_it_waited() {
        let e = waited(queued_error("/p", queued_holder("/p", "s1", "a1")), Duration::from_millis(1500));
        assert_eq!(e.code(), "ELOCKED");
        assert!(e.to_string().contains("(waited 1500 ms for it)"), "{e}");
    }
}
