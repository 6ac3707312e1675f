//! Configuration from the environment (names as the deployment guide gives them) and from options objects.
//! A bad value fails at start with a message naming the variable, never showing a secret.

use std::collections::HashMap;

use super::error::{Error, Result};
use super::lock::{check_ttl, DEFAULT_LOCK_TTL_MS, MAX_TTL_MS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sled,
    Redis,
    Hybrid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Serve from sled while Redis is down (locks are then local to this machine).
    Open,
    /// Refuse while Redis is down (strict exclusion across machines).
    Closed,
}

/// How to reach Redis. `Debug` is written by hand so the password never reaches a log.
#[derive(Clone, PartialEq)]
pub struct RedisOptions {
    pub url: Option<String>,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub database: i64,
    pub tls: bool,
    pub connect_timeout_ms: u64,
    pub command_timeout_ms: u64,
    pub max_retries: usize,
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    /// After an acquire, wait for this many replicas to acknowledge it (Redis WAIT); 0: don't.
    pub wait_replicas: u32,
    pub wait_timeout_ms: u64,
    /// Sentinels to ask for the current primary of `sentinel_master` (empty: connect directly).
    pub sentinels: Vec<(String, u16)>,
    pub sentinel_master: String,
    pub sentinel_password: Option<String>,
    /// A PEM file of CA certificates to trust for TLS instead of the system's.
    pub tls_ca_file: Option<String>,
    /// Redis Cluster nodes to start from (`redis://host:port` or `host:port`; empty: no Cluster).
    pub cluster: Vec<String>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            url: None,
            host: "127.0.0.1".into(),
            port: 6379,
            username: None,
            password: None,
            database: 0,
            tls: false,
            connect_timeout_ms: 5000,
            command_timeout_ms: 5000,
            max_retries: 10,
            base_delay_ms: 100,
            max_delay_ms: 3000,
            wait_replicas: 0,
            wait_timeout_ms: 1000,
            sentinels: Vec::new(),
            cluster: Vec::new(),
            sentinel_master: "mymaster".into(),
            sentinel_password: None,
            tls_ca_file: None,
        }
    }
}

impl RedisOptions {
    /// Every password these options carry (in fields or in the URL), so no message shows one.
    pub fn remember_secrets(&self) {
        for s in [&self.password, &self.sentinel_password].into_iter().flatten() {
            super::secrets::remember(s);
        }
        for url in self.url.iter().chain(&self.cluster) {
            // the userinfo runs to the last '@' (malformed URLs too: `reddis://u:p w@h`, `redis:/u:pw@h`)
            let rest = url.split_once("://").map_or_else(|| url.split_once(':').map_or("", |(_, r)| r.trim_start_matches('/')), |(_, r)| r);
            if let Some(pw) = rest.rsplit_once('@').and_then(|(userinfo, _)| userinfo.split_once(':')).map(|(_, pw)| pw) {
                super::secrets::remember(pw);
            }
        }
    }
}

impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOptions")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("tls", &self.tls)
            .field("sentinels", &self.sentinels)
            .field("cluster", &self.cluster.iter().map(|u| redact_url(u)).collect::<Vec<_>>())
            .field("sentinel_master", &self.sentinel_master)
            .finish_non_exhaustive()
    }
}

pub use super::secrets::redact_url;

#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub backend: Backend,
    pub sled_path: String,
    pub namespace: String,
    pub ttl_ms: u64,
    pub redis: RedisOptions,
    pub fail_mode: FailMode,
    pub debug: bool,
    /// ENABLE_METRICS (default on; metrics.rs reads the switch itself).
    pub metrics: bool,
    /// One-line notes about variables that are accepted but change nothing here (said once).
    pub notes: Vec<String>,
}

fn parse_num<T: std::str::FromStr>(env: &HashMap<String, String>, name: &str) -> Result<Option<T>> {
    match env.get(name).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse::<T>()
            .map(Some)
            .map_err(|_| Error::invalid(format!("{name} must be a non-negative whole number, got {v:?}"))),
    }
}

fn parse_bool(env: &HashMap<String, String>, name: &str) -> Result<Option<bool>> {
    match env.get(name).map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(v) => match v.as_str() {
            "1" | "true" | "yes" | "on" => Ok(Some(true)),
            "0" | "false" | "no" | "off" => Ok(Some(false)),
            _ => Err(Error::invalid(format!("{name} must be true or false, got {v:?}"))),
        },
    }
}

/// The per-user default folder for the embedded store: under XDG_STATE_HOME or HOME. With
/// neither there is none: a shared temporary folder is never used (another user could have made
/// it first, or a symlink in its place).
pub fn default_sled_path(env: &HashMap<String, String>) -> Result<String> {
    let non_empty = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
    if let Some(state) = non_empty("XDG_STATE_HOME") {
        return Ok(format!("{state}/opencode-file-lock/locks"));
    }
    if let Some(home) = non_empty("HOME").or_else(|| non_empty("USERPROFILE")) {
        return Ok(format!("{home}/.local/state/opencode-file-lock/locks"));
    }
    Err(Error::invalid(
        "the lock folder's default place is under XDG_STATE_HOME or HOME, and neither is set: set FILE_LOCK_PATH to a folder of your own (a shared temporary folder is never used: another user could have made it, or a link in its place)",
    ))
}

pub fn redis_from_env(env: &HashMap<String, String>) -> Result<RedisOptions> {
    let opts = redis_options_from_env(env)?;
    opts.remember_secrets();
    Ok(opts)
}

fn redis_options_from_env(env: &HashMap<String, String>) -> Result<RedisOptions> {
    let d = RedisOptions::default();
    let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
    let url = get("REDIS_URL");
    if let Some(u) = &url {
        if !(u.starts_with("redis://") || u.starts_with("rediss://") || u.starts_with("unix://") || u.starts_with("redis+unix://")) {
            // its value is not shown: a malformed URL's password cannot be told from the rest
            return Err(Error::invalid(
                "REDIS_URL must start with redis://, rediss:// or unix:// (redis://[user:password@]host:port/db; a password with / @ # or spaces percent-encoded); its value is not shown, it may hold a password",
            ));
        }
    }
    Ok(RedisOptions {
        url,
        host: get("REDIS_HOST").unwrap_or(d.host),
        port: parse_num(env, "REDIS_PORT")?.unwrap_or(d.port),
        username: get("REDIS_USERNAME"),
        password: get("REDIS_PASSWORD"),
        database: parse_num(env, "REDIS_DATABASE")?.unwrap_or(d.database),
        tls: parse_bool(env, "REDIS_TLS")?.unwrap_or(false),
        connect_timeout_ms: parse_num(env, "REDIS_CONNECT_TIMEOUT")?.unwrap_or(d.connect_timeout_ms),
        command_timeout_ms: parse_num(env, "REDIS_COMMAND_TIMEOUT")?.unwrap_or(d.command_timeout_ms),
        max_retries: parse_num(env, "REDIS_MAX_RETRIES")?.unwrap_or(d.max_retries),
        base_delay_ms: parse_num(env, "REDIS_BASE_DELAY")?.unwrap_or(d.base_delay_ms),
        max_delay_ms: parse_num(env, "REDIS_MAX_DELAY")?.unwrap_or(d.max_delay_ms),
        wait_replicas: parse_num(env, "REDIS_WAIT_REPLICAS")?.unwrap_or(d.wait_replicas),
        wait_timeout_ms: parse_num(env, "REDIS_WAIT_TIMEOUT")?.unwrap_or(d.wait_timeout_ms),
        sentinels: match get("REDIS_SENTINELS") {
            None => Vec::new(),
            Some(list) => parse_sentinels(&list).map_err(|e| Error::invalid(format!("REDIS_SENTINELS {e}")))?,
        },
        sentinel_master: get("REDIS_SENTINEL_MASTER").unwrap_or(d.sentinel_master),
        sentinel_password: get("REDIS_SENTINEL_PASSWORD"),
        tls_ca_file: get("REDIS_TLS_CA"),
        cluster: match get("REDIS_CLUSTER_NODES") {
            None => Vec::new(),
            Some(list) => parse_cluster_nodes(&list).map_err(|e| Error::invalid(format!("REDIS_CLUSTER_NODES {e}")))?,
        },
    })
}

/// `redis://host:port,host:port,...` (or bare `host:port`) -> node URLs. Credentials and TLS come
/// from the other options when a node's URL has none.
pub fn parse_cluster_nodes(list: &str) -> std::result::Result<Vec<String>, String> {
    let nodes: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|n| {
            if n.contains("://") {
                return Ok(n.to_owned());
            }
            let (h, p) = n.rsplit_once(':').ok_or_else(|| format!("must be redis://host:port or host:port, comma separated; got {n:?}"))?;
            p.parse::<u16>().map_err(|_| format!("has a bad port in {n:?}"))?;
            Ok(format!("redis://{h}:{p}"))
        })
        .collect::<std::result::Result<_, String>>()?;
    if nodes.is_empty() {
        return Err("names no node".into());
    }
    Ok(nodes)
}

/// `host:port,host:port` -> [(host, port)].
pub fn parse_sentinels(list: &str) -> std::result::Result<Vec<(String, u16)>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|hp| {
            let (h, p) = hp.rsplit_once(':').ok_or_else(|| format!("must be host:port[,host:port...], got {hp:?}"))?;
            let port = p.parse::<u16>().map_err(|_| format!("has a bad port in {hp:?}"))?;
            Ok((h.to_owned(), port))
        })
        .collect()
}

/// FILE_LOCK_CACHE_BACKEND, with the deployment guide's feature flags: USE_REDIS_CACHE (true
/// means redis when no backend is named) and ENABLE_DISTRIBUTED_LOCKS (true: locks shared between
/// machines, so redis or hybrid; false: this machine only, so sled). Contradictions are errors.
fn backend_from_env(env: &HashMap<String, String>) -> Result<Backend> {
    let named = match env.get("FILE_LOCK_CACHE_BACKEND").map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") => None,
        Some("sled") | Some("leveldb") => Some(Backend::Sled),
        Some("redis") => Some(Backend::Redis),
        Some("hybrid") => Some(Backend::Hybrid),
        Some(other) => {
            return Err(Error::invalid(format!(
                "FILE_LOCK_CACHE_BACKEND must be sled, redis or hybrid (leveldb means sled), got {other:?}"
            )))
        }
    };
    let use_redis = parse_bool(env, "USE_REDIS_CACHE")?;
    let backend = match (named, use_redis) {
        (Some(Backend::Sled), Some(true)) | (Some(Backend::Redis | Backend::Hybrid), Some(false)) => {
            return Err(Error::invalid(format!(
                "USE_REDIS_CACHE={} contradicts FILE_LOCK_CACHE_BACKEND={}: unset one of them",
                use_redis.unwrap_or_default(),
                env["FILE_LOCK_CACHE_BACKEND"].trim()
            )))
        }
        (Some(b), _) => b,
        (None, Some(true)) => Backend::Redis,
        (None, _) => Backend::Sled,
    };
    match (parse_bool(env, "ENABLE_DISTRIBUTED_LOCKS")?, backend) {
        (Some(true), Backend::Sled) => Err(Error::invalid(
            "ENABLE_DISTRIBUTED_LOCKS=true asks for locks shared between machines, which the sled store (shared by the processes of one machine) cannot give: set FILE_LOCK_CACHE_BACKEND=redis or hybrid (and REDIS_URL), or unset ENABLE_DISTRIBUTED_LOCKS",
        )),
        (Some(false), Backend::Redis | Backend::Hybrid) => Err(Error::invalid(
            "ENABLE_DISTRIBUTED_LOCKS=false asks for locks on this machine only, but the configured backend (FILE_LOCK_CACHE_BACKEND or USE_REDIS_CACHE) shares them through Redis: unset one of them",
        )),
        _ => Ok(backend),
    }
}

/// REDIS_POOL_MIN/MAX/TIMEOUT size a connection pool; one multiplexed connection has none to
/// size. Checked like any number, then named in a note rather than silently dropped.
fn pool_note(env: &HashMap<String, String>) -> Result<Option<String>> {
    let mut set = Vec::new();
    for name in ["REDIS_POOL_MIN", "REDIS_POOL_MAX", "REDIS_POOL_TIMEOUT"] {
        if parse_num::<u64>(env, name)?.is_some() {
            set.push(name);
        }
    }
    Ok((!set.is_empty()).then(|| {
        format!(
            "{} accepted and not used: each process keeps one multiplexed Redis connection that carries every call at once, so there is no pool to size",
            set.join(", ") + if set.len() == 1 { " is" } else { " are" }
        )
    }))
}

pub fn config_from_env(env: &HashMap<String, String>) -> Result<CacheConfig> {
    let backend = backend_from_env(env)?;
    let fail_mode = match env.get("FILE_LOCK_FAIL_MODE").map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("open") => FailMode::Open,
        Some("closed") => FailMode::Closed,
        Some(other) => return Err(Error::invalid(format!("FILE_LOCK_FAIL_MODE must be open or closed, got {other:?}"))),
    };
    let ttl_ms = parse_num(env, "FILE_LOCK_TTL_MS")?.unwrap_or(DEFAULT_LOCK_TTL_MS);
    check_ttl(ttl_ms).map_err(|_| Error::invalid(format!("FILE_LOCK_TTL_MS must be between 1 and {MAX_TTL_MS} milliseconds (24.8 days), got {ttl_ms}")))?;
    let redis = if backend == Backend::Sled { RedisOptions::default() } else { redis_from_env(env)? };
    let debug = parse_bool(env, "DEBUG_FILE_LOCK_CACHE")?.or(parse_bool(env, "DEBUG_MODE")?).unwrap_or(false);
    Ok(CacheConfig {
        backend,
        // none without FILE_LOCK_PATH, XDG_STATE_HOME or HOME: empty, and refused by whatever would
        // open a folder (openCache says why), since a path given in code may still come
        sled_path: match env.get("FILE_LOCK_PATH").filter(|v| !v.is_empty()) {
            Some(p) => p.clone(),
            None => default_sled_path(env).unwrap_or_default(),
        },
        namespace: env.get("FILE_LOCK_NAMESPACE").filter(|v| !v.is_empty()).cloned().unwrap_or_else(|| "locks".into()),
        ttl_ms,
        redis,
        fail_mode,
        debug,
        metrics: parse_bool(env, "ENABLE_METRICS")?.unwrap_or(true),
        notes: pool_note(env)?.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let mut e: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        e.entry("HOME".into()).or_insert_with(|| "/home/u".into());
        e
    }

    #[test]
    fn no_home_no_default_folder_and_never_a_shared_temporary_one() {
        let bare: HashMap<String, String> = HashMap::from([("TMPDIR".to_owned(), "/tmp".to_owned())]);
        assert_eq!(config_from_env(&bare).unwrap().sled_path, "", "no folder, rather than a shared one");
        let e = default_sled_path(&bare).unwrap_err();
        assert_eq!(e.code(), "EINVAL");
        assert!(e.to_string().contains("set FILE_LOCK_PATH"), "{e}");
        let with_path = HashMap::from([("FILE_LOCK_PATH".to_owned(), "/srv/locks".to_owned())]);
        assert_eq!(config_from_env(&with_path).unwrap().sled_path, "/srv/locks");
        let redis_only = HashMap::from([("FILE_LOCK_CACHE_BACKEND".to_owned(), "redis".to_owned())]);
        assert!(config_from_env(&redis_only).is_ok(), "Redis alone needs no folder");
    }

    #[test]
    fn defaults_are_sled_locks_five_minutes() {
        let c = config_from_env(&env(&[("HOME", "/home/u")])).unwrap();
        assert_eq!(c.backend, Backend::Sled);
        assert_eq!(c.namespace, "locks");
        assert_eq!(c.ttl_ms, 300_000);
        assert_eq!(c.sled_path, "/home/u/.local/state/opencode-file-lock/locks");
    }

    #[test]
    fn leveldb_means_sled_and_redis_vars_parse() {
        assert_eq!(config_from_env(&env(&[("FILE_LOCK_CACHE_BACKEND", "leveldb")])).unwrap().backend, Backend::Sled);
        let c = config_from_env(&env(&[
            ("FILE_LOCK_CACHE_BACKEND", "hybrid"),
            ("REDIS_PORT", "6380"),
            ("REDIS_PASSWORD", "hunter2"),
            ("REDIS_COMMAND_TIMEOUT", "250"),
        ]))
        .unwrap();
        assert_eq!((c.backend, c.redis.port, c.redis.command_timeout_ms), (Backend::Hybrid, 6380, 250));
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (k, v) in [
            ("FILE_LOCK_CACHE_BACKEND", "mongo"),
            ("FILE_LOCK_TTL_MS", "soon"),
            ("FILE_LOCK_TTL_MS", "0"),
            ("DEBUG_FILE_LOCK_CACHE", "maybe"),
        ] {
            let e = config_from_env(&env(&[(k, v)])).unwrap_err();
            assert_eq!(e.code(), "EINVAL");
            assert!(e.to_string().contains(k), "{e}");
        }
        let e = config_from_env(&env(&[("FILE_LOCK_CACHE_BACKEND", "redis"), ("REDIS_PORT", "99999")])).unwrap_err();
        assert!(e.to_string().contains("REDIS_PORT"));
        let e = config_from_env(&env(&[("FILE_LOCK_CACHE_BACKEND", "redis"), ("REDIS_URL", "http://u:hunter2@h")])).unwrap_err();
        assert!(e.to_string().contains("REDIS_URL") && !e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn feature_flags_pick_the_backend_or_refuse_contradictions() {
        let backend = |pairs: &[(&str, &str)]| config_from_env(&env(pairs)).map(|c| c.backend);
        assert_eq!(backend(&[("USE_REDIS_CACHE", "true")]).unwrap(), Backend::Redis);
        assert_eq!(backend(&[("USE_REDIS_CACHE", "false")]).unwrap(), Backend::Sled);
        assert_eq!(backend(&[("USE_REDIS_CACHE", "true"), ("FILE_LOCK_CACHE_BACKEND", "hybrid")]).unwrap(), Backend::Hybrid);
        assert_eq!(backend(&[("ENABLE_DISTRIBUTED_LOCKS", "true"), ("USE_REDIS_CACHE", "true")]).unwrap(), Backend::Redis);
        assert_eq!(backend(&[("ENABLE_DISTRIBUTED_LOCKS", "false")]).unwrap(), Backend::Sled);
        for (pairs, named) in [
            (&[("USE_REDIS_CACHE", "true"), ("FILE_LOCK_CACHE_BACKEND", "sled")][..], "USE_REDIS_CACHE"),
            (&[("USE_REDIS_CACHE", "false"), ("FILE_LOCK_CACHE_BACKEND", "redis")][..], "USE_REDIS_CACHE"),
            (&[("ENABLE_DISTRIBUTED_LOCKS", "true")][..], "ENABLE_DISTRIBUTED_LOCKS"),
            (&[("ENABLE_DISTRIBUTED_LOCKS", "false"), ("FILE_LOCK_CACHE_BACKEND", "hybrid")][..], "ENABLE_DISTRIBUTED_LOCKS"),
            (&[("USE_REDIS_CACHE", "perhaps")][..], "USE_REDIS_CACHE"),
            (&[("ENABLE_METRICS", "sometimes")][..], "ENABLE_METRICS"),
            (&[("DEBUG_MODE", "loud")][..], "DEBUG_MODE"),
            (&[("REDIS_POOL_MAX", "ten")][..], "REDIS_POOL_MAX"),
        ] {
            let e = backend(pairs).unwrap_err();
            assert_eq!(e.code(), "EINVAL");
            assert!(e.to_string().contains(named), "{e}");
        }
    }

    #[test]
    fn debug_mode_metrics_and_pool_sizes_are_read() {
        let c = config_from_env(&env(&[("DEBUG_MODE", "true"), ("ENABLE_METRICS", "false"), ("REDIS_POOL_MIN", "2"), ("REDIS_POOL_TIMEOUT", "5000")])).unwrap();
        assert!(c.debug && !c.metrics);
        assert_eq!(c.notes.len(), 1);
        assert!(c.notes[0].starts_with("REDIS_POOL_MIN, REDIS_POOL_TIMEOUT are accepted and not used"), "{}", c.notes[0]);
        let c = config_from_env(&env(&[])).unwrap();
        assert!(!c.debug && c.metrics && c.notes.is_empty());
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact_url("redis://u:pw@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact_url("redis://u:s3cr/et@h/0"), "redis://u:***@h/0");
        let e = config_from_env(&env(&[("FILE_LOCK_CACHE_BACKEND", "redis"), ("REDIS_URL", "http://u:s3cr/et@h/0")])).unwrap_err();
        assert!(!e.to_string().contains("s3cr"), "{e}");
    }
}
