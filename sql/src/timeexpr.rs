//! Evaluation of time arguments (`as_of(t, <ts>)`, `FOR SYSTEM_TIME AS OF <ts>`,
//! `known_at => <ts>`, ASOF JOIN TTL bounds) to microseconds since the epoch.
//!
//! Arguments are ordinary DataFusion expressions without column references:
//! literals, casts (`TIMESTAMPTZ '...'`, `'...'::timestamptz`), `now()`, interval
//! arithmetic, and `$n` placeholders, which are replaced by the statement's bound
//! values before evaluation. A NULL or non-temporal result is an error.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef, TimeUnit};
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
    time_micros(&eval_scalar(state, expr, params)?)
}

/// A time argument's value as microseconds, or the error PostgreSQL users expect.
fn time_micros(v: &ScalarValue) -> Result<i64> {
    scalar_micros(v).ok_or_else(|| {
        let kind = if v.is_null() { ErrorKind::InvalidParameterValue } else { ErrorKind::DatatypeMismatch };
        let what = if v.is_null() { "NULL".to_string() } else { format!("a value of type {}", v.data_type()) };
        SqlError::new(kind, format!("a point in time is required here, got {what}"))
            .with_hint("use a timestamp such as TIMESTAMPTZ '2026-01-01 00:00:00+00' or now() - INTERVAL '1 day'")
    })
}

/// A time argument compiled once for repeated execution (prepared point lookups):
/// `$n` placeholders become columns of a one-row batch of parameter values, so each
/// execution only evaluates a physical expression (microseconds) instead of
/// simplifying and planning the expression again (hundreds of microseconds).
/// Only expressions of immutable functions compile (`now()` must see each
/// statement's clock, so it stays on [`eval_time`]).
#[derive(Debug)]
pub(crate) struct CompiledTime {
    source: Expr,
    physical: Arc<dyn datafusion::physical_expr::PhysicalExpr>,
    schema: SchemaRef,
    /// Parameter index of each column of `schema`.
    params: Vec<usize>,
}

impl CompiledTime {
    /// Compile `expr`, whose placeholders have the types `types` (`None` when a
    /// placeholder's type is unknown or the expression is not immutable).
    pub(crate) fn new(
        state: &dyn DfSession,
        expr: &Expr,
        types: &[Option<ArrowType>],
    ) -> Option<CompiledTime> {
        let mut immutable = true;
        let _ = expr.apply(|e| {
            if let Expr::ScalarFunction(f) = e
                && f.func.signature().volatility != datafusion::logical_expr::Volatility::Immutable
            {
                immutable = false;
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        });
        if !immutable {
            return None;
        }
        let mut params: Vec<usize> = crate::params::placeholders(expr);
        params.sort_unstable();
        params.dedup();
        let fields = params
            .iter()
            .map(|&i| Some(Field::new(format!("p{i}"), types.get(i)?.clone()?, true)))
            .collect::<Option<Vec<_>>>()?;
        let schema: SchemaRef = Arc::new(Schema::new(fields));
        let with_columns = expr
            .clone()
            .transform(|e| match e {
                Expr::Placeholder(Placeholder { id, .. }) => {
                    let i = id.trim_start_matches('$').parse::<usize>().ok();
                    let i = i.and_then(|i| i.checked_sub(1)).unwrap_or(usize::MAX);
                    Ok(Transformed::yes(Expr::Column(
                        datafusion::common::Column::from_name(format!("p{i}")),
                    )))
                }
                other => Ok(Transformed::no(other)),
            })
            .ok()?
            .data;
        let df_schema = Arc::new(DFSchema::try_from(schema.as_ref().clone()).ok()?);
        // Simplify as the optimizer would (`arrow_cast` becomes a cast, constants
        // fold); the placeholders are columns now, so nothing depends on their values.
        let ctx = SimplifyContext::builder()
            .with_schema(df_schema.clone())
            .with_config_options(Arc::clone(state.config().options()))
            .build();
        let simplified = ExprSimplifier::new(ctx).simplify(with_columns).ok()?;
        let physical = state.create_physical_expr(simplified, &df_schema).ok()?;
        Some(CompiledTime {
            source: expr.clone(),
            physical,
            schema,
            params,
        })
    }

    /// The expression this was compiled from.
    pub(crate) fn source(&self) -> &Expr {
        &self.source
    }

    /// Evaluate with the statement's parameter values, to microseconds (UTC).
    pub(crate) fn eval(&self, params: &[ScalarValue]) -> Result<i64> {
        let columns = self
            .params
            .iter()
            .zip(self.schema.fields())
            .map(|(&i, f)| {
                let v = params.get(i).cloned().unwrap_or(ScalarValue::Null);
                let v = if v.data_type() == *f.data_type() {
                    v
                } else {
                    v.cast_to(f.data_type())?
                };
                v.to_array_of_size(1)
            })
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let batch = RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
        )?;
        let array = self.physical.evaluate(&batch)?.into_array(1)?;
        let v = ScalarValue::try_from_array(&array, 0)?;
        time_micros(&v)
    }
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
