//! The sled store's write-ahead journal. Every change is recorded here before the call that made
//! it returns, and the flusher moves changes into sled every 100 ms. A killed process loses
//! nothing the kernel has: the next process to open the folder replays the journal into sled
//! first. (An OS crash can lose the last writes, but it also ends every process that held a lock.)
//! Entries carry a length and a checksum, so a torn tail is recognised and dropped rather than
//! misread.
//!
//! On Unix the journal file is memory-mapped (MAP_SHARED): recording a change is a copy into the
//! page cache, with no system call, and the pages outlive the process if it is killed. Elsewhere
//! each change is one `write(2)`. Files are `ofl-journal-<seq>.log`; the flusher starts a new one
//! when it takes the pending changes, and deletes the older ones once sled has them on disk.

use std::fs::{File, OpenOptions};

/// The folder's files are opened as files of their own name, never through a symlink put there.
fn no_follow(o: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    }
    o
}
use std::io::Read;
use std::path::{Path, PathBuf};

const PREFIX: &str = "ofl-journal-";
const SUFFIX: &str = ".log";
/// A larger entry than this is not an entry: the file is torn or not ours.
const MAX_ENTRY: u32 = 64 << 20;
/// The size of a mapped journal file (sparse: only what is written takes disk space). A file that
/// fills up before the next flush is followed by a new one.
#[cfg(unix)]
const CAPACITY: usize = 16 << 20;
/// How much of a new mapped file is faulted in ahead (more than 100 ms of changes at 50,000 a second).
#[cfg(unix)]
const PREFAULT: usize = 2 << 20;

pub type Change = (Vec<u8>, Option<Vec<u8>>);

pub struct Journal {
    dir: PathBuf,
    seq: u64,
    file: Sink,
    /// Journal files whose changes may not be in sled yet (the current one excluded).
    older: Vec<PathBuf>,
    buf: Vec<u8>,
}

/// FNV-1a, 32 bits: enough to tell a torn or garbled entry from a whole one.
fn checksum(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| (h ^ *b as u32).wrapping_mul(0x0100_0193))
}

fn file_name(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{seq:020}{SUFFIX}"))
}

/// The journal files in `dir`, oldest first.
fn list(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(seq) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)).and_then(|n| n.strip_suffix(SUFFIX)).and_then(|n| n.parse::<u64>().ok()) else { continue };
        out.push((seq, e.path()));
    }
    out.sort();
    Ok(out)
}

fn encode(out: &mut Vec<u8>, key: &[u8], value: Option<&[u8]>) {
    let body_len = 1 + 4 + key.len() + value.map_or(0, <[u8]>::len);
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(value.is_some() as u8);
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    if let Some(v) = value {
        out.extend_from_slice(v);
    }
    let sum = checksum(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&sum.to_le_bytes());
}

/// The whole entries of one file, in order; stops at the first torn or garbled one.
fn read_entries(bytes: &[u8]) -> Vec<Change> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while bytes.len() - at >= 8 {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let sum = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
        // len 0: the zeroes after the last entry of a mapped file
        if len < 5 || len > MAX_ENTRY || bytes.len() - at - 8 < len as usize {
            break;
        }
        let body = &bytes[at + 8..at + 8 + len as usize];
        if checksum(body) != sum {
            break;
        }
        let put = body[0] == 1;
        let klen = u32::from_le_bytes(body[1..5].try_into().unwrap()) as usize;
        if 5 + klen > body.len() {
            break;
        }
        let key = body[5..5 + klen].to_vec();
        out.push((key, put.then(|| body[5 + klen..].to_vec())));
        at += 8 + len as usize;
    }
    out
}

/// A journal file made ahead of a rotation; removed again if it is not used.
pub struct NextFile {
    seq: u64,
    path: PathBuf,
    sink: Option<Sink>,
}

impl NextFile {
    pub fn create((dir, seq): (PathBuf, u64)) -> std::io::Result<NextFile> {
        let path = file_name(&dir, seq);
        Ok(NextFile { seq, sink: Some(Sink::create(&path)?), path })
    }

    fn take(mut self) -> Sink {
        self.sink.take().expect("a prepared file is used once")
    }
}

impl Drop for NextFile {
    fn drop(&mut self) {
        if self.sink.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Where entries go: a mapped file (Unix) or an appended one.
struct Sink {
    #[cfg(unix)]
    map: Mapped,
    #[cfg(not(unix))]
    file: File,
    len: usize,
}

#[cfg(unix)]
struct Mapped {
    ptr: *mut u8,
    _file: File,
}

// SAFETY: the mapping is owned by this value and only touched through &mut self (under the
// folder's pending-changes mutex).
#[cfg(unix)]
unsafe impl Send for Mapped {}

#[cfg(unix)]
impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: ptr/CAPACITY are the mapping made in `Sink::create`. Unmapping keeps the
        // written pages in the page cache (MAP_SHARED).
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, CAPACITY) };
    }
}

impl Sink {
    #[cfg(unix)]
    fn create(path: &Path) -> std::io::Result<Sink> {
        use std::os::unix::io::AsRawFd;
        let file = no_follow(OpenOptions::new().create(true).truncate(true).read(true).write(true)).open(path)?;
        file.set_len(CAPACITY as u64)?;
        // SAFETY: a fresh shared mapping of a file of CAPACITY bytes that this value owns.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), CAPACITY, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, file.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        // Touch the first pages now, in the thread that makes the file (the flusher): the first
        // write to a page of a mapped file faults into the filesystem, which can wait milliseconds
        // for a journal commit (sled's fsync); the calls that record changes must not.
        let ptr = ptr as *mut u8;
        for page in (0..PREFAULT).step_by(4096) {
            // SAFETY: inside the fresh mapping; the zero written is what the page holds anyway.
            unsafe { ptr.add(page).write_volatile(0) };
        }
        Ok(Sink { map: Mapped { ptr, _file: file }, len: 0 })
    }

    #[cfg(not(unix))]
    fn create(path: &Path) -> std::io::Result<Sink> {
        Ok(Sink { file: no_follow(OpenOptions::new().create(true).append(true)).open(path)?, len: 0 })
    }

    /// Appends `bytes`; false when they do not fit (a mapped file is full).
    #[cfg(unix)]
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<bool> {
        if self.len + bytes.len() > CAPACITY {
            return Ok(false);
        }
        // SAFETY: the range lies inside the mapping (checked above) and nothing else writes it.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.map.ptr.add(self.len), bytes.len()) };
        self.len += bytes.len();
        Ok(true)
    }

    #[cfg(not(unix))]
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<bool> {
        use std::io::Write;
        if let Err(e) = self.file.write_all(bytes) {
            let _ = self.file.set_len(self.len as u64);
            return Err(e);
        }
        self.len += bytes.len();
        Ok(true)
    }
}

impl Journal {
    /// Reads what earlier processes journaled (oldest first) and starts a new journal after it.
    /// The old files stay until `take_older()` says their changes are safely in sled.
    pub fn open(dir: &Path) -> std::io::Result<(Journal, Vec<Change>)> {
        let files = list(dir)?;
        let mut changes = Vec::new();
        for (_, path) in &files {
            let mut bytes = Vec::new();
            no_follow(OpenOptions::new().read(true)).open(path)?.read_to_end(&mut bytes)?;
            changes.extend(read_entries(&bytes));
        }
        let seq = files.last().map_or(1, |(s, _)| s + 1);
        let file = Sink::create(&file_name(dir, seq))?;
        let older = files.into_iter().map(|(_, p)| p).collect();
        Ok((Journal { dir: dir.to_owned(), seq, file, older, buf: Vec::new() }, changes))
    }

    /// Records changes as one entry run; on failure none of them counts.
    pub fn append<'a>(&mut self, changes: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>) -> std::io::Result<()> {
        self.buf.clear();
        for (k, v) in changes {
            encode(&mut self.buf, k, v);
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.buf.len() > MAX_ENTRY as usize {
            return Err(std::io::Error::other("a single change is larger than the journal takes (64 MiB)"));
        }
        let buf = std::mem::take(&mut self.buf);
        let r = match self.file.append(&buf) {
            Ok(true) => Ok(()),
            // full: go on in a new file (this one stays until a flush covers it)
            Ok(false) => self.start_next().and_then(|_| self.file.append(&buf).map(|_| ())),
            Err(e) => Err(e),
        };
        self.buf = buf;
        r
    }

    fn start_next(&mut self) -> std::io::Result<()> {
        let next = Sink::create(&file_name(&self.dir, self.seq + 1))?;
        self.install(next);
        Ok(())
    }

    fn install(&mut self, next: Sink) {
        self.older.push(file_name(&self.dir, self.seq));
        self.seq += 1;
        self.file = next;
    }

    /// What `rotate` will need, when there is anything to rotate: the next file's place. Creating
    /// it (`NextFile::create`) can take a while, so the caller does that without the folder's lock.
    pub fn next_file(&self) -> Option<(PathBuf, u64)> {
        (self.file.len > 0).then(|| (self.dir.clone(), self.seq + 1))
    }

    /// Starts a new file (the one `next` prepared, if it still fits): what was journaled so far is
    /// about to go into sled. Returns false when the current file is empty (nothing to rotate).
    pub fn rotate(&mut self, next: Option<NextFile>) -> std::io::Result<bool> {
        if self.file.len == 0 {
            return Ok(false);
        }
        match next {
            Some(n) if n.seq == self.seq + 1 => self.install(n.take()),
            _ => self.start_next()?,
        }
        Ok(true)
    }

    /// The files that `rotate` closed are in sled and flushed: delete them.
    pub fn take_older(&mut self) -> Vec<PathBuf> {
        std::mem::take(&mut self.older)
    }

    /// Deletes the current file too (the folder is closed with everything in sled).
    pub fn remove_current(&self) {
        let _ = std::fs::remove_file(file_name(&self.dir, self.seq));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_replay_in_order_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, old) = Journal::open(dir.path()).unwrap();
        assert!(old.is_empty());
        j.append([(&b"a"[..], Some(&b"1"[..])), (&b"b"[..], None)]).unwrap();
        j.append([(&b"a"[..], Some(&b"2"[..]))]).unwrap();
        let next = NextFile::create(j.next_file().unwrap()).unwrap();
        assert!(j.rotate(Some(next)).unwrap());
        j.append([(&b"c"[..], Some(&b"3"[..]))]).unwrap();
        // a torn entry right after the last whole one in the newest file
        let mut torn = Vec::new();
        encode(&mut torn, b"d", Some(b"4"));
        torn[9] ^= 0xff;
        j.file.append(&torn).unwrap();
        drop(j);
        let (_j, changes) = Journal::open(dir.path()).unwrap();
        let keys: Vec<_> = changes.iter().map(|(k, v)| (String::from_utf8(k.clone()).unwrap(), v.clone().map(|v| String::from_utf8(v).unwrap()))).collect();
        assert_eq!(keys, vec![("a".into(), Some("1".into())), ("b".into(), None), ("a".into(), Some("2".into())), ("c".into(), Some("3".into()))]);
    }

    #[test]
    fn garbage_is_not_read_as_entries() {
        assert!(read_entries(b"not a journal at all, just text").is_empty());
        let mut buf = Vec::new();
        encode(&mut buf, b"k", Some(b"v"));
        buf[10] ^= 0xff; // flip a bit of the body
        assert!(read_entries(&buf).is_empty());
    }
}
