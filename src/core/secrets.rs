//! Secrets never reach a message: errors, debug lines and the CLI's output pass through `scrub`,
//! which hides every password this process was configured with wherever it appears, whatever
//! characters it has (spaces, quotes, `@`), in every spelling a message may carry it (as given,
//! percent-encoded as a URL holds it, percent-decoded), and the userinfo of every URL in the text
//! (`redis://user:***@host`). The plugin's messages reach a model provider; a password must not.

use std::borrow::Cow;
use std::sync::{LazyLock, RwLock};

static SECRETS: LazyLock<RwLock<Vec<String>>> = LazyLock::new(Default::default);

/// Secrets shorter than this are hidden where they stand alone (not inside a longer word), so a
/// two-letter password does not blank every word holding those letters; longer ones everywhere.
const WORDLIKE: usize = 4;

/// Remembers a password (and its percent-encoded and -decoded spellings) so that no message shows it.
pub fn remember(secret: &str) {
    if secret.is_empty() {
        return;
    }
    let mut s = SECRETS.write().unwrap_or_else(|p| p.into_inner());
    for spelling in [secret.to_owned(), percent_encode(secret), percent_decode(secret)] {
        if !spelling.is_empty() && !s.iter().any(|k| *k == spelling) {
            s.push(spelling);
        }
    }
    // longest first: a secret that contains another is hidden whole
    s.sort_by_key(|k| std::cmp::Reverse(k.len()));
}

/// `text` with every remembered secret and every URL's userinfo hidden.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    // the secrets first: a URL's end is found at a space or a quote, which a password may hold
    for secret in SECRETS.read().unwrap_or_else(|p| p.into_inner()).iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(hide(&out, secret));
        }
    }
    if out.contains("://") {
        out = Cow::Owned(redact_urls(&out));
    }
    out
}

/// `text` with `secret` replaced by `***` (a short one only where it stands alone).
fn hide(text: &str, secret: &str) -> String {
    if secret.chars().count() >= WORDLIKE {
        return text.replace(secret, "***");
    }
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric());
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    for (i, _) in text.match_indices(secret) {
        if i < from {
            continue;
        }
        let (prev, next) = (text[..i].chars().next_back(), text[i + secret.len()..].chars().next());
        out.push_str(&text[from..i]);
        out.push_str(if word(prev) || word(next) { secret } else { "***" });
        from = i + secret.len();
    }
    out.push_str(&text[from..]);
    out
}

/// How a password appears inside a URL: every byte but the unreserved ones as `%XX`.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// A URL's `%XX` spelling read back (invalid escapes are kept as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One URL: `redis://user:secret@host:6379/0` -> `redis://user:***@host:6379/0`. The userinfo
/// runs to the last `@` of the URL, so a password with `/ @ # % :` in it (unencoded, as people
/// write them) is hidden whole.
pub fn redact_url(url: &str) -> String {
    redact_urls(url)
}

/// Every URL in free text, as `redact_url` does one. A URL runs from its scheme to the next
/// whitespace or quote.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>')).unwrap_or(tail.len());
        let (url, after) = tail.split_at(end);
        match url.rfind('@') {
            Some(at) => {
                let user = url[..at].split(':').next().unwrap_or("");
                out.push_str(user);
                out.push_str(":***");
                out.push_str(&url[at..]);
            }
            None => out.push_str(url),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_userinfo_whatever_the_password_holds() {
        for pw in ["s3cr/et", "p@ss", "a#b", "50%off", "x:y:z", "/@#%:"] {
            let url = format!("redis://user:{pw}@h:6379/0");
            assert_eq!(redact_url(&url), "redis://user:***@h:6379/0", "{pw}");
            let said = scrub(&format!("cannot connect to \"{url}\": refused; also rediss://:{pw}@other/1")).into_owned();
            assert!(!said.contains(pw), "{pw}: {said}");
        }
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
        assert_eq!(redact_url("redis://:pw@h"), "redis://:***@h");
    }

    #[test]
    fn remembered_passwords_are_hidden_anywhere_in_every_spelling() {
        remember("hunter2-long");
        assert_eq!(scrub("AUTH failed for hunter2-long, sorry"), "AUTH failed for ***, sorry");
        remember("zq"); // short: hidden where it stands alone, not inside words
        assert_eq!(scrub("zqfoo has zq in it"), "zqfoo has *** in it");
        remember("pa ss\"w@rd");
        for said in ["REDIS_URL must start with redis://, got reddis://u:pa ss\"w@rd@h", "bad port in redis:/u:pa%20ss%22w%40rd@h:99999", "password pa ss\"w@rd"] {
            let out = scrub(said).into_owned();
            assert!(!out.contains("pa ss") && !out.contains("w@rd") && !out.contains("%20ss"), "{out}");
        }
    }
}
