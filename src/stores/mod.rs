//! The stores behind `core::store::Store`, and `AnyStore`, the one type the binding holds.

pub mod hybrid_store;
mod journal;
pub mod redis;
pub mod shared;
pub mod sled_store;

use std::sync::Arc;

use serde_json::Value;

use crate::core::envelope::Entry;
use crate::core::error::Result;
use crate::core::lock::{LockFilter, LockRecord, LockRequest};
use crate::core::lost::LostListener;
use crate::core::store::{BatchOp, Page, Store};
use crate::core::wait::{Attempt, Waiter, Waiting};
use crate::core::wake::Listening;

pub use hybrid_store::HybridStore;
pub use redis::RedisStore;
pub use shared::SharedStore;
pub use sled_store::SledStore;

pub enum AnyStore {
    /// sled, shared by every process of the user on the machine (the default).
    Shared(SharedStore),
    Redis(RedisStore),
    Hybrid(HybridStore),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Shared($s) => $call,
            AnyStore::Redis($s) => $call,
            AnyStore::Hybrid($s) => $call,
        }
    };
}

impl Store for AnyStore {
    fn backend(&self) -> &'static str {
        dispatch!(self, s => s.backend())
    }
    async fn get(&self, ns: &str, key: &str) -> Result<Option<Entry>> {
        dispatch!(self, s => s.get(ns, key).await)
    }
    async fn set(&self, ns: &str, key: &str, value_json: &str, ttl_ms: Option<u64>) -> Result<()> {
        dispatch!(self, s => s.set(ns, key, value_json, ttl_ms).await)
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
        dispatch!(self, s => s.acquire(ns, paths, req).await)
    }
    async fn release(&self, ns: &str, path: &str, session_id: &str) -> Result<bool> {
        dispatch!(self, s => s.release(ns, path, session_id).await)
    }
    async fn release_all(&self, ns: &str, filter: &LockFilter) -> Result<u64> {
        dispatch!(self, s => s.release_all(ns, filter).await)
    }
    async fn renew(&self, ns: &str, path: &str, session_id: &str, ttl_ms: u64) -> Result<Option<LockRecord>> {
        dispatch!(self, s => s.renew(ns, path, session_id, ttl_ms).await)
    }
    async fn list_locks(&self, ns: &str, filter: &LockFilter) -> Result<Vec<LockRecord>> {
        dispatch!(self, s => s.list_locks(ns, filter).await)
    }
    async fn force_release(&self, ns: &str, path: &str) -> Result<Option<LockRecord>> {
        dispatch!(self, s => s.force_release(ns, path).await)
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
    async fn list_waiters(&self, ns: &str) -> Result<Waiting> {
        dispatch!(self, s => s.list_waiters(ns).await)
    }
    fn watch(&self, ns: &str, wake: &Arc<tokio::sync::Notify>) -> Vec<Listening> {
        dispatch!(self, s => s.watch(ns, wake))
    }
    fn set_lost_listener(&self, listener: LostListener) {
        dispatch!(self, s => s.set_lost_listener(listener))
    }
    async fn before_reporting_loss(&self) {
        dispatch!(self, s => s.before_reporting_loss().await)
    }
    async fn health(&self) -> Result<Value> {
        dispatch!(self, s => s.health().await)
    }
    async fn close(&self) -> Result<()> {
        dispatch!(self, s => s.close().await)
    }
}
