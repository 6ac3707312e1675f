//! Redis primary, sled fallback. When Redis stops answering (EBACKEND/ETIMEDOUT) calls are served
//! by the local sled folder (fail open) or refused (fail closed); Redis is probed again at most
//! once per `recheck` and takes over as soon as it answers.
//!
//! This first version does not copy locks granted on the fallback back into Redis when it returns:
//! during an outage, exclusion holds only among the processes sharing this sled folder.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::core::config::FailMode;
use crate::core::envelope::Entry;
use crate::core::error::{Error, Result};
use crate::core::lock::{LockFilter, LockRecord, LockRequest};
use crate::core::store::{BatchOp, Page, Store};
use crate::core::time::now_ms;

use super::redis_store::RedisStore;
use super::sled_store::SledStore;

pub struct HybridStore {
    redis: RedisStore,
    sled: SledStore,
    fail_mode: FailMode,
    recheck: Duration,
    debug: bool,
    state: Mutex<State>,
}

struct State {
    on_fallback: bool,
    since_ms: i64,
    next_probe: Instant,
    switches: u64,
    last_error: String,
}

impl HybridStore {
    /// `down_since_start`: Redis could not be reached at open; serve from sled until a probe succeeds.
    pub fn new(redis: RedisStore, sled: SledStore, fail_mode: FailMode, recheck: Duration, debug: bool, down_since_start: Option<String>) -> Self {
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
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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
        if self.debug {
            let to = if to_fallback { "sled" } else { "redis" };
            eprintln!("[opencode-file-lock] hybrid: now serving from {to} ({why})");
        }
    }

    /// Whether this call should go to Redis: always while Redis serves; while on the fallback,
    /// only after a successful probe (at most one per `recheck`).
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
        if matches!(probe, Ok(Ok(_))) {
            self.switch(false, "redis answers again");
            true
        } else {
            false
        }
    }

    async fn route<T>(&self, on_redis: impl Future<Output = Result<T>>, on_sled: impl Future<Output = Result<T>>) -> Result<T> {
        if self.redis_serves().await {
            match on_redis.await {
                Err(e) if e.is_unavailable() => self.switch(true, &e.to_string()),
                other => return other,
            }
        }
        if self.fail_mode == FailMode::Closed {
            let last = self.state().last_error.clone();
            return Err(Error::backend(format!(
                "Redis is unavailable and failMode is 'closed', so nothing is served from the local fallback: {last}"
            )));
        }
        on_sled.await
    }
}

impl Store for HybridStore {
    fn backend(&self) -> &'static str {
        self.current_backend()
    }

    async fn get(&self, ns: &str, key: &str) -> Result<Option<Entry>> {
        self.route(self.redis.get(ns, key), self.sled.get(ns, key)).await
    }
    async fn set(&self, ns: &str, key: &str, value_json: &str, expires_at: Option<i64>) -> Result<()> {
        self.route(self.redis.set(ns, key, value_json, expires_at), self.sled.set(ns, key, value_json, expires_at)).await
    }
    async fn del(&self, ns: &str, key: &str) -> Result<bool> {
        self.route(self.redis.del(ns, key), self.sled.del(ns, key)).await
    }
    async fn batch(&self, ns: &str, ops: &[BatchOp]) -> Result<()> {
        self.route(self.redis.batch(ns, ops), self.sled.batch(ns, ops)).await
    }
    async fn scan(&self, ns: &str, cursor: Option<&str>, count: usize) -> Result<Page> {
        self.route(self.redis.scan(ns, cursor, count), self.sled.scan(ns, cursor, count)).await
    }
    async fn sweep_expired(&self, ns: &str) -> Result<u64> {
        self.route(self.redis.sweep_expired(ns), self.sled.sweep_expired(ns)).await
    }
    async fn clear(&self, ns: &str) -> Result<u64> {
        self.route(self.redis.clear(ns), self.sled.clear(ns)).await
    }
    async fn acquire(&self, ns: &str, paths: &[String], req: &LockRequest) -> Result<Vec<LockRecord>> {
        self.route(self.redis.acquire(ns, paths, req), self.sled.acquire(ns, paths, req)).await
    }
    async fn release(&self, ns: &str, path: &str, session_id: &str) -> Result<bool> {
        self.route(self.redis.release(ns, path, session_id), self.sled.release(ns, path, session_id)).await
    }
    async fn release_all(&self, ns: &str, filter: &LockFilter) -> Result<u64> {
        self.route(self.redis.release_all(ns, filter), self.sled.release_all(ns, filter)).await
    }
    async fn renew(&self, ns: &str, path: &str, session_id: &str, ttl_ms: u64) -> Result<Option<LockRecord>> {
        self.route(self.redis.renew(ns, path, session_id, ttl_ms), self.sled.renew(ns, path, session_id, ttl_ms)).await
    }
    async fn list_locks(&self, ns: &str, filter: &LockFilter) -> Result<Vec<LockRecord>> {
        self.route(self.redis.list_locks(ns, filter), self.sled.list_locks(ns, filter)).await
    }

    async fn health(&self) -> Result<Value> {
        let redis = match self.redis.health().await {
            Ok(h) => h,
            Err(e) => json!({ "backend": "redis", "healthy": false, "connected": false, "error": e.to_string() }),
        };
        let sled = self.sled.health().await.unwrap_or_else(|e| json!({ "healthy": false, "error": e.to_string() }));
        let (backend, since, switches) = {
            let st = self.state();
            (if st.on_fallback { "sled" } else { "redis" }, st.since_ms, st.switches)
        };
        let healthy = redis["healthy"] == true || (self.fail_mode == FailMode::Open && sled["healthy"] == true);
        Ok(json!({
            "backend": "hybrid",
            "currentBackend": backend,
            "servingSince": since,
            "switches": switches,
            "failMode": if self.fail_mode == FailMode::Open { "open" } else { "closed" },
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
