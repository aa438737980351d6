//! Corruption tests: flipped and truncated bytes in every file kind (WAL segments,
//! SSTs, the manifest, CURRENT) must give a typed error or correct data (for a WAL
//! tail, the durable prefix of batches), never a panic and never a wrong value.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use hindsight_storage::*;

const BATCHES: i64 = 60;
const ROWS: i64 = 5;

fn options(clock: &ManualClock) -> Options {
    Options {
        background_threads: false,
        ..tiny_options(clock.clock())
    }
}

fn value(batch: i64, j: i64) -> Value {
    Value::Text(format!(
        "b{batch}-r{j}-{}",
        "z".repeat((batch % 7) as usize)
    ))
}

/// A database with compacted files, level-0 files and a WAL tail. Returns the number
/// of batches that are only in the WAL.
fn build(dir: &Path, clock: &ManualClock) -> i64 {
    let db = Db::open(dir, options(clock)).unwrap();
    let t = db
        .create_table(TableDef::new(
            "t",
            vec![
                i64c("k").not_null(),
                tsc("ts").not_null(),
                i64c("batch"),
                textc("v"),
            ],
            vec![0],
            Some(1),
            TableOptions::default(),
        ))
        .unwrap();
    let wal_only = 12;
    for b in 0..BATCHES {
        let mut wb = WriteBatch::new();
        for j in 0..ROWS {
            wb.put(
                &t,
                &[
                    Value::Int64((b * ROWS + j) % 97),
                    Value::Timestamp(b * 10 + j),
                    Value::Int64(b),
                    value(b, j),
                ],
            )
            .unwrap();
        }
        db.write(wb).unwrap();
        if b == 30 {
            db.compact_now().unwrap();
        }
        if b == BATCHES - wal_only - 1 {
            db.flush().unwrap();
        }
    }
    db.close().unwrap();
    wal_only
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Open and read everything; Ok(batches seen) if the data read is correct, Err if the
/// engine reported an error. Panics (test failure) on wrong data.
fn check(dir: &Path, clock: &ManualClock, wal_only: i64) -> Result<usize> {
    let db = Db::open(dir, options(clock))?;
    let t = db.table("t")?;
    let history = db.scan(&t, &ScanOptions::history(i64::MIN, i64::MAX))?;
    let mut seen: BTreeMap<i64, i64> = BTreeMap::new();
    for batch in history {
        let batch = batch?;
        for row in rows([Ok(batch)]) {
            let (Value::Int64(k), Value::Timestamp(ts), Value::Int64(b)) =
                (&row[0], &row[1], &row[2])
            else {
                panic!("wrong shape: {row:?}");
            };
            let j = ts - b * 10;
            assert!(
                (0..ROWS).contains(&j),
                "wrong event time {ts} for batch {b}"
            );
            assert_eq!(*k, (b * ROWS + j) % 97, "wrong key");
            assert_eq!(row[3], value(*b, j), "wrong value");
            *seen.entry(*b).or_default() += 1;
        }
    }
    // Whole batches only, and a prefix: everything flushed, then a WAL prefix.
    for (b, n) in &seen {
        assert_eq!(*n, ROWS, "batch {b} partially visible");
    }
    let present: Vec<i64> = seen.keys().copied().collect();
    let expected_prefix: Vec<i64> = (0..present.len() as i64).collect();
    assert_eq!(present, expected_prefix, "batches are not a prefix");
    assert!(
        present.len() as i64 >= BATCHES - wal_only,
        "flushed data lost without an error"
    );
    // Point lookups agree with the scan.
    let at = ReadAt::latest(clock.now()).without_ttl();
    for k in 0..97 {
        db.get(&t, &[Value::Int64(k)], &at)?;
    }
    Ok(present.len())
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != "LOCK"))
        .collect();
    v.sort();
    v
}

/// Byte positions to damage in a file of `len` bytes: every byte of small files, a
/// stride plus the first and last 96 bytes of larger ones.
fn positions(len: usize) -> Vec<usize> {
    if len <= 600 {
        return (0..len).collect();
    }
    let mut p: Vec<usize> = (0..96).chain(len - 96..len).collect();
    p.extend((96..len - 96).step_by((len / 300).max(1)));
    p
}

enum Damage {
    Flip(usize),
    Truncate(usize),
}

fn damage_each_file(kind: &str, pick: impl Fn(&str) -> bool) {
    let pristine = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let wal_only = build(pristine.path(), &clock);
    let targets: Vec<PathBuf> = files(pristine.path())
        .into_iter()
        .filter(|p| pick(p.file_name().unwrap().to_str().unwrap()))
        .collect();
    assert!(!targets.is_empty(), "no {kind} files to damage");
    let (mut errors, mut ok) = (0, 0);
    for target in &targets {
        let bytes = std::fs::read(target).unwrap();
        let mut cases: Vec<Damage> = positions(bytes.len())
            .into_iter()
            .map(Damage::Flip)
            .collect();
        cases.extend(
            positions(bytes.len())
                .into_iter()
                .step_by(3)
                .map(Damage::Truncate),
        );
        for case in cases {
            let d = tempfile::tempdir().unwrap();
            copy_dir(pristine.path(), d.path());
            let victim = d.path().join(target.file_name().unwrap());
            let mut b = bytes.clone();
            let what = match case {
                Damage::Flip(i) => {
                    b[i] ^= 1 << (i % 8);
                    format!("flip byte {i}")
                }
                Damage::Truncate(n) => {
                    b.truncate(n);
                    format!("truncate to {n}")
                }
            };
            std::fs::write(&victim, &b).unwrap();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                check(d.path(), &clock, wal_only)
            }));
            match r {
                Ok(Ok(_)) => ok += 1,
                Ok(Err(_)) => errors += 1,
                Err(_) => panic!(
                    "{} {}: panic or wrong data (see above)",
                    target.display(),
                    what
                ),
            }
        }
    }
    eprintln!(
        "{kind}: {} files, {errors} typed errors, {ok} correct reads",
        targets.len()
    );
    assert!(errors > 0, "damage to {kind} files was never detected");
}

#[test]
fn damaged_wal_segments_give_an_error_or_the_durable_prefix() {
    damage_each_file("WAL", |n| n.ends_with(".wal"));
}

#[test]
fn damaged_sst_files_give_an_error_never_wrong_data() {
    damage_each_file("SST", |n| n.ends_with(".sst"));
}

#[test]
fn damaged_manifest_gives_an_error_never_silent_loss() {
    damage_each_file("manifest", |n| n.starts_with("MANIFEST-"));
}

#[test]
fn damaged_current_file_gives_an_error() {
    damage_each_file("CURRENT", |n| n == "CURRENT");
}

#[test]
fn undamaged_copy_reads_everything() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    build(d.path(), &clock);
    assert_eq!(check(d.path(), &clock, 0).unwrap(), BATCHES as usize);
    // and again after that open rewrote the manifest and flushed the WAL
    assert_eq!(check(d.path(), &clock, 0).unwrap(), BATCHES as usize);
}

#[test]
fn torn_wal_tail_followed_by_an_empty_segment_still_recovers() {
    // Recovery killed after creating its new, empty segment and before writing its
    // manifest leaves: old segment (torn tail), new segment (header only).
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let wal_only = build(d.path(), &clock);
    let wal = files(d.path())
        .into_iter()
        .rfind(|p| p.extension().is_some_and(|e| e == "wal"))
        .unwrap();
    let len = std::fs::metadata(&wal).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&wal)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let n: u64 = wal.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let mut header = b"HSIGHTW1".to_vec();
    header.extend_from_slice(&1u32.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    std::fs::write(d.path().join(format!("{:06}.wal", n + 1)), header).unwrap();
    let got = check(d.path(), &clock, wal_only).unwrap();
    assert_eq!(got as i64, BATCHES - 1, "only the torn batch is lost");
}
