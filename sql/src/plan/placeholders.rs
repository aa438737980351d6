//! Where the `$n` placeholders of an expression are, and what type a time
//! argument gives them. A leaf of the planning layer: time-expression compilation
//! and the point-lookup fast path ask it, and parameter inference builds on it.

use datafusion::arrow::datatypes::{DataType as ArrowType, TimeUnit};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::expr::Placeholder;

pub(crate) fn index(id: &str) -> Option<usize> {
    id.trim_start_matches('$')
        .parse::<usize>()
        .ok()?
        .checked_sub(1)
}

pub(crate) fn timestamptz() -> ArrowType {
    ArrowType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
}

/// Indexes of the `$n` placeholders in `e`.
pub(crate) fn placeholders(e: &Expr) -> Vec<usize> {
    let mut out = Vec::new();
    placeholders_in(e, &mut out);
    out
}

/// Types of the placeholders in a time argument: the argument itself is a
/// timestamptz (`as_of(t, $1)`); a factor of an interval (or of a number) is a float8,
/// as in PostgreSQL (`TIMESTAMP '...' + $2 * INTERVAL '1 second'`); another operand is
/// an interval (`now() - $1`).
pub(crate) fn time_param_types(e: &Expr) -> Vec<(usize, ArrowType)> {
    use datafusion::logical_expr::{BinaryExpr, Operator};
    fn placeholder(e: &Expr) -> Option<usize> {
        match e {
            Expr::Placeholder(Placeholder { id, .. }) => index(id),
            Expr::Cast(c) => placeholder(&c.expr),
            _ => None,
        }
    }
    // A factor next to an interval (or to the microsecond count Hindsight rewrites
    // `n * INTERVAL '1 hour'` into) is a number.
    fn is_scale(e: &Expr) -> bool {
        matches!(e, Expr::Literal(v, _) if matches!(v.data_type(), ArrowType::Interval(_) | ArrowType::Duration(_)) || v.data_type().is_numeric())
    }
    fn walk(e: &Expr, top: bool, out: &mut Vec<(usize, ArrowType)>) {
        if let Some(i) = placeholder(e) {
            let t = match e {
                Expr::Cast(c) => c.field.data_type().clone(),
                _ if top => timestamptz(),
                _ => ArrowType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano),
            };
            out.push((i, t));
            return;
        }
        if let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e {
            if matches!(op, Operator::Multiply | Operator::Divide) {
                for (a, b) in [(left, right), (right, left)] {
                    if let Some(i) = placeholder(a)
                        && is_scale(b)
                    {
                        out.push((i, ArrowType::Float64));
                    }
                }
            }
            walk(left, false, out);
            walk(right, false, out);
            return;
        }
        let _ = e.apply_children(|c| {
            walk(c, false, out);
            Ok(TreeNodeRecursion::Continue)
        });
    }
    let mut out = Vec::new();
    walk(e, true, &mut out);
    // The first type found for a placeholder wins (a factor of an interval is not
    // also an interval operand).
    let mut seen = std::collections::HashSet::new();
    out.retain(|(i, _)| seen.insert(*i));
    out
}

fn placeholders_in(e: &Expr, out: &mut Vec<usize>) {
    let _ = e.apply(|sub| {
        if let Expr::Placeholder(Placeholder { id, .. }) = sub
            && let Some(i) = index(id)
        {
            out.push(i);
        }
        Ok(TreeNodeRecursion::Continue)
    });
}
