//! `NativeCache`: a `core::handle::Handle` for JS. Each method converts its arguments, starts one
//! handle call and hands it to `Bridge::run`, which returns the answer at once when the call
//! finishes without waiting (sled, and usually the shared store's client) and otherwise (Redis)
//! delivers it through the bridge under `id`. Answers are strings; `lib/cache.js` decodes them.

use std::future::Future;
use std::sync::Arc;

use napi::bindgen_prelude::Function;
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi_derive::napi;
use serde_json::value::RawValue;

use super::bridge::Bridge;
use super::error::{invalid, millis, to_napi};
use crate::core::handle::{BatchItem, Handle};
use crate::core::handle::ChangeWatch;
use crate::core::lock::LockRecord;
use crate::core::wait::WaitEntry;
use crate::core::wait::check_wait;
use crate::core::Result as CoreResult;
use crate::stores::AnyStore;

#[napi]
pub struct NativeCache {
    pub(crate) h: Arc<Handle<AnyStore>>,
    /// Where answers that are not ready at once are delivered (set once by `useBridge`).
    bridge: Option<Arc<super::bridge::Inner>>,
}

/// A running change watch (`watchChanges`).
#[napi]
pub struct NativeChangeWatch {
    w: Option<ChangeWatch>,
}

#[napi]
impl NativeChangeWatch {
    #[napi]
    pub fn stop(&mut self) {
        self.w.take();
    }
}

#[napi(object)]
pub struct NativeBatchOp {
    /// "put" or "del"
    pub kind: String,
    pub key: String,
    pub value_json: Option<String>,
    pub ttl_ms: Option<f64>,
}

/// What a lock record says of its holder besides its ids (see `core::lock::HOLDER_FIELDS`).
#[napi(object)]
pub struct NativeHolder {
    pub kind: Option<String>,
    pub reason: Option<String>,
    pub title: Option<String>,
    pub agent_name: Option<String>,
}

fn records_json(recs: &[LockRecord]) -> String {
    serde_json::to_string(recs).unwrap_or_else(|_| "[]".into())
}

/// Waiters as JS sees them: who, for what, held up by whom, since when and for how long (by the
/// store's clock).
fn waiters_json(now: i64, waiters: &[WaitEntry]) -> serde_json::Value {
    waiters
        .iter()
        .map(|w| {
            serde_json::json!({
                "sessionId": w.session_id,
                "agentId": w.agent_id,
                "paths": w.paths,
                "blockedBy": { "sessionId": w.blocked_by, "path": w.blocked_on },
                "since": w.since,
                "waitedMs": (now - w.since).max(0),
            })
        })
        .collect()
}

fn flag(b: bool) -> String {
    if b { "1" } else { "0" }.into()
}

impl NativeCache {
    pub(crate) fn new(h: Handle<AnyStore>) -> Self {
        NativeCache { h: Arc::new(h), bridge: None }
    }

    fn bridge(&self) -> napi::Result<&Arc<super::bridge::Inner>> {
        self.bridge.as_ref().ok_or_else(|| invalid("this cache has no bridge: call useBridge(bridge) first"))
    }

    /// Runs `call(handle)` through the bridge (see the module comment).
    pub(crate) fn run<F, Fut>(&self, id: u32, call: F) -> napi::Result<Option<String>>
    where
        F: FnOnce(Arc<Handle<AnyStore>>) -> Fut,
        Fut: Future<Output = CoreResult<String>> + Send + 'static,
    {
        self.bridge()?.run(id, call(self.h.clone()))
    }
}

/// lost-lock listener: the JS function, called with the event as JSON.
fn js_listener(listener: Function<String, ()>) -> napi::Result<crate::core::lost::LostListener> {
    // Weak: a listener must not keep the process alive on its own.
    let tsfn = listener.build_threadsafe_function::<String>().callee_handled::<false>().weak::<true>().build()?;
    Ok(Arc::new(move |event| {
        tsfn.call(event.to_string(), ThreadsafeFunctionCallMode::NonBlocking);
    }))
}

#[napi]
impl NativeCache {
    #[napi(getter)]
    pub fn namespace(&self) -> String {
        self.h.namespace().to_owned()
    }

    /// "sled" or "redis": the store serving calls now (changes only for the hybrid).
    #[napi]
    pub fn current_backend(&self) -> String {
        self.h.current_backend().to_owned()
    }

    /// A view of the same store under `namespace/ns` (level-cache nests namespaces with `/`).
    #[napi]
    pub fn with_namespace(&self, ns: String) -> napi::Result<NativeCache> {
        Ok(NativeCache { h: Arc::new(self.h.with_namespace(&ns).map_err(to_napi)?), bridge: self.bridge.clone() })
    }

    /// The bridge every later call of this cache (and its namespace views) answers through.
    #[napi]
    pub fn use_bridge(&mut self, bridge: &Bridge) {
        self.bridge = Some(bridge.inner.clone());
    }

    /// `listener(eventJson)` is called when a lock this process holds through this store is lost:
    /// it expired, was forced free, or another holder won when a store recovered. From now on
    /// every lock acquired through the store is watched.
    #[napi]
    pub fn on_lost(&self, listener: Function<String, ()>) -> napi::Result<()> {
        self.h.on_lost(js_listener(listener)?);
        Ok(())
    }

    /// Stops watching locks (the last JS listener went away): nothing is reported until `onLost` again.
    #[napi]
    pub fn stop_lost_watch(&self) {
        self.h.stop_lost_watch();
    }

    // ---- cache ----

    /// The value's JSON, or "" when missing or expired.
    #[napi]
    pub fn get(&self, id: u32, key: String) -> napi::Result<Option<String>> {
        self.run(id, |h| async move { Ok(h.get(&key).await?.unwrap_or_default()) })
    }

    #[napi]
    pub fn set(&self, id: u32, key: String, value_json: String, ttl_ms: Option<f64>) -> napi::Result<Option<String>> {
        let ttl = millis(ttl_ms, "ttlMs")?;
        self.run(id, |h| async move { h.set(&key, &value_json, ttl).await.map(|_| String::new()) })
    }

    /// "1" when the key existed.
    #[napi]
    pub fn del(&self, id: u32, key: String) -> napi::Result<Option<String>> {
        self.run(id, |h| async move { h.del(&key).await.map(flag) })
    }

    #[napi]
    pub fn batch(&self, id: u32, ops: Vec<NativeBatchOp>) -> napi::Result<Option<String>> {
        let items = ops
            .into_iter()
            .map(|op| match op.kind.as_str() {
                "put" => Ok(BatchItem::Put {
                    value_json: op.value_json.ok_or_else(|| invalid(format!("batch put of {:?} has no value", op.key)))?,
                    ttl_ms: millis(op.ttl_ms, "ttlMs")?,
                    key: op.key,
                }),
                "del" => Ok(BatchItem::Del { key: op.key }),
                other => Err(invalid(format!("batch op type must be 'put' or 'del', got {other:?}"))),
            })
            .collect::<napi::Result<Vec<_>>>()?;
        self.run(id, |h| async move { h.batch(items).await.map(|_| String::new()) })
    }

    /// One page as JSON: {"items": [[key, value, expiresAt|null], ...], "cursor": string|null,
    /// "now": the store's clock}.
    #[napi]
    pub fn scan(&self, id: u32, cursor: Option<String>, count: u32) -> napi::Result<Option<String>> {
        self.run(id, |h| async move {
            let page = h.scan(cursor.as_deref(), count as usize).await?;
            let items: Vec<(String, Box<RawValue>, Option<i64>)> = page
                .items
                .into_iter()
                .filter_map(|(k, v, x)| RawValue::from_string(v).ok().map(|v| (k, v, x)))
                .collect();
            Ok(serde_json::json!({ "items": items, "cursor": page.cursor, "now": page.now }).to_string())
        })
    }

    #[napi]
    pub fn sweep_expired(&self, id: u32) -> napi::Result<Option<String>> {
        self.run(id, |h| async move { h.sweep_expired().await.map(|n| n.to_string()) })
    }

    #[napi]
    pub fn clear(&self, id: u32) -> napi::Result<Option<String>> {
        self.run(id, |h| async move { h.clear().await.map(|n| n.to_string()) })
    }

    // ---- locks ----

    /// Acquires every path or none, waiting up to `waitMs` when given (`bridge.cancel(id)` aborts
    /// the wait); answers the normalized paths joined by NUL. Bad arguments throw here.
    #[napi]
    #[allow(clippy::too_many_arguments)]
    pub fn acquire(&self, id: u32, paths: Vec<String>, agent_id: String, session_id: String, ttl_ms: Option<f64>, base_dir: Option<String>, wait_ms: Option<f64>, holder: Option<NativeHolder>) -> napi::Result<Option<String>> {
        let mut a = self.h.acquire_args(&paths, &agent_id, &session_id, millis(ttl_ms, "ttlMs")?, base_dir.as_deref()).map_err(to_napi)?;
        if let Some(hd) = holder {
            a.req = a.req.with_info(&[("kind", hd.kind), ("reason", hd.reason), ("title", hd.title), ("agentName", hd.agent_name)]).map_err(to_napi)?;
        }
        match wait_ms {
            None => self.run(id, |h| async move { Ok(h.acquire(&a, None).await?.join("\0")) }),
            Some(ms) => {
                let wait = check_wait(ms).map_err(to_napi)?;
                let key = super::bridge::split_id(id).0;
                let done = self.bridge()?.clone();
                let cancel = done.cancellable(key);
                self.run(id, |h| async move {
                    let r = h.acquire(&a, Some((wait, &cancel))).await;
                    done.finish_cancellable(key);
                    Ok(r?.join("\0"))
                })
            }
        }
    }

    /// "1" released, "0" not held by that session.
    #[napi]
    pub fn release(&self, id: u32, path: String, session_id: String) -> napi::Result<Option<String>> {
        Handle::<AnyStore>::check_release(&path, &session_id).map_err(to_napi)?;
        self.run(id, |h| async move { h.release(&path, &session_id).await.map(flag) })
    }

    #[napi]
    pub fn release_all(&self, id: u32, session_id: Option<String>, agent_id: Option<String>) -> napi::Result<Option<String>> {
        let f = Handle::<AnyStore>::filter(session_id, agent_id).map_err(to_napi)?;
        self.run(id, |h| async move { h.release_all(&f).await.map(|n| n.to_string()) })
    }

    /// The renewed record as JSON; ELOST when the lock is no longer held.
    #[napi]
    pub fn renew(&self, id: u32, path: String, session_id: String, ttl_ms: Option<f64>) -> napi::Result<Option<String>> {
        let ttl = millis(ttl_ms, "ttlMs")?;
        self.run(id, |h| async move { h.renew(&path, &session_id, ttl).await.map(|r| records_json(&[r])) })
    }

    /// Deletes the lock on `path` whoever holds it; the removed record as JSON, or "".
    #[napi]
    pub fn force_release(&self, id: u32, path: String) -> napi::Result<Option<String>> {
        self.run(id, |h| async move { Ok(h.force_release(&path).await?.map(|r| records_json(&[r])).unwrap_or_default()) })
    }

    #[napi]
    pub fn list_locks(&self, id: u32, session_id: Option<String>, agent_id: Option<String>) -> napi::Result<Option<String>> {
        let f = Handle::<AnyStore>::filter(session_id, agent_id).map_err(to_napi)?;
        self.run(id, |h| async move { h.list_locks(&f).await.map(|r| records_json(&r)) })
    }

    /// The waiting acquires of this namespace, as JSON (see `waiters_json`).
    #[napi]
    pub fn list_waiters(&self, id: u32) -> napi::Result<Option<String>> {
        self.run(id, |h| async move {
            let w = h.list_waiters().await?;
            Ok(waiters_json(w.now, &w.waiters).to_string())
        })
    }

    /// {"now", "locks", "waiters"}: locks and waiters with the store's clock.
    #[napi]
    pub fn snapshot(&self, id: u32) -> napi::Result<Option<String>> {
        self.run(id, |h| async move {
            let s = h.snapshot().await?;
            Ok(serde_json::json!({ "now": s.now, "locks": s.locks, "waiters": waiters_json(s.now, &s.waiters) }).to_string())
        })
    }

    /// Calls `listener()` after changes to this namespace's locks and waiters until `stop()`.
    #[napi]
    pub fn watch_changes(&self, listener: Function<(), ()>) -> napi::Result<NativeChangeWatch> {
        // Weak: a watch must not keep the process alive on its own (the CLI keeps it alive itself).
        let tsfn = listener.build_threadsafe_function::<()>().callee_handled::<false>().weak::<true>().build()?;
        let w = self.h.watch_changes(Arc::new(move || {
            tsfn.call((), ThreadsafeFunctionCallMode::NonBlocking);
        }));
        Ok(NativeChangeWatch { w: Some(w) })
    }

    #[napi]
    pub fn health(&self, id: u32) -> napi::Result<Option<String>> {
        self.run(id, |h| async move { h.health().await.map(|v| v.to_string()) })
    }

    #[napi]
    pub fn metrics(&self, id: u32) -> napi::Result<Option<String>> {
        self.run(id, |h| async move { h.metrics().await })
    }

    #[napi]
    pub fn close(&self, id: u32) -> napi::Result<Option<String>> {
        self.run(id, |h| async move { h.close().await.map(|_| String::new()) })
    }
}
