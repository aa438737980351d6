//! Planning the ASOF JOIN marker that `rewrite` builds into an [`AsofJoinNode`]:
//! resolving the right table, checking MATCH_CONDITION and ON against the contract,
//! and finding the key expressions and the optional time bound.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::common::{Column, DFSchema, DFSchemaRef, ScalarValue, TableReference};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::planner::RelationPlannerContext;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Extension, LogicalPlan, Operator};
use hindsight_storage::{Catalog, TableDef};
use sqlparser::ast::{JoinConstraint, JoinOperator, TableFactor, TableVersion, TableWithJoins};

use super::contract::{MATCH_HINT, MatchOp, ON_HINT, contract_error};
use super::node::AsofJoinNode;
use crate::error::{ErrorKind, SqlError};

/// Plan the marker nested join `(left ASOF JOIN right ...)` built by `rewrite`.
pub(crate) fn plan(
    catalog: &Catalog,
    twj: TableWithJoins,
    ctx: &mut dyn RelationPlannerContext,
) -> DfResult<LogicalPlan> {
    let (relation, match_condition, constraint) = asof_parts(twj.joins)?;
    if !is_table(catalog, &relation, ctx) {
        let lateral = super::general::lateral(twj.relation, relation, match_condition, constraint)?;
        return ctx.plan(lateral);
    }
    let left = ctx.plan(twj.relation)?;
    let right = right_table(catalog, relation, ctx)?;
    let et_name = joinable(&right.def)?;
    let right_schema = DFSchema::try_from_qualified_schema(
        TableReference::bare(right.qualifier.clone()),
        &nullable(&right.def.arrow_schema(None)),
    )?;
    let joined = left.schema().join(&right_schema)?;
    let sides = Sides {
        left: left.schema(),
        right: &right_schema,
        et_name,
        key_names: right
            .def
            .key
            .iter()
            .filter_map(|&i| right.def.columns.get(i).map(|c| c.name.clone()))
            .collect(),
    };
    let mc = ctx.sql_to_expr(match_condition, &joined)?;
    let (left_time, op) = sides.match_condition(&mc)?;
    let (left_keys, ttl) = match constraint {
        JoinConstraint::On(on) => {
            let on = ctx.sql_to_expr(on, &joined)?;
            sides.on_keys(&on, &left_time, op)?
        }
        JoinConstraint::Using(names) => (sides.using_keys(ctx, names, &right.def)?, None),
        _ => {
            return Err(contract_error(
                "ASOF JOIN needs ON or USING naming the key",
                ON_HINT,
            ));
        }
    };
    let left_keys = sides.every_key(left_keys, &right.def)?;
    let node = AsofJoinNode {
        schema: Arc::new(joined),
        left_keys,
        left_time,
        op,
        ttl,
        known_at: right.known_at,
        table: right.def.name.clone(),
        right_schema: Arc::new(right_schema.clone()),
        left,
    };
    Ok(LogicalPlan::Extension(Extension {
        node: Arc::new(node),
    }))
}

/// True if the right side names a Hindsight table (else it is a subquery, a CTE, a
/// view already expanded, or a table function other than a table read).
fn is_table(catalog: &Catalog, relation: &TableFactor, ctx: &dyn RelationPlannerContext) -> bool {
    let TableFactor::Table {
        name, args: None, ..
    } = relation
    else {
        return false;
    };
    crate::plan::relation::table_key(ctx, name).is_some_and(|k| catalog.table(&k).is_some())
}

/// The right side, MATCH_CONDITION and constraint of the marker's one as-of join.
fn asof_parts(
    joins: Vec<sqlparser::ast::Join>,
) -> DfResult<(TableFactor, sqlparser::ast::Expr, JoinConstraint)> {
    let Some(join) = joins.into_iter().next() else {
        return Err(SqlError::internal("as-of marker without a join").into_datafusion());
    };
    let JoinOperator::AsOf {
        match_condition,
        constraint,
    } = join.join_operator
    else {
        return Err(SqlError::internal("as-of marker around another join").into_datafusion());
    };
    Ok((join.relation, match_condition, constraint))
}

const RIGHT_HINT: &str = "the right side of ASOF JOIN must be a Hindsight table: \
                          ASOF JOIN f [AS alias] [FOR SYSTEM_TIME AS OF <timestamp>]";

/// The right side of the join: a Hindsight table, its qualifier, its `known_at`.
struct RightTable {
    def: Arc<TableDef>,
    qualifier: String,
    known_at: Option<Expr>,
}

fn right_table(
    catalog: &Catalog,
    relation: TableFactor,
    ctx: &mut dyn RelationPlannerContext,
) -> DfResult<RightTable> {
    let TableFactor::Table {
        name,
        alias,
        args: None,
        version,
        ..
    } = relation
    else {
        return Err(contract_error(
            "the right side of ASOF JOIN must be a table",
            RIGHT_HINT,
        ));
    };
    let table = crate::plan::relation::table_key(ctx, &name).unwrap_or_else(|| name.to_string());
    let def = catalog.table(&table).cloned().ok_or_else(|| {
        SqlError::new(
            ErrorKind::UndefinedTable,
            format!("relation \"{table}\" does not exist"),
        )
        .into_datafusion()
    })?;
    if alias.as_ref().is_some_and(|a| !a.columns.is_empty()) {
        return Err(contract_error(
            "column aliases on the right side of ASOF JOIN are not supported",
            RIGHT_HINT,
        ));
    }
    let qualifier = alias.map(|a| ctx.normalize_ident(a.name)).unwrap_or(table);
    let known_at = match version {
        None => None,
        Some(TableVersion::ForSystemTimeAsOf(e)) => Some(ctx.sql_to_expr(e, &DFSchema::empty())?),
        Some(other) => {
            return Err(contract_error(
                format!("table version clause \"{other}\" is not supported"),
                RIGHT_HINT,
            ));
        }
    };
    Ok(RightTable {
        def,
        qualifier,
        known_at,
    })
}

/// Check the right table can be as-of joined; its event-time column's name.
fn joinable(def: &TableDef) -> DfResult<String> {
    let Some(col) = def.event_time.and_then(|i| def.columns.get(i)) else {
        return Err(contract_error(
            format!(
                "table \"{}\" has no event-time column to match on",
                def.name
            ),
            "create the feature table WITH (event_time = '<column>')",
        ));
    };
    if def.key.is_empty() {
        return Err(contract_error(
            format!("table \"{}\" has no PRIMARY KEY to join on", def.name),
            "as-of joins match entities by the right table's key",
        ));
    }
    Ok(col.name.clone())
}

/// The two sides of the join, for recognizing the shapes the contract allows.
struct Sides<'a> {
    left: &'a DFSchemaRef,
    right: &'a DFSchema,
    et_name: String,
    key_names: Vec<String>,
}

impl Sides<'_> {
    /// The right table's event-time column.
    fn is_right_et(&self, e: &Expr) -> bool {
        matches!(e, Expr::Column(c) if c.name == self.et_name && self.right.has_column(c))
    }

    /// An expression over spine columns only (and at least one).
    fn left_only(&self, e: &Expr) -> bool {
        let cols = e.column_refs();
        !cols.is_empty() && cols.iter().all(|c| self.left.has_column(c))
    }

    /// The position in the key of a right key column.
    fn right_key_pos(&self, e: &Expr) -> Option<usize> {
        match e {
            Expr::Column(c) if self.right.has_column(c) => {
                self.key_names.iter().position(|k| *k == c.name)
            }
            _ => None,
        }
    }

    /// MATCH_CONDITION as (spine time, operator), the event time on either side.
    fn match_condition(&self, mc: &Expr) -> DfResult<(Expr, MatchOp)> {
        let unsupported =
            || contract_error(format!("unsupported MATCH_CONDITION ({mc})"), MATCH_HINT);
        let Expr::BinaryExpr(BinaryExpr {
            left: l,
            op,
            right: r,
        }) = mc
        else {
            return Err(unsupported());
        };
        let op = match op {
            Operator::GtEq => MatchOp::Ge,
            Operator::Gt => MatchOp::Gt,
            Operator::LtEq => MatchOp::Le,
            Operator::Lt => MatchOp::Lt,
            other => {
                return Err(contract_error(
                    format!("MATCH_CONDITION operator {other} is not supported"),
                    MATCH_HINT,
                ));
            }
        };
        if self.is_right_et(r) && self.left_only(l) {
            Ok(((**l).clone(), op))
        } else if self.is_right_et(l) && self.left_only(r) {
            let flipped = match op {
                MatchOp::Ge => MatchOp::Le,
                MatchOp::Gt => MatchOp::Lt,
                MatchOp::Le => MatchOp::Ge,
                MatchOp::Lt => MatchOp::Gt,
            };
            Ok(((**r).clone(), flipped))
        } else {
            Err(unsupported())
        }
    }

    /// ON: one equality per key column between a spine expression and the key
    /// column, plus at most one time bound.
    fn on_keys(
        &self,
        on: &Expr,
        left_time: &Expr,
        op: MatchOp,
    ) -> DfResult<(Vec<Option<Expr>>, Option<Expr>)> {
        let mut left_keys: Vec<Option<Expr>> = vec![None; self.key_names.len()];
        let mut ttl: Option<Expr> = None;
        let is_et = |e: &Expr| self.is_right_et(e);
        for conj in split_conjunction(on) {
            let unsupported =
                || contract_error(format!("unsupported ON condition ({conj})"), ON_HINT);
            if let Expr::BinaryExpr(BinaryExpr {
                left: l,
                op: Operator::Eq,
                right: r,
            }) = conj
            {
                let (pos, other) = match (self.right_key_pos(l), self.right_key_pos(r)) {
                    (Some(p), None) if self.left_only(r) => (p, r),
                    (None, Some(p)) if self.left_only(l) => (p, l),
                    _ => return Err(unsupported()),
                };
                if let Some(slot) = left_keys.get_mut(pos) {
                    if slot.is_some() {
                        let name = self.key_names.get(pos).map_or("", String::as_str);
                        return Err(contract_error(
                            format!("key column \"{name}\" is matched twice"),
                            ON_HINT,
                        ));
                    }
                    *slot = Some((**other).clone());
                }
                continue;
            }
            match ttl_bound(conj, left_time, op, &is_et) {
                Some(d) if ttl.is_none() => ttl = Some(d),
                Some(_) => {
                    return Err(contract_error("ON holds more than one time bound", ON_HINT));
                }
                None => return Err(unsupported()),
            }
        }
        Ok((left_keys, ttl))
    }

    /// USING: each named column is a key column of the right table and a spine column.
    fn using_keys(
        &self,
        ctx: &mut dyn RelationPlannerContext,
        names: Vec<sqlparser::ast::ObjectName>,
        def: &TableDef,
    ) -> DfResult<Vec<Option<Expr>>> {
        let mut left_keys: Vec<Option<Expr>> = vec![None; self.key_names.len()];
        for n in names {
            let name =
                n.0.last()
                    .and_then(|p| p.as_ident())
                    .map(|i| ctx.normalize_ident(i.clone()))
                    .unwrap_or_default();
            let pos = self
                .key_names
                .iter()
                .position(|k| *k == name)
                .ok_or_else(|| {
                    contract_error(
                        format!(
                            "USING column \"{name}\" is not a key column of \"{}\"",
                            def.name
                        ),
                        ON_HINT,
                    )
                })?;
            let (q, f) = self.left.qualified_field_with_unqualified_name(&name)?;
            if let Some(slot) = left_keys.get_mut(pos) {
                *slot = Some(Expr::Column(Column::new(q.cloned(), f.name())));
            }
        }
        Ok(left_keys)
    }

    /// The spine's key expressions, once every key column is matched.
    fn every_key(&self, left_keys: Vec<Option<Expr>>, def: &TableDef) -> DfResult<Vec<Expr>> {
        let missing: Vec<&str> = left_keys
            .iter()
            .zip(&self.key_names)
            .filter(|(k, _)| k.is_none())
            .map(|(_, n)| n.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(contract_error(
                format!(
                    "ON must match every key column of \"{}\"; missing: {}",
                    def.name,
                    missing.join(", ")
                ),
                ON_HINT,
            ));
        }
        Ok(left_keys.into_iter().flatten().collect())
    }
}

/// Recognize an explicit staleness bound: `t - f.et <= d` (backward) or
/// `f.et - t <= d` (forward), `<` allowed, or `f.et >= t - d` / `f.et <= t + d`.
pub(super) fn ttl_bound(
    e: &Expr,
    time: &Expr,
    op: MatchOp,
    is_et: &dyn Fn(&Expr) -> bool,
) -> Option<Expr> {
    let Expr::BinaryExpr(BinaryExpr {
        left,
        op: cmp,
        right,
    }) = e
    else {
        return None;
    };
    let strict = matches!(cmp, Operator::Lt | Operator::Gt);
    let tighten = |d: &Expr| -> Expr {
        if strict {
            Expr::BinaryExpr(BinaryExpr::new(
                Box::new(d.clone()),
                Operator::Minus,
                Box::new(Expr::Literal(
                    ScalarValue::DurationMicrosecond(Some(1)),
                    None,
                )),
            ))
        } else {
            d.clone()
        }
    };
    let constant = |d: &Expr| d.column_refs().is_empty();
    match (left.as_ref(), cmp, right.as_ref()) {
        // t - f.et <= d   |   f.et - t <= d
        (
            Expr::BinaryExpr(BinaryExpr {
                left: a,
                op: Operator::Minus,
                right: b,
            }),
            Operator::LtEq | Operator::Lt,
            d,
        ) if constant(d) => {
            let backward_shape = a.as_ref() == time && is_et(b);
            let forward_shape = is_et(a) && b.as_ref() == time;
            ((op.backward() && backward_shape) || (!op.backward() && forward_shape))
                .then(|| tighten(d))
        }
        // f.et >= t - d   |   f.et <= t + d
        (
            et,
            Operator::GtEq | Operator::Gt,
            Expr::BinaryExpr(BinaryExpr {
                left: a,
                op: Operator::Minus,
                right: d,
            }),
        ) if is_et(et) && a.as_ref() == time && constant(d) && op.backward() => Some(tighten(d)),
        (
            et,
            Operator::LtEq | Operator::Lt,
            Expr::BinaryExpr(BinaryExpr {
                left: a,
                op: Operator::Plus,
                right: d,
            }),
        ) if is_et(et) && a.as_ref() == time && constant(d) && !op.backward() => Some(tighten(d)),
        _ => None,
    }
}

pub(super) fn nullable(s: &Schema) -> Schema {
    Schema::new(
        s.fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<Field>>(),
    )
}
