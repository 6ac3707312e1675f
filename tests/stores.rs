//! Store-level tests on real sled folders and a real redis-server.

mod common;

use std::sync::{Arc, Barrier};

use opencode_file_lock::core::lock::LockRequest;
use opencode_file_lock::core::store::{now_or_never, Store};
use opencode_file_lock::core::config::RedisOptions;
use opencode_file_lock::stores::{RedisStore, SledStore};

use common::{lock_scenario, wait_scenario, RedisServer};

#[tokio::test]
async fn sled_follows_the_lock_rules() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path().to_str().unwrap()).unwrap();
    lock_scenario(&s, "locks").await;
}

#[tokio::test]
async fn redis_follows_the_same_lock_rules() {
    let server = RedisServer::start();
    let s = RedisStore::connect(&RedisOptions { port: server.port, ..Default::default() }).await.unwrap();
    lock_scenario(&s, "locks").await;
}

#[tokio::test]
async fn sled_waiters_are_woken_served_in_order_and_leave_no_ghosts() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path().to_str().unwrap()).unwrap();
    wait_scenario(&s, "locks").await;
}

#[tokio::test]
async fn redis_waiters_are_woken_served_in_order_and_leave_no_ghosts() {
    let server = RedisServer::start();
    let s = RedisStore::connect(&RedisOptions { port: server.port, ..Default::default() }).await.unwrap();
    wait_scenario(&s, "locks").await;
}

#[test]
fn sled_grants_one_winner_among_50_threads_20_times() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(SledStore::open(dir.path().to_str().unwrap()).unwrap());
    for round in 0..20 {
        let path = vec![format!("/race/{round}")];
        let barrier = Arc::new(Barrier::new(50));
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let (s, path, barrier) = (s.clone(), path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let req = LockRequest::new(&format!("session-{i}"), "agent", Some(60_000)).unwrap();
                    barrier.wait();
                    now_or_never(s.acquire("locks", &path, &req)).unwrap().is_ok()
                })
            })
            .collect();
        let winners = handles.into_iter().map(|h| h.join().unwrap()).filter(|w| *w).count();
        assert_eq!(winners, 1, "round {round}");
    }
}

#[tokio::test]
async fn redis_grants_one_winner_among_50_connections_20_times() {
    let server = RedisServer::start();
    let mut stores = Vec::new();
    for _ in 0..5 {
        stores.push(RedisStore::connect(&RedisOptions { port: server.port, ..Default::default() }).await.unwrap());
    }
    for round in 0..20 {
        let path = vec![format!("/race/{round}")];
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let (s, path) = (stores[i % 5].clone(), path.clone());
                tokio::spawn(async move {
                    let req = LockRequest::new(&format!("session-{i}"), "agent", Some(60_000)).unwrap();
                    s.acquire("locks", &path, &req).await.is_ok()
                })
            })
            .collect();
        let mut winners = 0;
        for t in tasks {
            winners += t.await.unwrap() as usize;
        }
        assert_eq!(winners, 1, "round {round}");
    }
}

#[tokio::test]
async fn sled_and_redis_store_identical_bytes() {
    let server = RedisServer::start();
    let r = RedisStore::connect(&RedisOptions { port: server.port, ..Default::default() }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path().to_str().unwrap()).unwrap();
    r.set("ns", "k", r#"{"a":[1,"b"]}"#, Some(60_000)).await.unwrap();
    s.set("ns", "k", r#"{"a":[1,"b"]}"#, Some(60_000)).await.unwrap();
    let from_r = r.get("ns", "k").await.unwrap().unwrap();
    let from_s = s.get("ns", "k").await.unwrap().unwrap();
    assert_eq!(from_r.value.get(), from_s.value.get());
    // each store sets the expiry on its own clock (here the same machine's)
    let (xr, xs) = (from_r.expires_at.unwrap(), from_s.expires_at.unwrap());
    assert!((xr - xs).abs() < 100, "{xr} vs {xs}");
}

#[test]
fn sled_reopens_with_data_after_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let s = SledStore::open(path).unwrap();
    now_or_never(s.set("ns", "k", "1", None)).unwrap().unwrap();
    now_or_never(s.close()).unwrap().unwrap();
    assert_eq!(now_or_never(s.get("ns", "k")).unwrap().unwrap_err().code(), "ECLOSED");
    drop(s);
    let again = SledStore::open(path).unwrap();
    assert_eq!(now_or_never(again.get("ns", "k")).unwrap().unwrap().unwrap().value.get(), "1");
}

#[tokio::test]
async fn sled_sweeps_expired_entries_of_every_namespace_and_keeps_the_live_ones_and_its_counters() {
    // what the serving process runs every few minutes: versions and views expire after a day and
    // sled keeps nothing it was not told to delete
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path().to_str().unwrap()).unwrap();
    let req = LockRequest::new("s1", "agent", Some(60_000)).unwrap();
    let first = s.acquire("locks", &["/f".into()], &req).await.unwrap()[0].token;
    s.release("locks", "/f", "s1").await.unwrap();
    s.set("locks/versions", "/a", "{}", Some(1)).await.unwrap();
    s.set("locks/views/host/ses_1", "/a", "{}", Some(1)).await.unwrap();
    s.set("locks/views/host/ses_1", "/b", "{}", Some(60_000)).await.unwrap();
    s.set("other", "k", "1", None).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(s.sweep_expired("").await.unwrap(), 2);
    assert!(s.get("locks/views/host/ses_1", "/b").await.unwrap().is_some());
    assert!(s.get("other", "k").await.unwrap().is_some());
    let again = s.acquire("locks", &["/f".into()], &req).await.unwrap()[0].token;
    assert!(again > first, "the fencing counter is not an expiring entry");
}
