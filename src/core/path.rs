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
    let folded = fold(&joined);
    let resolved = resolve_existing_prefix(&folded);
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

/// Lexical folding of `.` and `..` (as `path.resolve` does); `..` at the root stays at the root.
fn fold(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if out.parent().is_some() {
                    out.pop();
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Canonicalises the longest prefix of `p` (absolute, folded) that exists and re-appends the rest.
/// Walks down from the root with one `lstat` per component and resolves only the components that
/// are symlinks: a lock is usually taken on a file that does not exist yet, and trying the whole
/// path, then its parent, and so on cost several failed realpath(3) calls each time.
fn resolve_existing_prefix(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    let mut parts = p.components().peekable();
    while let Some(c) = parts.peek() {
        if !matches!(c, Component::RootDir | Component::Prefix(_)) {
            break;
        }
        out.push(c.as_os_str());
        parts.next();
    }
    if out.as_os_str().is_empty() {
        return p.to_path_buf();
    }
    while let Some(c) = parts.next() {
        out.push(c.as_os_str());
        match std::fs::symlink_metadata(&out) {
            Ok(m) if m.file_type().is_symlink() => match std::fs::canonicalize(&out) {
                Ok(target) => out = target,
                Err(_) => break, // dangling: it names nothing that exists
            },
            Ok(_) => {}
            Err(_) => break, // from here on nothing exists
        }
    }
    out.extend(parts);
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
        assert_eq!(normalize_path(dangling.join("x").to_str().unwrap(), None).unwrap(), canon_dir.join("dangling/x").to_str().unwrap());
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
