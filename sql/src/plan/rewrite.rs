//! AST rewrites done before DataFusion plans a statement.
//!
//! 1. `<number> * INTERVAL '<fixed duration>'` (PostgreSQL scales intervals; DataFusion
//!    cannot multiply an interval) becomes a microsecond duration,
//!    `arrow_cast(CAST(round(<number> * <micros>) AS BIGINT), 'Duration(Microsecond)')`,
//!    which adds to timestamps. Intervals with months stay as they are.
//!
//! 2. Output column names follow PostgreSQL (`count(*)` is `count`, `1` is `?column?`,
//!    `x::int` is `x`, a scalar subquery is named by its column). Duplicate names,
//!    which PostgreSQL allows and DataFusion rejects, get an internal suffix after
//!    `DUP_MARK` that [`output_schema`] strips from the result schema.
//!
//! 3. DataFusion does not plan `ASOF JOIN`. Every `FROM a ... ASOF JOIN b
//!    MATCH_CONDITION (...) ON ...` is rewritten into a nested join carrying the
//!    reserved alias `asof::MARKER`; the relation planner recognizes it and plans
//!    Hindsight's as-of join operator. Chained as-of joins nest:
//!    `(((a ASOF JOIN b) ASOF JOIN c) ...)`. Every query in the statement is visited,
//!    including subqueries, CTEs and set operations.

use std::ops::ControlFlow;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_plan::SendableRecordBatchStream;

use sqlparser::ast::{
    BinaryOperator, CastKind, DataType, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentList, FunctionArguments, Ident, Interval, JoinOperator, ObjectName, Query,
    SetExpr, Statement, TableAlias, TableFactor, TableWithJoins, Value, ValueWithSpan, VisitMut,
    VisitorMut,
};

use crate::plan::asof::MARKER;

struct AsofRewriter;

fn rewrite_from(twj: &mut TableWithJoins) {
    let Some(last_asof) = twj
        .joins
        .iter()
        .rposition(|j| matches!(j.join_operator, JoinOperator::AsOf { .. }))
    else {
        return;
    };
    // Fold everything up to each ASOF JOIN into a marker relation, left to right.
    let rest = twj.joins.split_off(last_asof + 1);
    let mut head = std::mem::replace(
        &mut twj.relation,
        TableFactor::Table {
            name: sqlparser::ast::ObjectName(vec![]),
            alias: None,
            args: None,
            with_hints: vec![],
            version: None,
            with_ordinality: false,
            partitions: vec![],
            json_path: None,
            sample: None,
            index_hints: vec![],
        },
    );
    let mut pending: Vec<sqlparser::ast::Join> = Vec::new();
    for join in std::mem::take(&mut twj.joins) {
        if matches!(join.join_operator, JoinOperator::AsOf { .. }) {
            let left = TableWithJoins {
                relation: head,
                joins: std::mem::take(&mut pending),
            };
            let left_factor = if left.joins.is_empty() {
                left.relation
            } else {
                TableFactor::NestedJoin {
                    table_with_joins: Box::new(left),
                    alias: None,
                }
            };
            head = TableFactor::NestedJoin {
                table_with_joins: Box::new(TableWithJoins {
                    relation: left_factor,
                    joins: vec![join],
                }),
                alias: Some(TableAlias {
                    explicit: true,
                    name: Ident::new(MARKER),
                    columns: vec![],
                    at: None,
                }),
            };
        } else {
            pending.push(join);
        }
    }
    twj.relation = head;
    twj.joins = pending;
    twj.joins.extend(rest);
}

fn rewrite_set_expr(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            for twj in &mut select.from {
                rewrite_from(twj);
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            rewrite_set_expr(left);
            rewrite_set_expr(right);
        }
        _ => {}
    }
}

impl VisitorMut for AsofRewriter {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        rewrite_set_expr(&mut query.body);
        ControlFlow::Continue(())
    }
}

/// Rewrite every ASOF JOIN in `stmt` into the marker form, and scaled intervals into
/// durations.
pub fn rewrite_asof(stmt: &mut Statement) {
    let _ = stmt.visit(&mut AsofRewriter);
    let _ = stmt.visit(&mut IntervalRewriter);
}

/// Microseconds of a fixed-length interval literal (`None` if it has months/years or
/// is not a literal).
fn interval_micros(i: &Interval) -> Option<i64> {
    let Expr::Value(v) = i.value.as_ref() else {
        return None;
    };
    let text = match &v.value {
        Value::SingleQuotedString(s) => s.clone(),
        Value::Number(n, _) => n.clone(),
        _ => return None,
    };
    let text = match &i.leading_field {
        Some(unit) if i.last_field.is_none() => format!("{text} {unit}"),
        Some(_) => return None,
        None => text,
    };
    crate::types::parse_interval_micros(&text).ok()
}

pub(crate) fn func(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

fn scaled_duration(factor: Expr, micros: i64) -> Expr {
    let product = Expr::BinaryOp {
        left: Box::new(Expr::Nested(Box::new(factor))),
        op: BinaryOperator::Multiply,
        right: Box::new(Expr::Value(ValueWithSpan::from(Value::Number(
            micros.to_string(),
            false,
        )))),
    };
    let micros_int = Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(func("round", vec![product])),
        data_type: DataType::BigInt(None),
        array: false,
        format: None,
    };
    func(
        "arrow_cast",
        vec![
            micros_int,
            Expr::Value(ValueWithSpan::from(Value::SingleQuotedString(
                "Duration(Microsecond)".into(),
            ))),
        ],
    )
}

/// Separator of the internal suffix that keeps duplicate output names apart.
pub const DUP_MARK: char = '\u{1}';

/// PostgreSQL's name for an output column computed by `e` (`FigureColname`).
fn figure_name(e: &Expr) -> String {
    let norm = crate::ident::normalize;
    fn type_name(t: &DataType) -> String {
        match t {
            DataType::BigInt(_) | DataType::Int8(_) => "int8".into(),
            DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) => "int4".into(),
            DataType::SmallInt(_) | DataType::Int2(_) => "int2".into(),
            DataType::Real | DataType::Float4 => "float4".into(),
            DataType::DoublePrecision | DataType::Float8 | DataType::Double(_) => "float8".into(),
            DataType::Boolean | DataType::Bool => "bool".into(),
            DataType::Timestamp(
                _,
                sqlparser::ast::TimezoneInfo::WithTimeZone | sqlparser::ast::TimezoneInfo::Tz,
            ) => "timestamptz".into(),
            DataType::Timestamp(..) => "timestamp".into(),
            DataType::Varchar(_) | DataType::CharacterVarying(_) => "varchar".into(),
            DataType::Numeric(_) | DataType::Decimal(_) => "numeric".into(),
            other => other.to_string().to_ascii_lowercase(),
        }
    }
    match e {
        Expr::Identifier(i) => norm(i),
        Expr::CompoundIdentifier(parts) => {
            parts.last().map(norm).unwrap_or_else(|| "?column?".into())
        }
        Expr::Function(f) => f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(norm)
            .unwrap_or_else(|| "?column?".into()),
        Expr::Cast {
            expr, data_type, ..
        } => match figure_name(expr) {
            n if n == "?column?" => type_name(data_type),
            n => n,
        },
        Expr::TypedString(t) => type_name(&t.data_type),
        Expr::Nested(inner) => figure_name(inner),
        Expr::Case { .. } => "case".into(),
        Expr::Array(_) => "array".into(),
        Expr::Exists { .. } => "exists".into(),
        Expr::Extract { .. } => "extract".into(),
        Expr::Subquery(q) => match q.body.as_ref() {
            SetExpr::Select(s) => match s.projection.first() {
                Some(sqlparser::ast::SelectItem::UnnamedExpr(e)) => figure_name(e),
                Some(sqlparser::ast::SelectItem::ExprWithAlias { alias, .. }) => norm(alias),
                _ => "?column?".into(),
            },
            _ => "?column?".into(),
        },
        _ => "?column?".into(),
    }
}

/// Give the top-level projection PostgreSQL's output names.
fn name_outputs(select: &mut sqlparser::ast::Select) {
    use sqlparser::ast::SelectItem;
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for item in &mut select.projection {
        let (name, plain) = match item {
            SelectItem::UnnamedExpr(e) => {
                let plain = matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
                (figure_name(e), plain)
            }
            SelectItem::ExprWithAlias { alias, .. } => (
                if alias.quote_style.is_some() {
                    alias.value.clone()
                } else {
                    alias.value.to_ascii_lowercase()
                },
                false,
            ),
            _ => continue,
        };
        let n = seen.entry(name.clone()).or_insert(0);
        *n += 1;
        let unique = if *n == 1 {
            name.clone()
        } else {
            format!("{name}{DUP_MARK}{n}")
        };
        match item {
            SelectItem::UnnamedExpr(e) if !(plain && *n == 1) => {
                let expr = e.clone();
                *item = SelectItem::ExprWithAlias {
                    expr,
                    alias: Ident::with_quote('"', unique),
                };
            }
            SelectItem::ExprWithAlias { alias, .. } if *n > 1 => {
                *alias = Ident::with_quote('"', unique)
            }
            _ => {}
        }
    }
}

/// Apply PostgreSQL output naming to the query whose rows a statement returns.
pub fn name_query_outputs(query: &mut Query) {
    let mut body = query.body.as_mut();
    while let SetExpr::SetOperation { left, .. } = body {
        body = left.as_mut();
    }
    if let SetExpr::Select(select) = body {
        name_outputs(select);
    }
}

/// The result schema with internal duplicate suffixes removed.
pub fn output_schema(
    schema: &datafusion::arrow::datatypes::SchemaRef,
) -> Option<datafusion::arrow::datatypes::SchemaRef> {
    if !schema.fields().iter().any(|f| f.name().contains(DUP_MARK)) {
        return None;
    }
    Some(std::sync::Arc::new(
        datafusion::arrow::datatypes::Schema::new_with_metadata(
            schema
                .fields()
                .iter()
                .map(|f| {
                    let name = f
                        .name()
                        .split(DUP_MARK)
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    f.as_ref().clone().with_name(name)
                })
                .collect::<Vec<_>>(),
            schema.metadata().clone(),
        ),
    ))
}

struct IntervalRewriter;

impl VisitorMut for IntervalRewriter {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::BinaryOp {
            left,
            op: BinaryOperator::Multiply,
            right,
        } = expr
        {
            let scaled = match (left.as_ref(), right.as_ref()) {
                (Expr::Interval(i), other) | (other, Expr::Interval(i))
                    if !matches!(other, Expr::Interval(_)) =>
                {
                    interval_micros(i).map(|us| scaled_duration(other.clone(), us))
                }
                _ => None,
            };
            if let Some(new) = scaled {
                *expr = new;
            }
        }
        ControlFlow::Continue(())
    }
}

/// Apply PostgreSQL output names (duplicates allowed) to a result stream.
pub(crate) fn rename_stream(stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
    let Some(schema) = output_schema(&stream.schema()) else {
        return stream;
    };
    let out = schema.clone();
    Box::pin(
        datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
            schema,
            futures::StreamExt::map(stream, move |b| {
                b.and_then(|b| {
                    Ok(RecordBatch::try_new_with_options(
                        out.clone(),
                        b.columns().to_vec(),
                        &datafusion::arrow::array::RecordBatchOptions::new()
                            .with_row_count(Some(b.num_rows())),
                    )?)
                })
            }),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::parse;

    fn rewritten(sql: &str) -> String {
        let mut s = parse(sql).unwrap().remove(0);
        rewrite_asof(&mut s);
        s.to_string()
    }

    #[test]
    fn asof_joins_fold_into_markers_left_to_right() {
        let out = rewritten(
            "SELECT * FROM s JOIN x ON s.a = x.a ASOF JOIN f MATCH_CONDITION (s.t >= f.t) ON s.k = f.k \
             ASOF JOIN g MATCH_CONDITION (s.t >= g.t) ON s.k = g.k LEFT JOIN y ON s.b = y.b",
        );
        assert_eq!(out.matches(MARKER).count(), 2, "{out}");
        assert!(out.contains("LEFT JOIN y"), "{out}");
    }

    #[test]
    fn scaled_intervals_become_durations() {
        let out = rewritten(
            "SELECT TIMESTAMP '2024-01-01' + $1 * INTERVAL '1 second', INTERVAL '1 month' * 2",
        );
        assert!(
            out.contains(
                "arrow_cast(CAST(round(($1) * 1000000) AS BIGINT), 'Duration(Microsecond)')"
            ),
            "{out}"
        );
        assert!(out.contains("INTERVAL '1 month' * 2"), "{out}");
    }

    #[test]
    fn queries_without_asof_are_untouched() {
        let sql = "SELECT * FROM a JOIN b ON a.x = b.x WHERE a.y IN (SELECT y FROM c)";
        assert_eq!(rewritten(sql), parse(sql).unwrap()[0].to_string());
    }

    #[test]
    fn outputs_get_postgres_names_and_duplicates_a_mark() {
        let mut s = parse("SELECT id, count(*), 1, x::int, 'a'::text, (SELECT max(v) FROM t), id, count(*) AS n, t.id FROM t").unwrap().remove(0);
        let Statement::Query(q) = &mut s else {
            panic!()
        };
        name_query_outputs(q);
        let out = s.to_string();
        for want in [
            "count(*) AS \"count\"",
            "1 AS \"?column?\"",
            "AS \"x\"",
            "AS \"text\"",
            "AS \"max\"",
        ] {
            assert!(out.contains(want), "{want} in {out}");
        }
        assert!(out.contains(&format!("id AS \"id{DUP_MARK}2\"")), "{out}");
        assert!(out.contains(&format!("t.id AS \"id{DUP_MARK}3\"")), "{out}");
    }

    #[test]
    fn asof_in_subqueries_and_ctes_is_rewritten() {
        let out = rewritten(
            "WITH t AS (SELECT * FROM s ASOF JOIN f MATCH_CONDITION (s.t >= f.t) ON s.k = f.k) \
             SELECT * FROM t WHERE EXISTS (SELECT 1 FROM s ASOF JOIN f MATCH_CONDITION (s.t >= f.t) ON s.k = f.k)",
        );
        assert_eq!(out.matches(MARKER).count(), 2, "{out}");
    }
}
