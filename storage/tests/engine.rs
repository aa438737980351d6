//! Scenario tests of the engine's contract, one behaviour per test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use hindsight_storage::*;

fn open(dir: &std::path::Path, clock: &ManualClock) -> Db {
    Db::open(dir, tiny_options(clock.clock())).unwrap()
}

fn put(db: &Db, t: &TableDef, id: i64, et: i64, rate: f64) -> CommitInfo {
    let mut b = WriteBatch::new();
    b.put(
        t,
        &[
            Value::Int64(id),
            Value::Timestamp(et),
            Value::Float64(rate),
            Value::Null,
        ],
    )
    .unwrap();
    db.write(b).unwrap()
}

fn rate(db: &Db, t: &TableDef, id: i64, at: ReadAt) -> Option<f64> {
    db.get(t, &[Value::Int64(id)], &at)
        .unwrap()
        .map(|r| match r.values[2] {
            Value::Float64(f) => f,
            ref v => panic!("unexpected {v:?}"),
        })
}

/// A `driver_stats` table with the given retention and no TTL.
fn retained(db: &Db, retention_micros: i64) -> std::sync::Arc<TableDef> {
    db.create_table(driver_stats(TableOptions {
        ttl_micros: None,
        retention_micros: Some(retention_micros),
    }))
    .unwrap()
}

const NO_TTL: TableOptions = TableOptions {
    ttl_micros: None,
    retention_micros: None,
};

#[test]
fn latest_version_wins_and_as_of_sees_older_versions() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let db = open(d.path(), &clock);
    let t = db.create_table(driver_stats(NO_TTL)).unwrap();
    put(&db, &t, 1, 100, 0.1);
    put(&db, &t, 1, 200, 0.2);
    assert_eq!(
        rate(&db, &t, 1, ReadAt::latest(clock.now()).without_ttl()),
        Some(0.2)
    );
    assert_eq!(rate(&db, &t, 1, ReadAt::as_of(150)), Some(0.1));
    assert_eq!(rate(&db, &t, 1, ReadAt::as_of(99)), None);
    assert_eq!(rate(&db, &t, 2, ReadAt::as_of(1_000)), None);
}

#[test]
fn late_write_never_changes_the_latest_value_even_from_a_newer_file() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let db = open(d.path(), &clock);
    let t = db.create_table(driver_stats(NO_TTL)).unwrap();
    put(&db, &t, 7, 500, 0.5);
    db.flush().unwrap();
    put(&db, &t, 7, 100, 0.1); // late: older event time, newer file
    db.flush().unwrap();
    let latest = ReadAt::latest(clock.now()).without_ttl();
    assert_eq!(rate(&db, &t, 7, latest), Some(0.5));
    assert_eq!(rate(&db, &t, 7, ReadAt::as_of(200)), Some(0.1));
    db.compact_now().unwrap();
    assert_eq!(rate(&db, &t, 7, latest), Some(0.5));
    assert_eq!(rate(&db, &t, 7, ReadAt::as_of(200)), Some(0.1));
}

#[test]
fn same_key_and_event_time_is_a_new_system_version() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let db = open(d.path(), &clock);
    let t = db.create_table(driver_stats(NO_TTL)).unwrap();
    let first = put(&db, &t, 3, 100, 1.0);
    clock.advance(10);
    put(&db, &t, 3, 100, 2.0);
    db.flush().unwrap();
    assert_eq!(rate(&db, &t, 3, ReadAt::as_of(100)), Some(2.0));
    let before = ReadAt::as_of(100).known_at(SystemAt::Seq(first.seq));
    assert_eq!(rate(&db, &t, 3, before), Some(1.0));
    let by_time = ReadAt::as_of(100).known_at(SystemAt::Micros(first.commit_micros));
    assert_eq!(rate(&db, &t, 3, by_time), Some(1.0));
    // history keeps both
    let mut opts = ScanOptions::history(i64::MIN, i64::MAX);
    opts.with_system_time = true;
    let all = rows(db.scan(&t, &opts).unwrap());
    assert_eq!(all.len(), 2);
    assert_eq!(all[0][2], Value::Float64(2.0), "newest write first");
}

#[test]
fn tombstone_removes_entity_from_current_state_but_not_from_the_past() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let db = open(d.path(), &clock);
    let t = db.create_table(driver_stats(NO_TTL)).unwrap();
    let c = put(&db, &t, 9, 500, 0.9);
    clock.set(2_000);
    let mut b = WriteBatch::new();
    b.delete(&t, &[Value::Int64(9)], None).unwrap();
    db.write(b).unwrap();
    for _ in 0..2 {
        assert_eq!(
            rate(&db, &t, 9, ReadAt::latest(clock.now()).without_ttl()),
            None
        );
        assert_eq!(rate(&db, &t, 9, ReadAt::as_of(600)), Some(0.9));
        let known_before = ReadAt::latest(clock.now())
            .without_ttl()
            .known_at(SystemAt::Seq(c.seq));
        assert_eq!(rate(&db, &t, 9, known_before), Some(0.9));
        let latest = rows(
            db.scan(
                &t,
                &ScanOptions::latest(ReadAt::latest(clock.now()).without_ttl()),
            )
            .unwrap(),
        );
        assert!(latest.is_empty());
        db.compact_now().unwrap();
    }
    // a newer write revives the entity
    put(&db, &t, 9, 3_000, 1.5);
    assert_eq!(
        rate(&db, &t, 9, ReadAt::latest(clock.now()).without_ttl()),
        Some(1.5)
    );
}

#[test]
fn ttl_hides_stale_latest_values_inclusively() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(10_000);
    let db = open(d.path(), &clock);
    let t = db
        .create_table(driver_stats(TableOptions {
            ttl_micros: Some(1_000),
            retention_micros: None,
        }))
        .unwrap();
    put(&db, &t, 1, 9_000, 0.1); // exactly ttl old at now=10_000: still served
    put(&db, &t, 2, 8_999, 0.2); // one microsecond too old
    assert_eq!(rate(&db, &t, 1, ReadAt::latest(10_000)), Some(0.1));
    assert_eq!(rate(&db, &t, 2, ReadAt::latest(10_000)), None);
    // as_of applies TTL relative to the as-of time, not now
    assert_eq!(rate(&db, &t, 2, ReadAt::as_of(9_500)), Some(0.2));
    let scan = rows(
        db.scan(&t, &ScanOptions::latest(ReadAt::latest(10_000)))
            .unwrap(),
    );
    assert_eq!(scan.len(), 1);
    assert_eq!(scan[0][0], Value::Int64(1));
}

#[test]
fn system_time_travel_outside_history_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(5_000);
    let db = open(d.path(), &clock);
    let t = db.create_table(driver_stats(NO_TTL)).unwrap();
    put(&db, &t, 1, 1, 1.0);
    let at = |m| {
        ReadAt::latest(clock.now())
            .without_ttl()
            .known_at(SystemAt::Micros(m))
    };
    assert!(matches!(
        db.get(&t, &[Value::Int64(1)], &at(9_999_999)),
        Err(Error::OutsideRetention(_))
    ));
    assert!(matches!(
        db.get(&t, &[Value::Int64(1)], &at(10)),
        Err(Error::OutsideRetention(_))
    ));
    assert!(
        db.get(&t, &[Value::Int64(1)], &at(5_000))
            .unwrap()
            .is_some()
    );
}

#[test]
fn data_survives_reopen_from_wal_and_from_files() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    {
        let db = open(d.path(), &clock);
        let t = db.create_table(driver_stats(NO_TTL)).unwrap();
        for i in 0..300 {
            put(&db, &t, i % 37, i, i as f64);
        }
        db.flush().unwrap();
        for i in 300..400 {
            put(&db, &t, i % 37, i, i as f64);
        }
        db.close().unwrap();
    }
    let db = open(d.path(), &clock);
    let t = db.table("driver_stats").unwrap();
    let latest = rows(
        db.scan(
            &t,
            &ScanOptions::latest(ReadAt::latest(clock.now()).without_ttl()),
        )
        .unwrap(),
    );
    assert_eq!(latest.len(), 37);
    for r in &latest {
        let Value::Int64(id) = r[0] else { panic!() };
        let newest = (0..400).filter(|i| i % 37 == id).max().unwrap();
        assert_eq!(r[2], Value::Float64(newest as f64));
    }
    let history = rows(
        db.scan(&t, &ScanOptions::history(i64::MIN, i64::MAX))
            .unwrap(),
    );
    assert_eq!(history.len(), 400);
}

#[test]
fn add_column_reads_old_versions_as_null() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let db = open(d.path(), &clock);
    let t = db.create_table(driver_stats(NO_TTL)).unwrap();
    put(&db, &t, 1, 10, 1.0);
    db.flush().unwrap();
    let t2 = db
        .add_column(
            "driver_stats",
            ColumnDef::new("embedding", DataType::List(ScalarType::Float32)),
        )
        .unwrap();
    let mut b = WriteBatch::new();
    b.put(
        &t2,
        &[
            Value::Int64(2),
            Value::Timestamp(20),
            Value::Float64(2.0),
            Value::Null,
            Value::List(vec![Value::Float32(0.5), Value::Float32(0.25)]),
        ],
    )
    .unwrap();
    db.write(b).unwrap();
    let now = ReadAt::latest(clock.now()).without_ttl();
    let r1 = db.get(&t2, &[Value::Int64(1)], &now).unwrap().unwrap();
    assert_eq!(r1.values[4], Value::Null);
    let r2 = db.get(&t2, &[Value::Int64(2)], &now).unwrap().unwrap();
    assert_eq!(
        r2.values[4],
        Value::List(vec![Value::Float32(0.5), Value::Float32(0.25)])
    );
    db.compact_now().unwrap();
    let all = rows(db.scan(&t2, &ScanOptions::latest(now)).unwrap());
    assert_eq!(all.len(), 2);
    assert_eq!(all[0][4], Value::Null);
    // and a write with the old definition still works (fewer columns, NULL for the rest)
    let mut b = WriteBatch::new();
    b.put(
        &t,
        &[
            Value::Int64(3),
            Value::Timestamp(30),
            Value::Float64(3.0),
            Value::Null,
        ],
    )
    .unwrap();
    db.write(b).unwrap();
    assert_eq!(
        db.get(&t2, &[Value::Int64(3)], &now)
            .unwrap()
            .unwrap()
            .values[4],
        Value::Null
    );
}

#[test]
fn append_only_log_keeps_every_row_in_insertion_order() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let db = open(d.path(), &clock);
    let t = db
        .create_table(TableDef::new(
            "labels",
            vec![
                i64c("driver_id").not_null(),
                tsc("ts").not_null(),
                ColumnDef::new("label", DataType::Scalar(ScalarType::Bool)),
            ],
            vec![],
            Some(1),
            NO_TTL,
        ))
        .unwrap();
    for i in 0..50 {
        let mut b = WriteBatch::new();
        b.put(
            &t,
            &[
                Value::Int64(i % 3),
                Value::Timestamp(100 - i),
                Value::Bool(i % 2 == 0),
            ],
        )
        .unwrap();
        b.put(
            &t,
            &[
                Value::Int64(i % 3),
                Value::Timestamp(100 - i),
                Value::Bool(true),
            ],
        )
        .unwrap();
        db.write(b).unwrap();
        if i % 20 == 0 {
            db.flush().unwrap();
        }
    }
    let now = ReadAt::latest(clock.now()).without_ttl();
    let all = rows(db.scan(&t, &ScanOptions::latest(now)).unwrap());
    assert_eq!(all.len(), 100, "duplicate rows of a log are distinct rows");
    let ts: Vec<Value> = all.iter().step_by(2).map(|r| r[1].clone()).collect();
    let want: Vec<Value> = (0..50).map(|i| Value::Timestamp(100 - i)).collect();
    assert_eq!(ts, want, "insertion order");
}

#[test]
fn tables_without_event_time_use_commit_time() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let db = open(d.path(), &clock);
    let t = db
        .create_table(TableDef::new(
            "kv",
            vec![textc("k").not_null(), i64c("v")],
            vec![0],
            None,
            NO_TTL,
        ))
        .unwrap();
    let w = |v| {
        let mut b = WriteBatch::new();
        b.put(&t, &[Value::Text("a".into()), Value::Int64(v)])
            .unwrap();
        db.write(b).unwrap()
    };
    clock.set(2_000);
    w(1);
    clock.set(3_000);
    w(2);
    let get = |at: ReadAt| {
        db.get(&t, &[Value::Text("a".into())], &at)
            .unwrap()
            .map(|r| r.values[1].clone())
    };
    assert_eq!(get(ReadAt::as_of(2_500)), Some(Value::Int64(1)));
    assert_eq!(get(ReadAt::latest(3_000)), Some(Value::Int64(2)));
    let r = db
        .get(&t, &[Value::Text("a".into())], &ReadAt::latest(3_000))
        .unwrap()
        .unwrap();
    assert_eq!(r.event_time, 3_000);
}

#[test]
fn key_range_and_projection_restrict_scans() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let db = open(d.path(), &clock);
    let t = db.create_table(driver_stats(NO_TTL)).unwrap();
    for i in 0..100 {
        put(&db, &t, i, 10, i as f64);
    }
    db.flush().unwrap();
    let mut opts = ScanOptions::latest(ReadAt::latest(clock.now()).without_ttl());
    opts.key_range = KeyRange::encoded(
        Some(encode_key(&[Value::Int64(10)], &[ScalarType::Int64], &[]).unwrap()),
        Some(encode_key(&[Value::Int64(20)], &[ScalarType::Int64], &[]).unwrap()),
    );
    opts.projection = Some(vec![2, 0]);
    let got = rows(db.scan(&t, &opts).unwrap());
    assert_eq!(got.len(), 10);
    assert_eq!(got[0], vec![Value::Float64(10.0), Value::Int64(10)]);
    assert_eq!(got[9], vec![Value::Float64(19.0), Value::Int64(19)]);
}

#[test]
fn a_batch_is_atomic_across_tables() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let db = open(d.path(), &clock);
    let a = db.create_table(driver_stats(NO_TTL)).unwrap();
    let b_def = db
        .create_table(TableDef::new(
            "other",
            vec![i64c("k").not_null(), i64c("v")],
            vec![0],
            None,
            NO_TTL,
        ))
        .unwrap();
    let before = db.snapshot();
    let mut b = WriteBatch::new();
    b.put(
        &a,
        &[
            Value::Int64(1),
            Value::Timestamp(5),
            Value::Float64(1.0),
            Value::Null,
        ],
    )
    .unwrap();
    b.put(&b_def, &[Value::Int64(1), Value::Int64(42)]).unwrap();
    db.write(b).unwrap();
    let now = ReadAt::latest(clock.now()).without_ttl();
    let proj_a = Projection::new(&a, None).unwrap();
    assert!(
        before
            .get(&a, &[Value::Int64(1)], &now, &proj_a)
            .unwrap()
            .is_none(),
        "snapshots are stable"
    );
    assert!(db.get(&a, &[Value::Int64(1)], &now).unwrap().is_some());
    assert!(db.get(&b_def, &[Value::Int64(1)], &now).unwrap().is_some());
}

#[test]
fn dropped_table_is_gone_and_its_name_reusable() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let db = open(d.path(), &clock);
    let t = db.create_table(driver_stats(NO_TTL)).unwrap();
    put(&db, &t, 1, 1, 1.0);
    db.flush().unwrap();
    db.drop_table("driver_stats").unwrap();
    assert!(matches!(
        db.table("driver_stats"),
        Err(Error::NoSuchTable(_))
    ));
    let mut b = WriteBatch::new();
    b.put(
        &t,
        &[
            Value::Int64(1),
            Value::Timestamp(2),
            Value::Null,
            Value::Null,
        ],
    )
    .unwrap();
    assert!(matches!(db.write(b), Err(Error::NoSuchTable(_))));
    let t2 = db.create_table(driver_stats(NO_TTL)).unwrap();
    assert_ne!(t.id, t2.id);
    assert!(rate(&db, &t2, 1, ReadAt::as_of(100)).is_none());
    drop(db);
    let db = open(d.path(), &clock);
    let t2 = db.table("driver_stats").unwrap();
    assert!(rate(&db, &t2, 1, ReadAt::as_of(100)).is_none());
    assert_eq!(db.stats().levels.iter().map(|l| l.files).sum::<usize>(), 0);
}

#[test]
fn retention_drops_superseded_history_but_keeps_newest_at_horizon() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let db = open(d.path(), &clock);
    let t = retained(&db, 10_000);
    for et in [100, 200, 300] {
        put(&db, &t, 1, et, et as f64);
    }
    put(&db, &t, 1, 300, 301.0); // supersedes (1, 300)
    clock.set(100_000); // horizon = 90_000: everything above is settled and old
    put(&db, &t, 1, 95_000, 95_000.0);
    db.compact_now().unwrap();
    let history = rows(
        db.scan(&t, &ScanOptions::history(i64::MIN, i64::MAX))
            .unwrap(),
    );
    let ets: Vec<Value> = history.iter().map(|r| r[1].clone()).collect();
    assert_eq!(ets, vec![Value::Timestamp(95_000), Value::Timestamp(300)]);
    assert_eq!(history[1][2], Value::Float64(301.0));
    assert!(db.stats().compaction_rows_dropped >= 3);
    // as_of at the horizon still answers correctly
    assert_eq!(rate(&db, &t, 1, ReadAt::as_of(90_000)), Some(301.0));
}

/// Found by the model test once it covered retention: compaction used to drop a
/// settled tombstone below the horizon together with everything older, so a late
/// write with an older event time, arriving after that compaction, became the
/// entity's current state although the delete still hides it.
#[test]
fn a_late_write_stays_hidden_by_a_delete_that_compaction_has_settled() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let db = open(d.path(), &clock);
    let t = retained(&db, 10_000);
    put(&db, &t, 1, 500, 1.0);
    let mut b = WriteBatch::new();
    b.delete(&t, &[Value::Int64(1)], Some(900)).unwrap();
    db.write(b).unwrap();
    clock.set(100_000); // the delete is settled and below the horizon
    db.compact_now().unwrap();
    put(&db, &t, 1, 700, 2.0); // late: older than the delete's event time
    assert_eq!(
        rate(&db, &t, 1, ReadAt::latest(clock.now()).without_ttl()),
        None
    );
    db.compact_now().unwrap();
    assert_eq!(
        rate(&db, &t, 1, ReadAt::latest(clock.now()).without_ttl()),
        None
    );
    assert_eq!(rate(&db, &t, 1, ReadAt::as_of(95_000)), None);
}

#[test]
fn stats_report_files_and_amplification() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let db = open(d.path(), &clock);
    let t = db.create_table(driver_stats(NO_TTL)).unwrap();
    for i in 0..2_000 {
        put(&db, &t, i % 101, i, 0.0);
    }
    db.compact_now().unwrap();
    let s = db.stats();
    assert_eq!(s.rows_committed, 2_000);
    assert!(s.flushes >= 1);
    assert!(s.compactions >= 1);
    assert!(s.write_amplification > 0.0);
    assert_eq!(s.levels.iter().map(|l| l.rows).sum::<u64>(), 2_000);
}

#[test]
fn second_open_of_the_same_directory_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let _db = open(d.path(), &clock);
    assert!(matches!(
        Db::open(d.path(), tiny_options(clock.clock())),
        Err(Error::Locked(_))
    ));
}

#[test]
fn overlay_shows_uncommitted_writes_to_current_reads_only() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let db = open(d.path(), &clock);
    let t = db.create_table(driver_stats(NO_TTL)).unwrap();
    let c = put(&db, &t, 1, 100, 1.0);
    let mut pending = WriteBatch::new();
    pending
        .put(
            &t,
            &[
                Value::Int64(1),
                Value::Timestamp(100),
                Value::Float64(9.0),
                Value::Null,
            ],
        )
        .unwrap();
    pending
        .put(
            &t,
            &[
                Value::Int64(2),
                Value::Timestamp(50),
                Value::Float64(2.0),
                Value::Null,
            ],
        )
        .unwrap();
    let mut del = WriteBatch::new();
    del.delete(&t, &[Value::Int64(3)], None).unwrap();
    pending.extend(&del);
    put(&db, &t, 3, 10, 3.0);
    let snap = db.snapshot();
    let tx = snap.with_overlay(&pending).unwrap();
    let proj = Projection::new(&t, None).unwrap();
    let now = ReadAt::latest(clock.now()).without_ttl();
    let get = |s: &Snapshot, id: i64, at: ReadAt| {
        s.get(&t, &[Value::Int64(id)], &at, &proj)
            .unwrap()
            .map(|r| r.values[2].clone())
    };
    assert_eq!(
        get(&tx, 1, now),
        Some(Value::Float64(9.0)),
        "own write wins the (key, event time) tie"
    );
    assert_eq!(get(&tx, 2, now), Some(Value::Float64(2.0)));
    assert_eq!(
        get(&tx, 3, now),
        None,
        "own tombstone hides the committed row"
    );
    assert_eq!(
        get(&snap, 1, now),
        Some(Value::Float64(1.0)),
        "base snapshot unchanged"
    );
    let past = now.known_at(SystemAt::Seq(c.seq));
    assert_eq!(
        get(&tx, 2, past),
        None,
        "time travel never sees uncommitted writes"
    );
    let scanned = rows(tx.scan(&t, &ScanOptions::latest(now)).unwrap());
    assert_eq!(scanned.len(), 2);
    assert_eq!(scanned[0][2], Value::Float64(9.0));
    // a write committed by someone else after the snapshot stays invisible
    put(&db, &t, 4, 10, 4.0);
    assert_eq!(get(&tx, 4, now), None);
    assert!(
        tx.version_count(t.id) >= 5,
        "an upper bound of the visible versions"
    );
}

#[test]
fn keys_sharing_their_first_eight_bytes_are_found_across_blocks() {
    // The block search compares 8-byte key prefixes first; keys that agree on them
    // (text keys with a common prefix, of different lengths) must still be found in
    // the right block, present or absent, with several versions per key spanning
    // block boundaries (tiny blocks of 7 rows).
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let db = open(d.path(), &clock);
    let t = db
        .create_table(TableDef::new(
            "customers",
            vec![textc("id").not_null(), tsc("ts").not_null(), i64c("v")],
            vec![0],
            Some(1),
            NO_TTL,
        ))
        .unwrap();
    let key = |i: u64| {
        if i.is_multiple_of(3) {
            format!("customer-{i}")
        } else {
            format!("customer-{i:06}-x")
        }
    };
    let mut b = WriteBatch::new();
    for i in 0..400u64 {
        for v in 0..(i % 4 + 1) as i64 {
            b.put(
                &t,
                &[
                    Value::Text(key(i)),
                    Value::Timestamp(v * 10),
                    Value::Int64(v),
                ],
            )
            .unwrap();
        }
    }
    db.write(b).unwrap();
    db.flush().unwrap();
    db.compact_now().unwrap();
    let snap = db.snapshot();
    let proj = Projection::new(&t, None).unwrap();
    for i in 0..400u64 {
        let row = snap
            .get(
                &t,
                &[Value::Text(key(i))],
                &ReadAt::latest(clock.now()),
                &proj,
            )
            .unwrap()
            .unwrap_or_else(|| panic!("{} not found", key(i)));
        assert_eq!(row.values[2], Value::Int64((i % 4) as i64), "{}", key(i));
        let old = snap
            .get(&t, &[Value::Text(key(i))], &ReadAt::as_of(0), &proj)
            .unwrap()
            .unwrap();
        assert_eq!(old.values[2], Value::Int64(0));
    }
    for absent in [
        "customer-",
        "customer-00",
        "customer-000001",
        "customer-999999-x",
        "customer-1-",
    ] {
        assert!(
            snap.get(
                &t,
                &[Value::Text(absent.into())],
                &ReadAt::latest(clock.now()),
                &proj
            )
            .unwrap()
            .is_none(),
            "{absent}"
        );
    }
}
