//! The frames between a process that serves a sled folder and its clients.
//!
//! Every frame is a little-endian u32 length and that many bytes of JSON. The first frame each way
//! is the hello: its shape never changes, so processes of any two versions can tell each other
//! apart. A client whose `protocol` differs is refused with a message naming both versions; no
//! other frame is exchanged. `PROTOCOL` must go up whenever a request or answer changes shape
//! (the golden test below fails until it does).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::core::envelope::Entry;
use crate::core::error::Error;
use crate::core::lock::{LockFilter, LockRecord, LockRequest};
use crate::core::store::{BatchOp, Page};
use crate::core::wait::{Attempt, Waiter};

/// 2: TTLs travel as durations (the server's clock sets expiries), pages carry the server's clock,
/// refusals say how long until they may change. 3: waiters are listed, EDEADLK crosses.
pub const PROTOCOL: u32 = 3;
pub const PACKAGE_VERSION: &str = env!("CARGO_PKG_VERSION");
/// What a hello says it is; anything else on the socket is a stranger.
pub const HELLO: &str = "opencode-file-lock";
/// The largest frame either side accepts by default; a larger length prefix is garbage and ends
/// the connection. Far below what a hostile client could make the server hold: requests are paths
/// and small records (1,000 paths of 4 KiB each are just under it).
pub const DEFAULT_MAX_FRAME: usize = 4 << 20;

/// The largest frame this process accepts: FILE_LOCK_MAX_FRAME (bytes, 64 KiB to 64 MiB), else
/// `DEFAULT_MAX_FRAME`. A server says its own in its hello, and a client asks no more of it.
pub fn max_frame() -> usize {
    static MAX: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
        std::env::var("FILE_LOCK_MAX_FRAME").ok().and_then(|v| v.trim().parse::<usize>().ok()).map_or(DEFAULT_MAX_FRAME, |v| v.clamp(64 << 10, 64 << 20))
    });
    *MAX
}
/// The largest hello: a stranger's bytes are not read past this.
pub const MAX_HELLO: usize = 4096;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub hello: String,
    pub protocol: u32,
    pub version: String,
    pub pid: u32,
    /// The largest frame the sender accepts (absent from older versions: `DEFAULT_MAX_FRAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_frame: Option<usize>,
    /// Set by a server that will not talk to this client (another protocol): why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

impl Hello {
    pub fn ours() -> Hello {
        Hello { hello: HELLO.into(), protocol: PROTOCOL, version: PACKAGE_VERSION.into(), pid: std::process::id(), max_frame: Some(max_frame()), refused: None }
    }
}

/// A waiter as the server queues it; its ticket comes from the server it was queued on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireWaiter {
    pub id: String,
    pub ticket: u64,
}

impl From<&Waiter> for WireWaiter {
    fn from(w: &Waiter) -> Self {
        WireWaiter { id: w.id.clone(), ticket: w.ticket }
    }
}

impl WireWaiter {
    pub fn waiter(&self) -> Waiter {
        Waiter { id: self.id.clone(), ticket: self.ticket, ticket_from: "sled" }
    }
}

/// One request. Externally tagged (`{"acquire":{...}}`): it parses without buffering.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Request {
    Get { ns: String, key: String },
    Set { ns: String, key: String, value: String, ttl: Option<u64> },
    Del { ns: String, key: String },
    Batch { ns: String, ops: Vec<BatchOp> },
    Scan { ns: String, cursor: Option<String>, count: usize },
    SweepExpired { ns: String },
    Clear { ns: String },
    /// `waiter`: a waiting acquire's try (queued when refused). `resume`: a retry after the
    /// server went away, with the holds the session had of each path before the first try.
    Acquire { ns: String, paths: Vec<String>, req: LockRequest, waiter: Option<WireWaiter>, resume: Option<Vec<u32>> },
    Release { ns: String, path: String, session: String, resume: Option<u32> },
    ReleaseAll { ns: String, filter: LockFilter },
    Renew { ns: String, path: String, session: String, ttl_ms: u64 },
    ListLocks { ns: String, filter: LockFilter },
    ListWaiters { ns: String },
    ForceRelease { ns: String, path: String },
    LeaveQueue { ns: String, paths: Vec<String>, waiter: WireWaiter },
    /// After a takeover: a waiter back in its place (its old ticket).
    Requeue { ns: String, paths: Vec<String>, req: LockRequest, waiter: WireWaiter, waits_for: String },
    /// After a takeover: the locks this client holds.
    Reassert { ns: String, records: Vec<LockRecord> },
    /// Push `Released` frames for these storage keys (no answer).
    Listen { keys: Vec<String> },
    Unlisten { keys: Vec<String> },
    Health,
}

/// A request and its id; `id` 0 asks for no answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub id: u64,
    pub req: Request,
}

/// An error as it crosses the socket: its code, message and holder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireError {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<Value>,
}

impl From<&Error> for WireError {
    fn from(e: &Error) -> Self {
        WireError { code: e.code().into(), message: e.to_string(), holder: e.holder().cloned() }
    }
}

impl From<WireError> for Error {
    fn from(w: WireError) -> Self {
        let holder = w.holder.unwrap_or(Value::Null);
        match w.code.as_str() {
            "ELOCKED" => Error::Locked { message: w.message, holder },
            "ELOST" => Error::Lost { message: w.message, holder },
            "EDEADLK" => Error::Deadlock { message: w.message, holder },
            "EINVAL" => Error::Invalid(w.message),
            "ETIMEDOUT" => Error::Timeout(w.message),
            "ECORRUPT" => Error::Corrupt(w.message),
            "ECLOSED" => Error::Closed(w.message),
            "EABORTED" => Error::Aborted(w.message),
            _ => Error::Backend(w.message),
        }
    }
}

/// A frame from the server: an answer to request `id`, or a pushed release of a key.
#[derive(Debug, Deserialize)]
pub struct Incoming {
    #[serde(default)]
    pub id: u64,
    #[serde(default)]
    pub ok: Option<Box<RawValue>>,
    #[serde(default)]
    pub err: Option<WireError>,
    #[serde(default)]
    pub released: Option<String>,
}

#[derive(Serialize)]
pub struct Answer<'a, T: Serialize> {
    pub id: u64,
    pub ok: &'a T,
}

#[derive(Serialize)]
pub struct Failure<'a> {
    pub id: u64,
    pub err: &'a WireError,
}

#[derive(Serialize)]
pub struct Released<'a> {
    pub released: &'a str,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct WireEntry {
    pub v: Box<RawValue>,
    #[serde(default)]
    pub x: Option<i64>,
}

impl From<Entry> for WireEntry {
    fn from(e: Entry) -> Self {
        WireEntry { v: e.value, x: e.expires_at }
    }
}

impl From<WireEntry> for Entry {
    fn from(w: WireEntry) -> Self {
        Entry { value: w.v, expires_at: w.x }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct WirePage {
    pub items: Vec<(String, String, Option<i64>)>,
    pub cursor: Option<String>,
    pub now: i64,
}

impl From<Page> for WirePage {
    fn from(p: Page) -> Self {
        WirePage { items: p.items, cursor: p.cursor, now: p.now }
    }
}

impl From<WirePage> for Page {
    fn from(p: WirePage) -> Self {
        Page { items: p.items, cursor: p.cursor, now: p.now }
    }
}

/// An acquire try's outcome: granted records, or the refusal with the waiter's ticket.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireAttempt {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted: Option<Vec<LockRecord>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<WireError>,
    #[serde(default)]
    pub retry_in_ms: i64,
    #[serde(default)]
    pub ticket: u64,
}

impl From<Attempt> for WireAttempt {
    fn from(a: Attempt) -> Self {
        match a {
            Attempt::Granted(recs) => WireAttempt { granted: Some(recs), blocked: None, retry_in_ms: 0, ticket: 0 },
            Attempt::Blocked { error, retry_in_ms, ticket } => WireAttempt { granted: None, blocked: Some((&error).into()), retry_in_ms, ticket },
        }
    }
}

impl From<WireAttempt> for Attempt {
    fn from(a: WireAttempt) -> Self {
        match (a.granted, a.blocked) {
            (Some(recs), _) => Attempt::Granted(recs),
            (None, Some(e)) => Attempt::Blocked { error: e.into(), retry_in_ms: a.retry_in_ms, ticket: a.ticket },
            (None, None) => Attempt::Blocked { error: Error::backend("the lock server sent an empty answer"), retry_in_ms: a.retry_in_ms, ticket: a.ticket },
        }
    }
}

/// Appends one frame (length prefix and JSON) to `out`.
pub fn frame<T: Serialize>(out: &mut Vec<u8>, msg: &T) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    serde_json::to_writer(&mut *out, msg).expect("frames always serialise");
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// What `next_frame` found at the front of a buffer.
pub enum Framed<'a> {
    Whole(&'a [u8], usize),
    Partial,
    /// The length prefix is over `limit`: not a frame of ours.
    TooLarge(usize),
}

/// The first whole frame in `buf` (its payload and the bytes it took).
pub fn next_frame(buf: &[u8], limit: usize) -> Framed<'_> {
    if buf.len() < 4 {
        return Framed::Partial;
    }
    let len = u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize;
    if len > limit {
        return Framed::TooLarge(len);
    }
    if buf.len() < 4 + len {
        return Framed::Partial;
    }
    Framed::Whole(&buf[4..4 + len], 4 + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> LockRequest {
        LockRequest::new("s1", "a1", Some(1000)).unwrap()
    }

    /// The shapes on the wire. If this fails, the protocol changed: raise PROTOCOL, then update it.
    #[test]
    fn golden_frames_pin_the_protocol() {
        assert_eq!(PROTOCOL, 3);
        let samples = vec![
            Envelope { id: 1, req: Request::Acquire { ns: "n".into(), paths: vec!["/p".into()], req: req(), waiter: Some(WireWaiter { id: "w".into(), ticket: 7 }), resume: Some(vec![0]) } },
            Envelope { id: 2, req: Request::Release { ns: "n".into(), path: "/p".into(), session: "s1".into(), resume: None } },
            Envelope { id: 3, req: Request::Set { ns: "n".into(), key: "k".into(), value: "1".into(), ttl: Some(5) } },
            Envelope { id: 4, req: Request::Batch { ns: "n".into(), ops: vec![BatchOp::Del { key: "k".into() }, BatchOp::Put { key: "j".into(), value_json: "2".into(), ttl_ms: Some(9) }] } },
            Envelope { id: 5, req: Request::ReleaseAll { ns: "n".into(), filter: LockFilter { session_id: Some("s1".into()), agent_id: None } } },
            Envelope { id: 0, req: Request::Listen { keys: vec!["n\u{241F}/p".into()] } },
            Envelope { id: 6, req: Request::ListWaiters { ns: "n".into() } },
        ];
        let text: Vec<String> = samples.iter().map(|s| serde_json::to_string(s).unwrap()).collect();
        assert_eq!(
            text,
            vec![
                r#"{"id":1,"req":{"acquire":{"ns":"n","paths":["/p"],"req":{"sessionId":"s1","agentId":"a1","ttlMs":1000},"waiter":{"id":"w","ticket":7},"resume":[0]}}}"#,
                r#"{"id":2,"req":{"release":{"ns":"n","path":"/p","session":"s1","resume":null}}}"#,
                r#"{"id":3,"req":{"set":{"ns":"n","key":"k","value":"1","ttl":5}}}"#,
                r#"{"id":4,"req":{"batch":{"ns":"n","ops":[{"type":"del","key":"k"},{"type":"put","key":"j","value_json":"2","ttl_ms":9}]}}}"#,
                r#"{"id":5,"req":{"releaseAll":{"ns":"n","filter":{"sessionId":"s1","agentId":null}}}}"#,
                r#"{"id":0,"req":{"listen":{"keys":["n␟/p"]}}}"#,
                r#"{"id":6,"req":{"listWaiters":{"ns":"n"}}}"#,
            ]
        );
        let hello = serde_json::to_value(Hello::ours()).unwrap();
        assert_eq!(hello["hello"], HELLO);
        assert_eq!(hello["protocol"], PROTOCOL);
    }

    #[test]
    fn frames_round_trip_and_oversized_lengths_are_refused() {
        let mut buf = Vec::new();
        frame(&mut buf, &Released { released: "k" });
        frame(&mut buf, &Released { released: "l" });
        let Framed::Whole(first, used) = next_frame(&buf, max_frame()) else { panic!() };
        assert_eq!(first, br#"{"released":"k"}"#);
        assert!(matches!(next_frame(&buf[used..used + 3], max_frame()), Framed::Partial));
        assert!(matches!(next_frame(b"GET / HTTP/1.1\r\n", MAX_HELLO), Framed::TooLarge(_)));
    }

    #[test]
    fn errors_keep_their_code_and_holder_across_the_socket() {
        let e = Error::Locked { message: "File /p is locked".into(), holder: serde_json::json!({"sessionId": "s"}) };
        let back: Error = serde_json::from_str::<WireError>(&serde_json::to_string(&WireError::from(&e)).unwrap()).unwrap().into();
        assert_eq!((back.code(), back.holder().unwrap()["sessionId"].as_str()), ("ELOCKED", Some("s")));
    }
}
