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

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::error::{Error, Result};
use super::lock::{LockRecord, LockRequest};
use super::path::overlaps;
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
    pub ns: String,
    pub session_id: String,
    pub agent_id: String,
    /// The paths it asks for, and their storage keys (the queues it is in).
    pub paths: Vec<String>,
    keys: Vec<String>,
    pub ticket: u64,
    /// When it first queued, on the store's clock.
    pub since: i64,
    pub lease_until: i64,
    /// The session this waiter was refused for at its last try: that session is not made to wait for it.
    pub waits_for: String,
    /// The path that session holds (or is first in line for) that held this waiter up.
    pub blocked_on: String,
}

/// Whom a refused waiter waits for, as `Queues::enqueue` records it.
pub struct WaitFor<'a> {
    pub ns: &'a str,
    pub paths: &'a [String],
    pub session: &'a str,
    pub path: &'a str,
}

/// In-memory FIFO queues per storage key (the sled store; Redis keeps the same in sorted sets).
#[derive(Debug, Default)]
pub struct Queues {
    /// Each key's waiters in ticket order; the waiter id breaks ties (a hybrid waiter may bring
    /// a ticket from Redis).
    by_key: HashMap<String, BTreeSet<(u64, String)>>,
    waiters: HashMap<String, Queued>,
    next_ticket: u64,
}

impl Queues {
    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    /// Drops a waiter from every queue it is in.
    fn drop_waiter(&mut self, id: &str) -> Option<Queued> {
        let w = self.waiters.remove(id)?;
        for k in &w.keys {
            if let Some(q) = self.by_key.get_mut(k) {
                q.remove(&(w.ticket, w.waiter.clone()));
                if q.is_empty() {
                    self.by_key.remove(k);
                }
            }
        }
        Some(w)
    }

    /// Drops the waiters whose lease ran out: they are presumed dead.
    fn drop_dead(&mut self, now: i64) {
        let dead: Vec<String> = self.waiters.values().filter(|w| w.lease_until <= now).map(|w| w.waiter.clone()).collect();
        for id in dead {
            self.drop_waiter(&id);
        }
    }

    /// The first live waiter of another session ahead of `me` (everyone, when `me` is not queued)
    /// on `key`, as a holder record for the refusal, and its lease expiry. Dead waiters are dropped.
    /// A waiter for which `waits_for_me` is true (it waits for something the requester holds now)
    /// does not hold the requester up: it could never be served before the requester lets go.
    /// Once the requester has let go of everything a waiter asks for, the waiter comes first,
    /// whoever asks: a holder that releases and asks again queues behind it (first come, first
    /// served, as on Redis).
    pub fn ahead(&mut self, key: &str, path: &str, session_id: &str, me: Option<&Waiter>, now: i64, waits_for_me: &mut dyn FnMut(&Queued) -> bool) -> Option<(Value, i64)> {
        if !self.by_key.contains_key(key) {
            return None;
        }
        self.drop_dead(now);
        let mine = me.map(|w| w.ticket).filter(|t| *t > 0);
        self.by_key
            .get(key)?
            .iter()
            .take_while(|(t, _)| mine.is_none_or(|m| *t < m))
            .filter_map(|(_, id)| self.waiters.get(id))
            .find(|w| w.session_id != session_id && !waits_for_me(w))
            .map(|w| (queued_holder(path, &w.session_id, &w.agent_id), w.lease_until))
    }

    /// Like `ahead`, for waiters that ask for a path overlapping `path` without being it: a claim
    /// on a folder above it, or (when `path` is a claim) a path below it.
    pub fn ahead_overlapping(&mut self, ns: &str, path: &str, session_id: &str, me: Option<&Waiter>, now: i64, waits_for_me: &mut dyn FnMut(&Queued) -> bool) -> Option<(Value, i64)> {
        self.drop_dead(now);
        let mine = me.map(|w| w.ticket).filter(|t| *t > 0);
        self.waiters
            .values()
            .filter(|w| w.ns == ns && w.session_id != session_id && mine.is_none_or(|m| w.ticket < m))
            .filter_map(|w| w.paths.iter().find(|p| *p != path && overlaps(p, path)).map(|p| (w, p)))
            .filter(|(w, _)| !waits_for_me(w))
            .min_by_key(|(w, _)| (w.ticket, w.waiter.clone()))
            .map(|(w, p)| (queued_holder(p, &w.session_id, &w.agent_id), w.lease_until))
    }

    /// Puts `w` in the queues of `keys` (assigning its ticket on first use) or refreshes its lease
    /// and whom it waits for.
    pub fn enqueue(&mut self, keys: &[String], w: &Waiter, req: &LockRequest, wf: WaitFor<'_>, now: i64) -> u64 {
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
        let since = match self.waiters.get(&w.id) {
            Some(old) if old.ticket == ticket => old.since,
            _ => self.drop_waiter(&w.id).map_or(now, |old| old.since),
        };
        for k in keys {
            self.by_key.entry(k.clone()).or_default().insert((ticket, w.id.clone()));
        }
        self.waiters.insert(
            w.id.clone(),
            Queued {
                waiter: w.id.clone(),
                ns: wf.ns.to_owned(),
                session_id: req.session_id.clone(),
                agent_id: req.agent_id.clone(),
                paths: wf.paths.to_vec(),
                keys: keys.to_vec(),
                ticket,
                since,
                lease_until: now + WAITER_LEASE_MS,
                waits_for: wf.session.to_owned(),
                blocked_on: wf.path.to_owned(),
            },
        );
        ticket
    }

    /// Takes `w` out of the queues it is in; returns the keys someone still waits on.
    pub fn leave(&mut self, w: &Waiter) -> Vec<String> {
        let Some(gone) = self.drop_waiter(&w.id) else { return Vec::new() };
        gone.keys.into_iter().filter(|k| self.by_key.contains_key(k)).collect()
    }

    /// The live waiters of namespace `ns`, first come first.
    pub fn waiting_in(&mut self, ns: &str, now: i64) -> Vec<Queued> {
        self.drop_dead(now);
        let mut out: Vec<Queued> = self.waiters.values().filter(|w| w.ns == ns).cloned().collect();
        out.sort_by_key(|w| (w.ticket, w.waiter.clone()));
        out
    }

    /// How many waiters queue on `key`.
    #[cfg(test)]
    fn len(&self, key: &str) -> usize {
        self.by_key.get(key).map_or(0, BTreeSet::len)
    }
}

/// One wait in a cycle: `session_id` waits for `path`, which `held_by` holds (or is first in
/// line for).
#[derive(Debug, Clone, PartialEq)]
pub struct CycleStep {
    pub session_id: String,
    pub agent_id: String,
    pub path: String,
    pub held_by: String,
}

/// The waits of a namespace as they stand now, for deadlock detection: each live waiter waits for
/// the sessions holding what it asks for (`holders_of(path)`: the sessions with a live lock on
/// the path or overlapping it) and for the waiters of other sessions ahead of it in a queue it is
/// in, except those that wait for it (they cannot be served before it). Built from the locks and
/// queues at this moment, never from whom a waiter was refused for at its last try: that goes
/// stale as soon as its holder lets go, and stale waits make cycles that do not exist (a single
/// path's queue has none: every wait points to an earlier ticket or to the holder).
pub fn waits_now(waiters: &[Queued], holders_of: &mut dyn FnMut(&str) -> Vec<String>) -> Vec<CycleStep> {
    let mut held: HashMap<&str, Vec<String>> = HashMap::new();
    for w in waiters {
        for p in &w.paths {
            if !held.contains_key(p.as_str()) {
                held.insert(p, holders_of(p));
            }
        }
    }
    let holds = |session: &str, paths: &[String]| paths.iter().any(|p| held.get(p.as_str()).is_some_and(|h| h.iter().any(|s| s == session)));
    let mut steps = Vec::new();
    for v in waiters {
        for p in &v.paths {
            for h in held.get(p.as_str()).into_iter().flatten().filter(|h| **h != v.session_id) {
                steps.push(CycleStep { session_id: v.session_id.clone(), agent_id: v.agent_id.clone(), path: p.clone(), held_by: h.clone() });
            }
        }
        for u in waiters.iter().filter(|u| u.ns == v.ns && u.session_id != v.session_id && u.ticket < v.ticket) {
            // u does not hold v up when it waits for something v's session holds
            if holds(&v.session_id, &u.paths) {
                continue;
            }
            if let Some(p) = v.paths.iter().find(|p| u.paths.iter().any(|q| overlaps(p, q))) {
                steps.push(CycleStep { session_id: v.session_id.clone(), agent_id: v.agent_id.clone(), path: p.clone(), held_by: u.session_id.clone() });
            }
        }
    }
    steps
}

/// Whether waiting for `blocker` would close a cycle back to `me`: the waits from `blocker` on,
/// each to the session holding it up, ending with a wait for `me`. `waits` are the other waits
/// (session, agent, path, held by); `still_holds` says whether a wait is still current (its
/// holder still holds the path), so a wait its holder has let go of since does not count.
pub fn find_cycle(me: &str, blocker: &str, waits: &[CycleStep], still_holds: impl Fn(&CycleStep) -> bool) -> Option<Vec<CycleStep>> {
    // breadth first over sessions; `via` remembers the wait that reached each
    let mut via: HashMap<&str, Option<usize>> = HashMap::from([(blocker, None)]);
    let mut frontier = vec![blocker];
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for s in frontier {
            for (i, w) in waits.iter().enumerate().filter(|(_, w)| w.session_id == s) {
                if (w.held_by != me && via.contains_key(w.held_by.as_str())) || !still_holds(w) {
                    continue;
                }
                if w.held_by == me {
                    let mut chain = vec![w.clone()];
                    let mut at = via[s];
                    while let Some(j) = at {
                        chain.push(waits[j].clone());
                        at = via[waits[j].session_id.as_str()];
                    }
                    chain.reverse();
                    return Some(chain);
                }
                via.insert(&w.held_by, Some(i));
                next.push(w.held_by.as_str());
            }
        }
        frontier = next;
    }
    None
}

/// The refusal of a wait that would close `cycle` (the waits after the caller's own, which is
/// `first`). `released`: the caller's locks let go of so that the wait before its own can go on.
pub fn deadlock_error(first: &CycleStep, holder: Value, cycle: &[CycleStep], released: &[String]) -> Error {
    let who = |s: &CycleStep| format!("session {} (agent {})", s.session_id, s.agent_id);
    let mut message = format!("Deadlock: {} would wait for {}, held by session {}", who(first), first.path, first.held_by);
    for w in cycle {
        message.push_str(&format!(", which waits for {}, held by session {}", w.path, w.held_by));
    }
    message.push_str(". Refused at once instead of letting every session of the cycle wait");
    if let Some(before) = cycle.last() {
        if !released.is_empty() {
            message.push_str(&format!(
                "; session {}'s lock on {} was let go so that {} can go on",
                first.session_id,
                released.join(", "),
                who(before)
            ));
        }
    }
    message.push_str(". Retry once the other sessions are done.");
    let step = |s: &CycleStep| json!({ "sessionId": s.session_id, "agentId": s.agent_id, "waitsFor": s.path, "heldBy": s.held_by });
    let mut holder = if holder.is_object() { holder } else { json!({}) };
    holder["cycle"] = std::iter::once(first).chain(cycle).map(step).collect();
    holder["released"] = json!(released);
    Error::Deadlock { message, holder }
}

/// The holder a refusal names when the path is free but promised to a waiter ahead.
pub fn queued_holder(path: &str, session_id: &str, agent_id: &str) -> Value {
    json!({ "sessionId": session_id, "agentId": agent_id, "path": path, "queued": true })
}

/// The refusal for a path that is free but promised to the first waiter in its queue (or to a
/// waiter for a path overlapping it: a claim above it, a file below the claim asked for).
pub fn queued_error(path: &str, holder: Value) -> Error {
    let get = |k: &str| holder.get(k).and_then(Value::as_str).unwrap_or("unknown").to_owned();
    let what = if crate::core::path::is_claim(path) { "Folder" } else { "File" };
    let wants = holder.get("path").and_then(Value::as_str).filter(|p| *p != path).map_or("it".to_owned(), |p| p.to_owned());
    let message = format!(
        "{what} {path} is locked by another agent: agent {} (session {}) is waiting for {wants} and comes first. Work on another file, or retry later.",
        get("agentId"),
        get("sessionId")
    );
    Error::Locked { message, holder }
}

/// A waiting acquire as a store lists it: who, for what, held up by whom, since when (the
/// store's clock).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitEntry {
    pub session_id: String,
    pub agent_id: String,
    pub paths: Vec<String>,
    /// The session holding it up, and the path that session holds (or is first in line for).
    pub blocked_by: String,
    pub blocked_on: String,
    pub since: i64,
}

/// The waiters of a namespace, and the store's clock when they were read.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Waiting {
    pub now: i64,
    pub waiters: Vec<WaitEntry>,
}

impl From<&Queued> for WaitEntry {
    fn from(q: &Queued) -> Self {
        WaitEntry { session_id: q.session_id.clone(), agent_id: q.agent_id.clone(), paths: q.paths.clone(), blocked_by: q.waits_for.clone(), blocked_on: q.blocked_on.clone(), since: q.since }
    }
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
    let mut also: HashMap<String, Vec<crate::core::wake::Listening>> = HashMap::new();
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
        // held up by a lock on another path (a claim above, a file below a claim): hear of its
        // release too, and look once more at once, in case it came before the listening
        if let Some(p) = error.holder().and_then(|h| h["path"].as_str()).filter(|p| !paths.iter().any(|q| q == p) && !also.contains_key(*p)) {
            also.insert(p.to_owned(), store.listen(ns, &[p.to_owned()], &wake));
            continue;
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

    fn wf<'a>(paths: &'a [&'a str], session: &'a str) -> WaitFor<'a> {
        let paths: &'static [String] = Box::leak(paths.iter().map(|p| p.to_string()).collect::<Vec<_>>().into_boxed_slice());
        WaitFor { ns: "n", paths, session, path: "/p" }
    }

    fn step(s: &str, path: &str, held_by: &str) -> CycleStep {
        CycleStep { session_id: s.into(), agent_id: format!("agent-{s}"), path: path.into(), held_by: held_by.into() }
    }

    #[test]
    fn claim_waiters_come_first_for_the_files_below_and_the_other_way_round() {
        let mut no = |_: &Queued| false;
        let mut q = Queues::default();
        let mut c = Waiter::new();
        c.ticket = q.enqueue(&["n/src/".to_owned()], &c, &req("sc"), wf(&["/src/"], "holder"), 0);
        assert_eq!(q.ahead_overlapping("n", "/src/a.ts", "sf", None, 1, &mut no).unwrap().0["sessionId"], "sc", "a file below a claim someone waits for");
        assert!(q.ahead_overlapping("n", "/lib/a.ts", "sf", None, 1, &mut no).is_none());
        assert!(q.ahead_overlapping("other", "/src/a.ts", "sf", None, 1, &mut no).is_none(), "another namespace");
        let mut f = Waiter::new();
        f.ticket = q.enqueue(&["n/lib/a.ts".to_owned()], &f, &req("sf"), wf(&["/lib/a.ts"], "holder"), 0);
        assert_eq!(q.ahead_overlapping("n", "/lib/", "sx", None, 1, &mut no).unwrap().0["path"], "/lib/a.ts", "a claim above a file someone waits for");
        assert!(q.ahead_overlapping("n", "/lib/", "sf", Some(&f), 1, &mut no).is_none(), "its own wait");
        assert_eq!(q.waiting_in("n", 1).iter().map(|w| w.session_id.as_str()).collect::<Vec<_>>(), ["sc", "sf"]);
        q.leave(&c);
        assert_eq!(q.waiting_in("n", 1).len(), 1);
    }

    #[test]
    fn cycles_of_two_and_three_sessions_are_found_and_stale_waits_do_not_count() {
        // b waits for x, which a (the caller) holds: a waiting for b closes the cycle
        let waits = vec![step("b", "/x", "a")];
        assert_eq!(find_cycle("a", "b", &waits, |_| true).unwrap(), waits);
        assert!(find_cycle("a", "b", &waits, |_| false).is_none(), "a wait whose holder let go");
        let three = vec![step("c", "/z", "a"), step("b", "/y", "c"), step("d", "/q", "b")];
        let found = find_cycle("a", "b", &three, |_| true).unwrap();
        assert_eq!(found.iter().map(|w| w.session_id.as_str()).collect::<Vec<_>>(), ["b", "c"]);
        assert!(find_cycle("a", "d", &[step("d", "/q", "e"), step("e", "/r", "d")], |_| true).is_none(), "a cycle not through the caller");
        let e = deadlock_error(&step("a", "/y", "b"), json!({"sessionId": "b"}), &found, &["/x".to_owned()]);
        assert_eq!(e.code(), "EDEADLK");
        assert_eq!(e.holder().unwrap()["cycle"].as_array().unwrap().len(), 3);
        assert!(e.to_string().starts_with("Deadlock: session a (agent agent-a) would wait for /y, held by session b, which waits for /y, held by session c"), "{e}");
    }

    #[test]
    fn waiters_are_served_in_ticket_order_and_dead_ones_are_dropped() {
        let mut no = |_: &Queued| false;
        let mut q = Queues::default();
        let keys = vec!["k".to_owned()];
        let mut a = Waiter::new();
        let mut b = Waiter::new();
        a.ticket = q.enqueue(&keys, &a, &req("sa"), wf(&["/p"], "holder"), 0);
        b.ticket = q.enqueue(&keys, &b, &req("sb"), wf(&["/p"], "holder"), 0);
        assert!(q.ahead("k", "/p", "sa", Some(&a), 1, &mut no).is_none(), "a is first");
        assert_eq!(q.ahead("k", "/p", "sb", Some(&b), 1, &mut no).unwrap().0["sessionId"], "sa", "b is behind a");
        assert_eq!(q.ahead("k", "/p", "sc", None, 1, &mut no).unwrap().0["sessionId"], "sa", "a newcomer is behind everyone");
        // b refreshes its lease, a does not: once a's runs out, b is first
        q.enqueue(&keys, &b, &req("sb"), wf(&["/p"], "holder"), 10);
        assert!(q.ahead("k", "/p", "sb", Some(&b), WAITER_LEASE_MS + 1, &mut no).is_none());
        assert_eq!(q.len("k"), 1);
        assert!(q.leave(&b).is_empty());
        assert!(q.is_empty());
    }

    #[test]
    fn a_waiters_own_session_does_not_block_it() {
        let mut q = Queues::default();
        let keys = vec!["k".to_owned()];
        let a = Waiter::new();
        q.enqueue(&keys, &a, &req("s"), wf(&["/p"], "holder"), 0);
        assert!(q.ahead("k", "/p", "s", None, 1, &mut |_| false).is_none());
    }

    #[test]
    fn a_waiter_does_not_hold_up_the_session_it_waits_for_but_one_that_let_go_queues_behind_it() {
        let mut q = Queues::default();
        let keys = vec!["b".to_owned(), "a".to_owned()];
        let t = Waiter::new();
        q.enqueue(&keys, &t, &req("t"), wf(&["/b", "/a"], "s"), 0); // t waits for [b, a]; s holds a
        let mut s_holds_a = |w: &Queued| w.paths.iter().any(|p| p == "/a");
        assert!(q.ahead("b", "/b", "s", None, 1, &mut s_holds_a).is_none(), "s may take b: t is waiting for s");
        assert_eq!(q.ahead("b", "/b", "u", None, 1, &mut |_| false).unwrap().0["sessionId"], "t", "anyone else queues behind t");
        // s let go of a: t no longer waits for s, and s asking for b (or a) again queues behind t
        assert_eq!(q.ahead("b", "/b", "s", None, 1, &mut |_| false).unwrap().0["sessionId"], "t");
    }

    fn queued(q: &mut Queues, s: &str, paths: &[&str], at: i64) -> Waiter {
        let keys: Vec<String> = paths.iter().map(|p| format!("n{p}")).collect();
        let mut w = Waiter::new();
        w.ticket = q.enqueue(&keys, &w, &req(s), wf(paths, "x"), at);
        w
    }

    #[test]
    fn one_paths_queue_never_makes_a_cycle_and_a_real_one_is_found() {
        let mut q = Queues::default();
        // h holds /p; w1..w20 queue for it, whatever whom each was refused for at its last try
        for i in 0..20 {
            queued(&mut q, &format!("w{i}"), &["/p"], i);
        }
        let waiters = q.waiting_in("n", 30);
        let steps = waits_now(&waiters, &mut |p| if p == "/p" { vec!["h".to_owned()] } else { vec![] });
        for i in 0..20 {
            // what a refusal of w{i} can name: the holder, or a waiter ahead of it
            let me = format!("w{i}");
            for other in (0..i).map(|j| format!("w{j}")).chain(["h".to_owned()]) {
                assert!(find_cycle(&me, &other, &steps, |_| true).is_none(), "{me} waiting for {other}");
            }
        }
        // and a newcomer (no ticket yet), refused by anyone of them
        for other in (0..20).map(|j| format!("w{j}")).chain(["h".to_owned()]) {
            assert!(find_cycle("new", &other, &steps, |_| true).is_none());
        }
        // a real one: a holds /x and waits for /y, which b holds; b asking for /x closes it
        let mut q = Queues::default();
        queued(&mut q, "a", &["/y"], 0);
        let waiters = q.waiting_in("n", 1);
        let steps = waits_now(&waiters, &mut |p| match p { "/y" => vec!["b".to_owned()], "/x" => vec!["a".to_owned()], _ => vec![] });
        assert_eq!(find_cycle("b", "a", &steps, |_| true).unwrap().len(), 1);
    }

    #[test]
    fn the_refusal_says_how_long_it_waited() {
        let e = waited(queued_error("/p", queued_holder("/p", "s1", "a1")), Duration::from_millis(1500));
        assert_eq!(e.code(), "ELOCKED");
        assert!(e.to_string().contains("(waited 1500 ms for it)"), "{e}");
    }
}
