//! Where a sled folder's server listens, and who may talk to it: a Unix socket in the folder
//! (mode 0700, the user's own), or, when that path is too long for `sun_path`, in a private
//! per-user folder under /tmp named by a hash of the folder. No TCP port is ever opened.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::core::error::{Error, Result};

/// `sun_path` holds 108 bytes on Linux and 104 on macOS, the terminating NUL included.
const MAX_SOCKET_PATH: usize = 100;

pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Checks the lock folder before anything in it is opened, and makes it private (0700): the socket
/// inside it is then reachable by this user only. Refused, each with the file, its owner and the
/// fix: a folder another user owns; one that was writable by others before this call (`created`:
/// this call made it), since anything could have been planted in it; a folder on the way to it
/// that another user owns or may write to (unless it is sticky, as /tmp is); a symlink on the way
/// that another user made.
pub fn secure_folder(given: &Path, folder: &Path, created: bool) -> Result<()> {
    let me = euid();
    let refuse = |what: String| Error::backend(format!("{what}; locks are shared only between processes of one user, through a folder only it can change. Set FILE_LOCK_PATH to a folder of your own"));
    // the path as given: a symlink on the way must be this user's or root's
    let mut walked = PathBuf::new();
    for c in given.components() {
        walked.push(c);
        if let Ok(m) = std::fs::symlink_metadata(&walked) {
            if m.file_type().is_symlink() && m.uid() != me && m.uid() != 0 {
                return Err(refuse(format!("{} is a symlink made by another user (uid {})", walked.display(), m.uid())));
            }
        }
    }
    // the folders above it: this user's or root's, and writable by nobody else unless sticky
    for above in folder.ancestors().skip(1) {
        let m = std::fs::metadata(above).map_err(|e| Error::backend(format!("cannot read {}: {e}", above.display())))?;
        if m.uid() != me && m.uid() != 0 {
            return Err(refuse(format!("{} (above the lock folder {}) belongs to another user (uid {})", above.display(), folder.display(), m.uid())));
        }
        if m.mode() & 0o022 != 0 && m.mode() & 0o1000 == 0 {
            return Err(refuse(format!("{} (above the lock folder {}) may be changed by other users (mode {:o}) and is not sticky", above.display(), folder.display(), m.mode() & 0o7777)));
        }
    }
    let meta = std::fs::symlink_metadata(folder).map_err(|e| Error::backend(format!("cannot read the lock folder {}: {e}", folder.display())))?;
    if meta.uid() != me {
        return Err(refuse(format!("the lock folder {} belongs to another user (uid {}), not to this one (uid {me})", folder.display(), meta.uid())));
    }
    if !created && meta.mode() & 0o022 != 0 {
        return Err(refuse(format!("the lock folder {} could be written by other users (mode {:o}), so what is in it cannot be trusted; move it away (a new one is made private)", folder.display(), meta.mode() & 0o777)));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::backend(format!("cannot make the lock folder {} private (mode 0700): {e}", folder.display())))?;
    }
    Ok(())
}

/// A file in the lock folder this process is about to use: a regular file (or, `socket`, a
/// socket) of this user, not a symlink. Absent is fine.
pub fn check_own_file(path: &Path, socket: bool) -> Result<()> {
    let Ok(m) = std::fs::symlink_metadata(path) else { return Ok(()) };
    use std::os::unix::fs::FileTypeExt;
    let kind_ok = if socket { m.file_type().is_socket() } else { m.file_type().is_file() };
    if m.file_type().is_symlink() || !kind_ok || m.uid() != euid() {
        return Err(Error::backend(format!(
            "{} is not {} of this user (it is a {}, of uid {}): it was not made by opencode-file-lock, so it is not used. Remove it if it is yours, or set FILE_LOCK_PATH to a folder of your own",
            path.display(),
            if socket { "a socket" } else { "a file" },
            if m.file_type().is_symlink() { "symlink" } else if m.is_dir() { "folder" } else { "file of another kind" },
            m.uid()
        )));
    }
    Ok(())
}

/// FNV-1a, 64 bits: a stable name for a folder (std's hasher may change between Rust releases).
fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The socket for `folder` (canonical): inside it when the path fits, else in /tmp's private
/// per-user folder. Every process computes the same path from the folder alone.
pub fn socket_path(folder: &Path) -> Result<PathBuf> {
    let inside = folder.join("ofl.sock");
    if inside.as_os_str().len() <= MAX_SOCKET_PATH {
        return Ok(inside);
    }
    let dir = PathBuf::from(format!("/tmp/opencode-file-lock-{}", euid()));
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::backend(format!("cannot create {} for the lock socket: {e}", dir.display()))),
    }
    let meta = std::fs::symlink_metadata(&dir).map_err(|e| Error::backend(format!("cannot read {}: {e}", dir.display())))?;
    if !meta.is_dir() || meta.uid() != euid() || meta.mode() & 0o077 != 0 {
        return Err(Error::backend(format!(
            "{} must be a folder of this user with mode 0700 (it holds the lock socket for {}, whose own path is too long for a socket); remove it or set a shorter FILE_LOCK_PATH",
            dir.display(),
            folder.display()
        )));
    }
    Ok(dir.join(format!("{:016x}.sock", fnv64(folder.as_os_str().as_encoded_bytes()))))
}

/// The right to serve a folder: an exclusive `flock` on `ofl.lock` in it, held while serving.
/// The kernel lets go when the process dies, however it dies.
pub struct ServeLock {
    _file: File,
}

/// Takes the folder's serve lock if nobody holds it (None when another process does).
pub fn try_serve_lock(folder: &Path) -> Result<Option<ServeLock>> {
    let path = folder.join("ofl.lock");
    check_own_file(&path, false)?;
    // never through a symlink planted in its place, whatever the check above saw
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| Error::backend(format!("cannot open {} (it must be a file of this user, not a symlink): {e}", path.display())))?;
    let m = file.metadata().map_err(|e| Error::backend(format!("cannot read {}: {e}", path.display())))?;
    if !m.is_file() || m.uid() != euid() {
        return Err(Error::backend(format!("{} is not a file of this user (uid {}): it is not used", path.display(), m.uid())));
    }
    // SAFETY: flock on a descriptor this function owns.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        // who serves, for the messages of processes that cannot reach it
        let _ = file.set_len(0);
        let _ = (&file).write_all(format!("{}\n", std::process::id()).as_bytes());
        return Ok(Some(ServeLock { _file: file }));
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(None)
    } else {
        Err(Error::backend(format!("cannot lock {}: {e}", path.display())))
    }
}

/// The process that holds the folder's serve lock, as it wrote itself down ("pid 123").
pub fn holder(folder: &Path) -> String {
    match std::fs::read_to_string(folder.join("ofl.lock")).ok().and_then(|t| t.trim().parse::<u32>().ok()) {
        Some(pid) => format!("pid {pid}"),
        None => "its pid is unknown".into(),
    }
}

/// The uid of the process at the other end of `s`, where the OS says.
pub fn peer_uid(s: &UnixStream) -> Option<u32> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: cred and len are valid for writes of the sizes given.
        let r = unsafe { libc::getsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERCRED, &mut cred as *mut _ as *mut libc::c_void, &mut len) };
        (r == 0).then_some(cred.uid)
    }
    #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd", target_os = "openbsd", target_os = "netbsd"))]
    {
        let (mut uid, mut gid) = (0, 0);
        // SAFETY: uid and gid are valid for writes.
        let r = unsafe { libc::getpeereid(s.as_raw_fd(), &mut uid, &mut gid) };
        (r == 0).then_some(uid)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "macos", target_os = "ios", target_os = "freebsd", target_os = "openbsd", target_os = "netbsd")))]
    {
        let _ = s;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_folders_get_a_short_private_socket_path() {
        let short = socket_path(Path::new("/home/u/.local/state/opencode-file-lock/locks")).unwrap();
        assert_eq!(short, Path::new("/home/u/.local/state/opencode-file-lock/locks/ofl.sock"));
        let deep = PathBuf::from(format!("/home/u/{}", "very-long-folder-name/".repeat(8)));
        let a = socket_path(&deep).unwrap();
        assert!(a.as_os_str().len() <= MAX_SOCKET_PATH, "{a:?}");
        assert_eq!(a, socket_path(&deep).unwrap(), "every process finds the same path");
        assert_ne!(a, socket_path(&deep.join("other")).unwrap());
        let dir = a.parent().unwrap();
        assert_eq!(std::fs::metadata(dir).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn one_serve_lock_per_folder() {
        let dir = tempfile::tempdir().unwrap();
        let first = try_serve_lock(dir.path()).unwrap();
        assert!(first.is_some());
        assert!(try_serve_lock(dir.path()).unwrap().is_none(), "flock is per open file: a second open is refused");
        drop(first);
        assert!(try_serve_lock(dir.path()).unwrap().is_some());
    }
}
