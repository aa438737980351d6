//! A minimal HTTP endpoint serving Prometheus text metrics on `GET /metrics`: the
//! protocol server's counters and latency histogram, plus the storage engine's
//! statistics (WAL, flush, compaction, levels, stalls, bloom filter).
//!
//! One request per connection, bounded request size; anything but `GET /metrics`
//! (or `/`) gets 404.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use hindsight_storage::Db;
use hindsight_wire::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Bind and serve in the background; returns the bound address.
pub async fn spawn(addr: SocketAddr, metrics: Arc<Metrics>, db: Db) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            let db = db.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = match tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    sock.read(&mut buf),
                )
                .await
                {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
                let request = String::from_utf8_lossy(buf.get(..n).unwrap_or_default());
                let path = request.split_whitespace().nth(1).unwrap_or("");
                let (status, body) = if path == "/metrics" || path == "/" {
                    ("200 OK", render(&metrics, &db))
                } else {
                    ("404 Not Found", "not found\n".to_string())
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(response.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Ok(local)
}

fn render(metrics: &Metrics, db: &Db) -> String {
    let mut out = String::new();
    metrics.render(&mut out);
    let s = db.stats();
    let mut m = |name: &str, kind: &str, help: &str, v: String| {
        let _ = writeln!(
            out,
            "# HELP hindsight_storage_{name} {help}\n# TYPE hindsight_storage_{name} {kind}\nhindsight_storage_{name} {v}"
        );
    };
    m(
        "tables",
        "gauge",
        "Tables in the catalog.",
        s.tables.to_string(),
    );
    m(
        "last_sequence",
        "gauge",
        "Sequence number of the last commit.",
        s.last_seq.to_string(),
    );
    m(
        "batches_committed_total",
        "counter",
        "Write batches committed.",
        s.batches_committed.to_string(),
    );
    m(
        "rows_committed_total",
        "counter",
        "Rows and tombstones committed.",
        s.rows_committed.to_string(),
    );
    m(
        "wal_bytes_written_total",
        "counter",
        "Bytes appended to the WAL.",
        s.wal_bytes_written.to_string(),
    );
    m(
        "wal_syncs_total",
        "counter",
        "WAL fsyncs (group commit shares them).",
        s.wal_syncs.to_string(),
    );
    m(
        "memtable_bytes",
        "gauge",
        "Bytes in the active memtable.",
        s.memtable_bytes.to_string(),
    );
    m(
        "sealed_memtables",
        "gauge",
        "Memtables waiting for flush.",
        s.sealed_memtables.to_string(),
    );
    m(
        "flushes_total",
        "counter",
        "Memtable flushes.",
        s.flushes.to_string(),
    );
    m(
        "flush_bytes_written_total",
        "counter",
        "Bytes written by flushes.",
        s.flush_bytes_written.to_string(),
    );
    m(
        "compactions_total",
        "counter",
        "Compactions run.",
        s.compactions.to_string(),
    );
    m(
        "compaction_bytes_read_total",
        "counter",
        "Bytes read by compaction.",
        s.compaction_bytes_read.to_string(),
    );
    m(
        "compaction_bytes_written_total",
        "counter",
        "Bytes written by compaction.",
        s.compaction_bytes_written.to_string(),
    );
    m(
        "compaction_rows_dropped_total",
        "counter",
        "Versions dropped by compaction.",
        s.compaction_rows_dropped.to_string(),
    );
    m(
        "write_amplification",
        "gauge",
        "(flush + compaction bytes) / WAL bytes.",
        format!("{:.3}", s.write_amplification),
    );
    m(
        "stalls_total",
        "counter",
        "Writes stalled by backpressure.",
        s.stalls.to_string(),
    );
    m(
        "stall_seconds_total",
        "counter",
        "Time writers spent stalled.",
        format!("{:.6}", s.stall_micros as f64 / 1e6),
    );
    m(
        "slowdowns_total",
        "counter",
        "Writes slowed by backpressure.",
        s.slowdowns.to_string(),
    );
    m(
        "bloom_checks_total",
        "counter",
        "Bloom filter probes.",
        s.bloom_checks.to_string(),
    );
    m(
        "bloom_negatives_total",
        "counter",
        "Bloom filter probes that skipped a file.",
        s.bloom_negatives.to_string(),
    );
    let files: Vec<u64> = s.levels.iter().map(|l| l.files as u64).collect();
    let bytes: Vec<u64> = s.levels.iter().map(|l| l.bytes).collect();
    per_level(&mut out, "level_files", "SST files per level.", &files);
    per_level(&mut out, "level_bytes", "SST bytes per level.", &bytes);
    out
}

/// A gauge with one sample per LSM level.
fn per_level(out: &mut String, name: &str, help: &str, values: &[u64]) {
    let _ = writeln!(
        out,
        "# HELP hindsight_storage_{name} {help}\n# TYPE hindsight_storage_{name} gauge"
    );
    for (level, v) in values.iter().enumerate() {
        let _ = writeln!(out, "hindsight_storage_{name}{{level=\"{level}\"}} {v}");
    }
}
