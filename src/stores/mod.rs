//! The stores behind `core::store::Store`, and `AnyStore`, the one type the binding holds.

pub mod hybrid_store;
pub mod redis_store;
pub mod sled_store;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::core::{debug, metrics};

use crate::core::envelope::Entry;
use crate::core::error::Result;
use crate::core::lock::{LockFilter, LockRecord, LockRequest};
use crate::core::store::{BatchOp, Page, Store};
use crate::core::wait::{Attempt, Waiter};
use crate::core::wake::Listening;

pub use hybrid_store::HybridStore;
pub use redis_store::RedisStore;
pub use sled_store::SledStore;

pub enum AnyStore {
    Sled(SledStore),
    Redis(RedisStore),
    Hybrid(HybridStore),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Sled($s) => $call,
            AnyStore::Redis($s) => $call,
            AnyStore::Hybrid($s) => $call,
        }
    };
}

impl AnyStore {
    /// True when every call completes synchronously (see `core::store::now_or_never`).
    pub fn is_synchronous(&self) -> bool {
        matches!(self, AnyStore::Sled(_))
    }

    /// An acquire that waits up to `wait` (see `core::wait`); `cancel` aborts it.
    pub async fn acquire_waiting(&self, ns: &str, paths: &[String], req: &LockRequest, wait: Duration, cancel: &tokio::sync::Notify) -> Result<Vec<LockRecord>> {
        let started = Instant::now();
        let r = crate::core::wait::acquire_waiting(self, ns, paths, req, wait, cancel).await;
        self.observe_acquire(paths, req, &r, started, Some(wait));
        r
    }

    /// Counts an acquire in the metrics and, when debugging, logs the decision.
    fn observe_acquire(&self, paths: &[String], req: &LockRequest, r: &Result<Vec<LockRecord>>, started: Instant, wait: Option<Duration>) {
        let took = started.elapsed();
        let status = match r {
            Ok(_) => "granted",
            Err(e) if e.code() == "ELOCKED" => "refused",
            Err(e) if e.code() == "EABORTED" => "aborted",
            Err(_) => "error",
        };
        if wait.is_some() {
            metrics::waiting_acquisition(status, &req.agent_id, took);
        } else {
            metrics::acquisition(status, &req.agent_id, took);
        }
        if debug::enabled() {
            let what = match r {
                Ok(recs) => recs.iter().map(|r| format!("token {} holds {}", r.token, r.hold_count)).collect::<Vec<_>>().join(", "),
                Err(e) => format!("{}: {}", e.code(), e.holder().map(|h| format!("held by session {}", h["sessionId"])).unwrap_or_else(|| e.to_string())),
            };
            let waited = wait.map(|w| format!(", willing to wait {} ms", w.as_millis())).unwrap_or_default();
            debug::log(format_args!("acquire {status} {} for session {} agent {} on {} in {:.2} ms{waited} ({what})", paths.join(" "), req.session_id, req.agent_id, self.backend(), took.as_secs_f64() * 1000.0));
        }
    }
}

impl Store for AnyStore {
    fn backend(&self) -> &'static str {
        dispatch!(self, s => s.backend())
    }
    async fn get(&self, ns: &str, key: &str) -> Result<Option<Entry>> {
        dispatch!(self, s => s.get(ns, key).await)
    }
    async fn set(&self, ns: &str, key: &str, value_json: &str, expires_at: Option<i64>) -> Result<()> {
        dispatch!(self, s => s.set(ns, key, value_json, expires_at).await)
    }
    async fn del(&self, ns: &str, key: &str) -> Result<bool> {
        dispatch!(self, s => s.del(ns, key).await)
    }
    async fn batch(&self, ns: &str, ops: &[BatchOp]) -> Result<()> {
        dispatch!(self, s => s.batch(ns, ops).await)
    }
    async fn scan(&self, ns: &str, cursor: Option<&str>, count: usize) -> Result<Page> {
        dispatch!(self, s => s.scan(ns, cursor, count).await)
    }
    async fn sweep_expired(&self, ns: &str) -> Result<u64> {
        dispatch!(self, s => s.sweep_expired(ns).await)
    }
    async fn clear(&self, ns: &str) -> Result<u64> {
        dispatch!(self, s => s.clear(ns).await)
    }
    async fn acquire(&self, ns: &str, paths: &[String], req: &LockRequest) -> Result<Vec<LockRecord>> {
        let started = Instant::now();
        let r = dispatch!(self, s => s.acquire(ns, paths, req).await);
        self.observe_acquire(paths, req, &r, started, None);
        r
    }
    async fn release(&self, ns: &str, path: &str, session_id: &str) -> Result<bool> {
        let r = dispatch!(self, s => s.release(ns, path, session_id).await);
        if debug::enabled() {
            let outcome = match &r {
                Ok(true) => "released".to_owned(),
                Ok(false) => "not held by that session".to_owned(),
                Err(e) => format!("failed: {}", e.code()),
            };
            debug::log(format_args!("release {path} for session {session_id} on {}: {outcome}", self.backend()));
        }
        r
    }
    async fn release_all(&self, ns: &str, filter: &LockFilter) -> Result<u64> {
        let r = dispatch!(self, s => s.release_all(ns, filter).await);
        debug::log(format_args!("releaseAll session={:?} agent={:?} on {}: {:?}", filter.session_id, filter.agent_id, self.backend(), r.as_ref().map_err(|e| e.code())));
        r
    }
    async fn renew(&self, ns: &str, path: &str, session_id: &str, ttl_ms: u64) -> Result<Option<LockRecord>> {
        dispatch!(self, s => s.renew(ns, path, session_id, ttl_ms).await)
    }
    async fn list_locks(&self, ns: &str, filter: &LockFilter) -> Result<Vec<LockRecord>> {
        dispatch!(self, s => s.list_locks(ns, filter).await)
    }
    async fn force_release(&self, ns: &str, path: &str) -> Result<Option<LockRecord>> {
        let r = dispatch!(self, s => s.force_release(ns, path).await);
        debug::log(format_args!("forced release of {path} on {}: {:?}", self.backend(), r.as_ref().map(|r| r.as_ref().map(|r| &r.session_id)).map_err(|e| e.code())));
        r
    }
    async fn try_acquire_queued(&self, ns: &str, paths: &[String], req: &LockRequest, waiter: &Waiter) -> Result<Attempt> {
        dispatch!(self, s => s.try_acquire_queued(ns, paths, req, waiter).await)
    }
    async fn leave_queue(&self, ns: &str, paths: &[String], waiter: &Waiter) -> Result<()> {
        dispatch!(self, s => s.leave_queue(ns, paths, waiter).await)
    }
    fn listen(&self, ns: &str, paths: &[String], wake: &Arc<tokio::sync::Notify>) -> Vec<Listening> {
        dispatch!(self, s => s.listen(ns, paths, wake))
    }
    async fn health(&self) -> Result<Value> {
        dispatch!(self, s => s.health().await)
    }
    async fn close(&self) -> Result<()> {
        dispatch!(self, s => s.close().await)
    }
}
