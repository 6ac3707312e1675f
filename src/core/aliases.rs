//! Hard links: one file with several names. Path resolution gives every name through symlinks
//! one key, but two hard links are two paths. So an acquire of an existing file that has more than
//! one link also takes a lock on the file itself, keyed by device and inode (`/␞inode/<dev>/<ino>`),
//! in the same all-or-nothing acquire: two sessions writing one file through two links exclude
//! each other. The process that took it remembers it and lets it go with the path's lock (a file
//! replaced meanwhile by an editor's rename has another inode, so it could not be found again).
//! What cannot be unified: a hard link made while the file is locked under its only other name
//! (the lock was taken without the inode), and a file that does not exist yet (no inode).

use std::collections::HashMap;
use std::sync::Mutex;

use super::error::Error;

/// Where inode keys live: U+241E starts the stores' own keys, so no path a user writes is one.
pub const PREFIX: &str = "/\u{241E}inode/";

/// The inode key of the file at `path` when it is a regular file with more than one link.
#[cfg(unix)]
pub fn alias_of(path: &str) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    (m.is_file() && m.nlink() > 1).then(|| format!("{PREFIX}{}/{}", m.dev(), m.ino()))
}

#[cfg(not(unix))]
pub fn alias_of(_path: &str) -> Option<String> {
    None
}

pub fn is_alias(path: &str) -> bool {
    path.starts_with(PREFIX)
}

/// The inode locks this process took, by namespace, session and the path they came with.
#[derive(Default)]
pub struct Aliases {
    held: Mutex<HashMap<(String, String, String), (String, u32)>>,
}

impl Aliases {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String, String), (String, u32)>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One more hold of each (path, alias) by `session`.
    pub fn took(&self, ns: &str, session: &str, pairs: &[(String, String)]) {
        let mut m = self.map();
        for (path, alias) in pairs {
            m.entry((ns.to_owned(), session.to_owned(), path.clone())).or_insert_with(|| (alias.clone(), 0)).1 += 1;
        }
    }

    /// One hold of `path` let go of: the alias to let go of with it, if one was taken.
    pub fn let_go(&self, ns: &str, session: &str, path: &str) -> Option<String> {
        let mut m = self.map();
        let key = (ns.to_owned(), session.to_owned(), path.to_owned());
        let (alias, n) = m.get_mut(&key)?;
        *n -= 1;
        let alias = alias.clone();
        if *n == 0 {
            m.remove(&key);
        }
        Some(alias)
    }

    /// The alias held with `path`, if any (for renewals).
    pub fn of(&self, ns: &str, session: &str, path: &str) -> Option<String> {
        self.map().get(&(ns.to_owned(), session.to_owned(), path.to_owned())).map(|(a, _)| a.clone())
    }

    /// Forgets every alias of the sessions a bulk release matched (the store let them go with the rest).
    pub fn forget(&self, ns: &str, session: Option<&str>) {
        self.map().retain(|(n, s, _), _| !(n == ns && session.is_none_or(|x| x == s)));
    }
}

/// A refusal about an inode key, said in terms of the path asked for.
pub fn explain(e: Error, alias: &str, path: &str) -> Error {
    let says = |m: String| m.replace(&format!("File {alias} is"), &format!("File {path} (another name of it: a hard link) is")).replace(alias, path);
    match e {
        Error::Locked { message, holder } => Error::Locked { message: says(message), holder },
        Error::Deadlock { message, holder } => Error::Deadlock { message: says(message), holder },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_linked_files_have_an_inode_key_and_it_is_remembered_per_hold() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, "x").unwrap();
        assert_eq!(alias_of(a.to_str().unwrap()), None, "one link: no inode key");
        let b = dir.path().join("b");
        std::fs::hard_link(&a, &b).unwrap();
        let (ka, kb) = (alias_of(a.to_str().unwrap()).unwrap(), alias_of(b.to_str().unwrap()).unwrap());
        assert_eq!(ka, kb);
        assert!(is_alias(&ka));
        let m = Aliases::default();
        m.took("n", "s", &[("/a".into(), ka.clone())]);
        m.took("n", "s", &[("/a".into(), ka.clone())]);
        assert_eq!(m.let_go("n", "s", "/a").as_deref(), Some(ka.as_str()));
        assert_eq!(m.of("n", "s", "/a").as_deref(), Some(ka.as_str()), "still held once");
        assert_eq!(m.let_go("n", "s", "/a").as_deref(), Some(ka.as_str()));
        assert_eq!(m.let_go("n", "s", "/a"), None);
    }
}
