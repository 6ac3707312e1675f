//! Opening stores: option objects in, `NativeCache` out. Validation of shapes happens here once.

use std::collections::HashMap;
use std::time::Duration;

use napi_derive::napi;

use super::cache::NativeCache;
use super::error::{invalid, millis, to_napi};
use crate::core::config::{self, Backend, FailMode, RedisOptions};
use crate::core::handle::Handle;
use crate::core::lost::Spawn;
use crate::stores::{AnyStore, HybridStore, RedisStore, SharedStore};

#[napi(object)]
pub struct NativeRedisOptions {
    pub url: Option<String>,
    pub host: Option<String>,
    pub port: Option<u32>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub database: Option<u32>,
    pub tls: Option<bool>,
    pub connect_timeout_ms: Option<f64>,
    pub command_timeout_ms: Option<f64>,
    pub max_retries: Option<u32>,
    pub base_delay_ms: Option<f64>,
    pub max_delay_ms: Option<f64>,
    /// After each acquire, wait for this many replicas to acknowledge it (Redis WAIT).
    pub wait_replicas: Option<u32>,
    pub wait_timeout_ms: Option<f64>,
    /// Sentinels as "host:port" strings; with them, `host`/`port`/`url` are not used.
    pub sentinels: Option<Vec<String>>,
    /// The master name the sentinels monitor (default "mymaster").
    pub sentinel_master: Option<String>,
    pub sentinel_password: Option<String>,
    /// A PEM file of CA certificates to trust for TLS (`tls: true` or a rediss:// url).
    pub tls_ca_file: Option<String>,
    /// Redis Cluster nodes to start from ("redis://host:port" or "host:port").
    pub cluster: Option<Vec<String>>,
}

fn redis_options(o: NativeRedisOptions) -> napi::Result<RedisOptions> {
    let d = RedisOptions::default();
    let port = match o.port {
        None => d.port,
        Some(p) if (1..=65535).contains(&p) => p as u16,
        Some(p) => return Err(invalid(format!("port must be between 1 and 65535, got {p}"))),
    };
    Ok(RedisOptions {
        url: o.url,
        host: o.host.unwrap_or(d.host),
        port,
        username: o.username,
        password: o.password,
        database: o.database.map(i64::from).unwrap_or(d.database),
        tls: o.tls.unwrap_or(false),
        connect_timeout_ms: millis(o.connect_timeout_ms, "connectTimeoutMs")?.unwrap_or(d.connect_timeout_ms),
        command_timeout_ms: millis(o.command_timeout_ms, "commandTimeoutMs")?.unwrap_or(d.command_timeout_ms),
        max_retries: o.max_retries.map(|n| n as usize).unwrap_or(d.max_retries),
        base_delay_ms: millis(o.base_delay_ms, "baseDelayMs")?.unwrap_or(d.base_delay_ms),
        max_delay_ms: millis(o.max_delay_ms, "maxDelayMs")?.unwrap_or(d.max_delay_ms),
        wait_replicas: o.wait_replicas.unwrap_or(0),
        wait_timeout_ms: millis(o.wait_timeout_ms, "waitTimeoutMs")?.unwrap_or(d.wait_timeout_ms),
        sentinels: match o.sentinels {
            None => Vec::new(),
            Some(list) => config::parse_sentinels(&list.join(",")).map_err(|e| invalid(format!("sentinels {e}")))?,
        },
        sentinel_master: o.sentinel_master.unwrap_or(d.sentinel_master),
        sentinel_password: o.sentinel_password,
        tls_ca_file: o.tls_ca_file,
        cluster: match o.cluster {
            None => Vec::new(),
            Some(list) => config::parse_cluster_nodes(&list.join(",")).map_err(|e| invalid(format!("cluster {e}")))?,
        },
    })
}

/// Lost-lock watches run on the addon's tokio runtime.
fn spawner() -> Spawn {
    std::sync::Arc::new(|task| {
        napi::bindgen_prelude::spawn(task);
    })
}

fn cache(store: AnyStore, ns: Option<String>, default_ttl_ms: Option<f64>) -> napi::Result<NativeCache> {
    let ttl = millis(default_ttl_ms, "defaultTtlMs")?;
    let h = Handle::new(store, &ns.unwrap_or_default(), ttl, spawner()).map_err(to_napi)?;
    Ok(NativeCache::new(h))
}

/// The sled folder, shared by every process of the user: this process serves it, or is a client
/// of the one that does. Opening may wait for a process that is starting to serve it, so it runs
/// off the JS thread.
#[napi]
pub async fn open_sled(path: String, namespace_: Option<String>, default_ttl_ms: Option<f64>) -> napi::Result<NativeCache> {
    crate::core::envelope::validate_namespace(namespace_.as_deref().unwrap_or_default()).map_err(to_napi)?;
    millis(default_ttl_ms, "defaultTtlMs")?;
    let store = tokio::task::spawn_blocking(move || SharedStore::open(&path))
        .await
        .map_err(|e| invalid(format!("opening the sled folder failed: {e}")))?
        .map_err(to_napi)?;
    cache(AnyStore::Shared(store), namespace_, default_ttl_ms)
}

#[napi]
pub async fn connect_redis(options: NativeRedisOptions, namespace_: Option<String>, default_ttl_ms: Option<f64>) -> napi::Result<NativeCache> {
    crate::core::envelope::validate_namespace(namespace_.as_deref().unwrap_or_default()).map_err(to_napi)?;
    millis(default_ttl_ms, "defaultTtlMs")?;
    let store = RedisStore::connect(&redis_options(options)?).await.map_err(to_napi)?;
    cache(AnyStore::Redis(store), namespace_, default_ttl_ms)
}

#[napi(object)]
pub struct NativeHybridOptions {
    pub sled_path: String,
    /// "open" (default) or "closed"
    pub fail_mode: Option<String>,
    /// How often Redis is probed again while the fallback serves (default 1000 ms).
    pub recheck_ms: Option<f64>,
    pub debug: Option<bool>,
}

/// Redis primary with a sled fallback (see `HybridStore::open` for starting while Redis is down).
#[napi]
pub async fn open_hybrid(redis: NativeRedisOptions, hybrid: NativeHybridOptions, namespace_: Option<String>, default_ttl_ms: Option<f64>) -> napi::Result<NativeCache> {
    crate::core::envelope::validate_namespace(namespace_.as_deref().unwrap_or_default()).map_err(to_napi)?;
    millis(default_ttl_ms, "defaultTtlMs")?;
    let fail_mode = match hybrid.fail_mode.as_deref() {
        None | Some("open") => FailMode::Open,
        Some("closed") => FailMode::Closed,
        Some(other) => return Err(invalid(format!("failMode must be 'open' or 'closed', got {other:?}"))),
    };
    let recheck = Duration::from_millis(millis(hybrid.recheck_ms, "recheckMs")?.unwrap_or(1000));
    let opts = redis_options(redis)?;
    let store = HybridStore::open(&opts, &hybrid.sled_path, fail_mode, recheck, hybrid.debug.unwrap_or(false)).await.map_err(to_napi)?;
    cache(AnyStore::Hybrid(store), namespace_, default_ttl_ms)
}

#[napi(object)]
pub struct EnvConfig {
    /// "sled", "redis" or "hybrid"
    pub backend: String,
    pub sled_path: String,
    pub namespace: String,
    pub ttl_ms: f64,
    pub fail_mode: String,
    pub debug: bool,
    pub metrics: bool,
    pub notes: Vec<String>,
    pub redis: NativeRedisOptions,
}

/// Reads the environment variables of the deployment guide (passed in as an object, so callers can
/// hand over `process.env`). A bad value is an EINVAL naming the variable.
#[napi]
pub fn config_from_env(env: HashMap<String, String>) -> napi::Result<EnvConfig> {
    let c = config::config_from_env(&env).map_err(to_napi)?;
    let r = c.redis;
    Ok(EnvConfig {
        backend: match c.backend {
            Backend::Sled => "sled",
            Backend::Redis => "redis",
            Backend::Hybrid => "hybrid",
        }
        .into(),
        sled_path: c.sled_path,
        namespace: c.namespace,
        ttl_ms: c.ttl_ms as f64,
        fail_mode: if c.fail_mode == FailMode::Open { "open" } else { "closed" }.into(),
        debug: c.debug,
        metrics: c.metrics,
        notes: c.notes,
        redis: NativeRedisOptions {
            url: r.url,
            host: Some(r.host),
            port: Some(r.port as u32),
            username: r.username,
            password: r.password,
            database: Some(r.database as u32),
            tls: Some(r.tls),
            connect_timeout_ms: Some(r.connect_timeout_ms as f64),
            command_timeout_ms: Some(r.command_timeout_ms as f64),
            max_retries: Some(r.max_retries as u32),
            base_delay_ms: Some(r.base_delay_ms as f64),
            max_delay_ms: Some(r.max_delay_ms as f64),
            wait_replicas: Some(r.wait_replicas),
            wait_timeout_ms: Some(r.wait_timeout_ms as f64),
            sentinels: (!r.sentinels.is_empty()).then(|| r.sentinels.iter().map(|(h, p)| format!("{h}:{p}")).collect()),
            sentinel_master: Some(r.sentinel_master),
            sentinel_password: r.sentinel_password,
            tls_ca_file: r.tls_ca_file,
            cluster: (!r.cluster.is_empty()).then_some(r.cluster),
        },
    })
}
