//! AST rewrites done before DataFusion plans a statement.
//!
//! DataFusion does not plan `ASOF JOIN`. Every `FROM a ... ASOF JOIN b MATCH_CONDITION
//! (...) ON ...` is rewritten into a nested join carrying the reserved alias
//! `asof::MARKER`; the relation planner recognizes it and plans Hindsight's as-of join
//! operator. Chained as-of joins nest: `(((a ASOF JOIN b) ASOF JOIN c) ...)`. Every
//! query in the statement is visited, including subqueries, CTEs and set operations.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Ident, JoinOperator, Query, SetExpr, Statement, TableAlias, TableFactor, TableWithJoins,
    VisitMut, VisitorMut,
};

use crate::asof::MARKER;

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

/// Rewrite every ASOF JOIN in `stmt` into the marker form.
pub fn rewrite_asof(stmt: &mut Statement) {
    let _ = stmt.visit(&mut AsofRewriter);
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
    fn queries_without_asof_are_untouched() {
        let sql = "SELECT * FROM a JOIN b ON a.x = b.x WHERE a.y IN (SELECT y FROM c)";
        assert_eq!(rewritten(sql), parse(sql).unwrap()[0].to_string());
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
