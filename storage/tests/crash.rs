//! Crash test: a child process commits batches with fsync-per-commit and records each
//! acknowledgement; the parent kills it with SIGKILL at random moments, reopens the
//! database and checks that every acknowledged batch is present in full and that no
//! batch is partially visible.
//!
//! The child is this test binary re-executed with `HINDSIGHT_CRASH_CHILD` set (see
//! `crash_child_entry`). Each batch writes `n` rows to `t` and one row to `batches`
//! (the batch id and `n`), so atomicity is checked across tables too. The child uses a
//! tiny memtable so flushes, compactions and manifest edits happen while it is killed.
//! `HINDSIGHT_CRASH_CYCLES=N` runs N kill cycles (default 50).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use hindsight_storage::*;

const CHILD_ENV: &str = "HINDSIGHT_CRASH_CHILD";
const CYCLE_ENV: &str = "HINDSIGHT_CRASH_CYCLE";

fn options() -> Options {
    Options {
        sync: SyncPolicy::Always,
        memtable_bytes: 32 << 10,
        l0_compaction_trigger: 2,
        level1_bytes: 128 << 10,
        target_file_bytes: 64 << 10,
        block_rows: 64,
        ..Options::default()
    }
}

fn ensure_tables(db: &Db) -> (std::sync::Arc<TableDef>, std::sync::Arc<TableDef>) {
    let t = db.table("t").or_else(|_| {
        db.create_table(TableDef::new(
            "t",
            vec![
                i64c("k").not_null(),
                tsc("ts").not_null(),
                i64c("batch"),
                i64c("i"),
                textc("pad"),
            ],
            vec![0],
            Some(1),
            TableOptions::default(),
        ))
    });
    let b = db.table("batches").or_else(|_| {
        db.create_table(TableDef::new(
            "batches",
            vec![i64c("batch").not_null(), i64c("rows")],
            vec![0],
            None,
            TableOptions::default(),
        ))
    });
    (t.unwrap(), b.unwrap())
}

/// The child: write batches forever from three threads, appending "batch rows" to the
/// ack file after each acknowledged commit.
#[test]
fn crash_child_entry() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // not a child: nothing to do in a normal test run
    };
    let cycle: i64 = std::env::var(CYCLE_ENV).unwrap().parse().unwrap();
    let dir = Path::new(&dir);
    let db = Db::open(dir.join("db"), options()).unwrap();
    let (t, b) = ensure_tables(&db);
    let mut handles = Vec::new();
    for thread in 0..3i64 {
        let (db, t, b) = (db.clone(), t.clone(), b.clone());
        let ack_path = dir.join("acks");
        handles.push(std::thread::spawn(move || {
            let mut ack = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(ack_path)
                .unwrap();
            let mut rng = Rng((cycle as u64) << 8 | thread as u64);
            for n in 0.. {
                let id = (cycle << 32) | (thread << 24) | n;
                let rows = 1 + rng.below(12) as i64;
                let mut wb = WriteBatch::new();
                for i in 0..rows {
                    let pad = "x".repeat(rng.below(40) as usize);
                    wb.put(
                        &t,
                        &[
                            Value::Int64(id * 16 + i),
                            Value::Timestamp(id),
                            Value::Int64(id),
                            Value::Int64(i),
                            Value::Text(pad),
                        ],
                    )
                    .unwrap();
                }
                wb.put(&b, &[Value::Int64(id), Value::Int64(rows)]).unwrap();
                db.write(wb).unwrap();
                // One write() per line: O_APPEND keeps concurrent lines whole.
                ack.write_all(format!("{id} {rows}\n").as_bytes()).unwrap();
            }
        }));
    }
    for h in handles {
        let _ = h.join();
    }
}

fn read_acks(path: &Path) -> BTreeMap<i64, i64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut it = line.split(' ');
        if let (Some(a), Some(b)) = (it.next(), it.next())
            && let (Ok(a), Ok(b)) = (a.parse(), b.parse())
        {
            out.insert(a, b);
        }
    }
    out
}

/// Reopen and check: acknowledged batches complete, no batch partial.
fn verify(dir: &Path, acks: &BTreeMap<i64, i64>) -> usize {
    let db = Db::open(
        dir.join("db"),
        Options {
            background_threads: false,
            ..options()
        },
    )
    .unwrap();
    let (t, b) = ensure_tables(&db);
    let all = ScanOptions::history(i64::MIN, i64::MAX);
    let mut per_batch: HashMap<i64, i64> = HashMap::new();
    for row in rows(db.scan(&t, &all).unwrap()) {
        let Value::Int64(id) = row[2] else {
            panic!("bad row {row:?}")
        };
        *per_batch.entry(id).or_default() += 1;
    }
    let mut declared: HashMap<i64, i64> = HashMap::new();
    for row in rows(db.scan(&b, &all).unwrap()) {
        let (Value::Int64(id), Value::Int64(n)) = (&row[0], &row[1]) else {
            panic!("bad row {row:?}")
        };
        declared.insert(*id, *n);
    }
    for (id, n) in acks {
        assert_eq!(
            declared.get(id),
            Some(n),
            "acknowledged batch {id:#x} lost its header"
        );
        assert_eq!(
            per_batch.get(id),
            Some(n),
            "acknowledged batch {id:#x} lost rows"
        );
    }
    for (id, n) in &declared {
        assert_eq!(
            per_batch.get(id),
            Some(n),
            "batch {id:#x} is partially visible"
        );
    }
    for id in per_batch.keys() {
        assert!(
            declared.contains_key(id),
            "rows of batch {id:#x} without its header"
        );
    }
    db.close().unwrap();
    declared.len()
}

#[test]
fn acknowledged_batches_survive_sigkill_at_random_moments() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let cycles: u64 = std::env::var("HINDSIGHT_CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng(0xC0FFEE);
    let mut batches = 0;
    for cycle in 0..cycles {
        let mut child = Command::new(&exe)
            .args([
                "crash_child_entry",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env(CYCLE_ENV, (cycle + 1).to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(20 + rng.below(250)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let acks = read_acks(&dir.path().join("acks"));
        batches = verify(dir.path(), &acks);
    }
    let acked = read_acks(&dir.path().join("acks")).len();
    eprintln!("{cycles} kill cycles: {acked} acknowledged batches, {batches} batches present");
    assert!(acked > 0, "the child never acknowledged a write");
}
