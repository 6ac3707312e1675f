//! Walking the key space: SCAN on the one server, or on every primary of a Cluster in turn
//! (a Cluster's SCAN covers one node's keys only). Cursors of a Cluster walk say which primary
//! they are on: `"<primary>:<cursor>"`.

use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{AggregateOp, MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo, SingleNodeRoutingInfo};

use crate::core::error::{Error, Result};

use super::connection::Conn;
use super::loading::{is_noscript, load_all};
use super::RedisStore;

impl RedisStore {
    /// The Cluster connection; None on one server.
    pub(super) fn cluster_conn(&self) -> Result<Option<ClusterConnection>> {
        Ok(match self.conn()? {
            Conn::Cluster(c) => Some(c),
            Conn::Single(_) => None,
        })
    }

    /// `cmd` (an EVALSHA) on every primary of the Cluster at once, their integer answers summed:
    /// one round trip per primary. A primary that does not know the script gets them all loaded
    /// (every node), and the command is sent again.
    pub(super) async fn on_every_primary(&self, what: &str, c: ClusterConnection, cmd: redis::Cmd) -> Result<i64> {
        let route = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, Some(ResponsePolicy::Aggregate(AggregateOp::Sum))));
        let run = async {
            let mut c = c;
            let first = c.route_command(cmd.clone(), route.clone()).await;
            if !is_noscript(&first) {
                return first;
            }
            load_all(&mut Conn::Cluster(c.clone())).await?;
            c.route_command(cmd, route).await
        };
        let v = self.run(what, run).await?;
        redis::from_redis_value(v).map_err(|e| Error::backend(format!("{} answered {what} oddly: {e}", self.inner.target)))
    }

    /// The Cluster's primaries now, as (host, port), in address order.
    pub(super) async fn primaries(&self) -> Result<Vec<(String, u16)>> {
        let mut c = self.conn()?;
        let text: String = self.run("CLUSTER NODES", redis::cmd("CLUSTER").arg("NODES").query_async(&mut c)).await?;
        let mut out: Vec<(String, u16)> = text
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let flags = f.get(2)?;
                // a primary that serves slots (a new one without them holds no key)
                if !flags.split(',').any(|x| x == "master") || flags.contains("fail") || flags.contains("handshake") || flags.contains("noaddr") || f.len() < 9 {
                    return None;
                }
                let addr = f.get(1)?.split(['@', ',']).next()?;
                let (h, p) = addr.rsplit_once(':')?;
                if h.is_empty() {
                    return None;
                }
                Some((h.to_owned(), p.parse().ok()?))
            })
            .collect();
        out.sort();
        if out.is_empty() {
            return Err(Error::Unreachable(format!("{} names no primary that serves", self.inner.target)));
        }
        Ok(out)
    }

    /// One SCAN page of keys matching `pattern`, from `cursor` (None: the start); the next cursor,
    /// None at the end of the last server.
    pub(super) async fn scan_page(&self, pattern: &str, cursor: Option<&str>, count: usize) -> Result<(Option<String>, Vec<String>)> {
        let bad = || Error::invalid("bad entries() cursor");
        match self.conn()? {
            Conn::Single(mut c) => {
                let at: u64 = cursor.map(str::parse).transpose().map_err(|_| bad())?.unwrap_or(0);
                let mut scan = redis::cmd("SCAN");
                scan.arg(at).arg("MATCH").arg(pattern).arg("COUNT").arg(count);
                let (next, keys): (u64, Vec<String>) = self.run("SCAN", scan.query_async(&mut c)).await?;
                Ok(((next != 0).then(|| next.to_string()), keys))
            }
            Conn::Cluster(mut c) => {
                let (node, at) = match cursor {
                    None => (0usize, 0u64),
                    Some(s) => {
                        let (n, a) = s.split_once(':').ok_or_else(bad)?;
                        (n.parse().map_err(|_| bad())?, a.parse().map_err(|_| bad())?)
                    }
                };
                // a page does not know the list its cursor came from: ask again
                let nodes = self.primaries().await?;
                let Some(addr) = nodes.get(node) else { return Ok((None, Vec::new())) };
                let (next, keys) = self.scan_node(&mut c, addr, at, pattern, count).await?;
                let cursor = if next != 0 {
                    Some(format!("{node}:{next}"))
                } else if node + 1 < nodes.len() {
                    Some(format!("{}:0", node + 1))
                } else {
                    None
                };
                Ok((cursor, keys))
            }
        }
    }

    /// One SCAN call on the primary at `addr` of a Cluster: its next cursor (0 at its end) and keys.
    async fn scan_node(&self, c: &mut redis::cluster_async::ClusterConnection, (host, port): &(String, u16), at: u64, pattern: &str, count: usize) -> Result<(u64, Vec<String>)> {
        let mut scan = redis::cmd("SCAN");
        scan.arg(at).arg("MATCH").arg(pattern).arg("COUNT").arg(count);
        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host: host.clone(), port: *port });
        let v = self.run("SCAN", c.route_command(scan, route)).await?;
        redis::from_redis_value(v).map_err(|e| Error::backend(format!("{} answered SCAN oddly: {e}", self.inner.target)))
    }

    /// Every key matching `pattern`, on every server (a Cluster's primaries listed once).
    pub(super) async fn scan_all(&self, pattern: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        match self.conn()? {
            Conn::Single(_) => {
                let mut cursor = None;
                loop {
                    let (next, keys) = self.scan_page(pattern, cursor.as_deref(), 1000).await?;
                    out.extend(keys);
                    match next {
                        Some(c) => cursor = Some(c),
                        None => return Ok(out),
                    }
                }
            }
            Conn::Cluster(mut c) => {
                for addr in self.primaries().await? {
                    let mut at = 0;
                    loop {
                        let (next, keys) = self.scan_node(&mut c, &addr, at, pattern, 1000).await?;
                        out.extend(keys);
                        if next == 0 {
                            break;
                        }
                        at = next;
                    }
                }
                Ok(out)
            }
        }
    }
}
