//! Running one interaction with Redis under the command timeout, with its metrics and the one
//! mapping of its failures to error codes.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redis::{AsyncCommands, FromRedisValue, RedisError, ScriptInvocation, Value as RValue};

use crate::core::envelope::namespace_prefix;
use crate::core::error::{Error, Result};
use crate::core::lock::LockRecord;
use crate::core::metrics;

use super::keys::{glob_escape, INTERNAL};
use super::RedisStore;

fn status_of<T>(r: &Result<T>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(Error::Timeout(_)) => "timeout",
        Err(Error::Unreachable(_)) => "connection_error",
        Err(_) => "error",
    }
}

pub(super) fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() || e.is_unrecoverable_error()
}

impl RedisStore {
    /// Runs one Redis interaction under the command timeout and maps its failure once.
    pub(super) async fn run<T>(&self, what: &str, fut: impl Future<Output = redis::RedisResult<T>>) -> Result<T> {
        let started = Instant::now();
        let r = self.run_for(what, self.inner.command_timeout, fut).await;
        metrics::redis_operation(what, status_of(&r), started.elapsed());
        r
    }

    /// Runs a script on the main connection.
    pub(super) async fn script<T: FromRedisValue>(&self, what: &str, inv: &ScriptInvocation<'_>) -> Result<T> {
        self.script_within(what, inv, self.inner.command_timeout).await
    }

    /// Runs a script, waiting up to `timeout` for its answer.
    pub(super) async fn script_within<T: FromRedisValue>(&self, what: &str, inv: &ScriptInvocation<'_>, timeout: Duration) -> Result<T> {
        let mut c = self.scripted(self.conn()?);
        let started = Instant::now();
        let r = self.run_for(what, timeout, inv.invoke_async(&mut c)).await;
        metrics::redis_operation(what, status_of(&r), started.elapsed());
        r
    }

    /// The server's clock, epoch ms: what decides whether an entry read outside a script is live.
    pub(super) async fn server_ms(&self) -> Result<i64> {
        let mut c = self.conn()?;
        let (s, us): (i64, i64) = self.run("TIME", redis::cmd("TIME").query_async(&mut c)).await?;
        Ok(s * 1000 + us / 1000)
    }

    async fn run_for<T>(&self, what: &str, timeout: Duration, fut: impl Future<Output = redis::RedisResult<T>>) -> Result<T> {
        let inner = &self.inner;
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(v)) => {
                inner.unreachable.store(false, Ordering::Relaxed);
                Ok(v)
            }
            Ok(Err(e)) => {
                if e.is_timeout() {
                    Err(Error::Timeout(format!("{} did not answer {what} within {} ms", inner.target, timeout.as_millis())))
                } else if is_connection_error(&e) || e.is_cluster_error() || matches!(e.code(), Some("READONLY" | "MASTERDOWN")) {
                    // READONLY: the server we talk to was demoted to a replica by a failover;
                    // CLUSTERDOWN/MOVED/ASK/TRYAGAIN left after the client's retries: a Cluster
                    // between a primary's loss and its replica's promotion (not serving: a hybrid
                    // fails over, as when unreachable)
                    self.find_new_primary();
                    inner.unreachable.store(true, Ordering::Relaxed);
                    *inner.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e.to_string();
                    Err(Error::Unreachable(format!("{} is unreachable ({what}): {e}", inner.target)))
                } else {
                    // the server answered, with an error (NOPERM, OOM, BUSY, WRONGTYPE, ...)
                    Err(Error::backend(format!("{} failed {what}: {e}", inner.target)))
                }
            }
            Err(_) if inner.unreachable.load(Ordering::Relaxed) => {
                self.find_new_primary();
                let last = inner.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
                Err(Error::Unreachable(format!(
                    "{} is unreachable: no answer to {what} within {} ms while reconnecting (last error: {last})",
                    inner.target,
                    timeout.as_millis()
                )))
            }
            Err(_) => Err(Error::Timeout(format!(
                "{} did not answer {what} within {} ms",
                inner.target,
                timeout.as_millis()
            ))),
        }
    }

    pub async fn ping(&self) -> Result<Duration> {
        let mut c = self.conn()?;
        let t = Instant::now();
        let _: String = self.run("PING", redis::cmd("PING").query_async(&mut c)).await?;
        Ok(t.elapsed())
    }

    /// Keys of a namespace (internal keys excluded), one SCAN page at a time (every primary of a
    /// Cluster in turn).
    pub(super) async fn scan_keys(&self, ns: &str, cursor: Option<&str>, count: usize) -> Result<(Option<String>, Vec<String>)> {
        let pattern = format!("{}*", glob_escape(&namespace_prefix(ns)));
        let (next, keys) = self.scan_page(&pattern, cursor, count).await?;
        Ok((next, keys.into_iter().filter(|k| !k.starts_with(INTERNAL)).collect()))
    }

    /// The raw values of `keys` (MGET; split by slot on a Cluster).
    pub(super) async fn values(&self, keys: &[String]) -> Result<Vec<Option<String>>> {
        let mut c = self.conn()?;
        self.run("MGET", c.mget(keys)).await
    }

    /// Every (key, raw value) of the namespace. Lock namespaces hold thousands of keys, not
    /// millions, so collecting them is cheaper than streaming through callbacks.
    pub(super) async fn all_entries(&self, ns: &str) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let (next, keys) = self.scan_keys(ns, cursor.as_deref(), 500).await?;
            if !keys.is_empty() {
                let values = self.values(&keys).await?;
                out.extend(keys.into_iter().zip(values).filter_map(|(k, v)| Some((k, v?))));
            }
            match next {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
        }
    }
}

/// What a script's {'corrupt'} answer means: the value there is not a lock record.
pub(super) fn not_a_lock(path: &str) -> Error {
    Error::Corrupt(format!("the record at {path:?} is not a lock record; it was left in place"))
}

/// A script's answer that is a lock record (JSON), nothing (false), or {'corrupt'}.
pub(super) fn record_reply(r: RValue, what: &str, path: &str) -> Result<Option<LockRecord>> {
    match r {
        RValue::BulkString(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::backend(format!("{what} returned a bad record: {e}"))),
        RValue::Array(_) => Err(not_a_lock(path)),
        _ => Ok(None),
    }
}


