//! Redis: one shared `ConnectionManager` (reconnects by itself), every multi-step lock operation a
//! Lua script run atomically on the server, every call bounded by the configured timeout.
//!
//! - `connection`: reaching the server (URL, TLS, Sentinel) and following a failover;
//! - `commands`: running one interaction under the timeout, with its metrics and error mapping;
//! - `pubsub`: release announcements turned into wake-ups;
//! - `store`: the `Store` implementation, on the scripts in `scripts` and `lua/`.

mod commands;
mod connection;
mod keys;
mod pubsub;
mod scripts;
mod store;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::Notify;

use crate::core::error::{Error, Result};
use crate::core::wake::WakeBus;

use connection::{Prepared, SentinelState};
use keys::INTERNAL;

#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Replaced when Sentinel names a new primary.
    conn: std::sync::RwLock<ConnectionManager>,
    sentinel: Option<SentinelState>,
    /// `redis 127.0.0.1:6379 db 0`: how errors name the server, never with credentials.
    target: String,
    command_timeout: Duration,
    /// Set while the last attempt to talk to Redis failed at the connection level: a timeout
    /// then means "unreachable" (EBACKEND), not "slow" (ETIMEDOUT).
    unreachable: AtomicBool,
    last_error: Mutex<String>,
    closed: AtomicBool,
    /// (replicas, timeout): acquire waits for this acknowledgement (Redis WAIT).
    wait: Option<(u32, Duration)>,
    /// Where release scripts announce a freed lock (its storage key), per database: pub/sub
    /// channels are server-wide.
    channel: String,
    /// Waiters and lost-lock watches of this process, woken by the subscriber.
    bus: Arc<WakeBus>,
    /// The client the subscriber connects with (replaced when Sentinel names a new primary).
    pubsub_client: std::sync::RwLock<redis::Client>,
    subscribed: AtomicBool,
    connect_timeout: Duration,
    /// Tells the subscriber task to let go of its connection.
    shutdown: Arc<Notify>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.notify_one();
    }
}

impl RedisStore {
    pub(super) fn from_parts(conn: ConnectionManager, p: &Prepared, unreachable: Option<&Error>, sentinel: Option<SentinelState>) -> RedisStore {
        RedisStore {
            inner: Arc::new(Inner {
                conn: std::sync::RwLock::new(conn),
                sentinel,
                target: p.target.clone(),
                command_timeout: p.command_timeout,
                unreachable: AtomicBool::new(unreachable.is_some()),
                last_error: Mutex::new(unreachable.map(|e| e.to_string()).unwrap_or_default()),
                closed: AtomicBool::new(false),
                wait: p.wait,
                channel: format!("{INTERNAL}released:{}", p.db),
                bus: WakeBus::new(),
                pubsub_client: std::sync::RwLock::new(p.client.clone()),
                subscribed: AtomicBool::new(false),
                connect_timeout: p.connect_timeout,
                shutdown: Arc::new(Notify::new()),
            }),
        }
    }

    /// The primary in use now, `host:port` (Sentinel), for health reports.
    pub(super) fn primary(&self) -> Option<String> {
        self.inner.sentinel.as_ref().map(|s| {
            let (h, p) = s.primary.lock().unwrap_or_else(|p| p.into_inner()).clone();
            format!("{h}:{p}")
        })
    }

    pub(super) fn conn(&self) -> Result<ConnectionManager> {
        if self.inner.closed.load(Ordering::Relaxed) {
            return Err(Error::Closed(format!("the cache on {} is closed", self.inner.target)));
        }
        Ok(self.inner.conn.read().unwrap_or_else(|p| p.into_inner()).clone())
    }

}
