//! Casts to text in PostgreSQL's format. DataFusion casts a timestamp to
//! `2026-09-04T00:00:30Z`, a float to `inf`, a list to `[1, 2]` and bytes to bare
//! hex; PostgreSQL gives `2026-09-04 00:00:30+00`, `Infinity`, `{1,2}` and `\x0102`.
//! The [`PgTextCasts`] analyzer rule (run after type coercion, so implicit casts such
//! as `'at ' || ts` are covered too) replaces every cast to text of such a value in
//! a select list or a filter by `__hindsight_text(value)`, which formats each value
//! as the wire's text output does ([`crate::pg::text::cell`]).
//!
//! Invariant: a rewritten select list keeps its output names (the replaced
//! expression is aliased to the name the cast had).

use std::sync::Arc;

use datafusion::arrow::array::StringArray;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ExprSchema};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

/// Name of the formatting function.
pub(crate) const TEXT_FUNCTION: &str = "__hindsight_text";

/// True for the types whose text DataFusion writes differently from PostgreSQL.
fn needs_pg_text(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Timestamp(..)
            | DataType::Float16
            | DataType::Float32
            | DataType::Float64
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_)
            | DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(..)
    )
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Rewrites casts to text of the values above (see the module comment).
#[derive(Debug)]
pub(crate) struct PgTextCasts {
    udf: Arc<ScalarUDF>,
}

impl PgTextCasts {
    pub(crate) fn new() -> Self {
        PgTextCasts {
            udf: Arc::new(ScalarUDF::from(PgText::new())),
        }
    }

    fn rewrite_expr(&self, e: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
        e.transform_up(|e| {
            let (inner, to) = match &e {
                Expr::Cast(c) => (&c.expr, c.field.data_type()),
                Expr::TryCast(c) => (&c.expr, c.field.data_type()),
                _ => return Ok(Transformed::no(e)),
            };
            if !is_text(to) {
                return Ok(Transformed::no(e));
            }
            let Ok(from) = inner.get_type(schema as &dyn ExprSchema) else {
                return Ok(Transformed::no(e));
            };
            if !needs_pg_text(&from) {
                return Ok(Transformed::no(e));
            }
            let call = self.udf.call(vec![(**inner).clone()]);
            let call = if matches!(to, DataType::Utf8) {
                call
            } else {
                Expr::Cast(datafusion::logical_expr::Cast::new(
                    Box::new(call),
                    to.clone(),
                ))
            };
            Ok(Transformed::yes(call))
        })
    }

    fn rewrite_node(&self, plan: LogicalPlan) -> DfResult<Transformed<LogicalPlan>> {
        if !matches!(plan, LogicalPlan::Projection(_) | LogicalPlan::Filter(_)) {
            return Ok(Transformed::no(plan));
        }
        let mut schema = DFSchema::empty();
        for input in plan.inputs() {
            schema.merge(input.schema());
        }
        let keep_names = matches!(plan, LogicalPlan::Projection(_));
        let out = plan.map_expressions(|e| {
            let name = e.schema_name().to_string();
            let t = self.rewrite_expr(e, &schema)?;
            if keep_names && t.transformed {
                return Ok(Transformed::yes(t.data.alias_if_changed(name)?));
            }
            Ok(t)
        })?;
        if out.transformed {
            return Ok(Transformed::yes(out.data.recompute_schema()?));
        }
        Ok(out)
    }
}

impl AnalyzerRule for PgTextCasts {
    fn name(&self) -> &str {
        "hindsight_pg_text_casts"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        Ok(plan
            .transform_up_with_subqueries(|p| self.rewrite_node(p))?
            .data)
    }
}

/// `__hindsight_text(any)`: the value in PostgreSQL's text output format.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgText {
    signature: Signature,
}

impl PgText {
    fn new() -> Self {
        PgText {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for PgText {
    fn name(&self) -> &str {
        TEXT_FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let Some(a) = arrays.first() else {
            return Ok(ColumnarValue::Array(Arc::new(StringArray::from(vec![
                None::<
                    String,
                >;
                rows
            ]))));
        };
        let out: StringArray = (0..a.len())
            .map(|i| crate::pg::text::cell(a.as_ref(), i))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}
