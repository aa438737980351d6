//! String literals compared with numbers take the number's type, as PostgreSQL's
//! untyped literals do: `WHERE id = '42'` compares 42 as a BIGINT, and
//! `WHERE id = 'q'` is 22P02 (invalid input syntax), where DataFusion's coercion
//! would compare `CAST(id AS TEXT)` with `'q'` and silently match nothing (and could
//! not use the key).
//!
//! The [`UntypedLiterals`] analyzer rule runs before DataFusion's type coercion, on
//! filters (WHERE, HAVING) and join conditions: in a comparison whose one side is a
//! string literal and whose other side is a number or a boolean, the literal is cast
//! to that type. Explicit casts (`CAST(id AS TEXT) = '05'`) are left alone: their
//! side is text.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion::optimizer::AnalyzerRule;

/// The analyzer rule (see the module comment).
#[derive(Debug, Default)]
pub(crate) struct UntypedLiterals;

impl AnalyzerRule for UntypedLiterals {
    fn name(&self) -> &str {
        "hindsight_untyped_literals"
    }

    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> DfResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|p| {
            if !matches!(p, LogicalPlan::Filter(_) | LogicalPlan::Join(_)) {
                return Ok(Transformed::no(p));
            }
            let mut schema = DFSchema::empty();
            for input in p.inputs() {
                schema.merge(input.schema());
            }
            p.map_expressions(|e| e.transform_up(|e| type_literal(e, &schema)))
        })
        .map(|t| t.data)
    }
}

/// `e` with a string literal compared to a number or boolean converted to its type
/// (an error, mapped to 22P02, when the text is not a value of that type).
fn type_literal(e: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else {
        return Ok(Transformed::no(e));
    };
    let comparison = matches!(
        op,
        Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq
    );
    let typed = |other: &Expr| {
        other.get_type(schema).ok().filter(|t| {
            t.is_integer() || t.is_floating() || t.is_decimal() || *t == DataType::Boolean
        })
    };
    let convert = |text: &ScalarValue, t: &DataType| -> DfResult<Box<Expr>> {
        Ok(Box::new(Expr::Literal(text.cast_to(t)?, None)))
    };
    let (left, right, changed) = match (comparison, string_literal(&left), string_literal(&right)) {
        (true, Some(text), None) => match typed(&right) {
            Some(t) => (convert(text, &t)?, right, true),
            None => (left, right, false),
        },
        (true, None, Some(text)) => match typed(&left) {
            Some(t) => {
                let typed_right = convert(text, &t)?;
                (left, typed_right, true)
            }
            None => (left, right, false),
        },
        _ => (left, right, false),
    };
    let e = Expr::BinaryExpr(BinaryExpr { left, op, right });
    Ok(match changed {
        true => Transformed::yes(e),
        false => Transformed::no(e),
    })
}

/// The value of a string literal.
fn string_literal(e: &Expr) -> Option<&ScalarValue> {
    match e {
        Expr::Literal(
            v @ (ScalarValue::Utf8(Some(_))
            | ScalarValue::LargeUtf8(Some(_))
            | ScalarValue::Utf8View(Some(_))),
            _,
        ) => Some(v),
        _ => None,
    }
}
