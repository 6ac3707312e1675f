//! The Lua scripts (lua/), each loaded once; lock scripts get common.lua in front.

use std::sync::LazyLock;

use redis::Script;

fn lock_script(body: &str) -> Script {
    Script::new(&format!("{}\n{}", include_str!("lua/common.lua"), body))
}

pub static ACQUIRE: LazyLock<Script> = LazyLock::new(|| lock_script(include_str!("lua/acquire.lua")));
pub static RESOLVE_ATTEMPT: LazyLock<Script> = LazyLock::new(|| lock_script(include_str!("lua/resolve_attempt.lua")));
pub static UNDO_ATTEMPT: LazyLock<Script> = LazyLock::new(|| lock_script(include_str!("lua/undo_attempt.lua")));
pub static RELEASE: LazyLock<Script> = LazyLock::new(|| lock_script(include_str!("lua/release.lua")));
pub static RELEASE_SESSION: LazyLock<Script> = LazyLock::new(|| lock_script(include_str!("lua/release_session.lua")));
pub static RELEASE_IF: LazyLock<Script> = LazyLock::new(|| lock_script(include_str!("lua/release_if.lua")));
pub static RENEW: LazyLock<Script> = LazyLock::new(|| lock_script(include_str!("lua/renew.lua")));
pub static REASSERT: LazyLock<Script> = LazyLock::new(|| lock_script(include_str!("lua/reassert.lua")));
pub static FORCE_RELEASE: LazyLock<Script> = LazyLock::new(|| lock_script(include_str!("lua/force_release.lua")));
pub static LEAVE_QUEUE: LazyLock<Script> = LazyLock::new(|| lock_script(include_str!("lua/leave_queue.lua")));
pub static SET: LazyLock<Script> = LazyLock::new(|| lock_script(include_str!("lua/set.lua")));
pub static BATCH: LazyLock<Script> = LazyLock::new(|| lock_script(include_str!("lua/batch.lua")));
pub static SWEEP: LazyLock<Script> = LazyLock::new(|| lock_script(include_str!("lua/sweep.lua")));
pub static EPOCH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/epoch.lua")));
