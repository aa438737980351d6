//! Read-your-writes across replicas: `WAIT FOR LSN 'hi/lo' [WITH (TIMEOUT '1s',
//! NO_THROW)]` (PostgreSQL 19's syntax, parsed by the dialect into a call of
//! [`WAIT_FUNCTION`]) waits until this node has applied the commit numbered by the
//! LSN that `pg_current_wal_lsn()` returned on the leader.
//!
//! An LSN is an engine commit sequence written as `pg_lsn` text (`hi/lo` in hex),
//! the same number on every replica; waiting polls the applied sequence. The answer
//! is one row with column `status`: `success`, or `timeout` when `NO_THROW` is given
//! (without it a timeout is SQLSTATE 55000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::StringArray;
use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use sqlparser::ast::{Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Value};

use super::state::Session;
use crate::error::{ErrorKind, Result, SqlError};
use crate::output::{Output, memory_stream};
use crate::plan::system::lsn;

/// The function `WAIT FOR LSN` becomes (`CALL hindsight_wait_for_lsn(lsn,
/// timeout, no_throw)`).
pub const WAIT_FUNCTION: &str = "hindsight_wait_for_lsn";

/// How often a waiting statement looks at the applied sequence.
const POLL: Duration = Duration::from_millis(2);

/// Parse `pg_lsn` text (`hi/lo`, each up to 8 hex digits) into a sequence.
pub fn parse_lsn(text: &str) -> Result<u64> {
    let bad = || {
        SqlError::new(
            ErrorKind::InvalidTextRepresentation,
            format!("invalid input syntax for type pg_lsn: \"{text}\""),
        )
    };
    let (hi, lo) = text.trim().split_once('/').ok_or_else(bad)?;
    let part = |s: &str| {
        (!s.is_empty() && s.len() <= 8)
            .then(|| u64::from_str_radix(s, 16).ok())
            .flatten()
            .ok_or_else(bad)
    };
    Ok((part(hi)? << 32) | part(lo)?)
}

/// The schema of `WAIT FOR`'s answer.
pub fn wait_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "status",
        ArrowType::Utf8,
        false,
    )]))
}

/// Whether `f` is the call `WAIT FOR LSN` was parsed into.
pub(crate) fn is_wait(f: &Function) -> bool {
    f.name.to_string().eq_ignore_ascii_case(WAIT_FUNCTION)
}

fn literal_args(f: &Function) -> Vec<Option<Value>> {
    let FunctionArguments::List(list) = &f.args else {
        return Vec::new();
    };
    list.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))) => Some(v.value.clone()),
            _ => None,
        })
        .collect()
}

impl Session {
    /// Run `WAIT FOR LSN`.
    pub(crate) async fn wait_for_lsn(&mut self, f: &Function) -> Result<Output> {
        let args = literal_args(f);
        let text = |v: &Option<Value>| match v {
            Some(Value::SingleQuotedString(s)) => Some(s.clone()),
            Some(Value::Number(n, _)) => Some(format!("{n}ms")),
            _ => None,
        };
        let target = match args.first().and_then(text) {
            Some(t) => parse_lsn(&t)?,
            None => {
                return Err(SqlError::new(
                    ErrorKind::Syntax,
                    "WAIT FOR LSN needs an LSN literal, e.g. WAIT FOR LSN '0/1F4'",
                ));
            }
        };
        let timeout = match args.get(1).and_then(text) {
            Some(t) => Some(Duration::from_micros(
                crate::types::parse_interval_micros(&t)?.unsigned_abs(),
            )),
            None => None,
        };
        let no_throw = matches!(args.get(2), Some(Some(Value::Boolean(true))));
        let db = self.engine.db().clone();
        let started = Instant::now();
        let status = loop {
            if db.visible_seq() >= target {
                break "success";
            }
            if timeout.is_some_and(|t| started.elapsed() >= t) {
                if no_throw {
                    break "timeout";
                }
                return Err(SqlError::new(
                    ErrorKind::NotInPrerequisiteState,
                    format!(
                        "timed out while waiting for target LSN {} to be replayed; current replay LSN {}",
                        lsn(target),
                        lsn(db.visible_seq())
                    ),
                ));
            }
            tokio::time::sleep(POLL).await;
        };
        let batch = RecordBatch::try_new(
            wait_schema(),
            vec![Arc::new(StringArray::from(vec![status]))],
        )?;
        Ok(Output::Rows(memory_stream(vec![batch])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_round_trip_and_bad_text_is_22p02() {
        for seq in [0u64, 1, 0x1F4, (7 << 32) | 0xABCDEF, u64::MAX] {
            assert_eq!(parse_lsn(&lsn(seq)).unwrap(), seq);
        }
        for bad in ["", "1F4", "0/", "/1", "0/1/2", "G/1", "123456789/0"] {
            let e = parse_lsn(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidTextRepresentation, "{bad}");
        }
    }
}
