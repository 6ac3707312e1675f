//! Keeping the scripts loaded on the server. They are loaded when the store connects (one
//! pipelined round trip; every node of a Cluster), again when it finds a restarted server or a new
//! primary, and once for everyone when a call still meets NOSCRIPT (a restart not noticed yet):
//! the calls that met it wait for that one load and are sent again, instead of each loading
//! every script it runs (a herd of SCRIPT LOADs after every restart).

use std::time::Instant;

use redis::aio::ConnectionLike;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
use redis::{Cmd, ErrorKind, Pipeline, RedisFuture, RedisResult, ServerErrorKind, Value};

use super::connection::Conn;
use super::lane::LaneCall;
use super::scripts::{all, RELEASE_SESSION_NODE};
use super::RedisStore;

pub(super) fn is_noscript(r: &RedisResult<Value>) -> bool {
    matches!(r, Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript))
}

/// SCRIPT LOAD of every script on `c`: one pipeline on one server, each to every node of a Cluster.
pub(super) async fn load_all(c: &mut Conn) -> RedisResult<()> {
    match c {
        Conn::Single(m) => {
            let mut p = redis::pipe();
            for s in all() {
                p.add_command(s.load_cmd()).ignore();
            }
            p.query_async::<()>(m).await
        }
        Conn::Cluster(m) => {
            let every = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllNodes, Some(ResponsePolicy::AllSucceeded)));
            let loads = all().into_iter().chain([&*RELEASE_SESSION_NODE]).map(|s| {
                let mut m = m.clone();
                let route = every.clone();
                async move { m.route_command(s.load_cmd(), route).await.map(|_| ()) }
            });
            futures_util::future::try_join_all(loads).await.map(|_| ())
        }
    }
}

impl RedisStore {
    /// Loads every script now (at connect, after a restart or a new primary). A failure is left to
    /// the NOSCRIPT path below.
    pub(super) async fn load_scripts(&self) {
        let Ok(mut c) = self.conn() else { return };
        if tokio::time::timeout(self.inner.command_timeout, load_all(&mut c)).await.is_ok_and(|r| r.is_ok()) {
            *self.inner.scripts_loaded.lock().await = Instant::now();
        }
    }

    /// A call that began at `since` met NOSCRIPT: load every script, unless another call did so
    /// after `since` (then the scripts are there again).
    async fn reload_after(&self, c: &mut Conn, since: Instant) {
        let mut last = self.inner.scripts_loaded.lock().await;
        if *last > since {
            return;
        }
        if load_all(c).await.is_ok() {
            *last = Instant::now();
        }
    }

    /// The connection a script runs on: the lane for a call alone in flight (not on a Cluster),
    /// else `conn`; NOSCRIPT makes it load every script once and send again.
    pub(super) fn scripted(&self, conn: Conn) -> Scripted {
        let lane = if self.is_cluster() { None } else { self.inner.lane.take(|| self.inner.client.read().unwrap_or_else(|p| p.into_inner()).clone(), self.inner.connect_timeout) };
        Scripted { conn, lane, store: self.clone() }
    }
}

/// A connection that answers NOSCRIPT by loading the scripts (once for all who met it) and sending
/// the call again. What redis-rs then does on a second NOSCRIPT (load the one script, send again)
/// stays as the last resort.
pub struct Scripted {
    conn: Conn,
    lane: Option<LaneCall>,
    store: RedisStore,
}

impl ConnectionLike for Scripted {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let since = Instant::now();
            let r = match self.lane.take() {
                Some(lane) => lane.call(cmd).await,
                None => self.conn.req_packed_command(cmd).await,
            };
            if !is_noscript(&r) {
                return r;
            }
            self.store.reload_after(&mut self.conn, since).await;
            self.conn.req_packed_command(cmd).await
        })
    }

    fn req_packed_commands<'a>(&'a mut self, pipeline: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        self.conn.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}
