//! The one interface every store implements. Keys arrive un-namespaced; stores join them with
//! the namespace into the shared wire format. Values travel as JSON text.

use std::future::Future;
use std::sync::Arc;

use serde_json::Value;

use super::envelope::Entry;
use super::error::Result;
use super::lock::{LockFilter, LockRecord, LockRequest};
use super::lost::LostListener;
use super::wait::{Attempt, Waiter, Waiting};
use super::wake::Listening;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum BatchOp {
    /// `ttl_ms`: how long it lives, on the store's clock (the store writes the expiry).
    Put { key: String, value_json: String, ttl_ms: Option<u64> },
    Del { key: String },
}

/// One page of `entries()`: logical keys, the JSON of their values and their expiries, where to
/// go on, and the store's clock when it was read (so a caller can tell what is left of each TTL
/// without comparing its own clock with the store's).
#[derive(Debug, Default)]
pub struct Page {
    pub items: Vec<(String, String, Option<i64>)>,
    pub cursor: Option<String>,
    pub now: i64,
}

pub trait Store: Send + Sync + 'static {
    /// `"sled"` or `"redis"`: the store that will serve the next call.
    fn backend(&self) -> &'static str;

    fn get(&self, ns: &str, key: &str) -> impl Future<Output = Result<Option<Entry>>> + Send;
    /// `ttl_ms`: how long it lives; the store sets the expiry on its own clock.
    fn set(&self, ns: &str, key: &str, value_json: &str, ttl_ms: Option<u64>) -> impl Future<Output = Result<()>> + Send;
    fn del(&self, ns: &str, key: &str) -> impl Future<Output = Result<bool>> + Send;
    /// All or nothing.
    fn batch(&self, ns: &str, ops: &[BatchOp]) -> impl Future<Output = Result<()>> + Send;
    /// Live entries after `cursor`, about `count` at a time; `cursor: None` in the answer ends it.
    fn scan(&self, ns: &str, cursor: Option<&str>, count: usize) -> impl Future<Output = Result<Page>> + Send;
    fn sweep_expired(&self, ns: &str) -> impl Future<Output = Result<u64>> + Send;
    fn clear(&self, ns: &str) -> impl Future<Output = Result<u64>> + Send;

    /// Grants every path or none (re-entrant for the requesting session). Paths are normalized.
    fn acquire(&self, ns: &str, paths: &[String], req: &LockRequest) -> impl Future<Output = Result<Vec<LockRecord>>> + Send;
    /// Undoes one hold of `session_id`; false when that session did not hold it.
    fn release(&self, ns: &str, path: &str, session_id: &str) -> impl Future<Output = Result<bool>> + Send;
    /// Deletes every matching lock whatever its hold count; returns how many.
    fn release_all(&self, ns: &str, filter: &LockFilter) -> impl Future<Output = Result<u64>> + Send;
    /// Pushes the expiry of a live lock held by `session_id` out to now + ttl (never in); None when not held.
    fn renew(&self, ns: &str, path: &str, session_id: &str, ttl_ms: u64) -> impl Future<Output = Result<Option<LockRecord>>> + Send;
    fn list_locks(&self, ns: &str, filter: &LockFilter) -> impl Future<Output = Result<Vec<LockRecord>>> + Send;
    /// Deletes the lock on `path` whoever holds it (an operator's forced release), announcing it
    /// so the holder's lost-lock watch hears of it; the removed record, if there was one.
    fn force_release(&self, ns: &str, path: &str) -> impl Future<Output = Result<Option<LockRecord>>> + Send;

    /// One try of a waiting acquire (see `core::wait`): granted, or refused with `waiter` queued.
    fn try_acquire_queued(&self, ns: &str, paths: &[String], req: &LockRequest, waiter: &Waiter) -> impl Future<Output = Result<Attempt>> + Send;
    /// Takes a waiter that gives up out of the queues, waking whoever is next.
    fn leave_queue(&self, ns: &str, paths: &[String], waiter: &Waiter) -> impl Future<Output = Result<()>> + Send;
    /// Notifies `wake` whenever a lock on one of `paths` is released, until the guards are dropped.
    fn listen(&self, ns: &str, paths: &[String], wake: &Arc<tokio::sync::Notify>) -> Vec<Listening>;
    /// Who waits for what in `ns` right now, by the store's clock.
    fn list_waiters(&self, ns: &str) -> impl Future<Output = Result<Waiting>> + Send;
    /// Notifies `wake` on every change to the locks and waiters of `ns` (a hint to look again),
    /// until the guards are dropped.
    fn watch(&self, ns: &str, wake: &Arc<tokio::sync::Notify>) -> Vec<Listening>;

    /// Where the store reports locks of this process that it finds lost on its own (the hybrid's
    /// recovery, the shared store's re-assertion after a takeover). Most stores find none.
    fn set_lost_listener(&self, _listener: LostListener) {}

    /// A lock of this process was found held by another session: if the store lost its data (a
    /// Redis restart) and has not noticed yet, it notices now and settles its locks itself, so the
    /// loss is reported as what it is (a conflict at re-assertion). Most stores have nothing to do.
    fn before_reporting_loss(&self) -> impl Future<Output = ()> + Send {
        async {}
    }

    fn health(&self) -> impl Future<Output = Result<Value>> + Send;
    /// Makes what was written durable and lets go of the store; later calls fail with ECLOSED.
    fn close(&self) -> impl Future<Output = Result<()>> + Send;
}

/// Polls a future once. The sled store's futures never suspend, so the binding runs them to
/// completion inside the JS call and hands back a settled promise: no thread hop.
pub fn now_or_never<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}
