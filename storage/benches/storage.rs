//! Criterion benchmarks of the storage engine (`cargo bench -p hindsight-storage`).
//!
//! Data follows `../shared/bench/gen.py` exactly (same splitmix64 formulas): E entities
//! x V versions, event times over 30 days, eight float8 and two int8 features.
//!
//! - `ingest`: 1,000-row batches from Arrow, fsync per batch (group commit), 1 and 4
//!   writer threads, background flush and compaction running.
//! - `lookup`: point lookups over E x V versions (default 1M x 10, built once and
//!   cached under the target directory): latest hit, latest through the row-wise
//!   online path, latest miss, as-of hit, multi-get of 100 keys.
//! - `scan`: latest-per-key and full-history scans into Arrow.
//! - `compaction`: full compaction of freshly flushed level-0 files; reports
//!   write amplification.
//!
//! `HINDSIGHT_BENCH_ENTITIES` / `HINDSIGHT_BENCH_VERSIONS` change the data size;
//! `HINDSIGHT_BENCH_DIR` says where built data sets are cached.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hindsight_storage::*;

#[path = "shared/dataset.rs"]
mod dataset;
use dataset::*;

/// The lookup/scan data set, built once (bulk load, then full compaction) and reused.
fn lookup_db() -> (Db, Arc<TableDef>) {
    let (e, v) = (entities(), versions());
    let dir = bench_dir(&format!("lookup-{e}x{v}"));
    let ready = dir.join("READY");
    if !ready.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        let t0 = Instant::now();
        let db = Db::open(
            &dir,
            Options {
                sync: SyncPolicy::Never,
                ..Options::default()
            },
        )
        .unwrap();
        let t = db
            .create_table(features_table(ScalarType::TimestampTz))
            .unwrap();
        ingest_rows(&db, &t, e, v, 10_000);
        db.compact_now().unwrap();
        db.close().unwrap();
        std::fs::write(&ready, b"").unwrap();
        println!("built {} versions in {:.1?}", e * v, t0.elapsed());
    }
    let db = Db::open(&dir, Options::default()).unwrap();
    let t = db.table("features").unwrap();
    (db, t)
}

fn ingest(c: &mut Criterion) {
    let mut group = c.benchmark_group("ingest");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(1000));
    for threads in [1usize, 4] {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let t = db
            .create_table(features_table(ScalarType::TimestampTz))
            .unwrap();
        // Pre-built batches: the benchmark measures the engine, not the generator.
        let batches: Vec<RecordBatch> = (0..64)
            .map(|b| {
                let mut g = Gen::new(1000);
                for i in 0..1000 {
                    let n = b * 1000 + i;
                    g.push(1 + (mix64(n as u64) % 1_000_000) as i64, n % 10, 10);
                }
                g.batch()
            })
            .collect();
        let batches = Arc::new(batches);
        group.bench_function(
            BenchmarkId::new("rows_1000_per_fsync", format!("{threads}_writers")),
            |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for w in 0..threads {
                            let (db, t, batches) = (&db, &t, &batches);
                            s.spawn(move || {
                                let mine = (iters as usize + threads - 1 - w) / threads;
                                for i in 0..mine {
                                    let mut wb = WriteBatch::new();
                                    wb.put_arrow(t, &batches[(i * threads + w) % batches.len()])
                                        .unwrap();
                                    db.write(wb).unwrap();
                                }
                            });
                        }
                    });
                    start.elapsed()
                })
            },
        );
        let s = db.stats();
        println!(
            "ingest {threads} writers: {} rows, {} fsyncs, {} stalls ({:.1} ms), write amplification {:.2}",
            s.rows_committed,
            s.wal_syncs,
            s.stalls,
            s.stall_micros as f64 / 1000.0,
            s.write_amplification
        );
    }
    group.finish();
}

fn lookup(c: &mut Criterion) {
    let (db, t) = lookup_db();
    let e = entities();
    let snap = db.snapshot();
    let proj = Projection::new(&t, None).unwrap();
    let mut group = c.benchmark_group("lookup");
    group.sample_size(30);
    let now = db.now_micros();
    let latest = ReadAt::latest(now);
    let mut k = 0u64;
    let mut next_key = move || {
        k += 1;
        1 + (mix64(k) % e as u64) as i64
    };
    group.bench_function("latest_hit", |b| {
        b.iter(|| {
            let r = snap
                .get(
                    &t,
                    &[Value::Int64(next_key())],
                    &latest.without_ttl(),
                    &proj,
                )
                .unwrap();
            assert!(r.is_some());
        })
    });
    // The online path: encoded key, values into a reused buffer (what the server's
    // prepared point lookup runs).
    let mut encoded = vec![Vec::new()];
    group.bench_function("latest_rows", |b| {
        b.iter(|| {
            encoded[0] =
                encode_key(&[Value::Int64(next_key())], &[ScalarType::Int64], &[]).unwrap();
            let n = snap
                .lookup_rows(&t, &encoded, &latest.without_ttl(), &proj, |row| {
                    std::hint::black_box(row);
                })
                .unwrap();
            assert_eq!(n, 1);
        })
    });
    group.bench_function("latest_miss", |b| {
        b.iter(|| {
            let r = snap
                .get(
                    &t,
                    &[Value::Int64(e + next_key())],
                    &latest.without_ttl(),
                    &proj,
                )
                .unwrap();
            assert!(r.is_none());
        })
    });
    let mut j = 0u64;
    group.bench_function("as_of_hit", |b| {
        b.iter(|| {
            j += 1;
            let when = (BASE + 3 * DAY + (mix64(j) % (27 * DAY as u64)) as i64) * 1_000_000;
            let r = snap
                .get(&t, &[Value::Int64(next_key())], &ReadAt::as_of(when), &proj)
                .unwrap();
            assert!(r.is_some());
        })
    });
    group.throughput(Throughput::Elements(100));
    group.bench_function("multi_get_100", |b| {
        b.iter(|| {
            let keys: Vec<Vec<Value>> = (0..100).map(|_| vec![Value::Int64(next_key())]).collect();
            let r = snap
                .multi_get(&t, &keys, &latest.without_ttl(), &proj)
                .unwrap();
            assert_eq!(r.len(), 100);
        })
    });
    // The online batch path (`= ANY($1)`): 100 encoded keys through `lookup_rows`.
    group.bench_function("lookup_rows_100", |b| {
        b.iter(|| {
            let keys: Vec<Vec<u8>> = (0..100)
                .map(|_| {
                    encode_key(&[Value::Int64(next_key())], &[ScalarType::Int64], &[]).unwrap()
                })
                .collect();
            let n = snap
                .lookup_rows(&t, &keys, &latest.without_ttl(), &proj, |row| {
                    std::hint::black_box(row);
                })
                .unwrap();
            assert_eq!(n, 100);
        })
    });
    group.finish();
}

fn scan(c: &mut Criterion) {
    let (db, t) = lookup_db();
    let total = (entities() * versions()) as u64;
    let mut group = c.benchmark_group("scan");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(total));
    group.bench_function("latest_per_key_all_columns", |b| {
        b.iter(|| {
            let mut n = 0;
            for batch in db
                .scan(
                    &t,
                    &ScanOptions::latest(ReadAt::latest(db.now_micros()).without_ttl()),
                )
                .unwrap()
            {
                n += batch.unwrap().num_rows();
            }
            assert_eq!(n as i64, entities());
        })
    });
    group.bench_function("history_all_columns", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for batch in db
                .scan(&t, &ScanOptions::history(i64::MIN, i64::MAX))
                .unwrap()
            {
                n += batch.unwrap().num_rows() as u64;
            }
            assert_eq!(n, total);
        })
    });
    group.finish();
}

fn compaction(c: &mut Criterion) {
    let rows: i64 = env("HINDSIGHT_BENCH_COMPACTION_ROWS", 2_000_000);
    let mut group = c.benchmark_group("compaction");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(rows as u64));
    let mut last_stats = None;
    group.bench_function("full_compaction_of_l0", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                let opts = Options {
                    sync: SyncPolicy::Never,
                    background_threads: false,
                    l0_stop_trigger: 1000,
                    l0_slowdown_trigger: 1000,
                    ..Options::default()
                };
                let db = Db::open(dir.path(), opts).unwrap();
                let t = db
                    .create_table(features_table(ScalarType::TimestampTz))
                    .unwrap();
                ingest_rows(&db, &t, rows / 10, 10, 10_000);
                db.flush().unwrap();
                let start = Instant::now();
                db.compact_now().unwrap();
                total += start.elapsed();
                last_stats = Some(db.stats());
            }
            total
        })
    });
    if let Some(s) = last_stats {
        println!(
            "compaction: read {} MB, wrote {} MB, flushed {} MB, WAL {} MB, write amplification {:.2}",
            s.compaction_bytes_read >> 20,
            s.compaction_bytes_written >> 20,
            s.flush_bytes_written >> 20,
            s.wal_bytes_written >> 20,
            s.write_amplification
        );
    }
    group.finish();
}

criterion_group!(benches, ingest, lookup, scan, compaction);
criterion_main!(benches);
