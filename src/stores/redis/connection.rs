//! Reaching Redis: a URL or host/port/credentials, TLS, and Sentinel (asking the sentinels for
//! the primary, and again after a failover). A store configured with sentinels only ever talks to
//! the primary they name: never to host/port, not even while no sentinel answers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisError};

use crate::core::config::RedisOptions;
use crate::core::error::{Error, Result};

use super::RedisStore;

/// What a Sentinel-backed store needs to find the primary again after a failover.
pub struct SentinelState {
    pub opts: RedisOptions,
    /// None until a sentinel has named one (a hybrid that started while none answered).
    pub primary: Mutex<Option<(String, u16)>>,
    pub resolving: AtomicBool,
}

/// The options with a URL's user, password, database and TLS written out, for connecting to the
/// primary the sentinels name (the URL's host is not where that is).
fn without_url(opts: &RedisOptions) -> Result<RedisOptions> {
    let Some(url) = &opts.url else { return Ok(opts.clone()) };
    let info = url_info(url)?;
    let s = info.redis_settings();
    Ok(RedisOptions {
        url: None,
        username: s.username().map(str::to_owned).or_else(|| opts.username.clone()),
        password: s.password().map(str::to_owned).or_else(|| opts.password.clone()),
        database: if s.db() != 0 { s.db() } else { opts.database },
        tls: opts.tls || matches!(info.addr(), ConnectionAddr::TcpTls { .. }),
        ..opts.clone()
    })
}

fn url_info(url: &str) -> Result<ConnectionInfo> {
    url.into_connection_info().map_err(|_| Error::invalid("REDIS_URL / url is not a valid Redis URL (redis://[user:password@]host:port/db; a password with / @ # or spaces percent-encoded, a port from 1 to 65535); its value is not shown, it may hold a password"))
}

/// A client for `info`, over TLS (trusting `tls_ca_file` when given) if the address says so.
fn client_for(info: ConnectionInfo, opts: &RedisOptions, target: &str) -> Result<redis::Client> {
    if matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
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
    .map_err(|e| Error::invalid(format!("{target}: {e}")))
}

fn tcp_info(host: &str, port: u16, tls: bool) -> Result<ConnectionInfo> {
    if tls {
        ConnectionAddr::TcpTls { host: host.to_owned(), port, insecure: false, tls_params: None }.into_connection_info()
    } else {
        (host, port).into_connection_info()
    }
    .map_err(|e| Error::invalid(format!("bad Redis address {host}:{port}: {e}")))
}

/// Asks each sentinel in turn for the current primary of the configured master name. Sentinels
/// are reached as the servers are: over TLS when TLS is on, with the sentinel password.
pub(super) async fn resolve_primary(opts: &RedisOptions) -> Result<(String, u16)> {
    let plain = without_url(opts)?;
    let timeout = Duration::from_millis(opts.connect_timeout_ms);
    let mut last = String::from("no sentinel configured");
    for (host, port) in &opts.sentinels {
        let mut info = tcp_info(host, *port, plain.tls)?;
        if let Some(pw) = &opts.sentinel_password {
            info = info.clone().set_redis_settings(info.redis_settings().clone().set_password(pw));
        }
        let client = client_for(info, &plain, &format!("sentinel {host}:{port}"))?;
        let ask = async {
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
    Err(Error::Unreachable(format!("no sentinel named a primary for {:?}: {last}", opts.sentinel_master)))
}

pub(super) fn connection_info(opts: &RedisOptions) -> Result<ConnectionInfo> {
    if let Some(url) = &opts.url {
        // a URL without credentials takes REDIS_USERNAME / REDIS_PASSWORD (the URL's win when it has them)
        let info = url_info(url)?;
        let mut settings = info.redis_settings().clone();
        if settings.password().is_none() {
            if let Some(p) = &opts.password {
                settings = settings.set_password(p);
            }
        }
        if settings.username().is_none() {
            if let Some(u) = &opts.username {
                settings = settings.set_username(u);
            }
        }
        return Ok(info.set_redis_settings(settings));
    }
    let info = tcp_info(&opts.host, opts.port, opts.tls)?;
    let mut settings = info.redis_settings().clone().set_db(opts.database);
    if let Some(u) = &opts.username {
        settings = settings.set_username(u);
    }
    if let Some(p) = &opts.password {
        settings = settings.set_password(p);
    }
    Ok(info.set_redis_settings(settings))
}

pub(super) fn describe(info: &ConnectionInfo) -> String {
    let db = info.redis_settings().db();
    match info.addr() {
        ConnectionAddr::Tcp(h, p) => format!("redis {h}:{p} db {db}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("redis (tls) {host}:{port} db {db}"),
        ConnectionAddr::Unix(path) => format!("redis unix:{} db {db}", path.display()),
        _ => format!("redis db {db}"),
    }
}

pub struct Prepared {
    pub wait: Option<(u32, Duration)>,
    pub db: i64,
    pub client: redis::Client,
    pub config: ConnectionManagerConfig,
    pub target: String,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
}

pub fn prepare(opts: &RedisOptions) -> Result<Prepared> {
    opts.remember_secrets();
    for (name, v) in [("connectTimeoutMs", opts.connect_timeout_ms), ("commandTimeoutMs", opts.command_timeout_ms)] {
        if v == 0 {
            return Err(Error::invalid(format!("{name} must be at least 1 millisecond")));
        }
    }
    let info = connection_info(opts)?;
    let target = describe(&info);
    let db = info.redis_settings().db();
    let client = client_for(info, opts, &target)?;
    let connect_timeout = Duration::from_millis(opts.connect_timeout_ms);
    let command_timeout = Duration::from_millis(opts.command_timeout_ms);
    // no response timeout in the manager: every call sets its own (`commands::run_for`), and
    // an acquire whose answer is late is given longer to be resolved
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(None)
        .set_number_of_retries(opts.max_retries)
        .set_min_delay(Duration::from_millis(opts.base_delay_ms.max(1)))
        .set_max_delay(Duration::from_millis(opts.max_delay_ms.max(1)));
    let wait = (opts.wait_replicas > 0).then(|| (opts.wait_replicas, Duration::from_millis(opts.wait_timeout_ms.max(1))));
    Ok(Prepared { wait, db, client, config, target, connect_timeout, command_timeout })
}

/// The options for talking to the primary at host:port, as the sentinel-backed store does.
fn primary_options(opts: &RedisOptions, host: &str, port: u16) -> Result<RedisOptions> {
    Ok(RedisOptions { host: host.to_owned(), port, sentinels: Vec::new(), ..without_url(opts)? })
}

/// What a store without sentinels names its server by, and a placeholder for one with them
/// until a sentinel answers.
fn sentinel_target(opts: &RedisOptions) -> String {
    let list: Vec<String> = opts.sentinels.iter().map(|(h, p)| format!("{h}:{p}")).collect();
    format!("redis primary {:?} of sentinels {}", opts.sentinel_master, list.join(","))
}

impl RedisStore {
    /// Connects, failing within the connect timeout when Redis cannot be reached. With sentinels,
    /// to the primary they name, and again to the new one after a failover.
    pub async fn connect(opts: &RedisOptions) -> Result<RedisStore> {
        if !opts.cluster.is_empty() {
            return Self::connect_cluster(opts).await;
        }
        let (direct, sentinel) = if opts.sentinels.is_empty() {
            (opts.clone(), None)
        } else {
            let (host, port) = resolve_primary(opts).await?;
            let direct = primary_options(opts, &host, port)?;
            (direct, Some(SentinelState { opts: opts.clone(), primary: Mutex::new(Some((host, port))), resolving: AtomicBool::new(false) }))
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
        let store = Self::from_parts(Some(Conn::Single(conn)), &p, None, sentinel, None);
        store.load_scripts().await;
        store.start_watching_restarts().await;
        Ok(store)
    }

    /// A store whose connection is made on first use: for a hybrid that starts while Redis is
    /// down. With sentinels, the primary is asked for on first use too; host/port are not used.
    pub async fn connect_lazy(opts: &RedisOptions, why: &Error) -> Result<RedisStore> {
        if !opts.cluster.is_empty() {
            return Self::connect_cluster_lazy(opts, why);
        }
        let store = if opts.sentinels.is_empty() {
            let p = prepare(opts)?;
            let conn = ConnectionManager::new_lazy_with_config(p.client.clone(), p.config.clone()).map_err(|e| connect_error(&p.target, &e))?;
            Self::from_parts(Some(Conn::Single(conn)), &p, Some(why), None, None)
        } else {
            // a placeholder client (never connected) until a sentinel names the primary
            let mut p = prepare(&primary_options(opts, "127.0.0.1", 0)?)?;
            p.target = sentinel_target(opts);
            let sentinel = SentinelState { opts: opts.clone(), primary: Mutex::new(None), resolving: AtomicBool::new(false) };
            let store = Self::from_parts(None, &p, Some(why), Some(sentinel), None);
            store.find_new_primary();
            store
        };
        store.start_watching_restarts().await;
        Ok(store)
    }

    /// With Sentinel: asks the sentinels (in the background, one at a time) which server is the
    /// primary now, and switches the connections to it if it changed.
    pub(super) fn find_new_primary(&self) {
        self.one_at_a_time(|i| i.sentinel.as_ref().map(|s| &s.resolving), |me| async move {
            let s = me.inner.sentinel.as_ref().expect("checked by one_at_a_time");
            let Ok((host, port)) = resolve_primary(&s.opts).await else { return };
            if *s.primary.lock().unwrap_or_else(|p| p.into_inner()) == Some((host.clone(), port)) {
                return;
            }
            if let Ok(p) = primary_options(&s.opts, &host, port).and_then(|o| prepare(&o)) {
                if let Ok(conn) = ConnectionManager::new_lazy_with_config(p.client.clone(), p.config.clone()) {
                    me.switch_server(Conn::Single(conn), p.client.clone());
                    *s.primary.lock().unwrap_or_else(|p| p.into_inner()) = Some((host, port));
                }
            }
        });
    }

    /// Runs `work` in a task, unless the one started through the same `busy` flag still runs or
    /// ended less than 200 ms ago: the next trouble tries again, but not in a tight loop.
    fn one_at_a_time<Fut>(&self, busy: fn(&super::Inner) -> Option<&AtomicBool>, work: impl FnOnce(RedisStore) -> Fut + Send + 'static)
    where
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let Some(flag) = busy(&self.inner) else { return };
        if flag.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            work(me.clone()).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Some(flag) = busy(&me.inner) {
                flag.store(false, Ordering::Release);
            }
        });
    }
}

pub(super) fn connect_error(target: &str, e: &RedisError) -> Error {
    let text = e.to_string();
    let auth = e.kind() == redis::ErrorKind::AuthenticationFailed
        || ["WRONGPASS", "NOAUTH", "invalid password", "invalid username-password"].iter().any(|m| text.contains(m));
    if auth {
        // answering, and refusing: not a reason to fail over
        Error::backend(format!("{target} refused the credentials (check REDIS_USERNAME / REDIS_PASSWORD)"))
    } else {
        Error::Unreachable(format!("cannot connect to {target}: {text}"))
    }
}

/// The connection every call goes through: one server's (a `ConnectionManager`, reconnecting by
/// itself), or a Cluster's (redis-rs follows MOVED/ASK and failovers by itself). Both multiplex.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(&'a mut self, pipeline: &'a redis::Pipeline, offset: usize, count: usize) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The node URLs of a Cluster as connection infos, with the options' credentials where a URL has none.
fn cluster_infos(opts: &RedisOptions) -> Result<Vec<ConnectionInfo>> {
    opts.cluster
        .iter()
        .map(|u| {
            let info = u
                .as_str()
                .into_connection_info()
                .map_err(|_| Error::invalid("cluster / REDIS_CLUSTER_NODES: a node is not a valid Redis URL (a password with / @ # or spaces must be percent-encoded); its value is not shown, it may hold a password"))?;
            let mut s = info.redis_settings().clone();
            if s.username().is_none() {
                if let Some(user) = &opts.username {
                    s = s.set_username(user);
                }
            }
            if s.password().is_none() {
                if let Some(pw) = &opts.password {
                    s = s.set_password(pw);
                }
            }
            let info = info.set_redis_settings(s);
            Ok(match (opts.tls, info.addr().clone()) {
                (true, ConnectionAddr::Tcp(host, port)) => tcp_info(&host, port, true)?.set_redis_settings(info.redis_settings().clone()),
                _ => info,
            })
        })
        .collect()
}

/// How a Cluster is named in messages: its first nodes, never with credentials.
fn cluster_target(infos: &[ConnectionInfo]) -> String {
    let addrs: Vec<String> = infos
        .iter()
        .map(|i| match i.addr() {
            ConnectionAddr::Tcp(h, p) => format!("{h}:{p}"),
            ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port} (tls)"),
            _ => "?".into(),
        })
        .collect();
    format!("redis cluster {}", addrs.join(","))
}

/// What a Cluster store keeps besides its connection: the client its connection is made from
/// (again, while none could be made yet), and a client per seed node for the release
/// announcements' subscriber (pub/sub messages reach every node of a Cluster).
pub struct ClusterState {
    pub client: redis::cluster::ClusterClient,
    pub seeds: Vec<redis::Client>,
    pub connecting: AtomicBool,
}

/// The options checked for a Cluster, and its client (no connection made yet).
fn cluster_client(opts: &RedisOptions) -> Result<(Prepared, ClusterState)> {
    if !opts.sentinels.is_empty() {
        return Err(Error::invalid("cluster and sentinels exclude each other: a Cluster fails over by itself"));
    }
    if opts.wait_replicas > 0 {
        return Err(Error::invalid("waitReplicas is not available with a cluster (WAIT acknowledges one node's writes, and an acquire may span nodes)"));
    }
    if opts.database != 0 || opts.url.is_some() {
        return Err(Error::invalid("with cluster, name the nodes in cluster (or REDIS_CLUSTER_NODES) only: a Cluster has one database, and url/host/port are not used"));
    }
    let mut p = prepare(&RedisOptions { cluster: Vec::new(), ..opts.clone() })?;
    let infos = cluster_infos(opts)?;
    p.target = cluster_target(&infos);
    let seeds = infos.iter().map(|i| client_for(i.clone(), opts, &p.target)).collect::<Result<Vec<_>>>()?;
    if let Some(first) = seeds.first() {
        p.client = first.clone();
    }
    let mut b = redis::cluster::ClusterClientBuilder::new(infos.clone())
        .connection_timeout(p.connect_timeout)
        .response_timeout(p.command_timeout + Duration::from_secs(3))
        .retries(opts.max_retries as u32)
        .min_retry_wait(opts.base_delay_ms.max(1))
        .max_retry_wait(opts.max_delay_ms.max(1));
    if let Some(u) = &opts.username {
        b = b.username(u);
    }
    if let Some(pw) = &opts.password {
        b = b.password(pw);
    }
    if opts.tls || infos.iter().any(|i| matches!(i.addr(), ConnectionAddr::TcpTls { .. })) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        b = b.tls(redis::TlsMode::Secure);
        if let Some(f) = &opts.tls_ca_file {
            let root_cert = std::fs::read(f).map_err(|e| Error::invalid(format!("cannot read the TLS CA file {f}: {e}")))?;
            b = b.certs(redis::TlsCertificates { client_tls: None, root_cert: Some(root_cert) });
        }
    }
    let client = b.build().map_err(|e| Error::invalid(format!("{}: {e}", p.target)))?;
    Ok((p, ClusterState { client, seeds, connecting: AtomicBool::new(false) }))
}

/// A connection to the Cluster, proven by a PING (credentials, and the slots served), within
/// the connect timeout.
async fn cluster_connection(client: &redis::cluster::ClusterClient, target: &str, timeout: Duration) -> Result<redis::cluster_async::ClusterConnection> {
    let too_slow = || Error::Timeout(format!("cannot connect to {target} within {} ms", timeout.as_millis()));
    let mut conn = tokio::time::timeout(timeout, client.get_async_connection()).await.map_err(|_| too_slow())?.map_err(|e| connect_error(target, &e))?;
    match tokio::time::timeout(timeout, redis::cmd("PING").query_async::<String>(&mut conn)).await {
        Err(_) => Err(too_slow()),
        Ok(Err(e)) => Err(connect_error(target, &e)),
        Ok(Ok(_)) => Ok(conn),
    }
}

impl RedisStore {
    /// Connects to a Redis Cluster through any of `opts.cluster`; fails within the connect
    /// timeout when none answers.
    pub async fn connect_cluster(opts: &RedisOptions) -> Result<RedisStore> {
        let (p, state) = cluster_client(opts)?;
        let conn = cluster_connection(&state.client, &p.target, p.connect_timeout).await?;
        let store = Self::from_parts(Some(Conn::Cluster(conn)), &p, None, None, Some(state));
        store.load_scripts().await;
        Ok(store)
    }

    /// A Cluster store with no connection yet (none of its nodes answered): each call finds it
    /// unreachable and has a connection tried in the background, until one is made.
    pub(super) fn connect_cluster_lazy(opts: &RedisOptions, why: &Error) -> Result<RedisStore> {
        let (p, state) = cluster_client(opts)?;
        let store = Self::from_parts(None, &p, Some(why), None, Some(state));
        store.connect_cluster_again();
        Ok(store)
    }

    /// Tries (in the background, one attempt at a time) to make the Cluster connection of a store
    /// that has none.
    pub(super) fn connect_cluster_again(&self) {
        self.one_at_a_time(|i| i.cluster.as_ref().map(|c| &c.connecting), |me| async move {
            let state = me.inner.cluster.as_ref().expect("checked by one_at_a_time");
            let timeout = me.inner.command_timeout.max(Duration::from_millis(500));
            match cluster_connection(&state.client, &me.inner.target, timeout).await {
                Ok(conn) => {
                    let seed = state.seeds.first().cloned().unwrap_or_else(|| me.inner.client.read().unwrap_or_else(|p| p.into_inner()).clone());
                    me.switch_server(Conn::Cluster(conn), seed);
                }
                Err(e) => *me.inner.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e.to_string(),
            }
        });
    }
}
