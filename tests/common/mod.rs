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
