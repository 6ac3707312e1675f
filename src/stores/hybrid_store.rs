//! Redis primary, sled fallback.
//!
//! - While Redis answers, every successful write is mirrored into the local sled folder, so the
//!   fallback knows the locks already granted when Redis goes away.
//! - When a call fails with EBACKEND/ETIMEDOUT the hybrid switches to sled (fail open) or refuses
//!   (fail closed). Redis is probed again at most once per `recheck`.
//! - Before Redis serves again, what changed on the fallback is written back: locks with `SET NX`
//!   (a lock another process took in Redis meanwhile wins, and ours is reported lost through the
//!   listener), locks released during the outage are deleted if the same session still holds them
//!   in Redis, plain cache values are written over (last writer wins).
//!
//! What it cannot promise: during a partition, two processes on different sled folders can each
//! grant the same file; the conflict is detected and reported at recovery, not prevented. Fencing
//! tokens granted on the fallback come from sled's counter, not Redis's. Use fail-closed mode
//! where exclusion across machines must hold during an outage.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::core::config::FailMode;
use crate::core::{debug, metrics};
use crate::core::envelope::Entry;
use crate::core::error::{Error, Result};
use crate::core::lock::{parse_record, LockFilter, LockRecord, LockRequest};
use crate::core::store::{BatchOp, Page, Store};
use crate::core::time::now_ms;
use crate::core::wait::{Attempt, Waiter};
use crate::core::wake::Listening;

use super::redis::RedisStore;
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
    touched: Mutex<HashMap<(String, String), Touched>>,
    lost: Mutex<Option<LostListener>>,
}

struct State {
    on_fallback: bool,
    since_ms: i64,
    next_probe: Instant,
    switches: u64,
    last_error: String,
    recovered: u64,
    conflicts: u64,
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
            Err(e) if e.is_unavailable() && fail_mode == FailMode::Open => (RedisStore::connect_lazy(opts, &e)?, Some(e.to_string())),
            Err(e) => return Err(e),
        };
        Ok(HybridStore::new(redis, sled, fail_mode, recheck, debug, down))
    }

    /// `down_since_start`: Redis could not be reached at open; serve from sled until a probe succeeds.
    pub fn new(redis: RedisStore, sled: SharedStore, fail_mode: FailMode, recheck: Duration, debug: bool, down_since_start: Option<String>) -> Self {
        HybridStore {
            redis,
            sled,
            fail_mode,
            recheck,
            debug,
            state: Mutex::new(State {
                on_fallback: down_since_start.is_some(),
                since_ms: now_ms(),
                next_probe: Instant::now() + recheck,
                switches: 0,
                last_error: down_since_start.unwrap_or_default(),
                recovered: 0,
                conflicts: 0,
            }),
            touched: Mutex::new(HashMap::new()),
            lost: Mutex::new(None),
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
        if self.state().on_fallback { "sled" } else { "redis" }
    }

    fn switch(&self, to_fallback: bool, why: &str) {
        let mut st = self.state();
        if st.on_fallback == to_fallback {
            return;
        }
        st.on_fallback = to_fallback;
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

    /// Whether this call goes to Redis: always while Redis serves; on the fallback, only after a
    /// successful probe (at most one per `recheck`) and the write-back of the outage's changes.
    async fn redis_serves(&self) -> bool {
        {
            let mut st = self.state();
            if !st.on_fallback {
                return true;
            }
            if Instant::now() < st.next_probe {
                return false;
            }
            st.next_probe = Instant::now() + self.recheck;
        }
        let probe = tokio::time::timeout(self.recheck.min(Duration::from_millis(500)), self.redis.ping()).await;
        if !matches!(probe, Ok(Ok(_))) {
            return false;
        }
        match self.recover().await {
            Ok(()) => {
                self.switch(false, "redis answers again; the fallback's changes are written back");
                true
            }
            Err(e) => {
                self.log(&format!("writing the fallback's changes back to redis failed: {e}; staying on sled"));
                false
            }
        }
    }

    /// Writes what changed on the fallback into Redis (see the module comment).
    async fn recover(&self) -> Result<()> {
        let touched: Vec<_> = self.touched.lock().unwrap_or_else(|p| p.into_inner()).drain().collect();
        let mut rest = touched.into_iter();
        while let Some(((ns, key), what)) = rest.next() {
            match self.recover_key(&ns, &key, &what).await {
                Ok(()) => {}
                Err(e) if e.is_unavailable() => {
                    // Redis went away again: keep this key and the rest for the next probe
                    // (a change made since the drain is newer than these: it wins)
                    let mut t = self.touched.lock().unwrap_or_else(|p| p.into_inner());
                    for (k, w) in std::iter::once(((ns, key), what)).chain(rest) {
                        t.entry(k).or_insert(w);
                    }
                    return Err(e);
                }
                Err(e) => self.log(&format!("could not write {key} back to redis: {e}")),
            }
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
                match parse_record(key, &entry) {
                    Ok(rec) if rec.path == key => self.recover_lock(ns, rec).await?,
                    _ => self.redis.set(ns, key, entry.value.get(), entry.expires_at).await?,
                }
            }
        }
        Ok(())
    }

    async fn recover_lock(&self, ns: &str, rec: LockRecord) -> Result<()> {
        if self.redis.put_lock_if_absent(ns, &rec).await? {
            self.state().recovered += 1;
            return Ok(());
        }
        let theirs = self.redis.get(ns, &rec.path).await?;
        let holder: Value = theirs.as_ref().and_then(|e| serde_json::from_str(e.value.get()).ok()).unwrap_or(Value::Null);
        if holder.get("sessionId").and_then(Value::as_str) == Some(rec.session_id.as_str()) {
            return Ok(()); // the same session holds it in Redis too: nothing was lost
        }
        // Another process took the file in Redis during the outage: Redis wins, ours is lost.
        self.state().conflicts += 1;
        metrics::recovery_conflict();
        self.log(&format!("conflict on {}: session {} lost it to {}", rec.path, rec.session_id, holder));
        match &theirs {
            Some(e) => self.sled.set(ns, &rec.path, e.value.get(), e.expires_at).await?,
            None => {
                self.sled.del(ns, &rec.path).await?;
            }
        }
        let event = json!({ "reason": "conflict", "namespace": ns, "path": rec.path, "sessionId": rec.session_id, "lost": rec, "holder": holder });
        if let Some(listener) = self.lost.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            listener(event);
        }
        Ok(())
    }

    /// Runs `fut` on Redis if Redis serves. None: Redis is not serving (or just failed), use sled.
    async fn try_redis<T>(&self, fut: impl Future<Output = Result<T>>) -> Option<Result<T>> {
        if !self.redis_serves().await {
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

    /// Mirrors lock records Redis granted or renewed into sled (best effort: the mirror only
    /// matters if Redis goes away).
    async fn mirror_records(&self, ns: &str, recs: &[LockRecord]) {
        for rec in recs {
            let json = serde_json::to_string(rec).unwrap_or_default();
            if let Err(e) = self.sled.set(ns, &rec.path, &json, Some(rec.expires_at)).await {
                self.log(&format!("mirroring {} into sled failed: {e}", rec.path));
            }
        }
    }
}

impl Store for HybridStore {
    fn backend(&self) -> &'static str {
        self.current_backend()
    }

    async fn get(&self, ns: &str, key: &str) -> Result<Option<Entry>> {
        if let Some(r) = self.try_redis(self.redis.get(ns, key)).await {
            return r;
        }
        self.refuse_if_closed()?;
        self.sled.get(ns, key).await
    }

    async fn set(&self, ns: &str, key: &str, value_json: &str, expires_at: Option<i64>) -> Result<()> {
        if let Some(r) = self.try_redis(self.redis.set(ns, key, value_json, expires_at)).await {
            if r.is_ok() {
                let _ = self.sled.set(ns, key, value_json, expires_at).await;
            }
            return r;
        }
        self.refuse_if_closed()?;
        self.sled.set(ns, key, value_json, expires_at).await?;
        self.touch(ns, [(key.to_owned(), Touched::Written)]);
        Ok(())
    }

    async fn del(&self, ns: &str, key: &str) -> Result<bool> {
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
        if let Some(r) = self.try_redis(self.redis.scan(ns, cursor, count)).await {
            return r;
        }
        self.refuse_if_closed()?;
        // A Redis cursor means nothing to sled: a walk that fails over starts over on sled.
        let cursor = cursor.filter(|c| c.parse::<u64>().is_err());
        self.sled.scan(ns, cursor, count).await
    }

    async fn sweep_expired(&self, ns: &str) -> Result<u64> {
        if let Some(r) = self.try_redis(self.redis.sweep_expired(ns)).await {
            let _ = self.sled.sweep_expired(ns).await;
            return r;
        }
        self.refuse_if_closed()?;
        self.sled.sweep_expired(ns).await
    }

    async fn clear(&self, ns: &str) -> Result<u64> {
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
        if let Some(r) = self.try_redis(self.redis.acquire(ns, paths, req)).await {
            if let Ok(recs) = &r {
                self.mirror_records(ns, recs).await;
            }
            return r;
        }
        self.refuse_if_closed()?;
        let recs = self.sled.acquire(ns, paths, req).await?;
        self.touch(ns, paths.iter().map(|p| (p.clone(), Touched::Written)));
        Ok(recs)
    }

    async fn release(&self, ns: &str, path: &str, session_id: &str) -> Result<bool> {
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

    async fn release_all(&self, ns: &str, filter: &LockFilter) -> Result<u64> {
        if let Some(r) = self.try_redis(self.redis.release_all(ns, filter)).await {
            if r.is_ok() {
                let _ = self.sled.release_all(ns, filter).await;
            }
            return r;
        }
        self.refuse_if_closed()?;
        let held = self.sled.list_locks(ns, filter).await?;
        let n = self.sled.release_all(ns, filter).await?;
        self.touch(ns, held.into_iter().map(|r| (r.path, Touched::Deleted { lock_session: Some(r.session_id) })));
        Ok(n)
    }

    async fn renew(&self, ns: &str, path: &str, session_id: &str, ttl_ms: u64) -> Result<Option<LockRecord>> {
        if let Some(r) = self.try_redis(self.redis.renew(ns, path, session_id, ttl_ms)).await {
            if let Ok(Some(rec)) = &r {
                self.mirror_records(ns, std::slice::from_ref(rec)).await;
            }
            return r;
        }
        self.refuse_if_closed()?;
        let r = self.sled.renew(ns, path, session_id, ttl_ms).await?;
        if r.is_some() {
            self.touch(ns, [(path.to_owned(), Touched::Written)]);
        }
        Ok(r)
    }

    async fn list_locks(&self, ns: &str, filter: &LockFilter) -> Result<Vec<LockRecord>> {
        if let Some(r) = self.try_redis(self.redis.list_locks(ns, filter)).await {
            return r;
        }
        self.refuse_if_closed()?;
        self.sled.list_locks(ns, filter).await
    }

    async fn force_release(&self, ns: &str, path: &str) -> Result<Option<LockRecord>> {
        if let Some(r) = self.try_redis(self.redis.force_release(ns, path)).await {
            if r.is_ok() {
                let _ = self.sled.force_release(ns, path).await;
            }
            return r;
        }
        self.refuse_if_closed()?;
        let r = self.sled.force_release(ns, path).await?;
        if let Some(rec) = &r {
            self.touch(ns, [(path.to_owned(), Touched::Deleted { lock_session: Some(rec.session_id.clone()) })]);
        }
        Ok(r)
    }

    async fn try_acquire_queued(&self, ns: &str, paths: &[String], req: &LockRequest, waiter: &Waiter) -> Result<Attempt> {
        // a ticket is a place in one store's queue: after a switch, queue afresh in the other
        let afresh = |from: &str| if waiter.ticket > 0 && waiter.ticket_from != from { Waiter { ticket: 0, ..waiter.clone() } } else { waiter.clone() };
        let (on_redis, on_sled) = (afresh("redis"), afresh("sled"));
        if let Some(r) = self.try_redis(self.redis.try_acquire_queued(ns, paths, req, &on_redis)).await {
            if let Ok(Attempt::Granted(recs)) = &r {
                self.mirror_records(ns, recs).await;
            }
            return r;
        }
        self.refuse_if_closed()?;
        let r = self.sled.try_acquire_queued(ns, paths, req, &on_sled).await?;
        if matches!(r, Attempt::Granted(_)) {
            self.touch(ns, paths.iter().map(|p| (p.clone(), Touched::Written)));
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

    fn set_lost_listener(&self, listener: LostListener) {
        self.sled.set_lost_listener(listener.clone());
        *self.lost.lock().unwrap_or_else(|p| p.into_inner()) = Some(listener);
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
            "currentBackend": if st.on_fallback { "sled" } else { "redis" },
            "servingSince": st.since_ms,
            "switches": st.switches,
            "failMode": if self.fail_mode == FailMode::Open { "open" } else { "closed" },
            "pendingRecovery": pending,
            "recoveredLocks": st.recovered,
            "recoveryConflicts": st.conflicts,
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
