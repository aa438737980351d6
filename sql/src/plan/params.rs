//! Types of `$n` parameters of a prepared statement (for ParameterDescription).
//!
//! DataFusion infers a parameter's type from comparisons, IN lists and INSERT targets.
//! Hindsight adds what it cannot see: `key = ANY($1)` (planned as `array_has($1, key)`)
//! is an array of the key's type, time arguments of `as_of`, `history`,
//! `FOR SYSTEM_TIME AS OF` and ASOF JOIN `known_at` are timestamps with time zone,
//! and a parameter cast explicitly (`$1::int8[]`, `arrow_cast($1, 'List(UInt32)')`)
//! is of the type it is cast to, as PostgreSQL types it.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType as ArrowType, Field};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::expr::Placeholder;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};

use crate::error::Result;
use crate::plan::asof::AsofJoinNode;
use crate::plan::placeholders::{index, time_param_types};
use crate::plan::provider::HsTable;

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
                expression_param(sub, input_schema.as_deref(), &mut types, &mut count);
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

/// What one expression says about parameter types: `array_has($n, key)` (from
/// `key = ANY($n)`) makes `$n` an array of the key's type; an explicit cast types
/// its parameter; any `$n` counts.
fn expression_param(
    e: &Expr,
    input: Option<&datafusion::common::DFSchema>,
    types: &mut BTreeMap<usize, ArrowType>,
    count: &mut usize,
) {
    if let Expr::ScalarFunction(f) = e
        && f.name() == "array_has"
        && let [Expr::Placeholder(Placeholder { id, .. }), needle] = f.args.as_slice()
        && let Some(i) = index(id)
        && let Some(schema) = input
        && let Ok(t) = needle.get_type(schema)
    {
        *count = (*count).max(i + 1);
        types.insert(i, ArrowType::List(Arc::new(Field::new_list_field(t, true))));
    }
    if let Some((i, t)) = cast_placeholder(e) {
        *count = (*count).max(i + 1);
        types.entry(i).or_insert(t);
    }
    if let Expr::Placeholder(Placeholder { id, .. }) = e
        && let Some(i) = index(id)
    {
        *count = (*count).max(i + 1);
    }
}

/// A parameter cast explicitly, and the type it is cast to: `CAST($n AS t)` and
/// `arrow_cast($n, 'T')`.
fn cast_placeholder(e: &Expr) -> Option<(usize, ArrowType)> {
    let (inner, ty) = match e {
        Expr::Cast(c) => (c.expr.as_ref(), c.field.data_type().clone()),
        Expr::TryCast(c) => (c.expr.as_ref(), c.field.data_type().clone()),
        Expr::ScalarFunction(f) if f.name() == "arrow_cast" => match f.args.as_slice() {
            [inner, Expr::Literal(ScalarValue::Utf8(Some(name)), _)] => {
                (inner, name.parse::<ArrowType>().ok()?)
            }
            _ => return None,
        },
        _ => return None,
    };
    let Expr::Placeholder(Placeholder { id, .. }) = inner else {
        return None;
    };
    Some((index(id)?, ty))
}
