//! `DEBUG_FILE_LOCK_CACHE=true` (or the deployment guide's `DEBUG_MODE=true`): one stderr line per lock decision and backend switch, never a secret
//! (messages name servers as host:port and carry no credentials).

use std::sync::LazyLock;

static ON: LazyLock<bool> = LazyLock::new(|| {
    let on = |name: &str| std::env::var(name).ok().map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"));
    on("DEBUG_FILE_LOCK_CACHE").or_else(|| on("DEBUG_MODE")).unwrap_or(false)
});

pub fn enabled() -> bool {
    *ON
}

pub fn log(line: std::fmt::Arguments<'_>) {
    if enabled() {
        // ids and paths other agents chose are in these lines: no control character of theirs reaches the terminal
        eprintln!("[opencode-file-lock] {}", super::text::clean(&super::secrets::scrub(&line.to_string())));
    }
}
