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

use hindsight_storage::{PUBLIC_SCHEMA, ViewDef, split_relation_key};
use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, Ident, ObjectName, Query, Statement, TableAlias,
    TableAliasColumnDef, TableFactor, Visit, VisitMut, Visitor, VisitorMut,
};

use crate::error::{ErrorKind, Result, SqlError};
use crate::ident::normalize;
use crate::plan::names::{self, Names, qualified_name};

/// Most view references one statement may expand (nested ones included).
const MAX_EXPANSIONS: usize = 256;

/// How a statement is rewritten before planning (the session's input rewrites); a
/// view's query gets the same.
pub(crate) type Rewrite = fn(&mut Statement);

/// Replace every view reference in `stmt` with the view's query, and qualify every
/// table reference that the search path resolves outside `public` (see
/// [`crate::plan::names`]).
pub(crate) fn expand(stmt: &mut Statement, names: &Names, rewrite: Rewrite) -> Result<()> {
    let catalog = names.catalog();
    if catalog.views().next().is_none() && catalog.schemas().next().is_none() {
        return Ok(());
    }
    let mut ctes = CteNames(Vec::new());
    let _ = Visit::visit(&*stmt, &mut ctes);
    let mut v = Expander {
        names,
        rewrite: Some(rewrite),
        ctes: ctes.0,
        expanded: 0,
    };
    match VisitMut::visit(stmt, &mut v) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(e) => Err(e),
    }
}

/// Qualify every relation a view's query names outside `public` with its schema,
/// as the search path resolves it now (views keep no other binding: see
/// `session::alter`), so using the view later reads the same schema's relations
/// whatever the search path is then.
pub(crate) fn qualify(query: &mut Query, names: &Names) {
    let mut ctes = CteNames(Vec::new());
    let _ = Visit::visit(&*query, &mut ctes);
    let mut v = Expander {
        names,
        rewrite: None,
        ctes: ctes.0,
        expanded: 0,
    };
    let _ = VisitMut::visit(query, &mut v);
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
    names: &'a Names,
    /// How an expanded view's query is rewritten; `None`: views are not expanded.
    rewrite: Option<Rewrite>,
    ctes: Vec<String>,
    expanded: usize,
}

impl Expander<'_> {
    /// The relation key a table name refers to (a CTE's name refers to no relation).
    fn resolve(&self, name: &ObjectName) -> Option<String> {
        let parts = names::parts(name)?;
        if let [only] = parts.as_slice()
            && self.ctes.contains(only)
        {
            return None;
        }
        self.names.existing(&parts)
    }

    /// Qualify the table argument of `history(t)`, `as_of(t, ...)` and the like.
    fn qualify_table_arg(&self, args: &mut [FunctionArg]) {
        let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(e))) = args.first_mut() else {
            return;
        };
        let written = match e {
            Expr::Identifier(i) => vec![normalize(i)],
            Expr::CompoundIdentifier(parts) => parts.iter().map(normalize).collect(),
            _ => return,
        };
        if let Some(def) = self.names.find_table(&written)
            && split_relation_key(&def.name).0 != PUBLIC_SCHEMA
        {
            let ObjectName(parts) = qualified_name(&def.name);
            *e = Expr::CompoundIdentifier(
                parts.iter().filter_map(|p| p.as_ident()).cloned().collect(),
            );
        }
    }

    /// Replace a view reference with the view's query.
    fn expand_view(
        &mut self,
        view: &ViewDef,
        rewrite: Rewrite,
        factor: &mut TableFactor,
    ) -> Result<()> {
        self.expanded += 1;
        if self.expanded > MAX_EXPANSIONS {
            return Err(SqlError::new(
                ErrorKind::InvalidObjectDefinition,
                format!("infinite recursion detected in view \"{}\"", view.name),
            ));
        }
        let query = view_query(view, rewrite)?;
        let TableFactor::Table { alias, .. } = factor else {
            return Ok(());
        };
        let alias = view_alias(view, alias.take());
        *factor = TableFactor::Derived {
            lateral: false,
            subquery: Box::new(query),
            alias: Some(alias),
            sample: None,
        };
        Ok(())
    }
}

impl VisitorMut for Expander<'_> {
    type Break = SqlError;

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<SqlError> {
        let TableFactor::Table {
            name,
            alias,
            args,
            version,
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        if let Some(a) = args {
            self.qualify_table_arg(&mut a.args);
            return ControlFlow::Continue(());
        }
        let Some(key) = self.resolve(name) else {
            return ControlFlow::Continue(());
        };
        let catalog = self.names.catalog().clone();
        if let Some(view) = catalog.view(&key)
            && let Some(rewrite) = self.rewrite
            && version.is_none()
        {
            return match self.expand_view(view, rewrite, factor) {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => ControlFlow::Break(e),
            };
        }
        let (schema, bare) = split_relation_key(&key);
        if schema != PUBLIC_SCHEMA {
            *name = qualified_name(&key);
            if alias.is_none() {
                *alias = Some(TableAlias {
                    explicit: false,
                    name: Ident::with_quote('"', bare),
                    columns: Vec::new(),
                    at: None,
                });
            }
        }
        ControlFlow::Continue(())
    }
}

/// The alias a view reference gets: the one written (its column list wins) or the
/// view's name, with the view's column names.
fn view_alias(view: &ViewDef, written: Option<TableAlias>) -> TableAlias {
    let alias = written.unwrap_or_else(|| TableAlias {
        explicit: false,
        name: Ident::with_quote('"', split_relation_key(&view.name).1),
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

/// The relations a view's query names (as relation keys, resolved with `names`):
/// tables and views in FROM and joins, and the table argument of `history(...)` /
/// `as_of(...)`.
pub(crate) fn dependencies(view: &ViewDef, names: &Names) -> Result<Vec<String>> {
    let stmts = crate::dialect::parse(&view.sql)?;
    let mut found = Written::default();
    for s in &stmts {
        let _ = Visit::visit(s, &mut found);
    }
    let mut keys: Vec<String> = Vec::new();
    for parts in found.0 {
        let key = names
            .existing(&parts)
            .or_else(|| names::key_of(&parts))
            .unwrap_or_default();
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// Collects the names table factors give relations, as written.
#[derive(Default)]
struct Written(Vec<Vec<String>>);

impl Visitor for Written {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        let TableFactor::Table { name, args, .. } = factor else {
            return ControlFlow::Continue(());
        };
        match args {
            None => self.0.extend(names::parts(name)),
            Some(a) => {
                if let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(e))) = a.args.first() {
                    match e {
                        Expr::Identifier(i) => self.0.push(vec![normalize(i)]),
                        Expr::CompoundIdentifier(p) => {
                            self.0.push(p.iter().map(normalize).collect())
                        }
                        _ => {}
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
