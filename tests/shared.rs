//! The shared sled store: one process serves the folder, the others are its clients. Each
//! `open_separate` below plays one process (its own serve-lock descriptor and connection), so
//! these run in one test binary; the kill -9 cases run real processes in the JS suite.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use opencode_file_lock::core::lock::LockRequest;
use opencode_file_lock::core::store::Store;
use opencode_file_lock::stores::SharedStore;

use common::{lock_scenario, wait_scenario};

fn req(s: &str) -> LockRequest {
    LockRequest::new(s, "agent", Some(60_000)).unwrap()
}

fn p(x: &str) -> Vec<String> {
    vec![x.to_owned()]
}

fn pair() -> (tempfile::TempDir, SharedStore, SharedStore) {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("locks");
    let server = SharedStore::open_separate(folder.to_str().unwrap()).unwrap();
    let client = SharedStore::open_separate(folder.to_str().unwrap()).unwrap();
    assert_eq!((server.role(), client.role()), ("server", "client"));
    (dir, server, client)
}

#[tokio::test]
async fn a_client_follows_the_lock_rules() {
    let (_dir, _server, client) = pair();
    lock_scenario(&client, "locks").await;
}

#[tokio::test]
async fn a_clients_waiters_are_woken_by_pushed_releases_and_served_in_order() {
    let (_dir, _server, client) = pair();
    wait_scenario(&client, "locks").await;
}

#[tokio::test]
async fn server_and_client_exclude_each_other() {
    let (_dir, server, client) = pair();
    server.acquire("locks", &p("/a"), &req("s1")).await.unwrap();
    let e = client.acquire("locks", &p("/a"), &req("s2")).await.unwrap_err();
    assert_eq!((e.code(), e.holder().unwrap()["sessionId"].as_str()), ("ELOCKED", Some("s1")));
    client.acquire("locks", &p("/b"), &req("s2")).await.unwrap();
    assert_eq!(server.acquire("locks", &p("/b"), &req("s1")).await.unwrap_err().code(), "ELOCKED");
    assert_eq!(client.list_locks("locks", &Default::default()).await.unwrap().len(), 2);
}

#[tokio::test]
async fn when_the_server_closes_a_client_takes_over_and_keeps_its_locks() {
    let (dir, server, client) = pair();
    let mine = client.acquire("locks", &p("/held"), &req("c1")).await.unwrap();
    server.close().await.unwrap();
    let t = Instant::now();
    while client.role() != "server" {
        assert!(t.elapsed() < Duration::from_secs(1), "the client took over within 1 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let third = SharedStore::open_separate(dir.path().join("locks").to_str().unwrap()).unwrap();
    assert_eq!(third.role(), "client");
    let e = third.acquire("locks", &p("/held"), &req("c3")).await.unwrap_err();
    assert_eq!(e.holder().unwrap()["token"], mine[0].token, "same record, same token");
    assert!(client.release("locks", "/held", "c1").await.unwrap());
    third.acquire("locks", &p("/held"), &req("c3")).await.unwrap();
}

#[tokio::test]
async fn garbage_on_the_socket_is_disconnected_and_the_server_keeps_serving() {
    let (_dir, server, client) = pair();
    let socket = server.socket_path().to_owned();
    // an HTTP request: its first four bytes read as a 500 MB frame
    let mut s = UnixStream::connect(&socket).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    assert_eq!(s.read(&mut [0u8; 64]).unwrap(), 0, "dropped without an answer");
    // a well-formed frame that is not a hello
    let mut s = UnixStream::connect(&socket).unwrap();
    s.write_all(&[5, 0, 0, 0]).unwrap();
    s.write_all(b"hello").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    assert_eq!(s.read(&mut [0u8; 64]).unwrap(), 0);
    // a client that dies in the middle of a frame
    let mut s = UnixStream::connect(&socket).unwrap();
    s.write_all(&[200, 0, 0, 0, b'{', b'"']).unwrap();
    drop(s);
    // random bytes
    let mut s = UnixStream::connect(&socket).unwrap();
    let noise: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let _ = s.write_all(&noise);
    drop(s);
    client.acquire("locks", &p("/still"), &req("s")).await.expect("the server kept serving");
    assert_eq!(server.acquire("locks", &p("/still"), &req("t")).await.unwrap_err().code(), "ELOCKED");
}

#[tokio::test]
async fn a_client_of_another_protocol_is_refused_with_both_versions() {
    let (_dir, server, _client) = pair();
    let mut s = UnixStream::connect(server.socket_path()).unwrap();
    let hello = br#"{"hello":"opencode-file-lock","protocol":999,"version":"9.9.9","pid":1}"#;
    s.write_all(&(hello.len() as u32).to_le_bytes()).unwrap();
    s.write_all(hello).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let h: serde_json::Value = serde_json::from_slice(&answer[4..]).unwrap();
    assert_eq!(h["protocol"], 3);
    assert!(h["refused"].as_str().unwrap().contains("999"), "{h}");
}

#[tokio::test]
async fn the_folder_and_socket_are_private_to_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("locks");
    std::fs::create_dir(&folder).unwrap();
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = SharedStore::open_separate(folder.to_str().unwrap()).unwrap();
    assert_eq!(std::fs::metadata(&folder).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(server.socket_path()).unwrap().permissions().mode() & 0o777, 0o600);
}

#[tokio::test]
async fn a_long_folder_path_gets_a_short_socket() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("a-rather-long-folder-name-".repeat(6)).join("locks");
    let server = SharedStore::open_separate(folder.to_str().unwrap()).unwrap();
    let client = SharedStore::open_separate(folder.to_str().unwrap()).unwrap();
    assert!(server.socket_path().as_os_str().len() <= 100, "{:?}", server.socket_path());
    assert_eq!(client.role(), "client");
    server.acquire("locks", &p("/x"), &req("s1")).await.unwrap();
    assert_eq!(client.acquire("locks", &p("/x"), &req("s2")).await.unwrap_err().code(), "ELOCKED");
}

#[test]
fn a_server_of_another_protocol_gives_this_client_a_clear_error() {
    use std::os::unix::io::AsRawFd;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("locks");
    std::fs::create_dir(&folder).unwrap();
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o700)).unwrap();
    // a "newer version" holds the folder and answers hellos with its own protocol
    let serve_lock = std::fs::File::create(folder.join("ofl.lock")).unwrap();
    assert_eq!(unsafe { libc::flock(serve_lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
    let listener = std::os::unix::net::UnixListener::bind(folder.join("ofl.sock")).unwrap();
    let fake = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let mut hello = vec![0u8; u32::from_le_bytes(len) as usize];
        s.read_exact(&mut hello).unwrap();
        let ours = br#"{"hello":"opencode-file-lock","protocol":4,"version":"9.0.0","pid":4242,"refused":"this server speaks protocol 4, the client 3"}"#;
        s.write_all(&(ours.len() as u32).to_le_bytes()).unwrap();
        s.write_all(ours).unwrap();
    });
    let err = SharedStore::open_separate(folder.to_str().unwrap()).err().expect("refused");
    fake.join().unwrap();
    let msg = err.to_string();
    assert_eq!(err.code(), "EBACKEND");
    for part in ["opencode-file-lock 9.0.0 (protocol 4, pid 4242)", "(protocol 3)", "FILE_LOCK_PATH", env!("CARGO_PKG_VERSION")] {
        assert!(msg.contains(part), "{part:?} in {msg}");
    }
    drop(serve_lock);
}
