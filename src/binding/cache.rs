//! `NativeCache`: one namespace view of a store. Held as `Arc<AnyStore>` so views made by
//! `withNamespace` and in-flight async calls share it. Each operation exists twice: `xxxSync`
//! for the sled store (done inside the call) and `xxx` returning a promise for Redis / hybrid.

use std::future::Future;
use std::sync::Arc;

use napi::bindgen_prelude::Function;
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi_derive::napi;

use super::bridge::Bridge;
use super::error::{encode, invalid, millis, to_napi};
use crate::core::envelope::{nested_namespace, validate_json, validate_namespace};
use crate::core::lock::{check_ttl, LockFilter, LockRecord, LockRequest, DEFAULT_LOCK_TTL_MS};
use crate::core::path::{is_lexically_normal, normalize_path};
use crate::core::store::{now_or_never, BatchOp, Store};
use crate::core::lost::LostWatch;
use crate::core::time::now_ms;
use crate::core::wait::check_wait;
use crate::core::Result as CoreResult;
use crate::stores::AnyStore;

#[napi]
pub struct NativeCache {
    pub(crate) store: Arc<AnyStore>,
    pub(crate) ns: String,
    pub(crate) default_ttl_ms: Option<u64>,
    /// Shared by every namespace view of the store: lost-lock reports for this process's locks.
    pub(crate) watch: Arc<LostWatch>,
}

#[napi(object)]
pub struct NativeBatchOp {
    /// "put" or "del"
    pub kind: String,
    pub key: String,
    pub value_json: Option<String>,
    pub ttl_ms: Option<f64>,
}

#[napi(object)]
pub struct NativePage {
    pub keys: Vec<String>,
    pub values_json: Vec<String>,
    /// Expiry (epoch ms) of each entry, or null for none.
    pub expires_at: Vec<Option<f64>>,
    pub cursor: Option<String>,
}

fn records_json(recs: &[LockRecord]) -> String {
    serde_json::to_string(recs).unwrap_or_else(|_| "[]".into())
}

/// Arguments of an acquire, checked and normalized before any I/O.
struct AcquireArgs {
    paths: Vec<String>,
    req: LockRequest,
}

impl NativeCache {
    pub(crate) fn new(store: AnyStore, ns: String, default_ttl_ms: Option<u64>) -> Self {
        let watch = LostWatch::new(Arc::new(|task| {
            napi::bindgen_prelude::spawn(task);
        }));
        NativeCache { store: Arc::new(store), ns, default_ttl_ms, watch }
    }

    /// Before a release by this process: its lost-lock watch must not report it.
    fn releasing(&self, path: &str, session_id: &str) {
        if self.watch.enabled() {
            match normalize_path(path, None) {
                Ok(p) => self.watch.releasing(&self.ns, &p, session_id),
                Err(_) => self.watch.releasing(&self.ns, path, session_id),
            }
        }
    }

    /// Runs a sled operation to completion inside this call.
    fn sync<T>(&self, fut: impl Future<Output = CoreResult<T>>) -> napi::Result<T> {
        if !self.store.is_synchronous() {
            return Err(invalid("synchronous calls are only for the sled store; use the async method"));
        }
        now_or_never(fut).expect("sled operations never suspend").map_err(to_napi)
    }

    fn expiry(&self, ttl_ms: Option<f64>) -> napi::Result<Option<i64>> {
        let ttl = millis(ttl_ms, "ttlMs")?.or(self.default_ttl_ms);
        Ok(ttl.map(|t| now_ms() + t as i64))
    }

    fn batch_ops(&self, ops: Vec<NativeBatchOp>) -> napi::Result<Vec<BatchOp>> {
        let now = now_ms();
        ops.into_iter()
            .map(|op| match op.kind.as_str() {
                "put" => {
                    let value_json = op.value_json.ok_or_else(|| invalid(format!("batch put of {:?} has no value", op.key)))?;
                    validate_json(&value_json).map_err(to_napi)?;
                    let ttl = millis(op.ttl_ms, "ttlMs")?.or(self.default_ttl_ms);
                    Ok(BatchOp::Put { key: op.key, value_json, expires_at: ttl.map(|t| now + t as i64) })
                }
                "del" => Ok(BatchOp::Del { key: op.key }),
                other => Err(invalid(format!("batch op type must be 'put' or 'del', got {other:?}"))),
            })
            .collect()
    }

    fn acquire_args(&self, paths: Vec<String>, agent_id: &str, session_id: &str, ttl_ms: Option<f64>, base_dir: Option<&str>) -> napi::Result<AcquireArgs> {
        if paths.is_empty() {
            return Err(invalid("at least one path is required"));
        }
        let ttl = millis(ttl_ms, "ttlMs")?.or(self.default_ttl_ms).unwrap_or(DEFAULT_LOCK_TTL_MS);
        let req = LockRequest::new(session_id, agent_id, Some(ttl)).map_err(to_napi)?;
        let mut normalized: Vec<String> = Vec::with_capacity(paths.len());
        for p in &paths {
            let n = normalize_path(p, base_dir).map_err(to_napi)?;
            // The same file named twice is one lock, taken once.
            if !normalized.contains(&n) {
                normalized.push(n);
            }
        }
        Ok(AcquireArgs { paths: normalized, req })
    }

    fn filter(session_id: Option<String>, agent_id: Option<String>) -> napi::Result<LockFilter> {
        for (v, name) in [(&session_id, "sessionId"), (&agent_id, "agentId")] {
            if let Some(v) = v {
                crate::core::lock::check_id(v, name).map_err(to_napi)?;
            }
        }
        Ok(LockFilter { session_id, agent_id })
    }

    fn renew_ttl(&self, ttl_ms: Option<f64>) -> napi::Result<u64> {
        let ttl = millis(ttl_ms, "ttlMs")?.or(self.default_ttl_ms).unwrap_or(DEFAULT_LOCK_TTL_MS);
        check_ttl(ttl).map_err(to_napi)
    }
}

/// Releases by the path as given when it is already in normal form (the usual case: the path an
/// acquire returned), and only otherwise, or when nothing is held there, pays for resolving it.
async fn release_by_path(store: &AnyStore, ns: &str, path: &str, session_id: &str) -> CoreResult<bool> {
    crate::core::lock::check_id(session_id, "sessionId")?;
    if is_lexically_normal(path) && store.release(ns, path, session_id).await? {
        return Ok(true);
    }
    let normalized = normalize_path(path, None)?;
    if is_lexically_normal(path) && normalized == path {
        return Ok(false); // already tried
    }
    store.release(ns, &normalized, session_id).await
}

fn entry_json(e: Option<crate::core::envelope::Entry>) -> Option<String> {
    e.map(|e| e.value.get().to_owned())
}

fn page(p: crate::core::store::Page) -> NativePage {
    let mut out = NativePage { keys: Vec::new(), values_json: Vec::new(), expires_at: Vec::new(), cursor: p.cursor };
    for (k, v, x) in p.items {
        out.keys.push(k);
        out.values_json.push(v);
        out.expires_at.push(x.map(|x| x as f64));
    }
    out
}

#[napi]
impl NativeCache {
    #[napi(getter)]
    pub fn namespace(&self) -> String {
        self.ns.clone()
    }

    #[napi(getter)]
    pub fn is_sync(&self) -> bool {
        self.store.is_synchronous()
    }

    /// "sled" or "redis": the store serving calls now (changes only for the hybrid).
    #[napi]
    pub fn current_backend(&self) -> String {
        self.store.backend().to_owned()
    }

    /// A view of the same store under `namespace/ns` (level-cache nests namespaces with `/`).
    #[napi]
    pub fn with_namespace(&self, ns: String) -> napi::Result<NativeCache> {
        validate_namespace(&ns).map_err(to_napi)?;
        Ok(NativeCache { store: self.store.clone(), ns: nested_namespace(&self.ns, &ns), default_ttl_ms: self.default_ttl_ms, watch: self.watch.clone() })
    }

    /// `listener(eventJson)` is called when a lock this process holds through this store is lost:
    /// it expired, was forced free, or (hybrid) another holder won at recovery. From now on
    /// every lock acquired through the store is watched.
    #[napi]
    pub fn on_lost(&self, listener: Function<String, ()>) -> napi::Result<()> {
        // Weak: a listener must not keep the process alive on its own.
        let tsfn = listener.build_threadsafe_function::<String>().callee_handled::<false>().weak::<true>().build()?;
        self.watch.set_listener(Arc::new(move |event| {
            tsfn.call(event.to_string(), ThreadsafeFunctionCallMode::NonBlocking);
        }));
        if let AnyStore::Hybrid(h) = &*self.store {
            let watch = Arc::downgrade(&self.watch);
            h.set_lost_listener(Box::new(move |event| {
                if let Some(w) = watch.upgrade() {
                    w.report(event);
                }
            }));
        }
        Ok(())
    }

    /// Stops watching locks (the last JS listener went away): nothing is reported until `onLost` again.
    #[napi]
    pub fn stop_lost_watch(&self) {
        self.watch.stop();
    }

    /// Resolves the error a renew of a lock no longer held rejects with (ELOST, naming any new holder).
    async fn lost_error(&self, path: &str, session_id: &str) -> crate::core::Error {
        self.watch.check_now(&self.ns, path, session_id);
        let holder = match self.store.get(&self.ns, path).await {
            Ok(Some(e)) => serde_json::from_str::<serde_json::Value>(e.value.get()).unwrap_or(serde_json::Value::Null),
            _ => serde_json::Value::Null,
        };
        let why = match holder.get("sessionId").and_then(|v| v.as_str()) {
            Some(s) => format!("agent {} (session {s}) holds it now", holder["agentId"].as_str().unwrap_or("unknown")),
            None => "it expired or was released".to_owned(),
        };
        crate::core::Error::Lost { message: format!("the lock on {path} is no longer held by session {session_id}: {why}; it was not renewed"), holder }
    }

    // ---- cache: sled (synchronous) ----

    #[napi]
    pub fn get_sync(&self, key: String) -> napi::Result<Option<String>> {
        self.sync(self.store.get(&self.ns, &key)).map(entry_json)
    }
    #[napi]
    pub fn set_sync(&self, key: String, value_json: String, ttl_ms: Option<f64>) -> napi::Result<()> {
        validate_json(&value_json).map_err(to_napi)?;
        let x = self.expiry(ttl_ms)?;
        self.sync(self.store.set(&self.ns, &key, &value_json, x))
    }
    #[napi]
    pub fn del_sync(&self, key: String) -> napi::Result<bool> {
        self.sync(self.store.del(&self.ns, &key))
    }
    #[napi]
    pub fn batch_sync(&self, ops: Vec<NativeBatchOp>) -> napi::Result<()> {
        let ops = self.batch_ops(ops)?;
        self.sync(self.store.batch(&self.ns, &ops))
    }
    #[napi]
    pub fn scan_sync(&self, cursor: Option<String>, count: u32) -> napi::Result<NativePage> {
        self.sync(self.store.scan(&self.ns, cursor.as_deref(), count as usize)).map(page)
    }
    #[napi]
    pub fn sweep_expired_sync(&self) -> napi::Result<f64> {
        self.sync(self.store.sweep_expired(&self.ns)).map(|n| n as f64)
    }
    #[napi]
    pub fn clear_sync(&self) -> napi::Result<f64> {
        self.sync(self.store.clear(&self.ns)).map(|n| n as f64)
    }

    // ---- cache: Redis / hybrid (promise) ----

    #[napi]
    pub async fn get(&self, key: String) -> napi::Result<Option<String>> {
        self.store.get(&self.ns, &key).await.map(entry_json).map_err(to_napi)
    }
    #[napi]
    pub async fn set(&self, key: String, value_json: String, ttl_ms: Option<f64>) -> napi::Result<()> {
        validate_json(&value_json).map_err(to_napi)?;
        let x = self.expiry(ttl_ms)?;
        self.store.set(&self.ns, &key, &value_json, x).await.map_err(to_napi)
    }
    #[napi]
    pub async fn del(&self, key: String) -> napi::Result<bool> {
        self.store.del(&self.ns, &key).await.map_err(to_napi)
    }
    #[napi]
    pub async fn batch(&self, ops: Vec<NativeBatchOp>) -> napi::Result<()> {
        let ops = self.batch_ops(ops)?;
        self.store.batch(&self.ns, &ops).await.map_err(to_napi)
    }
    #[napi]
    pub async fn scan(&self, cursor: Option<String>, count: u32) -> napi::Result<NativePage> {
        self.store.scan(&self.ns, cursor.as_deref(), count as usize).await.map(page).map_err(to_napi)
    }
    #[napi]
    pub async fn sweep_expired(&self) -> napi::Result<f64> {
        self.store.sweep_expired(&self.ns).await.map(|n| n as f64).map_err(to_napi)
    }
    #[napi]
    pub async fn clear(&self) -> napi::Result<f64> {
        self.store.clear(&self.ns).await.map(|n| n as f64).map_err(to_napi)
    }

    // ---- locks: sled (synchronous) ----

    /// Acquires every path or none; returns the normalized paths.
    #[napi]
    pub fn acquire_sync(&self, paths: Vec<String>, agent_id: String, session_id: String, ttl_ms: Option<f64>, base_dir: Option<String>) -> napi::Result<Vec<String>> {
        let a = self.acquire_args(paths, &agent_id, &session_id, ttl_ms, base_dir.as_deref())?;
        let recs = self.sync(self.store.acquire(&self.ns, &a.paths, &a.req))?;
        self.watch.acquired(&self.store, &self.ns, &recs);
        Ok(a.paths)
    }
    #[napi]
    pub fn release_sync(&self, path: String, session_id: String) -> napi::Result<bool> {
        self.releasing(&path, &session_id);
        self.sync(release_by_path(&self.store, &self.ns, &path, &session_id))
    }
    #[napi]
    pub fn release_all_sync(&self, session_id: Option<String>, agent_id: Option<String>) -> napi::Result<f64> {
        let f = Self::filter(session_id, agent_id)?;
        self.watch.releasing_all(&self.ns, &f);
        self.sync(self.store.release_all(&self.ns, &f)).map(|n| n as f64)
    }
    #[napi]
    pub fn renew_sync(&self, path: String, session_id: String, ttl_ms: Option<f64>) -> napi::Result<String> {
        crate::core::lock::check_id(&session_id, "sessionId").map_err(to_napi)?;
        let path = normalize_path(&path, None).map_err(to_napi)?;
        let ttl = self.renew_ttl(ttl_ms)?;
        match self.sync(self.store.renew(&self.ns, &path, &session_id, ttl))? {
            Some(r) => Ok(records_json(&[r])),
            None => Err(to_napi(now_or_never(self.lost_error(&path, &session_id)).expect("sled operations never suspend"))),
        }
    }
    /// Deletes the lock on `path` whoever holds it; the removed record as JSON, or null.
    #[napi]
    pub fn force_release_sync(&self, path: String) -> napi::Result<Option<String>> {
        let path = normalize_path(&path, None).map_err(to_napi)?;
        self.sync(self.store.force_release(&self.ns, &path)).map(|r| r.map(|r| records_json(&[r])))
    }
    #[napi]
    pub fn list_locks_sync(&self, session_id: Option<String>, agent_id: Option<String>) -> napi::Result<String> {
        let f = Self::filter(session_id, agent_id)?;
        self.sync(self.store.list_locks(&self.ns, &f)).map(|r| records_json(&r))
    }
    #[napi]
    pub fn health_sync(&self) -> napi::Result<String> {
        self.sync(self.store.health()).map(|v| v.to_string())
    }
    /// Prometheus text: the process's counters, and this namespace's live lock count.
    #[napi]
    pub fn metrics_sync(&self) -> napi::Result<String> {
        let active = self.sync(self.store.list_locks(&self.ns, &LockFilter::default()))?.len();
        Ok(crate::core::metrics::render(Some(active)))
    }
    #[napi]
    pub fn close_sync(&self) -> napi::Result<()> {
        self.watch.stop();
        self.sync(self.store.close())
    }

    // ---- locks: Redis / hybrid through the completion bridge (the hot path) ----

    /// Starts an acquire; its result (the normalized paths joined by NUL) arrives through `bridge`
    /// under `id`. Bad arguments throw here, before anything is sent.
    #[napi]
    pub fn acquire_submit(&self, bridge: &Bridge, id: u32, paths: Vec<String>, agent_id: String, session_id: String, ttl_ms: Option<f64>, base_dir: Option<String>) -> napi::Result<()> {
        let a = self.acquire_args(paths, &agent_id, &session_id, ttl_ms, base_dir.as_deref())?;
        let (store, ns, done, watch) = (self.store.clone(), self.ns.clone(), bridge.inner.clone(), self.watch.clone());
        napi::bindgen_prelude::spawn(async move {
            let r = store.acquire(&ns, &a.paths, &a.req).await;
            if let Ok(recs) = &r {
                watch.acquired(&store, &ns, recs);
            }
            done.complete(id, r.map(|_| a.paths.join("\0")).map_err(|e| encode(&e)));
        });
        Ok(())
    }

    /// Starts an acquire that waits up to `waitMs` for holders and earlier waiters (any store);
    /// `bridge.cancel(id)` aborts it with EABORTED. The result arrives through `bridge` as for
    /// `acquireSubmit`.
    #[napi]
    pub fn acquire_wait_submit(&self, bridge: &Bridge, id: u32, paths: Vec<String>, agent_id: String, session_id: String, ttl_ms: Option<f64>, base_dir: Option<String>, wait_ms: f64) -> napi::Result<()> {
        let a = self.acquire_args(paths, &agent_id, &session_id, ttl_ms, base_dir.as_deref())?;
        let wait = check_wait(wait_ms).map_err(to_napi)?;
        let cancel = bridge.inner.cancellable(id);
        let (store, ns, done, watch) = (self.store.clone(), self.ns.clone(), bridge.inner.clone(), self.watch.clone());
        napi::bindgen_prelude::spawn(async move {
            let r = store.acquire_waiting(&ns, &a.paths, &a.req, wait, &cancel).await;
            if let Ok(recs) = &r {
                watch.acquired(&store, &ns, recs);
            }
            done.finish_cancellable(id);
            done.complete(id, r.map(|_| a.paths.join("\0")).map_err(|e| encode(&e)));
        });
        Ok(())
    }

    /// Starts a release; its result ("1" released, "0" not held) arrives through `bridge`.
    #[napi]
    pub fn release_submit(&self, bridge: &Bridge, id: u32, path: String, session_id: String) -> napi::Result<()> {
        crate::core::lock::check_id(&session_id, "sessionId").map_err(to_napi)?;
        if !is_lexically_normal(&path) {
            normalize_path(&path, None).map_err(to_napi)?; // bad input throws here, not later
        }
        self.releasing(&path, &session_id);
        let (store, ns, done) = (self.store.clone(), self.ns.clone(), bridge.inner.clone());
        napi::bindgen_prelude::spawn(async move {
            let r = release_by_path(&store, &ns, &path, &session_id).await;
            done.complete(id, r.map(|b| if b { "1" } else { "0" }.to_owned()).map_err(|e| encode(&e)));
        });
        Ok(())
    }

    // ---- locks: Redis / hybrid (promise) ----

    /// Acquires every path or none; resolves to the normalized paths.
    #[napi]
    pub async fn acquire(&self, paths: Vec<String>, agent_id: String, session_id: String, ttl_ms: Option<f64>, base_dir: Option<String>) -> napi::Result<Vec<String>> {
        let a = self.acquire_args(paths, &agent_id, &session_id, ttl_ms, base_dir.as_deref())?;
        let recs = self.store.acquire(&self.ns, &a.paths, &a.req).await.map_err(to_napi)?;
        self.watch.acquired(&self.store, &self.ns, &recs);
        Ok(a.paths)
    }
    #[napi]
    pub async fn release(&self, path: String, session_id: String) -> napi::Result<bool> {
        self.releasing(&path, &session_id);
        release_by_path(&self.store, &self.ns, &path, &session_id).await.map_err(to_napi)
    }
    #[napi]
    pub async fn release_all(&self, session_id: Option<String>, agent_id: Option<String>) -> napi::Result<f64> {
        let f = Self::filter(session_id, agent_id)?;
        self.watch.releasing_all(&self.ns, &f);
        self.store.release_all(&self.ns, &f).await.map(|n| n as f64).map_err(to_napi)
    }
    #[napi]
    pub async fn renew(&self, path: String, session_id: String, ttl_ms: Option<f64>) -> napi::Result<String> {
        crate::core::lock::check_id(&session_id, "sessionId").map_err(to_napi)?;
        let path = normalize_path(&path, None).map_err(to_napi)?;
        let ttl = self.renew_ttl(ttl_ms)?;
        match self.store.renew(&self.ns, &path, &session_id, ttl).await.map_err(to_napi)? {
            Some(r) => Ok(records_json(&[r])),
            None => Err(to_napi(self.lost_error(&path, &session_id).await)),
        }
    }
    #[napi]
    pub async fn force_release(&self, path: String) -> napi::Result<Option<String>> {
        let path = normalize_path(&path, None).map_err(to_napi)?;
        self.store.force_release(&self.ns, &path).await.map(|r| r.map(|r| records_json(&[r]))).map_err(to_napi)
    }
    #[napi]
    pub async fn list_locks(&self, session_id: Option<String>, agent_id: Option<String>) -> napi::Result<String> {
        let f = Self::filter(session_id, agent_id)?;
        self.store.list_locks(&self.ns, &f).await.map(|r| records_json(&r)).map_err(to_napi)
    }
    #[napi]
    pub async fn health(&self) -> napi::Result<String> {
        self.store.health().await.map(|v| v.to_string()).map_err(to_napi)
    }
    #[napi]
    pub async fn metrics(&self) -> napi::Result<String> {
        let active = self.store.list_locks(&self.ns, &LockFilter::default()).await.map_err(to_napi)?.len();
        Ok(crate::core::metrics::render(Some(active)))
    }
    #[napi]
    pub async fn close(&self) -> napi::Result<()> {
        self.watch.stop();
        self.store.close().await.map_err(to_napi)
    }
}
