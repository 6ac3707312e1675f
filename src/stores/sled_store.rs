//! The embedded default: a sled folder. Every operation is a few microseconds of synchronous work,
//! so the async methods below never suspend; callers may poll them once (see `now_or_never`).
//! Multi-step lock operations run in sled transactions, so they are atomic across threads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, RwLock};

use serde_json::{json, Value};
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::core::envelope::{encode, namespace_prefix, storage_key, validate_key, Entry};
use crate::core::error::{Error, Result};
use crate::core::lock::{decide, locked_error, parse_record, release_step, Decision, LockFilter, LockRecord, LockRequest, ReleaseStep};
use crate::core::store::{BatchOp, Page, Store};
use crate::core::time::now_ms;

/// sled takes an exclusive file lock per open, even inside one process: one `Db` per folder,
/// shared by every cache that opens it, counted so the last `close()` lets the folder go.
static OPEN_FOLDERS: LazyLock<Mutex<HashMap<PathBuf, (sled::Db, usize)>>> = LazyLock::new(Default::default);

pub struct SledStore {
    folder: PathBuf,
    db: RwLock<Option<sled::Db>>,
}

impl SledStore {
    pub fn open(folder: &str) -> Result<SledStore> {
        if folder.is_empty() || folder.contains('\0') {
            return Err(Error::invalid("path (the sled folder) must be a non-empty string without NUL bytes"));
        }
        std::fs::create_dir_all(folder)
            .map_err(|e| Error::backend(format!("cannot create the sled folder {folder}: {e}")))?;
        let folder = std::fs::canonicalize(folder)
            .map_err(|e| Error::backend(format!("cannot open the sled folder {folder}: {e}")))?;
        let mut open = OPEN_FOLDERS.lock().unwrap_or_else(|p| p.into_inner());
        let db = match open.get_mut(&folder) {
            Some((db, users)) => {
                *users += 1;
                db.clone()
            }
            None => {
                let db = sled::Config::new()
                    .path(&folder)
                    .flush_every_ms(Some(200))
                    .open()
                    .map_err(|e| open_error(&folder, e))?;
                open.insert(folder.clone(), (db.clone(), 1));
                db
            }
        };
        Ok(SledStore { folder, db: RwLock::new(Some(db)) })
    }

    pub fn folder(&self) -> &Path {
        &self.folder
    }

    fn db(&self) -> Result<sled::Db> {
        self.db
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| Error::Closed(format!("the sled cache at {} is closed", self.folder.display())))
    }

    fn err(&self, e: sled::Error) -> Error {
        Error::backend(format!("sled folder {}: {e}", self.folder.display()))
    }

    fn tx_err(&self, e: TransactionError<Error>) -> Error {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => self.err(e),
        }
    }

    /// Live entries of a namespace, in key order, starting after `after` (a full storage key).
    fn live_entries(&self, ns: &str, after: Option<&str>) -> Result<impl Iterator<Item = Result<(String, sled::IVec, Entry)>> + use<'_>> {
        let db = self.db()?;
        let prefix = namespace_prefix(ns);
        let iter = match after {
            Some(k) => {
                let mut start = k.as_bytes().to_vec();
                start.push(0);
                db.range(start..)
            }
            None => db.scan_prefix(prefix.as_bytes()),
        };
        let now = now_ms();
        Ok(iter
            .take_while(move |r| r.as_ref().map_or(true, |(k, _)| k.starts_with(prefix.as_bytes())))
            .filter_map(move |r| match r {
                Err(e) => Some(Err(self.err(e))),
                Ok((k, v)) => {
                    let key = String::from_utf8_lossy(&k).into_owned();
                    match Entry::decode(&v) {
                        Ok(entry) if entry.is_live(now) => Some(Ok((key, v, entry))),
                        Ok(_) => None,
                        // entries() skips records it cannot read rather than failing the whole walk
                        Err(_) => None,
                    }
                }
            }))
    }
}

fn open_error(folder: &Path, e: sled::Error) -> Error {
    let text = e.to_string();
    if text.contains("could not acquire lock") {
        Error::backend(format!(
            "the sled folder {} is in use by another process (sled allows one process per folder). \
             To share locks between processes set FILE_LOCK_CACHE_BACKEND=redis (or hybrid); \
             otherwise give this process its own folder with FILE_LOCK_PATH",
            folder.display()
        ))
    } else {
        Error::backend(format!("cannot open the sled folder {}: {text}", folder.display()))
    }
}

fn abort(e: Error) -> ConflictableTransactionError<Error> {
    ConflictableTransactionError::Abort(e)
}

fn record_json(rec: &LockRecord) -> String {
    serde_json::to_string(rec).expect("a lock record always serialises")
}

impl Store for SledStore {
    fn backend(&self) -> &'static str {
        "sled"
    }

    async fn get(&self, ns: &str, key: &str) -> Result<Option<Entry>> {
        validate_key(key)?;
        let db = self.db()?;
        let k = storage_key(ns, key);
        let Some(bytes) = db.get(&k).map_err(|e| self.err(e))? else { return Ok(None) };
        let entry = Entry::decode_stored(&k, &bytes)?;
        if entry.is_live(now_ms()) {
            return Ok(Some(entry));
        }
        // Lazy deletion, as level-cache does; only if nobody rewrote it meanwhile.
        let _ = db.compare_and_swap(&k, Some(&bytes), None::<&[u8]>);
        Ok(None)
    }

    async fn set(&self, ns: &str, key: &str, value_json: &str, expires_at: Option<i64>) -> Result<()> {
        validate_key(key)?;
        self.db()?
            .insert(storage_key(ns, key), encode(value_json, expires_at).as_bytes())
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn del(&self, ns: &str, key: &str) -> Result<bool> {
        validate_key(key)?;
        Ok(self.db()?.remove(storage_key(ns, key)).map_err(|e| self.err(e))?.is_some())
    }

    async fn batch(&self, ns: &str, ops: &[BatchOp]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for op in ops {
            match op {
                BatchOp::Put { key, value_json, expires_at } => {
                    validate_key(key)?;
                    batch.insert(storage_key(ns, key).as_bytes(), encode(value_json, *expires_at).as_bytes());
                }
                BatchOp::Del { key } => {
                    validate_key(key)?;
                    batch.remove(storage_key(ns, key).as_bytes());
                }
            }
        }
        self.db()?.apply_batch(batch).map_err(|e| self.err(e))
    }

    async fn scan(&self, ns: &str, cursor: Option<&str>, count: usize) -> Result<Page> {
        let prefix_len = namespace_prefix(ns).len();
        let mut page = Page::default();
        for item in self.live_entries(ns, cursor)? {
            let (key, _, entry) = item?;
            page.items.push((key[prefix_len..].to_owned(), entry.value.get().to_owned()));
            if page.items.len() >= count.max(1) {
                // The cursor is the full storage key of the last item; the next page starts after it.
                page.cursor = Some(key);
                break;
            }
        }
        Ok(page)
    }

    async fn sweep_expired(&self, ns: &str) -> Result<u64> {
        let db = self.db()?;
        let now = now_ms();
        let mut n = 0;
        for r in db.scan_prefix(namespace_prefix(ns).as_bytes()) {
            let (k, v) = r.map_err(|e| self.err(e))?;
            if matches!(Entry::decode(&v), Ok(e) if !e.is_live(now))
                && matches!(db.compare_and_swap(&k, Some(&v), None::<&[u8]>), Ok(Ok(())))
            {
                n += 1;
            }
        }
        Ok(n)
    }

    async fn clear(&self, ns: &str) -> Result<u64> {
        let db = self.db()?;
        let mut n = 0;
        for r in db.scan_prefix(namespace_prefix(ns).as_bytes()) {
            let (k, _) = r.map_err(|e| self.err(e))?;
            if db.remove(&k).map_err(|e| self.err(e))?.is_some() {
                n += 1;
            }
        }
        Ok(n)
    }

    async fn acquire(&self, ns: &str, paths: &[String], req: &LockRequest) -> Result<Vec<LockRecord>> {
        let db = self.db()?;
        let keys: Vec<String> = paths.iter().map(|p| storage_key(ns, p)).collect();
        let now = now_ms();
        db.transaction(|tx| {
            let mut granted = Vec::with_capacity(paths.len());
            for (path, key) in paths.iter().zip(&keys) {
                let existing = tx.get(key.as_bytes())?;
                let entry = existing.map(|b| Entry::decode_stored(key, &b)).transpose().map_err(abort)?;
                match decide(path, entry.as_ref(), req, now).map_err(abort)? {
                    Decision::Grant(mut rec) => {
                        // generate_id is monotonic across restarts: a fencing token
                        rec.token = tx.generate_id()? + 1;
                        granted.push(rec);
                    }
                    Decision::Reenter(rec) => granted.push(rec),
                    Decision::Refuse(holder) => return Err(abort(locked_error(path, holder, now))),
                }
            }
            for (rec, key) in granted.iter().zip(&keys) {
                tx.insert(key.as_bytes(), encode(&record_json(rec), Some(rec.expires_at)).as_bytes())?;
            }
            Ok(granted)
        })
        .map_err(|e| self.tx_err(e))
    }

    async fn release(&self, ns: &str, path: &str, session_id: &str) -> Result<bool> {
        let db = self.db()?;
        let key = storage_key(ns, path);
        let now = now_ms();
        db.transaction(|tx| {
            let existing = tx.get(key.as_bytes())?;
            let entry = existing.map(|b| Entry::decode_stored(&key, &b)).transpose().map_err(abort)?;
            match release_step(path, entry.as_ref(), session_id, now).map_err(abort)? {
                ReleaseStep::NotHeld => Ok(false),
                ReleaseStep::Delete => {
                    tx.remove(key.as_bytes())?;
                    Ok(true)
                }
                ReleaseStep::WriteBack(rec) => {
                    tx.insert(key.as_bytes(), encode(&record_json(&rec), Some(rec.expires_at)).as_bytes())?;
                    Ok(true)
                }
            }
        })
        .map_err(|e| self.tx_err(e))
    }

    async fn release_all(&self, ns: &str, filter: &LockFilter) -> Result<u64> {
        let db = self.db()?;
        let mut n = 0;
        for item in self.live_entries(ns, None)? {
            let (key, bytes, entry) = item?;
            let Ok(rec) = parse_record(&key, &entry) else { continue };
            if filter.matches(&rec) && matches!(db.compare_and_swap(key.as_bytes(), Some(&bytes), None::<&[u8]>), Ok(Ok(()))) {
                n += 1;
            }
        }
        Ok(n)
    }

    async fn renew(&self, ns: &str, path: &str, session_id: &str, ttl_ms: u64) -> Result<Option<LockRecord>> {
        let db = self.db()?;
        let key = storage_key(ns, path);
        let now = now_ms();
        db.transaction(|tx| {
            let Some(bytes) = tx.get(key.as_bytes())? else { return Ok(None) };
            let entry = Entry::decode_stored(&key, &bytes).map_err(abort)?;
            if !entry.is_live(now) {
                return Ok(None);
            }
            let mut rec = parse_record(path, &entry).map_err(abort)?;
            if rec.session_id != session_id {
                return Ok(None);
            }
            rec.expires_at = now + ttl_ms as i64;
            tx.insert(key.as_bytes(), encode(&record_json(&rec), Some(rec.expires_at)).as_bytes())?;
            Ok(Some(rec))
        })
        .map_err(|e| self.tx_err(e))
    }

    async fn list_locks(&self, ns: &str, filter: &LockFilter) -> Result<Vec<LockRecord>> {
        let mut out = Vec::new();
        for item in self.live_entries(ns, None)? {
            let (key, _, entry) = item?;
            if let Ok(rec) = parse_record(&key, &entry) {
                if filter.matches(&rec) {
                    out.push(rec);
                }
            }
        }
        Ok(out)
    }

    async fn health(&self) -> Result<Value> {
        let db = self.db()?;
        Ok(json!({
            "backend": "sled",
            "healthy": true,
            "folder": self.folder.display().to_string(),
            "sizeOnDisk": db.size_on_disk().map_err(|e| self.err(e))?,
            "records": db.len(),
        }))
    }

    async fn close(&self) -> Result<()> {
        let Some(db) = self.db.write().unwrap_or_else(|p| p.into_inner()).take() else { return Ok(()) };
        db.flush().map_err(|e| self.err(e))?;
        let mut open = OPEN_FOLDERS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, users)) = open.get_mut(&self.folder) {
            *users -= 1;
            if *users == 0 {
                open.remove(&self.folder);
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
