//! The `Store` implementation on Redis: each lock operation one script.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::{AsyncCommands, Value as RValue};
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::core::envelope::{encode, namespace_prefix, storage_key, validate_key, Entry};
use crate::core::error::{Error, Result};
use crate::core::lock::{locked_error, parse_record, LockFilter, LockRecord, LockRequest};
use crate::core::store::{BatchOp, Page, Store};
use crate::core::time::now_ms;
use crate::core::wait::{queued_error, Attempt, Waiter, WAITER_LEASE_MS};
use crate::core::wake::Listening;

use super::commands::{not_a_lock, px_for, record_reply};
use super::keys::{fence_key, session_index_prefix, ticket_key};
use super::scripts::*;
use super::RedisStore;

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
