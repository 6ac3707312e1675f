//! In-process wake-ups. A release (made in this process on sled, or announced by Redis pub/sub)
//! notifies whoever listens on that storage key: waiters blocked on it and lost-lock watches.
//! A notification is a hint to look again, never a grant: listeners re-check the store. Besides
//! in-process listeners (`Notify`), a key may go to a callback: the shared store's server pushes
//! it to a client process that listens on it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The key (in each namespace) that hears of every change to its locks and waiters: a grant, a
/// release, a waiter coming or going. `opencode-file-lock watch` listens on it.
pub const CHANGES: &str = "\u{241E}ofl:changes";

/// Who hears of a released key.
#[derive(Clone)]
pub enum Sink {
    Notify(Arc<Notify>),
    /// Called with the storage key (must not block: it runs inside the releasing call).
    Key(Arc<dyn Fn(&str) + Send + Sync>),
}

impl Sink {
    fn fire(&self, key: &str) {
        match self {
            Sink::Notify(n) => n.notify_one(),
            Sink::Key(f) => f(key),
        }
    }
}

#[derive(Default)]
pub struct WakeBus {
    keys: Mutex<HashMap<String, Vec<(u64, Sink)>>>,
    /// How many registrations exist: releases skip the map entirely while nobody listens.
    listening: AtomicUsize,
    next_id: AtomicU64,
}

impl WakeBus {
    pub fn new() -> Arc<WakeBus> {
        Arc::new(WakeBus::default())
    }

    /// Registers `notify` under every key until the returned guard is dropped.
    pub fn listen(self: &Arc<Self>, keys: Vec<String>, notify: &Arc<Notify>) -> Listening {
        self.listen_sink(keys, Sink::Notify(notify.clone()))
    }

    /// Registers `sink` under every key until the returned guard is dropped.
    pub fn listen_sink(self: &Arc<Self>, keys: Vec<String>, sink: Sink) -> Listening {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        for k in &keys {
            map.entry(k.clone()).or_default().push((id, sink.clone()));
        }
        self.listening.fetch_add(keys.len(), Ordering::Relaxed);
        Listening { bus: self.clone(), id, keys, on_drop: None }
    }

    /// True while nobody listens on anything: a store skips building keys to announce.
    pub fn idle(&self) -> bool {
        self.listening.load(Ordering::Relaxed) == 0
    }

    /// Wakes every listener on `key` (a listener not waiting right now keeps the wake for later).
    pub fn notify(&self, key: &str) {
        if self.listening.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Some(list) = self.keys.lock().unwrap_or_else(|p| p.into_inner()).get(key) {
            for (_, s) in list {
                s.fire(key);
            }
        }
    }

    /// Wakes everybody: after a gap in which notifications may have been missed.
    pub fn notify_all(&self) {
        for (key, list) in self.keys.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            for (_, s) in list {
                s.fire(key);
            }
        }
    }
}

/// A registration on a `WakeBus`; dropping it unregisters.
pub struct Listening {
    bus: Arc<WakeBus>,
    id: u64,
    keys: Vec<String>,
    on_drop: Option<Box<dyn FnOnce() + Send>>,
}

impl Listening {
    /// Runs `f` when the registration ends (the shared store unsubscribes from its server then).
    pub fn on_drop(mut self, f: Box<dyn FnOnce() + Send>) -> Self {
        self.on_drop = Some(f);
        self
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.take() {
            f();
        }
        let mut map = self.bus.keys.lock().unwrap_or_else(|p| p.into_inner());
        for k in &self.keys {
            if let Some(list) = map.get_mut(k) {
                list.retain(|(id, _)| *id != self.id);
                if list.is_empty() {
                    map.remove(k);
                }
            }
        }
        self.bus.listening.fetch_sub(self.keys.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_notification_reaches_listeners_of_that_key_only() {
        let bus = WakeBus::new();
        let (a, b) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let _la = bus.listen(vec!["k1".into()], &a);
        let lb = bus.listen(vec!["k2".into()], &b);
        bus.notify("k1");
        tokio::time::timeout(std::time::Duration::from_millis(100), a.notified()).await.expect("k1's listener woke");
        assert!(tokio::time::timeout(std::time::Duration::from_millis(20), b.notified()).await.is_err(), "k2's listener did not");
        drop(lb);
        assert_eq!(bus.keys.lock().unwrap().len(), 1, "dropping a registration removes it");
    }
}
