//! Redis: one shared `ConnectionManager` (reconnects by itself), every multi-step lock operation a
//! Lua script run atomically on the server, every call bounded by the configured timeout.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisError, Script, Value as RValue};
use serde_json::{json, Value};

use crate::core::config::{redact_url, RedisOptions};
use crate::core::envelope::{encode, namespace_prefix, storage_key, validate_key, Entry};
use crate::core::error::{Error, Result};
use crate::core::lock::{locked_error, parse_record, LockFilter, LockRecord, LockRequest};
use crate::core::store::{BatchOp, Page, Store};
use crate::core::metrics;
use crate::core::time::now_ms;
use crate::core::wait::{queued_error, Attempt, Waiter, WAITER_LEASE_MS};
use crate::core::wake::{Listening, WakeBus};
use futures_util::StreamExt;
use tokio::sync::Notify;

/// Internal keys (fencing counters, session indexes, waiter queues) start with U+241E, which no
/// namespaced key can start with unless its namespace does; scans skip them. common.lua spells
/// the queue prefixes out too.
const INTERNAL: &str = "\u{241E}ofl:";

fn lock_script(body: &str) -> Script {
    Script::new(&format!("{}\n{}", include_str!("lua/common.lua"), body))
}

static ACQUIRE: LazyLock<Script> = LazyLock::new(|| lock_script(include_str!("lua/acquire.lua")));
static RELEASE: LazyLock<Script> = LazyLock::new(|| lock_script(include_str!("lua/release.lua")));
static RELEASE_SESSION: LazyLock<Script> = LazyLock::new(|| lock_script(include_str!("lua/release_session.lua")));
static RELEASE_IF: LazyLock<Script> = LazyLock::new(|| lock_script(include_str!("lua/release_if.lua")));
static RENEW: LazyLock<Script> = LazyLock::new(|| lock_script(include_str!("lua/renew.lua")));
static PUT_LOCK_IF_ABSENT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/put_lock_if_absent.lua")));
static DEL_IF_EQUAL: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/del_if_equal.lua")));
static FORCE_RELEASE: LazyLock<Script> = LazyLock::new(|| lock_script(include_str!("lua/force_release.lua")));
static LEAVE_QUEUE: LazyLock<Script> = LazyLock::new(|| lock_script(include_str!("lua/leave_queue.lua")));

fn fence_key(ns: &str) -> String {
    format!("{INTERNAL}fence:{ns}")
}

fn ticket_key(ns: &str) -> String {
    format!("{INTERNAL}ticket:{ns}")
}

fn session_index_prefix(ns: &str) -> String {
    format!("{INTERNAL}sess:{ns}\u{241F}")
}

/// SCAN MATCH treats `*?[]\` specially; a namespace may contain them.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

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

/// What a Sentinel-backed store needs to find the primary again after a failover.
struct SentinelState {
    opts: RedisOptions,
    primary: Mutex<(String, u16)>,
    resolving: AtomicBool,
}

/// Asks each sentinel in turn for the current primary of the configured master name.
async fn resolve_primary(opts: &RedisOptions) -> Result<(String, u16)> {
    let timeout = Duration::from_millis(opts.connect_timeout_ms);
    let mut last = String::from("no sentinel configured");
    for (host, port) in &opts.sentinels {
        let mut info = (host.as_str(), *port).into_connection_info().map_err(|e| Error::invalid(format!("bad sentinel {host}:{port}: {e}")))?;
        if let Some(pw) = &opts.sentinel_password {
            info = info.clone().set_redis_settings(info.redis_settings().clone().set_password(pw));
        }
        let ask = async {
            let client = redis::Client::open(info)?;
            let mut c = client.get_multiplexed_async_connection().await?;
            redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(&opts.sentinel_master).query_async::<Option<(String, String)>>(&mut c).await
        };
        match tokio::time::timeout(timeout, ask).await {
            Ok(Ok(Some((h, p)))) => {
                if let Ok(p) = p.parse() {
                    return Ok((h, p));
                }
            }
            Ok(Ok(None)) => last = format!("sentinel {host}:{port} does not know master {:?}", opts.sentinel_master),
            Ok(Err(e)) => last = format!("sentinel {host}:{port}: {e}"),
            Err(_) => last = format!("sentinel {host}:{port} did not answer within {} ms", timeout.as_millis()),
        }
    }
    Err(Error::backend(format!("no sentinel named a primary for {:?}: {last}", opts.sentinel_master)))
}

fn connection_info(opts: &RedisOptions) -> Result<ConnectionInfo> {
    if let Some(url) = &opts.url {
        return url
            .as_str()
            .into_connection_info()
            .map_err(|_| Error::invalid(format!("REDIS_URL / url is not a valid Redis URL: {}", redact_url(url))));
    }
    let info = if opts.tls {
        ConnectionAddr::TcpTls { host: opts.host.clone(), port: opts.port, insecure: false, tls_params: None }.into_connection_info()
    } else {
        (opts.host.as_str(), opts.port).into_connection_info()
    }
    .map_err(|e| Error::invalid(format!("bad Redis host/port: {e}")))?;
    let mut settings = info.redis_settings().clone().set_db(opts.database);
    if let Some(u) = &opts.username {
        settings = settings.set_username(u);
    }
    if let Some(p) = &opts.password {
        settings = settings.set_password(p);
    }
    Ok(info.set_redis_settings(settings))
}

fn describe(info: &ConnectionInfo) -> String {
    let db = info.redis_settings().db();
    match info.addr() {
        ConnectionAddr::Tcp(h, p) => format!("redis {h}:{p} db {db}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("redis (tls) {host}:{port} db {db}"),
        ConnectionAddr::Unix(path) => format!("redis unix:{} db {db}", path.display()),
        _ => format!("redis db {db}"),
    }
}

fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() || e.is_unrecoverable_error()
}

struct Prepared {
    wait: Option<(u32, Duration)>,
    db: i64,
    client: redis::Client,
    config: ConnectionManagerConfig,
    target: String,
    connect_timeout: Duration,
    command_timeout: Duration,
}

fn prepare(opts: &RedisOptions) -> Result<Prepared> {
    for (name, v) in [("connectTimeoutMs", opts.connect_timeout_ms), ("commandTimeoutMs", opts.command_timeout_ms)] {
        if v == 0 {
            return Err(Error::invalid(format!("{name} must be at least 1 millisecond")));
        }
    }
    let info = connection_info(opts)?;
    let target = describe(&info);
    let db = info.redis_settings().db();
    let client = if matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
        // rustls needs a process-wide crypto provider; installing it twice is harmless
        let _ = rustls::crypto::ring::default_provider().install_default();
        let root_cert = match &opts.tls_ca_file {
            None => None,
            Some(f) => Some(std::fs::read(f).map_err(|e| Error::invalid(format!("cannot read the TLS CA file {f}: {e}")))?),
        };
        redis::Client::build_with_tls(info, redis::TlsCertificates { client_tls: None, root_cert })
    } else {
        redis::Client::open(info)
    }
    .map_err(|e| Error::invalid(format!("{target}: {e}")))?;
    let connect_timeout = Duration::from_millis(opts.connect_timeout_ms);
    let command_timeout = Duration::from_millis(opts.command_timeout_ms);
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(command_timeout))
        .set_number_of_retries(opts.max_retries)
        .set_min_delay(Duration::from_millis(opts.base_delay_ms.max(1)))
        .set_max_delay(Duration::from_millis(opts.max_delay_ms.max(1)));
    let wait = (opts.wait_replicas > 0).then(|| (opts.wait_replicas, Duration::from_millis(opts.wait_timeout_ms.max(1))));
    Ok(Prepared { wait, db, client, config, target, connect_timeout, command_timeout })
}

impl RedisStore {
    fn from_parts(conn: ConnectionManager, p: &Prepared, unreachable: Option<&Error>, sentinel: Option<SentinelState>) -> RedisStore {
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

    /// Connects, failing within the connect timeout when Redis cannot be reached. With sentinels,
    /// to the primary they name, and again to the new one after a failover.
    pub async fn connect(opts: &RedisOptions) -> Result<RedisStore> {
        let (direct, sentinel) = if opts.sentinels.is_empty() {
            (opts.clone(), None)
        } else {
            let (host, port) = resolve_primary(opts).await?;
            let direct = RedisOptions { host: host.clone(), port, url: None, ..opts.clone() };
            (direct, Some(SentinelState { opts: opts.clone(), primary: Mutex::new((host, port)), resolving: AtomicBool::new(false) }))
        };
        let p = prepare(&direct)?;
        let too_slow = || Error::Timeout(format!("cannot connect to {} within {} ms", p.target, p.connect_timeout.as_millis()));
        // One direct attempt first: it fails fast with the real reason (refused, wrong password)
        // where the manager would retry with backoff until the timeout.
        // A PING proves the credentials too: a server whose default user is off accepts the
        // connection and refuses the first command.
        let probe = async {
            let mut c = p.client.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<String>(&mut c).await
        };
        match tokio::time::timeout(p.connect_timeout, probe).await {
            Err(_) => return Err(too_slow()),
            Ok(Err(e)) => return Err(connect_error(&p.target, &e)),
            Ok(Ok(_)) => {}
        }
        let conn = tokio::time::timeout(p.connect_timeout, ConnectionManager::new_with_config(p.client.clone(), p.config.clone()))
            .await
            .map_err(|_| too_slow())?
            .map_err(|e| connect_error(&p.target, &e))?;
        Ok(Self::from_parts(conn, &p, None, sentinel))
    }

    /// A store whose connection is made on first use: for a hybrid that starts while Redis is down.
    pub fn connect_lazy(opts: &RedisOptions, why: &Error) -> Result<RedisStore> {
        let p = prepare(opts)?;
        let conn = ConnectionManager::new_lazy_with_config(p.client.clone(), p.config.clone())
            .map_err(|e| connect_error(&p.target, &e))?;
        Ok(Self::from_parts(conn, &p, Some(why), None))
    }

    /// With Sentinel: asks the sentinels (in the background, one at a time) which server is the
    /// primary now, and switches the connection to it if it changed.
    fn find_new_primary(&self) {
        let Some(sentinel) = &self.inner.sentinel else { return };
        if sentinel.resolving.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let s = me.inner.sentinel.as_ref().expect("checked above");
            if let Ok((host, port)) = resolve_primary(&s.opts).await {
                let changed = *s.primary.lock().unwrap_or_else(|p| p.into_inner()) != (host.clone(), port);
                if changed {
                    let direct = RedisOptions { host: host.clone(), port, url: None, ..s.opts.clone() };
                    if let Ok(p) = prepare(&direct) {
                        if let Ok(conn) = ConnectionManager::new_lazy_with_config(p.client.clone(), p.config.clone()) {
                            *me.inner.conn.write().unwrap_or_else(|p| p.into_inner()) = conn;
                            *me.inner.pubsub_client.write().unwrap_or_else(|p| p.into_inner()) = p.client.clone();
                            *s.primary.lock().unwrap_or_else(|p| p.into_inner()) = (host, port);
                        }
                    }
                }
            }
            // let the next trouble ask again, but not in a tight loop
            tokio::time::sleep(Duration::from_millis(200)).await;
            s.resolving.store(false, Ordering::Release);
        });
    }

    /// The primary in use now, `host:port` (Sentinel), for health reports.
    fn primary(&self) -> Option<String> {
        self.inner.sentinel.as_ref().map(|s| {
            let (h, p) = s.primary.lock().unwrap_or_else(|p| p.into_inner()).clone();
            format!("{h}:{p}")
        })
    }

    fn conn(&self) -> Result<ConnectionManager> {
        if self.inner.closed.load(Ordering::Relaxed) {
            return Err(Error::Closed(format!("the cache on {} is closed", self.inner.target)));
        }
        Ok(self.inner.conn.read().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// Runs one Redis interaction under the command timeout and maps its failure once.
    async fn run<T>(&self, what: &str, fut: impl Future<Output = redis::RedisResult<T>>) -> Result<T> {
        let started = Instant::now();
        let r = self.run_timed(what, fut).await;
        let status = match &r {
            Ok(_) => "ok",
            Err(Error::Timeout(_)) => "timeout",
            Err(Error::Backend(m)) if m.contains("unreachable") => "connection_error",
            Err(_) => "error",
        };
        metrics::redis_operation(what, status, started.elapsed());
        r
    }

    async fn run_timed<T>(&self, what: &str, fut: impl Future<Output = redis::RedisResult<T>>) -> Result<T> {
        let inner = &self.inner;
        match tokio::time::timeout(inner.command_timeout, fut).await {
            Ok(Ok(v)) => {
                inner.unreachable.store(false, Ordering::Relaxed);
                Ok(v)
            }
            Ok(Err(e)) => {
                if e.is_timeout() {
                    Err(Error::Timeout(format!("{} did not answer {what} within {} ms", inner.target, inner.command_timeout.as_millis())))
                } else if is_connection_error(&e) || e.code() == Some("READONLY") {
                    // READONLY: the server we talk to was demoted to a replica by a failover
                    self.find_new_primary();
                    inner.unreachable.store(true, Ordering::Relaxed);
                    *inner.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e.to_string();
                    Err(Error::backend(format!("{} is unreachable ({what}): {e}", inner.target)))
                } else {
                    Err(Error::backend(format!("{} failed {what}: {e}", inner.target)))
                }
            }
            Err(_) if inner.unreachable.load(Ordering::Relaxed) => {
                self.find_new_primary();
                let last = inner.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
                Err(Error::backend(format!(
                    "{} is unreachable: no answer to {what} within {} ms while reconnecting (last error: {last})",
                    inner.target,
                    inner.command_timeout.as_millis()
                )))
            }
            Err(_) => Err(Error::Timeout(format!(
                "{} did not answer {what} within {} ms",
                inner.target,
                inner.command_timeout.as_millis()
            ))),
        }
    }

    pub async fn ping(&self) -> Result<Duration> {
        let mut c = self.conn()?;
        let t = Instant::now();
        let _: String = self.run("PING", redis::cmd("PING").query_async(&mut c)).await?;
        Ok(t.elapsed())
    }

    /// Every key of a namespace (internal keys excluded), one SCAN page at a time.
    async fn scan_keys(&self, ns: &str, cursor: u64, count: usize) -> Result<(u64, Vec<String>)> {
        let mut c = self.conn()?;
        let pattern = format!("{}*", glob_escape(&namespace_prefix(ns)));
        let (next, keys): (u64, Vec<String>) = self
            .run(
                "SCAN",
                redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(count).query_async(&mut c),
            )
            .await?;
        Ok((next, keys.into_iter().filter(|k| !k.starts_with(INTERNAL)).collect()))
    }

    /// Every (key, raw value) of the namespace. Lock namespaces hold thousands of keys, not
    /// millions, so collecting them is cheaper than streaming through callbacks.
    async fn all_entries(&self, ns: &str) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut cursor = 0;
        loop {
            let (next, keys) = self.scan_keys(ns, cursor, 500).await?;
            if !keys.is_empty() {
                let mut c = self.conn()?;
                let values: Vec<Option<String>> = self.run("MGET", c.mget(&keys)).await?;
                out.extend(keys.into_iter().zip(values).filter_map(|(k, v)| Some((k, v?))));
            }
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }
}

impl RedisStore {
    /// Redis WAIT after a grant: if fewer than `replicas` acknowledge it within `timeout`, the grant
    /// is undone and the acquire fails, so a failover to a replica cannot forget it.
    async fn wait_for_replicas(&self, ns: &str, recs: &[LockRecord], replicas: u32, timeout: Duration) -> Result<()> {
        let mut c = self.conn()?;
        let acked = tokio::time::timeout(timeout + self.inner.command_timeout, redis::cmd("WAIT").arg(replicas).arg(timeout.as_millis() as u64).query_async::<i64>(&mut c)).await;
        let acked = match acked {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(Error::backend(format!("{} failed WAIT: {e}", self.inner.target))),
            Err(_) => 0,
        };
        if acked >= replicas as i64 {
            return Ok(());
        }
        for rec in recs {
            let _ = self.release(ns, &rec.path, &rec.session_id).await;
        }
        Err(Error::backend(format!(
            "{} granted the lock but only {acked} of {replicas} replica(s) acknowledged it within {} ms; it was released again",
            self.inner.target,
            timeout.as_millis()
        )))
    }

    /// Writes a lock record (as the wire envelope) unless the key exists; true when written.
    pub async fn put_lock_if_absent(&self, ns: &str, rec: &LockRecord) -> Result<bool> {
        let now = now_ms();
        let envelope = encode(&serde_json::to_string(rec).unwrap_or_default(), Some(rec.expires_at));
        let mut c = self.conn()?;
        let n: i64 = self
            .run(
                "recover lock",
                PUT_LOCK_IF_ABSENT
                    .key(storage_key(ns, &rec.path))
                    .key(format!("{}{}", session_index_prefix(ns), rec.session_id))
                    .arg(envelope)
                    .arg(px_for(rec.expires_at, now))
                    .arg(&rec.path)
                    .invoke_async(&mut c),
            )
            .await?;
        Ok(n == 1)
    }

    /// Deletes a lock only if `session_id` holds it (whatever its hold count).
    pub async fn delete_lock_of(&self, ns: &str, path: &str, session_id: &str) -> Result<bool> {
        let mut c = self.conn()?;
        let n: i64 = self
            .run(
                "recover release",
                RELEASE_IF
                    .key(storage_key(ns, path))
                    .arg(session_id)
                    .arg("")
                    .arg(now_ms())
                    .arg(session_index_prefix(ns))
                    .arg(path)
                    .arg(&self.inner.channel)
                    .invoke_async(&mut c),
            )
            .await?;
        Ok(n == 1)
    }
}

impl RedisStore {
    /// Starts (once per store) the task that turns release announcements into wake-ups.
    fn ensure_subscribed(&self) {
        if self.inner.subscribed.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(subscriber(Arc::downgrade(&self.inner), self.inner.shutdown.clone()));
    }

    /// One acquire try. With a waiter, a refusal queues it (see `core::wait`); without one, a
    /// refusal is just that.
    async fn acquire_script(&self, ns: &str, paths: &[String], req: &LockRequest, waiter: Option<&Waiter>) -> Result<Attempt> {
        let now = now_ms();
        // each path's waiter queue is named from its lock key inside the script (common.lua)
        let mut inv = ACQUIRE.prepare_invoke();
        for p in paths {
            inv.key(storage_key(ns, p));
        }
        inv.key(fence_key(ns)).key(format!("{}{}", session_index_prefix(ns), req.session_id)).key(ticket_key(ns));
        inv.arg(&req.session_id).arg(&req.agent_id).arg(now).arg(req.ttl_ms);
        inv.arg(waiter.map_or("", |w| w.id.as_str())).arg(waiter.map_or(0, |w| w.ticket)).arg(WAITER_LEASE_MS);
        for p in paths {
            inv.arg(p);
        }
        let mut c = self.conn()?;
        let reply: Vec<String> = self.run("acquire", inv.invoke_async(&mut c)).await?;
        match reply.first().map(String::as_str) {
            Some("ok") => {
                let recs: Vec<LockRecord> = reply[1..]
                    .iter()
                    .map(|r| serde_json::from_str(r).map_err(|e| Error::backend(format!("acquire returned a bad record: {e}"))))
                    .collect::<Result<_>>()?;
                if let Some((replicas, timeout)) = self.inner.wait {
                    self.wait_for_replicas(ns, &recs, replicas, timeout).await?;
                }
                Ok(Attempt::Granted(recs))
            }
            Some(kind @ ("locked" | "queued")) if reply.len() == 5 => {
                let holder: Value = serde_json::from_str(&reply[2]).unwrap_or(Value::Null);
                let error = if kind == "locked" { locked_error(&reply[1], holder, now) } else { queued_error(&reply[1], holder) };
                let retry_at = reply[3].parse::<f64>().map(|x| x as i64).ok().filter(|x| *x > 0).unwrap_or(now + crate::core::wait::REFRESH_MS);
                Ok(Attempt::Blocked { error, retry_at, ticket: reply[4].parse().unwrap_or(0) })
            }
            Some("corrupt") if reply.len() == 2 => Err(not_a_lock(&reply[1])),
            _ => Err(Error::backend(format!("{} answered acquire with {reply:?}", self.inner.target))),
        }
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
        let client = inner.pubsub_client.read().unwrap_or_else(|p| p.into_inner()).clone();
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

fn connect_error(target: &str, e: &RedisError) -> Error {
    let text = e.to_string();
    let auth = e.kind() == redis::ErrorKind::AuthenticationFailed
        || ["WRONGPASS", "NOAUTH", "invalid password", "invalid username-password"].iter().any(|m| text.contains(m));
    if auth {
        Error::backend(format!("{target} refused the credentials (check REDIS_USERNAME / REDIS_PASSWORD)"))
    } else {
        Error::backend(format!("cannot connect to {target}: {text}"))
    }
}

/// What a script's {'corrupt'} answer means: the value there is not a lock record.
fn not_a_lock(path: &str) -> Error {
    Error::Corrupt(format!("the record at {path:?} is not a lock record; it was left in place"))
}

/// A script's answer that is a lock record (JSON), nothing (false), or {'corrupt'}.
fn record_reply(r: RValue, what: &str, path: &str) -> Result<Option<LockRecord>> {
    match r {
        RValue::BulkString(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::backend(format!("{what} returned a bad record: {e}"))),
        RValue::Array(_) => Err(not_a_lock(path)),
        _ => Ok(None),
    }
}

fn px_for(expires_at: i64, now: i64) -> i64 {
    (expires_at - now).max(1)
}

impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn get(&self, ns: &str, key: &str) -> Result<Option<Entry>> {
        validate_key(key)?;
        let k = storage_key(ns, key);
        let mut c = self.conn()?;
        let raw: Option<String> = self.run("GET", c.get(&k)).await?;
        let Some(raw) = raw else { return Ok(None) };
        let entry = Entry::decode_stored(&k, raw.as_bytes())?;
        Ok(entry.is_live(now_ms()).then_some(entry))
    }

    async fn set(&self, ns: &str, key: &str, value_json: &str, expires_at: Option<i64>) -> Result<()> {
        validate_key(key)?;
        let k = storage_key(ns, key);
        let v = encode(value_json, expires_at);
        let mut c = self.conn()?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(&k).arg(v);
        if let Some(x) = expires_at {
            cmd.arg("PX").arg(px_for(x, now_ms()));
        }
        let _: () = self.run("SET", cmd.query_async(&mut c)).await?;
        Ok(())
    }

    async fn del(&self, ns: &str, key: &str) -> Result<bool> {
        validate_key(key)?;
        let mut c = self.conn()?;
        let n: i64 = self.run("DEL", c.del(storage_key(ns, key))).await?;
        Ok(n > 0)
    }

    async fn batch(&self, ns: &str, ops: &[BatchOp]) -> Result<()> {
        let now = now_ms();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for op in ops {
            match op {
                BatchOp::Put { key, value_json, expires_at } => {
                    validate_key(key)?;
                    let cmd = pipe.cmd("SET").arg(storage_key(ns, key)).arg(encode(value_json, *expires_at));
                    if let Some(x) = expires_at {
                        cmd.arg("PX").arg(px_for(*x, now));
                    }
                    cmd.ignore();
                }
                BatchOp::Del { key } => {
                    validate_key(key)?;
                    pipe.cmd("DEL").arg(storage_key(ns, key)).ignore();
                }
            }
        }
        let mut c = self.conn()?;
        let _: () = self.run("MULTI/EXEC batch", pipe.query_async(&mut c)).await?;
        Ok(())
    }

    async fn scan(&self, ns: &str, cursor: Option<&str>, count: usize) -> Result<Page> {
        let start: u64 = match cursor {
            None => 0,
            Some(c) => c.parse().map_err(|_| Error::invalid("bad entries() cursor"))?,
        };
        let (next, keys) = self.scan_keys(ns, start, count.max(1)).await?;
        let prefix_len = namespace_prefix(ns).len();
        let mut page = Page { items: Vec::new(), cursor: (next != 0).then(|| next.to_string()) };
        if keys.is_empty() {
            return Ok(page);
        }
        let mut c = self.conn()?;
        let values: Vec<Option<String>> = self.run("MGET", c.mget(&keys)).await?;
        let now = now_ms();
        for (k, v) in keys.into_iter().zip(values) {
            if let Some(entry) = v.and_then(|v| Entry::decode(v.as_bytes()).ok()).filter(|e| e.is_live(now)) {
                page.items.push((k[prefix_len..].to_owned(), entry.value.get().to_owned(), entry.expires_at));
            }
        }
        Ok(page)
    }

    async fn sweep_expired(&self, ns: &str) -> Result<u64> {
        let now = now_ms();
        let mut n = 0;
        for (k, v) in self.all_entries(ns).await? {
            if matches!(Entry::decode(v.as_bytes()), Ok(e) if !e.is_live(now)) {
                let mut c = self.conn()?;
                let d: i64 = self.run("sweep", DEL_IF_EQUAL.key(&k).arg(&v).invoke_async(&mut c)).await?;
                n += d as u64;
            }
        }
        Ok(n)
    }

    async fn clear(&self, ns: &str) -> Result<u64> {
        let mut n = 0;
        let mut cursor = 0;
        loop {
            let (next, keys) = self.scan_keys(ns, cursor, 500).await?;
            if !keys.is_empty() {
                let mut c = self.conn()?;
                let d: i64 = self.run("DEL", c.del(&keys)).await?;
                n += d as u64;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(n)
    }

    async fn acquire(&self, ns: &str, paths: &[String], req: &LockRequest) -> Result<Vec<LockRecord>> {
        match self.acquire_script(ns, paths, req, None).await? {
            Attempt::Granted(recs) => Ok(recs),
            Attempt::Blocked { error, .. } => Err(error),
        }
    }

    async fn try_acquire_queued(&self, ns: &str, paths: &[String], req: &LockRequest, waiter: &Waiter) -> Result<Attempt> {
        self.acquire_script(ns, paths, req, Some(waiter)).await
    }

    async fn leave_queue(&self, ns: &str, paths: &[String], waiter: &Waiter) -> Result<()> {
        let mut inv = LEAVE_QUEUE.prepare_invoke();
        for p in paths {
            inv.key(storage_key(ns, p));
        }
        inv.arg(&waiter.id).arg(&self.inner.channel);
        let mut c = self.conn()?;
        let _: i64 = self.run("leave queue", inv.invoke_async(&mut c)).await?;
        Ok(())
    }

    fn listen(&self, ns: &str, paths: &[String], wake: &Arc<Notify>) -> Vec<Listening> {
        self.ensure_subscribed();
        vec![self.inner.bus.listen(paths.iter().map(|p| storage_key(ns, p)).collect(), wake)]
    }

    async fn force_release(&self, ns: &str, path: &str) -> Result<Option<LockRecord>> {
        let mut c = self.conn()?;
        let r: RValue = self
            .run(
                "force release",
                FORCE_RELEASE
                    .key(storage_key(ns, path))
                    .arg(now_ms())
                    .arg(session_index_prefix(ns))
                    .arg(path)
                    .arg(&self.inner.channel)
                    .invoke_async(&mut c),
            )
            .await?;
        record_reply(r, "force release", path)
    }

    async fn release(&self, ns: &str, path: &str, session_id: &str) -> Result<bool> {
        let mut c = self.conn()?;
        let r: i64 = self
            .run(
                "release",
                RELEASE
                    .key(storage_key(ns, path))
                    .key(format!("{}{session_id}", session_index_prefix(ns)))
                    .arg(session_id)
                    .arg(now_ms())
                    .arg(path)
                    .arg(&self.inner.channel)
                    .invoke_async(&mut c),
            )
            .await?;
        match r {
            -1 => Err(not_a_lock(path)),
            r => Ok(r == 1),
        }
    }

    async fn release_all(&self, ns: &str, filter: &LockFilter) -> Result<u64> {
        let agent = filter.agent_id.as_deref().unwrap_or("");
        if let Some(sid) = &filter.session_id {
            // One round trip, whatever the number of locks: the session index names them.
            let mut c = self.conn()?;
            let n: i64 = self
                .run(
                    "releaseAll",
                    RELEASE_SESSION
                        .key(format!("{}{sid}", session_index_prefix(ns)))
                        .arg(namespace_prefix(ns))
                        .arg(sid)
                        .arg(agent)
                        .arg(now_ms())
                        .arg(&self.inner.channel)
                        .invoke_async(&mut c),
                )
                .await?;
            return Ok(n as u64);
        }
        let prefix_len = namespace_prefix(ns).len();
        let now = now_ms();
        let mut n = 0;
        for (k, v) in self.all_entries(ns).await? {
            let Ok(entry) = Entry::decode(v.as_bytes()) else { continue };
            let Ok(rec) = parse_record(&k, &entry) else { continue };
            if entry.is_live(now) && filter.matches(&rec) {
                let mut c = self.conn()?;
                let d: i64 = self
                    .run(
                        "releaseAll",
                        RELEASE_IF
                            .key(&k)
                            .arg("")
                            .arg(agent)
                            .arg(now)
                            .arg(session_index_prefix(ns))
                            .arg(&k[prefix_len..])
                            .arg(&self.inner.channel)
                            .invoke_async(&mut c),
                    )
                    .await?;
                n += d as u64;
            }
        }
        Ok(n)
    }

    async fn renew(&self, ns: &str, path: &str, session_id: &str, ttl_ms: u64) -> Result<Option<LockRecord>> {
        let mut c = self.conn()?;
        let r: RValue = self
            .run(
                "renew",
                RENEW
                    .key(storage_key(ns, path))
                    .key(format!("{}{session_id}", session_index_prefix(ns)))
                    .arg(session_id)
                    .arg(now_ms())
                    .arg(ttl_ms)
                    .invoke_async(&mut c),
            )
            .await?;
        record_reply(r, "renew", path)
    }

    async fn list_locks(&self, ns: &str, filter: &LockFilter) -> Result<Vec<LockRecord>> {
        let now = now_ms();
        let mut out = Vec::new();
        for (k, v) in self.all_entries(ns).await? {
            let Ok(entry) = Entry::decode(v.as_bytes()) else { continue };
            let Ok(rec) = parse_record(&k, &entry) else { continue };
            if entry.is_live(now) && (rec.expires_at == 0 || rec.expires_at > now) && filter.matches(&rec) {
                out.push(rec);
            }
        }
        Ok(out)
    }

    async fn health(&self) -> Result<Value> {
        let latency = self.ping().await?;
        let mut c = self.conn()?;
        let info: String = self.run("INFO memory", redis::cmd("INFO").arg("memory").query_async(&mut c)).await?;
        let used_memory = info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse::<u64>().ok());
        let keys: i64 = self.run("DBSIZE", redis::cmd("DBSIZE").query_async(&mut c)).await?;
        Ok(json!({
            "backend": "redis",
            "healthy": true,
            "connected": true,
            "server": self.inner.target,
            "sentinelPrimary": self.primary(),
            "latencyMs": latency.as_secs_f64() * 1000.0,
            "usedMemoryBytes": used_memory,
            "keyCount": keys,
        }))
    }

    async fn close(&self) -> Result<()> {
        // The connection closes when the last clone of the manager is dropped.
        self.inner.closed.store(true, Ordering::Relaxed);
        self.inner.shutdown.notify_one();
        Ok(())
    }
}
