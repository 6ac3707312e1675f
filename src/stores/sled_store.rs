//! The embedded default: a sled folder, one process at a time (`stores::shared` lets the other
//! processes of the user reach it through the process that has it open).
//!
//! Lock operations must cost microseconds, and sled's own writes (and, worse, its transactions)
//! cost several each. Since sled gives one process exclusive use of a folder, this process's view
//! is the whole truth: writes go into an in-memory table of pending changes (`Pending`), read
//! through it, and a background thread moves them into sled as one atomic batch and fsyncs every
//! `FLUSH_EVERY`. Each change is also appended to a journal before its call returns (see
//! `journal.rs`), so a process killed before the flush loses nothing. Every operation holds the
//! folder's mutex from read to write, so each one is atomic across threads. Nothing here
//! suspends: callers may poll the async methods once (see `now_or_never`).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

use serde_json::{json, Value};

use super::journal::{Change, Journal, NextFile};
use crate::core::envelope::{encode, namespace_prefix, storage_key, validate_key, Entry};
use crate::core::error::{Error, Result};
pub use crate::core::held::Reasserted;
use crate::core::lock::{decide, locked_error, token_of, parse_record, release_step, Decision, LockFilter, LockRecord, LockRequest, ReleaseStep};
use crate::core::store::{BatchOp, Page, Store};
use crate::core::time::{now_ms, now_us};
use crate::core::wait::{deadlock_error, find_cycle, queued_error, waits_now, Attempt, CycleStep, Queued, Queues, WaitEntry, WaitFor, Waiter, Waiting, REFRESH_MS};
use crate::core::wake::{Listening, WakeBus, CHANGES};
use crate::core::path::{claim_ancestors, is_claim};

/// How long a write may stay in memory before it is in sled and on disk.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Where the fencing floor is kept: the highest token this folder knows of, when it was raised by
/// a token from elsewhere (a hybrid's Redis, a migration, a takeover). Not an envelope, so no walk
/// over entries sees it.
const FENCE_KEY: &[u8] = "\u{241E}ofl:fence".as_bytes();

/// sled takes an exclusive file lock per open, even inside one process: one `Folder` per path,
/// shared by every cache that opens it, counted so the last `close()` lets the folder go.
static OPEN_FOLDERS: LazyLock<Mutex<HashMap<PathBuf, (Arc<Folder>, usize)>>> = LazyLock::new(Default::default);

type Changes = HashMap<Vec<u8>, Option<Vec<u8>>>;

/// Writes not yet in sled (key -> Some(value) to insert, None to remove), and their journal.
struct Pending {
    map: Changes,
    /// The storage keys of claims (paths ending in `/`) that may be live: a superset, checked
    /// against the record on use. Empty, as it usually is, file acquires skip claims entirely.
    claims: BTreeSet<Vec<u8>>,
    /// The changes the flusher is moving into sled right now, outside the lock: reads look here
    /// after `map`, so the lock is held for microseconds, not for sled's batch.
    flushing: Option<Arc<Changes>>,
    journal: Journal,
}

impl Pending {
    /// Journals `changes`, then makes them visible. A failed journal write changes nothing.
    fn write(&mut self, folder: &Path, changes: Vec<Change>) -> Result<()> {
        self.journal
            .append(changes.iter().map(|(k, v)| (k.as_slice(), v.as_deref())))
            .map_err(|e| Error::backend(format!("sled folder {}: cannot write its journal: {e}", folder.display())))?;
        for (k, v) in &changes {
            if k.ends_with(b"/") {
                if v.is_some() {
                    self.claims.insert(k.clone());
                } else {
                    self.claims.remove(k);
                }
            }
        }
        self.map.extend(changes);
        Ok(())
    }

    /// Forgets an expired entry without journaling it: if the deletion is lost, it is still expired.
    fn forget(&mut self, key: Vec<u8>) {
        self.claims.remove(&key);
        self.map.insert(key, None);
    }
}

struct Folder {
    path: PathBuf,
    db: sled::Db,
    pending: Mutex<Pending>,
    /// One flush at a time (a journal file is deleted only after the flush that covers it), and
    /// no flush while a scan moves the pending changes into sled itself. Taken before `pending`.
    flushing: Mutex<()>,
    /// Waiters per storage key. Locked after `pending`, never before it.
    queues: Mutex<Queues>,
    /// Releases wake waiters and lost-lock watches of every cache on this folder.
    bus: Arc<WakeBus>,
    stopped: AtomicBool,
    /// The last fencing token handed out or seen. Tokens follow the clock (microseconds), so they
    /// stay ahead of every earlier grant across restarts; this keeps them ahead of tokens that
    /// came from elsewhere, and apart within one microsecond.
    last_token: AtomicU64,
}

impl Folder {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn queues(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, e: sled::Error) -> Error {
        Error::backend(format!("sled folder {}: {e}", self.path.display()))
    }

    /// The current value of `key`: a pending change if there is one, else what sled holds.
    fn read(&self, pending: &Pending, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = pending.map.get(key).or_else(|| pending.flushing.as_ref().and_then(|f| f.get(key))) {
            return Ok(v.clone());
        }
        Ok(self.db.get(key).map_err(|e| self.err(e))?.map(|v| v.to_vec()))
    }

    /// The lock for a walk over sled: no flush under way, and the pending changes moved into sled
    /// (`apply`) under it.
    fn lock_for_scan(&self) -> (MutexGuard<'_, ()>, MutexGuard<'_, Pending>) {
        let flush = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        (flush, self.lock())
    }

    fn read_entry(&self, pending: &Pending, key: &str) -> Result<Option<Entry>> {
        self.read(pending, key.as_bytes())?.map(|b| Entry::decode_stored(key, &b)).transpose()
    }

    /// The lock record at `key` if it is live by both the envelope's and the record's expiry.
    fn live_record(&self, pending: &Pending, path: &str, key: &str, now: i64) -> Result<Option<LockRecord>> {
        let Some(entry) = self.read_entry(pending, key)?.filter(|e| e.is_live(now)) else { return Ok(None) };
        let rec = parse_record(path, &entry)?;
        Ok((rec.expires_at == 0 || rec.expires_at > now).then_some(rec))
    }

    fn write(&self, pending: &mut Pending, changes: Vec<Change>) -> Result<()> {
        pending.write(&self.path, changes)
    }

    /// Every key under `prefix` that may hold a value: in sled, pending, or being flushed.
    fn keys_under(&self, pending: &Pending, prefix: &str) -> Result<BTreeSet<Vec<u8>>> {
        let mut keys = BTreeSet::new();
        for k in self.db.scan_prefix(prefix.as_bytes()).keys() {
            keys.insert(k.map_err(|e| self.err(e))?.to_vec());
        }
        let p = prefix.as_bytes();
        keys.extend(pending.map.keys().filter(|k| k.starts_with(p)).cloned());
        if let Some(f) = &pending.flushing {
            keys.extend(f.keys().filter(|k| k.starts_with(p)).cloned());
        }
        Ok(keys)
    }

    /// The live locks that overlap `path` without being at it: claims on folders above it and,
    /// for a claim, the locks below it. Stale entries of the claim index go on the way.
    fn overlapping(&self, pending: &mut Pending, ns: &str, path: &str, now: i64) -> Result<Vec<(String, LockRecord)>> {
        let mut out = Vec::new();
        if !pending.claims.is_empty() {
            for above in claim_ancestors(path) {
                let key = storage_key(ns, above);
                if !pending.claims.contains(key.as_bytes()) {
                    continue;
                }
                match self.read_entry(pending, &key)? {
                    Some(e) if e.is_live(now) => match parse_record(above, &e) {
                        Ok(rec) if rec.expires_at == 0 || rec.expires_at > now => out.push((key, rec)),
                        Ok(_) => pending.forget(key.into_bytes()),
                        Err(_) => {
                            pending.claims.remove(key.as_bytes()); // a cache value, not a claim
                        }
                    },
                    Some(_) => pending.forget(key.into_bytes()),
                    None => {
                        pending.claims.remove(key.as_bytes());
                    }
                }
            }
        }
        if is_claim(path) {
            let own = storage_key(ns, path);
            let prefix_len = namespace_prefix(ns).len();
            for k in self.keys_under(pending, &own)? {
                let Ok(key) = String::from_utf8(k) else { continue };
                if key == own {
                    continue;
                }
                // anything that is not a live lock record (a cache value) holds nothing up
                if let Ok(Some(rec)) = self.live_record(pending, &key[prefix_len..], &key, now) {
                    out.push((key, rec));
                }
            }
        }
        Ok(out)
    }

    /// Whether a wait of the waits-for graph is still current: its holder still holds the path,
    /// or is still first in line for it.
    /// The token of the lock at `key` that was taken away on purpose (and is not past its life).
    fn tombstone(&self, pending: &Pending, key: &str, now: i64) -> Option<u64> {
        let e = self.read_entry(pending, &format!("{GONE}{key}")).ok().flatten()?;
        e.is_live(now).then(|| e.value.get().parse().ok()).flatten()
    }

    /// The sessions holding a live lock on `path` or overlapping it (a claim above it; for a claim,
    /// a lock below it). A record that cannot be read holds nobody here.
    fn holders_of(&self, pending: &mut Pending, ns: &str, path: &str, now: i64) -> Vec<String> {
        let key = storage_key(ns, path);
        let mut out: Vec<String> = self.live_record(pending, path, &key, now).ok().flatten().map(|r| r.session_id).into_iter().collect();
        for (_, r) in self.overlapping(pending, ns, path, now).unwrap_or_default() {
            if !out.contains(&r.session_id) {
                out.push(r.session_id);
            }
        }
        out
    }

    /// Whether `session` holds a live lock on one of `paths` or overlapping one.
    fn session_holds_any(&self, pending: &mut Pending, ns: &str, paths: &[String], session: &str, now: i64) -> bool {
        paths.iter().any(|p| self.holders_of(pending, ns, p, now).iter().any(|s| s == session))
    }

    /// Announces a change to the locks or waiters of `ns` to whoever watches them.
    fn changed(&self, ns: &str) {
        if !self.bus.idle() {
            self.bus.notify(&storage_key(ns, CHANGES));
        }
    }

    /// A new fencing token: after every token handed out or seen, and not behind the clock.
    fn next_token(&self) -> u64 {
        let floor = now_us();
        // no token above MAX_TOKEN is ever written (see `check_token_of`), so this never saturates
        let prev = self.last_token.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| Some(t.saturating_add(1).max(floor))).unwrap_or(0);
        prev.saturating_add(1).max(floor)
    }

    /// A token written from elsewhere (a lock record set directly, re-asserted or brought back):
    /// later grants must be above it. Kept in the folder when it raises the floor.
    fn saw_token(&self, pending: &mut Pending, token: u64) -> Result<()> {
        if token > crate::core::lock::MAX_TOKEN {
            // a client of another version, or a crafted request: the counter would stop growing
            return Err(Error::invalid(format!("a fencing token of {token} is beyond {}; not written", crate::core::lock::MAX_TOKEN)));
        }
        if self.last_token.fetch_max(token, Ordering::AcqRel) >= token {
            return Ok(());
        }
        self.write(pending, vec![(FENCE_KEY.to_vec(), Some(token.to_string().into_bytes()))])
    }


    /// Moves the pending changes into sled as one batch; they stay pending if sled refuses them.
    /// The caller holds both locks (`lock_for_scan`).
    fn apply(&self, pending: &mut Pending) -> Result<bool> {
        if pending.map.is_empty() {
            return Ok(false);
        }
        self.db.apply_batch(batch_of(&pending.map)).map_err(|e| self.err(e))?;
        pending.map.clear();
        Ok(true)
    }

    /// Everything written so far into sled and onto disk; then its journal files go. The lock is
    /// held only to take the changes (sled's batch runs outside it).
    fn sync_to_disk(&self) -> Result<()> {
        let _one = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        let journal_err = |e: std::io::Error| Error::backend(format!("sled folder {}: cannot start a new journal: {e}", self.path.display()));
        // the next journal file is made outside the lock: creating a file can take milliseconds
        let next = self.lock().journal.next_file();
        let next = next.map(NextFile::create).transpose().map_err(journal_err)?;
        let (changes, rotated) = {
            let mut p = self.lock();
            let rotated = p.journal.rotate(next).map_err(journal_err)?;
            let changes = Arc::new(std::mem::take(&mut p.map));
            if !changes.is_empty() {
                p.flushing = Some(changes.clone());
            }
            (changes, rotated)
        };
        if !changes.is_empty() {
            if let Err(e) = self.db.apply_batch(batch_of(&changes)) {
                // keep them pending (what was written since is newer and stays)
                let mut p = self.lock();
                p.flushing = None;
                for (k, v) in changes.iter() {
                    p.map.entry(k.clone()).or_insert_with(|| v.clone());
                }
                return Err(self.err(e));
            }
        }
        if !changes.is_empty() || rotated {
            self.db.flush().map_err(|e| self.err(e))?;
        }
        let older = {
            let mut p = self.lock();
            p.flushing = None;
            p.journal.take_older()
        };
        for old in older {
            let _ = std::fs::remove_file(old);
        }
        Ok(())
    }
}

fn batch_of(changes: &Changes) -> sled::Batch {
    let mut batch = sled::Batch::default();
    for (k, v) in changes {
        match v {
            Some(v) => batch.insert(k.as_slice(), v.as_slice()),
            None => batch.remove(k.as_slice()),
        }
    }
    batch
}

/// Moves pending writes to disk every FLUSH_EVERY until the folder is closed or dropped.
fn spawn_flusher(folder: Weak<Folder>) {
    std::thread::Builder::new()
        .name("ofl-sled-flush".into())
        .spawn(move || loop {
            std::thread::sleep(FLUSH_EVERY);
            let Some(f) = folder.upgrade() else { return };
            if f.stopped.load(Ordering::Relaxed) {
                return;
            }
            if let Err(e) = f.sync_to_disk() {
                eprintln!("[opencode-file-lock] writing to {} failed: {e}; will retry", f.path.display());
            }
        })
        .expect("a thread can be started");
}

pub struct SledStore {
    path: PathBuf,
    folder: RwLock<Option<Arc<Folder>>>,
}

impl SledStore {
    pub fn open(folder: &str) -> Result<SledStore> {
        Self::open_with_bus(folder, None)
    }

    /// Opens the folder; releases are announced on `bus` (a new one when None, or the one the
    /// folder already has when this process has it open).
    pub fn open_with_bus(folder: &str, bus: Option<Arc<WakeBus>>) -> Result<SledStore> {
        if folder.is_empty() || folder.contains('\0') {
            return Err(Error::invalid("path (the sled folder) must be a non-empty string without NUL bytes"));
        }
        std::fs::create_dir_all(folder)
            .map_err(|e| Error::backend(format!("cannot create the sled folder {folder}: {e}")))?;
        let path = std::fs::canonicalize(folder)
            .map_err(|e| Error::backend(format!("cannot open the sled folder {folder}: {e}")))?;
        let mut open = OPEN_FOLDERS.lock().unwrap_or_else(|p| p.into_inner());
        let shared = match open.get_mut(&path) {
            Some((f, users)) => {
                *users += 1;
                f.clone()
            }
            None => {
                let f = Arc::new(open_folder(&path, bus.unwrap_or_default())?);
                spawn_flusher(Arc::downgrade(&f));
                open.insert(path.clone(), (f.clone(), 1));
                f
            }
        };
        Ok(SledStore { path, folder: RwLock::new(Some(shared)) })
    }

    /// The folder, canonical.
    pub fn folder(&self) -> &Path {
        &self.path
    }

    /// Where this folder announces released keys (the shared store's server listens here for
    /// its clients).
    pub fn bus(&self) -> Option<Arc<WakeBus>> {
        self.shared().ok().map(|f| f.bus.clone())
    }

    fn shared(&self) -> Result<Arc<Folder>> {
        self.folder
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| Error::Closed(format!("the sled cache at {} is closed", self.path.display())))
    }

    /// Live entries of a namespace in key order, after `after` (a full storage key), read from sled
    /// once the pending changes are in it. The caller may hold the folder's lock (`pending`).
    fn live_entries(&self, f: &Folder, pending: &mut Pending, ns: &str, after: Option<&str>, limit: usize) -> Result<Vec<(String, Vec<u8>, Entry)>> {
        f.apply(pending)?;
        let prefix = namespace_prefix(ns);
        let iter = match after {
            Some(k) => {
                let mut start = k.as_bytes().to_vec();
                start.push(0);
                f.db.range(start..)
            }
            None => f.db.scan_prefix(prefix.as_bytes()),
        };
        let now = now_ms();
        let mut out = Vec::new();
        for r in iter {
            let (k, v) = r.map_err(|e| f.err(e))?;
            if !k.starts_with(prefix.as_bytes()) {
                break;
            }
            // entries() skips records it cannot read rather than failing the whole walk
            if let Ok(entry) = Entry::decode(&v) {
                if entry.is_live(now) {
                    out.push((String::from_utf8_lossy(&k).into_owned(), v.to_vec(), entry));
                    if out.len() >= limit {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }
}

/// One acquire try under the folder's locks: grants every path or none, fair to queued waiters;
/// with a waiter, a refusal queues it, unless waiting would close a cycle of waits (EDEADLK).
/// `resume` (the holds this session had of each path before) marks a retry of a request whose
/// answer was lost with its server: a path it already raised to `prior + 1` holds is not raised
/// again.
fn attempt(f: &Folder, ns: &str, paths: &[String], req: &LockRequest, waiter: Option<&Waiter>, resume: Option<&[u32]>) -> Result<Attempt> {
    if paths.len() > crate::core::lock::MAX_PATHS {
        return Err(Error::invalid(format!("an acquire takes at most {} paths", crate::core::lock::MAX_PATHS)));
    }
    let keys: Vec<String> = paths.iter().map(|p| storage_key(ns, p)).collect();
    let now = now_ms();
    let mut p = f.lock();
    let mut q = f.queues();
    let mut granted = Vec::with_capacity(paths.len());
    let mut changed = Vec::with_capacity(paths.len());
    // (the refusal, when to look again, the path asked for that is held up)
    let mut blocked: Option<(Error, i64, &str)> = None;
    for (i, (path, key)) in paths.iter().zip(&keys).enumerate() {
        let entry = f.read_entry(&p, key)?;
        if let Some(prior) = resume.and_then(|r| r.get(i)) {
            let done = entry.as_ref().filter(|e| e.is_live(now)).and_then(|e| parse_record(path, e).ok());
            if let Some(rec) = done.filter(|r| r.session_id == req.session_id && r.hold_count == prior + 1 && (r.expires_at == 0 || r.expires_at > now)) {
                granted.push(rec);
                changed.push(false);
                continue;
            }
        }
        let rec = match decide(path, entry.as_ref(), req, now)? {
            Decision::Grant(rec) | Decision::Reenter(rec) => rec,
            Decision::Refuse(holder) => {
                let x = holder.get("expiresAt").and_then(Value::as_f64).map(|x| x as i64).filter(|x| *x > 0);
                blocked = Some((locked_error(path, holder, now), x.unwrap_or(now + REFRESH_MS), path));
                break;
            }
        };
        if !p.claims.is_empty() || is_claim(path) {
            let other = f.overlapping(&mut p, ns, path, now)?.into_iter().find(|(_, r)| r.session_id != req.session_id);
            if let Some((_, holder)) = other {
                let x = if holder.expires_at > 0 { holder.expires_at } else { now + REFRESH_MS };
                blocked = Some((locked_error(path, serde_json::to_value(holder).unwrap_or(Value::Null), now), x, path));
                break;
            }
        }
        if !q.is_empty() && rec.hold_count == 1 {
            // a waiter that waits for something this session holds now does not hold it up
            let mut waits_for_me = |w: &Queued| w.ns == ns && f.session_holds_any(&mut p, ns, &w.paths, &req.session_id, now);
            let first = q.ahead(key, path, &req.session_id, waiter, now, &mut waits_for_me).or_else(|| q.ahead_overlapping(ns, path, &req.session_id, waiter, now, &mut waits_for_me));
            if let Some((holder, lease_until)) = first {
                blocked = Some((queued_error(path, holder), lease_until, path));
                break;
            }
        }
        granted.push(rec);
        changed.push(true);
    }
    if let Some((error, retry_at, wanted)) = blocked {
        let holder = error.holder().cloned().unwrap_or(Value::Null);
        let waits_for = holder["sessionId"].as_str().unwrap_or("").to_owned();
        let Some(w) = waiter else { return Ok(Attempt::Blocked { error, retry_in_ms: retry_at - now, ticket: 0 }) };
        let held_on = holder["path"].as_str().filter(|s| !s.is_empty()).unwrap_or(wanted).to_owned();
        if !waits_for.is_empty() {
            // the waits as they stand now (see `waits_now`); this waiter's own queue entry counts:
            // whoever is behind it there waits for it
            let waiting: Vec<Queued> = q.waiting_in(ns, now);
            let steps = waits_now(&waiting, &mut |path| f.holders_of(&mut p, ns, path, now));
            if let Some(cycle) = find_cycle(&req.session_id, &waits_for, &steps, |_| true) {
                // the wait just before this one in the cycle goes on: what it waits for of ours is let go
                let before = cycle.last().and_then(|last| waiting.iter().find(|x| x.session_id == last.session_id && x.waiter != w.id && x.paths.contains(&last.path)));
                let mut freed: Vec<String> = Vec::new();
                for wanted_there in before.map(|b| b.paths.clone()).unwrap_or_default() {
                    let exact = storage_key(ns, &wanted_there);
                    if matches!(f.live_record(&p, &wanted_there, &exact, now), Ok(Some(r)) if r.session_id == req.session_id) && !freed.contains(&exact) {
                        freed.push(exact);
                    }
                    for (k, r) in f.overlapping(&mut p, ns, &wanted_there, now)? {
                        if r.session_id == req.session_id && !freed.contains(&k) {
                            freed.push(k);
                        }
                    }
                }
                let prefix_len = namespace_prefix(ns).len();
                let mut changes: Vec<Change> = Vec::with_capacity(freed.len() * 2);
                for k in &freed {
                    if let Ok(Some(r)) = f.live_record(&p, &k[prefix_len..], k, now) {
                        changes.push(tombstone_of(k, &r, now));
                    }
                    changes.push((k.clone().into_bytes(), None));
                }
                f.write(&mut p, changes)?;
                q.leave(w);
                drop(q);
                drop(p);
                for k in &freed {
                    f.bus.notify(k);
                }
                f.changed(ns);
                let released: Vec<String> = freed.iter().map(|k| k[prefix_len..].to_owned()).collect();
                let first = CycleStep { session_id: req.session_id.clone(), agent_id: req.agent_id.clone(), path: wanted.to_owned(), held_by: waits_for };
                return Err(deadlock_error(&first, holder, &cycle, &released));
            }
        }
        let ticket = q.enqueue(&keys, w, req, WaitFor { ns, paths, session: &waits_for, path: &held_on }, now);
        drop(q);
        drop(p);
        if w.ticket == 0 {
            f.changed(ns); // a new waiter
        }
        return Ok(Attempt::Blocked { error, retry_in_ms: retry_at - now, ticket });
    }
    let mut newest = 0;
    for rec in granted.iter_mut().filter(|r| r.token == 0) {
        rec.token = f.next_token();
        newest = newest.max(rec.token);
    }
    let mut writes: Vec<Change> = granted.iter().zip(keys.iter()).zip(&changed).filter(|(_, c)| **c).map(|((rec, key), _)| (key.clone().into_bytes(), record_bytes(rec))).collect();
    if newest > 0 {
        // the counter goes with the grant: the next process to serve the folder starts above it,
        // even if its clock is behind this one's (a clock stepped back, a takeover)
        writes.push((FENCE_KEY.to_vec(), Some(newest.to_string().into_bytes())));
    }
    f.write(&mut p, writes)?;
    if let Some(w) = waiter.filter(|w| w.ticket > 0) {
        q.leave(w);
    }
    drop(q);
    drop(p);
    f.changed(ns);
    Ok(Attempt::Granted(granted))
}

/// Where a lock taken away on purpose leaves its token (see `Folder::tombstone`).
const GONE: &str = "\u{241E}ofl:gone:";

/// The tombstone of a lock taken away on purpose: its token, kept as long as the lock would have
/// lived, so that its holder cannot put it back after a takeover.
fn tombstone_of(key: &str, rec: &LockRecord, now: i64) -> Change {
    let until = if rec.expires_at > now { rec.expires_at } else { now + crate::core::lock::DEFAULT_LOCK_TTL_MS as i64 };
    (format!("{GONE}{key}").into_bytes(), Some(encode(&rec.token.to_string(), Some(until)).into_bytes()))
}

/// Opens sled and brings in whatever an earlier process journaled but had not flushed.
fn open_folder(path: &Path, bus: Arc<WakeBus>) -> Result<Folder> {
    let db = sled::Config::new().path(path).flush_every_ms(None).open().map_err(|e| open_error(path, e))?;
    let journal_err = |e: std::io::Error| Error::backend(format!("sled folder {}: cannot read its journal: {e}", path.display()));
    let (mut journal, replay) = Journal::open(path).map_err(journal_err)?;
    if !replay.is_empty() {
        let mut batch = sled::Batch::default();
        for (k, v) in replay {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        let sled_err = |e: sled::Error| Error::backend(format!("sled folder {}: {e}", path.display()));
        db.apply_batch(batch).map_err(sled_err)?;
        db.flush().map_err(sled_err)?;
    }
    for old in journal.take_older() {
        let _ = std::fs::remove_file(old);
    }
    // where claims may be (see `Pending::claims`): one walk over the keys at open
    let claims = db.iter().keys().filter_map(|k| k.ok()).filter(|k| k.ends_with(b"/")).map(|k| k.to_vec()).collect();
    let fence: u64 = db.get(FENCE_KEY).ok().flatten().and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok()).unwrap_or(0);
    if fence > crate::core::lock::MAX_TOKEN {
        // a counter no grant could follow without wrapping: the folder was tampered with
        return Err(Error::Corrupt(format!(
            "the sled folder {} says its last fencing token was {fence}, beyond {} (no store hands out such tokens); it was not opened. Restore the folder from a backup, or move it away and start a new one",
            path.display(),
            crate::core::lock::MAX_TOKEN
        )));
    }
    Ok(Folder {
        path: path.to_owned(),
        db,
        pending: Mutex::new(Pending { map: HashMap::new(), claims, flushing: None, journal }),
        flushing: Mutex::new(()),
        queues: Mutex::new(Queues::default()),
        bus,
        stopped: AtomicBool::new(false),
        last_token: AtomicU64::new(fence),
    })
}

fn open_error(folder: &Path, e: sled::Error) -> Error {
    let text = e.to_string();
    if text.contains("could not acquire lock") {
        Error::backend(format!(
            "the sled folder {} is open in another process that does not share it (an older opencode-file-lock \
             that opens its folder alone, or a program that opened it with sled directly). Stop that process, or set FILE_LOCK_PATH \
             to another folder",
            folder.display()
        ))
    } else {
        Error::backend(format!("cannot open the sled folder {}: {text}", folder.display()))
    }
}

fn record_json(rec: &LockRecord) -> String {
    serde_json::to_string(rec).expect("a lock record always serialises")
}

fn record_bytes(rec: &LockRecord) -> Option<Vec<u8>> {
    Some(encode(&record_json(rec), Some(rec.expires_at)).into_bytes())
}

impl SledStore {
    /// A retried acquire (see `attempt`): one try, with or without a waiter.
    pub fn acquire_resumed(&self, ns: &str, paths: &[String], req: &LockRequest, waiter: Option<&Waiter>, prior: &[u32]) -> Result<Attempt> {
        attempt(&*self.shared()?, ns, paths, req, waiter, Some(prior))
    }

    /// A retried release whose answer was lost: `prior` is how many holds the session had before
    /// it. If the store already shows one hold fewer, the release is not applied twice.
    pub fn release_resumed(&self, ns: &str, path: &str, session_id: &str, prior: u32) -> Result<bool> {
        let f = self.shared()?;
        let key = storage_key(ns, path);
        let current = f.live_record(&f.lock(), path, &key, now_ms())?.filter(|r| r.session_id == session_id).map_or(0, |r| r.hold_count);
        if current + 1 == prior {
            return Ok(true);
        }
        now_or_never_sled(self.release(ns, path, session_id))
    }

    /// Puts locks a client holds back in place after a takeover (see `stores::shared`): the same
    /// record and token where the path is free, nothing where the same grant is still there, and
    /// a conflict where another session holds it.
    pub fn reassert(&self, ns: &str, recs: &[LockRecord]) -> Result<Vec<Reasserted>> {
        let f = self.shared()?;
        let now = now_ms();
        let mut p = f.lock();
        let mut out = Vec::with_capacity(recs.len());
        let mut writes = Vec::new();
        for rec in recs {
            f.saw_token(&mut p, rec.token)?;
            let key = storage_key(ns, &rec.path);
            let outcome = match f.live_record(&p, &rec.path, &key, now) {
                Ok(Some(cur)) if cur.session_id == rec.session_id => Reasserted::Kept,
                Ok(Some(cur)) => Reasserted::Conflict { holder: serde_json::to_value(cur).unwrap_or(Value::Null) },
                Err(_) => Reasserted::Conflict { holder: Value::Null }, // corrupt: not ours to overwrite
                Ok(None) if rec.expires_at != 0 && rec.expires_at <= now => Reasserted::Expired,
                // taken away on purpose since it was granted (forced free, let go for a deadlock): final
                Ok(None) if f.tombstone(&p, &key, now).is_some_and(|t| t >= rec.token) => Reasserted::Released,
                Ok(None) => {
                    writes.push((key.into_bytes(), record_bytes(rec)));
                    Reasserted::Restored
                }
            };
            out.push(outcome);
        }
        f.write(&mut p, writes)?;
        drop(p);
        f.changed(ns);
        Ok(out)
    }

    /// Puts a waiter back in the queues of `paths` with the ticket it had (after a takeover).
    pub fn requeue(&self, ns: &str, paths: &[String], req: &LockRequest, waiter: &Waiter, waits_for: &str) -> Result<()> {
        let f = self.shared()?;
        let keys: Vec<String> = paths.iter().map(|p| storage_key(ns, p)).collect();
        f.queues().enqueue(&keys, waiter, req, WaitFor { ns, paths, session: waits_for, path: "" }, now_ms());
        f.changed(ns);
        Ok(())
    }

    /// Makes everything written so far durable now.
    pub fn flush(&self) -> Result<()> {
        self.shared()?.sync_to_disk()
    }
}

/// Runs one of this store's calls, which never suspend.
fn now_or_never_sled<T>(fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    crate::core::store::now_or_never(fut).expect("sled operations never suspend")
}

impl Store for SledStore {
    fn backend(&self) -> &'static str {
        "sled"
    }

    async fn get(&self, ns: &str, key: &str) -> Result<Option<Entry>> {
        validate_key(key)?;
        let f = self.shared()?;
        let k = storage_key(ns, key);
        let mut p = f.lock();
        let Some(entry) = f.read_entry(&p, &k)? else { return Ok(None) };
        if entry.is_live(now_ms()) {
            return Ok(Some(entry));
        }
        p.forget(k.into_bytes()); // lazy deletion, as level-cache does
        Ok(None)
    }

    async fn set(&self, ns: &str, key: &str, value_json: &str, ttl_ms: Option<u64>) -> Result<()> {
        validate_key(key)?;
        let f = self.shared()?;
        let expires_at = ttl_ms.map(|t| now_ms() + t as i64);
        let mut p = f.lock();
        if let Some(token) = token_of(value_json) {
            f.saw_token(&mut p, token)?;
        }
        f.write(&mut p, vec![(storage_key(ns, key).into_bytes(), Some(encode(value_json, expires_at).into_bytes()))])
    }

    async fn del(&self, ns: &str, key: &str) -> Result<bool> {
        validate_key(key)?;
        let f = self.shared()?;
        let key = storage_key(ns, key);
        let mut p = f.lock();
        let existed = f.read(&p, key.as_bytes())?.is_some();
        f.write(&mut p, vec![(key.clone().into_bytes(), None)])?;
        drop(p);
        f.bus.notify(&key);
        Ok(existed)
    }

    async fn batch(&self, ns: &str, ops: &[BatchOp]) -> Result<()> {
        let now = now_ms();
        let mut changes = Vec::with_capacity(ops.len());
        let mut tokens = Vec::new();
        for op in ops {
            match op {
                BatchOp::Put { key, value_json, ttl_ms } => {
                    validate_key(key)?;
                    tokens.extend(token_of(value_json));
                    changes.push((storage_key(ns, key).into_bytes(), Some(encode(value_json, ttl_ms.map(|t| now + t as i64)).into_bytes())));
                }
                BatchOp::Del { key } => {
                    validate_key(key)?;
                    changes.push((storage_key(ns, key).into_bytes(), None));
                }
            }
        }
        let f = self.shared()?;
        let mut p = f.lock();
        for t in tokens {
            f.saw_token(&mut p, t)?;
        }
        f.write(&mut p, changes) // all under one lock and one journal write: nobody sees half a batch
    }

    async fn scan(&self, ns: &str, cursor: Option<&str>, count: usize) -> Result<Page> {
        let f = self.shared()?;
        let prefix_len = namespace_prefix(ns).len();
        let count = count.max(1);
        let (_flush, mut p) = f.lock_for_scan();
        let items = self.live_entries(&f, &mut p, ns, cursor, count)?;
        let mut page = Page { now: now_ms(), ..Page::default() };
        if items.len() >= count {
            // The cursor is the full storage key of the last item; the next page starts after it.
            page.cursor = items.last().map(|(k, _, _)| k.clone());
        }
        page.items = items.into_iter().map(|(k, _, e)| (k[prefix_len..].to_owned(), e.value.get().to_owned(), e.expires_at)).collect();
        Ok(page)
    }

    async fn sweep_expired(&self, ns: &str) -> Result<u64> {
        let f = self.shared()?;
        let (_flush, mut p) = f.lock_for_scan();
        f.apply(&mut p)?;
        let now = now_ms();
        let mut n = 0;
        for r in f.db.scan_prefix(namespace_prefix(ns).as_bytes()) {
            let (k, v) = r.map_err(|e| f.err(e))?;
            if matches!(Entry::decode(&v), Ok(e) if !e.is_live(now)) {
                p.forget(k.to_vec());
                n += 1;
            }
        }
        Ok(n)
    }

    async fn clear(&self, ns: &str) -> Result<u64> {
        let f = self.shared()?;
        let (_flush, mut p) = f.lock_for_scan();
        f.apply(&mut p)?;
        let mut gone = Vec::new();
        for r in f.db.scan_prefix(namespace_prefix(ns).as_bytes()) {
            let (k, _) = r.map_err(|e| f.err(e))?;
            gone.push((k.to_vec(), None));
        }
        let n = gone.len() as u64;
        f.write(&mut p, gone)?;
        Ok(n)
    }

    async fn acquire(&self, ns: &str, paths: &[String], req: &LockRequest) -> Result<Vec<LockRecord>> {
        match attempt(&*self.shared()?, ns, paths, req, None, None)? {
            Attempt::Granted(recs) => Ok(recs),
            Attempt::Blocked { error, .. } => Err(error),
        }
    }

    async fn try_acquire_queued(&self, ns: &str, paths: &[String], req: &LockRequest, waiter: &Waiter) -> Result<Attempt> {
        attempt(&*self.shared()?, ns, paths, req, Some(waiter), None)
    }

    async fn leave_queue(&self, ns: &str, paths: &[String], waiter: &Waiter) -> Result<()> {
        let f = self.shared()?;
        let _ = paths; // the queues know which keys the waiter is in
        let still_waited = f.queues().leave(waiter);
        for k in still_waited {
            f.bus.notify(&k); // the next waiter may find the path free
        }
        f.changed(ns);
        Ok(())
    }

    fn listen(&self, ns: &str, paths: &[String], wake: &Arc<tokio::sync::Notify>) -> Vec<Listening> {
        match self.shared() {
            Ok(f) => vec![f.bus.listen(paths.iter().map(|p| storage_key(ns, p)).collect(), wake)],
            Err(_) => Vec::new(),
        }
    }

    async fn force_release(&self, ns: &str, path: &str) -> Result<Option<LockRecord>> {
        let f = self.shared()?;
        let key = storage_key(ns, path);
        let now = now_ms();
        let rec = {
            let mut p = f.lock();
            let Some(rec) = f.live_record(&p, path, &key, now)? else { return Ok(None) };
            f.write(&mut p, vec![(key.clone().into_bytes(), None), tombstone_of(&key, &rec, now)])?;
            rec
        };
        f.bus.notify(&key);
        f.changed(ns);
        Ok(Some(rec))
    }

    async fn release(&self, ns: &str, path: &str, session_id: &str) -> Result<bool> {
        let f = self.shared()?;
        let key = storage_key(ns, path);
        let mut p = f.lock();
        let change = match release_step(path, f.read_entry(&p, &key)?.as_ref(), session_id, now_ms())? {
            ReleaseStep::NotHeld => return Ok(false),
            ReleaseStep::Delete => None,
            ReleaseStep::WriteBack(rec) => record_bytes(&rec),
        };
        let freed = change.is_none();
        f.write(&mut p, vec![(key.clone().into_bytes(), change)])?;
        drop(p);
        if freed {
            f.bus.notify(&key);
        }
        f.changed(ns);
        Ok(true)
    }

    async fn release_all(&self, ns: &str, filter: &LockFilter) -> Result<u64> {
        let f = self.shared()?;
        let (flush, mut p) = f.lock_for_scan();
        let mut freed = Vec::new();
        for (key, _, entry) in self.live_entries(&f, &mut p, ns, None, usize::MAX)? {
            if matches!(parse_record(&key, &entry), Ok(rec) if filter.matches(&rec)) {
                freed.push(key);
            }
        }
        f.write(&mut p, freed.iter().map(|k| (k.clone().into_bytes(), None)).collect())?;
        drop(p);
        drop(flush);
        for k in &freed {
            f.bus.notify(k);
        }
        f.changed(ns);
        Ok(freed.len() as u64)
    }

    async fn renew(&self, ns: &str, path: &str, session_id: &str, ttl_ms: u64) -> Result<Option<LockRecord>> {
        let f = self.shared()?;
        let key = storage_key(ns, path);
        let now = now_ms();
        let mut p = f.lock();
        let Some(mut rec) = f.live_record(&p, path, &key, now)?.filter(|r| r.session_id == session_id) else { return Ok(None) };
        // never in: another call of this session may rely on the later expiry
        rec.expires_at = rec.expires_at.max(now + ttl_ms as i64);
        f.write(&mut p, vec![(key.into_bytes(), record_bytes(&rec))])?;
        Ok(Some(rec))
    }

    async fn list_locks(&self, ns: &str, filter: &LockFilter) -> Result<Vec<LockRecord>> {
        let f = self.shared()?;
        let now = now_ms();
        let (_flush, mut p) = f.lock_for_scan();
        let entries = self.live_entries(&f, &mut p, ns, None, usize::MAX)?;
        let prefix_len = namespace_prefix(ns).len();
        Ok(entries
            .into_iter()
            .filter_map(|(key, _, entry)| {
                let mut rec = parse_record(&key, &entry).ok()?;
                // records of the legacy plugin lack these: the key and the envelope say them
                if rec.path.is_empty() {
                    rec.path = key[prefix_len..].to_owned();
                }
                if rec.expires_at == 0 {
                    rec.expires_at = entry.expires_at.unwrap_or(0);
                }
                Some(rec)
            })
            .filter(|rec| (rec.expires_at == 0 || rec.expires_at > now) && filter.matches(rec))
            .collect())
    }

    async fn list_waiters(&self, ns: &str) -> Result<Waiting> {
        let f = self.shared()?;
        let now = now_ms();
        let waiters = f.queues().waiting_in(ns, now).iter().map(WaitEntry::from).collect();
        Ok(Waiting { now, waiters })
    }

    fn watch(&self, ns: &str, wake: &Arc<tokio::sync::Notify>) -> Vec<Listening> {
        self.listen(ns, &[CHANGES.to_owned()], wake)
    }

    async fn health(&self) -> Result<Value> {
        let f = self.shared()?;
        f.sync_to_disk()?;
        Ok(json!({
            "backend": "sled",
            "healthy": true,
            "folder": self.path.display().to_string(),
            "sizeOnDisk": f.db.size_on_disk().map_err(|e| f.err(e))?,
            "records": f.db.len(),
        }))
    }

    async fn close(&self) -> Result<()> {
        let Some(f) = self.folder.write().unwrap_or_else(|p| p.into_inner()).take() else { return Ok(()) };
        let last = {
            let mut open = OPEN_FOLDERS.lock().unwrap_or_else(|p| p.into_inner());
            let last = match open.get_mut(&self.path) {
                Some((_, users)) => {
                    *users -= 1;
                    *users == 0
                }
                None => true,
            };
            if last {
                open.remove(&self.path);
                f.stopped.store(true, Ordering::Relaxed);
            }
            last
        };
        // Whatever is pending reaches the disk before close() returns.
        f.sync_to_disk()?;
        if last {
            let p = f.lock();
            if p.map.is_empty() {
                p.journal.remove_current(); // everything is in sled
            }
        }
        Ok(())
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // A cache dropped without close() (GC'd in JS) still flushes and lets the folder go.
        let _ = crate::core::store::now_or_never(self.close());
    }
}
