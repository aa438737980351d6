//! Evaluation of time arguments (`as_of(t, <ts>)`, `FOR SYSTEM_TIME AS OF <ts>`,
//! `known_at => <ts>`, ASOF JOIN TTL bounds) to microseconds since the epoch.
//!
//! Arguments are ordinary DataFusion expressions without column references:
//! literals, casts (`TIMESTAMPTZ '...'`, `'...'::timestamptz`), `now()`, interval
//! arithmetic, and `$n` placeholders, which are replaced by the statement's bound
//! values before evaluation. A NULL or non-temporal result is an error.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType as ArrowType, Schema, TimeUnit};
use datafusion::catalog::Session as DfSession;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::expr::Placeholder;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use std::sync::Arc;

use crate::error::{ErrorKind, Result, SqlError};

/// Replace `$n` placeholders in `expr` by literal parameter values.
pub(crate) fn bind_params(expr: &Expr, params: &[ScalarValue]) -> Result<Expr> {
    Ok(expr
        .clone()
        .transform(|e| match e {
            Expr::Placeholder(Placeholder { id, .. }) => {
                let idx = id
                    .trim_start_matches('$')
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| i.checked_sub(1));
                match idx.and_then(|i| params.get(i)) {
                    Some(v) => Ok(Transformed::yes(Expr::Literal(v.clone(), None))),
                    None => Err(SqlError::new(
                        ErrorKind::InvalidParameterValue,
                        format!("no value bound for parameter {id}"),
                    )
                    .into_datafusion()),
                }
            }
            other => Ok(Transformed::no(other)),
        })?
        .data)
}

/// Evaluate a constant expression.
pub(crate) fn eval_scalar(
    state: &dyn DfSession,
    expr: &Expr,
    params: &[ScalarValue],
) -> Result<ScalarValue> {
    let expr = bind_params(expr, params)?;
    // Fold `now()` (and other constants) with the statement's start time first, as
    // DataFusion's optimizer would.
    let ctx = SimplifyContext::builder()
        .with_query_execution_start_time(state.execution_props().query_execution_start_time)
        .with_config_options(Arc::clone(state.config().options()))
        .build();
    let expr = ExprSimplifier::new(ctx).simplify(expr)?;
    let physical = state.create_physical_expr(expr, &DFSchema::empty())?;
    let batch = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
    )?;
    let value = physical.evaluate(&batch)?;
    let array = value.into_array(1)?;
    Ok(ScalarValue::try_from_array(&array, 0)?)
}

/// Evaluate a time argument to microseconds since the epoch (UTC).
pub(crate) fn eval_time(state: &dyn DfSession, expr: &Expr, params: &[ScalarValue]) -> Result<i64> {
    let v = eval_scalar(state, expr, params)?;
    scalar_micros(&v).ok_or_else(|| {
        let kind = if v.is_null() { ErrorKind::InvalidParameterValue } else { ErrorKind::DatatypeMismatch };
        let what = if v.is_null() { "NULL".to_string() } else { format!("a value of type {}", v.data_type()) };
        SqlError::new(kind, format!("a point in time is required here, got {what}"))
            .with_hint("use a timestamp such as TIMESTAMPTZ '2026-01-01 00:00:00+00' or now() - INTERVAL '1 day'")
    })
}

/// A timestamp, date or timestamp text as microseconds.
pub(crate) fn scalar_micros(v: &ScalarValue) -> Option<i64> {
    let target = ArrowType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()));
    match v {
        ScalarValue::TimestampSecond(Some(s), _) => s.checked_mul(1_000_000),
        ScalarValue::TimestampMillisecond(Some(s), _) => s.checked_mul(1_000),
        ScalarValue::TimestampMicrosecond(Some(s), _) => Some(*s),
        ScalarValue::TimestampNanosecond(Some(s), _) => Some(s.div_euclid(1_000)),
        ScalarValue::Date32(Some(d)) => (*d as i64).checked_mul(86_400_000_000),
        ScalarValue::Utf8(Some(_))
        | ScalarValue::LargeUtf8(Some(_))
        | ScalarValue::Utf8View(Some(_)) => match v.cast_to(&target).ok()? {
            ScalarValue::TimestampMicrosecond(Some(t), _) => Some(t),
            _ => None,
        },
        _ => None,
    }
}

/// An interval-like scalar as microseconds (for TTL bounds).
pub(crate) fn scalar_interval_micros(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::IntervalMonthDayNano(Some(i)) => {
            if i.months != 0 {
                return None;
            }
            (i.days as i64)
                .checked_mul(86_400_000_000)?
                .checked_add(i.nanoseconds / 1_000)
        }
        ScalarValue::IntervalDayTime(Some(i)) => (i.days as i64)
            .checked_mul(86_400_000_000)?
            .checked_add(i.milliseconds as i64 * 1_000),
        ScalarValue::DurationMicrosecond(Some(d)) => Some(*d),
        ScalarValue::DurationNanosecond(Some(d)) => Some(d / 1_000),
        ScalarValue::DurationMillisecond(Some(d)) => d.checked_mul(1_000),
        ScalarValue::DurationSecond(Some(d)) => d.checked_mul(1_000_000),
        _ => None,
    }
}
