//! Server counters and the statement latency histogram, rendered in Prometheus's text
//! exposition format. All counters are lock-free atomics updated on the query path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 5.0, 30.0,
];

#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    pub connections_refused: AtomicU64,
    pub auth_failures: AtomicU64,
    pub statements_total: AtomicU64,
    pub statement_errors: AtomicU64,
    pub statements_canceled: AtomicU64,
    pub rows_sent: AtomicU64,
    pub copy_rows_in: AtomicU64,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl Metrics {
    /// Record one statement's server-side latency.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| s <= *b)
            && let Some(slot) = self.latency_buckets.get(i)
        {
            slot.fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Append the metrics in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut metric = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
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
            g(&self.statements_total),
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
        let _ = writeln!(
            out,
            "# HELP {name} Server-side statement latency.\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (b, c) in BUCKETS.iter().zip(&self.latency_buckets) {
            cumulative += g(c);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = g(&self.latency_count);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}\n{name}_count {count}",
            g(&self.latency_sum_us) as f64 / 1e6
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.observe(Duration::from_micros(30));
        m.observe(Duration::from_millis(3));
        let mut s = String::new();
        m.render(&mut s);
        assert!(s.contains("hindsight_statement_duration_seconds_bucket{le=\"0.00005\"} 1"));
        assert!(s.contains("hindsight_statement_duration_seconds_bucket{le=\"0.005\"} 2"));
        assert!(s.contains("hindsight_statement_duration_seconds_count 2"));
    }
}
