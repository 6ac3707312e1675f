//! The direct lane: a second connection for the call that is alone in flight on the JS thread.
//!
//! Through the shared multiplexed connection a call costs two thread wake-ups besides the
//! server's: the JS thread hands the request to the connection's task on a runtime thread, and
//! that task hands the answer back. At one caller those hops are most of the latency (the profile
//! in docs/benchmarks.md). A call alone in flight (the bridge says so for its first poll) takes the
//! lane instead: it writes its request from the JS thread and waits for the answer there in
//! `poll(2)` for a while, the way a JS client waits in its event loop. An answer that takes longer
//! is awaited on the runtime like any other, so a slow server never blocks JS for more than that
//! while; and how long it waits here is learnt: it doubles with answers that came in time, halves
//! with those that did not, and drops to nothing on a slow or loaded server (which is tried again
//! now and then), so a busy JavaScript thread does not give its time to waiting. The lane is used only when it is idle and healthy; otherwise, on a Cluster or
//! over TLS, the call goes through the shared connection as before.
//!
//! A lane call that fails closes the lane: a connection in an unknown state is never reused, and
//! the next call alone makes a new one in the background. A call abandoned at its timeout leaves
//! its request in flight: a task reads the late answer (the lane is reused if it comes), and
//! `settled` lets the acquire that gave up wait for it before asking the server what became of
//! the attempt, as it would have on one connection, where that question queues behind the attempt.

use std::cell::Cell;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use redis::{ConnectionAddr, ErrorKind, RedisError, RedisResult, Value};

/// The most a call alone waits for its answer on the JS thread before it lets the runtime wait.
const WAIT_HERE_MAX_US: u64 = 1000;
/// Where the learnt wait starts, and what a call tries now and then once waiting here stopped paying.
const WAIT_HERE_PROBE_US: u64 = 200;
/// Below this, waiting here is not worth a try.
const WAIT_HERE_MIN_US: u64 = 50;
/// With waiting here off, one call in this many tries it again.
const PROBE_EVERY: u64 = 32;
/// After a failed connect, how long calls go through the shared connection before another try.
const RETRY_CONNECT: Duration = Duration::from_secs(1);
/// How long the answer to an abandoned call is waited for before its connection is closed.
const LATE_ANSWER: Duration = Duration::from_secs(60);

thread_local! {
    /// Set by the bridge for the first poll of a call that is alone in flight.
    static ALONE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` (a call's first poll) knowing whether the call is alone in flight.
pub fn first_poll<T>(alone: bool, f: impl FnOnce() -> T) -> T {
    let before = ALONE.with(|a| a.replace(alone));
    let r = f();
    ALONE.with(|a| a.set(before));
    r
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The lane's socket, a plain non-blocking one: it is not registered with the runtime's reactor
/// while the JS thread uses it (every answer would wake a runtime thread for nothing), only for
/// the moment a call waits on the runtime (`ready`).
#[cfg(unix)]
enum Sock {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

/// A socket's descriptor lent to the reactor for one wait (dropping it does not close it).
#[cfg(unix)]
struct Lent(std::os::fd::RawFd);

#[cfg(unix)]
impl std::os::fd::AsRawFd for Lent {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0
    }
}

#[cfg(unix)]
impl Sock {
    fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match self {
            Sock::Tcp(s) => s.as_raw_fd(),
            Sock::Unix(s) => s.as_raw_fd(),
        }
    }
    fn try_read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::Read;
        match self {
            Sock::Tcp(s) => (&*s).read(buf),
            Sock::Unix(s) => (&*s).read(buf),
        }
    }
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
        use std::io::Write;
        match self {
            Sock::Tcp(s) => (&*s).write(buf),
            Sock::Unix(s) => (&*s).write(buf),
        }
    }

    /// Waits on the runtime until the socket is ready for `interest`.
    async fn ready(&self, interest: tokio::io::Interest) -> std::io::Result<()> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(std::io::Error::other("no runtime to wait on"));
        }
        // SAFETY: the descriptor stays open and the same for the AsyncFd's whole life: the
        // AsyncFd lives only in this call, which borrows the socket
        let fd = unsafe { tokio::io::unix::AsyncFd::register_with_interest(Lent(self.fd()), interest) }.map_err(std::io::Error::from)?;
        let _ready = fd.ready(interest).await?;
        Ok(())
    }
    async fn readable(&self) -> std::io::Result<()> {
        self.ready(tokio::io::Interest::READABLE).await
    }
    async fn writable(&self) -> std::io::Result<()> {
        self.ready(tokio::io::Interest::WRITABLE).await
    }

    /// Waits up to `t` for something to read (or the end): true when there is.
    fn wait_readable(&self, t: Duration) -> bool {
        let mut p = libc::pollfd { fd: self.fd(), events: libc::POLLIN, revents: 0 };
        let ms = t.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for the duration of the call
        unsafe { libc::poll(&mut p, 1, ms) > 0 }
    }
}

/// One lane connection and what it has read.
#[cfg(unix)]
pub struct LaneConn {
    sock: Sock,
    buf: Vec<u8>,
}

#[cfg(not(unix))]
pub struct LaneConn;

fn io_error(e: std::io::Error) -> RedisError {
    RedisError::from(e)
}

fn closed() -> RedisError {
    io_error(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the server closed the connection"))
}

#[cfg(unix)]
impl LaneConn {
    async fn connect(addr: ConnectionAddr, settings: redis::RedisConnectionInfo, within: Duration) -> RedisResult<LaneConn> {
        let sock = tokio::time::timeout(within, async {
            match addr {
                ConnectionAddr::Tcp(host, port) => {
                    let s = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                    s.set_nodelay(true)?;
                    Ok(Sock::Tcp(s.into_std()?))
                }
                ConnectionAddr::Unix(path) => Ok(Sock::Unix(tokio::net::UnixStream::connect(path).await?.into_std()?)),
                _ => Err(std::io::Error::other("no lane over TLS")),
            }
        })
        .await
        .map_err(|_| io_error(std::io::Error::from(std::io::ErrorKind::TimedOut)))?
        .map_err(io_error)?;
        let mut conn = LaneConn { sock, buf: Vec::with_capacity(512) };
        if let Some(password) = settings.password() {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = settings.username() {
                auth.arg(user);
            }
            auth.arg(password);
            conn.call(&auth.get_packed_command(), Duration::ZERO).await?;
        }
        if settings.db() != 0 {
            conn.call(&redis::cmd("SELECT").arg(settings.db()).get_packed_command(), Duration::ZERO).await?;
        }
        Ok(conn)
    }

    /// Whether the idle connection still looks usable: nothing to read (an unread byte on an
    /// idle connection is the server closing it, or garbage).
    fn healthy(&self) -> bool {
        self.buf.is_empty() && !self.sock.wait_readable(Duration::ZERO)
    }

    /// Sends one packed command.
    async fn send(&mut self, packed: &[u8]) -> RedisResult<()> {
        let mut sent = 0;
        while sent < packed.len() {
            match self.sock.try_write(&packed[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.sock.writable().await.map_err(io_error)?,
                Err(e) => return Err(io_error(e)),
            }
        }
        Ok(())
    }

    /// Reads one answer, waiting for it on this thread first for up to `here`.
    async fn reply(&mut self, here: Duration) -> RedisResult<Value> {
        let until = Instant::now() + here;
        loop {
            if let Some(len) = resp_len(&self.buf)? {
                let v = redis::parse_redis_value(&self.buf[..len]);
                self.buf.drain(..len);
                return v?.extract_error();
            }
            let mut chunk = [0u8; 4096];
            match self.sock.try_read(&mut chunk) {
                Ok(0) => return Err(closed()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() || !self.sock.wait_readable(left) {
                        self.sock.readable().await.map_err(io_error)?;
                    }
                }
                Err(e) => return Err(io_error(e)),
            }
        }
    }

    async fn call(&mut self, packed: &[u8], here: Duration) -> RedisResult<Value> {
        self.send(packed).await?;
        self.reply(here).await
    }
}

/// Whether a connection is still in step with the server after an answer (error replies are
/// answers; a broken or garbled stream is not).
fn in_step(r: &RedisResult<Value>) -> bool {
    match r {
        Ok(_) => true,
        Err(e) => e.kind() != ErrorKind::Io && e.kind() != ErrorKind::Parse,
    }
}

/// The length of the complete RESP2 reply at the start of `b`, None while it is incomplete.
fn resp_len(b: &[u8]) -> RedisResult<Option<usize>> {
    fn line(b: &[u8], at: usize) -> Option<usize> {
        b.get(at..)?.windows(2).position(|w| w == b"\r\n").map(|p| at + p + 2)
    }
    fn number(b: &[u8], from: usize, to: usize) -> RedisResult<i64> {
        std::str::from_utf8(&b[from..to - 2]).ok().and_then(|s| s.parse().ok()).ok_or_else(|| RedisError::from((ErrorKind::Parse, "bad length in a reply")))
    }
    fn one(b: &[u8], at: usize) -> RedisResult<Option<usize>> {
        let Some(&kind) = b.get(at) else { return Ok(None) };
        let Some(end) = line(b, at) else { return Ok(None) };
        match kind {
            b'+' | b'-' | b':' => Ok(Some(end)),
            b'$' => {
                let n = number(b, at + 1, end)?;
                if n < 0 {
                    return Ok(Some(end));
                }
                let total = end + n as usize + 2;
                Ok((b.len() >= total).then_some(total))
            }
            b'*' => {
                let n = number(b, at + 1, end)?;
                let mut at = end;
                for _ in 0..n.max(0) {
                    match one(b, at)? {
                        Some(next) => at = next,
                        None => return Ok(None),
                    }
                }
                Ok(Some(at))
            }
            _ => Err(RedisError::from((ErrorKind::Parse, "a reply of a kind this client does not speak"))),
        }
    }
    one(b, 0)
}

/// The lane of one store: idle, being made, or out with a call.
pub struct Lane {
    state: Mutex<State>,
    /// How long a call alone waits here for its answer, learnt (µs; see the module's comment).
    wait_here_us: std::sync::atomic::AtomicU64,
    /// Calls since waiting here stopped paying (for the occasional new try).
    calls: std::sync::atomic::AtomicU64,
    /// Calls abandoned with their request in flight whose answer has not come yet.
    late: std::sync::atomic::AtomicUsize,
    answered: tokio::sync::Notify,
}

#[derive(Default)]
struct State {
    idle: Option<LaneConn>,
    connecting: bool,
    /// Bumped when the store points at another server: a lane made for the old one is dropped.
    generation: u64,
    not_before: Option<Instant>,
}

/// A lane taken by one call: given back after a clean answer, closed after a failure; dropped
/// while its request is in flight, a task waits for the answer.
pub struct LaneCall {
    conn: Option<LaneConn>,
    in_flight: bool,
    here: Duration,
    generation: u64,
    lane: Weak<Lane>,
}

impl LaneCall {
    /// Sends `cmd` on the lane and reads its answer.
    #[cfg(unix)]
    pub async fn call(mut self, cmd: &redis::Cmd) -> RedisResult<Value> {
        let packed = cmd.get_packed_command();
        let conn = self.conn.as_mut().expect("a lane call holds its connection");
        self.in_flight = true;
        let started = Instant::now();
        let r = conn.call(&packed, self.here).await;
        self.in_flight = false;
        if let (Some(lane), false) = (self.lane.upgrade(), self.here.is_zero()) {
            lane.learn(self.here, started.elapsed());
        }
        if in_step(&r) {
            give_back(&self.lane, self.generation, self.conn.take());
        }
        r
    }

    #[cfg(not(unix))]
    pub async fn call(self, _cmd: &redis::Cmd) -> RedisResult<Value> {
        Err(closed())
    }
}

fn give_back(lane: &Weak<Lane>, generation: u64, conn: Option<LaneConn>) {
    if let (Some(lane), Some(conn)) = (lane.upgrade(), conn) {
        let mut s = lock(&lane.state);
        if s.generation == generation && s.idle.is_none() {
            s.idle = Some(conn);
        }
    }
}

impl Drop for LaneCall {
    fn drop(&mut self) {
        #[cfg(unix)]
        if self.in_flight {
            let (Some(mut conn), Some(lane), Ok(rt)) = (self.conn.take(), self.lane.upgrade(), tokio::runtime::Handle::try_current()) else { return };
            lane.late.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            let (weak, generation) = (self.lane.clone(), self.generation);
            rt.spawn(async move {
                let r = tokio::time::timeout(LATE_ANSWER, conn.reply(Duration::ZERO)).await;
                if matches!(&r, Ok(answer) if in_step(answer)) {
                    give_back(&weak, generation, Some(conn));
                }
                lane.late.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
                lane.answered.notify_waiters();
            });
        }
    }
}

impl Default for Lane {
    fn default() -> Lane {
        Lane { state: Mutex::default(), wait_here_us: WAIT_HERE_PROBE_US.into(), calls: 0.into(), late: 0.into(), answered: tokio::sync::Notify::new() }
    }
}

impl Lane {
    /// How long the next call waits here: the learnt time, or now and then a try when it is none.
    fn wait_here(&self) -> Duration {
        use std::sync::atomic::Ordering::Relaxed;
        let us = self.wait_here_us.load(Relaxed);
        if us > 0 {
            return Duration::from_micros(us);
        }
        let n = self.calls.fetch_add(1, Relaxed);
        Duration::from_micros(if n % PROBE_EVERY == PROBE_EVERY - 1 { WAIT_HERE_PROBE_US } else { 0 })
    }

    /// What a call that waited here up to `budget` took: an answer in time lets the next ones
    /// wait up to twice as long as it took (up to the most); a miss halves the wait.
    fn learn(&self, budget: Duration, took: Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let was = self.wait_here_us.load(Relaxed);
        let next = if took <= budget {
            (took.as_micros() as u64 * 2).max(was).max(WAIT_HERE_MIN_US).min(WAIT_HERE_MAX_US)
        } else {
            let half = budget.as_micros() as u64 / 2;
            if half < WAIT_HERE_MIN_US { 0 } else { half }
        };
        self.wait_here_us.store(next, Relaxed);
    }
    /// The lane for a call, when this call is alone in flight and the lane is idle; otherwise
    /// None (the call takes the shared connection), and a lane is made in the background for the
    /// next one if there is none. `client` says where and how to connect.
    pub fn take(self: &Arc<Self>, client: impl FnOnce() -> redis::Client, within: Duration) -> Option<LaneCall> {
        if !cfg!(unix) || !ALONE.with(|a| a.get()) {
            return None;
        }
        let mut s = lock(&self.state);
        if let Some(conn) = s.idle.take() {
            #[cfg(unix)]
            if !conn.healthy() {
                drop(conn);
                return None;
            }
            return Some(LaneCall { conn: Some(conn), in_flight: false, here: self.wait_here(), generation: s.generation, lane: Arc::downgrade(self) });
        }
        if s.connecting || s.not_before.is_some_and(|t| Instant::now() < t) {
            return None;
        }
        let client = client();
        let info = client.get_connection_info();
        if !matches!(info.addr(), ConnectionAddr::Tcp(..) | ConnectionAddr::Unix(..)) || tokio::runtime::Handle::try_current().is_err() {
            return None;
        }
        s.connecting = true;
        let (addr, settings, generation, lane) = (info.addr().clone(), info.redis_settings().clone(), s.generation, Arc::downgrade(self));
        tokio::spawn(async move {
            #[cfg(unix)]
            let made = LaneConn::connect(addr, settings, within).await;
            #[cfg(not(unix))]
            let made: RedisResult<LaneConn> = { let _ = (addr, settings, within); Err(closed()) };
            let Some(lane) = lane.upgrade() else { return };
            let mut s = lock(&lane.state);
            s.connecting = false;
            match made {
                Ok(conn) if s.generation == generation => s.idle = Some(conn),
                Ok(_) => {}
                Err(_) => s.not_before = Some(Instant::now() + RETRY_CONNECT),
            }
        });
        None
    }

    /// Waits (up to `within`) until every abandoned call's answer came or its connection closed:
    /// after that, what those calls asked has run or never will.
    pub async fn settled(&self, within: Duration) {
        let _ = tokio::time::timeout(within, async {
            loop {
                let answered = self.answered.notified();
                if self.late.load(std::sync::atomic::Ordering::Acquire) == 0 {
                    return;
                }
                answered.await;
            }
        })
        .await;
    }

    /// The store now talks to another server: the lane to the old one goes.
    pub fn reset(&self) {
        let mut s = lock(&self.state);
        s.idle = None;
        s.generation += 1;
        s.not_before = None;
    }
}

#[cfg(test)]
mod tests {
    use super::{resp_len, Lane, PROBE_EVERY};
    use std::time::Duration;

    #[test]
    fn the_wait_here_is_learnt_and_tried_again_now_and_then() {
        let lane = Lane::default();
        let us = |d: Duration| d.as_micros() as u64;
        assert_eq!(us(lane.wait_here()), 200);
        lane.learn(Duration::from_micros(200), Duration::from_micros(400)); // a miss halves it
        assert_eq!(us(lane.wait_here()), 100);
        lane.learn(Duration::from_micros(100), Duration::from_micros(90)); // in time: twice what it took
        assert_eq!(us(lane.wait_here()), 180);
        lane.learn(Duration::from_micros(180), Duration::from_micros(900));
        lane.learn(Duration::from_micros(90), Duration::from_micros(900)); // under the least: off
        let waits: Vec<u64> = (0..PROBE_EVERY).map(|_| us(lane.wait_here())).collect();
        assert_eq!(waits.iter().filter(|w| **w > 0).count(), 1, "one try in {PROBE_EVERY}: {waits:?}");
        lane.learn(Duration::from_micros(200), Duration::from_micros(150)); // the try paid: on again
        assert_eq!(us(lane.wait_here()), 300);
        lane.learn(Duration::from_micros(1000), Duration::from_micros(900));
        assert_eq!(us(lane.wait_here()), 1000, "capped at the most");
    }

    #[test]
    fn resp_len_knows_complete_and_incomplete_replies() {
        let whole: &[&[u8]] = &[b"+OK\r\n", b":12\r\n", b"$-1\r\n", b"$3\r\nabc\r\n", b"*2\r\n$1\r\na\r\n:1\r\n", b"*0\r\n", b"*-1\r\n", b"-ERR x\r\n"];
        for w in whole {
            assert_eq!(resp_len(w).unwrap(), Some(w.len()), "{}", String::from_utf8_lossy(w));
            for cut in 0..w.len() {
                assert_eq!(resp_len(&w[..cut]).unwrap(), None, "{} cut at {cut}", String::from_utf8_lossy(w));
            }
        }
        assert_eq!(resp_len(b"+OK\r\n+NEXT\r\n").unwrap(), Some(5));
        assert!(resp_len(b"%1\r\n").is_err());
        assert!(resp_len(b"$x\r\n").is_err());
    }
}
