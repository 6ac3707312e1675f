//! A Redis that restarts without persistence, or a Sentinel failover to a replica that had not yet
//! received a grant, forgets locks this process holds. While it holds any, the store looks at the
//! server every `LOOK_EVERY`: an epoch marker it plants (gone with the data) and the server's run
//! id (new after a restart or a failover). When either changed, every lock held here is put back
//! (same record, same token, the TTL it has left by this process's count); one another session
//! took meanwhile is reported lost (`conflict`), never granted twice.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::core::error::{Error, Result};
use crate::core::held::{settle, Held, Reasserted};
use crate::core::lock::LockRecord;
use crate::core::wait::Waiter;

use super::keys::{epoch_key, fence_key, lock_key, recovering_key};
use super::scripts::{EPOCH, REASSERT};
use super::RedisStore;

/// How often the server is looked at while locks are held (a restart is noticed this late, plus
/// the time to reconnect).
const LOOK_EVERY: Duration = Duration::from_millis(200);
/// After the server lost its data, new grants wait this long (common.lua's RESTART_GRACE) while
/// the processes that held locks put them back.
pub const RESTART_GRACE_MS: u64 = 2000;

/// What a store inside a hybrid runs instead of re-asserting its own record of held locks (the
/// hybrid keeps that record across its fallback).
#[derive(Clone)]
pub struct RestartHook {
    /// Whether anything is held that a restart could lose.
    pub holding: Arc<dyn Fn() -> bool + Send + Sync>,
    /// Puts everything held back (run in a task).
    pub restarted: Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>,
}

impl RedisStore {
    /// The hybrid takes over re-assertion: from now on this store keeps no record of its own.
    pub fn set_restart_hook(&self, hook: RestartHook) {
        *self.inner.restart_hook.write().unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }

    fn hook(&self) -> Option<RestartHook> {
        self.inner.restart_hook.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether this store records the locks it grants (not inside a hybrid).
    pub(super) fn tracks_held(&self) -> bool {
        self.inner.restart_hook.read().unwrap_or_else(|p| p.into_inner()).is_none()
    }

    fn holding(&self) -> bool {
        match self.hook() {
            Some(h) => (h.holding)(),
            None => !self.inner.held.is_empty(),
        }
    }

    /// A first look now (so a later restart is told apart from the first contact), then one
    /// every LOOK_EVERY while locks are held, until the store is closed or dropped. (Not started
    /// on a Cluster, which fails over by itself, node by node; see docs/deployment.md.)
    pub(super) async fn start_watching_restarts(&self) {
        let _ = self.server_changed().await;
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(LOOK_EVERY).await;
                let Some(inner) = weak.upgrade() else { return };
                if inner.closed.load(Ordering::Relaxed) {
                    return;
                }
                let store = RedisStore { inner };
                if store.holding() && matches!(store.server_changed().await, Ok((true, _))) {
                    store.restarted().await;
                }
            }
        });
    }

    /// Looks at the server: whether it lost its data or is another server since the last look,
    /// and how long new grants still wait there (after a loss of data).
    pub(super) async fn server_changed(&self) -> Result<(bool, u64)> {
        if self.is_cluster() {
            // no epoch marker on a Cluster (each primary would need its own), and no grace
            return Ok((false, 0));
        }
        let fresh = Waiter::new().id; // unique enough: pid, time, counter, random bits
        let saw_one = if self.inner.seen.lock().unwrap_or_else(|p| p.into_inner()).is_some() { "1" } else { "0" };
        let (marker, run, grace): (String, String, u64) = self.script("epoch", EPOCH.key(epoch_key()).key(recovering_key()).arg(fresh).arg(saw_one).arg(RESTART_GRACE_MS)).await?;
        let mut seen = self.inner.seen.lock().unwrap_or_else(|p| p.into_inner());
        let changed = seen.as_ref().is_some_and(|s| *s != (marker.clone(), run.clone()));
        *seen = Some((marker, run));
        Ok((changed, grace))
    }

    /// The server said it lost its data (a renew found it recovering): put back now, then go on.
    pub(super) async fn catch_up(&self) {
        if matches!(self.server_changed().await, Ok((true, _))) {
            self.restarted().await;
        }
    }

    /// For a hybrid coming back: how long new grants still wait on this server (its data was
    /// lost, and holders are putting their locks back). Looking marks a loss it finds.
    pub async fn grace_left_ms(&self) -> Result<u64> {
        Ok(self.server_changed().await?.1)
    }

    async fn restarted(&self) {
        crate::core::debug::log(format_args!("{} lost its data or changed (a restart or a failover): putting back the locks held here", self.inner.target));
        // a restarted server or a new primary may not know the scripts
        self.load_scripts().await;
        match self.hook() {
            Some(h) => (h.restarted)().await,
            None => self.reassert_held().await,
        }
    }

    /// Puts back every lock this store recorded, and settles the ones that could not be.
    async fn reassert_held(&self) {
        let after = format!("a restart of {}", self.inner.target);
        let listener = self.inner.lost.read().unwrap_or_else(|p| p.into_inner()).clone();
        for (ns, holds) in self.inner.held.snapshot() {
            let outcomes = match self.reassert(&ns, &holds).await {
                Ok(o) => o,
                Err(e) => {
                    // the next look finds the server changed again only if it did; say so now
                    eprintln!("[opencode-file-lock] could not put back the locks held on {}: {e}", self.inner.target);
                    *self.inner.seen.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    continue;
                }
            };
            for (h, outcome) in holds.iter().zip(outcomes) {
                if settle(&after, &ns, &h.rec, outcome, listener.as_ref()) {
                    self.inner.held.forget(&ns, &h.rec.path, Some(h.rec.token));
                }
            }
        }
    }

    /// Puts held locks back where the server lost them (all at once on the multiplexed
    /// connection): the same record and token, with the TTL each has left.
    pub async fn reassert(&self, ns: &str, holds: &[Held]) -> Result<Vec<Reasserted>> {
        futures_util::future::join_all(holds.iter().map(|h| self.reassert_one(ns, &h.rec, h.left_ms()))).await.into_iter().collect()
    }

    async fn reassert_one(&self, ns: &str, rec: &LockRecord, left_ms: u64) -> Result<Reasserted> {
        let json = serde_json::to_string(rec).map_err(|e| Error::backend(format!("cannot encode the lock record of {}: {e}", rec.path)))?;
        let mut inv = REASSERT.prepare_invoke();
        let (lock, t) = lock_key(ns, &rec.path);
        inv.key(lock).key(self.index(ns, t, &rec.session_id)).key(fence_key(t, ns)).key(self.whole(ns, t).claims);
        inv.arg(json).arg(left_ms).arg(&rec.session_id).arg(rec.token).arg(&rec.path);
        let reply: Vec<String> = self.script("re-assert", &inv).await?;
        Ok(match reply.first().map(String::as_str) {
            Some("kept") => Reasserted::Kept,
            Some("restored") => Reasserted::Restored,
            Some("expired") => Reasserted::Expired,
            Some("conflict") => Reasserted::Conflict { holder: reply.get(1).and_then(|h| serde_json::from_str(h).ok()).unwrap_or_default() },
            _ => return Err(Error::backend(format!("{} answered re-assert with {reply:?}", self.inner.target))),
        })
    }
}
