//! The HTTP endpoint (hyper, HTTP/1.1): Prometheus text metrics on `GET /metrics`
//! (also `/`) — the protocol server's counters and latency histogram plus the
//! storage engine's statistics (WAL, flush, compaction, levels, stalls, bloom
//! filter) — and `GET /health`: 200 while the engine accepts writes, 503 with the
//! reason once it has stopped (a WAL or manifest failure), so a load balancer or an
//! orchestrator can see it. For load balancers in front of a cluster:
//! `GET /primary` is 200 on the node that takes writes (the leader, or a single
//! node), else 503; `GET /replica` is 200 on a follower or learner that knows a live
//! leader, else 503. A cluster member adds its Raft figures (`hindsight_raft_*`:
//! term, role, leader changes, commit latency, per-follower lag) to `/metrics`.
//!
//! Requests are parsed by hyper, so a request split across packets, keep-alive and
//! pipelining work; a client has 5 seconds to send its headers. Other paths get
//! 404, other methods on these paths 405.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hindsight_replication::{COMMIT_BUCKETS, FigureSource, Figures};
use hindsight_storage::{Db, RoleKind, Stats};
use hindsight_wire::{Metrics, write_header, write_metric};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// What every request reads.
struct State {
    metrics: Arc<Metrics>,
    db: Db,
    /// A cluster member's Raft figures.
    raft: Option<FigureSource>,
}

/// Bind and serve in the background; returns the bound address.
pub async fn spawn(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    db: Db,
    raft: Option<FigureSource>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let state = Arc::new(State { metrics, db, raft });
    tokio::spawn(async move {
        loop {
            let sock = match listener.accept().await {
                Ok((sock, _)) => sock,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(route(&state, &req)) }
                });
                let served = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(5))
                    .serve_connection(TokioIo::new(sock), service)
                    .await;
                if let Err(e) = served {
                    tracing::debug!(error = %e, "http connection ended with an error");
                }
            });
        }
    });
    Ok(local)
}

fn route(state: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let known = matches!(path, "/" | "/metrics" | "/health" | "/primary" | "/replica");
    match (req.method(), path) {
        (&Method::GET, "/" | "/metrics") => {
            text(StatusCode::OK, "text/plain; version=0.0.4", render(state))
        }
        (&Method::GET, "/health") => match state.db.health() {
            Ok(()) => text(StatusCode::OK, "text/plain", "ok\n".into()),
            Err(e) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("{e}\n"),
            ),
        },
        (&Method::GET, "/primary") => {
            let role = state.db.role();
            let ok = role.takes_writes() && state.db.health().is_ok();
            verdict(ok, role.kind.name().to_string(), role.standby_reason())
        }
        (&Method::GET, "/replica") => {
            let role = state.db.role();
            // A follower that knows its leader and where clients reach it.
            let follows = matches!(role.kind, RoleKind::Follower | RoleKind::Learner)
                && role
                    .leader
                    .as_ref()
                    .is_some_and(|(l, pg)| *l != role.node && pg.is_some());
            let ok = follows && state.db.health().is_ok();
            let why = format!("not a replica following a leader: {}", role.kind.name());
            verdict(ok, role.kind.name().to_string(), why)
        }
        _ if known => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n".into(),
        ),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// 200 with `yes`, or 503 with `no`: the answer of a role check.
fn verdict(ok: bool, yes: String, no: String) -> Response<Full<Bytes>> {
    match ok {
        true => text(StatusCode::OK, "text/plain", format!("{yes}\n")),
        false => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            format!("{no}\n"),
        ),
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn render(state: &State) -> String {
    let mut out = String::new();
    state.metrics.render(&mut out);
    if let Some(f) = state.raft.as_ref().and_then(FigureSource::read) {
        render_raft(&mut out, &f);
    }
    let s = state.db.stats();
    for (name, kind, help, value) in &STORAGE_SAMPLES {
        let name = format!("hindsight_storage_{name}");
        write_metric(&mut out, &name, kind, help, value(&s));
    }
    let files: Vec<u64> = s.levels.iter().map(|l| l.files as u64).collect();
    let bytes: Vec<u64> = s.levels.iter().map(|l| l.bytes).collect();
    per_level(&mut out, "level_files", "SST files per level.", &files);
    per_level(&mut out, "level_bytes", "SST bytes per level.", &bytes);
    out
}

/// A cluster member's Raft figures (`hindsight_raft_*`).
fn render_raft(out: &mut String, f: &Figures) {
    let gauges = [
        ("term", "The Raft term this node is in.", f.term),
        (
            "is_leader",
            "1 on the leader, else 0.",
            u64::from(f.is_leader),
        ),
        (
            "leader",
            "The leader's node id as this node knows it (0: none).",
            f.leader.unwrap_or(0),
        ),
        (
            "last_log_index",
            "The last index in this node's Raft log.",
            f.last_log_index.unwrap_or(0),
        ),
        (
            "applied_index",
            "The last Raft index applied to the engine here.",
            f.applied_index.unwrap_or(0),
        ),
        (
            "snapshot_index",
            "The last Raft index the newest snapshot (a checkpoint of the flushed files) covers.",
            f.snapshot_index.unwrap_or(0),
        ),
        (
            "purged_index",
            "The last Raft index purged from this node's log; a member behind it catches up by snapshot.",
            f.purged_index.unwrap_or(0),
        ),
    ];
    for (name, help, v) in gauges {
        write_metric(
            out,
            &format!("hindsight_raft_{name}"),
            G,
            help,
            v.to_string(),
        );
    }
    write_metric(
        out,
        "hindsight_raft_leader_changes_total",
        C,
        "Times this node saw a new leader.",
        f.leader_changes.to_string(),
    );
    let name = "hindsight_raft_commit_seconds";
    write_header(
        out,
        name,
        "histogram",
        "Leader: proposal to applied, per replicated commit group.",
    );
    let mut cumulative = 0;
    for (i, n) in f.commit_buckets.iter().enumerate() {
        cumulative += n;
        let le = COMMIT_BUCKETS
            .get(i)
            .map_or("+Inf".to_string(), f64::to_string);
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_sum {}", f.commit_seconds_sum);
    let _ = writeln!(out, "{name}_count {}", f.commits);
    labelled(
        out,
        "hindsight_raft_peer_lag_entries",
        "Leader: entries each follower's durable log is behind.",
        f.peers
            .iter()
            .filter_map(|p| Some((format!("peer=\"{}\"", p.node), p.lag_entries?.to_string()))),
    );
    labelled(
        out,
        "hindsight_raft_peer_last_contact_seconds",
        "Leader: seconds since each follower last answered a status poll.",
        f.peers.iter().filter_map(|p| {
            let secs = p.last_contact_ms? as f64 / 1000.0;
            Some((format!("peer=\"{}\"", p.node), secs.to_string()))
        }),
    );
}

/// One engine figure: name (after `hindsight_storage_`), kind, help, value.
type Sample = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Stats) -> String,
);

const C: &str = "counter";
const G: &str = "gauge";

/// The engine's figures on `/metrics`.
static STORAGE_SAMPLES: [Sample; 20] = [
    ("tables", G, "Tables in the catalog.", |s| {
        s.tables.to_string()
    }),
    (
        "last_sequence",
        G,
        "Sequence number of the last commit.",
        |s| s.last_seq.to_string(),
    ),
    (
        "batches_committed_total",
        C,
        "Write batches committed.",
        |s| s.batches_committed.to_string(),
    ),
    (
        "rows_committed_total",
        C,
        "Rows and tombstones committed.",
        |s| s.rows_committed.to_string(),
    ),
    (
        "wal_bytes_written_total",
        C,
        "Bytes appended to the WAL.",
        |s| s.wal_bytes_written.to_string(),
    ),
    (
        "wal_syncs_total",
        C,
        "WAL fsyncs (group commit shares them).",
        |s| s.wal_syncs.to_string(),
    ),
    ("memtable_bytes", G, "Bytes in the active memtable.", |s| {
        s.memtable_bytes.to_string()
    }),
    ("sealed_memtables", G, "Memtables waiting for flush.", |s| {
        s.sealed_memtables.to_string()
    }),
    ("flushes_total", C, "Memtable flushes.", |s| {
        s.flushes.to_string()
    }),
    (
        "flush_bytes_written_total",
        C,
        "Bytes written by flushes.",
        |s| s.flush_bytes_written.to_string(),
    ),
    ("compactions_total", C, "Compactions run.", |s| {
        s.compactions.to_string()
    }),
    (
        "compaction_bytes_read_total",
        C,
        "Bytes read by compaction.",
        |s| s.compaction_bytes_read.to_string(),
    ),
    (
        "compaction_bytes_written_total",
        C,
        "Bytes written by compaction.",
        |s| s.compaction_bytes_written.to_string(),
    ),
    (
        "compaction_rows_dropped_total",
        C,
        "Versions dropped by compaction.",
        |s| s.compaction_rows_dropped.to_string(),
    ),
    (
        "write_amplification",
        G,
        "(flush + compaction bytes) / WAL bytes.",
        |s| format!("{:.3}", s.write_amplification),
    ),
    ("stalls_total", C, "Writes stalled by backpressure.", |s| {
        s.stalls.to_string()
    }),
    (
        "stall_seconds_total",
        C,
        "Time writers spent stalled.",
        |s| format!("{:.6}", s.stall_micros as f64 / 1e6),
    ),
    (
        "slowdowns_total",
        C,
        "Writes slowed by backpressure.",
        |s| s.slowdowns.to_string(),
    ),
    ("bloom_checks_total", C, "Bloom filter probes.", |s| {
        s.bloom_checks.to_string()
    }),
    (
        "bloom_negatives_total",
        C,
        "Bloom filter probes that skipped a file.",
        |s| s.bloom_negatives.to_string(),
    ),
];

/// A gauge with one sample per LSM level.
fn per_level(out: &mut String, name: &str, help: &str, values: &[u64]) {
    let rows = (values.iter().enumerate()).map(|(l, v)| (format!("level=\"{l}\""), v.to_string()));
    labelled(out, &format!("hindsight_storage_{name}"), help, rows);
}

/// A gauge with one sample per label set (`label="value"` text, sample).
fn labelled(
    out: &mut String,
    name: &str,
    help: &str,
    rows: impl Iterator<Item = (String, String)>,
) {
    write_header(out, name, G, help);
    for (labels, v) in rows {
        let _ = writeln!(out, "{name}{{{labels}}} {v}");
    }
}
