//! Acquiring on Redis: one script per hash slot the paths live in.
//!
//! On one server (and under Sentinel) every acquire is one script over all its paths, atomic as
//! it always was. On a Cluster a script may only touch keys of one slot, so the paths are grouped
//! by slot and the groups are tried in slot order, each one script. If a group is refused, the
//! groups granted before it are taken back (`undo_attempt.lua`, by the attempt's nonce: exactly
//! the holds this attempt added) before the refusal is returned, so the acquire still grants all
//! or nothing. What a concurrent observer can see in between: for about one round trip per group,
//! the caller holding the paths of the earlier slots, which another acquire may be refused for.
//! No path is ever held by two sessions.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::core::error::{Error, Result};
use crate::core::lock::{locked_error, LockRecord, LockRequest};
use crate::core::wait::{deadlock_error, queued_error, Attempt, CycleStep, Waiter, WAITER_LEASE_MS};

use super::commands::not_a_lock;
use super::keys::{cancelled_key, fence_key, lock_key, queue_keys, session_index, ticket_key, whole_session_index, Whole};
use super::scripts::{ACQUIRE, RESOLVE_ATTEMPT, UNDO_ATTEMPT};
use super::RedisStore;

/// How long a cancelled attempt is remembered on the server: longer than any answer can be late.
const CANCEL_KEEP_MS: u64 = 120_000;
/// How long a caller waits to learn what became of an acquire whose answer never came.
const RESOLVE_WITHIN: Duration = Duration::from_millis(2_000);

/// A fresh id for one acquire attempt (its answer may be lost; see `resolve_attempt.lua`).
fn nonce() -> String {
    Waiter::new().id
}

impl RedisStore {
    /// The whole-namespace keys a script in the slot of `tag` names: one server's own, or a
    /// Cluster's stand-ins in that slot.
    pub(super) fn whole(&self, ns: &str, tag: &str) -> Whole {
        if self.is_cluster() {
            Whole::of(ns, Some(tag))
        } else {
            let k = self.keys(ns);
            Whole { claims: k.whole.claims.clone(), waits: k.whole.waits.clone(), epoch: k.whole.epoch.clone(), recovering: k.whole.recovering.clone(), watching: k.whole.watching.clone() }
        }
    }

    /// The index of the paths `session` holds that a script in the slot of `tag` writes: the
    /// session's one index on one server, its index in that slot on a Cluster.
    pub(super) fn index(&self, ns: &str, tag: &str, session: &str) -> String {
        if self.is_cluster() {
            session_index(tag, ns, session)
        } else {
            whole_session_index(ns, session)
        }
    }

    /// One acquire try. With a waiter, a refusal queues it (see `core::wait`); without one, a
    /// refusal is just that. An attempt whose answer does not come (a timeout, a dropped
    /// connection) is resolved before this returns: granted (and returned as such) or cancelled
    /// on the server, so it can never become a lock nobody knows of.
    pub(super) async fn acquire_script(&self, ns: &str, paths: &[String], req: &LockRequest, waiter: Option<&Waiter>) -> Result<Attempt> {
        // the paths in groups that one script may take together (in slot order on a Cluster)
        let groups: Vec<Vec<String>> = self.by_slot(paths.iter().map(|p| (lock_key(ns, p).0, p.clone())));
        let mut granted: Vec<(Vec<String>, String)> = Vec::new();
        let mut recs: Vec<LockRecord> = Vec::with_capacity(paths.len());
        for group in groups {
            let mut nonce = nonce();
            let mut tried = self.acquire_group(ns, &group, req, waiter, &nonce).await;
            if matches!(&tried, Err(Cancelled::AfterDrop(_))) {
                // the connection dropped and the server confirmed the attempt never ran: once more
                nonce = self::nonce();
                tried = self.acquire_group(ns, &group, req, waiter, &nonce).await;
            }
            match tried.map_err(Cancelled::into_error) {
                Ok(Attempt::Granted(got)) => {
                    recs.extend(got);
                    granted.push((group, nonce));
                }
                refused => {
                    // all or nothing: the slots granted before this one are given back first
                    for (g, n) in &granted {
                        self.undo_attempt(ns, g, &req.session_id, n).await;
                    }
                    return refused;
                }
            }
        }
        if granted.len() > 1 {
            recs.sort_by_key(|r| paths.iter().position(|p| *p == r.path));
        }
        if let Some((replicas, timeout)) = self.inner.wait {
            self.wait_for_replicas(ns, &recs, replicas, timeout).await?;
        }
        if self.tracks_held() {
            self.inner.held.granted(ns, &recs, Duration::from_millis(req.ttl_ms));
        }
        Ok(Attempt::Granted(recs))
    }

    /// One script over paths of one slot (all paths, on one server).
    async fn acquire_group(&self, ns: &str, paths: &[String], req: &LockRequest, waiter: Option<&Waiter>, nonce: &str) -> std::result::Result<Attempt, Cancelled> {
        self.try_group(ns, paths, req, waiter, nonce).await.map_err(Cancelled::Other)?.map_err(Cancelled::AfterDrop)
    }

    /// `acquire_group`'s work; the inner error is an attempt cancelled after its connection dropped.
    async fn try_group(&self, ns: &str, paths: &[String], req: &LockRequest, waiter: Option<&Waiter>, nonce: &str) -> Result<std::result::Result<Attempt, Error>> {
        let mut inv = ACQUIRE.prepare_invoke();
        let first_tag = lock_key(ns, &paths[0]).1;
        for p in paths {
            let (lock, t) = lock_key(ns, p);
            let (q, qh) = queue_keys(t, &lock);
            inv.key(&lock).key(q).key(qh).key(fence_key(t, ns)).key(self.index(ns, t, &req.session_id)).key(ticket_key(t, ns));
        }
        let w = self.whole(ns, first_tag);
        inv.key(cancelled_key(first_tag, nonce)).key(w.claims).key(w.waits).key(w.epoch).key(w.recovering).key(w.watching);
        inv.arg(&req.session_id).arg(&req.agent_id).arg(req.ttl_ms);
        inv.arg(waiter.map_or("", |w| w.id.as_str())).arg(waiter.map_or(0, |w| w.ticket)).arg(WAITER_LEASE_MS).arg(nonce);
        inv.arg(&self.keys(ns).prefix).arg(&self.inner.channel).arg(if self.is_cluster() { "1" } else { "0" });
        inv.arg(if req.info.is_empty() { String::new() } else { Value::Object(req.info.clone()).to_string() });
        for p in paths {
            inv.arg(p);
        }
        for p in paths {
            inv.arg(record_head(req, p, nonce));
        }
        let reply: Vec<String> = match self.script("acquire", &inv).await {
            Ok(r) => r,
            Err(e) if e.is_unavailable() => match self.resolve_attempt(ns, paths, req, nonce, e).await? {
                Ok(reply) => reply,
                Err(cancelled) => return Ok(Err(cancelled)),
            },
            Err(e) => return Err(e),
        };
        self.answer(ns, paths, req, waiter, nonce, reply).map(Ok)
    }

    /// What the acquire script's reply means.
    fn answer(&self, ns: &str, paths: &[String], req: &LockRequest, waiter: Option<&Waiter>, nonce: &str, reply: Vec<String>) -> Result<Attempt> {
        match reply.first().map(String::as_str) {
            Some("granted") if reply.len() == paths.len() + 2 => {
                let now: i64 = reply[1].parse().map_err(|_| Error::backend(format!("{} answered acquire with a bad time: {reply:?}", self.inner.target)))?;
                let recs = paths
                    .iter()
                    .zip(&reply[2..])
                    .map(|(p, t)| {
                        let token = t.parse().map_err(|_| Error::backend(format!("{} answered acquire with a bad token: {t:?}", self.inner.target)))?;
                        Ok(granted_record(req, p, nonce, now, token))
                    })
                    .collect::<Result<_>>()?;
                Ok(Attempt::Granted(recs))
            }
            Some("ok" | "applied") => {
                let recs: Vec<LockRecord> = reply[1..]
                    .iter()
                    .map(|r| serde_json::from_str(r).map_err(|e| Error::backend(format!("acquire returned a bad record: {e}"))))
                    .collect::<Result<_>>()?;
                Ok(Attempt::Granted(recs))
            }
            Some(kind @ ("locked" | "queued")) if reply.len() == 6 => {
                let holder: Value = serde_json::from_str(&reply[2]).unwrap_or(Value::Null);
                // the message's "ago" and "expires in" are on the server's clock too
                let server_now = reply[5].parse::<i64>().unwrap_or_default();
                let error = if kind == "locked" { locked_error(&reply[1], holder, server_now) } else { queued_error(&reply[1], holder) };
                let retry_in_ms = reply[3].parse::<i64>().ok().filter(|x| *x > 0).unwrap_or(crate::core::wait::REFRESH_MS);
                Ok(Attempt::Blocked { error, retry_in_ms, ticket: reply[4].parse().unwrap_or(0) })
            }
            Some("deadlock") if reply.len() == 5 => Err(self.deadlock(ns, req, &reply)),
            Some("corrupt") if reply.len() == 2 => Err(not_a_lock(&reply[1])),
            Some("noclaims") => Err(Error::invalid(format!(
                "folder claims (paths ending in /) are not available on a Redis Cluster ({}): a claim and the files below it live in different hash slots, which no script can check together. Lock the files themselves",
                self.inner.target
            ))),
            Some("recovering") if reply.len() == 2 => {
                let retry_in_ms = reply[1].parse::<i64>().unwrap_or(crate::core::wait::REFRESH_MS);
                // not serving locks for now: a hybrid serves from its fallback meanwhile
                let error = Error::Unreachable(format!(
                    "{} lost its data (a restart without persistence or a flush); it grants new locks again in {retry_in_ms} ms, once the processes that held locks have put them back",
                    self.inner.target
                ));
                Ok(Attempt::Blocked { error, retry_in_ms, ticket: waiter.map_or(0, |w| w.ticket) })
            }
            _ => Err(Error::backend(format!("{} answered acquire with {reply:?}", self.inner.target))),
        }
    }

    /// The EDEADLK of a {'deadlock', path, holder, cycle, released} answer. The locks let go of
    /// are no longer this process's to put back after a restart.
    fn deadlock(&self, ns: &str, req: &LockRequest, reply: &[String]) -> Error {
        let holder: Value = serde_json::from_str(&reply[2]).unwrap_or(Value::Null);
        let steps: Vec<Value> = serde_json::from_str::<Value>(&reply[3]).ok().and_then(|v| v.as_array().cloned()).unwrap_or_default();
        let released: Vec<String> = serde_json::from_str::<Value>(&reply[4]).ok().and_then(|v| v.as_array().cloned()).unwrap_or_default().iter().filter_map(|v| v.as_str().map(str::to_owned)).collect();
        let text = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_owned();
        let cycle: Vec<CycleStep> = steps.iter().map(|s| CycleStep { session_id: text(s, "sessionId"), agent_id: text(s, "agentId"), path: text(s, "waitsFor"), held_by: text(s, "heldBy") }).collect();
        let first = CycleStep { session_id: req.session_id.clone(), agent_id: req.agent_id.clone(), path: reply[1].clone(), held_by: text(&holder, "sessionId") };
        if self.tracks_held() {
            for p in released.iter().filter(|p| self.inner.held.get(ns, p).is_some_and(|h| h.rec.session_id == req.session_id)) {
                self.inner.held.forget(ns, p, None);
            }
        }
        deadlock_error(&first, holder, &cycle, &released)
    }

    /// The acquire's answer was lost: asks whether it took effect (its records, as if it had
    /// answered) or cancels it on the server. If even that gets no answer, the caller is told it
    /// failed, and a task takes the attempt back as soon as Redis answers.
    /// The inner error: the attempt was cancelled after its connection dropped (it may be tried
    /// again); a timeout's cancellation and an unknown outcome are the outer one.
    async fn resolve_attempt(&self, ns: &str, paths: &[String], req: &LockRequest, nonce: &str, lost: Error) -> Result<std::result::Result<Vec<String>, Error>> {
        let mut inv = RESOLVE_ATTEMPT.prepare_invoke();
        for p in paths {
            inv.key(lock_key(ns, p).0);
        }
        inv.key(cancelled_key(lock_key(ns, &paths[0]).1, nonce));
        inv.arg(nonce).arg(&req.session_id).arg(CANCEL_KEEP_MS);
        // an attempt sent on the lane may still be in flight there: its answer first, as one
        // connection would have it (see `lane`)
        let deadline = tokio::time::Instant::now() + RESOLVE_WITHIN;
        self.inner.lane.settled(RESOLVE_WITHIN).await;
        let mut tries = 0;
        let resolved = loop {
            tries += 1;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now()).max(Duration::from_millis(50));
            match self.script_within::<Vec<String>>("resolve acquire", &inv, left).await {
                Ok(reply) => break Ok(reply),
                // the shared connection dropped with the lane's (its first use after a drop fails):
                // asked once more, reconnected (not more: a server that is down must fail fast)
                Err(Error::Unreachable(_)) if tries == 1 => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => break Err(e),
            }
        };
        let resolved = match resolved {
            Ok(reply) => reply,
            _ => {
                self.undo_attempt_later(ns, paths, &req.session_id, nonce, req.ttl_ms);
                return Err(with_note(lost, "; if Redis granted the lock meanwhile, it is taken back as soon as Redis answers, so no lock is left behind"));
            }
        };
        if resolved.first().map(String::as_str) == Some("applied") {
            return Ok(Ok(resolved));
        }
        let dropped = matches!(lost, Error::Unreachable(_));
        let cancelled = with_note(lost, "; the acquire did not take effect (it was cancelled on the server), so no lock was taken");
        if dropped {
            Ok(Err(cancelled))
        } else {
            Err(cancelled)
        }
    }

    fn undo_invocation(&self, ns: &str, paths: &[String], session: &str, nonce: &str) -> redis::ScriptInvocation<'static> {
        let mut inv = UNDO_ATTEMPT.prepare_invoke();
        let first_tag = lock_key(ns, &paths[0]).1;
        for p in paths {
            let (lock, t) = lock_key(ns, p);
            inv.key(lock).key(self.index(ns, t, session));
        }
        inv.key(cancelled_key(first_tag, nonce)).key(self.whole(ns, first_tag).watching);
        inv.arg(nonce).arg(session).arg(CANCEL_KEEP_MS).arg(&self.inner.channel).arg(&self.keys(ns).prefix);
        for p in paths {
            inv.arg(p);
        }
        inv
    }

    /// Takes back what one attempt did (a slot granted before another was refused); if Redis
    /// does not answer, keeps trying in the background.
    async fn undo_attempt(&self, ns: &str, paths: &[String], session: &str, nonce: &str) {
        let inv = self.undo_invocation(ns, paths, session, nonce);
        if self.script::<i64>("undo acquire", &inv).await.is_err() {
            self.undo_attempt_later(ns, paths, session, nonce, crate::core::lock::MAX_TTL_MS);
        }
    }

    /// Until Redis answers (or the attempt's locks would have expired anyway): takes back what
    /// the attempt did, or cancels it.
    fn undo_attempt_later(&self, ns: &str, paths: &[String], session: &str, nonce: &str, ttl_ms: u64) {
        let (me, paths) = (self.clone(), paths.to_vec());
        let inv = self.undo_invocation(ns, &paths, session, nonce);
        let give_up = tokio::time::Instant::now() + Duration::from_millis(ttl_ms.min(24 * 3600 * 1000)) + Duration::from_secs(1);
        tokio::spawn(async move {
            while tokio::time::Instant::now() < give_up && !me.inner.closed.load(std::sync::atomic::Ordering::Relaxed) {
                match me.script::<i64>("undo acquire", &inv).await {
                    Ok(n) => {
                        crate::core::debug::log(format_args!("an acquire of {} whose answer was lost was taken back ({n} lock(s))", paths.join(" ")));
                        return;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
                }
            }
        });
    }
}

/// What a new grant's record holds besides the three fields only the server knows (timestamp,
/// token, expiresAt): the holder, the path, one hold, the attempt's nonce (see
/// `resolve_attempt.lua`) and the holder's description.
fn head_fields(req: &LockRequest, path: &str, nonce: &str) -> Map<String, Value> {
    let mut m = req.info.clone();
    m.insert("sessionId".into(), Value::from(req.session_id.as_str()));
    m.insert("agentId".into(), Value::from(req.agent_id.as_str()));
    m.insert("path".into(), Value::from(path));
    m.insert("holdCount".into(), Value::from(1));
    m.insert("nonce".into(), Value::from(nonce));
    m
}

/// A new grant's record as the acquire script completes it: the JSON object without its closing
/// brace (the script appends the server's fields and the brace).
fn record_head(req: &LockRequest, path: &str, nonce: &str) -> String {
    let mut json = Value::Object(head_fields(req, path, nonce)).to_string();
    json.pop();
    json
}

/// The record the script wrote for a new grant of `path` at the server's `now` with `token`.
fn granted_record(req: &LockRequest, path: &str, nonce: &str, now: i64, token: u64) -> LockRecord {
    let mut extra = head_fields(req, path, nonce);
    for k in ["sessionId", "agentId", "path", "holdCount"] {
        extra.remove(k);
    }
    LockRecord { session_id: req.session_id.clone(), agent_id: req.agent_id.clone(), path: path.to_owned(), timestamp: now, expires_at: now + req.ttl_ms as i64, token, hold_count: 1, extra }
}

/// Why an acquire of one group failed: an attempt cancelled after its connection dropped (worth
/// one more try), or anything else.
enum Cancelled {
    AfterDrop(Error),
    Other(Error),
}

impl Cancelled {
    fn into_error(self) -> Error {
        match self {
            Cancelled::AfterDrop(e) | Cancelled::Other(e) => e,
        }
    }
}

/// The same error, with a note saying what became of the operation.
fn with_note(e: Error, note: &str) -> Error {
    match e {
        Error::Timeout(m) => Error::Timeout(m + note),
        Error::Unreachable(m) => Error::Unreachable(m + note),
        other => other,
    }
}
