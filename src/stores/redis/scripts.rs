//! The Lua scripts (lua/), each loaded once; lock scripts get common.lua in front.

use std::sync::LazyLock;

use redis::Script;

fn lock_script(body: &str) -> Script {
    Script::new(&format!("{}\n{}", include_str!("lua/common.lua"), body))
}

pub static ACQUIRE: LazyLock<Script> = LazyLock::new(|| lock_script(include_str!("lua/acquire.lua")));
pub static RELEASE: LazyLock<Script> = LazyLock::new(|| lock_script(include_str!("lua/release.lua")));
pub static RELEASE_SESSION: LazyLock<Script> = LazyLock::new(|| lock_script(include_str!("lua/release_session.lua")));
pub static RELEASE_IF: LazyLock<Script> = LazyLock::new(|| lock_script(include_str!("lua/release_if.lua")));
pub static RENEW: LazyLock<Script> = LazyLock::new(|| lock_script(include_str!("lua/renew.lua")));
pub static PUT_LOCK_IF_ABSENT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/put_lock_if_absent.lua")));
pub static DEL_IF_EQUAL: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/del_if_equal.lua")));
pub static FORCE_RELEASE: LazyLock<Script> = LazyLock::new(|| lock_script(include_str!("lua/force_release.lua")));
pub static LEAVE_QUEUE: LazyLock<Script> = LazyLock::new(|| lock_script(include_str!("lua/leave_queue.lua")));

