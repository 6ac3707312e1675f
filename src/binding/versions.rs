//! Versions and views (`core::versions`) for JS: each method converts, starts one core call and
//! answers its result as JSON through the bridge.

use napi_derive::napi;

use super::cache::NativeCache;
use super::error::millis;
use crate::core::versions::{self, WriteKind, Writer, DEFAULT_VERSION_TTL_MS};

/// Who wrote (`recordWrites`).
#[napi(object)]
pub struct NativeWriter {
    pub session_id: String,
    /// The root of the writer's task tree; its own session when absent.
    pub tree: Option<String>,
    pub agent_id: String,
    pub title: Option<String>,
    pub agent_name: Option<String>,
    pub kind: Option<String>,
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn ttl(v: Option<f64>) -> napi::Result<u64> {
    Ok(millis(v, "ttlMs")?.unwrap_or(DEFAULT_VERSION_TTL_MS))
}

#[napi]
impl NativeCache {
    /// For each path (folder claims skipped), whether `tree` may write it now: JSON `Freshness[]`.
    /// `whole[i]`: path i is written as a whole (a missing entry: as the last one says).
    #[napi]
    pub fn check_fresh(&self, id: u32, paths: Vec<String>, whole: Vec<bool>, tree: String, base_dir: Option<String>) -> napi::Result<Option<String>> {
        let kinds: Vec<WriteKind> = whole.into_iter().map(|w| if w { WriteKind::Whole } else { WriteKind::Partial }).collect();
        self.run(id, |h| async move { Ok(json(&versions::check(&h, &paths, &kinds, &tree, base_dir.as_deref()).await?)) })
    }

    /// Records each path's new version and the writer's tree's view: JSON `(Version | null)[]`.
    #[napi]
    pub fn record_writes(&self, id: u32, paths: Vec<String>, writer: NativeWriter, base_dir: Option<String>, ttl_ms: Option<f64>) -> napi::Result<Option<String>> {
        let ttl = ttl(ttl_ms)?;
        let w = Writer { session_id: writer.session_id, tree: writer.tree.unwrap_or_default(), agent_id: writer.agent_id, title: writer.title, agent_name: writer.agent_name, kind: writer.kind };
        self.run(id, |h| async move { Ok(json(&versions::record_writes(&h, &paths, &w, base_dir.as_deref(), ttl).await?)) })
    }

    /// Records `tree`'s view of the file as it is now; "1" recorded, "0" not (absent, or changed
    /// since the mark `unchangedSince`).
    #[napi]
    pub fn record_view(&self, id: u32, path: String, tree: String, unchanged_since: Option<String>, base_dir: Option<String>, ttl_ms: Option<f64>) -> napi::Result<Option<String>> {
        let ttl = ttl(ttl_ms)?;
        self.run(id, |h| async move { Ok(if versions::record_view(&h, &path, &tree, unchanged_since.as_deref(), base_dir.as_deref(), ttl).await? { "1" } else { "0" }.into()) })
    }

    /// Every file `tree` has a view of, and whether the disk matches it: JSON `ViewState[]`.
    #[napi]
    pub fn tree_views(&self, id: u32, tree: String) -> napi::Result<Option<String>> {
        self.run(id, |h| async move { Ok(json(&versions::tree_views(&h, &tree).await?)) })
    }

    /// The last recorded write of each path: JSON `(Version | null)[]`.
    #[napi]
    pub fn last_writes(&self, id: u32, paths: Vec<String>, base_dir: Option<String>) -> napi::Result<Option<String>> {
        self.run(id, |h| async move { Ok(json(&versions::last_writes(&h, &paths, base_dir.as_deref()).await?)) })
    }
}

/// One stat of a file: a mark that changes with every write, or null when no regular file is there.
#[napi]
pub fn file_mark(path: String) -> Option<String> {
    crate::core::fingerprint::mark(&path)
}
