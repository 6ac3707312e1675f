//! Reaching Redis: a URL or host/port/credentials, TLS, and Sentinel (asking the sentinels for
//! the primary, and again after a failover).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisError};

use crate::core::config::{redact_url, RedisOptions};
use crate::core::error::{Error, Result};

use super::RedisStore;

/// What a Sentinel-backed store needs to find the primary again after a failover.
pub struct SentinelState {
    pub opts: RedisOptions,
    pub primary: Mutex<(String, u16)>,
    pub resolving: AtomicBool,
}

/// Asks each sentinel in turn for the current primary of the configured master name.
pub(super) async fn resolve_primary(opts: &RedisOptions) -> Result<(String, u16)> {
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

pub(super) fn connection_info(opts: &RedisOptions) -> Result<ConnectionInfo> {
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
    pub(super) fn find_new_primary(&self) {
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

}

pub(super) fn connect_error(target: &str, e: &RedisError) -> Error {
    let text = e.to_string();
    let auth = e.kind() == redis::ErrorKind::AuthenticationFailed
        || ["WRONGPASS", "NOAUTH", "invalid password", "invalid username-password"].iter().any(|m| text.contains(m));
    if auth {
        Error::backend(format!("{target} refused the credentials (check REDIS_USERNAME / REDIS_PASSWORD)"))
    } else {
        Error::backend(format!("cannot connect to {target}: {text}"))
    }
}

