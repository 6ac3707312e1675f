//! What a file on this machine's disk looks like, for telling whether it changed since an agent
//! last saw it: a stat mark (device, inode, size, mtime, ctime) that settles most comparisons
//! with one stat, and a content hash for the rest.

use std::fs::{File, Metadata};
use std::io::Read;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use super::error::{Error, Result};

/// A file modified this close (ns) before its fingerprint was taken may change again within the
/// same mtime tick (the kernel's clock is coarse) without its stat changing: such a mark does not
/// settle equality, the hash does (git's "racily clean" rule).
const RACY_NS: i128 = 2_000_000_000;

/// A regular file's content, as seen at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fingerprint {
    pub size: u64,
    /// xxh3-64 of the content, 16 hex digits.
    pub hash: String,
    /// `dev:ino:size:mtimeNs:ctimeNs`: any write changes it (ctime cannot be set back).
    pub mark: String,
    /// Whether the mark alone can later say "unchanged" (the file was not modified just before).
    pub settled: bool,
}

/// One stat of `path`: its mark, or None when there is no regular file there.
pub fn mark(path: &str) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    meta.is_file().then(|| mark_of(&meta))
}

#[cfg(unix)]
fn mark_of(m: &Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!("{}:{}:{}:{}:{}", m.dev(), m.ino(), m.size(), ns(m.mtime(), m.mtime_nsec()), ns(m.ctime(), m.ctime_nsec()))
}

#[cfg(unix)]
fn ns(secs: i64, nsec: i64) -> i128 {
    secs as i128 * 1_000_000_000 + nsec as i128
}

#[cfg(not(unix))]
fn mark_of(m: &Metadata) -> String {
    let t = |r: std::io::Result<std::time::SystemTime>| r.ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0);
    format!("0:0:{}:{}:{}", m.len(), t(m.modified()), t(m.created()))
}

/// The mtime (epoch ms) a mark records.
pub fn mark_mtime_ms(mark: &str) -> Option<i64> {
    mark.split(':').nth(3)?.parse::<i128>().ok().map(|n| (n / 1_000_000) as i64)
}

fn mark_mtime_ns(mark: &str) -> Option<i128> {
    mark.split(':').nth(3)?.parse().ok()
}

fn now_ns() -> i128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0)
}

/// Opens a regular file for reading without following a symlink in its last component and
/// without blocking on a FIFO swapped in under the name.
fn open_regular(path: &str) -> std::io::Result<File> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC);
    }
    o.open(path)
}

/// Hashes what `file` holds; its mark as of the read, and the hash.
fn hash_file(mut file: File) -> std::io::Result<(String, u64, String)> {
    let before = file.metadata()?;
    if !before.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut h = Xxh3::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((mark_of(&before), size, format!("{:016x}", h.digest())))
}

/// The file's fingerprint: None when no regular file is there. A file that changes while it is
/// read is read again (a few times), so the hash and the mark describe the same content.
pub fn fingerprint(path: &str) -> Result<Option<Fingerprint>> {
    for _ in 0..4 {
        let file = match open_regular(path) {
            Ok(f) => f,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound) => return Ok(None),
            Err(e) if e.raw_os_error() == Some(eloop()) => return Ok(None), // a symlink: not a file this names
            Err(e) => return Err(Error::invalid(format!("cannot read {path} to see whether it changed: {e}"))),
        };
        let taken = now_ns();
        let (mark, size, hash) = match hash_file(file) {
            Ok(r) => r,
            Err(_) => return Ok(None), // a folder, a device, a FIFO: no content to protect
        };
        // the name still leads to what was read, unchanged
        if self::mark(path).as_deref() == Some(mark.as_str()) {
            let settled = mark_mtime_ns(&mark).is_some_and(|m| taken - m > RACY_NS);
            return Ok(Some(Fingerprint { size, hash, mark, settled }));
        }
    }
    Err(Error::invalid(format!("{path} kept changing while it was read; try again when it is quiet")))
}

#[cfg(unix)]
fn eloop() -> i32 {
    libc::ELOOP
}

#[cfg(not(unix))]
fn eloop() -> i32 {
    -1
}

/// Whether the file now at `path` (seen through `now_mark`, None when absent) has the content
/// `seen` recorded. One stat settles it when the mark is unchanged and was settled; a different
/// size settles it too; otherwise the content is hashed.
pub fn same_as(path: &str, now_mark: Option<&str>, seen: &Fingerprint) -> Result<Sameness> {
    let Some(now) = now_mark else { return Ok(Sameness::Absent) };
    if now == seen.mark && seen.settled {
        return Ok(Sameness::Same { hashed: None });
    }
    if size_of_mark(now) != Some(seen.size) {
        return Ok(Sameness::Different { hashed: None });
    }
    match fingerprint(path)? {
        None => Ok(Sameness::Absent),
        Some(fp) if fp.hash == seen.hash && fp.size == seen.size => Ok(Sameness::Same { hashed: Some(fp) }),
        Some(fp) => Ok(Sameness::Different { hashed: Some(fp) }),
    }
}

/// What `same_as` found; the fingerprint when it had to hash (so nobody hashes twice).
#[derive(Debug)]
pub enum Sameness {
    Absent,
    Same { hashed: Option<Fingerprint> },
    Different { hashed: Option<Fingerprint> },
}

fn size_of_mark(mark: &str) -> Option<u64> {
    mark.split(':').nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_follow_content_and_stat() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.txt");
        let p = p.to_str().unwrap();
        assert!(fingerprint(p).unwrap().is_none(), "absent");
        std::fs::write(p, "one\n").unwrap();
        let a = fingerprint(p).unwrap().unwrap();
        assert_eq!(a.size, 4);
        assert!(!a.settled, "just written: the mark alone does not settle it");
        assert!(matches!(same_as(p, mark(p).as_deref(), &a).unwrap(), Sameness::Same { hashed: Some(_) }));
        std::fs::write(p, "two\n").unwrap();
        assert!(matches!(same_as(p, mark(p).as_deref(), &a).unwrap(), Sameness::Different { hashed: Some(_) }), "same size, other content: hashed");
        std::fs::write(p, "three\n").unwrap();
        assert!(matches!(same_as(p, mark(p).as_deref(), &a).unwrap(), Sameness::Different { hashed: None }), "another size: one stat");
        std::fs::remove_file(p).unwrap();
        assert!(matches!(same_as(p, mark(p).as_deref(), &a).unwrap(), Sameness::Absent));
    }

    #[test]
    fn a_settled_mark_needs_no_hash() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("old.txt");
        std::fs::write(&p, "x").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options().write(true).open(&p).unwrap().set_modified(old).unwrap();
        let p = p.to_str().unwrap();
        let fp = fingerprint(p).unwrap().unwrap();
        assert!(fp.settled);
        assert!(matches!(same_as(p, mark(p).as_deref(), &fp).unwrap(), Sameness::Same { hashed: None }));
        assert!(mark_mtime_ms(&fp.mark).unwrap() < crate::core::time::now_ms() - 50_000);
    }

    #[cfg(unix)]
    #[test]
    fn folders_fifos_and_symlinked_names_have_no_content() {
        let dir = tempfile::tempdir().unwrap();
        assert!(fingerprint(dir.path().to_str().unwrap()).unwrap().is_none());
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(fingerprint(fifo.to_str().unwrap()).unwrap().is_none(), "a FIFO is not opened for a hash (and does not block)");
        let target = dir.path().join("t");
        std::fs::write(&target, "t").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(fingerprint(link.to_str().unwrap()).unwrap().is_none(), "the last component is not followed");
    }
}
