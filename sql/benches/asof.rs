//! The point-in-time join and as-of snapshot on the shared data set
//! (`cargo bench -p hindsight-sql --bench asof`), reported like
//! `../shared/bench/offline_duckdb.py` so the two can be read side by side
//! (`benches/asof_vs_duckdb.sh` runs both in one go).
//!
//! Data: gen.py's formulas, E entities x V versions (default 1M x 10) and an S-row
//! spine (default 1M), loaded through the storage engine once and compacted; cached
//! under the bench data directory. Queries, each REPS times (median reported):
//! - asof_arrow: the ASOF JOIN collected in memory as Arrow (all feature columns);
//! - asof_count: count(*), count(event_ts), sum(f1) over the same join;
//! - snapshot: `as_of(features, '2024-01-21')` collected as Arrow.
//!
//! Then the online path, single-threaded, per execution: a prepared latest lookup by
//! key (planned once, run by the fast path), the same lookup sent as SQL text each time
//! (parsed, recognized by shape), and a query DataFusion must plan each time.
//!
//! Peak memory is the process's anonymous RSS high-water mark during each run (file
//! pages of the memory-mapped tables are not counted: they belong to the page cache).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

#[path = "../../storage/benches/shared/dataset.rs"]
mod dataset;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use datafusion::arrow::record_batch::RecordBatch;
use dataset::*;
use hindsight_sql::{Collected, Engine, EngineOptions};
use hindsight_storage::{Db, Options, ScalarType, SyncPolicy, TableDef, WriteBatch};

fn rss_anon_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("RssAnon:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Samples anonymous RSS every few milliseconds; `peak()` since the last `reset()`.
struct Sampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Sampler {
    fn start() -> Sampler {
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_anon_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Sampler { peak, stop }
    }
    fn reset(&self) {
        self.peak.store(rss_anon_kib(), Ordering::Relaxed);
    }
    fn peak_mib(&self) -> f64 {
        self.peak.load(Ordering::Relaxed).max(rss_anon_kib()) as f64 / 1024.0
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn build(dir: &std::path::Path, e: i64, v: i64, s: u64) {
    let _ = std::fs::remove_dir_all(dir);
    let t0 = Instant::now();
    let db = Db::open(
        dir,
        Options {
            sync: SyncPolicy::Never,
            ..Options::default()
        },
    )
    .unwrap();
    let features = db
        .create_table(features_table(ScalarType::Timestamp))
        .unwrap();
    ingest_rows(&db, &features, e, v, 10_000);
    let spine = db
        .create_table(TableDef::new(
            "spine",
            vec![
                hindsight_storage::ColumnDef::new(
                    "entity_id",
                    hindsight_storage::DataType::Scalar(ScalarType::Int64),
                ),
                hindsight_storage::ColumnDef::new(
                    "ts",
                    hindsight_storage::DataType::Scalar(ScalarType::Timestamp),
                ),
            ],
            vec![],
            None,
            Default::default(),
        ))
        .unwrap();
    let mut i = 0;
    while i < s {
        let to = (i + 10_000).min(s);
        let mut wb = WriteBatch::new();
        wb.put_arrow(&spine, &spine_batch(i, to, e)).unwrap();
        db.write(wb).unwrap();
        i = to;
    }
    db.compact_now().unwrap();
    db.close().unwrap();
    println!(
        "built {} versions and {s} spine rows in {:.1?}",
        e * v,
        t0.elapsed()
    );
}

fn checksums(batches: &[RecordBatch], event_ts: usize, f1: usize) -> (usize, usize, f64) {
    let mut rows = 0;
    let mut matched = 0;
    let mut sum = 0.0;
    for b in batches {
        rows += b.num_rows();
        matched += b.num_rows() - b.column(event_ts).null_count();
        let f = b.column(f1).as_primitive::<Float64Type>();
        sum += f.iter().flatten().sum::<f64>();
    }
    (rows, matched, sum)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let e = env("E", 1_000_000);
    let v = env("V", 10);
    let s = env("S", 1_000_000) as u64;
    let reps = env("REPS", 5) as usize;
    let dir = bench_dir(&format!("asof-{e}x{v}-s{s}"));
    if !dir.join("READY").exists() {
        build(&dir, e, v, s);
        std::fs::write(dir.join("READY"), b"").unwrap();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = Db::open(&dir, Options::default()).unwrap();
    let bytes: u64 = db.stats().levels.iter().map(|l| l.bytes).sum();
    let engine = Engine::new(db, EngineOptions::default()).unwrap();
    let cols = "f.f1, f.f2, f.f3, f.f4, f.f5, f.f6, f.f7, f.f8, f.c1, f.c2";
    let join = format!(
        "SELECT s.entity_id, s.ts, f.event_ts, {cols} FROM spine s \
         ASOF JOIN features f MATCH_CONDITION (s.ts >= f.event_ts) ON s.entity_id = f.entity_id"
    );
    let queries = [
        (
            "asof_arrow (spine ASOF JOIN features -> Arrow in memory)",
            join.clone(),
        ),
        (
            "asof_count (same join, count+sum)",
            format!("SELECT count(*), count(event_ts), sum(f1) FROM ({join})"),
        ),
        (
            "snapshot (as_of(features, 2024-01-21) -> Arrow in memory)",
            "SELECT * FROM as_of(features, TIMESTAMP '2024-01-21 00:00:00')".to_string(),
        ),
    ];
    let sampler = Sampler::start();
    println!(
        "\n## offline Hindsight, features {} versions ({:.0} MB on disk), spine {s} rows, median of {reps} runs",
        e * v,
        bytes as f64 / 1e6
    );
    println!(
        "| query | median s | min s | max s | spine rows/s | peak anon MiB | result / checksum |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|");
    for (name, sql) in queries {
        let mut times = Vec::new();
        let mut peaks = Vec::new();
        let mut detail = String::new();
        for _ in 0..reps {
            let mut session = engine.session().unwrap();
            sampler.reset();
            let t0 = Instant::now();
            let out = rt.block_on(session.run(&sql)).unwrap();
            let Some(Collected::Rows(_, batches)) = out.into_iter().next() else {
                panic!("no rows")
            };
            times.push(t0.elapsed().as_secs_f64());
            peaks.push(sampler.peak_mib());
            detail = if name.starts_with("asof_count") {
                let b = &batches[0];
                format!(
                    "{} rows, {} matched, sum_f1={:.6}",
                    b.column(0).as_primitive::<Int64Type>().value(0),
                    b.column(1).as_primitive::<Int64Type>().value(0),
                    b.column(2).as_primitive::<Float64Type>().value(0)
                )
            } else if name.starts_with("asof") {
                let (rows, matched, sum) = checksums(&batches, 2, 3);
                format!("{rows} rows, {matched} matched, sum_f1={sum:.6}")
            } else {
                let (rows, _, sum) = checksums(&batches, 1, 2);
                format!("{rows} rows, sum_f1={sum:.6}")
            };
            drop(batches);
        }
        let m = median(times.clone());
        let rate = if name.starts_with("asof") {
            format!("{:.0}", s as f64 / m)
        } else {
            String::new()
        };
        println!(
            "| {name} | {m:.3} | {:.3} | {:.3} | {rate} | {:.0} | {detail} |",
            times.iter().copied().fold(f64::INFINITY, f64::min),
            times.iter().copied().fold(0.0, f64::max),
            median(peaks)
        );
    }
    lookups(&rt, &engine, e);
}

/// Mean wall time per execution of the online lookup paths.
fn lookups(rt: &tokio::runtime::Runtime, engine: &Arc<Engine>, e: i64) {
    use datafusion::common::ScalarValue;
    let n = env("LOOKUPS", 200_000) as u64;
    let mut session = engine.session().unwrap();
    let key = |i: u64| 1 + (mix64(i) % e as u64) as i64;
    let prepared = rt
        .block_on(session.prepare("SELECT * FROM features WHERE entity_id = $1", &[]))
        .unwrap();
    println!("\n## online lookups, single thread, {n} executions each (random keys)");
    println!("| path | mean us per execution |");
    println!("|---|---:|");
    let t0 = Instant::now();
    for i in 0..n {
        let out = rt
            .block_on(session.execute_prepared(&prepared, vec![ScalarValue::Int64(Some(key(i)))]))
            .unwrap();
        let rows = rt.block_on(out.collect()).unwrap();
        std::hint::black_box(rows);
    }
    println!(
        "| prepared `SELECT * ... WHERE entity_id = $1` | {:.2} |",
        t0.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let t0 = Instant::now();
    for i in 0..n {
        let sql = format!("SELECT * FROM features WHERE entity_id = {}", key(i));
        std::hint::black_box(rt.block_on(session.run(&sql)).unwrap());
    }
    println!(
        "| SQL text `SELECT * ... WHERE entity_id = <literal>` | {:.2} |",
        t0.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let m = n / 20;
    let t0 = Instant::now();
    for i in 0..m {
        let sql = format!(
            "SELECT f1 + f2 AS s FROM features WHERE entity_id = {}",
            key(i)
        );
        std::hint::black_box(rt.block_on(session.run(&sql)).unwrap());
    }
    println!(
        "| planned by DataFusion each time (`SELECT f1 + f2 ...`, {m} runs) | {:.2} |",
        t0.elapsed().as_secs_f64() * 1e6 / m as f64
    );
}
