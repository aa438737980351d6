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
    /// The same expression as plain arithmetic, where it is of the shapes time
    /// arguments usually have (see [`Native`]).
    native: Option<NativeTime>,
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
        let mut params: Vec<usize> = crate::plan::placeholders::placeholders(expr);
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
        let native = Native::compile(&simplified, &schema, &params).map(|expr| NativeTime {
            nanos: mentions_nanoseconds(&simplified),
            expr,
        });
        let physical = state.create_physical_expr(simplified, &df_schema).ok()?;
        Some(CompiledTime {
            source: expr.clone(),
            physical,
            schema,
            params,
            native,
        })
    }

    /// The expression this was compiled from.
    pub(crate) fn source(&self) -> &Expr {
        &self.source
    }

    /// Evaluate with the statement's parameter values, to microseconds (UTC).
    pub(crate) fn eval(&self, params: &[ScalarValue]) -> Result<i64> {
        if let Some(t) = self.native.as_ref().and_then(|n| n.eval(params)) {
            return Ok(t);
        }
        self.eval_physical(params)
    }

    /// [`CompiledTime::eval`] with DataFusion's physical expression.
    fn eval_physical(&self, params: &[ScalarValue]) -> Result<i64> {
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

/// A compiled [`Native`] expression. `nanos`: it mentions nanosecond timestamps or
/// durations (`TIMESTAMP '...'` literals are), which DataFusion computes with in
/// nanoseconds: every time and duration must then fit in nanoseconds too, or the
/// physical expression answers (it may overflow where microseconds would not).
#[derive(Debug, Clone)]
struct NativeTime {
    expr: Native,
    nanos: bool,
}

impl NativeTime {
    /// Microseconds since the epoch, or `None` to let DataFusion answer.
    fn eval(&self, params: &[ScalarValue]) -> Option<i64> {
        match self.expr.value(params, self.nanos)? {
            Num::Time(t) => Some(t),
            _ => None,
        }
    }
}

/// Whether `e` has a nanosecond timestamp or duration literal or column.
fn mentions_nanoseconds(e: &Expr) -> bool {
    let mut found = false;
    let _ = e.apply(|x| {
        let ty = match x {
            Expr::Literal(v, _) => Some(v.data_type()),
            Expr::Cast(c) => Some(c.field.data_type().clone()),
            _ => None,
        };
        if let Some(
            ArrowType::Timestamp(TimeUnit::Nanosecond, _)
            | ArrowType::Duration(TimeUnit::Nanosecond),
        ) = ty
        {
            found = true;
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    found
}

/// A time argument as plain integer and float arithmetic: timestamps and durations in
/// microseconds, `$n` values, `round`, casts between numbers, timestamps and
/// durations, `+ - *`. Prepared as-of lookups evaluate it per execution instead of
/// DataFusion's physical expression (a one-row batch, array kernels: a quarter of an
/// as-of lookup's CPU). It only takes expressions whose every node it knows, and any
/// value it cannot compute exactly as DataFusion would (an overflow, a NaN, a
/// parameter of another type, NULL) makes it give up for that execution, so the
/// physical expression answers, errors included.
#[derive(Debug, Clone)]
enum Native {
    Const(Num),
    /// Parameter `$i+1`, of the Arrow type its column was compiled with.
    Param(usize, ArrowType),
    Round(Box<Native>),
    Cast(Box<Native>, NumKind),
    Binary(Box<Native>, NativeOp, Box<Native>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    Int(i64),
    Float(f64),
    /// Microseconds since the epoch.
    Time(i64),
    /// Microseconds.
    Duration(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumKind {
    Int,
    Float,
    Time,
    Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NativeOp {
    Plus,
    Minus,
    Multiply,
}

impl Num {
    fn of_scalar(v: &ScalarValue) -> Option<Num> {
        Some(match v {
            ScalarValue::Int64(Some(i)) => Num::Int(*i),
            ScalarValue::Int32(Some(i)) => Num::Int(i64::from(*i)),
            ScalarValue::Float64(Some(f)) => Num::Float(*f),
            ScalarValue::TimestampMicrosecond(Some(t), _) => Num::Time(*t),
            ScalarValue::TimestampSecond(Some(t), _) => Num::Time(t.checked_mul(1_000_000)?),
            ScalarValue::TimestampMillisecond(Some(t), _) => Num::Time(t.checked_mul(1_000)?),
            ScalarValue::TimestampNanosecond(Some(t), _) => Num::Time(t.div_euclid(1_000)),
            ScalarValue::DurationMicrosecond(Some(d)) => Num::Duration(*d),
            ScalarValue::DurationSecond(Some(d)) => Num::Duration(d.checked_mul(1_000_000)?),
            ScalarValue::DurationMillisecond(Some(d)) => Num::Duration(d.checked_mul(1_000)?),
            ScalarValue::IntervalMonthDayNano(Some(_)) | ScalarValue::IntervalDayTime(Some(_)) => {
                Num::Duration(scalar_interval_micros(v)?)
            }
            _ => return None,
        })
    }

    fn cast(self, to: NumKind) -> Option<Num> {
        Some(match (self, to) {
            (Num::Int(i), NumKind::Int) => Num::Int(i),
            (Num::Int(i), NumKind::Float) => Num::Float(i as f64),
            (Num::Int(i), NumKind::Duration) => Num::Duration(i),
            (Num::Int(i), NumKind::Time) => Num::Time(i),
            (Num::Float(f), NumKind::Float) => Num::Float(f),
            // Arrow truncates toward zero and refuses what does not fit.
            (Num::Float(f), NumKind::Int) if f.is_finite() && f.abs() < 9.2e18 => {
                Num::Int(f.trunc() as i64)
            }
            (Num::Time(t), NumKind::Time) => Num::Time(t),
            (Num::Duration(d), NumKind::Duration) => Num::Duration(d),
            (Num::Duration(d), NumKind::Int) => Num::Int(d),
            _ => return None,
        })
    }

    fn apply(self, op: NativeOp, other: Num) -> Option<Num> {
        use NativeOp::*;
        use Num::*;
        Some(match (self, op, other) {
            (Int(a), Plus, Int(b)) => Int(a.checked_add(b)?),
            (Int(a), Minus, Int(b)) => Int(a.checked_sub(b)?),
            (Int(a), Multiply, Int(b)) => Int(a.checked_mul(b)?),
            (Float(a), Plus, Float(b)) => Float(a + b),
            (Float(a), Minus, Float(b)) => Float(a - b),
            (Float(a), Multiply, Float(b)) => Float(a * b),
            // DataFusion coerces an integer next to a float to a float.
            (Float(_), _, Int(b)) => return self.apply(op, Float(b as f64)),
            (Int(a), _, Float(_)) => return Float(a as f64).apply(op, other),
            (Time(t), Plus, Duration(d)) | (Duration(d), Plus, Time(t)) => Time(t.checked_add(d)?),
            (Time(t), Minus, Duration(d)) => Time(t.checked_sub(d)?),
            (Duration(a), Plus, Duration(b)) => Duration(a.checked_add(b)?),
            (Duration(a), Minus, Duration(b)) => Duration(a.checked_sub(b)?),
            _ => return None,
        })
    }
}

impl NumKind {
    fn of(t: &ArrowType) -> Option<NumKind> {
        Some(match t {
            ArrowType::Int64 => NumKind::Int,
            ArrowType::Float64 => NumKind::Float,
            ArrowType::Timestamp(TimeUnit::Microsecond, _) => NumKind::Time,
            ArrowType::Duration(TimeUnit::Microsecond) => NumKind::Duration,
            _ => return None,
        })
    }
}

impl Native {
    /// The native form of a simplified expression whose columns `p{i}` stand for the
    /// parameters `params` (typed by `schema`); `None` if any node is unknown.
    fn compile(e: &Expr, schema: &SchemaRef, params: &[usize]) -> Option<Native> {
        use datafusion::logical_expr::{BinaryExpr, Operator};
        Some(match e {
            Expr::Literal(v, _) => Native::Const(Num::of_scalar(v)?),
            Expr::Column(c) => {
                let i: usize = c.name.strip_prefix('p')?.parse().ok()?;
                let at = params.iter().position(|&p| p == i)?;
                let ty = schema.field(at).data_type().clone();
                NumKind::of(&ty)?;
                Native::Param(i, ty)
            }
            Expr::Cast(c) => Native::Cast(
                Box::new(Native::compile(&c.expr, schema, params)?),
                NumKind::of(c.field.data_type())?,
            ),
            Expr::ScalarFunction(f) if f.name() == "round" => match f.args.as_slice() {
                [x] => Native::Round(Box::new(Native::compile(x, schema, params)?)),
                _ => return None,
            },
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let op = match op {
                    Operator::Plus => NativeOp::Plus,
                    Operator::Minus => NativeOp::Minus,
                    Operator::Multiply => NativeOp::Multiply,
                    _ => return None,
                };
                Native::Binary(
                    Box::new(Native::compile(left, schema, params)?),
                    op,
                    Box::new(Native::compile(right, schema, params)?),
                )
            }
            _ => return None,
        })
    }

    /// The value with parameters `params`; `None` where DataFusion must answer.
    /// `nanos`: times and durations must fit in nanoseconds (see [`NativeTime`]).
    fn value(&self, params: &[ScalarValue], nanos: bool) -> Option<Num> {
        let v = match self {
            Native::Const(n) => *n,
            Native::Param(i, ty) => {
                let v = params.get(*i)?;
                if v.data_type() != *ty {
                    return None;
                }
                Num::of_scalar(v)?
            }
            Native::Round(x) => match x.value(params, nanos)? {
                Num::Float(f) => Num::Float(f.round()),
                Num::Int(i) => Num::Int(i),
                _ => return None,
            },
            Native::Cast(x, to) => x.value(params, nanos)?.cast(*to)?,
            Native::Binary(a, op, b) => a
                .value(params, nanos)?
                .apply(*op, b.value(params, nanos)?)?,
        };
        const NS_LIMIT: i64 = i64::MAX / 1_000;
        match v {
            Num::Time(t) | Num::Duration(t) if nanos && !(-NS_LIMIT..=NS_LIMIT).contains(&t) => {
                None
            }
            v => Some(v),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    /// The native evaluation of the time arguments prepared lookups use gives what
    /// DataFusion's physical expression gives, for every parameter value tried, and
    /// the shapes of the benchmark's and the docs' time arguments are native.
    #[test]
    fn native_time_arithmetic_matches_datafusion() {
        let ctx = SessionContext::new();
        let state = ctx.state();
        let cases: &[(&str, ArrowType, bool)] = &[
            (
                "TIMESTAMP '2024-01-01 00:00:00' + arrow_cast(CAST(round(($1) * 1000000) AS BIGINT), 'Duration(Microsecond)')",
                ArrowType::Float64,
                true,
            ),
            (
                "$1",
                ArrowType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                true,
            ),
            (
                "$1 - arrow_cast(CAST(round((2.5) * 3600000000) AS BIGINT), 'Duration(Microsecond)')",
                ArrowType::Timestamp(TimeUnit::Microsecond, None),
                true,
            ),
            (
                "TIMESTAMPTZ '2026-01-01 00:00:00+00' - INTERVAL '1 day'",
                ArrowType::Null,
                true,
            ),
            // Folded by DataFusion at compile time: a constant.
            (
                "TIMESTAMPTZ '2026-01-01 00:00:00+00' - INTERVAL '1 month'",
                ArrowType::Null,
                true,
            ),
            // Calendar arithmetic on a parameter: not native.
            (
                "$1 - INTERVAL '1 month'",
                ArrowType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                false,
            ),
        ];
        for (sql, ty, expect_native) in cases {
            let expr = state
                .create_logical_expr(sql, &DFSchema::empty())
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let types = vec![(*ty != ArrowType::Null).then(|| ty.clone())];
            let c = CompiledTime::new(&state, &expr, &types).unwrap_or_else(|| panic!("{sql}"));
            assert_eq!(c.native.is_some(), *expect_native, "{sql}: {:?}", c.native);
            let values: Vec<ScalarValue> = match ty {
                ArrowType::Float64 => [
                    0.0,
                    -259200.0,
                    2591999.0,
                    0.5,
                    -0.5,
                    1.4999999,
                    1e12,
                    1e300,
                    f64::NAN,
                ]
                .iter()
                .map(|f| ScalarValue::Float64(Some(*f)))
                .collect(),
                ArrowType::Timestamp(_, tz) => [0i64, 1_700_000_000_123_456, -5, i64::MIN + 1]
                    .iter()
                    .map(|t| ScalarValue::TimestampMicrosecond(Some(*t), tz.clone()))
                    .collect(),
                _ => vec![ScalarValue::Null],
            };
            for v in values {
                let params = vec![v.clone()];
                let fast = c.eval(&params).ok();
                let slow = c.eval_physical(&params).ok();
                assert_eq!(fast, slow, "{sql} with {v:?}");
            }
        }
    }
}
