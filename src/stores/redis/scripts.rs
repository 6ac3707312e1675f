//! The Lua scripts (lua/), each made once; lock scripts get common.lua in front. A store loads
//! them all when it connects (`load_scripts`), so no call meets NOSCRIPT in the steady state.

use std::ops::Deref;
use std::sync::LazyLock;

use redis::Script;

/// A script and its source (what SCRIPT LOAD sends).
pub struct Lua {
    script: Script,
    source: String,
}

impl Lua {
    fn new(source: String) -> Lua {
        Lua { script: Script::new(&source), source }
    }

    /// `SCRIPT LOAD` of this script.
    pub fn load_cmd(&self) -> redis::Cmd {
        let mut c = redis::cmd("SCRIPT");
        c.arg("LOAD").arg(&self.source);
        c
    }
}

impl Deref for Lua {
    type Target = Script;
    fn deref(&self) -> &Script {
        &self.script
    }
}

fn lock_script(body: &str) -> Lua {
    Lua::new(format!("{}\n{}", include_str!("lua/common.lua"), body))
}

/// A lock script with Redis 7 flags (a shebang line must come first).
fn flagged_lock_script(flags: &str, body: &str) -> Lua {
    Lua::new(format!("#!lua flags={flags}\n{}\n{}", include_str!("lua/common.lua"), body))
}

pub static ACQUIRE: LazyLock<Lua> = LazyLock::new(|| lock_script(include_str!("lua/acquire.lua")));
pub static RESOLVE_ATTEMPT: LazyLock<Lua> = LazyLock::new(|| lock_script(include_str!("lua/resolve_attempt.lua")));
pub static UNDO_ATTEMPT: LazyLock<Lua> = LazyLock::new(|| lock_script(include_str!("lua/undo_attempt.lua")));
pub static RELEASE: LazyLock<Lua> = LazyLock::new(|| lock_script(include_str!("lua/release.lua")));
pub static RELEASE_SESSION: LazyLock<Lua> = LazyLock::new(|| lock_script(include_str!("lua/release_session.lua")));
pub static RELEASE_SESSION_NODE: LazyLock<Lua> = LazyLock::new(|| flagged_lock_script("allow-cross-slot-keys", include_str!("lua/release_session_node.lua")));
pub static RELEASE_IF: LazyLock<Lua> = LazyLock::new(|| lock_script(include_str!("lua/release_if.lua")));
pub static RENEW: LazyLock<Lua> = LazyLock::new(|| lock_script(include_str!("lua/renew.lua")));
pub static REASSERT: LazyLock<Lua> = LazyLock::new(|| lock_script(include_str!("lua/reassert.lua")));
pub static FORCE_RELEASE: LazyLock<Lua> = LazyLock::new(|| lock_script(include_str!("lua/force_release.lua")));
pub static LEAVE_QUEUE: LazyLock<Lua> = LazyLock::new(|| lock_script(include_str!("lua/leave_queue.lua")));
pub static SET: LazyLock<Lua> = LazyLock::new(|| lock_script(include_str!("lua/set.lua")));
pub static BATCH: LazyLock<Lua> = LazyLock::new(|| lock_script(include_str!("lua/batch.lua")));
pub static SWEEP: LazyLock<Lua> = LazyLock::new(|| lock_script(include_str!("lua/sweep.lua")));
pub static EPOCH: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!("lua/epoch.lua").to_owned()));

/// Every script a store may run on one server (a Cluster's primaries also get RELEASE_SESSION_NODE).
pub fn all() -> [&'static Lua; 14] {
    [&ACQUIRE, &RESOLVE_ATTEMPT, &UNDO_ATTEMPT, &RELEASE, &RELEASE_SESSION, &RELEASE_IF, &RENEW, &REASSERT, &FORCE_RELEASE, &LEAVE_QUEUE, &SET, &BATCH, &SWEEP, &EPOCH]
}
