//! The `Store` implementation on Redis: each lock operation one script, on the server's clock.
//! Keys and slots: `keys.rs`; acquiring across a Cluster's slots: `acquire.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use redis::{AsyncCommands, Value as RValue};
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::core::envelope::{namespace_prefix, storage_key, validate_key, Entry};
use crate::core::error::{Error, Result};
use crate::core::lock::{parse_record, token_of, LockFilter, LockRecord, LockRequest};
use crate::core::lost::LostListener;
use crate::core::store::{BatchOp, Page, Store};
use crate::core::wait::{Attempt, WaitEntry, Waiter, Waiting};
use crate::core::wake::{Listening, CHANGES};

use super::commands::{not_a_lock, record_reply};
use super::connection::Conn;
use super::keys::{fence_key_of, is_tagged, lock_key, queue_keys, session_index_parts, slot, tag, tagged_pattern, whole_session_index, INTERNAL};
use super::scripts::*;
use super::RedisStore;

/// How often a watch on a Cluster looks again: its scripts cannot announce changes (a watching
/// marker would have to be in every slot).
const CLUSTER_WATCH_EVERY: Duration = Duration::from_secs(1);

impl RedisStore {
    /// Redis WAIT after a grant, on WAIT's own connection (a WAIT blocks its connection): a write
    /// there after the grant, then WAIT, covers the grant too (replication is in order). If fewer
    /// than `replicas` acknowledge within `timeout`, the grant is undone and the acquire fails, so
    /// a failover to a replica cannot forget it.
    pub(super) async fn wait_for_replicas(&self, ns: &str, recs: &[LockRecord], replicas: u32, timeout: Duration) -> Result<()> {
        let mut c = self.wait_conn()?;
        let mut pipe = redis::pipe();
        pipe.cmd("SET").arg(format!("{INTERNAL}wait-mark")).arg(1).arg("PX").arg(1000).ignore();
        pipe.cmd("WAIT").arg(replicas).arg(timeout.as_millis() as u64);
        let acked = tokio::time::timeout(timeout + self.inner.command_timeout, pipe.query_async::<(i64,)>(&mut c)).await;
        let acked = match acked {
            Ok(Ok((n,))) => n,
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

    /// Deletes a lock only if `session_id` holds it (whatever its hold count).
    pub async fn delete_lock_of(&self, ns: &str, path: &str, session_id: &str) -> Result<bool> {
        Ok(self.release_if(ns, path, session_id, "", session_id).await? == Some(true))
    }

    /// One lock deleted if it is live and matches (`session` / `agent`: '' for any), naming the
    /// index of `holder` (the session the caller read as its holder). Some(deleted?), or None
    /// when another session holds it now.
    async fn release_if(&self, ns: &str, path: &str, session: &str, agent: &str, holder: &str) -> Result<Option<bool>> {
        let (lock, t) = lock_key(ns, path);
        let mut inv = RELEASE_IF.prepare_invoke();
        inv.key(&lock).key(self.index(ns, t, holder)).key(self.whole(ns, t).watching);
        inv.arg(session).arg(agent).arg(path).arg(&self.inner.channel).arg(holder);
        match self.script::<RValue>("release", &inv).await? {
            RValue::Int(n) => Ok(Some(n == 1)),
            _ => Ok(None),
        }
    }

    /// Entries read outside a script: live by the server's clock (the clock of the node that
    /// holds the first key, on a Cluster).
    async fn live_values(&self, keys: &[String]) -> Result<(i64, Vec<Option<String>>)> {
        let mut c = self.conn()?;
        if matches!(c, Conn::Cluster(_)) && keys.len() > 1 {
            let values = self.values(keys).await?;
            return Ok((self.server_ms().await?, values));
        }
        let mut pipe = redis::pipe();
        pipe.cmd("TIME").cmd("MGET").arg(keys);
        let ((s, us), values): ((i64, i64), Vec<Option<String>>) = self.run("MGET", pipe.query_async(&mut c)).await?;
        Ok((s * 1000 + us / 1000, values))
    }

    /// Runs `ops` of one slot (all of them, on one server) as one batch script.
    async fn batch_slot(&self, ns: &str, ops: &[&BatchOp]) -> Result<()> {
        let mut inv = BATCH.prepare_invoke();
        for op in ops {
            match op {
                BatchOp::Put { key, value_json, ttl_ms } => {
                    let k = storage_key(ns, key);
                    let t = tag(slot(&k));
                    inv.key(&k).key(fence_key_of(&k)).key(self.whole(ns, t).claims);
                    inv.arg("put").arg(value_json).arg(ttl_ms.map(|t| t.to_string()).unwrap_or_default()).arg(token_of(value_json).map(|t| t.to_string()).unwrap_or_default()).arg(key);
                }
                BatchOp::Del { key } => {
                    let k = storage_key(ns, key);
                    let t = tag(slot(&k));
                    inv.key(&k).key(fence_key_of(&k)).key(self.whole(ns, t).claims);
                    inv.arg("del").arg("").arg("").arg("").arg(key);
                }
            }
        }
        let _: i64 = self.script("batch", &inv).await?;
        Ok(())
    }

    /// Items grouped by their key as one script may take them: one group on one server, one per
    /// slot (in slot order) on a Cluster.
    pub(super) fn by_slot<K: AsRef<str>, T>(&self, items: impl IntoIterator<Item = (K, T)>) -> Vec<Vec<T>> {
        if !self.is_cluster() {
            return vec![items.into_iter().map(|(_, t)| t).collect()];
        }
        let mut groups: BTreeMap<u16, Vec<T>> = BTreeMap::new();
        for (k, t) in items {
            groups.entry(slot(k.as_ref())).or_default().push(t);
        }
        groups.into_values().collect()
    }

    /// Deletes every live lock of `session` (an agent's only, with `agent`): on one server one
    /// script through the session's index, on a Cluster one script on each primary (at once)
    /// through the session's indexes there.
    async fn release_session(&self, ns: &str, session: &str, agent: &str) -> Result<u64> {
        let prefix = namespace_prefix(ns);
        let Some(nodes) = self.cluster_conn()? else {
            let w = self.whole(ns, "");
            let mut inv = RELEASE_SESSION.prepare_invoke();
            inv.key(whole_session_index(ns, session)).key(w.waits).key(w.watching);
            inv.arg(&prefix).arg(session).arg(agent).arg(&self.inner.channel);
            return Ok(self.script::<i64>("releaseAll", &inv).await? as u64);
        };
        let (before, after) = session_index_parts(ns, session);
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(RELEASE_SESSION_NODE.get_hash()).arg(0).arg(before).arg(after).arg(&prefix).arg(session).arg(agent).arg(&self.inner.channel).arg(INTERNAL);
        Ok(self.on_every_primary("releaseAll", nodes, cmd).await? as u64)
    }
}

/// A script's {'recovering'} answer.
fn is_recovering(r: &RValue) -> bool {
    matches!(r, RValue::Array(a) if matches!(a.first(), Some(RValue::BulkString(b)) if b == b"recovering"))
}

/// A script's {'other', sessionId} answer: another session holds it now.
fn other_holder(r: &RValue) -> Option<String> {
    match r {
        RValue::Array(a) if matches!(a.first(), Some(RValue::BulkString(b)) if b == b"other") => match a.get(1) {
            Some(RValue::BulkString(s)) => Some(String::from_utf8_lossy(s).into_owned()),
            _ => None,
        },
        _ => None,
    }
}

impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    /// Live by the server's clock: Redis expires a key at its TTL, and the envelope's expiry (an
    /// old client may have written one without a TTL) is read against the server's TIME.
    async fn get(&self, ns: &str, key: &str) -> Result<Option<Entry>> {
        validate_key(key)?;
        let k = storage_key(ns, key);
        let (now, mut values) = self.live_values(std::slice::from_ref(&k)).await?;
        let Some(raw) = values.pop().flatten() else { return Ok(None) };
        let entry = Entry::decode_stored(&k, raw.as_bytes())?;
        Ok(entry.is_live(now).then_some(entry))
    }

    async fn set(&self, ns: &str, key: &str, value_json: &str, ttl_ms: Option<u64>) -> Result<()> {
        validate_key(key)?;
        let k = storage_key(ns, key);
        let mut inv = SET.prepare_invoke();
        inv.key(&k).key(fence_key_of(&k)).key(self.whole(ns, tag(slot(&k))).claims);
        inv.arg(value_json).arg(ttl_ms.map(|t| t.to_string()).unwrap_or_default()).arg(token_of(value_json).map(|t| t.to_string()).unwrap_or_default()).arg(key);
        let _: i64 = self.script("SET", &inv).await?;
        Ok(())
    }

    async fn del(&self, ns: &str, key: &str) -> Result<bool> {
        validate_key(key)?;
        let mut c = self.conn()?;
        let n: i64 = self.run("DEL", c.del(storage_key(ns, key))).await?;
        Ok(n > 0)
    }

    /// All or nothing on one server. On a Cluster, all or nothing per hash slot: a script cannot
    /// span slots, so the slots' batches run one after the other.
    async fn batch(&self, ns: &str, ops: &[BatchOp]) -> Result<()> {
        let keyed: Vec<(String, &BatchOp)> = ops
            .iter()
            .map(|op| {
                let key = match op {
                    BatchOp::Put { key, .. } | BatchOp::Del { key } => key,
                };
                validate_key(key).map(|_| (storage_key(ns, key), op))
            })
            .collect::<Result<_>>()?;
        for group in self.by_slot(keyed.iter().map(|(k, op)| (k.as_str(), *op))) {
            if !group.is_empty() {
                self.batch_slot(ns, &group).await?;
            }
        }
        Ok(())
    }

    async fn scan(&self, ns: &str, cursor: Option<&str>, count: usize) -> Result<Page> {
        let (next, keys) = self.scan_keys(ns, cursor, count.max(1)).await?;
        let prefix_len = namespace_prefix(ns).len();
        let mut page = Page { items: Vec::new(), cursor: next, now: 0 };
        if keys.is_empty() {
            page.now = self.server_ms().await?;
            return Ok(page);
        }
        let (now, values) = self.live_values(&keys).await?;
        page.now = now;
        for (k, v) in keys.into_iter().zip(values) {
            if let Some(entry) = v.and_then(|v| Entry::decode(v.as_bytes()).ok()).filter(|e| e.is_live(now)) {
                page.items.push((k[prefix_len..].to_owned(), entry.value.get().to_owned(), entry.expires_at));
            }
        }
        Ok(page)
    }

    /// Entries past their envelope's expiry on the server's clock (old clients wrote some without
    /// a Redis TTL), a page of keys per script (per slot, on a Cluster).
    async fn sweep_expired(&self, ns: &str) -> Result<u64> {
        let mut n = 0;
        let mut cursor: Option<String> = None;
        loop {
            let (next, keys) = self.scan_keys(ns, cursor.as_deref(), 500).await?;
            for group in self.by_slot(keys.iter().map(|k| (k.as_str(), k))) {
                if group.is_empty() {
                    continue;
                }
                let mut inv = SWEEP.prepare_invoke();
                for k in group {
                    inv.key(k);
                }
                n += self.script::<i64>("sweep", &inv).await? as u64;
            }
            match next {
                Some(c) => cursor = Some(c),
                None => return Ok(n),
            }
        }
    }

    async fn clear(&self, ns: &str) -> Result<u64> {
        let mut n = 0;
        let mut cursor: Option<String> = None;
        loop {
            let (next, keys) = self.scan_keys(ns, cursor.as_deref(), 500).await?;
            if !keys.is_empty() {
                let mut c = self.conn()?;
                let d: i64 = self.run("DEL", c.del(&keys)).await?;
                n += d as u64;
            }
            match next {
                Some(c) => cursor = Some(c),
                None => return Ok(n),
            }
        }
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

    /// Out of the queues of every path (one script per slot, on a Cluster).
    async fn leave_queue(&self, ns: &str, paths: &[String], waiter: &Waiter) -> Result<()> {
        let locks: Vec<(String, &'static str)> = paths.iter().map(|p| lock_key(ns, p)).collect();
        for group in self.by_slot(locks.iter().map(|(k, t)| (k.as_str(), (k, *t)))) {
            let Some((_, t0)) = group.first().copied() else { continue };
            let mut inv = LEAVE_QUEUE.prepare_invoke();
            for (lock, t) in &group {
                let (q, qh) = queue_keys(t, lock);
                inv.key(q).key(qh);
            }
            let w = self.whole(ns, t0);
            inv.key(w.waits).key(w.watching).arg(&waiter.id).arg(&self.inner.channel).arg(namespace_prefix(ns));
            for (lock, _) in &group {
                inv.arg(lock.as_str());
            }
            let _: i64 = self.script("leave queue", &inv).await?;
        }
        Ok(())
    }

    fn listen(&self, ns: &str, paths: &[String], wake: &Arc<Notify>) -> Vec<Listening> {
        self.ensure_subscribed();
        vec![self.inner.bus.listen(paths.iter().map(|p| storage_key(ns, p)).collect(), wake)]
    }

    async fn force_release(&self, ns: &str, path: &str) -> Result<Option<LockRecord>> {
        let (lock, t) = lock_key(ns, path);
        let watching = self.whole(ns, t).watching;
        // the holder's index must be named: ask with a guess, then with the holder it names
        let mut holder = String::new();
        for _ in 0..5 {
            let mut inv = FORCE_RELEASE.prepare_invoke();
            inv.key(&lock).key(self.index(ns, t, &holder)).key(&watching).arg(path).arg(&self.inner.channel).arg(&holder);
            let reply = self.script::<RValue>("force release", &inv).await?;
            if let Some(other) = other_holder(&reply) {
                holder = other;
                continue;
            }
            let r = record_reply(reply, "force release", path)?;
            if let (Some(gone), true) = (&r, self.tracks_held()) {
                self.inner.held.forget(ns, path, Some(gone.token));
            }
            return Ok(r);
        }
        Err(Error::backend(format!("{}: the lock on {path} changed hands five times during a forced release; try again", self.inner.target)))
    }

    async fn release(&self, ns: &str, path: &str, session_id: &str) -> Result<bool> {
        let (lock, t) = lock_key(ns, path);
        let (q, _) = queue_keys(t, &lock);
        let w = self.whole(ns, t);
        let mut inv = RELEASE.prepare_invoke();
        inv.key(&lock).key(self.index(ns, t, session_id)).key(q).key(w.waits).key(w.watching);
        inv.arg(session_id).arg(path).arg(&self.inner.channel);
        if self.tracks_held() {
            // out of this process's record before the server is asked: a restart noticed while
            // the release is in flight must not put the lock back (the release may already have
            // run, and the lock gone to another session), and a failed release is given up too
            self.inner.held.released(ns, path, session_id);
        }
        match self.script::<i64>("release", &inv).await? {
            -1 => Err(not_a_lock(path)),
            r => {
                if r == 0 && self.tracks_held() && self.inner.held.get(ns, path).is_some_and(|h| h.rec.session_id == session_id) {
                    // not there (the server lost it): let go of the other holds too
                    self.inner.held.forget(ns, path, None);
                }
                Ok(r == 1)
            }
        }
    }

    /// A session's locks: one script through its index (one per primary on a Cluster). Without a
    /// session: every matching record, one script each.
    async fn release_all(&self, ns: &str, filter: &LockFilter) -> Result<u64> {
        let agent = filter.agent_id.as_deref().unwrap_or("");
        if self.tracks_held() {
            // before the server is asked, as in `release`
            self.inner.held.released_all(ns, filter);
        }
        let mut n = 0;
        if let Some(sid) = &filter.session_id {
            n = self.release_session(ns, sid, agent).await?;
        } else {
            let prefix_len = namespace_prefix(ns).len();
            for (k, v) in self.all_entries(ns).await? {
                let Ok(entry) = Entry::decode(v.as_bytes()) else { continue };
                let Ok(rec) = parse_record(&k, &entry) else { continue };
                if !filter.matches(&rec) {
                    continue;
                }
                // the script looks again, on the server's clock, and only deletes a live match
                let path = &k[prefix_len..];
                let mut holder = rec.session_id.clone();
                for _ in 0..3 {
                    let mut inv = RELEASE_IF.prepare_invoke();
                    let t = tag(slot(&k));
                    inv.key(&k).key(self.index(ns, t, &holder)).key(self.whole(ns, t).watching);
                    inv.arg("").arg(agent).arg(path).arg(&self.inner.channel).arg(&holder);
                    match self.script::<RValue>("releaseAll", &inv).await? {
                        RValue::Int(d) => {
                            n += d as u64;
                            break;
                        }
                        other => match other_holder(&other) {
                            Some(h) => holder = h,
                            None => break,
                        },
                    }
                }
            }
        }
        Ok(n)
    }

    async fn renew(&self, ns: &str, path: &str, session_id: &str, ttl_ms: u64) -> Result<Option<LockRecord>> {
        let (lock, t) = lock_key(ns, path);
        let w = self.whole(ns, t);
        let mut inv = RENEW.prepare_invoke();
        inv.key(&lock).key(self.index(ns, t, session_id)).key(w.epoch).key(w.recovering);
        inv.arg(session_id).arg(ttl_ms).arg(if self.is_cluster() { "1" } else { "0" });
        let mut reply = self.script::<RValue>("renew", &inv).await?;
        if is_recovering(&reply) {
            if !self.tracks_held() {
                // inside a hybrid, which puts its locks back itself (under its gate, which this
                // call holds): not gone, just not back yet
                return Err(Error::backend(format!("{} lost its data and the locks held are being put back; renew again in a moment", self.inner.target)));
            }
            // the server lost its data: put back what is held here (this lock too), then renew
            self.catch_up().await;
            reply = self.script::<RValue>("renew", &inv).await?;
        }
        let r = record_reply(reply, "renew", path)?;
        if self.tracks_held() {
            match &r {
                Some(rec) => self.inner.held.renewed(ns, rec, Duration::from_millis(ttl_ms)),
                None => self.inner.held.forget(ns, path, None),
            }
        }
        Ok(r)
    }

    async fn list_locks(&self, ns: &str, filter: &LockFilter) -> Result<Vec<LockRecord>> {
        let now = self.server_ms().await?;
        let prefix_len = namespace_prefix(ns).len();
        let mut out = Vec::new();
        for (k, v) in self.all_entries(ns).await? {
            let Ok(entry) = Entry::decode(v.as_bytes()) else { continue };
            let Ok(mut rec) = parse_record(&k, &entry) else { continue };
            // records of the legacy plugin lack these: the key and the envelope say them
            if rec.path.is_empty() {
                rec.path = k[prefix_len..].to_owned();
            }
            if rec.expires_at == 0 {
                rec.expires_at = entry.expires_at.unwrap_or(0);
            }
            if entry.is_live(now) && (rec.expires_at == 0 || rec.expires_at > now) && filter.matches(&rec) {
                out.push(rec);
            }
        }
        Ok(out)
    }

    /// The waits hash (one per namespace; on a Cluster, one per slot, found by SCAN).
    async fn list_waiters(&self, ns: &str) -> Result<Waiting> {
        let hashes = if self.is_cluster() {
            self.scan_all(&tagged_pattern("waits", ns)).await?.into_iter().filter(|k| is_tagged(k, "waits", ns)).collect()
        } else {
            vec![self.keys(ns).whole.waits.clone()]
        };
        let now = self.server_ms().await?;
        let mut waits: Vec<(u64, WaitEntry)> = Vec::new();
        for h in hashes {
            let mut c = self.conn()?;
            let all: Vec<(String, String)> = self.run("HGETALL", c.hgetall(&h)).await?;
            waits.extend(
                all.into_iter()
                    .filter_map(|(_, v)| serde_json::from_str::<Value>(&v).ok())
                    .filter(|w| w["x"].as_i64().unwrap_or(0) > now)
                    .map(|w| {
                        let text = |k: &str| w[k].as_str().unwrap_or("").to_owned();
                        let paths = w["r"].as_array().map(|a| a.iter().filter_map(|p| p.as_str().map(str::to_owned)).collect()).unwrap_or_default();
                        (w["q"].as_str().and_then(|q| q.parse().ok()).or_else(|| w["q"].as_u64()).unwrap_or(0), WaitEntry { session_id: text("s"), agent_id: text("a"), paths, blocked_by: text("b"), blocked_on: text("p"), since: w["t"].as_i64().unwrap_or(now) })
                    }),
            );
        }
        waits.sort_by_key(|(q, _)| *q);
        Ok(Waiting { now, waiters: waits.into_iter().map(|(_, w)| w).collect() })
    }

    fn watch(&self, ns: &str, wake: &Arc<Notify>) -> Vec<Listening> {
        self.ensure_subscribed();
        let listening = self.inner.bus.listen(vec![storage_key(ns, CHANGES)], wake);
        if self.is_cluster() {
            // no announcements on a Cluster: a look every second instead
            let (stop, tick, wake) = (Arc::new(Notify::new()), CLUSTER_WATCH_EVERY, wake.clone());
            let done = stop.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = done.notified() => return,
                        _ = tokio::time::sleep(tick) => wake.notify_one(),
                    }
                }
            });
            return vec![listening.on_drop(Box::new(move || stop.notify_one()))];
        }
        self.start_watching();
        let me = self.clone();
        vec![listening.on_drop(Box::new(move || me.stop_watching()))]
    }

    async fn before_reporting_loss(&self) {
        if !self.is_cluster() {
            self.catch_up().await;
        }
    }

    fn set_lost_listener(&self, listener: LostListener) {
        *self.inner.lost.write().unwrap_or_else(|p| p.into_inner()) = Some(listener);
    }

    async fn health(&self) -> Result<Value> {
        let latency = self.ping().await?;
        let mut c = self.conn()?;
        let keys: i64 = self.run("DBSIZE", redis::cmd("DBSIZE").query_async(&mut c)).await?;
        if self.is_cluster() {
            let primaries = self.primaries().await?;
            return Ok(json!({
                "backend": "redis",
                "healthy": true,
                "connected": true,
                "server": self.inner.target,
                "cluster": true,
                "primaries": primaries.iter().map(|(h, p)| format!("{h}:{p}")).collect::<Vec<_>>(),
                "latencyMs": latency.as_secs_f64() * 1000.0,
                "keyCount": keys,
            }));
        }
        let info: String = self.run("INFO memory", redis::cmd("INFO").arg("memory").query_async(&mut c)).await?;
        let used_memory = info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse::<u64>().ok());
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
        self.inner.closed.store(true, std::sync::atomic::Ordering::Relaxed);
        self.inner.shutdown.notify_waiters();
        Ok(())
    }
}
