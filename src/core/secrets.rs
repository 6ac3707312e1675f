//! Secrets never reach a message: errors, debug lines and the CLI's output pass through `scrub`,
//! which hides the userinfo of every URL in the text (`redis://user:***@host`) and every password
//! this process was configured with, wherever it appears. The plugin's messages reach a model
//! provider; a password must not.

use std::borrow::Cow;
use std::sync::{LazyLock, RwLock};

static SECRETS: LazyLock<RwLock<Vec<String>>> = LazyLock::new(Default::default);

/// Passwords shorter than this are not searched for in free text (they would match ordinary
/// words); URLs hide them anyway.
const MIN_SECRET: usize = 4;

/// Remembers a password so that no message shows it.
pub fn remember(secret: &str) {
    if secret.len() < MIN_SECRET {
        return;
    }
    let mut s = SECRETS.write().unwrap_or_else(|p| p.into_inner());
    if !s.iter().any(|k| k == secret) {
        s.push(secret.to_owned());
        // longest first: a secret that contains another is hidden whole
        s.sort_by_key(|k| std::cmp::Reverse(k.len()));
    }
}

/// `text` with every URL's userinfo and every remembered secret hidden.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    if text.contains("://") {
        out = Cow::Owned(redact_urls(text));
    }
    for secret in SECRETS.read().unwrap_or_else(|p| p.into_inner()).iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), "***"));
        }
    }
    out
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
    fn remembered_passwords_are_hidden_anywhere() {
        remember("hunter2-long");
        assert_eq!(scrub("AUTH failed for hunter2-long, sorry"), "AUTH failed for ***, sorry");
        remember("ab"); // too short to look for in prose
        assert_eq!(scrub("about"), "about");
    }
}
