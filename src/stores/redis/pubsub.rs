//! Release announcements: one subscriber connection per store turns them into wake-ups for the
//! waiters and lost-lock watches of this process.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::RedisError;
use tokio::sync::Notify;

use super::{Inner, RedisStore};

impl RedisStore {
    /// Starts (once per store) the task that turns release announcements into wake-ups.
    pub(super) fn ensure_subscribed(&self) {
        if self.inner.subscribed.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(subscriber(Arc::downgrade(&self.inner), self.inner.shutdown.clone()));
    }

}

/// Listens on the release channel while the store lives, reconnecting after failures. Every
/// (re)subscription wakes all listeners: announcements made meanwhile were missed.
async fn subscriber(store: std::sync::Weak<Inner>, shutdown: Arc<Notify>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(inner) = store.upgrade() else { return };
        if inner.closed.load(Ordering::Relaxed) {
            return;
        }
        let client = inner.client.read().unwrap_or_else(|p| p.into_inner()).clone();
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
        tokio::select! {
            _ = shutdown.notified() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

