//! Serving a sled folder to the other processes of the user: one thread with a poll(2) loop over
//! the listening socket and every client connection. After doing any work it keeps looking
//! (`SPIN`) before it sleeps, so a client's next request is usually read without a wake-up.
//! Strangers are turned away: a peer of another user (checked with the socket's peer
//! credentials), a first frame that is not our hello, a length prefix past the limit, or a frame
//! that does not parse ends that connection; the server goes on serving the others.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::protocol::{frame, max_frame, next_frame, Envelope, Framed, Hello, Released, Request, WireAttempt, WireEntry, WireError, WirePage, HELLO, MAX_HELLO, PROTOCOL};
use super::socket::{euid, peer_uid};
use crate::core::error::{Error, Result};
use crate::core::store::{now_or_never, Store};
use crate::core::wake::{Listening, Sink};
use crate::core::{debug, metrics};
use crate::stores::sled_store::SledStore;

/// How long the loop keeps looking for more work before it sleeps in poll(2).
const SPIN: Duration = Duration::from_micros(100);
/// A client that does not read its answers is dropped past this much unsent.
fn max_unsent() -> usize {
    2 * max_frame()
}
/// A frame must arrive whole within this long of its first byte: a client that trickles a large
/// frame in is dropped rather than held (with its buffer) for ever.
const FRAME_DEADLINE: Duration = Duration::from_secs(5);
/// The most clients served at once (all of them this user's processes); more are closed at once.
const MAX_CONNS: usize = 256;
/// What the clients' unfinished frames may hold in all; past it the largest is dropped. With the
/// frame limit and the deadline, the serving process's memory stays bounded whatever clients send.
const MAX_BUFFERED: usize = 16 << 20;
/// Out of file descriptors: the listener is left alone this long (no busy loop on EMFILE).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often the serving process deletes expired entries of every namespace (sled keeps them
/// until deleted; Redis drops them itself): write versions and views expire after a day, and the
/// folder must not grow with every file ever read. The first sweep comes a minute after start.
const SWEEP_EVERY: Duration = Duration::from_secs(600);
const FIRST_SWEEP: Duration = Duration::from_secs(60);

pub struct Server {
    stop: Arc<AtomicBool>,
    waker: Arc<UnixStream>,
    thread: Option<JoinHandle<()>>,
    socket: PathBuf,
    clients: Arc<AtomicUsize>,
}

impl Server {
    /// Listens on `socket` (removing what a dead server left there: the caller holds the folder's
    /// serve lock, so nobody else can be serving it) and serves `store` from a new thread.
    pub fn start(store: Arc<SledStore>, socket: &Path) -> Result<Server> {
        match std::fs::remove_file(socket) {
            Ok(()) => debug::log(format_args!("removed the socket a previous server of {} left behind", socket.display())),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::backend(format!("cannot remove the stale lock socket {}: {e}", socket.display()))),
        }
        let err = |e: std::io::Error| Error::backend(format!("cannot listen on the lock socket {}: {e}", socket.display()));
        let listener = UnixListener::bind(socket).map_err(err)?;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
        listener.set_nonblocking(true).map_err(err)?;
        let (waker, wake_rx) = UnixStream::pair().map_err(err)?;
        waker.set_nonblocking(true).map_err(err)?;
        wake_rx.set_nonblocking(true).map_err(err)?;
        let (stop, waker, clients) = (Arc::new(AtomicBool::new(false)), Arc::new(waker), Arc::new(AtomicUsize::new(0)));
        let mut looper = Loop { store, listener, wake_rx, waker: waker.clone(), stop: stop.clone(), conns: Vec::new(), clients: clients.clone(), accept_paused_until: None };
        let thread = std::thread::Builder::new().name("ofl-shared-server".into()).spawn(move || looper.run()).map_err(err)?;
        Ok(Server { stop, waker, thread: Some(thread), socket: socket.to_owned(), clients })
    }

    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    /// Stops serving: every client connection ends (they take the folder over), the socket goes.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = (&*self.waker).write(&[1]);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.halt();
    }
}

struct Loop {
    store: Arc<SledStore>,
    listener: UnixListener,
    wake_rx: UnixStream,
    waker: Arc<UnixStream>,
    stop: Arc<AtomicBool>,
    conns: Vec<Conn>,
    clients: Arc<AtomicUsize>,
    /// Until when the listener is not looked at (out of file descriptors).
    accept_paused_until: Option<Instant>,
}

struct Conn {
    stream: UnixStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    greeted: bool,
    dead: bool,
    /// Since when a frame has been coming in unfinished.
    partial_since: Option<Instant>,
    /// How long `inbuf` must be for the frame coming in (0: nothing to reserve).
    reserve_for: usize,
    /// Keys released since the last turn of the loop, to push to this client.
    pushes: Arc<Mutex<Vec<String>>>,
    listening: HashMap<String, Listening>,
}

impl Loop {
    fn run(&mut self) {
        let mut spin_until = Instant::now();
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let mut drain = [0u8; 64];
        let mut idle_turns = 0u32;
        // How long to keep looking after work, learnt: spinning pays when one client asks again
        // right after its answer (its next call), not when many clients' requests come in
        // batches further apart; then the looking only takes a core from them.
        let mut spin = SPIN;
        let mut sleeps = 0u32;
        let mut next_sweep = Instant::now() + FIRST_SWEEP;
        while !self.stop.load(Ordering::Acquire) {
            if Instant::now() >= next_sweep {
                next_sweep = Instant::now() + SWEEP_EVERY;
                match sync(self.store.sweep_expired("")) {
                    Ok(n) => debug::log(format_args!("shared store: swept {n} expired entries")),
                    Err(e) => debug::log(format_args!("shared store: sweeping expired entries failed: {e}")),
                }
            }
            let spinning = Instant::now() < spin_until;
            // one poll(2) for everything: while spinning it only looks (timeout 0)
            fds.clear();
            fds.push(libc::pollfd { fd: self.wake_rx.as_raw_fd(), events: libc::POLLIN, revents: 0 });
            let accepting = self.accept_paused_until.is_none_or(|t| Instant::now() >= t);
            if accepting {
                self.accept_paused_until = None;
            }
            // a negative fd is ignored by poll(2): the listener is not looked at while paused
            fds.push(libc::pollfd { fd: if accepting { self.listener.as_raw_fd() } else { -1 }, events: libc::POLLIN, revents: 0 });
            for c in &self.conns {
                let events = libc::POLLIN | if c.out.is_empty() { 0 } else { libc::POLLOUT };
                fds.push(libc::pollfd { fd: c.stream.as_raw_fd(), events, revents: 0 });
            }
            if !spinning {
                sleeps = sleeps.wrapping_add(1);
                if spin.is_zero() && sleeps % 64 == 0 {
                    spin = SPIN / 8; // look again now and then whether spinning pays
                }
            }
            // SAFETY: fds is a valid, correctly sized array for the duration of the call.
            let wait_ms = match self.accept_paused_until {
                Some(t) => t.saturating_duration_since(Instant::now()).as_millis().clamp(1, 1000) as i32,
                None => 1000,
            };
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, if spinning { 0 } else { wait_ms }) };
            let pushed = fds[0].revents != 0;
            if pushed {
                while matches!((&self.wake_rx).read(&mut drain), Ok(n) if n > 0) {}
            }
            let mut worked = fds[1].revents != 0 && self.accept();
            let mut answered = 0;
            for (i, c) in self.conns.iter_mut().enumerate() {
                let ready = fds.get(i + 2).is_none_or(|f| f.revents != 0);
                if ready || pushed || !c.out.is_empty() {
                    let (w, n) = c.turn(&self.store, &self.waker);
                    worked |= w;
                    answered += n;
                }
            }
            self.bound_buffers();
            let before = self.conns.len();
            self.conns.retain(|c| !c.dead);
            if self.conns.len() != before {
                self.clients.store(self.conns.len(), Ordering::Relaxed);
            }
            if worked && answered > 1 {
                // requests come in batches: callers are many and do not wait on each answer
                // alone, so spinning would only take a core from them
                spin_until = Instant::now();
                idle_turns = 0;
            } else if worked {
                if spinning {
                    spin = (spin * 2 + Duration::from_micros(10)).min(SPIN); // it paid
                }
                spin_until = Instant::now() + spin;
                idle_turns = 0;
            } else if spinning {
                idle_turns += 1;
                for _ in 0..64 {
                    std::hint::spin_loop();
                }
                if idle_turns % 8 == 0 {
                    std::thread::yield_now(); // let the clients run on a busy machine
                }
                if Instant::now() >= spin_until {
                    spin /= 2; // looked in vain
                    if spin < Duration::from_micros(5) {
                        spin = Duration::ZERO;
                    }
                }
            }
        }
        // stopping: the connections close as they drop, and each client takes over or reconnects
        self.conns.clear();
        self.clients.store(0, Ordering::Relaxed);
    }

    /// Drops clients that trickle a frame in past its deadline, and, while the unfinished frames
    /// of all clients hold more than `MAX_BUFFERED`, the client with the largest.
    fn bound_buffers(&mut self) {
        let now = Instant::now();
        for c in self.conns.iter_mut().filter(|c| !c.dead) {
            if c.partial_since.is_some_and(|t| now.duration_since(t) > FRAME_DEADLINE) {
                c.stranger(&format!("did not finish a frame within {} s", FRAME_DEADLINE.as_secs()));
            }
        }
        while self.conns.iter().filter(|c| !c.dead).map(|c| c.inbuf.len()).sum::<usize>() > MAX_BUFFERED {
            let Some(big) = self.conns.iter_mut().filter(|c| !c.dead).max_by_key(|c| c.inbuf.len()) else { break };
            big.stranger("held the largest unfinished frame while the server's buffers were full");
            big.inbuf = Vec::new();
        }
    }

    fn accept(&mut self) -> bool {
        let mut any = false;
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    any = true;
                    let (theirs, mine) = (peer_uid(&s), euid());
                    if theirs != Some(mine) {
                        debug::log(format_args!("refused a connection from uid {theirs:?}: only uid {mine} may use these locks"));
                        continue;
                    }
                    if s.set_nonblocking(true).is_err() {
                        continue;
                    }
                    if self.conns.len() >= MAX_CONNS {
                        debug::log(format_args!("closed a lock client: {MAX_CONNS} are connected already"));
                        metrics::shared_rejected();
                        continue;
                    }
                    self.conns.push(Conn { stream: s, inbuf: Vec::new(), out: Vec::new(), greeted: false, dead: false, partial_since: None, reserve_for: 0, pushes: Arc::default(), listening: HashMap::new() });
                    self.clients.store(self.conns.len(), Ordering::Relaxed);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return any,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)) {
                        // the connection stays queued; looking again at once would only spin
                        self.accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    }
                    debug::log(format_args!("accepting a lock client failed: {e}"));
                    return any;
                }
            }
        }
    }
}

/// Appends the answer to request `id` (none for id 0).
fn answer<T: Serialize>(out: &mut Vec<u8>, id: u64, r: Result<T>) {
    if id == 0 {
        return;
    }
    let start = out.len();
    encode_answer(out, id, r);
    if out.len() - start - 4 > max_frame() {
        out.truncate(start);
        let e = Error::invalid(format!("the answer is larger than the shared lock store sends in one frame ({} bytes, FILE_LOCK_MAX_FRAME); ask for less at a time", max_frame()));
        encode_answer::<()>(out, id, Err(e));
    }
}

fn encode_answer<T: Serialize>(out: &mut Vec<u8>, id: u64, r: Result<T>) {
    match r {
        Ok(v) => {
            // {"id":N,"ok":<value>}
            #[derive(Serialize)]
            struct Ok<'a, T> {
                id: u64,
                ok: &'a T,
            }
            frame(out, &Ok { id, ok: &v });
        }
        Err(e) => {
            #[derive(Serialize)]
            struct Err<'a> {
                id: u64,
                err: &'a WireError,
            }
            frame(out, &Err { id, err: &WireError::from(&e) });
        }
    }
}

/// Runs one of the sled store's calls, which never suspend.
fn sync<T>(fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    now_or_never(fut).expect("sled operations never suspend")
}

/// Runs one request on the store and appends its answer to `out`.
pub fn execute(store: &SledStore, id: u64, req: Request, out: &mut Vec<u8>) {
    match req {
        Request::Get { ns, key } => answer(out, id, sync(store.get(&ns, &key)).map(|e| e.map(WireEntry::from))),
        Request::Set { ns, key, value, ttl } => answer(out, id, crate::core::envelope::validate_json(&value).and_then(|_| sync(store.set(&ns, &key, &value, ttl)))),
        Request::Del { ns, key } => answer(out, id, sync(store.del(&ns, &key))),
        Request::Batch { ns, ops } => answer(out, id, sync(store.batch(&ns, &ops))),
        Request::Scan { ns, cursor, count } => answer(out, id, sync(store.scan(&ns, cursor.as_deref(), count)).map(WirePage::from)),
        Request::SweepExpired { ns } => answer(out, id, sync(store.sweep_expired(&ns))),
        Request::Clear { ns } => answer(out, id, sync(store.clear(&ns))),
        Request::Acquire { ns, paths, req, waiter, resume } => {
            let waiter = waiter.map(|w| w.waiter());
            let attempt = match &resume {
                Some(prior) => store.acquire_resumed(&ns, &paths, &req, waiter.as_ref(), prior),
                None => match &waiter {
                    Some(w) => sync(store.try_acquire_queued(&ns, &paths, &req, w)),
                    None => sync(store.acquire(&ns, &paths, &req)).map(crate::core::wait::Attempt::Granted),
                },
            };
            if waiter.is_some() {
                answer(out, id, attempt.map(WireAttempt::from));
            } else {
                answer(
                    out,
                    id,
                    attempt.and_then(|a| match a {
                        crate::core::wait::Attempt::Granted(recs) => Ok(recs),
                        crate::core::wait::Attempt::Blocked { error, .. } => Err(error),
                    }),
                );
            }
        }
        Request::Release { ns, path, session, resume } => answer(
            out,
            id,
            match resume {
                Some(prior) => store.release_resumed(&ns, &path, &session, prior),
                None => sync(store.release(&ns, &path, &session)),
            },
        ),
        Request::ReleaseAll { ns, filter } => answer(out, id, sync(store.release_all(&ns, &filter))),
        Request::Renew { ns, path, session, ttl_ms } => answer(out, id, sync(store.renew(&ns, &path, &session, ttl_ms))),
        Request::ListLocks { ns, filter } => answer(out, id, sync(store.list_locks(&ns, &filter))),
        Request::ListWaiters { ns } => answer(out, id, sync(store.list_waiters(&ns))),
        Request::ForceRelease { ns, path } => answer(out, id, sync(store.force_release(&ns, &path))),
        Request::LeaveQueue { ns, paths, waiter } => answer(out, id, sync(store.leave_queue(&ns, &paths, &waiter.waiter()))),
        Request::Requeue { ns, paths, req, waiter, waits_for } => answer(out, id, store.requeue(&ns, &paths, &req, &waiter.waiter(), &waits_for)),
        Request::Reassert { ns, records } => answer(out, id, store.reassert(&ns, &records)),
        Request::Health => answer(out, id, sync(store.health())),
        // handled by the connection (they change what it listens to)
        Request::Listen { .. } | Request::Unlisten { .. } => answer(out, id, Ok(())),
    }
}

impl Conn {
    /// Reads, answers and pushes what it can without blocking: whether anything moved, and how
    /// many requests it answered.
    fn turn(&mut self, store: &Arc<SledStore>, waker: &Arc<UnixStream>) -> (bool, usize) {
        let mut worked = false;
        let mut answered = 0;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match (&self.stream).read(&mut chunk) {
                Ok(0) => {
                    self.dead = true;
                    break;
                }
                Ok(n) => {
                    worked = true;
                    self.inbuf.extend_from_slice(&chunk[..n]);
                    if n < chunk.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.dead = true;
                    break;
                }
            }
        }
        let inbuf = std::mem::take(&mut self.inbuf);
        let mut at = 0;
        while !self.dead {
            let limit = if self.greeted { max_frame() } else { MAX_HELLO };
            match next_frame(&inbuf[at..], limit) {
                Framed::Whole(payload, used) => {
                    at += used;
                    if self.greeted {
                        self.request(payload, store, waker);
                        answered += 1;
                    } else {
                        self.hello(payload);
                    }
                }
                Framed::Partial => {
                    // room for the rest of this frame only: a growing Vec would double past it
                    if let Some(len) = inbuf.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize) {
                        let want = at + 4 + len;
                        if inbuf.capacity() < want && len <= max_frame() {
                            self.reserve_for = want;
                        }
                    }
                    break;
                }
                Framed::TooLarge(n) => self.stranger(&format!("announced a frame of {n} bytes")),
            }
        }
        self.inbuf = inbuf;
        self.inbuf.drain(..at);
        if self.reserve_for > at {
            let want = self.reserve_for - at;
            self.inbuf.reserve_exact(want.saturating_sub(self.inbuf.len()));
        }
        self.reserve_for = 0;
        if self.inbuf.is_empty() {
            self.partial_since = None;
            if self.inbuf.capacity() > 64 * 1024 {
                self.inbuf = Vec::new(); // a large frame's buffer is not kept once it is done
            }
        } else if at > 0 || self.partial_since.is_none() {
            self.partial_since = Some(Instant::now());
        }
        let pushed = std::mem::take(&mut *self.pushes.lock().unwrap_or_else(|p| p.into_inner()));
        for key in pushed {
            worked = true;
            frame(&mut self.out, &Released { released: &key });
        }
        while !self.out.is_empty() && !self.dead {
            match (&self.stream).write(&self.out) {
                Ok(n) => {
                    worked = true;
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => self.dead = true,
            }
        }
        if self.out.len() > max_unsent() {
            self.stranger("does not read its answers");
        }
        (worked, answered)
    }

    fn stranger(&mut self, what: &str) {
        debug::log(format_args!("dropped a lock client that {what}"));
        metrics::shared_rejected();
        self.dead = true;
    }

    fn hello(&mut self, payload: &[u8]) {
        let Some(h) = serde_json::from_slice::<Hello>(payload).ok().filter(|h| h.hello == HELLO) else {
            return self.stranger("did not begin with an opencode-file-lock hello");
        };
        let mut ours = Hello::ours();
        if h.protocol != PROTOCOL {
            // the client words the refusal: it knows both versions from the two hellos
            ours.refused = Some(format!("this server speaks protocol {PROTOCOL}, the client {}", h.protocol));
            debug::log(format_args!("refused a client of opencode-file-lock {} (protocol {}, pid {})", h.version, h.protocol, h.pid));
            frame(&mut self.out, &ours);
            let _ = (&self.stream).write(&self.out);
            self.dead = true;
            return;
        }
        frame(&mut self.out, &ours);
        self.greeted = true;
    }

    fn request(&mut self, payload: &[u8], store: &Arc<SledStore>, waker: &Arc<UnixStream>) {
        let Ok(env) = serde_json::from_slice::<Envelope>(payload) else {
            return self.stranger("sent a frame that is not a request");
        };
        match env.req {
            Request::Listen { keys } => {
                for k in keys {
                    if self.listening.contains_key(&k) {
                        continue;
                    }
                    let (pushes, waker) = (Arc::downgrade(&self.pushes), Arc::downgrade(waker));
                    let sink = Sink::Key(Arc::new(move |key: &str| {
                        if let (Some(p), Some(w)) = (pushes.upgrade(), waker.upgrade()) {
                            p.lock().unwrap_or_else(|p| p.into_inner()).push(key.to_owned());
                            let _ = (&*w).write(&[1]);
                        }
                    }));
                    if let Some(bus) = store.bus() {
                        self.listening.insert(k.clone(), bus.listen_sink(vec![k], sink));
                    }
                }
            }
            Request::Unlisten { keys } => {
                for k in keys {
                    self.listening.remove(&k);
                }
            }
            req => execute(store, env.id, req, &mut self.out),
        }
    }
}
