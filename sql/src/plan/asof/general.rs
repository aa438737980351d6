//! ASOF JOIN whose right side is not a Hindsight table (a subquery, a CTE, a view,
//! a filtered `history(t)`): planned as the equivalent
//!
//! ```sql
//! left LEFT JOIN LATERAL (
//!   SELECT * FROM right WHERE <MATCH_CONDITION> AND <ON>
//!   ORDER BY <right time> DESC  -- ASC for <= / <
//!   LIMIT 1) AS right ON true
//! ```
//!
//! which keeps every left row and attaches the nearest right row by the match
//! condition among those meeting ON: the as-of join's semantics without the
//! table-only parts (TTL, tombstones, FOR SYSTEM_TIME AS OF belong to tables). It runs
//! once per left row (`plan::apply`), so it is much slower than the join over a table,
//! which uses the operator in `exec`.

use sqlparser::ast::{
    BinaryOperator, Expr, Ident, Join, JoinConstraint, JoinOperator, Query, TableAlias,
    TableFactor, TableWithJoins, Value,
};

use datafusion::error::Result as DfResult;

use super::contract::{ON_HINT, contract_error};
use crate::error::SqlError;

const GENERAL_HINT: &str = "qualify the right side's time column in MATCH_CONDITION with \
                            its alias: MATCH_CONDITION (s.ts >= r.ts)";

/// The right side's name for qualified references: its alias, else its table name.
pub(super) fn right_alias(relation: &TableFactor) -> Option<Ident> {
    match relation {
        TableFactor::Table { name, alias, .. } => alias
            .as_ref()
            .map(|a| a.name.clone())
            .or_else(|| name.0.last().and_then(|p| p.as_ident()).cloned()),
        TableFactor::Derived { alias, .. } | TableFactor::NestedJoin { alias, .. } => {
            alias.as_ref().map(|a| a.name.clone())
        }
        _ => None,
    }
}

/// The lateral join replacing `left ASOF JOIN relation MATCH_CONDITION (mc) ON on`.
pub(super) fn lateral(
    left: TableFactor,
    relation: TableFactor,
    mc: Expr,
    constraint: JoinConstraint,
) -> DfResult<TableFactor> {
    let alias = right_alias(&relation).ok_or_else(|| {
        contract_error(
            "the right side of ASOF JOIN needs an alias",
            "ASOF JOIN (SELECT ...) AS r MATCH_CONDITION (...) ON ...",
        )
    })?;
    let JoinConstraint::On(on) = constraint else {
        return Err(contract_error(
            "ASOF JOIN over a subquery, CTE or view needs ON naming the key",
            ON_HINT,
        ));
    };
    let (right_time, descending) = right_time(&mc, &alias)?;
    let filter = Expr::BinaryOp {
        left: Box::new(Expr::Nested(Box::new(mc))),
        op: BinaryOperator::And,
        right: Box::new(Expr::Nested(Box::new(on))),
    };
    let query = nearest(relation, filter, right_time, descending)?;
    let right = TableFactor::Derived {
        lateral: true,
        subquery: Box::new(query),
        alias: Some(TableAlias {
            explicit: true,
            name: alias,
            columns: Vec::new(),
            at: None,
        }),
        sample: None,
    };
    Ok(TableFactor::NestedJoin {
        table_with_joins: Box::new(TableWithJoins {
            relation: left,
            joins: vec![Join {
                relation: right,
                global: false,
                join_operator: JoinOperator::LeftOuter(JoinConstraint::On(Expr::value(
                    Value::Boolean(true),
                ))),
            }],
        }),
        alias: None,
    })
}

/// The right side's time in the match condition, and whether the nearest right
/// row is the newest (`>=`, `>` from the left's view) rather than the oldest.
fn right_time(mc: &Expr, alias: &Ident) -> DfResult<(Expr, bool)> {
    let refers_right = |e: &Expr| match e {
        Expr::CompoundIdentifier(parts) => parts
            .first()
            .is_some_and(|q| q.value.eq_ignore_ascii_case(&alias.value)),
        _ => false,
    };
    let bad = || {
        contract_error(
            "MATCH_CONDITION must compare the two sides' times",
            GENERAL_HINT,
        )
    };
    let Expr::BinaryOp { left, op, right } = mc else {
        return Err(bad());
    };
    // left_time OP right_time, or right_time OP left_time (then the order flips).
    let (time, left_side_ge) = if refers_right(right) {
        (
            (**right).clone(),
            matches!(op, BinaryOperator::GtEq | BinaryOperator::Gt),
        )
    } else if refers_right(left) {
        (
            (**left).clone(),
            matches!(op, BinaryOperator::LtEq | BinaryOperator::Lt),
        )
    } else {
        return Err(bad());
    };
    if !matches!(
        op,
        BinaryOperator::GtEq | BinaryOperator::Gt | BinaryOperator::LtEq | BinaryOperator::Lt
    ) {
        return Err(bad());
    }
    Ok((time, left_side_ge))
}

/// `SELECT * FROM relation WHERE filter ORDER BY time [DESC] LIMIT 1`, parsed from
/// its text (the parts print as the SQL they were parsed from).
fn nearest(relation: TableFactor, filter: Expr, time: Expr, descending: bool) -> DfResult<Query> {
    let dir = if descending { "DESC" } else { "ASC" };
    let sql = format!("SELECT * FROM {relation} WHERE {filter} ORDER BY {time} {dir} LIMIT 1");
    let parsed = crate::dialect::parse(&sql).map_err(SqlError::into_datafusion)?;
    match parsed.into_iter().next() {
        Some(sqlparser::ast::Statement::Query(q)) => Ok(*q),
        _ => {
            Err(SqlError::internal("the as-of lateral query did not parse back").into_datafusion())
        }
    }
}
