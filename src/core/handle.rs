//! `Handle`: one namespace view of a store, with every rule the public API adds on top of the
//! store's atomic operations: default TTLs, argument checks, duplicate paths folded, releasing by
//! the path as given before resolving it again, ELOST for a renew of a lost lock, the lost-lock
//! watch's bookkeeping, and the metrics and debug lines of each acquire. The napi layer only
//! converts arguments and results around these calls, so `cargo test` covers all of it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Notify;

use super::envelope::{nested_namespace, validate_json, validate_namespace};
use super::error::{Error, Result};
use super::lock::{check_id, check_token_of, check_ttl, LockFilter, LockRecord, LockRequest, DEFAULT_LOCK_TTL_MS, MAX_PATHS, MAX_TTL_MS};
use super::aliases::{self, Aliases};
use super::lost::{LostListener, LostWatch, Spawn};
use super::path::{is_lexically_normal, normalize_path};
use super::store::{BatchOp, Page, Store};
use super::wait::{WaitEntry, Waiting};
use super::{debug, metrics};

/// Changes closer together than this are reported once.
const CHANGE_QUIET: Duration = Duration::from_millis(25);

/// Locks and waiters of a namespace, and the store's clock.
pub struct Snapshot {
    pub now: i64,
    pub locks: Vec<LockRecord>,
    pub waiters: Vec<WaitEntry>,
}

/// A running `watch_changes`; stopping (or dropping) it ends the watch.
pub struct ChangeWatch {
    stop: Arc<Notify>,
}

impl ChangeWatch {
    pub fn stop(&self) {
        self.stop.notify_one();
    }
}

impl Drop for ChangeWatch {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct Handle<S: Store> {
    store: Arc<S>,
    spawn: Spawn,
    ns: String,
    default_ttl_ms: Option<u64>,
    /// Shared by every namespace view of the store: lost-lock reports for this process's locks.
    watch: Arc<LostWatch>,
    /// The inode locks this process took with hard-linked files (see `core::aliases`).
    aliases: Arc<Aliases>,
}

/// One operation of `batch`, as the caller gave it.
pub enum BatchItem {
    Put { key: String, value_json: String, ttl_ms: Option<u64> },
    Del { key: String },
}

/// An acquire's arguments, checked and normalized before any I/O.
pub struct Acquire {
    pub paths: Vec<String>,
    pub req: LockRequest,
    /// (path, inode key) of each hard-linked file among `paths`: taken with them, all or nothing.
    pub aliases: Vec<(String, String)>,
}

impl Acquire {
    /// What the store is asked for: the paths, then their inode keys.
    fn keys(&self) -> Vec<String> {
        let mut all = self.paths.clone();
        for (_, a) in &self.aliases {
            if !all.contains(a) {
                all.push(a.clone());
            }
        }
        all
    }
}

impl<S: Store> Handle<S> {
    pub fn new(store: S, ns: &str, default_ttl_ms: Option<u64>, spawn: Spawn) -> Result<Self> {
        validate_namespace(ns)?;
        if let Some(t) = default_ttl_ms {
            check_ttl(t).map_err(|_| Error::invalid(format!("defaultTtlMs must be between 1 and {MAX_TTL_MS} milliseconds (24.8 days), got {t}")))?;
        }
        Ok(Handle { store: Arc::new(store), ns: ns.to_owned(), default_ttl_ms, watch: LostWatch::new(spawn.clone()), spawn, aliases: Arc::default() })
    }

    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// "sled" or "redis": the store serving calls now (changes only for the hybrid).
    pub fn current_backend(&self) -> &'static str {
        self.store.backend()
    }

    /// A view of the same store under `namespace/ns` (level-cache nests namespaces with `/`).
    pub fn with_namespace(&self, ns: &str) -> Result<Self> {
        validate_namespace(ns)?;
        Ok(Handle { store: self.store.clone(), spawn: self.spawn.clone(), ns: nested_namespace(&self.ns, ns), default_ttl_ms: self.default_ttl_ms, watch: self.watch.clone(), aliases: self.aliases.clone() })
    }

    /// A cache value's TTL: its own, else the cache's default; the store turns it into an expiry
    /// on its own clock.
    fn ttl(&self, ttl_ms: Option<u64>) -> Option<u64> {
        ttl_ms.or(self.default_ttl_ms)
    }

    fn lock_ttl(&self, ttl_ms: Option<u64>) -> Result<u64> {
        check_ttl(ttl_ms.or(self.default_ttl_ms).unwrap_or(DEFAULT_LOCK_TTL_MS))
    }

    // ---- cache ----

    /// The JSON text of the value, or None when missing or expired.
    pub async fn get(&self, key: &str) -> Result<Option<String>> {
        Ok(self.store.get(&self.ns, key).await?.map(|e| e.value.get().to_owned()))
    }

    pub async fn set(&self, key: &str, value_json: &str, ttl_ms: Option<u64>) -> Result<()> {
        validate_json(value_json)?;
        check_token_of(value_json)?;
        self.store.set(&self.ns, key, value_json, self.ttl(ttl_ms)).await
    }

    pub async fn del(&self, key: &str) -> Result<bool> {
        self.store.del(&self.ns, key).await
    }

    pub async fn batch(&self, items: Vec<BatchItem>) -> Result<()> {
        let ops = items
            .into_iter()
            .map(|it| match it {
                BatchItem::Put { key, value_json, ttl_ms } => {
                    validate_json(&value_json)?;
                    check_token_of(&value_json)?;
                    Ok(BatchOp::Put { ttl_ms: self.ttl(ttl_ms), key, value_json })
                }
                BatchItem::Del { key } => Ok(BatchOp::Del { key }),
            })
            .collect::<Result<Vec<_>>>()?;
        self.store.batch(&self.ns, &ops).await
    }

    pub async fn scan(&self, cursor: Option<&str>, count: usize) -> Result<Page> {
        self.store.scan(&self.ns, cursor, count).await
    }

    pub async fn sweep_expired(&self) -> Result<u64> {
        self.store.sweep_expired(&self.ns).await
    }

    pub async fn clear(&self) -> Result<u64> {
        self.store.clear(&self.ns).await
    }

    // ---- locks ----

    pub fn acquire_args(&self, paths: &[String], agent_id: &str, session_id: &str, ttl_ms: Option<u64>, base_dir: Option<&str>) -> Result<Acquire> {
        if paths.is_empty() {
            return Err(Error::invalid("at least one path is required"));
        }
        if paths.len() > MAX_PATHS {
            return Err(Error::invalid(format!("acquireLocks takes at most {MAX_PATHS} paths at once, got {}; take them in several calls", paths.len())));
        }
        let req = LockRequest::new(session_id, agent_id, Some(self.lock_ttl(ttl_ms)?))?;
        let mut normalized: Vec<String> = Vec::with_capacity(paths.len());
        for p in paths {
            let n = normalize_path(p, base_dir)?;
            // The same file named twice is one lock, taken once.
            if !normalized.contains(&n) {
                normalized.push(n);
            }
        }
        let aliases = normalized.iter().filter(|p| !super::path::is_claim(p)).filter_map(|p| aliases::alias_of(p).map(|a| (p.clone(), a))).collect();
        Ok(Acquire { paths: normalized, req, aliases })
    }

    /// Acquires every path or none; the normalized paths. With `wait`, waits that long for
    /// holders and earlier waiters (see `core::wait`); `cancel` aborts the wait.
    pub async fn acquire(&self, a: &Acquire, wait: Option<(Duration, &Notify)>) -> Result<Vec<String>> {
        let started = Instant::now();
        let keys = if a.aliases.is_empty() { None } else { Some(a.keys()) };
        let asked = keys.as_deref().unwrap_or(&a.paths);
        let r = match wait {
            None => self.store.acquire(&self.ns, asked, &a.req).await,
            Some((wait, cancel)) => super::wait::acquire_waiting(&*self.store, &self.ns, asked, &a.req, wait, cancel).await,
        };
        // a refusal on an inode key is said in terms of the path asked for
        let r = r.map_err(|e| a.aliases.iter().fold(e, |e, (p, alias)| aliases::explain(e, alias, p)));
        self.observe_acquire(a, &r, started, wait.map(|(w, _)| w));
        let mut recs = r?;
        if !a.aliases.is_empty() {
            self.aliases.took(&self.ns, &a.req.session_id, &a.aliases);
            recs.retain(|r| !aliases::is_alias(&r.path));
        }
        self.watch.acquired(&self.store, &self.ns, &recs, Duration::from_millis(a.req.ttl_ms));
        Ok(a.paths.clone())
    }

    /// Counts an acquire in the metrics and, when debugging, logs the decision.
    fn observe_acquire(&self, a: &Acquire, r: &Result<Vec<LockRecord>>, started: Instant, wait: Option<Duration>) {
        let took = started.elapsed();
        let status = match r {
            Ok(_) => "granted",
            Err(e) if e.code() == "ELOCKED" => "refused",
            Err(e) if e.code() == "EABORTED" => "aborted",
            Err(e) if e.code() == "EDEADLK" => "deadlock",
            Err(_) => "error",
        };
        if wait.is_some() {
            metrics::waiting_acquisition(status, &a.req.agent_id, took);
        } else {
            metrics::acquisition(status, &a.req.agent_id, took);
        }
        if debug::enabled() {
            let what = match r {
                Ok(recs) => recs.iter().map(|r| format!("token {} holds {}", r.token, r.hold_count)).collect::<Vec<_>>().join(", "),
                Err(e) => format!("{}: {}", e.code(), e.holder().map(|h| format!("held by session {}", h["sessionId"])).unwrap_or_else(|| e.to_string())),
            };
            let waited = wait.map(|w| format!(", willing to wait {} ms", w.as_millis())).unwrap_or_default();
            debug::log(format_args!(
                "acquire {status} {} for session {} agent {} on {} in {:.2} ms{waited} ({what})",
                a.paths.join(" "),
                a.req.session_id,
                a.req.agent_id,
                self.store.backend(),
                took.as_secs_f64() * 1000.0
            ));
        }
    }

    /// Checks a release's arguments (before anything is sent).
    pub fn check_release(path: &str, session_id: &str) -> Result<()> {
        check_id(session_id, "sessionId")?;
        if !is_lexically_normal(path) {
            normalize_path(path, None)?;
        }
        Ok(())
    }

    /// Undoes one hold. Tries the path as given when it is already in normal form (the usual
    /// case: the path an acquire returned), and only otherwise, or when nothing is held there,
    /// pays for resolving it.
    pub async fn release(&self, path: &str, session_id: &str) -> Result<bool> {
        Self::check_release(path, session_id)?;
        // before the release: its own announcement must not be reported as a loss
        if self.watch.enabled() {
            let p = normalize_path(path, None).unwrap_or_else(|_| path.to_owned());
            self.watch.releasing(&self.ns, &p, session_id);
        }
        let r = self.release_by_path(path, session_id).await;
        if matches!(r, Ok(true)) {
            // the inode lock taken with a hard-linked file goes with it
            let p = if is_lexically_normal(path) { path.to_owned() } else { normalize_path(path, None).unwrap_or_else(|_| path.to_owned()) };
            if let Some(alias) = self.aliases.let_go(&self.ns, session_id, &p) {
                if let Err(e) = self.store.release(&self.ns, &alias, session_id).await {
                    debug::log(format_args!("releasing the inode lock {alias} of {p} failed ({}); it expires at its TTL", e.code()));
                }
            }
        }
        if debug::enabled() {
            let outcome = match &r {
                Ok(true) => "released".to_owned(),
                Ok(false) => "not held by that session".to_owned(),
                Err(e) => format!("failed: {}", e.code()),
            };
            debug::log(format_args!("release {path} for session {session_id} on {}: {outcome}", self.store.backend()));
        }
        r
    }

    async fn release_by_path(&self, path: &str, session_id: &str) -> Result<bool> {
        let normal = is_lexically_normal(path);
        if normal && self.store.release(&self.ns, path, session_id).await? {
            return Ok(true);
        }
        let normalized = normalize_path(path, None)?;
        if normal && normalized == path {
            return Ok(false); // already tried
        }
        self.store.release(&self.ns, &normalized, session_id).await
    }

    pub fn filter(session_id: Option<String>, agent_id: Option<String>) -> Result<LockFilter> {
        for (v, name) in [(&session_id, "sessionId"), (&agent_id, "agentId")] {
            if let Some(v) = v {
                check_id(v, name)?;
            }
        }
        Ok(LockFilter { session_id, agent_id })
    }

    /// Deletes every matching lock whatever its hold count; how many.
    pub async fn release_all(&self, filter: &LockFilter) -> Result<u64> {
        self.watch.releasing_all(&self.ns, filter);
        let r = self.store.release_all(&self.ns, filter).await;
        if r.is_ok() && filter.agent_id.is_none() {
            self.aliases.forget(&self.ns, filter.session_id.as_deref());
        }
        debug::log(format_args!("releaseAll session={:?} agent={:?} on {}: {:?}", filter.session_id, filter.agent_id, self.store.backend(), r.as_ref().map_err(|e| e.code())));
        r
    }

    /// Pushes the expiry out to now + ttl. A lock no longer held rejects with ELOST, naming any
    /// new holder, and stays lost.
    pub async fn renew(&self, path: &str, session_id: &str, ttl_ms: Option<u64>) -> Result<LockRecord> {
        check_id(session_id, "sessionId")?;
        let path = normalize_path(path, None)?;
        let ttl = self.lock_ttl(ttl_ms)?;
        match self.store.renew(&self.ns, &path, session_id, ttl).await? {
            Some(r) => {
                self.watch.renewed(&self.ns, &path, session_id, Duration::from_millis(ttl));
                if let Some(alias) = self.aliases.of(&self.ns, session_id, &path) {
                    // the inode lock lives as long as the path's
                    let _ = self.store.renew(&self.ns, &alias, session_id, ttl).await;
                }
                Ok(r)
            }
            None => Err(self.lost_error(&path, session_id).await),
        }
    }

    async fn lost_error(&self, path: &str, session_id: &str) -> Error {
        self.watch.check_now(&self.ns, path, session_id);
        let holder = match self.store.get(&self.ns, path).await {
            Ok(Some(e)) => serde_json::from_str::<Value>(e.value.get()).unwrap_or(Value::Null),
            _ => Value::Null,
        };
        let why = match holder.get("sessionId").and_then(|v| v.as_str()) {
            Some(s) => format!("agent {} (session {s}) holds it now", holder["agentId"].as_str().unwrap_or("unknown")),
            None => "it expired or was released".to_owned(),
        };
        Error::Lost { message: format!("the lock on {path} is no longer held by session {session_id}: {why}; it was not renewed"), holder }
    }

    /// Deletes the lock on `path` whoever holds it, announced so its holder hears of it.
    pub async fn force_release(&self, path: &str) -> Result<Option<LockRecord>> {
        let path = normalize_path(path, None)?;
        let r = self.store.force_release(&self.ns, &path).await;
        // the inode lock its holder took with it (a hard-linked file) goes too
        if let (Ok(Some(gone)), Some(alias)) = (&r, aliases::alias_of(&path)) {
            if let Ok(Some(rec)) = self.store.get(&self.ns, &alias).await.map(|e| e.and_then(|e| serde_json::from_str::<LockRecord>(e.value.get()).ok())) {
                if rec.session_id == gone.session_id {
                    let _ = self.store.force_release(&self.ns, &alias).await;
                }
            }
        }
        debug::log(format_args!("forced release of {path} on {}: {:?}", self.store.backend(), r.as_ref().map(|r| r.as_ref().map(|r| &r.session_id)).map_err(|e| e.code())));
        r
    }

    /// Live locks (the inode locks taken with hard-linked files are not listed: their paths are).
    pub async fn list_locks(&self, filter: &LockFilter) -> Result<Vec<LockRecord>> {
        let mut locks = self.store.list_locks(&self.ns, filter).await?;
        locks.retain(|r| !aliases::is_alias(&r.path));
        Ok(locks)
    }

    /// Who waits for what in this namespace, by the store's clock.
    pub async fn list_waiters(&self) -> Result<Waiting> {
        self.store.list_waiters(&self.ns).await
    }

    /// Locks and waiters at once, with the store's clock: what `watch` and the agents' lock tool
    /// show. (Two reads, not one atomic view: a change between them shows at the next look.)
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let waiting = self.store.list_waiters(&self.ns).await?;
        let locks = self.list_locks(&LockFilter::default()).await?;
        Ok(Snapshot { now: waiting.now, locks, waiters: waiting.waiters })
    }

    /// Calls `f` after every change to this namespace's locks and waiters (grants, releases,
    /// waiters coming and going), at most once per `CHANGE_QUIET` while they keep changing,
    /// until the returned watch is stopped or dropped.
    pub fn watch_changes(&self, f: Arc<dyn Fn() + Send + Sync>) -> ChangeWatch {
        let stop = Arc::new(Notify::new());
        let (store, ns, done) = (self.store.clone(), self.ns.clone(), stop.clone());
        (self.spawn)(Box::pin(async move {
            let wake = Arc::new(Notify::new());
            let _listening = store.watch(&ns, &wake);
            loop {
                tokio::select! {
                    _ = done.notified() => return,
                    _ = wake.notified() => {}
                }
                tokio::time::sleep(CHANGE_QUIET).await;
                f();
            }
        }));
        ChangeWatch { stop }
    }

    pub async fn health(&self) -> Result<Value> {
        self.store.health().await
    }

    /// Prometheus text: this process's counters and this namespace's live lock count.
    pub async fn metrics(&self) -> Result<String> {
        let active = self.store.list_locks(&self.ns, &LockFilter::default()).await?.len();
        Ok(metrics::render(Some(active)))
    }

    /// From now on every lock acquired through the store is watched, and `listener` hears of each
    /// one lost (expired, forced free, or lost to another holder when a store recovers).
    pub fn on_lost(&self, listener: LostListener) {
        self.watch.set_listener(listener);
        let watch = Arc::downgrade(&self.watch);
        self.store.set_lost_listener(Arc::new(move |event| {
            if let Some(w) = watch.upgrade() {
                w.report(event);
            }
        }));
    }

    /// Stops watching (the last listener went away).
    pub fn stop_lost_watch(&self) {
        self.watch.stop();
    }

    /// Makes what was written durable and lets go of the store; later calls fail with ECLOSED.
    pub async fn close(&self) -> Result<()> {
        self.watch.stop();
        self.store.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stores::SledStore;

    fn handle(dir: &tempfile::TempDir, ttl: Option<u64>) -> Handle<SledStore> {
        let spawn: Spawn = Arc::new(|f| {
            tokio::spawn(f);
        });
        Handle::new(SledStore::open(dir.path().to_str().unwrap()).unwrap(), "locks", ttl, spawn).unwrap()
    }

    #[tokio::test]
    async fn acquire_folds_duplicates_and_applies_the_default_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let h = handle(&dir, Some(1234));
        let a = h.acquire_args(&["/a/./f".into(), "/a/f".into()], "agent", "s1", None, None).unwrap();
        assert_eq!(a.paths, vec!["/a/f".to_owned()]);
        assert_eq!(a.req.ttl_ms, 1234);
        h.acquire(&a, None).await.unwrap();
        let rec: Value = serde_json::from_str(&h.get("/a/f").await.unwrap().unwrap()).unwrap();
        assert_eq!(rec["holdCount"], 1, "a path named twice is taken once");
        assert_eq!(rec["expiresAt"].as_i64().unwrap() - rec["timestamp"].as_i64().unwrap(), 1234);
    }

    #[tokio::test]
    async fn release_by_a_spelling_that_needs_resolving_and_elost_on_renew() {
        let dir = tempfile::tempdir().unwrap();
        let h = handle(&dir, None);
        let a = h.acquire_args(&["/r/f".into()], "agent", "s1", Some(60_000), None).unwrap();
        h.acquire(&a, None).await.unwrap();
        assert!(h.release("/r/x/../f", "s1").await.unwrap(), "a spelling of the same file releases it");
        assert!(!h.release("/r/f", "s1").await.unwrap());
        let e = h.renew("/r/f", "s1", None).await.unwrap_err();
        assert_eq!(e.code(), "ELOST");
        assert!(e.to_string().contains("expired or was released"), "{e}");
        assert_eq!(h.release("/r/f", "").await.unwrap_err().code(), "EINVAL");
    }

    #[tokio::test]
    async fn namespaces_nest_and_bad_input_is_einval() {
        let dir = tempfile::tempdir().unwrap();
        let h = handle(&dir, None);
        let sub = h.with_namespace("x").unwrap();
        assert_eq!(sub.namespace(), "locks/x");
        assert_eq!(h.with_namespace("a\u{241F}b").err().unwrap().code(), "EINVAL");
        assert_eq!(h.set("k", "{", None).await.unwrap_err().code(), "EINVAL");
        assert_eq!(h.acquire_args(&[], "a", "s", None, None).err().unwrap().code(), "EINVAL");
        sub.set("k", "1", None).await.unwrap();
        assert_eq!(h.get("k").await.unwrap(), None);
        assert_eq!(sub.get("k").await.unwrap().as_deref(), Some("1"));
    }
}
