//! View expansion: before DataFusion plans a statement, every reference to a view
//! becomes a derived table holding the view's query (parsed and rewritten as any
//! statement's query), aliased with the view's name and column names.
//!
//! Expanding in the AST, not in a table provider, lets the planner resolve the
//! tables inside a view together with the statement's own, plan a view over
//! `history(...)`, `FOR SYSTEM_TIME AS OF` or `ASOF JOIN` exactly as if its query
//! were written in place, and see a view created earlier in the same transaction.
//!
//! Invariants: a name that a CTE of the statement defines is never taken for a view
//! (a CTE shadows a view of the same name); views nest at most [`MAX_EXPANSIONS`]
//! times per statement, so a view replaced by one that reads itself is an error
//! (42P17), not a hang.

use std::ops::ControlFlow;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session as DfSession, TableProvider};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::TableType;
use datafusion::physical_plan::ExecutionPlan;

use hindsight_storage::{Catalog, ViewDef};
use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, Ident, ObjectName, Query, Statement, TableAlias,
    TableAliasColumnDef, TableFactor, Visit, VisitMut, Visitor, VisitorMut,
};

use crate::error::{ErrorKind, Result, SqlError};
use crate::ident::normalize;
use crate::plan::catalog::SCHEMA;

/// Most view references one statement may expand (nested ones included).
const MAX_EXPANSIONS: usize = 256;

/// How a statement is rewritten before planning (the session's input rewrites); a
/// view's query gets the same.
pub(crate) type Rewrite = fn(&mut Statement);

/// Replace every view reference in `stmt` with the view's query.
pub(crate) fn expand(stmt: &mut Statement, catalog: &Catalog, rewrite: Rewrite) -> Result<()> {
    if catalog.views().next().is_none() {
        return Ok(());
    }
    let mut ctes = CteNames(Vec::new());
    let _ = Visit::visit(&*stmt, &mut ctes);
    let mut v = Expander {
        catalog,
        rewrite,
        ctes: ctes.0,
        expanded: 0,
    };
    match VisitMut::visit(stmt, &mut v) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(e) => Err(e),
    }
}

/// A view's stored query, parsed and rewritten as a statement's query would be.
pub(crate) fn view_query(view: &ViewDef, rewrite: Rewrite) -> Result<Query> {
    let mut stmts = crate::dialect::parse(&view.sql)?;
    match (stmts.pop(), stmts.is_empty()) {
        (Some(mut stmt @ Statement::Query(_)), true) => {
            rewrite(&mut stmt);
            match stmt {
                Statement::Query(q) => Ok(*q),
                _ => Err(SqlError::internal("a rewrite changed a view's query")),
            }
        }
        _ => Err(SqlError::internal(format!(
            "view \"{}\" does not hold one query",
            view.name
        ))),
    }
}

struct CteNames(Vec<String>);

impl Visitor for CteNames {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if let Some(with) = &q.with {
            self.0
                .extend(with.cte_tables.iter().map(|c| normalize(&c.alias.name)));
        }
        ControlFlow::Continue(())
    }
}

struct Expander<'a> {
    catalog: &'a Catalog,
    rewrite: Rewrite,
    ctes: Vec<String>,
    expanded: usize,
}

impl Expander<'_> {
    /// The view a table name refers to: unqualified (and not a CTE) or `public.`.
    fn view(&self, name: &ObjectName) -> Option<Arc<ViewDef>> {
        let parts: Vec<String> = name
            .0
            .iter()
            .map(|p| p.as_ident().map(normalize))
            .collect::<Option<_>>()?;
        let view = match parts.as_slice() {
            [v] if !self.ctes.contains(v) => v,
            [s, v] if s == SCHEMA => v,
            [_, s, v] if s == SCHEMA => v,
            _ => return None,
        };
        self.catalog.view(view).cloned()
    }
}

impl VisitorMut for Expander<'_> {
    type Break = SqlError;

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<SqlError> {
        let TableFactor::Table {
            name,
            alias,
            args: None,
            version: None,
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let Some(view) = self.view(name) else {
            return ControlFlow::Continue(());
        };
        self.expanded += 1;
        if self.expanded > MAX_EXPANSIONS {
            return ControlFlow::Break(SqlError::new(
                ErrorKind::InvalidObjectDefinition,
                format!("infinite recursion detected in view \"{}\"", view.name),
            ));
        }
        let query = match view_query(&view, self.rewrite) {
            Ok(q) => q,
            Err(e) => return ControlFlow::Break(e),
        };
        let alias = view_alias(&view, alias.take());
        *factor = TableFactor::Derived {
            lateral: false,
            subquery: Box::new(query),
            alias: Some(alias),
            sample: None,
        };
        ControlFlow::Continue(())
    }
}

/// The alias a view reference gets: the one written (its column list wins) or the
/// view's name, with the view's column names.
fn view_alias(view: &ViewDef, written: Option<TableAlias>) -> TableAlias {
    let alias = written.unwrap_or_else(|| TableAlias {
        explicit: false,
        name: Ident::with_quote('"', view.name.clone()),
        columns: Vec::new(),
        at: None,
    });
    if !alias.columns.is_empty() {
        return alias;
    }
    TableAlias {
        columns: view
            .columns
            .iter()
            .map(|c| TableAliasColumnDef {
                name: Ident::with_quote('"', c.clone()),
                data_type: None,
            })
            .collect(),
        ..alias
    }
}

/// The relations a view's query names: tables and views in FROM and joins, and
/// the table argument of `history(...)` / `as_of(...)`.
pub(crate) fn dependencies(view: &ViewDef) -> Result<Vec<String>> {
    let stmts = crate::dialect::parse(&view.sql)?;
    let mut names = Names::default();
    for s in &stmts {
        let _ = Visit::visit(s, &mut names);
    }
    Ok(names.found)
}

/// Collects the relations table factors name.
#[derive(Default)]
struct Names {
    found: Vec<String>,
}

impl Names {
    fn note(&mut self, name: String) {
        if !self.found.contains(&name) {
            self.found.push(name);
        }
    }
}

impl Visitor for Names {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        let TableFactor::Table { name, args, .. } = factor else {
            return ControlFlow::Continue(());
        };
        match args {
            None => {
                if let Some(n) = name.0.last().and_then(|p| p.as_ident()) {
                    self.note(normalize(n));
                }
            }
            Some(a) => {
                for arg in &a.args {
                    if let FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(i))) = arg {
                        self.note(normalize(i));
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// A view's columns as an Arrow schema (types as recorded at creation; a type that
/// no longer parses shows as text).
pub(crate) fn view_schema(view: &ViewDef) -> SchemaRef {
    let fields: Vec<Field> = view
        .columns
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let t = view
                .types
                .get(i)
                .and_then(|t| t.parse::<ArrowType>().ok())
                .unwrap_or(ArrowType::Utf8);
            Field::new(name, t, true)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// A view as the catalog lists it (`information_schema`, `pg_class` relkind 'v'):
/// its columns and definition. Queries never scan it: views are expanded into the
/// statement before planning ([`expand`]).
#[derive(Debug)]
pub(crate) struct ListedView {
    schema: SchemaRef,
    sql: String,
}

impl ListedView {
    pub(crate) fn new(view: &ViewDef) -> Self {
        ListedView {
            schema: view_schema(view),
            sql: view.sql.clone(),
        }
    }
}

#[async_trait]
impl TableProvider for ListedView {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn get_table_definition(&self) -> Option<&str> {
        Some(&self.sql)
    }

    async fn scan(
        &self,
        _state: &dyn DfSession,
        _projection: Option<&Vec<usize>>,
        _filters: &[datafusion::logical_expr::Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Err(SqlError::internal("a view reached the planner unexpanded").into_datafusion())
    }
}
