//! `DEBUG_FILE_LOCK_CACHE=true`: one stderr line per lock decision and backend switch, never a secret
//! (messages name servers as host:port and carry no credentials).

use std::sync::LazyLock;

static ON: LazyLock<bool> = LazyLock::new(|| {
    std::env::var("DEBUG_FILE_LOCK_CACHE").is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
});

pub fn enabled() -> bool {
    *ON
}

pub fn log(line: std::fmt::Arguments<'_>) {
    if enabled() {
        eprintln!("[opencode-file-lock] {line}");
    }
}
