//! The sled store's write-ahead journal. Every change is appended here (one `write(2)`, no fsync)
//! before the call that made it returns, and the flusher moves changes into sled every 100 ms.
//! A killed process loses nothing the kernel has: the next process to open the folder replays the
//! journal into sled first. (An OS crash can lose the last writes, but it also ends every process
//! that held a lock.) Entries carry a length and a checksum, so a torn tail is recognised and
//! dropped rather than misread.
//!
//! Files are `ofl-journal-<seq>.log`; the flusher starts a new one when it takes the pending
//! changes, and deletes the older ones once sled has them on disk.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const PREFIX: &str = "ofl-journal-";
const SUFFIX: &str = ".log";
/// A larger entry than this is not an entry: the file is torn or not ours.
const MAX_ENTRY: u32 = 64 << 20;

pub type Change = (Vec<u8>, Option<Vec<u8>>);

pub struct Journal {
    dir: PathBuf,
    seq: u64,
    file: File,
    len: u64,
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

impl Journal {
    /// Reads what earlier processes journaled (oldest first) and starts a new journal after it.
    /// The old files stay until `applied()` says their changes are safely in sled.
    pub fn open(dir: &Path) -> std::io::Result<(Journal, Vec<Change>)> {
        let files = list(dir)?;
        let mut changes = Vec::new();
        for (_, path) in &files {
            let mut bytes = Vec::new();
            File::open(path)?.read_to_end(&mut bytes)?;
            changes.extend(read_entries(&bytes));
        }
        let seq = files.last().map_or(1, |(s, _)| s + 1);
        let file = OpenOptions::new().create(true).append(true).open(file_name(dir, seq))?;
        let older = files.into_iter().map(|(_, p)| p).collect();
        Ok((Journal { dir: dir.to_owned(), seq, file, len: 0, older, buf: Vec::new() }, changes))
    }

    /// Appends changes as one write; on failure nothing of them counts (the file is cut back).
    pub fn append<'a>(&mut self, changes: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>) -> std::io::Result<()> {
        self.buf.clear();
        for (k, v) in changes {
            encode(&mut self.buf, k, v);
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        match self.file.write_all(&self.buf) {
            Ok(()) => {
                self.len += self.buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                Err(e)
            }
        }
    }

    /// Starts a new file: what was journaled so far is about to go into sled. Returns false when
    /// the current file is empty (nothing to rotate).
    pub fn rotate(&mut self) -> std::io::Result<bool> {
        if self.len == 0 {
            return Ok(false);
        }
        let next = OpenOptions::new().create(true).append(true).open(file_name(&self.dir, self.seq + 1))?;
        self.older.push(file_name(&self.dir, self.seq));
        self.seq += 1;
        self.file = next;
        self.len = 0;
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
        assert!(j.rotate().unwrap());
        j.append([(&b"c"[..], Some(&b"3"[..]))]).unwrap();
        // a torn write at the end of the newest file
        let current = list(dir.path()).unwrap().pop().unwrap().1;
        OpenOptions::new().append(true).open(&current).unwrap().write_all(&[40, 0, 0, 0, 1, 2]).unwrap();
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
