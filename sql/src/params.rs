//! Types of `$n` parameters of a prepared statement (for ParameterDescription).
//!
//! DataFusion infers a parameter's type from comparisons, IN lists and INSERT targets.
//! Hindsight adds what it cannot see: `key = ANY($1)` (planned as `array_has($1, key)`)
//! is an array of the key's type, and time arguments of `as_of`, `history`,
//! `FOR SYSTEM_TIME AS OF` and ASOF JOIN `known_at` are timestamps with time zone.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType as ArrowType, Field, TimeUnit};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::expr::Placeholder;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};

use crate::asof::AsofJoinNode;
use crate::error::Result;
use crate::provider::HsTable;

fn index(id: &str) -> Option<usize> {
    id.trim_start_matches('$')
        .parse::<usize>()
        .ok()?
        .checked_sub(1)
}

fn timestamptz() -> ArrowType {
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

/// Parameter types of `plan` (`declared` types take precedence).
pub(crate) fn infer(
    plan: &LogicalPlan,
    declared: &[Option<ArrowType>],
) -> Result<Vec<Option<ArrowType>>> {
    let mut types: BTreeMap<usize, ArrowType> = BTreeMap::new();
    let mut count = declared.len();
    // DataFusion's own inference, applied the way binding values applies it.
    let inferred = plan.clone().transform_up_with_subqueries(|node| {
        let schema = Arc::clone(node.schema());
        node.map_expressions(|e| {
            let (e, _) = e.infer_placeholder_types(&schema)?;
            Ok(Transformed::yes(e))
        })
    })?;
    for (id, t) in inferred.data.get_parameter_types()? {
        if let Some(i) = index(&id) {
            count = count.max(i + 1);
            if let Some(t) = t {
                types.insert(i, t);
            }
        }
    }
    // Hindsight's own contexts.
    inferred.data.apply_with_subqueries(|node| {
        let mut time_params = Vec::new();
        match node {
            LogicalPlan::TableScan(scan) => {
                if let Ok(p) = source_as_provider(&scan.source)
                    && let Some(t) = p.downcast_ref::<HsTable>()
                {
                    for e in t.read.time_exprs() {
                        time_params.extend(time_param_types(e));
                    }
                }
            }
            LogicalPlan::Extension(ext) => {
                if let Some(n) = ext.node.as_any().downcast_ref::<AsofJoinNode>()
                    && let Some(k) = &n.known_at
                {
                    time_params.extend(time_param_types(k));
                }
            }
            _ => {}
        }
        for (i, t) in time_params {
            count = count.max(i + 1);
            types.entry(i).or_insert(t);
        }
        let input_schema = node.inputs().first().map(|i| Arc::clone(i.schema()));
        node.apply_expressions(|e| {
            e.apply(|sub| {
                if let Expr::ScalarFunction(f) = sub
                    && f.name() == "array_has"
                    && let [Expr::Placeholder(Placeholder { id, .. }), needle] = f.args.as_slice()
                    && let Some(i) = index(id)
                    && let Some(schema) = &input_schema
                    && let Ok(t) = needle.get_type(schema.as_ref())
                {
                    count = count.max(i + 1);
                    types.insert(i, ArrowType::List(Arc::new(Field::new_list_field(t, true))));
                }
                if let Expr::Placeholder(Placeholder { id, .. }) = sub
                    && let Some(i) = index(id)
                {
                    count = count.max(i + 1);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    Ok((0..count)
        .map(|i| {
            declared
                .get(i)
                .cloned()
                .flatten()
                .or_else(|| types.get(&i).cloned())
        })
        .collect())
}
