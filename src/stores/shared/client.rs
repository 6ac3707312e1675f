//! One client connection to the process serving a sled folder.
//!
//! A wake-up of a sleeping thread costs tens of microseconds on a busy machine, which is more than
//! a whole lock operation. So the caller writes its request itself and then reads the socket
//! itself for a short while (`SPIN`), usually getting its answer without any thread waking up;
//! the server does the same on its side. Only an answer slower than that goes the long way: a
//! reader thread, blocked in poll(2), hands it to the waiting future. The reader thread also
//! notices at once when the server goes away (and then starts the takeover, see `mod.rs`), and
//! receives pushed release announcements while anything here listens.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use super::protocol::{frame, max_frame, next_frame, Framed, Hello, Incoming, Request, DEFAULT_MAX_FRAME, HELLO, MAX_HELLO, PROTOCOL};
use crate::core::error::Error;

/// How long a caller reads the socket itself before it lets the reader thread hand it the answer.
const SPIN: Duration = Duration::from_micros(300);

/// How much held-back request data is sent without waiting for the end of the turn (a couple of
/// dozen requests): the server starts on them while the callers go on asking. Measured best of
/// 512 to 8192 bytes at 50 callers.
const FLUSH_AT: usize = 4096;

thread_local! {
    /// Whether a call made on this thread now may spin for its answer. The JS layer says no when
    /// other calls are in flight: then the answers come back together through the reader thread,
    /// and the requests of many callers are on the socket at once (pipelined) instead of one by one.
    static MAY_SPIN: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Connections holding deferred requests.
static DEFERRED: std::sync::LazyLock<Mutex<Vec<std::sync::Weak<Conn>>>> = std::sync::LazyLock::new(Default::default);

/// Sends every request held back by callers that did not spin (see `Conn::deferred`).
pub fn flush_deferred() {
    let conns = std::mem::take(&mut *lock(&DEFERRED));
    for c in conns.iter().filter_map(std::sync::Weak::upgrade) {
        c.flush_deferred();
    }
}

/// Runs `f` with spinning allowed or not for the calls it makes on this thread.
pub fn with_spin<T>(spin: bool, f: impl FnOnce() -> T) -> T {
    let before = MAY_SPIN.with(|m| m.replace(spin));
    let r = f();
    MAY_SPIN.with(|m| m.set(before));
    r
}
/// A client that cannot send (the server stopped reading) gives up on it past this much queued.
/// What the outbox holds at most before a caller is refused (the largest frame there is).
const MAX_OUTBOX: usize = 64 << 20;

/// Why a call did not get an answer.
#[derive(Debug)]
pub enum CallError {
    /// The connection ended before the answer came: the caller waits for the takeover and asks again.
    Lost,
    Failed(Error),
}

/// A late answer to an acquire its caller gave up on is released again (no ghost lock).
pub struct Compensate {
    pub ns: String,
    pub session: String,
}

/// Where a call's answer arrives.
type Answer = oneshot::Receiver<Result<Box<RawValue>, CallError>>;

enum Slot {
    /// A caller waits; past `deadline` the reader thread fails it with ETIMEDOUT (no timer per call).
    Waiting { tx: oneshot::Sender<Result<Box<RawValue>, CallError>>, deadline: Instant, compensate: Option<Compensate> },
    Abandoned(Option<Compensate>),
}

/// Who the server is, from its hello.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub pid: u32,
    pub version: String,
}

pub struct Conn {
    stream: UnixStream,
    pub server: ServerInfo,
    /// The largest request the server takes (its hello says; this process's own limit at most).
    max_frame: usize,
    read: Mutex<Vec<u8>>,
    /// What the socket would not take yet; the reader thread writes it when it can.
    outbox: Mutex<Vec<u8>>,
    /// Requests of callers that must not spin, held back until `flush_deferred` sends them in one
    /// write (the JS layer calls it once the callers of this turn have all asked).
    deferred: Mutex<Vec<u8>>,
    slots: Mutex<HashMap<u64, Slot>>,
    next_id: AtomicU64,
    dead: AtomicBool,
    closing: AtomicBool,
    /// Callers waiting through the reader thread, and pushed keys wanted: the reader reads only then.
    async_waiters: AtomicUsize,
    listening: AtomicUsize,
    waker: UnixStream,
    on_push: Box<dyn Fn(&str) + Send + Sync>,
    /// Run by the reader thread when the connection ends without having been shut down on purpose.
    on_dead: Mutex<Option<OnDead>>,
}

/// What to do when the server goes away: start the takeover (see `mod.rs`).
pub type OnDead = Box<dyn FnOnce(Arc<Conn>) + Send>;

/// How connecting failed.
pub enum ConnectError {
    /// Nobody listens there (yet, or any more): try again, or serve.
    Absent,
    /// Someone answered but will not serve us (another protocol, a stranger): the message says why.
    Refused(Error),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes all of `buf` to a blocking-mode-agnostic socket within `deadline`.
fn write_fully(mut s: &UnixStream, mut buf: &[u8], deadline: Instant) -> std::io::Result<()> {
    while !buf.is_empty() {
        match s.write(buf) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                if Instant::now() > deadline {
                    return Err(ErrorKind::TimedOut.into());
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Connects and exchanges hellos (blocking, bounded by `timeout`).
pub fn connect(socket: &Path, timeout: Duration, on_push: Box<dyn Fn(&str) + Send + Sync>, on_dead: OnDead) -> Result<Arc<Conn>, ConnectError> {
    // only a socket of this user, served by a process of this user: nothing is sent before both are known
    super::socket::check_own_file(socket, true).map_err(ConnectError::Refused)?;
    let stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => return Err(ConnectError::Absent),
        Err(e) => return Err(ConnectError::Refused(Error::backend(format!("cannot connect to the lock socket {}: {e}", socket.display())))),
    };
    match super::socket::peer_uid(&stream) {
        Some(uid) if uid == super::socket::euid() => {}
        Some(uid) => {
            return Err(ConnectError::Refused(Error::backend(format!(
                "the lock socket {} is served by a process of another user (uid {uid}): it is not trusted, and nothing was sent to it. Set FILE_LOCK_PATH to a folder of your own",
                socket.display()
            ))))
        }
        None => {
            return Err(ConnectError::Refused(Error::backend(format!("cannot tell which user serves the lock socket {}: it is not trusted", socket.display()))));
        }
    }
    let deadline = Instant::now() + timeout;
    let mut hello = Vec::new();
    frame(&mut hello, &Hello::ours());
    let io = |e: std::io::Error| match e.kind() {
        // the server went away between accept and hello: as if it were not there
        ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof => ConnectError::Absent,
        ErrorKind::TimedOut | ErrorKind::WouldBlock => ConnectError::Refused(Error::Timeout(format!(
            "the process serving the lock socket {} did not answer within {} ms",
            socket.display(),
            timeout.as_millis()
        ))),
        _ => ConnectError::Refused(Error::backend(format!("lock socket {}: {e}", socket.display()))),
    };
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    write_fully(&stream, &hello, deadline).map_err(io)?;
    // read the server's hello
    let mut buf = Vec::new();
    let answer = loop {
        match next_frame(&buf, MAX_HELLO) {
            Framed::Whole(payload, _) => break serde_json::from_slice::<Hello>(payload).ok(),
            Framed::TooLarge(_) => break None,
            Framed::Partial => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io(ErrorKind::TimedOut.into()));
        }
        stream.set_read_timeout(Some(left)).map_err(io)?;
        let mut chunk = [0u8; 1024];
        match (&stream).read(&mut chunk) {
            Ok(0) => return Err(ConnectError::Absent),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    };
    let Some(h) = answer.filter(|h| h.hello == HELLO) else {
        return Err(ConnectError::Refused(Error::backend(format!("{} is not an opencode-file-lock socket: what answered there is not a lock server", socket.display()))));
    };
    if h.protocol != PROTOCOL || h.refused.is_some() {
        return Err(ConnectError::Refused(version_error(socket, &h)));
    }
    stream.set_nonblocking(true).map_err(io)?;
    let (waker, wake_rx) = UnixStream::pair().map_err(io)?;
    waker.set_nonblocking(true).map_err(io)?;
    wake_rx.set_nonblocking(true).map_err(io)?;
    let conn = Arc::new(Conn {
        stream,
        server: ServerInfo { pid: h.pid, version: h.version },
        max_frame: h.max_frame.unwrap_or(DEFAULT_MAX_FRAME).min(max_frame()),
        read: Mutex::new(Vec::with_capacity(64 * 1024)),
        outbox: Mutex::new(Vec::new()),
        deferred: Mutex::new(Vec::new()),
        slots: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
        dead: AtomicBool::new(false),
        closing: AtomicBool::new(false),
        async_waiters: AtomicUsize::new(0),
        listening: AtomicUsize::new(0),
        waker,
        on_push,
        on_dead: Mutex::new(Some(on_dead)),
    });
    let weak = Arc::downgrade(&conn);
    std::thread::Builder::new()
        .name("ofl-shared-reader".into())
        .spawn(move || reader(weak, wake_rx))
        .map_err(io)?;
    Ok(conn)
}

/// The refusal a client of another protocol gets, naming both sides' versions.
pub fn version_error(socket: &Path, server: &Hello) -> Error {
    Error::backend(format!(
        "the lock folder is served (socket {}) by opencode-file-lock {} (protocol {}, pid {}), and this process runs {} (protocol {}): \
         the two cannot share locks. Use one version of opencode-file-lock in every process (restart the older ones), \
         or give this process its own FILE_LOCK_PATH",
        socket.display(),
        server.version,
        server.protocol,
        server.pid,
        super::protocol::PACKAGE_VERSION,
        PROTOCOL
    ))
}

#[derive(Serialize)]
struct Outgoing<'a> {
    id: u64,
    req: &'a Request,
}

impl Conn {
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    fn poke(&self) {
        let _ = (&self.waker).write(&[1]);
    }

    /// How many keys this client wants pushed; with any, the reader thread reads all the time.
    pub fn set_listening(&self, keys: usize) {
        let before = self.listening.swap(keys, Ordering::AcqRel);
        if (before == 0) != (keys == 0) {
            self.poke(); // the reader thread starts or stops reading all the time
        }
    }

    /// Sends a request that wants no answer (listen, unlisten, a compensating release).
    pub fn notify(&self, req: &Request) {
        let mut buf = Vec::with_capacity(128);
        frame(&mut buf, &Outgoing { id: 0, req });
        self.flush_deferred();
        let _ = self.write(&buf);
    }

    fn flush_deferred(&self) {
        let mut d = lock(&self.deferred);
        if !d.is_empty() {
            let _ = self.write(&d);
            d.clear();
        }
    }

    /// Writes a whole frame, or queues what the socket would not take for the reader thread.
    fn write(&self, buf: &[u8]) -> Result<(), CallError> {
        if self.is_dead() {
            return Err(CallError::Lost);
        }
        let mut out = lock(&self.outbox);
        if !out.is_empty() {
            if out.len() + buf.len() > MAX_OUTBOX {
                return Err(CallError::Failed(Error::Timeout("the lock server is not reading its socket".into())));
            }
            out.extend_from_slice(buf);
            drop(out);
            self.poke();
            return Ok(());
        }
        let mut sent = 0;
        while sent < buf.len() {
            match (&self.stream).write(&buf[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    out.extend_from_slice(&buf[sent..]);
                    drop(out);
                    self.poke();
                    return Ok(());
                }
                Err(_) => {
                    drop(out);
                    self.die();
                    return Err(CallError::Lost);
                }
            }
        }
        Ok(())
    }

    /// Reads what has arrived: the answer to `rx`'s call if it is there.
    fn try_answer(&self, rx: &mut Answer) -> Option<Result<Box<RawValue>, CallError>> {
        self.pump(false);
        match rx.try_recv() {
            Ok(r) => Some(r),
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(CallError::Lost)),
            Err(oneshot::error::TryRecvError::Empty) => None,
        }
    }

    /// Sends `req` and waits for its answer until `deadline` (`compensate`: how to give back a
    /// grant that comes after the caller gave up).
    pub async fn call(self: &Arc<Self>, req: &Request, deadline: Instant, compensate: Option<Compensate>) -> Result<Box<RawValue>, CallError> {
        let spin = MAY_SPIN.with(|m| m.get());
        let mut rx = self.send(req, !spin, deadline, compensate)?;
        if spin {
            let spin_until = Instant::now() + SPIN;
            loop {
                if let Some(answer) = self.try_answer(&mut rx) {
                    return answer;
                }
                if Instant::now() >= spin_until {
                    break;
                }
                std::thread::yield_now();
            }
        }
        // the long way: the reader thread reads from now on (told when it did not read before)
        if self.async_waiters.fetch_add(1, Ordering::AcqRel) == 0 {
            self.poke();
        }
        let r = (&mut rx).await;
        self.async_waiters.fetch_sub(1, Ordering::AcqRel);
        r.unwrap_or(Err(CallError::Lost))
    }

    /// Fails the calls whose deadline passed (ETIMEDOUT); a grant that still comes for one of
    /// them is handed back.
    fn expire(&self, now: Instant) {
        let mut late = Vec::new();
        for slot in lock(&self.slots).values_mut() {
            if matches!(slot, Slot::Waiting { deadline, .. } if *deadline <= now) {
                if let Slot::Waiting { tx, compensate, .. } = std::mem::replace(slot, Slot::Abandoned(None)) {
                    *slot = Slot::Abandoned(compensate);
                    late.push(tx);
                }
            }
        }
        for tx in late {
            let _ = tx.send(Err(CallError::Failed(Error::Timeout(format!(
                "the process serving the lock folder (pid {}) did not answer in time; it may be paused or overloaded",
                self.server.pid
            )))));
        }
    }

    /// The same from a plain thread (the takeover's re-assertion): spins, then sleeps briefly.
    pub fn call_blocking(self: &Arc<Self>, req: &Request, deadline: Instant) -> Result<Box<RawValue>, CallError> {
        let mut rx = self.send(req, false, deadline, None)?;
        self.async_waiters.fetch_add(1, Ordering::AcqRel);
        self.poke();
        let r = loop {
            if let Some(answer) = self.try_answer(&mut rx) {
                break answer;
            }
            if Instant::now() >= deadline {
                break Err(CallError::Failed(Error::Timeout("the new lock server did not answer the re-assertion in time".into())));
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        self.async_waiters.fetch_sub(1, Ordering::AcqRel);
        r
    }

    fn send(self: &Arc<Self>, req: &Request, defer: bool, deadline: Instant, compensate: Option<Compensate>) -> Result<Answer, CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let too_big = |len: usize| {
            CallError::Failed(Error::invalid(format!("this request is {len} bytes, more than the shared lock store takes in one call ({} bytes, FILE_LOCK_MAX_FRAME)", self.max_frame)))
        };
        let (tx, rx) = oneshot::channel();
        if defer {
            // framed straight into the held-back requests
            let mut d = lock(&self.deferred);
            let start = d.len();
            frame(&mut d, &Outgoing { id, req });
            if d.len() - start - 4 > self.max_frame {
                let len = d.len() - start;
                d.truncate(start);
                return Err(too_big(len));
            }
            lock(&self.slots).insert(id, Slot::Waiting { tx, deadline, compensate });
            if start == 0 {
                lock(&DEFERRED).push(Arc::downgrade(self));
            }
            // a long turn sends as it goes, so the server works while the callers are still asking
            if d.len() >= FLUSH_AT {
                let _ = self.write(&d);
                d.clear();
            }
            return Ok(rx);
        }
        let mut buf = Vec::with_capacity(256);
        frame(&mut buf, &Outgoing { id, req });
        if buf.len() - 4 > self.max_frame {
            return Err(too_big(buf.len()));
        }
        lock(&self.slots).insert(id, Slot::Waiting { tx, deadline, compensate });
        self.flush_deferred(); // in order: what was held back goes first
        if let Err(e) = self.write(&buf) {
            lock(&self.slots).remove(&id);
            return Err(e);
        }
        if self.is_dead() {
            // died between the check and the insert: the reader may have failed every slot already
            lock(&self.slots).remove(&id);
            return Err(CallError::Lost);
        }
        Ok(rx)
    }

    /// Reads whatever has arrived and hands each frame to its caller. `wait`: block for the read
    /// lock (the reader thread) rather than give up when a caller holds it.
    fn pump(&self, wait: bool) {
        let mut buf = if wait {
            lock(&self.read)
        } else {
            match self.read.try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return,
            }
        };
        let mut chunk = [0u8; 16 * 1024];
        let mut ended = false;
        loop {
            match (&self.stream).read(&mut chunk) {
                Ok(0) => {
                    ended = true;
                    break;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    ended = true;
                    break;
                }
            }
        }
        let mut at = 0;
        loop {
            match next_frame(&buf[at..], max_frame().max(self.max_frame)) {
                Framed::Whole(payload, used) => {
                    match serde_json::from_slice::<Incoming>(payload) {
                        Ok(msg) => self.deliver(msg),
                        Err(_) => ended = true, // not our server's frames: drop the connection
                    }
                    at += used;
                }
                Framed::Partial => break,
                Framed::TooLarge(_) => {
                    ended = true;
                    break;
                }
            }
            if ended {
                break;
            }
        }
        buf.drain(..at);
        drop(buf);
        if ended {
            self.die();
        }
    }

    fn deliver(&self, msg: Incoming) {
        if let Some(key) = msg.released {
            (self.on_push)(&key);
            return;
        }
        let slot = lock(&self.slots).remove(&msg.id);
        let answer = match (msg.ok, msg.err) {
            (Some(ok), _) => Ok(ok),
            (None, Some(e)) => Err(CallError::Failed(e.into())),
            (None, None) => Ok(RawValue::from_string("null".into()).expect("null is JSON")),
        };
        match slot {
            Some(Slot::Waiting { tx, .. }) => {
                let _ = tx.send(answer);
            }
            Some(Slot::Abandoned(Some(c))) => {
                // a grant nobody waits for any more: give each path back
                if let Ok(raw) = answer {
                    let granted = serde_json::from_str::<Vec<crate::core::lock::LockRecord>>(raw.get())
                        .ok()
                        .or_else(|| serde_json::from_str::<super::protocol::WireAttempt>(raw.get()).ok().and_then(|a| a.granted));
                    if let Some(recs) = granted {
                        for r in recs {
                            self.notify(&Request::Release { ns: c.ns.clone(), path: r.path, session: c.session.clone(), resume: None });
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// Marks the connection dead and fails every call still waiting with `Lost` (they ask again).
    fn die(&self) {
        if self.dead.swap(true, Ordering::AcqRel) {
            return;
        }
        let slots: Vec<Slot> = lock(&self.slots).drain().map(|(_, s)| s).collect();
        for s in slots {
            if let Slot::Waiting { tx, .. } = s {
                let _ = tx.send(Err(CallError::Lost));
            }
        }
        self.poke();
    }

    /// Closes the connection for good (the store was closed).
    pub fn shutdown(&self) {
        self.closing.store(true, Ordering::Release);
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        self.die();
    }

    fn flush_outbox(&self) {
        let mut out = lock(&self.outbox);
        while !out.is_empty() {
            match (&self.stream).write(&out) {
                Ok(n) => {
                    out.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    drop(out);
                    self.die();
                    return;
                }
            }
        }
    }

}

/// The reader thread: blocks in poll(2) on the socket (for answers and pushes only while someone
/// waits for them; for the server's end always) and on its waker.
fn reader(conn: std::sync::Weak<Conn>, wake_rx: UnixStream) {
    let mut drain = [0u8; 64];
    let mut next_expiry = Instant::now();
    loop {
        let Some(c) = conn.upgrade() else { return };
        if c.is_dead() {
            break;
        }
        let wants_data = c.async_waiters.load(Ordering::Acquire) > 0 || c.listening.load(Ordering::Acquire) > 0;
        let has_out = !lock(&c.outbox).is_empty();
        let mut events: libc::c_short = 0;
        if wants_data || !cfg!(target_os = "linux") {
            events |= libc::POLLIN;
        }
        #[cfg(target_os = "linux")]
        {
            events |= libc::POLLRDHUP;
        }
        if has_out {
            events |= libc::POLLOUT;
        }
        let mut fds = [
            libc::pollfd { fd: c.stream.as_raw_fd(), events, revents: 0 },
            libc::pollfd { fd: wake_rx.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        drop(c);
        // SAFETY: fds is a valid array of two pollfd for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, 250) };
        let Some(c) = conn.upgrade() else { return };
        let now = Instant::now();
        if now >= next_expiry {
            c.expire(now);
            next_expiry = now + Duration::from_millis(250);
        }
        if n < 0 {
            continue; // EINTR
        }
        if fds[1].revents != 0 {
            while matches!((&wake_rx).read(&mut drain), Ok(n) if n > 0) {}
        }
        if fds[0].revents & libc::POLLOUT != 0 {
            c.flush_outbox();
        }
        if fds[0].revents & !libc::POLLOUT != 0 {
            c.pump(true);
        }
    }
    // the connection ended: unless it was closed on purpose, the store takes over from here
    if let Some(c) = conn.upgrade() {
        let on_dead = lock(&c.on_dead).take();
        if let Some(f) = on_dead.filter(|_| !c.closing.load(Ordering::Acquire)) {
            f(c);
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Parses an answer into what the caller expects.
pub fn parse<T: serde::de::DeserializeOwned>(raw: &RawValue) -> Result<T, Error> {
    serde_json::from_str(raw.get()).map_err(|e| Error::backend(format!("the lock server sent an answer this process cannot read ({e})")))
}

