//! Shared by the store tests: a real redis-server on a free loopback port, and one lock scenario
//! that every store must pass the same way (the Lua scripts and core::lock are kept in step here).
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use opencode_file_lock::core::lock::{LockFilter, LockRequest};
use opencode_file_lock::core::store::Store;

pub struct RedisServer {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer { port, child, dir }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}

fn req(session: &str, ttl: u64) -> LockRequest {
    LockRequest::new(session, &format!("agent-{session}"), Some(ttl)).unwrap()
}

/// The lock rules, step by step, against any store.
pub async fn lock_scenario<S: Store>(s: &S, ns: &str) {
    let p = |x: &str| vec![x.to_string()];
    // grant, re-enter, refuse
    let a = s.acquire(ns, &p("/f"), &req("s1", 60_000)).await.unwrap();
    assert_eq!((a[0].hold_count, a[0].session_id.as_str()), (1, "s1"));
    let again = s.acquire(ns, &p("/f"), &req("s1", 60_000)).await.unwrap();
    assert_eq!((again[0].hold_count, again[0].token), (2, a[0].token));
    let err = s.acquire(ns, &p("/f"), &req("s2", 60_000)).await.unwrap_err();
    assert_eq!(err.code(), "ELOCKED");
    assert_eq!(err.holder().unwrap()["sessionId"], "s1");
    // release: other session no-op, then one hold at a time
    assert!(!s.release(ns, "/f", "s2").await.unwrap());
    assert!(s.release(ns, "/f", "s1").await.unwrap());
    assert!(s.get(ns, "/f").await.unwrap().is_some());
    assert!(s.release(ns, "/f", "s1").await.unwrap());
    assert!(s.get(ns, "/f").await.unwrap().is_none());
    // tokens grow with every grant
    let b = s.acquire(ns, &p("/f"), &req("s2", 60_000)).await.unwrap();
    assert!(b[0].token > a[0].token);
    // all or nothing
    let three = vec!["/x".to_string(), "/f".to_string(), "/y".to_string()];
    assert_eq!(s.acquire(ns, &three, &req("s3", 60_000)).await.unwrap_err().code(), "ELOCKED");
    assert!(s.get(ns, "/x").await.unwrap().is_none());
    assert!(s.get(ns, "/y").await.unwrap().is_none());
    // renew only by the holder
    assert!(s.renew(ns, "/f", "s3", 1000).await.unwrap().is_none());
    let r = s.renew(ns, "/f", "s2", 120_000).await.unwrap().unwrap();
    assert!(r.expires_at > b[0].expires_at);
    // expiry frees the path
    s.acquire(ns, &p("/short"), &req("s4", 50)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    s.acquire(ns, &p("/short"), &req("s5", 60_000)).await.unwrap();
    // list and release-all
    for i in 0..5 {
        s.acquire(ns, &p(&format!("/many/{i}")), &req("bulk", 60_000)).await.unwrap();
    }
    let only = LockFilter { session_id: Some("bulk".into()), agent_id: None };
    assert_eq!(s.list_locks(ns, &only).await.unwrap().len(), 5);
    assert_eq!(s.release_all(ns, &only).await.unwrap(), 5);
    assert_eq!(s.list_locks(ns, &only).await.unwrap().len(), 0);
    let by_agent = LockFilter { session_id: None, agent_id: Some("agent-s5".into()) };
    assert_eq!(s.release_all(ns, &by_agent).await.unwrap(), 1);
}

/// Waiting, step by step, against any store: a release wakes the waiter; waiters are served in
/// arrival order; a waiter that gives up leaves nothing behind; a waiter that stops refreshing
/// its lease stops blocking others.
pub async fn wait_scenario<S: Store>(s: &S, ns: &str) {
    use opencode_file_lock::core::wait::{acquire_waiting, Attempt, Waiter, WAITER_LEASE_MS};
    use std::sync::Arc;
    use tokio::sync::Notify;

    let p = |x: &str| vec![x.to_string()];
    let never = Notify::new();
    // woken by the release, long before the 1 s refresh
    s.acquire(ns, &p("/w"), &req("holder", 60_000)).await.unwrap();
    let (res, took) = tokio::join!(
        async {
            let t = Instant::now();
            let r = acquire_waiting(s, ns, &p("/w"), &req("waiter", 60_000), Duration::from_secs(5), &never).await;
            (r, t.elapsed())
        },
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(s.release(ns, "/w", "holder").await.unwrap());
        }
    )
    .0;
    assert_eq!(res.unwrap()[0].session_id, "waiter");
    assert!(took < Duration::from_millis(500), "woken by the release, not by polling: {took:?}");
    s.release(ns, "/w", "waiter").await.unwrap();

    // FIFO: b queued before c; once free, c is refused while b waits
    s.acquire(ns, &p("/q"), &req("holder", 60_000)).await.unwrap();
    let (mut b, mut c) = (Waiter::new(), Waiter::new());
    for (w, who) in [(&mut b, "b"), (&mut c, "c")] {
        match s.try_acquire_queued(ns, &p("/q"), &req(who, 60_000), w).await.unwrap() {
            Attempt::Blocked { error, ticket, .. } => {
                assert_eq!(error.code(), "ELOCKED");
                w.ticket = ticket;
            }
            Attempt::Granted(_) => panic!("{who} must queue"),
        }
    }
    assert!(c.ticket > b.ticket);
    s.release(ns, "/q", "holder").await.unwrap();
    let Attempt::Blocked { error, .. } = s.try_acquire_queued(ns, &p("/q"), &req("c", 60_000), &c).await.unwrap() else { panic!("c jumped the queue") };
    assert_eq!(error.holder().unwrap()["sessionId"], "b");
    assert_eq!(s.acquire(ns, &p("/q"), &req("newcomer", 60_000)).await.unwrap_err().code(), "ELOCKED");
    assert!(matches!(s.try_acquire_queued(ns, &p("/q"), &req("b", 60_000), &b).await.unwrap(), Attempt::Granted(_)));
    s.release(ns, "/q", "b").await.unwrap();
    assert!(matches!(s.try_acquire_queued(ns, &p("/q"), &req("c", 60_000), &c).await.unwrap(), Attempt::Granted(_)));
    s.release(ns, "/q", "c").await.unwrap();

    // a waiter that leaves is gone at once; one that stops refreshing is gone after its lease
    s.acquire(ns, &p("/d"), &req("holder", 60_000)).await.unwrap();
    let mut gone = Waiter::new();
    let Attempt::Blocked { ticket, .. } = s.try_acquire_queued(ns, &p("/d"), &req("gone", 60_000), &gone).await.unwrap() else { panic!() };
    gone.ticket = ticket;
    s.leave_queue(ns, &p("/d"), &gone).await.unwrap();
    let mut dead = Waiter::new();
    let Attempt::Blocked { ticket, .. } = s.try_acquire_queued(ns, &p("/d"), &req("dead", 60_000), &dead).await.unwrap() else { panic!() };
    dead.ticket = ticket;
    s.release(ns, "/d", "holder").await.unwrap();
    assert_eq!(s.acquire(ns, &p("/d"), &req("next", 60_000)).await.unwrap_err().code(), "ELOCKED", "dead still holds its place");
    tokio::time::sleep(Duration::from_millis(WAITER_LEASE_MS as u64 + 100)).await;
    s.acquire(ns, &p("/d"), &req("next", 60_000)).await.expect("the dead waiter's lease ran out");

    // an aborted wait: EABORTED, and its queue entry gone
    s.acquire(ns, &p("/a"), &req("holder", 60_000)).await.unwrap();
    let cancel = Arc::new(Notify::new());
    let (paths, quitter) = (p("/a"), req("quitter", 60_000));
    let (r, _) = tokio::join!(acquire_waiting(s, ns, &paths, &quitter, Duration::from_secs(5), &cancel), async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        cancel.notify_one();
    });
    assert_eq!(r.unwrap_err().code(), "EABORTED");
    s.release(ns, "/a", "holder").await.unwrap();
    s.acquire(ns, &p("/a"), &req("next", 60_000)).await.expect("no ghost of the aborted waiter");
}
