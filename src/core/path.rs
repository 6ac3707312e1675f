//! Canonical lock keys for file paths: two spellings of one file must name one lock.

use std::path::{Component, Path, PathBuf};

use unicode_normalization::UnicodeNormalization;

use super::error::{Error, Result};

/// PATH_MAX on Linux; longer paths cannot be opened, so they cannot be locked either.
pub const MAX_PATH_BYTES: usize = 4096;

/// Resolves `input` against `base_dir` (or the process's working directory), folds `.` and `..`,
/// resolves symlinks in the longest prefix that exists, and returns it in Unicode NFC.
/// The file itself need not exist: `/test/file.txt` stays `/test/file.txt` on Linux.
/// A path that ends in `/` (or `/.`) names a folder and keeps its `/`: a lock on it claims the folder.
pub fn normalize_path(input: &str, base_dir: Option<&str>) -> Result<String> {
    let folder = input.ends_with('/') || input.ends_with("/.") || input.ends_with("/..") || input == "." || input == "..";
    let mut p = normalize_file_path(input, base_dir)?;
    if folder && !p.ends_with('/') {
        p.push('/');
    }
    Ok(p)
}

fn normalize_file_path(input: &str, base_dir: Option<&str>) -> Result<String> {
    check_path_text(input, "path")?;
    let input: String = input.nfc().collect();
    let mut joined = PathBuf::new();
    if !Path::new(&input).is_absolute() {
        match base_dir {
            Some(base) => {
                check_path_text(base, "baseDir")?;
                if !Path::new(base).is_absolute() {
                    return Err(Error::invalid(format!(
                        "baseDir must be an absolute path, got {base:?}"
                    )));
                }
                joined.push(base.nfc().collect::<String>());
            }
            None => joined.push(std::env::current_dir().map_err(|e| {
                Error::invalid(format!(
                    "cannot resolve the relative path {input:?}: no working directory ({e})"
                ))
            })?),
        }
    }
    joined.push(&input);
    let resolved = resolve(&joined);
    let text = resolved.to_string_lossy();
    Ok(if text.is_ascii() {
        text.into_owned()
    } else {
        // A symlink target may bring back decomposed characters.
        text.nfc().collect()
    })
}

/// True when `p` is already in the form `normalize_path` produces lexically (absolute, NFC, no `.`,
/// `..` or empty segments; a trailing `/` only as a folder claim's). Symlinks are not checked:
/// callers use this only to try the path as given before paying for resolution.
pub fn is_lexically_normal(p: &str) -> bool {
    let body = p.strip_suffix('/').filter(|b| !b.is_empty()).unwrap_or(p);
    body.starts_with('/')
        && !p.ends_with("//")
        && p.len() <= MAX_PATH_BYTES
        && !p.contains('\0')
        && (body == "/" || !body[1..].split('/').any(|seg| seg.is_empty() || seg == "." || seg == ".."))
        && (p.is_ascii() || unicode_normalization::is_nfc(p))
}

/// A path that names a folder (ends in `/`): a lock on it claims everything below it.
pub fn is_claim(path: &str) -> bool {
    path.ends_with('/')
}

/// Whether `path` is at or below the folder `claim` (a claim's own path included).
pub fn within(path: &str, claim: &str) -> bool {
    is_claim(claim) && path.starts_with(claim)
}

/// Whether locks on `a` and `b` exclude each other (held by different sessions): the same path,
/// or one a claim on a folder the other is in.
pub fn overlaps(a: &str, b: &str) -> bool {
    a == b || within(a, b) || within(b, a)
}

/// The folders above `path` whose claims cover it, outermost first: `/a/b/c` and `/a/b/` both
/// give `/`, `/a/`, then `/a/b/` for the file only (a claim does not cover itself here).
pub fn claim_ancestors(path: &str) -> impl Iterator<Item = &str> {
    let body = path.strip_suffix('/').unwrap_or(path);
    body.match_indices('/').map(move |(i, _)| &path[..=i])
}

fn check_path_text(p: &str, what: &str) -> Result<()> {
    if p.is_empty() {
        return Err(Error::invalid(format!("{what} must be a non-empty string")));
    }
    if p.contains('\0') {
        return Err(Error::invalid(format!("{what} must not contain a NUL byte")));
    }
    if p.len() > MAX_PATH_BYTES {
        return Err(Error::invalid(format!(
            "{what} is {} bytes long; the limit is {MAX_PATH_BYTES}",
            p.len()
        )));
    }
    Ok(())
}

/// How many symlinks one path may go through before the rest is taken as written (a loop).
const MAX_LINKS: usize = 40;

/// Resolves an absolute path as the kernel walks it, so every name of one file gives one lock:
/// each component in turn; a symlink replaced by its target (a relative one read from the folder
/// holding the link) before anything after it is looked at, so `link/../f` is the `f` beside
/// the link's target, not beside the link; `..` taken from the folder reached so far; `.` dropped.
/// A dangling symlink is replaced by its target too: a lock through it and one on the file it
/// will create are one lock. From the first component that does not exist on, the rest is
/// folded as written (nothing below a missing folder can be a symlink). `..` at the root stays
/// at the root. One `lstat` per component, one `readlink` per symlink.
fn resolve(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    let mut rest: std::collections::VecDeque<std::ffi::OsString> = std::collections::VecDeque::new();
    for c in p.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => out.push(c.as_os_str()),
            other => rest.push_back(other.as_os_str().to_owned()),
        }
    }
    let root = out.clone();
    let mut links = 0;
    let mut exists = true;
    while let Some(c) = rest.pop_front() {
        if c == "." || c.is_empty() {
            continue;
        }
        if c == ".." {
            if out != root {
                out.pop();
            }
            continue;
        }
        out.push(&c);
        if !exists {
            continue;
        }
        match std::fs::symlink_metadata(&out) {
            Ok(m) if m.file_type().is_symlink() && links < MAX_LINKS => {
                let Ok(target) = std::fs::read_link(&out) else { continue };
                links += 1;
                out.pop();
                if target.is_absolute() {
                    out = root.clone();
                }
                for tc in target.components().rev() {
                    match tc {
                        Component::Prefix(_) | Component::RootDir => {}
                        other => rest.push_front(other.as_os_str().to_owned()),
                    }
                }
            }
            Ok(_) => {}
            Err(_) => exists = false,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_missing_paths_stay_as_written() {
        assert_eq!(normalize_path("/test/file.txt", None).unwrap(), "/test/file.txt");
        assert_eq!(normalize_path("/test/./a/../file.txt", None).unwrap(), "/test/file.txt");
        assert_eq!(normalize_path("/../../x", None).unwrap(), "/x");
    }

    #[test]
    fn relative_paths_resolve_against_base() {
        assert_eq!(normalize_path("b/c.txt", Some("/nonexistent-base/a")).unwrap(), "/nonexistent-base/a/b/c.txt");
        assert_eq!(normalize_path("../c.txt", Some("/nonexistent-base/a")).unwrap(), "/nonexistent-base/c.txt");
        assert_eq!(normalize_path("b", Some("relative")).unwrap_err().code(), "EINVAL");
    }

    #[test]
    fn symlinks_in_existing_prefix_are_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let canon_real = std::fs::canonicalize(&real).unwrap();
        let via_link = normalize_path(link.join("new/file.txt").to_str().unwrap(), None).unwrap();
        assert_eq!(via_link, canon_real.join("new/file.txt").to_str().unwrap());
        // a chain of links, a link to a file, a dangling link, and a file used as a folder
        let chain = dir.path().join("chain");
        std::os::unix::fs::symlink(&link, &chain).unwrap();
        assert_eq!(normalize_path(chain.join("f").to_str().unwrap(), None).unwrap(), canon_real.join("f").to_str().unwrap());
        std::fs::write(real.join("file"), "x").unwrap();
        let to_file = dir.path().join("to-file");
        std::os::unix::fs::symlink(real.join("file"), &to_file).unwrap();
        assert_eq!(normalize_path(to_file.to_str().unwrap(), None).unwrap(), canon_real.join("file").to_str().unwrap());
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        let canon_dir = std::fs::canonicalize(dir.path()).unwrap();
        // a dangling link names its target: what a write through it creates
        assert_eq!(normalize_path(dangling.join("x").to_str().unwrap(), None).unwrap(), canon_dir.join("nowhere/x").to_str().unwrap());
        assert_eq!(normalize_path(dangling.to_str().unwrap(), None).unwrap(), canon_dir.join("nowhere").to_str().unwrap());
        // `..` after a link is taken from the link's target, as the kernel does
        std::fs::create_dir_all(real.join("deep/er")).unwrap();
        let to_deep = dir.path().join("to-deep");
        std::os::unix::fs::symlink(real.join("deep/er"), &to_deep).unwrap();
        assert_eq!(normalize_path(to_deep.join("../f").to_str().unwrap(), None).unwrap(), canon_real.join("deep/f").to_str().unwrap());
        // a loop of links gives up and keeps the rest as written
        let (l1, l2) = (dir.path().join("l1"), dir.path().join("l2"));
        std::os::unix::fs::symlink(&l2, &l1).unwrap();
        std::os::unix::fs::symlink(&l1, &l2).unwrap();
        assert!(normalize_path(l1.join("x").to_str().unwrap(), None).is_ok());
        assert_eq!(normalize_path(real.join("file/sub").to_str().unwrap(), None).unwrap(), canon_real.join("file/sub").to_str().unwrap());
    }

    #[test]
    fn unicode_is_nfc() {
        let decomposed = "/tmp/nonexistent-e\u{301}.txt";
        assert_eq!(normalize_path(decomposed, None).unwrap(), "/tmp/nonexistent-\u{e9}.txt");
    }

    #[test]
    fn lexically_normal_paths() {
        for ok in ["/", "/a", "/a/b.txt", "/caf\u{e9}", "/a/", "/a/b/"] {
            assert!(is_lexically_normal(ok), "{ok}");
        }
        for not in ["", "a/b", "//", "/a//", "/a//b", "/a/./b", "/a/../b", "/a/.", "/cafe\u{301}"] {
            assert!(!is_lexically_normal(not), "{not}");
        }
    }

    #[test]
    fn folder_paths_keep_their_slash_and_claim_what_is_below() {
        assert_eq!(normalize_path("/p/src/", None).unwrap(), "/p/src/");
        assert_eq!(normalize_path("/p/src/auth/..", None).unwrap(), "/p/src/");
        assert_eq!(normalize_path("src/.", Some("/p")).unwrap(), "/p/src/");
        assert_eq!(normalize_path(".", Some("/p")).unwrap(), "/p/");
        assert_eq!(normalize_path("/", None).unwrap(), "/");
        assert_eq!(normalize_path("/p/src", None).unwrap(), "/p/src", "no slash: a file");
        assert!(overlaps("/p/src/a.ts", "/p/src/") && overlaps("/p/src/", "/p/src/a/") && overlaps("/p/x", "/"));
        assert!(!overlaps("/p/src", "/p/src/") && !overlaps("/p/srcx/a", "/p/src/") && !overlaps("/p/a", "/p/b"));
        assert_eq!(claim_ancestors("/a/b/c").collect::<Vec<_>>(), ["/", "/a/", "/a/b/"]);
        assert_eq!(claim_ancestors("/a/b/").collect::<Vec<_>>(), ["/", "/a/"]);
        assert_eq!(claim_ancestors("/").count(), 0);
    }

    #[test]
    fn bad_paths_are_einval() {
        for bad in ["", "a\0b"] {
            assert_eq!(normalize_path(bad, Some("/")).unwrap_err().code(), "EINVAL");
        }
        let huge = format!("/{}", "a".repeat(MAX_PATH_BYTES));
        assert_eq!(normalize_path(&huge, None).unwrap_err().code(), "EINVAL");
    }
}
