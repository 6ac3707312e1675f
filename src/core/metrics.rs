//! Prometheus metrics, counted in Rust for the whole process, rendered as text by `render()`.
//! Names and labels follow the deployment guide's. Label values cannot explode: agent ids past
//! the first `MAX_AGENTS` are counted as "other", and operations are a fixed set of names.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

pub const MAX_AGENTS: usize = 50;
const BUCKETS: &[f64] = &[0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0];
/// Waits last up to the caller's waitMs (seconds, typically), not microseconds.
const WAIT_BUCKETS: &[f64] = &[0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

#[derive(Clone)]
struct Histogram {
    buckets: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::with(BUCKETS)
    }
}

impl Histogram {
    fn with(buckets: &'static [f64]) -> Self {
        Histogram { buckets, counts: vec![0; buckets.len()], sum: 0.0, count: 0 }
    }

    fn observe(&mut self, secs: f64) {
        for (i, b) in self.buckets.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in self.buckets.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}", self.counts[i]);
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// Index into `Registry::agents`, or OTHER for agents past the first MAX_AGENTS.
const OTHER: usize = usize::MAX;

#[derive(Default)]
struct Registry {
    /// (status, agent index) -> count: no allocation on the hot path once an agent is known.
    acquisitions: BTreeMap<(&'static str, usize), u64>,
    acquisition_duration: BTreeMap<&'static str, Histogram>,
    redis_errors: BTreeMap<String, u64>,
    redis_duration: BTreeMap<(String, &'static str), Histogram>,
    backend_switches: BTreeMap<&'static str, u64>,
    recovery_conflicts: u64,
    /// Waiting acquires by outcome (granted, refused, aborted, error): how long they waited.
    wait_duration: BTreeMap<&'static str, Histogram>,
    /// Locks this process held and lost, by reason (expired, released, conflict).
    lost: BTreeMap<String, u64>,
    /// Shared sled store: times this process took a folder over, by the role it got (server, client).
    takeovers: BTreeMap<&'static str, u64>,
    /// Connections the shared store's server dropped (garbage, another user, oversized frames).
    shared_rejected: u64,
    agents: Vec<String>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Default::default);

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// `ENABLE_METRICS=false` turns counting off for the process (read once, as debug.rs reads its
/// switch); config.rs checks the value, so a bad one fails at start naming the variable.
static ENABLED: LazyLock<bool> = LazyLock::new(|| {
    !std::env::var("ENABLE_METRICS").is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "0" | "false" | "no" | "off"))
});

pub fn enabled() -> bool {
    *ENABLED
}

/// The registry to count into, or None when metrics are off.
fn recording() -> Option<std::sync::MutexGuard<'static, Registry>> {
    enabled().then(registry)
}

/// Escapes a label value for the text format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// One acquire that was willing to wait: counted with the others, timed apart from them (a
/// wait of seconds is not a slow acquire).
pub fn waiting_acquisition(status: &'static str, agent_id: &str, took: Duration) {
    let Some(mut r) = recording() else { return };
    count_acquisition(&mut r, status, agent_id);
    r.wait_duration.entry(status).or_insert_with(|| Histogram::with(WAIT_BUCKETS)).observe(took.as_secs_f64());
}

/// A lock this process held is gone; `reason` is expired, released or conflict.
pub fn lost(reason: &str) {
    if let Some(mut r) = recording() {
        *r.lost.entry(reason.to_owned()).or_default() += 1;
    }
}

/// One acquire: `status` is granted, refused or error.
pub fn acquisition(status: &'static str, agent_id: &str, took: Duration) {
    let Some(mut r) = recording() else { return };
    count_acquisition(&mut r, status, agent_id);
    r.acquisition_duration.entry(status).or_default().observe(took.as_secs_f64());
}

fn count_acquisition(r: &mut Registry, status: &'static str, agent_id: &str) {
    let agent = match r.agents.iter().position(|a| a == agent_id) {
        Some(i) => i,
        None if r.agents.len() < MAX_AGENTS => {
            r.agents.push(agent_id.to_owned());
            r.agents.len() - 1
        }
        None => OTHER,
    };
    *r.acquisitions.entry((status, agent)).or_default() += 1;
}

pub fn redis_operation(operation: &str, status: &'static str, took: Duration) {
    let Some(mut r) = recording() else { return };
    r.redis_duration.entry((operation.to_owned(), status)).or_default().observe(took.as_secs_f64());
    if status == "connection_error" || status == "timeout" {
        *r.redis_errors.entry(operation.to_owned()).or_default() += 1;
    }
}

pub fn backend_switch(to: &'static str) {
    if let Some(mut r) = recording() {
        *r.backend_switches.entry(to).or_default() += 1;
    }
}

/// This process's shared sled store found its server gone and now serves (`server`) or is a
/// client of the process that serves (`client`).
pub fn shared_takeover(became: &'static str) {
    if let Some(mut r) = recording() {
        *r.takeovers.entry(became).or_default() += 1;
    }
}

pub fn shared_rejected() {
    if let Some(mut r) = recording() {
        r.shared_rejected += 1;
    }
}

pub fn recovery_conflict() {
    if let Some(mut r) = recording() {
        r.recovery_conflicts += 1;
    }
}

/// The Prometheus text exposition of everything counted so far; `active_locks` is the live lock
/// count of the store being scraped (all processes), when known.
pub fn render(active_locks: Option<usize>) -> String {
    if !enabled() {
        return "# opencode-file-lock metrics are off in this process (ENABLE_METRICS=false)\n".into();
    }
    let r = registry();
    let mut out = String::new();
    out.push_str("# HELP file_lock_acquisitions_total Lock acquisitions by outcome (granted, refused, aborted, deadlock, error) and agent.\n# TYPE file_lock_acquisitions_total counter\n");
    for ((status, agent), n) in &r.acquisitions {
        let name = r.agents.get(*agent).map_or("other", String::as_str);
        let _ = writeln!(out, "file_lock_acquisitions_total{{status=\"{status}\",agent_id=\"{}\"}} {n}", label(name));
    }
    out.push_str("# HELP file_lock_acquisition_duration_seconds Time to acquire (or be refused) a lock.\n# TYPE file_lock_acquisition_duration_seconds histogram\n");
    for (status, h) in &r.acquisition_duration {
        h.render(&mut out, "file_lock_acquisition_duration_seconds", &format!("status=\"{status}\""));
    }
    out.push_str("# HELP file_lock_wait_duration_seconds How long acquires that were willing to wait (waitMs) waited, by outcome.\n# TYPE file_lock_wait_duration_seconds histogram\n");
    for (status, h) in &r.wait_duration {
        h.render(&mut out, "file_lock_wait_duration_seconds", &format!("status=\"{status}\""));
    }
    out.push_str("# HELP file_lock_lost_total Locks this process held and lost (expired unrenewed, forced free, lost at recovery).\n# TYPE file_lock_lost_total counter\n");
    for (reason, n) in &r.lost {
        let _ = writeln!(out, "file_lock_lost_total{{reason=\"{}\"}} {n}", label(reason));
    }
    if let Some(n) = active_locks {
        out.push_str("# HELP file_lock_active_count Live locks in the store's namespace.\n# TYPE file_lock_active_count gauge\n");
        let _ = writeln!(out, "file_lock_active_count {n}");
    }
    out.push_str("# HELP redis_connection_errors_total Redis calls that failed to reach the server or timed out.\n# TYPE redis_connection_errors_total counter\n");
    for (op, n) in &r.redis_errors {
        let _ = writeln!(out, "redis_connection_errors_total{{operation=\"{}\"}} {n}", label(op));
    }
    out.push_str("# HELP redis_operation_duration_seconds Time of Redis calls by operation and outcome.\n# TYPE redis_operation_duration_seconds histogram\n");
    for ((op, status), h) in &r.redis_duration {
        h.render(&mut out, "redis_operation_duration_seconds", &format!("operation=\"{}\",status=\"{status}\"", label(op)));
    }
    out.push_str("# HELP file_lock_backend_switches_total Hybrid switches between Redis and the sled fallback.\n# TYPE file_lock_backend_switches_total counter\n");
    for (to, n) in &r.backend_switches {
        let _ = writeln!(out, "file_lock_backend_switches_total{{to=\"{to}\"}} {n}");
    }
    out.push_str("# HELP file_lock_recovery_conflicts_total Locks granted on the hybrid's fallback that another holder had taken in Redis.\n# TYPE file_lock_recovery_conflicts_total counter\n");
    let _ = writeln!(out, "file_lock_recovery_conflicts_total {}", r.recovery_conflicts);
    out.push_str("# HELP file_lock_shared_takeovers_total Times the process serving the sled folder went away and this process took over, by the role it got.\n# TYPE file_lock_shared_takeovers_total counter\n");
    for (became, n) in &r.takeovers {
        let _ = writeln!(out, "file_lock_shared_takeovers_total{{became=\"{became}\"}} {n}");
    }
    out.push_str("# HELP file_lock_shared_rejected_total Connections to this process's lock socket that it dropped (another user, garbage, oversized frames).\n# TYPE file_lock_shared_rejected_total counter\n");
    let _ = writeln!(out, "file_lock_shared_rejected_total {}", r.shared_rejected);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_bounds_agents() {
        for i in 0..(MAX_AGENTS + 10) {
            acquisition("granted", &format!("agent-{i}"), Duration::from_micros(300));
        }
        acquisition("refused", "agent-0", Duration::from_millis(2));
        redis_operation("acquire", "ok", Duration::from_micros(400));
        redis_operation("acquire", "connection_error", Duration::from_millis(1));
        waiting_acquisition("granted", "agent-0", Duration::from_millis(1200));
        lost("expired");
        let text = render(Some(7));
        assert!(text.contains("file_lock_active_count 7"));
        // other tests of this process may have counted agents of their own first
        let other: u64 = text.lines().find_map(|l| l.strip_prefix("file_lock_acquisitions_total{status=\"granted\",agent_id=\"other\"} ")).and_then(|n| n.parse().ok()).unwrap_or(0);
        assert!(other >= 10, "{text}");
        assert!(text.contains("file_lock_acquisition_duration_seconds_bucket{status=\"refused\",le=\"0.0025\"} 1"));
        assert!(text.contains("redis_connection_errors_total{operation=\"acquire\"} 1"));
        assert!(text.contains("file_lock_wait_duration_seconds_bucket{status=\"granted\",le=\"2.5\"} 1"), "{text}");
        assert!(text.contains("file_lock_lost_total{reason=\"expired\"} 1"), "{text}");
        assert!(text.contains("file_lock_acquisitions_total{status=\"granted\",agent_id=\"agent-0\"} 2"), "{text}");
        assert!(text.contains("# TYPE redis_operation_duration_seconds histogram"));
        assert!(text.lines().filter(|l| l.starts_with("file_lock_acquisitions_total")).count() <= MAX_AGENTS + 2);
    }
}
