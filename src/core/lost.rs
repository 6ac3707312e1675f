//! Telling a holder that its lock is gone: the TTL ran out during a pause, an operator forced it
//! free, or (hybrid) another holder won at recovery. While a listener is set, every lock this
//! process acquires through the cache is watched by a small task that sleeps until the lock's
//! expiry or a release announcement for its key, then looks at the store. Nothing is watched
//! while no listener is set, so the fast path pays nothing for it.
//!
//! Expiry is the store's business: the watch counts the TTL it was granted on this process's
//! monotonic clock (an expiry can only be later than that), and whether the lock is still there
//! is what the store says. No wall-clock time of this process is compared with a record's.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::Notify;

use super::lock::{parse_record, LockFilter, LockRecord};
use super::store::Store;
use super::wake::Listening;

/// Receives each lost-lock event: {reason, path, sessionId, lost, holder}.
pub type LostListener = Arc<dyn Fn(Value) + Send + Sync>;
/// Runs a watch task (the binding hands in its runtime's spawn).
pub type Spawn = Arc<dyn Fn(Pin<Box<dyn Future<Output = ()> + Send>>) + Send + Sync>;

/// How long after a lock's expiry its watch looks: the store expires it at that instant.
const GRACE: Duration = Duration::from_millis(25);
/// How soon a watch looks again when the store did not answer.
const RETRY: Duration = Duration::from_millis(1_000);
/// The longest a watch sleeps without looking: an announcement it missed (a Redis subscriber
/// reconnecting, a user without channel rights) is noticed this late at worst.
const LOOK_EVERY: Duration = Duration::from_millis(5_000);

/// The earliest a watched lock can expire, on this process's monotonic clock: milliseconds since
/// `EPOCH`, raised by re-entries and renewals (which never shorten a lock).
struct Deadline(AtomicU64);

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

impl Deadline {
    fn after(ttl: Duration) -> Arc<Deadline> {
        let d = Arc::new(Deadline(AtomicU64::new(0)));
        d.extend(ttl);
        d
    }

    fn extend(&self, ttl: Duration) {
        let at = (Instant::now() + ttl).saturating_duration_since(*EPOCH).as_millis() as u64;
        self.0.fetch_max(at, Ordering::AcqRel);
    }

    fn instant(&self) -> Instant {
        *EPOCH + Duration::from_millis(self.0.load(Ordering::Acquire))
    }
}

type Key = (String, String, String); // namespace, path, session

fn key(ns: &str, path: &str, session_id: &str) -> Key {
    (ns.to_owned(), path.to_owned(), session_id.to_owned())
}

struct Tracked {
    holds: u32,
    token: u64,
    agent_id: String,
    deadline: Arc<Deadline>,
    stop: Arc<Notify>,
    /// What release announcements for the key notify; notified by hand, it makes the watch look now.
    wake: Arc<Notify>,
}

pub struct LostWatch {
    listener: RwLock<Option<LostListener>>,
    enabled: AtomicBool,
    held: Mutex<HashMap<Key, Tracked>>,
    spawn: Spawn,
}

impl LostWatch {
    pub fn new(spawn: Spawn) -> Arc<LostWatch> {
        Arc::new(LostWatch { listener: RwLock::new(None), enabled: AtomicBool::new(false), held: Mutex::new(HashMap::new()), spawn })
    }

    pub fn set_listener(&self, listener: LostListener) {
        *self.listener.write().unwrap_or_else(|p| p.into_inner()) = Some(listener);
        self.enabled.store(true, Ordering::Release);
    }

    /// Ends every watch and turns watching off (the cache closed, or nobody listens any more).
    pub fn stop(&self) {
        self.enabled.store(false, Ordering::Release);
        *self.listener.write().unwrap_or_else(|p| p.into_inner()) = None;
        for (_, t) in self.held().drain() {
            t.stop.notify_one();
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Tracked>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands an event to the listener (and stops watching that lock).
    pub fn report(&self, event: Value) {
        super::metrics::lost(event["reason"].as_str().unwrap_or("unknown"));
        super::debug::log(format_args!("lost: {} of session {} ({})", event["path"], event["sessionId"], event["reason"]));
        if let (Some(ns), Some(path), Some(session)) = (event["namespace"].as_str(), event["path"].as_str(), event["sessionId"].as_str()) {
            if let Some(t) = self.held().remove(&key(ns, path, session)) {
                t.stop.notify_one();
            }
        }
        if let Some(l) = self.listener.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            l(event);
        }
    }

    /// Starts watching locks just granted for `ttl` (or counts one more hold of one already watched).
    pub fn acquired<S: Store>(self: &Arc<Self>, store: &Arc<S>, ns: &str, recs: &[LockRecord], ttl: Duration) {
        if !self.enabled() {
            return;
        }
        for rec in recs {
            let k = key(ns, &rec.path, &rec.session_id);
            let mut held = self.held();
            if let Some(t) = held.get_mut(&k) {
                if t.token == rec.token {
                    t.holds += 1;
                    t.agent_id.clone_from(&rec.agent_id); // a re-entry records its agent, as the store does
                    t.deadline.extend(ttl);
                    continue;
                }
                t.stop.notify_one(); // a new grant of the path: the old watch has nothing to say
            }
            let (stop, wake, deadline) = (Arc::new(Notify::new()), Arc::new(Notify::new()), Deadline::after(ttl));
            held.insert(k, Tracked { holds: 1, token: rec.token, agent_id: rec.agent_id.clone(), deadline: deadline.clone(), stop: stop.clone(), wake: wake.clone() });
            drop(held);
            // listening from now, not from when the task first runs: a release in between counts
            let listening = store.listen(ns, std::slice::from_ref(&rec.path), &wake);
            (self.spawn)(Box::pin(watch(Arc::downgrade(self), store.clone(), ns.to_owned(), rec.clone(), deadline, stop, (wake, listening))));
        }
    }

    /// Before this process releases one hold: the last one ends the watch, so the release's own
    /// announcement is not mistaken for a loss.
    pub fn releasing(&self, ns: &str, path: &str, session_id: &str) {
        if !self.enabled() {
            return;
        }
        let k = key(ns, path, session_id);
        let mut held = self.held();
        if let Some(t) = held.get_mut(&k) {
            t.holds = t.holds.saturating_sub(1);
            if t.holds == 0 {
                t.stop.notify_one();
                held.remove(&k);
            }
        }
    }

    /// Before a bulk release: ends every matching watch.
    pub fn releasing_all(&self, ns: &str, filter: &LockFilter) {
        if !self.enabled() {
            return;
        }
        self.held().retain(|(n, _, s), t| {
            let hit = n == ns && filter.matches_ids(s, &t.agent_id);
            if hit {
                t.stop.notify_one();
            }
            !hit
        });
    }

    /// A renewal pushed the lock's expiry out to at least `ttl` from now.
    pub fn renewed(&self, ns: &str, path: &str, session_id: &str, ttl: Duration) {
        if let Some(t) = self.held().get(&key(ns, path, session_id)) {
            t.deadline.extend(ttl);
        }
    }

    /// Makes the watch of a lock look at the store now (a renew found it gone).
    pub fn check_now(&self, ns: &str, path: &str, session_id: &str) {
        if let Some(t) = self.held().get(&key(ns, path, session_id)) {
            t.wake.notify_one();
        }
    }

    /// Ends the watch of `rec` if it is still the one watched; true when it was.
    fn untrack(&self, ns: &str, rec: &LockRecord) -> bool {
        let k = key(ns, &rec.path, &rec.session_id);
        let mut held = self.held();
        match held.get(&k) {
            Some(t) if t.token == rec.token => {
                held.remove(&k);
                true
            }
            _ => false,
        }
    }

    #[cfg(test)]
    fn watching(&self) -> usize {
        self.held().len()
    }
}

/// One lock's watch: sleeps until its expiry or a release announcement, then looks.
async fn watch<S: Store>(owner: Weak<LostWatch>, store: Arc<S>, ns: String, rec: LockRecord, deadline: Arc<Deadline>, stop: Arc<Notify>, listening: (Arc<Notify>, Vec<Listening>)) {
    let (wake, _listening) = listening;
    let mut retry_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let due = retry_at.take().unwrap_or_else(|| (deadline.instant() + GRACE).max(now + Duration::from_millis(1)));
        tokio::select! {
            _ = stop.notified() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(due.saturating_duration_since(now).min(LOOK_EVERY)) => {}
        }
        // the store says whether the lock is still there: an entry it returns is live by its clock
        let current = match store.get(&ns, &rec.path).await {
            Ok(entry) => entry.and_then(|e| parse_record(&rec.path, &e).ok()),
            Err(e) if e.code() == "ECLOSED" => return,
            Err(_) => {
                retry_at = Some(Instant::now() + RETRY);
                continue;
            }
        };
        match current {
            Some(c) if c.session_id == rec.session_id && c.token == rec.token => {} // still ours (perhaps renewed)
            other => {
                if other.is_some() {
                    store.before_reporting_loss().await;
                }
                let Some(owner) = owner.upgrade() else { return };
                if !owner.untrack(&ns, &rec) {
                    return; // released by this process meanwhile
                }
                // gone before the TTL it was granted for could run out: someone freed it
                let reason = if Instant::now() >= deadline.instant() { "expired" } else { "released" };
                let holder = other.map(|h| serde_json::to_value(h).unwrap_or(Value::Null)).unwrap_or(Value::Null);
                owner.report(json!({
                    "reason": reason,
                    "namespace": ns,
                    "path": rec.path,
                    "sessionId": rec.session_id,
                    "lost": rec,
                    "holder": holder,
                }));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::lock::LockRequest;
    use crate::stores::SledStore;

    fn spawner() -> Spawn {
        Arc::new(|f| {
            tokio::spawn(f);
        })
    }

    #[tokio::test]
    async fn expiry_and_forced_release_are_reported_own_release_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(dir.path().to_str().unwrap()).unwrap());
        let watch = LostWatch::new(spawner());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        watch.set_listener(Arc::new(move |e| {
            let _ = tx.send(e);
        }));
        let short = LockRequest::new("s1", "a1", Some(100)).unwrap();
        let long = LockRequest::new("s1", "a1", Some(60_000)).unwrap();

        let recs = store.acquire("ns", &["/expires".into()], &short).await.unwrap();
        watch.acquired(&store, "ns", &recs, Duration::from_millis(100));
        let e = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await.unwrap().unwrap();
        assert_eq!((e["reason"].as_str(), e["path"].as_str()), (Some("expired"), Some("/expires")));

        let recs = store.acquire("ns", &["/forced".into()], &long).await.unwrap();
        watch.acquired(&store, "ns", &recs, Duration::from_secs(60));
        store.force_release("ns", "/forced").await.unwrap().expect("it was held");
        let e = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await.unwrap().unwrap();
        assert_eq!((e["reason"].as_str(), e["path"].as_str()), (Some("released"), Some("/forced")));

        let recs = store.acquire("ns", &["/mine".into()], &long).await.unwrap();
        watch.acquired(&store, "ns", &recs, Duration::from_secs(60));
        watch.releasing("ns", "/mine", "s1");
        assert!(store.release("ns", "/mine", "s1").await.unwrap());
        assert!(tokio::time::timeout(Duration::from_millis(200), rx.recv()).await.is_err(), "an own release is no loss");
        assert_eq!(watch.watching(), 0);
    }
}
