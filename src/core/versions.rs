//! No lost updates: the store keeps, per path, the last write's version (its fingerprint and who
//! wrote it), and per task tree the fingerprint of each file as that tree last read or wrote it
//! (its view). Before a write, under the file's lock, the file on this machine's disk is compared
//! with the writer's view: a different file means someone else changed it since, and the write
//! is refused naming who, when the disk matches their recorded version.
//!
//! Both live in the store as cache entries with a TTL, beside the namespace's locks:
//! `<ns>/versions` keyed by path, and `<ns>/views/<host>/<tree>` keyed by path (the key carries the
//! hash tag of the path's lock key first: see `key_of`; one namespace a
//! tree, so a tree's views are listed without reading anyone else's; one a host, so a path that
//! means different files on different machines never mixes views).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{Error, Result};
use super::fingerprint::{self, Fingerprint, Sameness};
use super::handle::Handle;
use super::path::normalize_path;
use super::store::Store;
use super::time::now_ms;

/// How long versions and views are kept by default: a day.
pub const DEFAULT_VERSION_TTL_MS: u64 = 86_400_000;
/// Text other agents read (titles, agent names, kinds) is cut to this many characters.
const MAX_LABEL_CHARS: usize = 200;

/// Who wrote, as the writer tells it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Writer {
    pub session_id: String,
    /// The root of the writer's task tree (its own session for a top-level one).
    #[serde(default)]
    pub tree: String,
    pub agent_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The agent's name in its host (opencode's `build`, `plan`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_name: Option<String>,
    /// `opencode`, `claude-code`, `mcp:<client>`, `human`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// The last write of a path: what the file held after it, who wrote it, where and when.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Version {
    pub size: u64,
    pub hash: String,
    #[serde(flatten)]
    pub writer: Writer,
    /// The writer's machine, by name.
    #[serde(default)]
    pub host: String,
    /// When it was recorded (epoch ms, the writer's clock: shown to people, never compared with a lock).
    pub at: i64,
}

/// A file as a task tree last read or wrote it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct View {
    #[serde(flatten)]
    pub seen: Fingerprint,
    /// When it was taken (epoch ms, this machine's clock).
    pub at: i64,
}

/// How a write changes a file: as a whole (`write`: needs a view of an existing file), or where
/// its context matches (`edit`, a patch: goes ahead on a file never read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    Whole,
    Partial,
}

/// What the check found for one path.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Freshness {
    pub path: String,
    /// Whether the write may go ahead.
    pub ok: bool,
    /// `new` (no file), `fresh` (as the tree saw it), `own` (as the tree itself last wrote it),
    /// `unread` (the tree never saw it), `stale` (changed since), `torn` (it changed while the tree
    /// read it), `unreadable` (cannot tell).
    pub status: &'static str,
    /// The path's last recorded write, whoever made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_write: Option<Version>,
    /// Whether the file on disk is what that write left (so it can be named as the change).
    pub by_last_write: bool,
    /// The file's modification time on this disk (epoch ms), when it exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<i64>,
    /// When the tree's view was taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub viewed_at: Option<i64>,
    /// Why it could not tell (`unreadable`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A view of one of a tree's files, and whether the file on disk still matches it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ViewState {
    pub path: String,
    pub fresh: bool,
    /// The file's stat mark now (None: absent).
    pub mark: Option<String>,
}

/// This machine: a stable id for keys, and its name for people.
pub struct Host {
    pub id: String,
    pub name: String,
}

pub fn this_host() -> &'static Host {
    static HOST: std::sync::LazyLock<Host> = std::sync::LazyLock::new(|| {
        let name = host_name();
        // a container or a clone may share a host name; the machine id tells them apart
        let machine = ["/etc/machine-id", "/var/lib/dbus/machine-id"].iter().find_map(|p| std::fs::read_to_string(p).ok()).map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let id = safe_component(&format!("{name}-{}", machine.as_deref().map(|m| &m[..m.len().min(12)]).unwrap_or("")));
        Host { id, name }
    });
    &HOST
}

#[cfg(unix)]
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    if ok && end > 0 {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "localhost".into()
    }
}

#[cfg(not(unix))]
fn host_name() -> String {
    std::env::var("COMPUTERNAME").unwrap_or_else(|_| "localhost".into())
}

/// A namespace component made of safe characters: as given when short and plain, else a hash.
fn safe_component(s: &str) -> String {
    if !s.is_empty() && s.len() <= 96 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:@-".contains(&b)) {
        s.to_owned()
    } else {
        format!("h{:016x}", xxhash_rust::xxh3::xxh3_64(s.as_bytes()))
    }
}

/// One line, no control characters, at most `MAX_LABEL_CHARS`: text other agents will read.
pub fn label(s: &str) -> String {
    super::text::one_line(s, MAX_LABEL_CHARS)
}

fn clean_writer(w: &Writer) -> Result<Writer> {
    super::lock::check_id(&w.session_id, "sessionId")?;
    super::lock::check_id(&w.agent_id, "agentId")?;
    let tree = if w.tree.is_empty() { w.session_id.clone() } else { w.tree.clone() };
    super::lock::check_id(&tree, "tree")?;
    let opt = |o: &Option<String>| o.as_deref().map(label).filter(|s| !s.is_empty());
    Ok(Writer { session_id: w.session_id.clone(), tree, agent_id: w.agent_id.clone(), title: opt(&w.title), agent_name: opt(&w.agent_name), kind: opt(&w.kind) })
}

/// The verdict for a path from what is on disk, the tree's view and the last write: one rule for
/// every host of the plugin (opencode 1 and 2, Claude Code), so they cannot decide differently.
pub fn judge(path: &str, kind: WriteKind, tree: &str, now_mark: Option<&str>, view: Option<&View>, last: Option<&Version>) -> Freshness {
    let mut f = Freshness { path: path.to_owned(), ok: true, status: "new", last_write: last.cloned(), by_last_write: false, modified_at: now_mark.and_then(fingerprint::mark_mtime_ms), viewed_at: view.map(|v| v.at), error: None };
    let Some(_) = now_mark else { return f }; // nothing on disk to lose
    // Is the file on disk what the last write left? (hashed at most once)
    let mut disk: Option<Fingerprint> = None;
    let matches_last = |disk: &mut Option<Fingerprint>| -> Result<bool> {
        let Some(v) = last else { return Ok(false) };
        if disk.is_none() {
            *disk = fingerprint::fingerprint(path)?;
        }
        Ok(disk.as_ref().is_some_and(|d| d.size == v.size && d.hash == v.hash))
    };
    let outcome: Result<()> = (|| {
        match view {
            None => {
                f.by_last_write = matches_last(&mut disk)?;
                if f.by_last_write && last.is_some_and(|v| v.writer.tree == tree) {
                    f.status = "own";
                } else {
                    f.status = "unread";
                    f.ok = kind == WriteKind::Partial;
                }
            }
            Some(v) if v.seen.hash == TORN => {
                f.status = "torn";
                f.ok = false;
                f.by_last_write = matches_last(&mut disk)?;
            }
            Some(v) => match fingerprint::same_as(path, now_mark, &v.seen)? {
                Sameness::Absent => f.status = "new",
                Sameness::Same { .. } => {
                    f.status = "fresh";
                    f.by_last_write = last.is_some_and(|l| l.size == v.seen.size && l.hash == v.seen.hash);
                }
                Sameness::Different { hashed } => {
                    disk = hashed;
                    f.by_last_write = matches_last(&mut disk)?;
                    if f.by_last_write && last.is_some_and(|l| l.writer.tree == tree) {
                        f.status = "own"; // written by this tree elsewhere (another process of it)
                    } else {
                        f.status = "stale";
                        f.ok = false;
                    }
                }
            },
        }
        Ok(())
    })();
    if let Err(e) = outcome {
        f.ok = false;
        f.status = "unreadable";
        f.error = Some(e.to_string());
    }
    f
}

/// The namespaces of versions and of a tree's views, beside `h`'s locks.
fn versions_of<S: Store>(h: &Handle<S>) -> Result<Handle<S>> {
    h.with_namespace("versions")
}

fn views_of<S: Store>(h: &Handle<S>, tree: &str) -> Result<Handle<S>> {
    h.with_namespace(&format!("views/{}/{}", this_host().id, safe_component(tree)))
}

/// The key of `path`'s version or view: the path behind the hash tag of its lock key's slot
/// (`{tag}/p/src/a.ts`), so on a Redis Cluster a file's version and views live in the slot (and on
/// the primary) of the file's lock. `locks` is the handle of the locks.
fn key_of<S: Store>(locks: &Handle<S>, path: &str) -> String {
    let lock_key = super::envelope::storage_key(locks.namespace(), path);
    format!("{{{}}}{path}", super::slot::tag(super::slot::slot(&lock_key)))
}

/// The path a version's or view's key names (keys written before the tags were the path itself).
pub fn path_of_key(key: &str) -> &str {
    match key.strip_prefix('{').and_then(|k| k.split_once('}')) {
        Some((_, path)) => path,
        None => key,
    }
}

async fn get_json<S: Store, T: for<'de> Deserialize<'de>>(h: &Handle<S>, key: &str) -> Result<Option<T>> {
    // a record that does not parse (another version's, a hand-edited one) counts as none
    Ok(h.get(key).await?.and_then(|j| serde_json::from_str(&j).ok()))
}

fn normalized(paths: &[String], base_dir: Option<&str>) -> Result<Vec<String>> {
    if paths.len() > super::lock::MAX_PATHS {
        return Err(Error::invalid(format!("at most {} paths at once, got {}", super::lock::MAX_PATHS, paths.len())));
    }
    paths.iter().map(|p| normalize_path(p, base_dir)).collect()
}

/// For each path, whether `tree` may write it now (see `judge`). Call it under the paths' locks.
pub async fn check<S: Store>(h: &Handle<S>, paths: &[String], kinds: &[WriteKind], tree: &str, base_dir: Option<&str>) -> Result<Vec<Freshness>> {
    super::lock::check_id(tree, "tree")?;
    let paths = normalized(paths, base_dir)?;
    let (versions, views) = (versions_of(h)?, views_of(h, tree)?);
    let mut out = Vec::with_capacity(paths.len());
    for (i, p) in paths.iter().enumerate() {
        if super::path::is_claim(p) {
            continue; // a folder claim writes nothing itself
        }
        let kind = kinds.get(i).or(kinds.last()).copied().unwrap_or(WriteKind::Partial);
        let k = key_of(h, p);
        let (last, view) = tokio::join!(get_json::<S, Version>(&versions, &k), get_json::<S, View>(&views, &k));
        out.push(judge(p, kind, tree, fingerprint::mark(p).as_deref(), view?.as_ref(), last?.as_ref()));
    }
    Ok(out)
}

/// After a write: each path's new version (who, what the file now holds) and the writer's tree's
/// view of it. A path with no file any more drops both. Call it before letting go of the locks.
pub async fn record_writes<S: Store>(h: &Handle<S>, paths: &[String], writer: &Writer, base_dir: Option<&str>, ttl_ms: u64) -> Result<Vec<Option<Version>>> {
    let writer = clean_writer(writer)?;
    let paths = normalized(paths, base_dir)?;
    let (versions, views) = (versions_of(h)?, views_of(h, &writer.tree)?);
    let mut out = Vec::with_capacity(paths.len());
    for p in &paths {
        if super::path::is_claim(p) {
            out.push(None);
            continue;
        }
        let k = key_of(h, p);
        match fingerprint::fingerprint(p)? {
            None => {
                let (a, b) = tokio::join!(versions.del(&k), views.del(&k));
                a?;
                b?;
                out.push(None);
            }
            Some(fp) => {
                let at = now_ms();
                let version = Version { size: fp.size, hash: fp.hash.clone(), writer: writer.clone(), host: this_host().name.clone(), at };
                let view = View { seen: fp, at };
                let (version_json, view_json) = (json(&version), json(&view));
                let (a, b) = tokio::join!(versions.set(&k, &version_json, Some(ttl_ms)), views.set(&k, &view_json, Some(ttl_ms)));
                a?;
                b?;
                out.push(Some(version));
            }
        }
    }
    Ok(out)
}

/// After a read: the tree's view of the file, as the file is now. With `unchanged_since` (a stat
/// mark taken before the read), a file that changed meanwhile gets a view that matches no content:
/// the reader may have seen either content, or half of each, so its next write there is refused
/// until it reads the file again. True when the content it saw is known.
pub async fn record_view<S: Store>(h: &Handle<S>, path: &str, tree: &str, unchanged_since: Option<&str>, base_dir: Option<&str>, ttl_ms: u64) -> Result<bool> {
    super::lock::check_id(tree, "tree")?;
    let p = normalize_path(path, base_dir)?;
    let Some(mut fp) = fingerprint::fingerprint(&p)? else { return Ok(false) };
    let known = unchanged_since.is_none_or(|m| m == fp.mark);
    if !known {
        fp = Fingerprint { hash: TORN.into(), mark: String::new(), settled: false, ..fp };
    }
    let view = View { seen: fp, at: now_ms() };
    views_of(h, tree)?.set(&key_of(h, &p), &json(&view), Some(ttl_ms)).await?;
    Ok(known)
}

/// The hash of a view taken while the file changed: no content hashes to it.
const TORN: &str = "changed-while-read";

/// Every file `tree` has a view of, and whether the disk still matches it.
pub async fn tree_views<S: Store>(h: &Handle<S>, tree: &str) -> Result<Vec<ViewState>> {
    super::lock::check_id(tree, "tree")?;
    let views = views_of(h, tree)?;
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = views.scan(cursor.as_deref(), 256).await?;
        for (key, value, _) in page.items {
            let Ok(view) = serde_json::from_str::<View>(&value) else { continue };
            let path = path_of_key(&key).to_owned();
            let mark = fingerprint::mark(&path);
            let fresh = matches!(fingerprint::same_as(&path, mark.as_deref(), &view.seen), Ok(Sameness::Same { .. }));
            out.push(ViewState { path, fresh, mark });
        }
        match page.cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok(out)
}

/// The last writes of `paths` (None where none is recorded).
pub async fn last_writes<S: Store>(h: &Handle<S>, paths: &[String], base_dir: Option<&str>) -> Result<Vec<Option<Version>>> {
    let paths = normalized(paths, base_dir)?;
    let versions = versions_of(h)?;
    let mut out = Vec::with_capacity(paths.len());
    for p in &paths {
        out.push(get_json::<S, Version>(&versions, &key_of(h, p)).await?);
    }
    Ok(out)
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| Value::Null.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::lost::Spawn;
    use crate::stores::SledStore;
    use std::sync::Arc;

    fn handle(dir: &tempfile::TempDir) -> Handle<SledStore> {
        let spawn: Spawn = Arc::new(|f| {
            tokio::spawn(f);
        });
        Handle::new(SledStore::open(dir.path().join("db").to_str().unwrap()).unwrap(), "locks", None, spawn).unwrap()
    }

    fn writer(session: &str) -> Writer {
        Writer { session_id: session.into(), tree: session.into(), agent_id: format!("agent-{session}"), title: Some(format!("Title\n{session}\x1b[31m")), agent_name: Some("build".into()), kind: Some("opencode".into()) }
    }

    #[tokio::test]
    async fn a_write_from_an_old_view_is_stale_and_names_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let h = handle(&dir);
        let f = dir.path().join("app.ts").to_str().unwrap().to_owned();
        std::fs::write(&f, "v1\n").unwrap();
        // A reads
        assert!(record_view(&h, &f, "A", None, None, 60_000).await.unwrap());
        let ok = check(&h, &[f.clone()], &[WriteKind::Whole], "A", None).await.unwrap();
        assert_eq!((ok[0].ok, ok[0].status), (true, "fresh"));
        // B writes without reading: a whole write is refused as unread, an edit goes ahead
        let unread = check(&h, &[f.clone()], &[WriteKind::Whole], "B", None).await.unwrap();
        assert_eq!((unread[0].ok, unread[0].status), (false, "unread"));
        assert!(check(&h, &[f.clone()], &[WriteKind::Partial], "B", None).await.unwrap()[0].ok);
        std::fs::write(&f, "v2 from B\n").unwrap();
        let v = record_writes(&h, &[f.clone()], &writer("B"), None, 60_000).await.unwrap();
        assert_eq!(v[0].as_ref().unwrap().writer.title.as_deref(), Some("Title B [31m"), "labels are one line without control characters");
        // A's write is now stale, and B is named (the disk is what B wrote)
        let stale = check(&h, &[f.clone()], &[WriteKind::Partial], "A", None).await.unwrap();
        assert_eq!((stale[0].ok, stale[0].status, stale[0].by_last_write), (false, "stale", true));
        assert_eq!(stale[0].last_write.as_ref().unwrap().writer.session_id, "B");
        // B's own next write is fresh; after a human edit nobody is named
        assert_eq!(check(&h, &[f.clone()], &[WriteKind::Whole], "B", None).await.unwrap()[0].status, "fresh");
        std::fs::write(&f, "v3 by hand\n").unwrap();
        let human = check(&h, &[f.clone()], &[WriteKind::Whole], "B", None).await.unwrap();
        assert_eq!((human[0].ok, human[0].status, human[0].by_last_write), (false, "stale", false));
        // reading again makes the same write fresh
        assert!(record_view(&h, &f, "A", None, None, 60_000).await.unwrap());
        assert_eq!(check(&h, &[f.clone()], &[WriteKind::Whole], "A", None).await.unwrap()[0].status, "fresh");
    }

    #[tokio::test]
    async fn new_files_views_of_changing_files_and_tree_listings() {
        let dir = tempfile::tempdir().unwrap();
        let h = handle(&dir);
        let f = dir.path().join("new.txt").to_str().unwrap().to_owned();
        assert_eq!(check(&h, &[f.clone()], &[WriteKind::Whole], "A", None).await.unwrap()[0].status, "new");
        std::fs::write(&f, "x").unwrap();
        assert!(!record_view(&h, &f, "A", Some("0:0:0:0:0"), None, 60_000).await.unwrap(), "changed since the mark: what was seen is not known");
        let torn = check(&h, &[f.clone()], &[WriteKind::Partial], "A", None).await.unwrap();
        assert_eq!((torn[0].ok, torn[0].status), (false, "torn"), "even an edit waits for a read whose content is known");
        assert!(!tree_views(&h, "A").await.unwrap()[0].fresh);
        assert!(record_view(&h, &f, "A", fingerprint::mark(&f).as_deref(), None, 60_000).await.unwrap());
        let views = tree_views(&h, "A").await.unwrap();
        assert_eq!(views.len(), 1);
        assert!(views[0].fresh);
        assert!(tree_views(&h, "B").await.unwrap().is_empty(), "trees do not share views");
        std::fs::write(&f, "y").unwrap();
        assert!(!tree_views(&h, "A").await.unwrap()[0].fresh);
        std::fs::remove_file(&f).unwrap();
        let gone = record_writes(&h, &[f.clone()], &writer("A"), None, 60_000).await.unwrap();
        assert!(gone[0].is_none());
        assert!(tree_views(&h, "A").await.unwrap().is_empty(), "a deleted file drops its view");
        assert_eq!(check(&h, &[f.clone()], &[WriteKind::Whole], "A", None).await.unwrap()[0].status, "new");
    }

    #[test]
    fn safe_components_and_labels() {
        assert_eq!(safe_component("ses_abc-1"), "ses_abc-1");
        assert!(safe_component("a/b*c").starts_with('h'));
        assert!(safe_component(&"x".repeat(200)).len() < 20);
        assert_eq!(label("  a\tb\r\nc\u{7}  "), "a b c");
        assert_eq!(label(&"é".repeat(500)).chars().count(), MAX_LABEL_CHARS);
    }
}
