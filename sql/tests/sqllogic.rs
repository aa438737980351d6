//! The SQL contract as sqllogictest files (`tests/slt/*.slt`), run in-process.
//!
//! Each file runs against a fresh database whose clock only moves when the file says:
//! `SET TEST CLOCK TO '<timestamp>'` and `ADVANCE TEST CLOCK BY '<interval>'` (the clock
//! starts at 2026-06-01 00:00:00+00; it is the commit time of writes and the "now" of
//! TTL and `now()`). Named connections (`connection other`) are separate sessions on
//! the same database. Values print in PostgreSQL's text format; NULL prints as NULL and
//! the empty string as (empty). Errors print as `[Kind] message HINT: hint`, so files
//! can assert the kind and the hint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use hindsight_sql::{Collected, Engine, EngineOptions, Session, parse_interval_micros, pgtext};
use hindsight_storage::{Clock, Db, Options};
use sqllogictest::{DBOutput, DefaultColumnType};

const START: i64 = 1_780_272_000_000_000; // 2026-06-01 00:00:00 UTC

#[derive(Debug)]
struct TestError(String);

impl std::fmt::Display for TestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TestError {}

struct Conn {
    session: Session,
    clock: Arc<AtomicI64>,
}

fn parse_ts(text: &str) -> Result<i64, TestError> {
    use datafusion::arrow::datatypes::{DataType, TimeUnit};
    use datafusion::common::ScalarValue;
    let v = ScalarValue::Utf8(Some(text.to_string()))
        .cast_to(&DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("+00:00".into()),
        ))
        .map_err(|e| TestError(e.to_string()))?;
    match v {
        ScalarValue::TimestampMicrosecond(Some(t), _) => Ok(t),
        _ => Err(TestError(format!("bad timestamp {text}"))),
    }
}

fn quoted(s: &str) -> &str {
    s.trim().trim_end_matches(';').trim().trim_matches('\'')
}

#[async_trait]
impl sqllogictest::AsyncDB for Conn {
    type Error = TestError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, TestError> {
        let trimmed = sql.trim();
        if let Some(rest) = trimmed.strip_prefix("SET TEST CLOCK TO ") {
            self.clock.store(parse_ts(quoted(rest))?, Ordering::SeqCst);
            return Ok(DBOutput::StatementComplete(0));
        }
        if let Some(rest) = trimmed.strip_prefix("ADVANCE TEST CLOCK BY ") {
            let d = parse_interval_micros(quoted(rest)).map_err(|e| TestError(e.message))?;
            self.clock.fetch_add(d, Ordering::SeqCst);
            return Ok(DBOutput::StatementComplete(0));
        }
        let mut last = DBOutput::StatementComplete(0);
        let outputs = self.session.run(sql).await.map_err(|e| {
            let mut m = format!("[{:?}] {}", e.kind, e.message);
            if let Some(h) = &e.hint {
                m.push_str(" HINT: ");
                m.push_str(h);
            }
            TestError(m)
        })?;
        for o in outputs {
            last = match o {
                Collected::Rows(schema, batches) => {
                    let types = schema
                        .fields()
                        .iter()
                        .map(|f| {
                            if f.data_type().is_integer() {
                                DefaultColumnType::Integer
                            } else if f.data_type().is_floating() {
                                DefaultColumnType::FloatingPoint
                            } else {
                                DefaultColumnType::Text
                            }
                        })
                        .collect();
                    let mut rows = Vec::new();
                    for b in &batches {
                        for r in 0..b.num_rows() {
                            rows.push(
                                b.columns()
                                    .iter()
                                    .map(|c| match pgtext::cell(c.as_ref(), r) {
                                        None => "NULL".to_string(),
                                        Some(s) if s.is_empty() => "(empty)".to_string(),
                                        Some(s) => s,
                                    })
                                    .collect(),
                            );
                        }
                    }
                    DBOutput::Rows { types, rows }
                }
                Collected::Command { rows, .. } => DBOutput::StatementComplete(rows.unwrap_or(0)),
            };
        }
        Ok(last)
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "hindsight"
    }
}

fn run_file(path: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(AtomicI64::new(START));
        let c = clock.clone();
        let opts = Options {
            clock: Clock::new(move || c.load(Ordering::SeqCst)),
            memtable_bytes: 64 << 10,
            ..Options::default()
        };
        let db = Db::open(dir.path(), opts).unwrap();
        let engine = Engine::new(db, EngineOptions::default()).unwrap();
        let mut runner = sqllogictest::Runner::new(move || {
            let engine = engine.clone();
            let clock = clock.clone();
            async move {
                Ok::<_, TestError>(Conn {
                    session: engine.session().map_err(|e| TestError(e.message))?,
                    clock,
                })
            }
        });
        if let Err(e) = runner.run_file_async(path).await {
            panic!("{}", e.display(false));
        }
    });
}

fn slt(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("slt")
        .join(name)
}

macro_rules! slt_tests {
    ($($test:ident => $file:literal,)*) => {
        $(#[test] fn $test() { run_file(&slt($file)); })*

        #[test]
        fn every_slt_file_has_a_test() {
            let mut listed = vec![$($file),*];
            listed.sort();
            let mut found: Vec<String> = std::fs::read_dir(slt(""))
                .unwrap()
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".slt"))
                .collect();
            found.sort();
            assert_eq!(found, listed);
        }
    };
}

slt_tests! {
    ddl => "ddl.slt",
    views => "views.slt",
    schemas => "schemas.slt",
    subqueries => "subqueries.slt",
    writes => "writes.slt",
    current_state => "current_state.slt",
    as_of => "as_of.slt",
    system_time => "system_time.slt",
    history => "history.slt",
    asof_join => "asof_join.slt",
    transactions => "transactions.slt",
    errors => "errors.slt",
    queries => "queries.slt",
    system_views => "system_views.slt",
}
