//! Redis primary, sled fallback.
//!
//! - While Redis answers, every successful write is mirrored into the local sled folder, so the
//!   fallback knows the locks already granted when Redis goes away.
//! - When a call fails with EBACKEND/ETIMEDOUT the hybrid switches to sled (fail open) or refuses
//!   (fail closed). Redis is probed again at most once per `recheck`.
//! - Failover is for a Redis that cannot be reached or does not answer; a Redis that answers with
//!   an error (NOPERM, OOM, BUSY, a WAIT shortfall) gives the caller that error.
//! - Before Redis serves again, every lock held through this hybrid is put back into Redis (the
//!   ones granted before the outage too: Redis may have restarted empty), same record and token;
//!   a lock another process took in Redis meanwhile wins, and ours is reported lost through the
//!   listener. Locks released during the outage are deleted if the same session still holds them
//!   in Redis, plain cache values are written over (last writer wins). No call runs while this
//!   happens, so none slips between the two stores.
//! - The same put-back runs when Redis, while serving, turns out to have lost its data.
//! - Fencing tokens do not go backward across a switch: every record mirrored into sled raises
//!   sled's counter, every record put back raises Redis's, and both follow the clock.
//!
//! What it cannot promise: during a partition, two processes on different sled folders can each
//! grant the same file; the conflict is detected and reported at recovery, not prevented. Use
//! fail-closed mode where exclusion across machines must hold during an outage.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::core::config::FailMode;
use crate::core::{debug, metrics};
use crate::core::envelope::Entry;
use crate::core::error::{Error, Result};
use crate::core::held::{settle, HeldLocks, Reasserted};
use crate::core::lock::{parse_record, LockFilter, LockRecord, LockRequest};
use crate::core::store::{BatchOp, Page, Store};
use crate::core::time::now_ms;
use crate::core::wait::{Attempt, Waiter, Waiting};
use crate::core::wake::Listening;

use super::redis::{RedisStore, RestartHook};
use super::shared::SharedStore;
use crate::core::config::RedisOptions;
use crate::core::lost::LostListener;

/// What happened to a key on the fallback: written (its value is in sled), or deleted (for a lock,
/// the session whose lock it was, so recovery deletes only that session's record in Redis).
#[derive(Debug, Clone)]
enum Touched {
    Written,
    Deleted { lock_session: Option<String> },
}

pub struct HybridStore {
    redis: RedisStore,
    /// The fallback: the machine's shared sled folder, so processes on one machine keep
    /// excluding each other while Redis is away.
    sled: SharedStore,
    fail_mode: FailMode,
    recheck: Duration,
    debug: bool,
    state: Mutex<State>,
    /// Keys changed on the fallback that are not held locks: written back at recovery.
    touched: Mutex<HashMap<(String, String), Touched>>,
    rec: Arc<Recovery>,
}

struct State {
    since_ms: i64,
    next_probe: Instant,
    switches: u64,
    last_error: String,
}

/// What putting locks back into Redis needs, shared with the Redis store's restart watch.
struct Recovery {
    /// Every lock held through this hybrid, on either store: put back into Redis at recovery and
    /// whenever Redis turns out to have lost its data.
    held: HeldLocks,
    lost: RwLock<Option<LostListener>>,
    /// Calls hold it shared; putting locks back holds it alone, so no call runs in between.
    gate: tokio::sync::RwLock<()>,
    on_fallback: AtomicBool,
    recovered: AtomicU64,
    conflicts: AtomicU64,
}

impl HybridStore {
    /// Connects to Redis and opens the fallback. If Redis cannot be reached, a fail-open hybrid
    /// starts on sled (with a lazy connection the probes bring up); a fail-closed one refuses.
    pub async fn open(opts: &RedisOptions, sled_path: &str, fail_mode: FailMode, recheck: Duration, debug: bool) -> Result<HybridStore> {
        let path = sled_path.to_owned();
        // opening may wait for another process that is starting to serve the folder
        let sled = tokio::task::spawn_blocking(move || SharedStore::open(&path)).await.map_err(|e| Error::backend(format!("opening the sled fallback failed: {e}")))??;
        let (redis, down) = match RedisStore::connect(opts).await {
            Ok(r) => (r, None),
            Err(e) if e.is_unavailable() && fail_mode == FailMode::Open => (RedisStore::connect_lazy(opts, &e).await?, Some(e.to_string())),
            Err(e) => return Err(e),
        };
        Ok(HybridStore::new(redis, sled, fail_mode, recheck, debug, down))
    }

    /// `down_since_start`: Redis could not be reached at open; serve from sled until a probe succeeds.
    pub fn new(redis: RedisStore, sled: SharedStore, fail_mode: FailMode, recheck: Duration, debug: bool, down_since_start: Option<String>) -> Self {
        let rec = Arc::new(Recovery {
            held: HeldLocks::default(),
            lost: RwLock::new(None),
            gate: tokio::sync::RwLock::new(()),
            on_fallback: AtomicBool::new(down_since_start.is_some()),
            recovered: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
        });
        // Redis restarted empty while serving: put back what is held through this hybrid (while
        // on the fallback, the switch back does that)
        let (h, r) = (rec.clone(), redis.clone());
        redis.set_restart_hook(RestartHook {
            holding: Arc::new({
                let h = rec.clone();
                move || !h.on_fallback.load(Ordering::Acquire) && !h.held.is_empty()
            }),
            restarted: Arc::new(move || {
                let (h, r) = (h.clone(), r.clone());
                Box::pin(async move {
                    let _alone = h.gate.write().await;
                    if h.on_fallback.load(Ordering::Acquire) {
                        return;
                    }
                    if let Err(e) = put_back(&r, &h, "a restart of Redis").await {
                        eprintln!("[opencode-file-lock] hybrid: could not put the held locks back into Redis after it restarted: {e}");
                    }
                })
            }),
        });
        HybridStore {
            redis,
            sled,
            fail_mode,
            recheck,
            debug,
            state: Mutex::new(State { since_ms: now_ms(), next_probe: Instant::now() + recheck, switches: 0, last_error: down_since_start.unwrap_or_default() }),
            touched: Mutex::new(HashMap::new()),
            rec,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn log(&self, msg: &str) {
        if self.debug || debug::enabled() {
            eprintln!("[opencode-file-lock] hybrid: {msg}");
        }
    }

    pub fn current_backend(&self) -> &'static str {
        if self.rec.on_fallback.load(Ordering::Acquire) { "sled" } else { "redis" }
    }

    fn switch(&self, to_fallback: bool, why: &str) {
        let mut st = self.state();
        if self.rec.on_fallback.swap(to_fallback, Ordering::AcqRel) == to_fallback {
            return;
        }
        st.since_ms = now_ms();
        st.switches += 1;
        st.next_probe = Instant::now() + self.recheck;
        if to_fallback {
            st.last_error = why.to_owned();
        }
        drop(st);
        let to = if to_fallback { "sled" } else { "redis" };
        metrics::backend_switch(to);
        self.log(&format!("now serving from {to} ({why})"));
    }

    /// Every call starts here: if the hybrid is on its fallback and a probe is due, it probes
    /// Redis and, when it answers, switches back (see `recover`) before the call goes anywhere.
    /// The guard it returns keeps a switch back from happening under the call.
    async fn enter(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        let due = {
            let mut st = self.state();
            let due = self.rec.on_fallback.load(Ordering::Acquire) && Instant::now() >= st.next_probe;
            if due {
                st.next_probe = Instant::now() + self.recheck;
            }
            due
        };
        if due && matches!(tokio::time::timeout(self.recheck.min(Duration::from_millis(500)), self.redis.ping()).await, Ok(Ok(_))) {
            // alone: calls under way finish first, later ones wait, so none slips between stores
            let _alone = self.rec.gate.write().await;
            if self.current_backend() == "sled" {
                match self.recover().await {
                    Ok(()) => self.switch(false, "redis answers again; every held lock and the fallback's changes are back in it"),
                    Err(e) => self.log(&format!("writing the fallback's changes back to redis failed: {e}; staying on sled")),
                }
            }
        }
        self.rec.gate.read().await
    }

    /// Writes what the fallback knows into Redis (see the module comment).
    async fn recover(&self) -> Result<()> {
        let touched: Vec<_> = self.touched.lock().unwrap_or_else(|p| p.into_inner()).drain().collect();
        let mut rest = touched.into_iter();
        while let Some(((ns, key), what)) = rest.next() {
            match self.recover_key(&ns, &key, &what).await {
                Ok(()) => {}
                Err(e) if e.is_unavailable() => {
                    // Redis went away again: keep this key and the rest for the next probe
                    let mut t = self.touched.lock().unwrap_or_else(|p| p.into_inner());
                    for (k, w) in std::iter::once(((ns, key), what)).chain(rest) {
                        t.entry(k).or_insert(w);
                    }
                    return Err(e);
                }
                Err(e) => self.log(&format!("could not write {key} back to redis: {e}")),
            }
        }
        // a Redis that lost its data makes new grants wait while holders put theirs back: this
        // hybrid puts its own back now, and serves from sled until the wait is over
        let grace = self.redis.grace_left_ms().await?;
        put_back(&self.redis, &self.rec, "Redis's outage").await?;
        if grace > 0 {
            return Err(Error::Unreachable(format!("redis is letting its earlier holders put their locks back for {grace} ms more")));
        }
        Ok(())
    }

    async fn recover_key(&self, ns: &str, key: &str, what: &Touched) -> Result<()> {
        match what {
            Touched::Deleted { lock_session: Some(session) } => {
                self.redis.delete_lock_of(ns, key, session).await?;
            }
            Touched::Deleted { lock_session: None } => {
                self.redis.del(ns, key).await?;
            }
            Touched::Written => {
                let Some(entry) = self.sled.get(ns, key).await? else { return Ok(()) };
                if matches!(parse_record(key, &entry), Ok(rec) if rec.path == key) {
                    return Ok(()); // a lock: put back with the held ones, if it is still held
                }
                // the fallback is this machine's folder: what is left of its TTL by this clock
                let left = entry.expires_at.map(|x| (x - now_ms()).max(1) as u64);
                self.redis.set(ns, key, entry.value.get(), left).await?;
            }
        }
        Ok(())
    }

    /// Runs `fut` on Redis if Redis serves. None: Redis is not serving (or just failed), use sled.
    async fn try_redis<T>(&self, fut: impl Future<Output = Result<T>>) -> Option<Result<T>> {
        if self.current_backend() == "sled" {
            return None;
        }
        match fut.await {
            Err(e) if e.is_unavailable() => {
                self.switch(true, &e.to_string());
                None
            }
            other => Some(other),
        }
    }

    fn refuse_if_closed(&self) -> Result<()> {
        if self.fail_mode == FailMode::Closed {
            let last = self.state().last_error.clone();
            return Err(Error::backend(format!(
                "Redis is unavailable and failMode is 'closed', so nothing is served from the local fallback: {last}"
            )));
        }
        Ok(())
    }

    fn touch(&self, ns: &str, keys: impl IntoIterator<Item = (String, Touched)>) {
        let mut t = self.touched.lock().unwrap_or_else(|p| p.into_inner());
        for (k, what) in keys {
            t.insert((ns.to_owned(), k), what);
        }
    }

    /// A release on whichever store serves (the fallback's is recorded for recovery).
    async fn release_on_either(&self, ns: &str, path: &str, session_id: &str) -> Result<bool> {
        if let Some(r) = self.try_redis(self.redis.release(ns, path, session_id)).await {
            if matches!(r, Ok(true)) {
                let _ = self.sled.release(ns, path, session_id).await;
            }
            return r;
        }
        self.refuse_if_closed()?;
        let released = self.sled.release(ns, path, session_id).await?;
        if released {
            let what = if self.sled.get(ns, path).await?.is_some() { Touched::Written } else { Touched::Deleted { lock_session: Some(session_id.to_owned()) } };
            self.touch(ns, [(path.to_owned(), what)]);
        }
        Ok(released)
    }

    /// Mirrors lock records Redis granted or renewed for `ttl` into sled (best effort: the mirror
    /// only matters if Redis goes away). Each raises sled's fencing counter to its token.
    async fn mirror_records(&self, ns: &str, recs: &[LockRecord], ttl: u64) {
        for rec in recs {
            let json = serde_json::to_string(rec).unwrap_or_default();
            if let Err(e) = self.sled.set(ns, &rec.path, &json, Some(ttl)).await {
                self.log(&format!("mirroring {} into sled failed: {e}", rec.path));
            }
        }
    }
}

/// Puts every lock held through the hybrid back into Redis (see `RedisStore::reassert`), and
/// settles the ones another holder took meanwhile or that expired.
async fn put_back(redis: &RedisStore, rec: &Recovery, after: &str) -> Result<()> {
    let listener = rec.lost.read().unwrap_or_else(|p| p.into_inner()).clone();
    for (ns, holds) in rec.held.snapshot() {
        let outcomes = redis.reassert(&ns, &holds).await?;
        for (h, outcome) in holds.iter().zip(outcomes) {
            match outcome {
                Reasserted::Restored => {
                    rec.recovered.fetch_add(1, Ordering::Relaxed);
                }
                Reasserted::Conflict { .. } => {
                    rec.conflicts.fetch_add(1, Ordering::Relaxed);
                    metrics::recovery_conflict();
                }
                _ => {}
            }
            if settle(after, &ns, &h.rec, outcome, listener.as_ref()) {
                rec.held.forget(&ns, &h.rec.path, Some(h.rec.token));
            }
        }
    }
    Ok(())
}

impl Store for HybridStore {
    fn backend(&self) -> &'static str {
        self.current_backend()
    }

    async fn get(&self, ns: &str, key: &str) -> Result<Option<Entry>> {
        let _gate = self.enter().await;
        if let Some(r) = self.try_redis(self.redis.get(ns, key)).await {
            return r;
        }
        self.refuse_if_closed()?;
        self.sled.get(ns, key).await
    }

    async fn set(&self, ns: &str, key: &str, value_json: &str, ttl_ms: Option<u64>) -> Result<()> {
        let _gate = self.enter().await;
        if let Some(r) = self.try_redis(self.redis.set(ns, key, value_json, ttl_ms)).await {
            if r.is_ok() {
                let _ = self.sled.set(ns, key, value_json, ttl_ms).await;
            }
            return r;
        }
        self.refuse_if_closed()?;
        self.sled.set(ns, key, value_json, ttl_ms).await?;
        self.touch(ns, [(key.to_owned(), Touched::Written)]);
        Ok(())
    }

    async fn del(&self, ns: &str, key: &str) -> Result<bool> {
        let _gate = self.enter().await;
        if let Some(r) = self.try_redis(self.redis.del(ns, key)).await {
            if r.is_ok() {
                let _ = self.sled.del(ns, key).await;
            }
            return r;
        }
        self.refuse_if_closed()?;
        let existed = self.sled.del(ns, key).await?;
        self.touch(ns, [(key.to_owned(), Touched::Deleted { lock_session: None })]);
        Ok(existed)
    }

    async fn batch(&self, ns: &str, ops: &[BatchOp]) -> Result<()> {
        let _gate = self.enter().await;
        if let Some(r) = self.try_redis(self.redis.batch(ns, ops)).await {
            if r.is_ok() {
                let _ = self.sled.batch(ns, ops).await;
            }
            return r;
        }
        self.refuse_if_closed()?;
        self.sled.batch(ns, ops).await?;
        self.touch(
            ns,
            ops.iter().map(|op| match op {
                BatchOp::Put { key, .. } => (key.clone(), Touched::Written),
                BatchOp::Del { key } => (key.clone(), Touched::Deleted { lock_session: None }),
            }),
        );
        Ok(())
    }

    async fn scan(&self, ns: &str, cursor: Option<&str>, count: usize) -> Result<Page> {
        let _gate = self.enter().await;
        if let Some(r) = self.try_redis(self.redis.scan(ns, cursor, count)).await {
            return r;
        }
        self.refuse_if_closed()?;
        // A Redis cursor means nothing to sled: a walk that fails over starts over on sled.
        let cursor = cursor.filter(|c| c.parse::<u64>().is_err());
        self.sled.scan(ns, cursor, count).await
    }

    async fn sweep_expired(&self, ns: &str) -> Result<u64> {
        let _gate = self.enter().await;
        if let Some(r) = self.try_redis(self.redis.sweep_expired(ns)).await {
            let _ = self.sled.sweep_expired(ns).await;
            return r;
        }
        self.refuse_if_closed()?;
        self.sled.sweep_expired(ns).await
    }

    async fn clear(&self, ns: &str) -> Result<u64> {
        let _gate = self.enter().await;
        if let Some(r) = self.try_redis(self.redis.clear(ns)).await {
            if r.is_ok() {
                let _ = self.sled.clear(ns).await;
            }
            return r;
        }
        self.refuse_if_closed()?;
        Err(Error::backend("clear() needs Redis: it cannot be replayed safely after an outage"))
    }

    async fn acquire(&self, ns: &str, paths: &[String], req: &LockRequest) -> Result<Vec<LockRecord>> {
        let _gate = self.enter().await;
        let recs = match self.try_redis(self.redis.acquire(ns, paths, req)).await {
            Some(r) => {
                let recs = r?;
                self.mirror_records(ns, &recs, req.ttl_ms).await;
                recs
            }
            None => {
                self.refuse_if_closed()?;
                self.sled.acquire(ns, paths, req).await?
            }
        };
        self.rec.held.granted(ns, &recs, Duration::from_millis(req.ttl_ms));
        Ok(recs)
    }

    async fn release(&self, ns: &str, path: &str, session_id: &str) -> Result<bool> {
        let _gate = self.enter().await;
        let r = self.release_on_either(ns, path, session_id).await;
        // the caller let go of it, whatever the stores said: it must not be put back later
        if !matches!(r, Ok(false)) {
            self.rec.held.released(ns, path, session_id);
        }
        r
    }

    async fn release_all(&self, ns: &str, filter: &LockFilter) -> Result<u64> {
        let _gate = self.enter().await;
        let n = match self.try_redis(self.redis.release_all(ns, filter)).await {
            Some(r) => {
                if r.is_ok() {
                    let _ = self.sled.release_all(ns, filter).await;
                }
                r?
            }
            None => {
                self.refuse_if_closed()?;
                let held = self.sled.list_locks(ns, filter).await?;
                let n = self.sled.release_all(ns, filter).await?;
                self.touch(ns, held.into_iter().map(|r| (r.path, Touched::Deleted { lock_session: Some(r.session_id) })));
                n
            }
        };
        self.rec.held.released_all(ns, filter);
        Ok(n)
    }

    async fn renew(&self, ns: &str, path: &str, session_id: &str, ttl_ms: u64) -> Result<Option<LockRecord>> {
        let _gate = self.enter().await;
        let r = match self.try_redis(self.redis.renew(ns, path, session_id, ttl_ms)).await {
            Some(r) => {
                let r = r?;
                if let Some(rec) = &r {
                    self.mirror_records(ns, std::slice::from_ref(rec), ttl_ms).await;
                }
                r
            }
            None => {
                self.refuse_if_closed()?;
                let r = self.sled.renew(ns, path, session_id, ttl_ms).await?;
                if r.is_some() {
                    self.touch(ns, [(path.to_owned(), Touched::Written)]);
                }
                r
            }
        };
        match &r {
            Some(rec) => self.rec.held.renewed(ns, rec, Duration::from_millis(ttl_ms)),
            None => self.rec.held.forget(ns, path, None),
        }
        Ok(r)
    }

    async fn list_locks(&self, ns: &str, filter: &LockFilter) -> Result<Vec<LockRecord>> {
        let _gate = self.enter().await;
        if let Some(r) = self.try_redis(self.redis.list_locks(ns, filter)).await {
            return r;
        }
        self.refuse_if_closed()?;
        self.sled.list_locks(ns, filter).await
    }

    async fn force_release(&self, ns: &str, path: &str) -> Result<Option<LockRecord>> {
        let _gate = self.enter().await;
        let r = match self.try_redis(self.redis.force_release(ns, path)).await {
            Some(r) => {
                if r.is_ok() {
                    let _ = self.sled.force_release(ns, path).await;
                }
                r?
            }
            None => {
                self.refuse_if_closed()?;
                let r = self.sled.force_release(ns, path).await?;
                if let Some(rec) = &r {
                    self.touch(ns, [(path.to_owned(), Touched::Deleted { lock_session: Some(rec.session_id.clone()) })]);
                }
                r
            }
        };
        if let Some(gone) = &r {
            self.rec.held.forget(ns, path, Some(gone.token));
        }
        Ok(r)
    }

    async fn try_acquire_queued(&self, ns: &str, paths: &[String], req: &LockRequest, waiter: &Waiter) -> Result<Attempt> {
        let _gate = self.enter().await;
        // a ticket is a place in one store's queue: after a switch, queue afresh in the other
        let afresh = |from: &str| if waiter.ticket > 0 && waiter.ticket_from != from { Waiter { ticket: 0, ..waiter.clone() } } else { waiter.clone() };
        let (on_redis, on_sled) = (afresh("redis"), afresh("sled"));
        let r = match self.try_redis(self.redis.try_acquire_queued(ns, paths, req, &on_redis)).await {
            Some(r) => {
                let r = r?;
                if let Attempt::Granted(recs) = &r {
                    self.mirror_records(ns, recs, req.ttl_ms).await;
                }
                r
            }
            None => {
                self.refuse_if_closed()?;
                self.sled.try_acquire_queued(ns, paths, req, &on_sled).await?
            }
        };
        if let Attempt::Granted(recs) = &r {
            self.rec.held.granted(ns, recs, Duration::from_millis(req.ttl_ms));
        }
        Ok(r)
    }

    async fn leave_queue(&self, ns: &str, paths: &[String], waiter: &Waiter) -> Result<()> {
        self.sled.leave_queue(ns, paths, waiter).await?;
        if self.current_backend() == "redis" {
            // if Redis is gone, the waiter's lease takes it out of Redis's queue
            let _ = self.redis.leave_queue(ns, paths, waiter).await;
        }
        Ok(())
    }

    async fn list_waiters(&self, ns: &str) -> Result<Waiting> {
        let _gate = self.enter().await;
        if let Some(r) = self.try_redis(self.redis.list_waiters(ns)).await {
            return r;
        }
        self.refuse_if_closed()?;
        self.sled.list_waiters(ns).await
    }

    /// Changes on either store: the one serving now, and the other across a switch.
    fn watch(&self, ns: &str, wake: &std::sync::Arc<tokio::sync::Notify>) -> Vec<Listening> {
        let mut l = self.redis.watch(ns, wake);
        l.extend(self.sled.watch(ns, wake));
        l
    }

    async fn before_reporting_loss(&self) {
        self.redis.before_reporting_loss().await;
    }

    fn set_lost_listener(&self, listener: LostListener) {
        self.sled.set_lost_listener(listener.clone());
        *self.rec.lost.write().unwrap_or_else(|p| p.into_inner()) = Some(listener);
    }

    fn listen(&self, ns: &str, paths: &[String], wake: &std::sync::Arc<tokio::sync::Notify>) -> Vec<Listening> {
        let mut l = self.redis.listen(ns, paths, wake);
        l.extend(self.sled.listen(ns, paths, wake));
        l
    }

    async fn health(&self) -> Result<Value> {
        let redis = match self.redis.health().await {
            Ok(h) => h,
            Err(e) => json!({ "backend": "redis", "healthy": false, "connected": false, "error": e.to_string() }),
        };
        let sled = self.sled.health().await.unwrap_or_else(|e| json!({ "healthy": false, "error": e.to_string() }));
        let pending = self.touched.lock().unwrap_or_else(|p| p.into_inner()).len();
        let st = self.state();
        let healthy = redis["healthy"] == true || (self.fail_mode == FailMode::Open && sled["healthy"] == true);
        Ok(json!({
            "backend": "hybrid",
            "currentBackend": self.current_backend(),
            "servingSince": st.since_ms,
            "switches": st.switches,
            "failMode": if self.fail_mode == FailMode::Open { "open" } else { "closed" },
            "pendingRecovery": pending,
            "recoveredLocks": self.rec.recovered.load(Ordering::Relaxed),
            "recoveryConflicts": self.rec.conflicts.load(Ordering::Relaxed),
            "lastError": st.last_error,
            "healthy": healthy,
            "redis": redis,
            "sled": sled,
        }))
    }

    async fn close(&self) -> Result<()> {
        self.redis.close().await?;
        self.sled.close().await
    }
}
