//! Redis: one shared `ConnectionManager` (reconnects by itself), every multi-step lock operation a
//! Lua script run atomically on the server, every call bounded by the configured timeout. Every
//! expiry is decided on the server's clock (`TIME` inside the scripts).
//!
//! - `connection`: reaching the server (URL, TLS, Sentinel, Cluster) and following a failover;
//! - `keys`: the key layout, every key of one lock in its hash slot;
//! - `acquire`: acquiring, one script per slot with all or nothing across them;
//! - `nodes`: walking the key space of one server or of every Cluster primary;
//! - `commands`: running one interaction under the timeout, with its metrics and error mapping;
//! - `lane`: the direct connection of a call alone in flight (no thread hop at one caller);
//! - `loading`: keeping the scripts loaded on the server (no NOSCRIPT in the steady state);
//! - `pubsub`: release announcements turned into wake-ups;
//! - `restart`: noticing that the server lost its data, and putting back the locks held here;
//! - `store`: the `Store` implementation, on the scripts in `scripts` and `lua/`.

mod acquire;
mod commands;
mod connection;
mod keys;
mod lane;
mod loading;
mod nodes;
mod pubsub;
mod restart;
mod scripts;
mod store;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Notify;

use crate::core::error::{Error, Result};
use crate::core::held::HeldLocks;
use crate::core::lost::LostListener;
use crate::core::wake::WakeBus;

use connection::{ClusterState, Conn, Prepared, SentinelState};
use keys::INTERNAL;

pub use lane::first_poll;
pub use restart::RestartHook;

#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// None until a sentinel names a primary; replaced when Sentinel names a new one.
    conn: RwLock<Option<Conn>>,
    /// Set for a Redis Cluster: its seed nodes (the subscriber's choices).
    cluster: Option<ClusterState>,
    /// WAIT's own connection (made on first use): a WAIT blocks its connection, and must not hold
    /// up the other calls.
    wait_conn: Mutex<Option<ConnectionManager>>,
    /// The direct connection of a call alone in flight (see `lane`).
    lane: Arc<lane::Lane>,
    /// The client connections are made from (replaced with the primary's).
    client: RwLock<redis::Client>,
    config: ConnectionManagerConfig,
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
    subscribed: AtomicBool,
    /// How many change watches are open here: while any is, the watching marker is kept alive.
    watchers: AtomicUsize,
    connect_timeout: Duration,
    /// Tells the background tasks (subscriber, restart watch) to stop.
    shutdown: Arc<Notify>,
    /// The locks this process holds through this store, put back when the server loses them.
    held: Arc<HeldLocks>,
    /// What runs when the server lost its data: re-asserting `held`, or the hybrid's own.
    restart_hook: RwLock<Option<RestartHook>>,
    /// What the server said about itself at the last look: its epoch marker and run id.
    seen: Mutex<Option<(String, String)>>,
    lost: RwLock<Option<LostListener>>,
    /// When every script was last loaded (see `loading`).
    scripts_loaded: tokio::sync::Mutex<std::time::Instant>,
    /// The internal key names of each namespace used so far.
    ns_keys: RwLock<std::collections::HashMap<String, Arc<keys::NsKeys>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.notify_waiters();
    }
}

impl RedisStore {
    pub(super) fn from_parts(conn: Option<Conn>, p: &Prepared, unreachable: Option<&Error>, sentinel: Option<SentinelState>, cluster: Option<ClusterState>) -> RedisStore {
        RedisStore {
            inner: Arc::new(Inner {
                conn: RwLock::new(conn),
                cluster,
                wait_conn: Mutex::new(None),
                lane: Arc::default(),
                client: RwLock::new(p.client.clone()),
                config: p.config.clone(),
                sentinel,
                target: p.target.clone(),
                command_timeout: p.command_timeout,
                unreachable: AtomicBool::new(unreachable.is_some()),
                last_error: Mutex::new(unreachable.map(|e| e.to_string()).unwrap_or_default()),
                closed: AtomicBool::new(false),
                wait: p.wait,
                channel: format!("{INTERNAL}released:{}", p.db),
                bus: WakeBus::new(),
                subscribed: AtomicBool::new(false),
                watchers: AtomicUsize::new(0),
                connect_timeout: p.connect_timeout,
                shutdown: Arc::new(Notify::new()),
                held: Arc::default(),
                restart_hook: RwLock::new(None),
                seen: Mutex::new(None),
                lost: RwLock::new(None),
                scripts_loaded: tokio::sync::Mutex::new(std::time::Instant::now()),
                ns_keys: RwLock::default(),
            }),
        }
    }

    /// The primary in use now, `host:port` (Sentinel), for health reports.
    pub(super) fn primary(&self) -> Option<String> {
        self.inner.sentinel.as_ref().map(|s| match &*s.primary.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((h, p)) => format!("{h}:{p}"),
            None => "unknown (no sentinel has answered yet)".to_owned(),
        })
    }

    pub(super) fn conn(&self) -> Result<Conn> {
        if self.inner.closed.load(Ordering::Relaxed) {
            return Err(Error::Closed(format!("the cache on {} is closed", self.inner.target)));
        }
        match &*self.inner.conn.read().unwrap_or_else(|p| p.into_inner()) {
            Some(c) => Ok(c.clone()),
            None if self.is_cluster() => {
                self.connect_cluster_again();
                let last = self.inner.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
                Err(Error::Unreachable(format!("{} is unreachable: no node has answered yet ({last})", self.inner.target)))
            }
            None => {
                self.find_new_primary();
                Err(Error::Unreachable(format!("{} is unreachable: no sentinel has named the primary yet", self.inner.target)))
            }
        }
    }

    /// WAIT's connection, made on first use from the current client.
    pub(super) fn wait_conn(&self) -> Result<ConnectionManager> {
        let mut w = self.inner.wait_conn.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = &*w {
            return Ok(c.clone());
        }
        let client = self.inner.client.read().unwrap_or_else(|p| p.into_inner()).clone();
        let c = ConnectionManager::new_lazy_with_config(client, self.inner.config.clone()).map_err(|e| connection::connect_error(&self.inner.target, &e))?;
        *w = Some(c.clone());
        Ok(c)
    }

    /// Points every connection at another server (Sentinel named a new primary).
    pub(super) fn switch_server(&self, conn: Conn, client: redis::Client) {
        *self.inner.conn.write().unwrap_or_else(|p| p.into_inner()) = Some(conn);
        *self.inner.client.write().unwrap_or_else(|p| p.into_inner()) = client;
        *self.inner.wait_conn.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.inner.lane.reset();
        let me = self.clone();
        tokio::spawn(async move { me.load_scripts().await });
    }

    /// Whether this store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner.cluster.is_some()
    }

    /// The internal key names of namespace `ns`, made on first use.
    pub(super) fn keys(&self, ns: &str) -> Arc<keys::NsKeys> {
        if let Some(k) = self.inner.ns_keys.read().unwrap_or_else(|p| p.into_inner()).get(ns) {
            return k.clone();
        }
        let k = Arc::new(keys::NsKeys::of(ns));
        self.inner.ns_keys.write().unwrap_or_else(|p| p.into_inner()).insert(ns.to_owned(), k.clone());
        k
    }

    /// The locks this process holds through the store (the hybrid keeps its own instead).
    pub fn held(&self) -> &Arc<HeldLocks> {
        &self.inner.held
    }
}
