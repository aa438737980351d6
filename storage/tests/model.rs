//! Model test: random operations against the engine and a `BTreeMap` oracle.
//!
//! Each seed generates a sequence of operations (puts including late and
//! same-key-same-time writes, tombstones, point lookups on both time axes, latest and
//! history scans with key ranges, flush, compaction, reopen) and checks every read
//! against the oracle. Table 2 has a retention: compaction may drop versions that
//! retention allows it to, so reads of it are checked exactly inside the window
//! retention guarantees (event time and system time at or after the horizon), and
//! history scans must return every version retention keeps and nothing the oracle
//! does not hold. A failure prints the operation sequence as a ready-to-paste
//! `#[test]`. `HINDSIGHT_MODEL_SEEDS=N` runs more seeds (default: enough for
//! >= 100,000 operations per run); `HINDSIGHT_MODEL_SEED=S` runs one seed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use common::*;
use hindsight_storage::*;

const TTL: i64 = 300;
/// Retention of table 2 ("retained"): versions older than now - RETENTION may be
/// thinned by compaction.
const RETENTION: i64 = 800;
/// The table with a retention.
const RETAINED: usize = 2;

/// True for the tables shaped (id, ts, x, note) with an event-time column.
fn has_event_time(table: usize) -> bool {
    table != 1
}
const NOTES: [&str; 4] = ["", "a", "bb", "hello\0world"];

#[derive(Clone, Debug)]
enum Known {
    Now,
    /// As of the k-th committed write (modulo the count).
    Batch(usize),
    /// As of a commit time relative to now (negative: past, positive: future).
    Ago(i64),
}

#[derive(Clone, Debug)]
struct PutRow {
    key: i64,
    et: i64,
    x: Option<i64>,
    note: Option<usize>,
}

#[derive(Clone, Debug)]
enum Op {
    Tick(i64),
    Put {
        table: usize,
        rows: Vec<PutRow>,
    },
    Delete {
        table: usize,
        key: i64,
        et: Option<i64>,
    },
    Get {
        table: usize,
        key: i64,
        et: Option<i64>,
        known: Known,
        ttl: bool,
    },
    Scan {
        table: usize,
        et: Option<i64>,
        known: Known,
        ttl: bool,
        range: Option<(i64, i64)>,
    },
    History {
        table: usize,
        from: i64,
        to: i64,
        known: Known,
    },
    Flush,
    Compact,
    CompactPending,
    Reopen,
}

impl Known {
    fn code(&self) -> String {
        match self {
            Known::Now => "Known::Now".into(),
            Known::Batch(k) => format!("Known::Batch({k})"),
            Known::Ago(d) => format!("Known::Ago({d})"),
        }
    }
}

impl Op {
    /// The operation as Rust source, for regression tests.
    fn code(&self) -> String {
        match self {
            Op::Tick(d) => format!("Op::Tick({d})"),
            Op::Put { table, rows } => {
                let mut s = format!("Op::Put {{ table: {table}, rows: vec![");
                for r in rows {
                    let _ = write!(
                        s,
                        "PutRow {{ key: {}, et: {}, x: {:?}, note: {:?} }}, ",
                        r.key, r.et, r.x, r.note
                    );
                }
                s.push_str("] }");
                s
            }
            Op::Delete { table, key, et } => {
                format!("Op::Delete {{ table: {table}, key: {key}, et: {et:?} }}")
            }
            Op::Get {
                table,
                key,
                et,
                known,
                ttl,
            } => format!(
                "Op::Get {{ table: {table}, key: {key}, et: {et:?}, known: {}, ttl: {ttl} }}",
                known.code()
            ),
            Op::Scan {
                table,
                et,
                known,
                ttl,
                range,
            } => format!(
                "Op::Scan {{ table: {table}, et: {et:?}, known: {}, ttl: {ttl}, range: {range:?} }}",
                known.code()
            ),
            Op::History {
                table,
                from,
                to,
                known,
            } => format!(
                "Op::History {{ table: {table}, from: {from}, to: {to}, known: {} }}",
                known.code()
            ),
            Op::Flush => "Op::Flush".into(),
            Op::Compact => "Op::Compact".into(),
            Op::CompactPending => "Op::CompactPending".into(),
            Op::Reopen => "Op::Reopen".into(),
        }
    }
}

fn gen_ops(seed: u64, n: usize) -> Vec<Op> {
    let mut r = Rng(seed);
    let mut now = 1_000i64;
    let keys = 3 + r.below(40) as i64;
    let mut ops = Vec::with_capacity(n);
    let et_near = |r: &mut Rng, now: i64| -> i64 {
        match r.below(10) {
            0 => r.range(0, now),       // late, possibly far back
            1 => now + r.range(1, 100), // future event time
            _ => now - r.range(0, 400), // recent
        }
    };
    let known = |r: &mut Rng| match r.below(6) {
        0..=2 => Known::Now,
        3..=4 => Known::Batch(r.below(1000) as usize),
        _ => Known::Ago(r.range(-1_500, 20)),
    };
    while ops.len() < n {
        let table = r.below(3) as usize;
        let op = match r.below(100) {
            0..=9 => {
                let d = r.range(1, 60);
                now += d;
                Op::Tick(d)
            }
            10..=44 => {
                let count = 1 + r.below(4) as usize;
                let mut rows = Vec::new();
                for _ in 0..count {
                    let key = r.range(0, keys - 1);
                    // same (key, event time) as an earlier row: a new system version
                    let et = if r.chance(15) && !rows.is_empty() {
                        let prev: &PutRow = &rows[r.below(rows.len() as u64) as usize];
                        prev.et
                    } else {
                        et_near(&mut r, now)
                    };
                    rows.push(PutRow {
                        key,
                        et,
                        x: if r.chance(85) {
                            Some(r.range(-1000, 1000))
                        } else {
                            None
                        },
                        note: if r.chance(70) {
                            Some(r.below(NOTES.len() as u64) as usize)
                        } else {
                            None
                        },
                    });
                }
                Op::Put { table, rows }
            }
            45..=51 => Op::Delete {
                table,
                key: r.range(0, keys - 1),
                et: if has_event_time(table) && r.chance(60) {
                    Some(et_near(&mut r, now))
                } else {
                    None
                },
            },
            52..=79 => Op::Get {
                table,
                key: r.range(-1, keys),
                et: if r.chance(50) {
                    None
                } else {
                    Some(et_near(&mut r, now))
                },
                known: known(&mut r),
                ttl: r.chance(50),
            },
            80..=87 => Op::Scan {
                table,
                et: if r.chance(50) {
                    None
                } else {
                    Some(et_near(&mut r, now))
                },
                known: known(&mut r),
                ttl: r.chance(50),
                range: if r.chance(40) {
                    let a = r.range(-2, keys);
                    Some((a, a + r.range(0, 10)))
                } else {
                    None
                },
            },
            88..=91 => {
                let a = r.range(0, now);
                Op::History {
                    table,
                    from: a,
                    to: a + r.range(0, 800),
                    known: known(&mut r),
                }
            }
            92..=94 => Op::Flush,
            95..=96 => Op::Compact,
            97..=98 => Op::CompactPending,
            _ => Op::Reopen,
        };
        ops.push(op);
    }
    ops
}

/// A table (id, ts, x, note) keyed by id with event time ts.
fn event_table(name: &str, options: TableOptions) -> TableDef {
    TableDef::new(
        name,
        vec![
            i64c("id").not_null(),
            tsc("ts").not_null(),
            i64c("x"),
            textc("note"),
        ],
        vec![0],
        Some(1),
        options,
    )
}

fn tables() -> [TableDef; 3] {
    [
        event_table(
            "events",
            TableOptions {
                ttl_micros: Some(TTL),
                retention_micros: None,
            },
        ),
        TableDef::new(
            "kv",
            vec![
                textc("k").not_null(),
                i64c("v"),
                ColumnDef::new("tags", DataType::List(ScalarType::Int64)),
            ],
            vec![0],
            None,
            TableOptions::default(),
        ),
        event_table(
            "retained",
            TableOptions {
                ttl_micros: Some(TTL),
                retention_micros: Some(RETENTION),
            },
        ),
    ]
}

const TABLE_NAMES: [&str; 3] = ["events", "kv", "retained"];

fn key_values(table: usize, key: i64) -> Vec<Value> {
    if has_event_time(table) {
        vec![Value::Int64(key)]
    } else {
        vec![Value::Text(format!("k{key:03}"))]
    }
}

fn row_values(table: usize, r: &PutRow) -> Vec<Value> {
    let x = r.x.map_or(Value::Null, Value::Int64);
    if has_event_time(table) {
        vec![
            Value::Int64(r.key),
            Value::Timestamp(r.et),
            x,
            r.note
                .map_or(Value::Null, |n| Value::Text(NOTES[n].to_string())),
        ]
    } else {
        let tags = match r.x {
            Some(v) if v % 2 == 0 => Value::List(vec![Value::Int64(v), Value::Int64(v + 1)]),
            _ => Value::Null,
        };
        vec![Value::Text(format!("k{:03}", r.key)), x, tags]
    }
}

type VKey = (usize, Vec<u8>, Reverse<i64>, Reverse<u64>);

/// The oracle: every version ever written, and every commit.
#[derive(Default)]
struct Oracle {
    versions: BTreeMap<VKey, Option<Vec<Value>>>,
    commits: Vec<(u64, i64)>,
    created: [i64; 3],
}

impl Oracle {
    fn newest(
        &self,
        table: usize,
        key: &[u8],
        et_max: i64,
        seq: u64,
    ) -> Option<(&VKey, &Option<Vec<Value>>)> {
        let lo = (table, key.to_vec(), Reverse(et_max), Reverse(u64::MAX));
        self.versions
            .range(lo..)
            .take_while(|(k, _)| k.0 == table && k.1 == key)
            .find(|(k, _)| k.3.0 <= seq)
    }

    fn get(
        &self,
        table: usize,
        key: &[u8],
        et_max: i64,
        seq: u64,
        floor: i64,
    ) -> Option<Vec<Value>> {
        let (k, v) = self.newest(table, key, et_max, seq)?;
        if k.2.0 < floor {
            return None;
        }
        v.clone()
    }

    fn commit_time(&self, seq: u64) -> i64 {
        self.commits.iter().find(|c| c.0 == seq).map_or(0, |c| c.1)
    }

    /// The last sequence committed at or before `t`.
    fn seq_at(&self, t: i64) -> u64 {
        self.commits
            .iter()
            .filter(|c| c.1 <= t)
            .map(|c| c.0)
            .max()
            .unwrap_or(0)
    }

    /// Versions of `table` compaction may have dropped under any horizon up to `h`
    /// (the rule of `compaction::filter`): one dominated by an earlier version of
    /// the same entity that is settled (committed at or before `h`) and has the same
    /// event time, or both at or below `h`. Tombstones are never returned by reads.
    fn droppable(&self, table: usize, h: i64) -> std::collections::HashSet<VKey> {
        let mut out = std::collections::HashSet::new();
        let mut key: Option<&[u8]> = None;
        let mut settled: Vec<i64> = Vec::new(); // event times of settled versions seen
        for k in self.versions.keys().filter(|k| k.0 == table) {
            if key != Some(k.1.as_slice()) {
                key = Some(k.1.as_slice());
                settled.clear();
            }
            let et = k.2.0;
            if settled.iter().any(|&w| w == et || (w <= h && et <= h)) {
                out.insert(k.clone());
            }
            if self.commit_time(k.3.0) <= h {
                settled.push(et);
            }
        }
        out
    }
}

struct Harness {
    dir: tempfile::TempDir,
    clock: ManualClock,
    db: Option<Db>,
    defs: Vec<std::sync::Arc<TableDef>>,
    oracle: Oracle,
    log: Vec<Op>,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(1_000);
        let db = Db::open(dir.path(), tiny_options(clock.clock())).unwrap();
        let mut oracle = Oracle::default();
        let mut defs = Vec::new();
        for (i, t) in tables().into_iter().enumerate() {
            defs.push(db.create_table(t).unwrap());
            oracle.created[i] = clock.now();
        }
        Harness {
            dir,
            clock,
            db: Some(db),
            defs,
            oracle,
            log: Vec::new(),
        }
    }

    fn db(&self) -> &Db {
        self.db.as_ref().unwrap()
    }

    fn fail(&self, what: String) -> ! {
        let mut code = String::from("#[test]\nfn model_regression() {\n    run_ops(vec![\n");
        for op in &self.log {
            let _ = writeln!(code, "        {},", op.code());
        }
        code.push_str("    ]);\n}\n");
        panic!("model mismatch: {what}\n\nregression test:\n{code}");
    }

    fn key_bytes(&self, table: usize, key: i64) -> Vec<u8> {
        let t = &self.defs[table];
        encode_key(&key_values(table, key), &t.key_types(), &[]).unwrap()
    }

    /// (expected sequence, or an expected error) and the engine's SystemAt.
    fn resolve(&self, table: usize, known: &Known) -> (Option<u64>, SystemAt) {
        let now = self.clock.now();
        let last = self.oracle.commits.last().map_or(0, |c| c.0);
        match known {
            Known::Now => (Some(u64::MAX), SystemAt::Current),
            Known::Batch(k) => {
                if self.oracle.commits.is_empty() {
                    return (Some(u64::MAX), SystemAt::Current);
                }
                let s = self.oracle.commits[k % self.oracle.commits.len()].0;
                (Some(s), SystemAt::Seq(s))
            }
            Known::Ago(d) => {
                let t = now + d;
                if t > now
                    || t < self.oracle.created[table]
                    || (table == RETAINED && t < now - RETENTION)
                {
                    return (None, SystemAt::Micros(t));
                }
                let s = self
                    .oracle
                    .commits
                    .iter()
                    .filter(|c| c.1 <= t)
                    .map(|c| c.0)
                    .max()
                    .unwrap_or(0);
                let _ = last;
                (Some(s), SystemAt::Micros(t))
            }
        }
    }

    fn read_at(
        &self,
        table: usize,
        et: Option<i64>,
        known: &Known,
        ttl: bool,
    ) -> (Option<u64>, ReadAt, i64) {
        let now = self.clock.now();
        let (seq, system) = self.resolve(table, known);
        let mut at = match et {
            None => ReadAt::latest(now),
            Some(t) => ReadAt::as_of(t),
        }
        .known_at(system);
        let mut floor = i64::MIN;
        if ttl {
            if has_event_time(table) {
                floor = et.unwrap_or(now) - TTL;
            }
        } else {
            at = at.without_ttl();
        }
        (seq, at, floor)
    }

    /// Whether a read of `table` at `at` (resolved to `seq`) must match the oracle
    /// exactly: always for tables without retention; for the retained table only
    /// inside the window retention guarantees, where no version a reader could see
    /// may have been dropped (event time and system time at or after the horizon).
    fn exact(&self, table: usize, at: &ReadAt, seq: u64) -> bool {
        if table != RETAINED {
            return true;
        }
        let horizon = self.clock.now() - RETENTION;
        at.event_time.is_none_or(|t| t >= horizon) && seq >= self.oracle.seq_at(horizon)
    }

    fn apply(&mut self, op: Op) {
        self.log.push(op.clone());
        match op {
            Op::Tick(d) => {
                self.clock.advance(d);
            }
            Op::Put { table, rows } => {
                let mut b = WriteBatch::new();
                for r in &rows {
                    b.put(&self.defs[table], &row_values(table, r)).unwrap();
                }
                let c = self.db().write(b).unwrap();
                self.oracle.commits.push((c.seq, c.commit_micros));
                for r in &rows {
                    let et = if has_event_time(table) {
                        r.et
                    } else {
                        c.commit_micros
                    };
                    let mut vals = row_values(table, r);
                    if table == 1 {
                        // the event time of a table without an event-time column is the commit time
                    } else {
                        vals[1] = Value::Timestamp(et);
                    }
                    let k = (
                        table,
                        self.key_bytes(table, r.key),
                        Reverse(et),
                        Reverse(c.seq),
                    );
                    self.oracle.versions.insert(k, Some(vals));
                }
            }
            Op::Delete { table, key, et } => {
                let mut b = WriteBatch::new();
                b.delete(&self.defs[table], &key_values(table, key), et)
                    .unwrap();
                let c = self.db().write(b).unwrap();
                self.oracle.commits.push((c.seq, c.commit_micros));
                let k = (
                    table,
                    self.key_bytes(table, key),
                    Reverse(et.unwrap_or(c.commit_micros)),
                    Reverse(c.seq),
                );
                self.oracle.versions.insert(k, None);
            }
            Op::Get {
                table,
                key,
                et,
                known,
                ttl,
            } => {
                let (seq, at, floor) = self.read_at(table, et, &known, ttl);
                let got = self
                    .db()
                    .get(&self.defs[table], &key_values(table, key), &at);
                match (seq, got) {
                    (None, Err(Error::OutsideRetention(_))) => {}
                    (Some(seq), Ok(_)) if !self.exact(table, &at, seq) => {}
                    (Some(seq), Ok(row)) => {
                        let want = self.oracle.get(
                            table,
                            &self.key_bytes(table, key),
                            at.event_time.unwrap_or(i64::MAX),
                            seq,
                            floor,
                        );
                        let got = row.map(|r| r.values);
                        if got != want {
                            self.fail(format!(
                                "get {key} at {at:?}: engine {got:?}, oracle {want:?}"
                            ));
                        }
                    }
                    (want, got) => self.fail(format!(
                        "get {key} at {at:?}: engine {got:?}, oracle seq {want:?}"
                    )),
                }
            }
            Op::Scan {
                table,
                et,
                known,
                ttl,
                range,
            } => {
                let (seq, at, floor) = self.read_at(table, et, &known, ttl);
                let mut opts = ScanOptions::latest(at);
                opts.batch_rows = 5;
                if let Some((lo, hi)) = range {
                    opts.key_range = KeyRange::encoded(
                        Some(self.key_bytes(table, lo)),
                        Some(self.key_bytes(table, hi)),
                    );
                }
                let got = self.db().scan(&self.defs[table], &opts).map(rows);
                match (seq, got) {
                    (None, Err(Error::OutsideRetention(_))) => {}
                    (Some(seq), Ok(_)) if !self.exact(table, &at, seq) => {}
                    (Some(seq), Ok(got)) => {
                        let mut keys: Vec<Vec<u8>> = self
                            .oracle
                            .versions
                            .keys()
                            .filter(|k| k.0 == table && opts.key_range.contains(&k.1))
                            .map(|k| k.1.clone())
                            .collect();
                        keys.dedup();
                        let want: Vec<Vec<Value>> = keys
                            .iter()
                            .filter_map(|k| {
                                self.oracle.get(
                                    table,
                                    k,
                                    at.event_time.unwrap_or(i64::MAX),
                                    seq,
                                    floor,
                                )
                            })
                            .collect();
                        if got != want {
                            self.fail(format!(
                                "scan at {at:?} range {range:?}:\nengine {got:?}\noracle {want:?}"
                            ));
                        }
                    }
                    (want, got) => self.fail(format!(
                        "scan at {at:?}: engine {got:?}, oracle seq {want:?}"
                    )),
                }
            }
            Op::History {
                table,
                from,
                to,
                known,
            } => {
                let (seq, system) = self.resolve(table, &known);
                let mut opts = ScanOptions::history(from, to);
                opts.at = opts.at.known_at(system);
                opts.with_system_time = true;
                opts.batch_rows = 7;
                let got = self.db().scan(&self.defs[table], &opts).map(rows);
                match (seq, got) {
                    (None, Err(Error::OutsideRetention(_))) => {}
                    (Some(seq), Ok(got)) => {
                        let droppable = match table {
                            RETAINED => self.oracle.droppable(table, self.clock.now() - RETENTION),
                            _ => Default::default(),
                        };
                        // (row, whether retention may have dropped it)
                        let want: Vec<(Vec<Value>, bool)> = self
                            .oracle
                            .versions
                            .iter()
                            .filter(|(k, v)| {
                                k.0 == table
                                    && k.2.0 >= from
                                    && k.2.0 <= to
                                    && k.3.0 <= seq
                                    && v.is_some()
                            })
                            .map(|(k, v)| {
                                let mut row = v.clone().unwrap();
                                row.push(Value::Timestamp(self.oracle.commit_time(k.3.0)));
                                (row, droppable.contains(k))
                            })
                            .collect();
                        if !kept_in_order(&got, &want) {
                            let want: Vec<_> = want.into_iter().map(|(r, _)| r).collect();
                            self.fail(format!(
                                "history [{from}, {to}] seq {seq}:\nengine {got:?}\noracle {want:?}"
                            ));
                        }
                    }
                    (want, got) => {
                        self.fail(format!("history: engine {got:?}, oracle seq {want:?}"))
                    }
                }
            }
            Op::Flush => self.db().flush().unwrap(),
            Op::Compact => self.db().compact_now().unwrap(),
            Op::CompactPending => self.db().compact_pending().unwrap(),
            Op::Reopen => {
                self.db.take().unwrap().close().unwrap();
                let db = Db::open(self.dir.path(), tiny_options(self.clock.clock())).unwrap();
                self.defs = TABLE_NAMES.iter().map(|n| db.table(n).unwrap()).collect();
                self.db = Some(db);
            }
        }
    }
}

/// True if `got` is `want` with only rows flagged droppable left out, in order.
fn kept_in_order(got: &[Vec<Value>], want: &[(Vec<Value>, bool)]) -> bool {
    let mut g = got.iter().peekable();
    for (row, droppable) in want {
        if g.peek() == Some(&row) {
            g.next();
        } else if !droppable {
            return false;
        }
    }
    g.next().is_none()
}

/// Run a fixed operation sequence (used by printed regression tests).
fn run_ops(ops: Vec<Op>) -> usize {
    let mut h = Harness::new();
    let n = ops.len();
    for op in ops {
        h.apply(op);
    }
    // Everything must also survive a final reopen and a full compaction.
    h.apply(Op::Reopen);
    h.apply(Op::Compact);
    h.apply(Op::Scan {
        table: 0,
        et: None,
        known: Known::Now,
        ttl: false,
        range: None,
    });
    h.apply(Op::Scan {
        table: 1,
        et: None,
        known: Known::Now,
        ttl: false,
        range: None,
    });
    for table in [0, RETAINED] {
        h.apply(Op::History {
            table,
            from: i64::MIN,
            to: i64::MAX,
            known: Known::Now,
        });
    }
    n
}

fn seeds(part: u64, parts: u64) -> Vec<u64> {
    if let Ok(s) = std::env::var("HINDSIGHT_MODEL_SEED") {
        return if part == 0 {
            vec![s.parse().unwrap()]
        } else {
            vec![]
        };
    }
    let total: u64 = std::env::var("HINDSIGHT_MODEL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(112);
    (0..total).filter(|s| s % parts == part).collect()
}

const OPS_PER_SEED: usize = 900;

fn run_part(part: u64) {
    let mut ops = 0;
    for seed in seeds(part, 4) {
        ops += run_ops(gen_ops(seed, OPS_PER_SEED));
    }
    eprintln!("model part {part}: {ops} operations");
}

#[test]
fn model_matches_oracle_part_0() {
    run_part(0);
}
#[test]
fn model_matches_oracle_part_1() {
    run_part(1);
}
#[test]
fn model_matches_oracle_part_2() {
    run_part(2);
}
#[test]
fn model_matches_oracle_part_3() {
    run_part(3);
}

#[test]
fn model_regression_late_write_into_older_file_after_reopen() {
    run_ops(vec![
        Op::Put {
            table: 0,
            rows: vec![PutRow {
                key: 1,
                et: 900,
                x: Some(1),
                note: None,
            }],
        },
        Op::Flush,
        Op::Put {
            table: 0,
            rows: vec![PutRow {
                key: 1,
                et: 100,
                x: Some(2),
                note: Some(3),
            }],
        },
        Op::Reopen,
        Op::Get {
            table: 0,
            key: 1,
            et: None,
            known: Known::Now,
            ttl: false,
        },
        Op::Get {
            table: 0,
            key: 1,
            et: Some(500),
            known: Known::Now,
            ttl: false,
        },
        Op::Get {
            table: 0,
            key: 1,
            et: Some(500),
            known: Known::Batch(0),
            ttl: false,
        },
    ]);
}
