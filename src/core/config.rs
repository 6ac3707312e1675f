//! Configuration from the environment (names as the seeds give them) and from options objects.
//! A bad value fails at start with a message naming the variable, never showing a secret.

use std::collections::HashMap;

use super::error::{Error, Result};
use super::lock::{check_ttl, DEFAULT_LOCK_TTL_MS};

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
            sentinel_master: "mymaster".into(),
            sentinel_password: None,
            tls_ca_file: None,
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
            .field("sentinel_master", &self.sentinel_master)
            .finish_non_exhaustive()
    }
}

/// `redis://user:secret@host:6379/0` -> `redis://user:***@host:6379/0`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return "<unparsable url>".into() };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme_end + 3], &rest[at..])
        }
        None => url.to_owned(),
    }
}

#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub backend: Backend,
    pub sled_path: String,
    pub namespace: String,
    pub ttl_ms: u64,
    pub redis: RedisOptions,
    pub fail_mode: FailMode,
    pub debug: bool,
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

/// The per-user default folder for the embedded store.
pub fn default_sled_path(env: &HashMap<String, String>) -> String {
    let non_empty = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
    if let Some(state) = non_empty("XDG_STATE_HOME") {
        return format!("{state}/opencode-file-lock/locks");
    }
    if let Some(home) = non_empty("HOME").or_else(|| non_empty("USERPROFILE")) {
        return format!("{home}/.local/state/opencode-file-lock/locks");
    }
    let tmp = non_empty("TMPDIR").unwrap_or_else(|| std::env::temp_dir().display().to_string());
    format!("{tmp}/opencode-file-lock/locks")
}

pub fn redis_from_env(env: &HashMap<String, String>) -> Result<RedisOptions> {
    let d = RedisOptions::default();
    let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
    let url = get("REDIS_URL");
    if let Some(u) = &url {
        if !(u.starts_with("redis://") || u.starts_with("rediss://") || u.starts_with("unix://") || u.starts_with("redis+unix://")) {
            return Err(Error::invalid(format!(
                "REDIS_URL must start with redis://, rediss:// or unix://, got {}",
                redact_url(u)
            )));
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
    })
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

pub fn config_from_env(env: &HashMap<String, String>) -> Result<CacheConfig> {
    let backend = match env.get("FILE_LOCK_CACHE_BACKEND").map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("sled") | Some("leveldb") => Backend::Sled,
        Some("redis") => Backend::Redis,
        Some("hybrid") => Backend::Hybrid,
        Some(other) => {
            return Err(Error::invalid(format!(
                "FILE_LOCK_CACHE_BACKEND must be sled, redis or hybrid (leveldb means sled), got {other:?}"
            )))
        }
    };
    let fail_mode = match env.get("FILE_LOCK_FAIL_MODE").map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("open") => FailMode::Open,
        Some("closed") => FailMode::Closed,
        Some(other) => return Err(Error::invalid(format!("FILE_LOCK_FAIL_MODE must be open or closed, got {other:?}"))),
    };
    let ttl_ms = parse_num(env, "FILE_LOCK_TTL_MS")?.unwrap_or(DEFAULT_LOCK_TTL_MS);
    check_ttl(ttl_ms).map_err(|_| Error::invalid(format!("FILE_LOCK_TTL_MS must be between 1 and a year in milliseconds, got {ttl_ms}")))?;
    let redis = if backend == Backend::Sled { RedisOptions::default() } else { redis_from_env(env)? };
    Ok(CacheConfig {
        backend,
        sled_path: env.get("FILE_LOCK_PATH").filter(|v| !v.is_empty()).cloned().unwrap_or_else(|| default_sled_path(env)),
        namespace: env.get("FILE_LOCK_NAMESPACE").filter(|v| !v.is_empty()).cloned().unwrap_or_else(|| "locks".into()),
        ttl_ms,
        redis,
        fail_mode,
        debug: parse_bool(env, "DEBUG_FILE_LOCK_CACHE")?.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
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
    fn urls_are_redacted() {
        assert_eq!(redact_url("redis://u:pw@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact_url("redis://:pw@h"), "redis://:***@h");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
    }
}
