//! How every store call reaches JS. `run` polls the call's future once, inside the JS call: a call
//! that finishes without waiting (sled, and usually a client of the shared store) answers at once,
//! with no thread hop. One that must wait (Redis) is spawned on tokio and its answer comes back
//! through one long-lived thread-safe function per JS environment instead of one per call:
//! finished operations queue their results here, the first to finish after a drain wakes the JS
//! thread once, and JS settles every queued promise in that wake-up (`drain`). A per-call
//! `#[napi] async fn` would create and tear down a thread-safe function and wake the JS thread for
//! each call.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

use napi::bindgen_prelude::{Function, Status};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Env;
use napi_derive::napi;

type Wake = ThreadsafeFunction<(), (), (), Status, false, true, 0>;

#[derive(Default)]
struct Queue {
    ids: Vec<u32>,
    oks: Vec<bool>,
    values: Vec<String>,
    /// A wake-up is on its way and has not drained yet: later completions ride along.
    scheduled: bool,
}

pub(crate) struct Inner {
    queue: Mutex<Queue>,
    wake: Mutex<Wake>,
    /// Waiting acquires that `cancel(id)` can abort.
    cancels: Mutex<HashMap<u32, Arc<Notify>>>,
}

impl Inner {
    /// Polls `fut` once: its answer now (Some), or None and the answer later through the bridge
    /// under `id`. An error now is thrown.
    pub(crate) fn run<F>(self: &Arc<Self>, id: u32, fut: F) -> napi::Result<Option<String>>
    where
        F: Future<Output = crate::core::Result<String>> + Send + 'static,
    {
        let mut fut = Box::pin(fut);
        // the runtime's context: a call that waits creates its timers and connections here
        let first = napi::bindgen_prelude::within_runtime_if_available(|| fut.as_mut().poll(&mut Context::from_waker(Waker::noop())));
        match first {
            Poll::Ready(r) => r.map(Some).map_err(super::error::to_napi),
            Poll::Pending => {
                let done = self.clone();
                napi::bindgen_prelude::spawn(async move {
                    let r = fut.await;
                    done.complete(id, r.map_err(|e| super::error::encode(&e)));
                });
                Ok(None)
            }
        }
    }

    /// Registers call `id` as abortable; the returned notify fires on `cancel(id)`.
    pub(crate) fn cancellable(&self, id: u32) -> Arc<Notify> {
        let n = Arc::new(Notify::new());
        self.cancels.lock().unwrap_or_else(|p| p.into_inner()).insert(id, n.clone());
        n
    }

    pub(crate) fn finish_cancellable(&self, id: u32) {
        self.cancels.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }

    /// Queues one result (Ok: the value; Err: an encoded error) and wakes JS if nobody has yet.
    pub(crate) fn complete(&self, id: u32, result: Result<String, String>) {
        let wake_now = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.ids.push(id);
            let (ok, v) = match result {
                Ok(v) => (true, v),
                Err(e) => (false, e),
            };
            q.oks.push(ok);
            q.values.push(v);
            !std::mem::replace(&mut q.scheduled, true)
        };
        if wake_now {
            self.wake.lock().unwrap_or_else(|p| p.into_inner()).call((), ThreadsafeFunctionCallMode::NonBlocking);
        }
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
    /// `wake` is called (with no arguments) when results are waiting; it should call `drain()`.
    #[napi(constructor)]
    pub fn new(wake: Function<(), ()>) -> napi::Result<Self> {
        // Weak: an idle bridge must not keep the process alive; `hold` refs it while calls are out.
        let tsfn = wake.build_threadsafe_function::<()>().callee_handled::<false>().weak::<true>().build()?;
        Ok(Bridge { inner: Arc::new(Inner { queue: Mutex::new(Queue::default()), wake: Mutex::new(tsfn), cancels: Mutex::new(HashMap::new()) }) })
    }

    /// Every result queued since the last drain.
    #[napi]
    pub fn drain(&self) -> Completions {
        let mut q = self.inner.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.scheduled = false;
        Completions { ids: std::mem::take(&mut q.ids), oks: std::mem::take(&mut q.oks), values: std::mem::take(&mut q.values) }
    }

    /// Aborts waiting acquire `id` (it then completes with EABORTED); a no-op once it finished.
    #[napi]
    pub fn cancel(&self, id: u32) {
        if let Some(n) = self.inner.cancels.lock().unwrap_or_else(|p| p.into_inner()).remove(&id) {
            n.notify_one();
        }
    }

    /// Keeps the event loop alive while calls are outstanding (true), or lets it go (false).
    #[napi]
    #[allow(deprecated)] // refer/unref are exactly napi_ref/unref_threadsafe_function
    pub fn hold(&self, env: Env, hold: bool) -> napi::Result<()> {
        let mut w = self.inner.wake.lock().unwrap_or_else(|p| p.into_inner());
        if hold {
            w.refer(&env)
        } else {
            w.unref(&env)
        }
    }
}
