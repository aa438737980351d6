//! Server counters and the statement latency histogram, rendered in Prometheus's text
//! exposition format. All counters are lock-free atomics updated on the query path.
//!
//! The per-statement figures (count, latency histogram) are updated by every worker
//! thread for every statement: they live in per-thread shards, each on its own cache
//! lines, and are summed when rendered. One shared counter would bounce its cache line
//! between cores on every point lookup.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 5.0, 30.0,
];

/// Shards of the per-statement figures (threads beyond this share shards).
const SHARDS: usize = 16;

/// One thread's share of the per-statement figures, alone on its cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct StatementShard {
    statements: AtomicU64,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_sum_us: AtomicU64,
}

/// The shard of the calling thread (threads are numbered on first use).
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    INDEX.with(|i| *i)
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    pub connections_refused: AtomicU64,
    pub auth_failures: AtomicU64,
    pub statement_errors: AtomicU64,
    pub statements_canceled: AtomicU64,
    pub rows_sent: AtomicU64,
    pub copy_rows_in: AtomicU64,
    statements: [StatementShard; SHARDS],
}

impl Metrics {
    /// Record one statement and its server-side latency.
    pub fn statement(&self, d: Duration) {
        let Some(shard) = self.statements.get(shard_index()) else {
            return;
        };
        shard.statements.fetch_add(1, Ordering::Relaxed);
        let s = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| s <= *b)
            && let Some(slot) = shard.latency_buckets.get(i)
        {
            slot.fetch_add(1, Ordering::Relaxed);
        }
        shard
            .latency_sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Statements recorded so far.
    pub fn statements_total(&self) -> u64 {
        self.statements
            .iter()
            .map(|s| s.statements.load(Ordering::Relaxed))
            .sum()
    }

    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Append the metrics in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut metric =
            |name: &str, kind: &str, help: &str, v: u64| write_metric(out, name, kind, help, v);
        metric(
            "hindsight_connections_open",
            "gauge",
            "Client connections currently open.",
            g(&self.connections_open),
        );
        metric(
            "hindsight_connections_total",
            "counter",
            "Client connections accepted.",
            g(&self.connections_total),
        );
        metric(
            "hindsight_connections_refused_total",
            "counter",
            "Connections refused at the connection limit.",
            g(&self.connections_refused),
        );
        metric(
            "hindsight_auth_failures_total",
            "counter",
            "Failed authentications.",
            g(&self.auth_failures),
        );
        metric(
            "hindsight_statements_total",
            "counter",
            "Statements executed (simple and extended protocol).",
            self.statements_total(),
        );
        metric(
            "hindsight_statement_errors_total",
            "counter",
            "Statements that ended in an error.",
            g(&self.statement_errors),
        );
        metric(
            "hindsight_statements_canceled_total",
            "counter",
            "Statements canceled by a client or the statement timeout.",
            g(&self.statements_canceled),
        );
        metric(
            "hindsight_rows_sent_total",
            "counter",
            "Result rows sent to clients.",
            g(&self.rows_sent),
        );
        metric(
            "hindsight_copy_rows_in_total",
            "counter",
            "Rows received through COPY FROM STDIN.",
            g(&self.copy_rows_in),
        );
        let name = "hindsight_statement_duration_seconds";
        write_header(out, name, "histogram", "Server-side statement latency.");
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self
                .statements
                .iter()
                .filter_map(|s| s.latency_buckets.get(i))
                .map(g)
                .sum::<u64>();
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.statements_total();
        let sum: u64 = self.statements.iter().map(|s| g(&s.latency_sum_us)).sum();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {count}", sum as f64 / 1e6);
    }
}

/// Append the HELP and TYPE lines of a metric in Prometheus text format; its
/// samples follow.
pub fn write_header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Append a metric with one unlabelled sample in Prometheus text format.
pub fn write_metric(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    value: impl std::fmt::Display,
) {
    write_header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.statement(Duration::from_micros(30));
        std::thread::scope(|s| {
            s.spawn(|| m.statement(Duration::from_millis(3)));
        });
        let mut s = String::new();
        m.render(&mut s);
        assert!(s.contains("hindsight_statement_duration_seconds_bucket{le=\"0.00005\"} 1"));
        assert!(s.contains("hindsight_statement_duration_seconds_bucket{le=\"0.005\"} 2"));
        assert!(s.contains("hindsight_statement_duration_seconds_count 2"));
        assert!(s.contains("hindsight_statements_total 2"));
    }
}
