//! The sled folder shared by every process of the user on the machine, with no server to install.
//!
//! sled lets one process open a folder. The first process to open it (the one that takes the
//! folder's serve lock, an `flock` on `ofl.lock`) opens sled and serves it on a Unix socket
//! (`socket.rs`); every other process is a client that sends each store operation over the
//! socket (`client.rs`, `server.rs`, `protocol.rs`). The serving process itself calls sled
//! directly, at in-process speed.
//!
//! When the serving process exits or dies, the kernel drops its serve lock and its end of every
//! connection. Each client notices at once (its reader thread sees the socket close), and they race
//! for the serve lock: one wins, opens sled (replaying the journal, so nothing the dead server
//! acknowledged is lost) and serves; the others connect to it. Before anything else, each client
//! re-asserts the locks it holds (same record and token; one another session holds by then is
//! reported through `onLost` as a `conflict`, never granted twice), puts its waiters back in the
//! queues with the tickets they had (tickets follow the clock, so waiters keep their order among
//! themselves and stay ahead of newcomers), and subscribes again to the keys it listens on. Calls
//! made meanwhile wait for the new server (up to the timeout); a call whose answer was lost with
//! the old server is asked again, marked so that the new server does not apply it twice.

#[cfg(unix)]
mod client;
pub mod protocol;
#[cfg(unix)]
mod server;
#[cfg(unix)]
mod socket;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::core::envelope::{storage_key, Entry};
use crate::core::error::{Error, Result};
use crate::core::lock::{LockFilter, LockRecord, LockRequest};
use crate::core::lost::LostListener;
use crate::core::store::{BatchOp, Page, Store};
use crate::core::wait::{Attempt, Waiter, Waiting};
use crate::core::wake::{Listening, WakeBus, CHANGES};
use crate::core::{debug, metrics};
use crate::stores::sled_store::{Reasserted, SledStore};

#[cfg(unix)]
use client::{CallError, Compensate, Conn, ConnectError};
#[cfg(unix)]
pub use client::{flush_deferred, with_spin};

/// Without sockets there is nothing to spin on.
#[cfg(not(unix))]
pub fn with_spin<T>(_spin: bool, f: impl FnOnce() -> T) -> T {
    f()
}

#[cfg(not(unix))]
pub fn flush_deferred() {}
use protocol::{Request, WireAttempt, WireEntry, WirePage, WireWaiter};

/// How long a call waits for an answer, or for a new server after the old one went away.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long opening waits for a process that holds the folder to start answering.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// One `Shared` per folder per process, counted so the last `close()` lets it go.
static OPEN: LazyLock<Mutex<HashMap<PathBuf, (Arc<Shared>, usize)>>> = LazyLock::new(Default::default);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct SharedStore {
    shared: Arc<Shared>,
    closed: AtomicBool,
}

struct Shared {
    folder: PathBuf,
    #[cfg(unix)]
    socket: PathBuf,
    /// Local waiters and watches listen here; it is the sled folder's own bus while serving, and
    /// the server's pushes ring it while a client.
    bus: Arc<WakeBus>,
    role: RwLock<Role>,
    /// Rung when the role changes (a takeover finished).
    changed: Notify,
    /// Client only: the locks this process holds, by (namespace, path), as the server last said.
    held: Mutex<Held>,
    /// Client only: waiters queued on the server, by waiter id.
    waiting: Mutex<HashMap<String, Queued>>,
    /// Client only: releases whose answer never came (namespace, path, session): sent again to
    /// the next server, never re-asserted as held.
    unreleased: Mutex<Vec<(String, String, String)>>,
    /// Keys local listeners want pushed, with how many listen to each.
    subs: Mutex<HashMap<String, usize>>,
    lost: RwLock<Option<LostListener>>,
    closing: AtomicBool,
}

/// The locks a client holds: namespace -> path -> record (looked up by &str, no key built).
#[derive(Default)]
struct Held(HashMap<String, HashMap<String, LockRecord>>);

impl Held {
    fn get(&self, ns: &str, path: &str) -> Option<&LockRecord> {
        self.0.get(ns)?.get(path)
    }

    fn insert(&mut self, ns: &str, rec: LockRecord) {
        match self.0.get_mut(ns) {
            Some(m) => {
                m.insert(rec.path.clone(), rec);
            }
            None => {
                self.0.insert(ns.to_owned(), HashMap::from([(rec.path.clone(), rec)]));
            }
        }
    }

    fn remove(&mut self, ns: &str, path: &str) -> Option<LockRecord> {
        self.0.get_mut(ns)?.remove(path)
    }

    fn retain(&mut self, ns: &str, keep: impl FnMut(&String, &mut LockRecord) -> bool) {
        if let Some(m) = self.0.get_mut(ns) {
            m.retain(keep);
        }
    }
}

#[derive(Clone)]
struct Queued {
    ns: String,
    paths: Vec<String>,
    req: LockRequest,
    ticket: u64,
    waits_for: String,
}

enum Role {
    Serving(Arc<Serving>),
    #[cfg(unix)]
    Client(Arc<Conn>),
    /// Between servers (or closed): why, for the error a call gets if it waits too long.
    Moving(String),
}

struct Serving {
    store: Arc<SledStore>,
    #[cfg(unix)]
    server: Mutex<Option<server::Server>>,
    /// Dropped last: the folder is free for the next server only once sled has let it go.
    #[cfg(unix)]
    _serve_lock: socket::ServeLock,
}

impl Drop for Serving {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(s) = lock(&self.server).take() {
            s.stop();
        }
        let _ = crate::core::store::now_or_never(self.store.close());
    }
}

/// Where a call goes now.
enum Now {
    Serving(Arc<SledStore>),
    #[cfg(unix)]
    Client(Arc<Conn>),
    Moving(String),
}

/// Makes the folder (and those above it that are missing) readable by this user only.
fn create_private_dirs(folder: &str) -> Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(folder).map_err(|e| Error::backend(format!("cannot create the sled folder {folder}: {e}")))
}

impl SharedStore {
    /// Opens `folder`: serves it if no process does, else becomes a client of the one that does.
    pub fn open(folder: &str) -> Result<SharedStore> {
        Self::open_in(folder, true)
    }

    /// Opens `folder` as another process would, without sharing this process's connection or
    /// server for it: lets one test play several processes.
    #[doc(hidden)]
    pub fn open_separate(folder: &str) -> Result<SharedStore> {
        Self::open_in(folder, false)
    }

    fn open_in(folder: &str, registered: bool) -> Result<SharedStore> {
        if folder.is_empty() || folder.contains('\0') {
            return Err(Error::invalid("path (the sled folder) must be a non-empty string without NUL bytes"));
        }
        let created = !std::path::Path::new(folder).exists();
        create_private_dirs(folder)?;
        let path = std::fs::canonicalize(folder).map_err(|e| Error::backend(format!("cannot open the sled folder {folder}: {e}")))?;
        #[cfg(unix)]
        socket::secure_folder(std::path::Path::new(folder), &path, created)?;
        let mut open = lock(&OPEN);
        if let Some((s, users)) = open.get_mut(&path).filter(|_| registered) {
            *users += 1;
            return Ok(SharedStore { shared: s.clone(), closed: AtomicBool::new(false) });
        }
        let shared = Arc::new(Shared {
            #[cfg(unix)]
            socket: socket::socket_path(&path)?,
            folder: path.clone(),
            bus: WakeBus::new(),
            role: RwLock::new(Role::Moving("opening".into())),
            changed: Notify::new(),
            held: Mutex::default(),
            waiting: Mutex::default(),
            unreleased: Mutex::default(),
            subs: Mutex::default(),
            lost: RwLock::new(None),
            closing: AtomicBool::new(false),
        });
        let role = shared.establish(Instant::now() + OPEN_TIMEOUT)?;
        *shared.role.write().unwrap_or_else(|p| p.into_inner()) = role;
        if registered {
            open.insert(path, (shared.clone(), 1));
        }
        Ok(SharedStore { shared, closed: AtomicBool::new(false) })
    }

    /// The socket the folder is served on.
    #[cfg(unix)]
    pub fn socket_path(&self) -> &std::path::Path {
        &self.shared.socket
    }

    /// "server" or "client": this process's part in sharing the folder right now.
    pub fn role(&self) -> &'static str {
        match self.shared.now() {
            Now::Serving(_) => "server",
            #[cfg(unix)]
            Now::Client(_) => "client",
            Now::Moving(_) => "moving",
        }
    }

    /// The sled store when this process serves the folder: calls then go straight to it.
    fn serving(&self) -> Result<Option<Arc<SledStore>>> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(self.closed_error());
        }
        Ok(match &*self.shared.role.read().unwrap_or_else(|p| p.into_inner()) {
            Role::Serving(s) => Some(s.store.clone()),
            _ => None,
        })
    }

    fn closed_error(&self) -> Error {
        Error::Closed(format!("the sled cache at {} is closed", self.shared.folder.display()))
    }

    /// A call through the server; asked again (marked as a retry) if the server went away first.
    async fn exec<T: DeserializeOwned>(&self, mut req: Request, resume: Option<Resume>) -> Result<T> {
        let deadline = Instant::now() + CALL_TIMEOUT;
        let mut retried = false;
        loop {
            if self.closed.load(Ordering::Relaxed) {
                return Err(self.closed_error());
            }
            match self.shared.now() {
                Now::Serving(store) => return local(&store, req),
                #[cfg(unix)]
                Now::Client(conn) => match conn.call(&req, deadline, compensation(&req)).await {
                    Ok(raw) => return client::parse(&raw),
                    Err(CallError::Failed(e)) => return Err(e),
                    Err(CallError::Lost) => {
                        if !retried {
                            retried = true;
                            if let Some(r) = &resume {
                                r.apply(&mut req);
                            }
                        }
                    }
                },
                Now::Moving(_) => {}
            }
            self.shared.wait_for_server(deadline).await?;
        }
    }
}

/// What a retried request needs so the new server does not apply it twice.
enum Resume {
    /// The holds the session had of each path before the acquire.
    Acquire(Vec<u32>),
    /// The holds the session had of the path before the release.
    Release(u32),
}

impl Resume {
    fn apply(&self, req: &mut Request) {
        match (self, req) {
            (Resume::Acquire(prior), Request::Acquire { resume, .. }) => *resume = Some(prior.clone()),
            (Resume::Release(prior), Request::Release { resume, .. }) => *resume = Some(*prior),
            _ => {}
        }
    }
}

/// Runs a request on this process's own sled store (it became the server while the call waited).
#[cfg(unix)]
fn local<T: DeserializeOwned>(store: &SledStore, req: Request) -> Result<T> {
    let mut out = Vec::new();
    server::execute(store, 1, req, &mut out);
    let msg: protocol::Incoming = serde_json::from_slice(&out[4..]).map_err(|e| Error::backend(format!("local answer: {e}")))?;
    match (msg.ok, msg.err) {
        (Some(ok), _) => client::parse(&ok),
        (None, Some(e)) => Err(e.into()),
        (None, None) => client::parse(&serde_json::value::RawValue::from_string("null".into()).expect("null is JSON")),
    }
}

#[cfg(not(unix))]
fn local<T: DeserializeOwned>(_store: &SledStore, _req: Request) -> Result<T> {
    Err(Error::backend("not reached: without a socket every call goes to sled directly"))
}

/// For an acquire the caller gives up on: who releases a grant that arrives too late.
#[cfg(unix)]
fn compensation(req: &Request) -> Option<Compensate> {
    match req {
        Request::Acquire { ns, req, .. } => Some(Compensate { ns: ns.clone(), session: req.session_id.clone() }),
        _ => None,
    }
}

impl Shared {
    fn now(&self) -> Now {
        match &*self.role.read().unwrap_or_else(|p| p.into_inner()) {
            Role::Serving(s) => Now::Serving(s.store.clone()),
            #[cfg(unix)]
            Role::Client(c) if !c.is_dead() => Now::Client(c.clone()),
            #[cfg(unix)]
            Role::Client(c) => Now::Moving(format!("the process serving {} (pid {}) went away", self.folder.display(), c.server.pid)),
            Role::Moving(why) => Now::Moving(why.clone()),
        }
    }

    /// Waits until a server is there (this process or another), at most until `deadline`.
    async fn wait_for_server(&self, deadline: Instant) -> Result<()> {
        let changed = self.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let why = match self.now() {
            Now::Moving(why) => why,
            _ => return Ok(()),
        };
        if self.closing.load(Ordering::Acquire) {
            return Err(Error::Closed(format!("the sled cache at {} is closed", self.folder.display())));
        }
        match tokio::time::timeout_at(deadline.into(), changed).await {
            Ok(()) => Ok(()),
            Err(_) => Err(Error::backend(format!(
                "no process serves the lock folder {} ({why}); none took it over within {} ms",
                self.folder.display(),
                CALL_TIMEOUT.as_millis()
            ))),
        }
    }

    /// Serves the folder, or connects to the process that does; retried until `deadline`.
    #[cfg(unix)]
    fn establish(self: &Arc<Self>, deadline: Instant) -> Result<Role> {
        // a lock file that is not ours is not a passing state: said at once, not after the timeout
        socket::check_own_file(&self.folder.join("ofl.lock"), false)?;
        let mut last = None;
        let mut pause = Duration::from_millis(1);
        loop {
            match self.try_serve() {
                Ok(Some(s)) => return Ok(Role::Serving(s)),
                Ok(None) => {}
                Err(e) => last = Some(e),
            }
            match self.try_connect() {
                Ok(c) => return Ok(Role::Client(c)),
                Err(ConnectError::Refused(e)) => return Err(e),
                Err(ConnectError::Absent) => {}
            }
            if Instant::now() >= deadline {
                return Err(last.unwrap_or_else(|| {
                    Error::backend(format!(
                        "the lock folder {} is held by another process ({}) that does not answer on {}; if it is stuck, stop it",
                        self.folder.display(),
                        socket::holder(&self.folder),
                        self.socket.display()
                    ))
                }));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    #[cfg(not(unix))]
    fn establish(self: &Arc<Self>, _deadline: Instant) -> Result<Role> {
        let store = SledStore::open_with_bus(&self.folder.to_string_lossy(), Some(self.bus.clone())).map_err(|e| {
            Error::backend(format!(
                "{e}. On this platform a sled folder is not shared between processes (that needs Unix sockets): \
                 use FILE_LOCK_CACHE_BACKEND=redis, or one FILE_LOCK_PATH per process"
            ))
        })?;
        Ok(Role::Serving(Arc::new(Serving { store: Arc::new(store) })))
    }

    /// Takes the serve lock and serves, or None when another process holds it.
    #[cfg(unix)]
    fn try_serve(&self) -> Result<Option<Arc<Serving>>> {
        let Some(serve_lock) = socket::try_serve_lock(&self.folder)? else { return Ok(None) };
        let store = Arc::new(SledStore::open_with_bus(&self.folder.to_string_lossy(), Some(self.bus.clone()))?);
        let server = match server::Server::start(store.clone(), &self.socket) {
            Ok(s) => s,
            Err(e) => {
                let _ = crate::core::store::now_or_never(store.close());
                return Err(e);
            }
        };
        Ok(Some(Arc::new(Serving { store, server: Mutex::new(Some(server)), _serve_lock: serve_lock })))
    }

    #[cfg(unix)]
    fn try_connect(self: &Arc<Self>) -> std::result::Result<Arc<Conn>, ConnectError> {
        let bus = self.bus.clone();
        let weak = Arc::downgrade(self);
        client::connect(
            &self.socket,
            CALL_TIMEOUT,
            Box::new(move |key| bus.notify(key)),
            Box::new(move |dead| {
                if let Some(s) = weak.upgrade() {
                    s.take_over(dead);
                }
            }),
        )
    }

    /// Run by the reader thread of a connection whose server went away: serve the folder, or
    /// connect to whoever does, then put back what this process holds.
    #[cfg(unix)]
    fn take_over(self: &Arc<Self>, dead: Arc<Conn>) {
        {
            let mut role = self.role.write().unwrap_or_else(|p| p.into_inner());
            match &*role {
                Role::Client(c) if Arc::ptr_eq(c, &dead) => *role = Role::Moving(format!("the process serving it (pid {}) went away", dead.server.pid)),
                _ => return,
            }
        }
        let gone = dead.server.pid;
        drop(dead);
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        while !self.closing.load(Ordering::Acquire) {
            match self.try_serve() {
                Ok(Some(s)) => {
                    if self.adopt_serving(s) {
                        metrics::shared_takeover("server");
                        debug::log(format_args!("the process serving {} (pid {gone}) went away; this process serves it now ({} ms)", self.folder.display(), started.elapsed().as_millis()));
                    }
                    return;
                }
                Ok(None) => {}
                Err(e) => self.set_moving(e.to_string()),
            }
            match self.try_connect() {
                Ok(c) => {
                    let pid = c.server.pid;
                    if self.adopt_client(c) {
                        metrics::shared_takeover("client");
                        debug::log(format_args!("the process serving {} (pid {gone}) went away; pid {pid} serves it now ({} ms)", self.folder.display(), started.elapsed().as_millis()));
                        return;
                    }
                }
                Err(ConnectError::Refused(e)) => self.set_moving(e.to_string()),
                Err(ConnectError::Absent) => {}
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    fn set_moving(&self, why: String) {
        let mut role = self.role.write().unwrap_or_else(|p| p.into_inner());
        if let Role::Moving(w) = &mut *role {
            *w = why;
        }
    }

    /// This process serves now: the locks it held and its waiters go straight into its store.
    #[cfg(unix)]
    fn adopt_serving(&self, s: Arc<Serving>) -> bool {
        for (ns, path, session) in lock(&self.unreleased).drain(..) {
            let _ = crate::core::store::now_or_never(s.store.release(&ns, &path, &session));
        }
        for (ns, recs) in self.held_by_namespace() {
            match s.store.reassert(&ns, &recs) {
                Ok(outcomes) => self.settle(&ns, &recs, outcomes),
                Err(e) => eprintln!("[opencode-file-lock] could not re-assert the locks held in {}: {e}", self.folder.display()),
            }
        }
        for (id, q) in lock(&self.waiting).iter() {
            let _ = s.store.requeue(&q.ns, &q.paths, &q.req, &Waiter { id: id.clone(), ticket: q.ticket, ticket_from: "sled" }, &q.waits_for);
        }
        lock(&self.held).0.clear();
        lock(&self.waiting).clear();
        {
            let mut role = self.role.write().unwrap_or_else(|p| p.into_inner());
            if self.closing.load(Ordering::Acquire) {
                return false; // closed meanwhile: `s` drops here and lets the folder go
            }
            *role = Role::Serving(s);
        }
        self.changed.notify_waiters();
        self.bus.notify_all();
        true
    }

    /// A new server: re-assert this process's locks and waiters there, then use it.
    #[cfg(unix)]
    fn adopt_client(&self, conn: Arc<Conn>) -> bool {
        let deadline = Instant::now() + CALL_TIMEOUT;
        let unreleased: Vec<_> = lock(&self.unreleased).drain(..).collect();
        for (ns, path, session) in unreleased {
            let req = Request::Release { ns: ns.clone(), path: path.clone(), session: session.clone(), resume: None };
            if let Err(CallError::Lost) = conn.call_blocking(&req, deadline) {
                lock(&self.unreleased).push((ns, path, session)); // for the next server
                return false;
            }
        }
        for (ns, recs) in self.held_by_namespace() {
            let req = Request::Reassert { ns: ns.clone(), records: recs.clone() };
            match conn.call_blocking(&req, deadline) {
                Ok(raw) => match client::parse::<Vec<Reasserted>>(&raw) {
                    Ok(outcomes) => self.settle(&ns, &recs, outcomes),
                    Err(e) => eprintln!("[opencode-file-lock] {e}"),
                },
                Err(CallError::Lost) => return false,
                Err(CallError::Failed(e)) => eprintln!("[opencode-file-lock] could not re-assert the locks held in {}: {e}", self.folder.display()),
            }
        }
        let waiting: Vec<(String, Queued)> = lock(&self.waiting).iter().map(|(id, q)| (id.clone(), q.clone())).collect();
        for (id, q) in waiting {
            let req = Request::Requeue { ns: q.ns, paths: q.paths, req: q.req, waiter: WireWaiter { id, ticket: q.ticket }, waits_for: q.waits_for };
            if let Err(CallError::Lost) = conn.call_blocking(&req, deadline) {
                return false;
            }
        }
        {
            let mut role = self.role.write().unwrap_or_else(|p| p.into_inner());
            if self.closing.load(Ordering::Acquire) {
                conn.shutdown();
                return false;
            }
            *role = Role::Client(conn.clone());
        }
        let keys: Vec<String> = lock(&self.subs).keys().cloned().collect();
        conn.set_listening(keys.len());
        if !keys.is_empty() {
            conn.notify(&Request::Listen { keys });
        }
        self.changed.notify_waiters();
        self.bus.notify_all();
        true
    }

    fn held_by_namespace(&self) -> Vec<(String, Vec<LockRecord>)> {
        let mut by: HashMap<String, Vec<LockRecord>> = HashMap::new();
        for (ns, recs) in lock(&self.held).0.iter() {
            by.entry(ns.clone()).or_default().extend(recs.values().cloned());
        }
        by.into_iter().collect()
    }

    /// Acts on what re-asserting found: a lock another session holds now, or one that expired,
    /// is no longer this process's, and its holder is told.
    fn settle(&self, ns: &str, recs: &[LockRecord], outcomes: Vec<Reasserted>) {
        let after = format!("a takeover of {}", self.folder.display());
        let listener = self.lost.read().unwrap_or_else(|p| p.into_inner()).clone();
        for (rec, outcome) in recs.iter().zip(outcomes) {
            if crate::core::held::settle(&after, ns, rec, outcome, listener.as_ref()) {
                lock(&self.held).remove(ns, &rec.path);
            }
        }
    }

    // ---- client bookkeeping ----

    fn prior_holds(&self, ns: &str, paths: &[String], session_id: &str) -> Vec<u32> {
        let held = lock(&self.held);
        paths.iter().map(|p| held.get(ns, p).filter(|r| r.session_id == session_id).map_or(0, |r| r.hold_count)).collect()
    }

    fn granted(&self, ns: &str, recs: &[LockRecord]) {
        let mut held = lock(&self.held);
        for r in recs {
            held.insert(ns, r.clone());
        }
    }

    fn released(&self, ns: &str, path: &str, session_id: &str) {
        let mut held = lock(&self.held);
        let Some(m) = held.0.get_mut(ns) else { return };
        if let Some(r) = m.get_mut(path).filter(|r| r.session_id == session_id) {
            r.hold_count = r.hold_count.saturating_sub(1);
            if r.hold_count == 0 {
                m.remove(path);
            }
        }
    }

    // ---- subscriptions ----

    fn subscribe(&self, keys: &[String]) {
        let mut subs = lock(&self.subs);
        let fresh: Vec<String> = keys
            .iter()
            .filter(|k| {
                let n = subs.entry((*k).clone()).or_default();
                *n += 1;
                *n == 1
            })
            .cloned()
            .collect();
        #[cfg(unix)]
        if let Now::Client(conn) = self.now() {
            conn.set_listening(subs.len());
            if !fresh.is_empty() {
                conn.notify(&Request::Listen { keys: fresh });
            }
        }
        #[cfg(not(unix))]
        let _ = fresh;
    }

    fn unsubscribe(&self, keys: &[String]) {
        let mut subs = lock(&self.subs);
        let mut gone = Vec::new();
        for k in keys {
            if let Some(n) = subs.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    subs.remove(k);
                    gone.push(k.clone());
                }
            }
        }
        #[cfg(unix)]
        if let Now::Client(conn) = self.now() {
            conn.set_listening(subs.len());
            if !gone.is_empty() {
                conn.notify(&Request::Unlisten { keys: gone });
            }
        }
    }

    /// Lets go of the folder: stops serving (the clients take over) or disconnects.
    fn shut_down(&self) {
        self.closing.store(true, Ordering::Release);
        let old = std::mem::replace(&mut *self.role.write().unwrap_or_else(|p| p.into_inner()), Role::Moving("closed".into()));
        match old {
            Role::Serving(s) => drop(s),
            #[cfg(unix)]
            Role::Client(c) => c.shutdown(),
            Role::Moving(_) => {}
        }
        self.changed.notify_waiters();
    }
}

impl Store for SharedStore {
    fn backend(&self) -> &'static str {
        "sled"
    }

    async fn get(&self, ns: &str, key: &str) -> Result<Option<Entry>> {
        if let Some(s) = self.serving()? {
            return s.get(ns, key).await;
        }
        Ok(self.exec::<Option<WireEntry>>(Request::Get { ns: ns.into(), key: key.into() }, None).await?.map(Into::into))
    }

    async fn set(&self, ns: &str, key: &str, value_json: &str, ttl_ms: Option<u64>) -> Result<()> {
        if let Some(s) = self.serving()? {
            return s.set(ns, key, value_json, ttl_ms).await;
        }
        self.exec(Request::Set { ns: ns.into(), key: key.into(), value: value_json.into(), ttl: ttl_ms }, None).await
    }

    async fn del(&self, ns: &str, key: &str) -> Result<bool> {
        if let Some(s) = self.serving()? {
            return s.del(ns, key).await;
        }
        self.exec(Request::Del { ns: ns.into(), key: key.into() }, None).await
    }

    async fn batch(&self, ns: &str, ops: &[BatchOp]) -> Result<()> {
        if let Some(s) = self.serving()? {
            return s.batch(ns, ops).await;
        }
        self.exec(Request::Batch { ns: ns.into(), ops: ops.to_vec() }, None).await
    }

    async fn scan(&self, ns: &str, cursor: Option<&str>, count: usize) -> Result<Page> {
        if let Some(s) = self.serving()? {
            return s.scan(ns, cursor, count).await;
        }
        Ok(self.exec::<WirePage>(Request::Scan { ns: ns.into(), cursor: cursor.map(Into::into), count }, None).await?.into())
    }

    async fn sweep_expired(&self, ns: &str) -> Result<u64> {
        if let Some(s) = self.serving()? {
            return s.sweep_expired(ns).await;
        }
        self.exec(Request::SweepExpired { ns: ns.into() }, None).await
    }

    async fn clear(&self, ns: &str) -> Result<u64> {
        if let Some(s) = self.serving()? {
            return s.clear(ns).await;
        }
        self.exec(Request::Clear { ns: ns.into() }, None).await
    }

    async fn acquire(&self, ns: &str, paths: &[String], req: &LockRequest) -> Result<Vec<LockRecord>> {
        if let Some(s) = self.serving()? {
            return s.acquire(ns, paths, req).await;
        }
        let prior = self.shared.prior_holds(ns, paths, &req.session_id);
        let r = Request::Acquire { ns: ns.into(), paths: paths.to_vec(), req: req.clone(), waiter: None, resume: None };
        let recs: Vec<LockRecord> = self.exec(r, Some(Resume::Acquire(prior))).await?;
        self.shared.granted(ns, &recs);
        Ok(recs)
    }

    async fn release(&self, ns: &str, path: &str, session_id: &str) -> Result<bool> {
        if let Some(s) = self.serving()? {
            return s.release(ns, path, session_id).await;
        }
        let prior = self.shared.prior_holds(ns, std::slice::from_ref(&path.to_owned()), session_id)[0];
        // let go of by this process from here on, whatever the answer: a takeover must not put back
        // a lock its holder was letting go of (nor report it lost)
        self.shared.released(ns, path, session_id);
        let r = Request::Release { ns: ns.into(), path: path.into(), session: session_id.into(), resume: None };
        match self.exec::<bool>(r, (prior > 0).then_some(Resume::Release(prior))).await {
            Ok(released) => Ok(released),
            Err(e) => {
                if prior > 0 {
                    lock(&self.shared.unreleased).push((ns.into(), path.into(), session_id.into()));
                }
                Err(e)
            }
        }
    }

    async fn release_all(&self, ns: &str, filter: &LockFilter) -> Result<u64> {
        if let Some(s) = self.serving()? {
            return s.release_all(ns, filter).await;
        }
        // as for one release: let go of here first
        lock(&self.shared.held).retain(ns, |_, r| !filter.matches(r));
        self.exec(Request::ReleaseAll { ns: ns.into(), filter: filter.clone() }, None).await
    }

    async fn renew(&self, ns: &str, path: &str, session_id: &str, ttl_ms: u64) -> Result<Option<LockRecord>> {
        if let Some(s) = self.serving()? {
            return s.renew(ns, path, session_id, ttl_ms).await;
        }
        let r: Option<LockRecord> = self.exec(Request::Renew { ns: ns.into(), path: path.into(), session: session_id.into(), ttl_ms }, None).await?;
        let mut held = lock(&self.shared.held);
        match &r {
            Some(rec) => held.insert(ns, rec.clone()),
            None => {
                if held.get(ns, path).is_some_and(|h| h.session_id == session_id) {
                    held.remove(ns, path);
                }
            }
        }
        Ok(r)
    }

    async fn list_locks(&self, ns: &str, filter: &LockFilter) -> Result<Vec<LockRecord>> {
        if let Some(s) = self.serving()? {
            return s.list_locks(ns, filter).await;
        }
        self.exec(Request::ListLocks { ns: ns.into(), filter: filter.clone() }, None).await
    }

    async fn list_waiters(&self, ns: &str) -> Result<Waiting> {
        if let Some(s) = self.serving()? {
            return s.list_waiters(ns).await;
        }
        self.exec(Request::ListWaiters { ns: ns.into() }, None).await
    }

    fn watch(&self, ns: &str, wake: &Arc<Notify>) -> Vec<Listening> {
        self.listen(ns, &[CHANGES.to_owned()], wake)
    }

    async fn force_release(&self, ns: &str, path: &str) -> Result<Option<LockRecord>> {
        if let Some(s) = self.serving()? {
            return s.force_release(ns, path).await;
        }
        let r: Option<LockRecord> = self.exec(Request::ForceRelease { ns: ns.into(), path: path.into() }, None).await?;
        if let Some(gone) = &r {
            let mut held = lock(&self.shared.held);
            if held.get(ns, path).is_some_and(|h| h.token == gone.token) {
                held.remove(ns, path);
            }
        }
        Ok(r)
    }

    async fn try_acquire_queued(&self, ns: &str, paths: &[String], req: &LockRequest, waiter: &Waiter) -> Result<Attempt> {
        if let Some(s) = self.serving()? {
            return s.try_acquire_queued(ns, paths, req, waiter).await;
        }
        let prior = self.shared.prior_holds(ns, paths, &req.session_id);
        let r = Request::Acquire { ns: ns.into(), paths: paths.to_vec(), req: req.clone(), waiter: Some(waiter.into()), resume: None };
        let attempt: Attempt = match self.exec::<WireAttempt>(r, Some(Resume::Acquire(prior))).await {
            Ok(a) => a.into(),
            Err(e) => {
                // a deadlock broken by letting go of some of this session's locks: final, never put back
                if let Error::Deadlock { holder, .. } = &e {
                    let mut held = lock(&self.shared.held);
                    for p in holder["released"].as_array().into_iter().flatten().filter_map(|p| p.as_str()) {
                        if held.get(ns, p).is_some_and(|r| r.session_id == req.session_id) {
                            held.remove(ns, p);
                        }
                    }
                }
                return Err(e);
            }
        };
        match &attempt {
            Attempt::Granted(recs) => {
                self.shared.granted(ns, recs);
                lock(&self.shared.waiting).remove(&waiter.id);
            }
            Attempt::Blocked { error, ticket, .. } => {
                let waits_for = error.holder().and_then(|h| h["sessionId"].as_str()).unwrap_or("").to_owned();
                let q = Queued { ns: ns.into(), paths: paths.to_vec(), req: req.clone(), ticket: *ticket, waits_for };
                lock(&self.shared.waiting).insert(waiter.id.clone(), q);
            }
        }
        Ok(attempt)
    }

    async fn leave_queue(&self, ns: &str, paths: &[String], waiter: &Waiter) -> Result<()> {
        if let Some(s) = self.serving()? {
            return s.leave_queue(ns, paths, waiter).await;
        }
        lock(&self.shared.waiting).remove(&waiter.id);
        self.exec(Request::LeaveQueue { ns: ns.into(), paths: paths.to_vec(), waiter: waiter.into() }, None).await
    }

    fn listen(&self, ns: &str, paths: &[String], wake: &Arc<Notify>) -> Vec<Listening> {
        let keys: Vec<String> = paths.iter().map(|p| storage_key(ns, p)).collect();
        let listening = self.shared.bus.listen(keys.clone(), wake);
        self.shared.subscribe(&keys);
        let shared = Arc::downgrade(&self.shared);
        vec![listening.on_drop(Box::new(move || {
            if let Some(s) = shared.upgrade() {
                s.unsubscribe(&keys);
            }
        }))]
    }

    fn set_lost_listener(&self, listener: LostListener) {
        *self.shared.lost.write().unwrap_or_else(|p| p.into_inner()) = Some(listener);
    }

    async fn health(&self) -> Result<Value> {
        let mut h = match self.serving()? {
            Some(s) => s.health().await?,
            None => self.exec::<Value>(Request::Health, None).await?,
        };
        let shared = match &*self.shared.role.read().unwrap_or_else(|p| p.into_inner()) {
            #[cfg(unix)]
            Role::Serving(s) => json!({ "role": "server", "pid": std::process::id(), "clients": lock(&s.server).as_ref().map_or(0, |s| s.clients()), "socket": self.shared.socket }),
            #[cfg(not(unix))]
            Role::Serving(_) => json!({ "role": "server", "pid": std::process::id() }),
            #[cfg(unix)]
            Role::Client(c) => json!({ "role": "client", "pid": std::process::id(), "serverPid": c.server.pid, "serverVersion": c.server.version, "socket": self.shared.socket }),
            Role::Moving(why) => json!({ "role": "moving", "why": why }),
        };
        if let Some(o) = h.as_object_mut() {
            o.insert("shared".into(), shared);
        }
        Ok(h)
    }

    async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let last = {
            let mut open = lock(&OPEN);
            let last = match open.get_mut(&self.shared.folder) {
                Some((s, users)) if Arc::ptr_eq(s, &self.shared) => {
                    *users -= 1;
                    *users == 0
                }
                _ => true,
            };
            if last {
                open.remove(&self.shared.folder);
            }
            last
        };
        if last {
            // flush first, so a failure to write is reported to the caller
            let flushed = match self.shared.now() {
                Now::Serving(s) => s.flush(),
                _ => Ok(()),
            };
            self.shared.shut_down();
            flushed?;
        }
        Ok(())
    }
}

impl Drop for SharedStore {
    fn drop(&mut self) {
        // A cache dropped without close() (GC'd in JS) still lets the folder go.
        let _ = crate::core::store::now_or_never(self.close());
    }
}
