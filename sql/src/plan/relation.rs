//! Planning Hindsight's table references (a DataFusion `RelationPlanner`).
//!
//! - `as_of(t, ts [, known_at => x])` and `history(t [, known_at => x])`;
//! - `t FOR SYSTEM_TIME AS OF x` (other table-version clauses are errors with a hint);
//! - the ASOF JOIN marker produced by `rewrite` (see `asof`);
//! - internal relations: `__hindsight_keys(t)` (current state plus encoded keys, for
//!   DELETE) and `__hindsight_stash(n)` (batches stashed by the running statement).
//!
//! Invariant: a table-version clause is never dropped. Anything parsed but not
//! supported is an error naming the supported spelling.

use std::sync::Arc;

use datafusion::catalog::MemTable;
use datafusion::common::{DFSchema, ScalarValue, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::planner::{
    PlannedRelation, RelationPlanner, RelationPlannerContext, RelationPlanning,
};
use datafusion::logical_expr::{Expr, LogicalPlanBuilder};
use hindsight_storage::{Db, TableDef};
use sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArgOperator, ObjectName, TableAlias,
    TableFactor, TableVersion,
};

use crate::error::{ErrorKind, SqlError};
use crate::plan::asof;
use crate::plan::context::StatementContext;
use crate::plan::names::key_of;
use crate::plan::provider::{HsTable, ReadSpec};

/// Internal relation: current state with encoded keys.
pub const KEYS_FUNCTION: &str = "__hindsight_keys";
/// Internal relation: batches stashed by the running statement.
pub const STASH_FUNCTION: &str = "__hindsight_stash";

/// Plans Hindsight's relations.
#[derive(Debug)]
pub struct HsRelationPlanner {
    db: Db,
    stmt: Arc<StatementContext>,
}

impl HsRelationPlanner {
    pub fn new(db: Db, stmt: Arc<StatementContext>) -> Self {
        HsRelationPlanner { db, stmt }
    }

    fn table(&self, name: &str) -> Result<Arc<TableDef>, SqlError> {
        self.stmt
            .catalog(&self.db)
            .table(name)
            .cloned()
            .ok_or_else(|| {
                SqlError::new(
                    ErrorKind::UndefinedTable,
                    format!("relation \"{name}\" does not exist"),
                )
            })
    }
}

/// Scan `def` read as `read`, visible to the query under `qualifier`.
///
/// DataFusion compares table scans by table name, projection and filters, not by
/// source, so scans of one table read at different points in time must carry
/// different names or its optimizer may merge them. The scan is named after its read
/// spec (`history(t)`, `as_of(t, <ts>)`, ...) and aliased to the qualifier users write.
fn scan(
    def: Arc<TableDef>,
    read: ReadSpec,
    key_bytes: bool,
    qualifier: String,
) -> Result<datafusion::logical_expr::LogicalPlan, SqlError> {
    let show = |e: &Option<Expr>| {
        e.as_ref()
            .map(|e| format!(", known_at => {e}"))
            .unwrap_or_default()
    };
    let name = match &read {
        ReadSpec::Current if key_bytes => format!("{KEYS_FUNCTION}({})", def.name),
        ReadSpec::Current => def.name.clone(),
        ReadSpec::SystemTime(e) => format!("{} FOR SYSTEM_TIME AS OF {e}", def.name),
        ReadSpec::AsOf { at, known_at } => format!("as_of({}, {at}{})", def.name, show(known_at)),
        ReadSpec::History { known_at, with_seq } => format!(
            "history({}{}{})",
            def.name,
            show(known_at),
            if *with_seq { ", with_seq => true" } else { "" }
        ),
    };
    let provider = Arc::new(HsTable::new(def, read, key_bytes));
    Ok(LogicalPlanBuilder::scan(
        TableReference::bare(name),
        provider_as_source(provider),
        None,
    )?
    .alias(TableReference::bare(qualifier))?
    .build()?)
}

fn err(e: SqlError) -> datafusion::error::DataFusionError {
    e.into_datafusion()
}

/// The last part of an object name, normalized.
fn object_name(ctx: &dyn RelationPlannerContext, name: &ObjectName) -> Option<String> {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| ctx.normalize_ident(i.clone()))
}

/// The relation key of a table name (already qualified by the search path, see
/// [`crate::plan::names`]).
pub(crate) fn table_key(ctx: &dyn RelationPlannerContext, name: &ObjectName) -> Option<String> {
    let parts: Option<Vec<String>> = name
        .0
        .iter()
        .map(|p| p.as_ident().map(|i| ctx.normalize_ident(i.clone())))
        .collect();
    key_of(&parts?)
}

/// A table name given as a function argument (`as_of(driver_stats, ...)`).
fn table_arg(ctx: &dyn RelationPlannerContext, e: &SqlExpr) -> Option<String> {
    match e {
        SqlExpr::Identifier(i) => Some(ctx.normalize_ident(i.clone())),
        SqlExpr::CompoundIdentifier(parts) => key_of(
            &parts
                .iter()
                .map(|i| ctx.normalize_ident(i.clone()))
                .collect::<Vec<_>>(),
        ),
        SqlExpr::Value(v) => match &v.value {
            sqlparser::ast::Value::SingleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// Positional arguments and `name => expr` arguments of a table function call.
type SplitArgs = (Vec<SqlExpr>, Vec<(String, SqlExpr)>);

/// Split function arguments into positional expressions and `name => expr` pairs.
fn split_args(
    ctx: &dyn RelationPlannerContext,
    args: &[FunctionArg],
) -> Result<SplitArgs, SqlError> {
    let mut pos = Vec::new();
    let mut named = Vec::new();
    for a in args {
        match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => pos.push(e.clone()),
            FunctionArg::Named {
                name,
                arg: FunctionArgExpr::Expr(e),
                operator: FunctionArgOperator::RightArrow | FunctionArgOperator::Assignment,
            } => named.push((ctx.normalize_ident(name.clone()), e.clone())),
            FunctionArg::ExprNamed {
                name: SqlExpr::Identifier(name),
                arg: FunctionArgExpr::Expr(e),
                ..
            } => named.push((ctx.normalize_ident(name.clone()), e.clone())),
            other => {
                return Err(SqlError::syntax(format!("unsupported argument {other}"))
                    .with_hint("write as_of(table, timestamp, known_at => timestamp)"));
            }
        }
    }
    Ok((pos, named))
}

impl HsRelationPlanner {
    fn plan_function(
        &self,
        func: &str,
        args: &[FunctionArg],
        alias: Option<TableAlias>,
        ctx: &mut dyn RelationPlannerContext,
    ) -> Result<Option<PlannedRelation>, SqlError> {
        let usage = match func {
            "as_of" => "as_of(table, timestamp [, known_at => timestamp])",
            "history" => "history(table [, known_at => timestamp] [, with_seq => true])",
            KEYS_FUNCTION => "__hindsight_keys(table)",
            STASH_FUNCTION => "__hindsight_stash(n)",
            _ => return Ok(None),
        };
        let (pos, named) = split_args(ctx, args)?;
        let bad =
            |m: &str| SqlError::syntax(format!("{func}: {m}")).with_hint(format!("write {usage}"));
        if func == STASH_FUNCTION {
            return self.plan_stash(&pos, alias, bad).map(Some);
        }
        let table_name = pos
            .first()
            .and_then(|e| table_arg(ctx, e))
            .ok_or_else(|| bad("the first argument must be a table name"))?;
        let def = self.table(&table_name)?;
        let mut known_at = None;
        let mut with_seq = false;
        for (name, e) in named {
            match name.as_str() {
                "known_at" if func != KEYS_FUNCTION => {
                    known_at = Some(ctx.sql_to_expr(e, &DFSchema::empty())?);
                }
                "with_seq" if func == "history" => {
                    with_seq = match ctx.sql_to_expr(e, &DFSchema::empty())? {
                        Expr::Literal(ScalarValue::Boolean(Some(b)), _) => b,
                        _ => return Err(bad("with_seq takes true or false")),
                    };
                }
                other => return Err(bad(&format!("unknown argument \"{other}\""))),
            }
        }
        let read = match func {
            "as_of" => {
                if pos.len() != 2 {
                    return Err(bad("expects a table and a timestamp"));
                }
                let at = ctx.sql_to_expr(pos[1].clone(), &DFSchema::empty())?;
                ReadSpec::AsOf { at, known_at }
            }
            "history" => {
                if pos.len() != 1 {
                    return Err(bad("expects one table"));
                }
                ReadSpec::History { known_at, with_seq }
            }
            _ => {
                if pos.len() != 1 {
                    return Err(bad("expects one table"));
                }
                ReadSpec::Current
            }
        };
        let key_bytes = func == KEYS_FUNCTION;
        let qualifier = if key_bytes {
            def.bare_name().to_string()
        } else {
            func.to_string()
        };
        let plan = scan(def, read, key_bytes, qualifier)?;
        Ok(Some(PlannedRelation::new(plan, alias)))
    }

    /// `__hindsight_stash(n)`: the batches a statement stashed, as a table.
    fn plan_stash(
        &self,
        pos: &[SqlExpr],
        alias: Option<TableAlias>,
        bad: impl Fn(&str) -> SqlError,
    ) -> Result<PlannedRelation, SqlError> {
        let n = match pos.first() {
            Some(SqlExpr::Value(v)) => v.value.to_string().parse::<usize>().ok(),
            _ => None,
        }
        .ok_or_else(|| bad("expects a stash number"))?;
        let batches = self.stmt.stashed(n).ok_or_else(|| bad("no such stash"))?;
        let schema = batches
            .first()
            .map(|b| b.schema())
            .ok_or_else(|| bad("empty stash"))?;
        let provider = MemTable::try_new(schema, vec![batches])?;
        let plan = LogicalPlanBuilder::scan(
            TableReference::bare(format!("{STASH_FUNCTION}_{n}")),
            provider_as_source(Arc::new(provider)),
            None,
        )?
        .build()?;
        Ok(PlannedRelation::new(plan, alias))
    }

    fn plan_version(
        &self,
        name: &ObjectName,
        version: &TableVersion,
        alias: Option<TableAlias>,
        ctx: &mut dyn RelationPlannerContext,
    ) -> Result<PlannedRelation, SqlError> {
        let hint = "write FROM t FOR SYSTEM_TIME AS OF <timestamp> (database knowledge) or \
                    FROM as_of(t, <timestamp>) (event time)";
        let expr: Expr = match version {
            TableVersion::ForSystemTimeAsOf(e) => ctx.sql_to_expr(e.clone(), &DFSchema::empty())?,
            other => {
                return Err(SqlError::unsupported(format!(
                    "table version clause \"{other}\" is not supported"
                ))
                .with_hint(hint));
            }
        };
        let table = table_key(ctx, name).ok_or_else(|| SqlError::syntax("bad table name"))?;
        let def = self.table(&table)?;
        let qualifier = def.bare_name().to_string();
        let plan = scan(def, ReadSpec::SystemTime(expr), false, qualifier)?;
        Ok(PlannedRelation::new(plan, alias))
    }
}

impl RelationPlanner for HsRelationPlanner {
    fn plan_relation(
        &self,
        relation: TableFactor,
        ctx: &mut dyn RelationPlannerContext,
    ) -> DfResult<RelationPlanning> {
        match relation {
            TableFactor::Table {
                ref name,
                ref args,
                ref version,
                ref alias,
                ..
            } => {
                if let Some(args) = args {
                    let func = object_name(ctx, name).unwrap_or_default();
                    if let Some(planned) = self
                        .plan_function(&func, &args.args, alias.clone(), ctx)
                        .map_err(err)?
                    {
                        if version.is_some() {
                            return Err(err(SqlError::syntax(format!(
                                "{func}(...) cannot take a table version clause"
                            ))
                            .with_hint("pass known_at => <timestamp> instead")));
                        }
                        return Ok(RelationPlanning::Planned(Box::new(planned)));
                    }
                }
                if let Some(v) = version {
                    let planned = self
                        .plan_version(name, v, alias.clone(), ctx)
                        .map_err(err)?;
                    return Ok(RelationPlanning::Planned(Box::new(planned)));
                }
                Ok(RelationPlanning::Original(Box::new(relation)))
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias: Some(alias),
            } if alias.name.value == asof::MARKER => {
                let plan = asof::plan(&self.stmt.catalog(&self.db), *table_with_joins, ctx)?;
                Ok(RelationPlanning::Planned(Box::new(PlannedRelation::new(
                    plan, None,
                ))))
            }
            other => Ok(RelationPlanning::Original(Box::new(other))),
        }
    }
}
