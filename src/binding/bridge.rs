//! How every store call reaches JS. `run` polls the call's future once, inside the JS call: a call
//! that finishes without waiting (sled, and usually a client of the shared store) answers at once,
//! with no thread hop. One that must wait (Redis, a busy shared store) is parked here and polled
//! again on the JS thread when it is woken, so its answer costs one wake-up of the JS thread and no
//! hop through another thread: one long-lived thread-safe function per JS environment (not one per
//! call) wakes JS, and JS polls every woken call and settles every finished one in that wake-up
//! (`drain`). The futures run inside the tokio runtime's context, whose worker thread drives the
//! Redis connections and the timers.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Wake as TaskWake, Waker};

use tokio::sync::Notify;

use napi::bindgen_prelude::{Function, Status};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Env;
use napi_derive::napi;

type Wake = ThreadsafeFunction<(), (), (), Status, false, true, 0>;
type Task = Pin<Box<dyn Future<Output = crate::core::Result<String>> + Send>>;

#[derive(Default)]
struct Queue {
    /// Parked calls woken since the last drain.
    woken: Vec<u32>,
    /// A wake-up of JS is on its way and has not drained yet: later ones ride along.
    scheduled: bool,
}

pub(crate) struct Inner {
    queue: Mutex<Queue>,
    /// Calls waiting for something, by id, with their wakers; polled on the JS thread when woken.
    parked: Mutex<HashMap<u32, (Task, Waker)>>,
    wake: Mutex<Wake>,
    /// Waiting acquires that `cancel(id)` can abort.
    cancels: Mutex<HashMap<u32, Arc<Notify>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// JS sets the top bit of a call's id when other calls are in flight: that call must not spin for
/// its answer (see `stores::shared::with_spin`).
pub(crate) fn split_id(id: u32) -> (u32, bool) {
    (id & 0x7fff_ffff, id & 0x8000_0000 == 0)
}

/// Wakes parked call `id`: it is polled at the next drain.
struct CallWaker {
    id: u32,
    bridge: Weak<Inner>,
}

impl TaskWake for CallWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(b) = self.bridge.upgrade() {
            let first = {
                let mut q = lock(&b.queue);
                q.woken.push(self.id);
                !std::mem::replace(&mut q.scheduled, true)
            };
            if first {
                lock(&b.wake).call((), ThreadsafeFunctionCallMode::NonBlocking);
            }
        }
    }
}

/// Polls a call in the runtime's context (a call that waits creates its timers there).
fn poll_in_runtime(task: &mut Task, waker: &Waker) -> Poll<crate::core::Result<String>> {
    napi::bindgen_prelude::within_runtime_if_available(|| task.as_mut().poll(&mut Context::from_waker(waker)))
}

impl Inner {
    /// Polls `fut` once: its answer now (Some), or None and the answer later through the bridge
    /// under `id`. An error now is thrown.
    pub(crate) fn run<F>(self: &Arc<Self>, id: u32, fut: F) -> napi::Result<Option<String>>
    where
        F: Future<Output = crate::core::Result<String>> + Send + 'static,
    {
        let (id, spin) = split_id(id);
        let mut task: Task = Box::pin(fut);
        // most calls finish in their first poll and need no waker: that poll gets one that does
        // nothing, and a call that does not finish is polled again at once with its real one
        let first = crate::stores::shared::with_spin(spin, || crate::stores::redis::first_poll(spin, || poll_in_runtime(&mut task, Waker::noop())));
        if let Poll::Ready(r) = first {
            return r.map(Some).map_err(super::error::to_napi);
        }
        let waker = Waker::from(Arc::new(CallWaker { id, bridge: Arc::downgrade(self) }));
        match poll_in_runtime(&mut task, &waker) {
            Poll::Ready(r) => r.map(Some).map_err(super::error::to_napi),
            Poll::Pending => {
                lock(&self.parked).insert(id, (task, waker));
                Ok(None)
            }
        }
    }

    /// Registers call `id` as abortable; the returned notify fires on `cancel(id)`.
    pub(crate) fn cancellable(&self, id: u32) -> Arc<Notify> {
        let n = Arc::new(Notify::new());
        lock(&self.cancels).insert(id, n.clone());
        n
    }

    pub(crate) fn finish_cancellable(&self, id: u32) {
        lock(&self.cancels).remove(&id);
    }
}

#[napi]
pub struct Bridge {
    pub(crate) inner: Arc<Inner>,
}

#[napi(object)]
pub struct Completions {
    pub ids: Vec<u32>,
    pub oks: Vec<bool>,
    pub values: Vec<String>,
}

#[napi]
impl Bridge {
    /// `wake` is called (with no arguments) when answers are waiting; it should call `drain()`.
    #[napi(constructor)]
    pub fn new(wake: Function<(), ()>) -> napi::Result<Self> {
        // Weak: an idle bridge must not keep the process alive; `hold` refs it while calls are out.
        let tsfn = wake.build_threadsafe_function::<()>().callee_handled::<false>().weak::<true>().build()?;
        let inner = Inner { queue: Mutex::default(), parked: Mutex::default(), wake: Mutex::new(tsfn), cancels: Mutex::default() };
        Ok(Bridge { inner: Arc::new(inner) })
    }

    /// Polls every call woken since the last drain; the answers of those that finished.
    #[napi]
    pub fn drain(&self) -> Completions {
        let mut out = Completions { ids: Vec::new(), oks: Vec::new(), values: Vec::new() };
        loop {
            let woken = {
                let mut q = lock(&self.inner.queue);
                if q.woken.is_empty() {
                    q.scheduled = false;
                    break;
                }
                std::mem::take(&mut q.woken)
            };
            for id in woken {
                let Some((mut task, waker)) = lock(&self.inner.parked).remove(&id) else { continue }; // done already
                match poll_in_runtime(&mut task, &waker) {
                    Poll::Ready(r) => {
                        out.ids.push(id);
                        match r {
                            Ok(v) => {
                                out.oks.push(true);
                                out.values.push(v);
                            }
                            Err(e) => {
                                out.oks.push(false);
                                out.values.push(super::error::encode(&e));
                            }
                        }
                    }
                    Poll::Pending => {
                        lock(&self.inner.parked).insert(id, (task, waker));
                    }
                }
            }
        }
        out
    }

    /// Sends the requests that calls made without spinning held back, in one write per connection.
    #[napi]
    pub fn flush(&self) {
        crate::stores::shared::flush_deferred();
    }

    /// Aborts waiting acquire `id` (it then completes with EABORTED); a no-op once it finished.
    #[napi]
    pub fn cancel(&self, id: u32) {
        if let Some(n) = lock(&self.inner.cancels).remove(&id) {
            n.notify_one();
        }
    }

    /// Keeps the event loop alive while calls are outstanding (true), or lets it go (false).
    #[napi]
    #[allow(deprecated)] // refer/unref are exactly napi_ref/unref_threadsafe_function
    pub fn hold(&self, env: Env, hold: bool) -> napi::Result<()> {
        let mut w = lock(&self.inner.wake);
        if hold {
            w.refer(&env)
        } else {
            w.unref(&env)
        }
    }
}
