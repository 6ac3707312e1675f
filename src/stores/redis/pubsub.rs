//! Release announcements: one subscriber connection per store turns them into wake-ups for the
//! waiters and lost-lock watches of this process.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::RedisError;
use tokio::sync::Notify;

use super::{Inner, RedisStore};

/// How long the watching marker lives unless refreshed: a watcher that dies stops the
/// announcements within this.
const WATCH_MARK_MS: u64 = 30_000;

impl RedisStore {
    /// Starts (once per store) the task that turns release announcements into wake-ups.
    pub(super) fn ensure_subscribed(&self) {
        if self.inner.subscribed.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(subscriber(Arc::downgrade(&self.inner), self.inner.shutdown.clone()));
    }

    /// A change watch opened: the first one keeps the watching marker alive on the server (the
    /// scripts announce changes only while it exists), refreshed well before it lapses.
    pub(super) fn start_watching(&self) {
        if self.inner.watchers.fetch_add(1, Ordering::AcqRel) > 0 {
            return;
        }
        let (store, shutdown) = (Arc::downgrade(&self.inner), self.inner.shutdown.clone());
        tokio::spawn(async move {
            loop {
                let Some(inner) = store.upgrade() else { return };
                if inner.closed.load(Ordering::Relaxed) || inner.watchers.load(Ordering::Acquire) == 0 {
                    return;
                }
                let me = RedisStore { inner };
                if let Ok(mut c) = me.conn() {
                    let mut set = redis::cmd("SET");
                    set.arg(super::keys::watching_key()).arg(1).arg("PX").arg(WATCH_MARK_MS);
                    let _ = tokio::time::timeout(me.inner.command_timeout, set.query_async::<()>(&mut c)).await;
                }
                drop(me);
                tokio::select! {
                    _ = shutdown.notified() => return,
                    _ = tokio::time::sleep(Duration::from_millis(WATCH_MARK_MS / 3)) => {}
                }
            }
        });
    }

    pub(super) fn stop_watching(&self) {
        self.inner.watchers.fetch_sub(1, Ordering::AcqRel);
    }

}

/// Listens on the release channel while the store lives, reconnecting after failures. Every
/// (re)subscription wakes all listeners: announcements made meanwhile were missed.
async fn subscriber(store: std::sync::Weak<Inner>, shutdown: Arc<Notify>) {
    let mut backoff = Duration::from_millis(50);
    // on a Cluster, any node hears every announcement (pub/sub messages go to all nodes): a seed
    // that fails gives way to the next
    let mut seed = 0usize;
    loop {
        let Some(inner) = store.upgrade() else { return };
        if inner.closed.load(Ordering::Relaxed) {
            return;
        }
        let client = match &inner.cluster {
            Some(c) if !c.seeds.is_empty() => c.seeds[seed % c.seeds.len()].clone(),
            _ => inner.client.read().unwrap_or_else(|p| p.into_inner()).clone(),
        };
        let (channel, timeout, bus) = (inner.channel.clone(), inner.connect_timeout, inner.bus.clone());
        drop(inner); // the task must not keep the store alive
        let connect = async {
            let mut ps = client.get_async_pubsub().await?;
            ps.subscribe(&channel).await?;
            Ok::<_, RedisError>(ps)
        };
        let subscribed = match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(ps)) => Some(ps),
            Ok(Err(e)) if e.code() == Some("NOPERM") => {
                // an ACL user without the channel: waiters look once a second instead; asking
                // again would only open a refused connection every second
                crate::core::debug::log(format_args!("release announcements are off: the Redis user may not subscribe to them ({e})"));
                return;
            }
            _ => None,
        };
        if let Some(ps) = subscribed {
            backoff = Duration::from_millis(50);
            bus.notify_all();
            let mut messages = ps.into_on_message();
            loop {
                tokio::select! {
                    _ = shutdown.notified() => return,
                    m = messages.next() => match m {
                        Some(msg) => {
                            if let Ok(key) = msg.get_payload::<String>() {
                                bus.notify(&key);
                            }
                        }
                        None => break, // connection lost: reconnect
                    },
                }
            }
        }
        seed += 1;
        tokio::select! {
            _ = shutdown.notified() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

