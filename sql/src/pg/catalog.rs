//! What Postgres clients need to describe the database: the `pg_catalog` schema,
//! Postgres functions (`version()`, `current_schema()`, `pg_table_is_visible`,
//! `format_type`, `pg_get_userbyid`, ...) and the rewrites that turn the catalog
//! queries of psql, JDBC, SQLAlchemy and friends into SQL DataFusion can plan.
//!
//! Functions Hindsight adds itself are in `pgfuncs`.
//!
//! Built on `datafusion-pg-catalog` (the catalog crate of the datafusion-postgres
//! project): its `pg_class`/`pg_attribute`/`pg_namespace`/`pg_database` are generated
//! from the DataFusion catalog (so from the storage catalog, at query time), the other
//! `pg_catalog` tables are a real PostgreSQL's exports, and its parser rewrites
//! Postgres-only syntax (`OPERATOR(pg_catalog.~)`, `'t'::regclass`, `COLLATE`, ...).
//!
//! Invariants: the catalog machinery is built once per engine (a template session
//! state every session starts from); ordinary queries never go through the
//! compatibility parser, only statements that mention catalog objects do (and if that
//! parser rejects one, Hindsight's own dialect parses it, so its errors are ours).
//! `pg_attribute` reports the declared schema (NOT NULL as written in CREATE TABLE),
//! not the all-nullable schema DataFusion plans with (see `provider::HsTable`).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{CatalogProviderList, SchemaProvider, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionState;
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog::catalog_info::{CatalogInfo, IndexInfo};
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::{PgCatalogSchemaProvider, PgCatalogStaticTables};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use hindsight_storage::Db;
use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, GroupByExpr, Ident, ObjectName, ObjectNamePart, SelectItem, SetExpr,
    Statement, Value, VisitMut, VisitorMut,
};

use super::views::{
    COMPUTED_VIEWS, CURSORS_VIEW, INDEXES_VIEW, VIEWS_VIEW, cursors_view, views_view,
};
use crate::error::Result;
use crate::plan::catalog::CATALOG;
use crate::plan::system::STAT_REPLICATION_VIEW;

/// Words that mark a statement as a client's catalog query.
const CATALOG_MARKERS: &[&str] = &[
    "pg_",
    "information_schema",
    "::reg",
    "current_user",
    "session_user",
    "current_schema",
];

/// The rewriting parser for client catalog queries (built once per engine).
#[derive(Debug)]
pub(crate) struct ClientCompat {
    parser: PostgresCompatibilityParser,
}

impl ClientCompat {
    pub(crate) fn new() -> Self {
        ClientCompat {
            parser: PostgresCompatibilityParser::new(),
        }
    }

    /// Parse `sql` with the compatibility rewrites when it looks like a catalog query;
    /// `None` means "use Hindsight's own parser".
    pub(crate) fn parse(&self, sql: &str) -> Option<Vec<Statement>> {
        // Every simple query passes here: search without allocating a lowered copy.
        let text = sql.as_bytes();
        let mentions = |m: &str| {
            text.windows(m.len())
                .any(|w| w.eq_ignore_ascii_case(m.as_bytes()))
        };
        if !CATALOG_MARKERS.iter().any(|m| mentions(m)) {
            return None;
        }
        let mut stmts = self.parser.parse(sql).ok()?;
        if let [only] = stmts.as_slice()
            && let Some(instead) = super::introspection::replacement(only)
        {
            stmts = self.parser.parse(instead).ok()?;
        }
        for s in &mut stmts {
            let _ = s.visit(&mut AggregateScalarSubqueries);
            let _ = s.visit(&mut RegprocZero);
            let _ = s.visit(&mut QualifyViews);
        }
        Some(stmts)
    }
}

/// Aggregate functions a scalar subquery's projection may already use.
const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "first_value",
    "last_value",
];

/// Catalog queries use correlated scalar subqueries that return at most one row
/// (`(SELECT pg_get_expr(d.adbin, ...) FROM pg_attrdef d WHERE d.adrelid = a.attrelid
/// ...)`); DataFusion decorrelates only aggregated ones. Wrapping the single projected
/// value in `max()` keeps the answer for zero or one row (PostgreSQL would reject
/// more than one; these catalog joins are on keys, so there is never more).
struct AggregateScalarSubqueries;

impl VisitorMut for AggregateScalarSubqueries {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::Subquery(q) = expr else {
            return ControlFlow::Continue(());
        };
        if q.limit_clause.is_some() || q.order_by.is_some() {
            return ControlFlow::Continue(());
        }
        let SetExpr::Select(select) = q.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
        if grouped || select.distinct.is_some() || select.projection.len() != 1 {
            return ControlFlow::Continue(());
        }
        let item = match &mut select.projection[0] {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
            _ => return ControlFlow::Continue(()),
        };
        let aggregated = matches!(item, Expr::Function(f)
            if f.name.0.last().and_then(|p| p.as_ident()).is_some_and(|i|
                AGGREGATES.contains(&i.value.to_ascii_lowercase().as_str())));
        if aggregated {
            return ControlFlow::Continue(());
        }
        let local = local_qualifiers(&select.from);
        let mut outer = OuterRefs {
            local: &local,
            found: false,
        };
        let _ = sqlparser::ast::Visit::visit(&*item, &mut outer);
        *item = if outer.found {
            aggregate_locals(item.clone(), &local)
        } else {
            crate::plan::rewrite::func("max", vec![item.clone()])
        };
        ControlFlow::Continue(())
    }
}

/// The names a subquery's FROM items go by (alias, else the table's last name part).
fn local_qualifiers(from: &[sqlparser::ast::TableWithJoins]) -> Vec<String> {
    use sqlparser::ast::TableFactor;
    let name = |f: &TableFactor| match f {
        TableFactor::Table { alias: Some(a), .. } | TableFactor::Derived { alias: Some(a), .. } => {
            Some(a.name.value.to_ascii_lowercase())
        }
        TableFactor::Table { name, .. } => name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(|i| i.value.to_ascii_lowercase()),
        _ => None,
    };
    from.iter()
        .flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)))
        .filter_map(name)
        .collect()
}

/// Whether a column reference names one of the subquery's own relations (an
/// unqualified name is taken for its own, as SQL resolves it first).
fn is_local(parts: &[Ident], local: &[String]) -> bool {
    match parts {
        [.., q, _] => local.contains(&q.value.to_ascii_lowercase()),
        _ => true,
    }
}

/// Finds a column reference to a relation outside the subquery.
struct OuterRefs<'a> {
    local: &'a [String],
    found: bool,
}

impl sqlparser::ast::Visitor for OuterRefs<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if let Expr::CompoundIdentifier(parts) = e
            && !is_local(parts, self.local)
        {
            self.found = true;
        }
        ControlFlow::Continue(())
    }
}

/// A projected value that also reads outer columns, made an aggregate without
/// putting outer references inside an aggregate function (DataFusion cannot name
/// those): each of the subquery's own columns is wrapped in `max()`, and no row at
/// all gives NULL, as the scalar subquery would: `CASE WHEN count(*) = 0 THEN NULL
/// ELSE <value with max(own column)> END`.
fn aggregate_locals(mut item: Expr, local: &[String]) -> Expr {
    struct WrapLocals<'a>(&'a [String]);
    impl VisitorMut for WrapLocals<'_> {
        type Break = ();
        fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            let own = match e {
                Expr::Identifier(_) => true,
                Expr::CompoundIdentifier(parts) => is_local(parts, self.0),
                _ => false,
            };
            if own {
                *e = crate::plan::rewrite::func("max", vec![e.clone()]);
            }
            ControlFlow::Continue(())
        }
    }
    let _ = item.visit(&mut WrapLocals(local));
    let count =
        crate::plan::rewrite::func("count", vec![Expr::value(Value::Number("1".into(), false))]);
    Expr::Case {
        case_token: sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
        end_token: sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
        operand: None,
        conditions: vec![sqlparser::ast::CaseWhen {
            condition: Expr::BinaryOp {
                left: Box::new(count),
                op: BinaryOperator::Eq,
                right: Box::new(Expr::value(Value::Number("0".into(), false))),
            },
            result: Expr::value(Value::Null),
        }],
        else_result: Some(Box::new(item)),
    }
}

/// `pg_catalog` is always first on PostgreSQL's search path: an unqualified name of
/// one of the views Hindsight adds there (`pg_cursors`, `pg_indexes`, `pg_views`) means that view.
struct QualifyViews;

impl VisitorMut for QualifyViews {
    type Break = ();

    fn pre_visit_relation(&mut self, name: &mut ObjectName) -> ControlFlow<()> {
        if let [ObjectNamePart::Identifier(only)] = name.0.as_slice()
            && COMPUTED_VIEWS.contains(&only.value.to_ascii_lowercase().as_str())
        {
            name.0
                .insert(0, ObjectNamePart::Identifier(Ident::new("pg_catalog")));
        }
        ControlFlow::Continue(())
    }
}

/// The `regproc` columns of the catalog tables: a function named by its name, and
/// `-` for none (OID 0). They are text here.
const REGPROC_COLUMNS: &[&str] = &[
    "typinput",
    "typoutput",
    "typreceive",
    "typsend",
    "typmodin",
    "typmodout",
    "typanalyze",
    "typsubscript",
    "prosupport",
    "aggfnoid",
    "aggtransfn",
    "aggfinalfn",
    "aggcombinefn",
    "aggserialfn",
    "aggdeserialfn",
    "aggmtransfn",
    "aggminvtransfn",
    "aggmfinalfn",
    "oprcode",
    "oprrest",
    "oprjoin",
    "rngcanonical",
    "rngsubdiff",
];

/// Drivers test a `regproc` column against OID 0 (`typreceive != 0`, ADBC's type
/// query): PostgreSQL compares OIDs, and the column here is the function's name, so
/// `= 0` / `!= 0` against such a column compares with `-`, the name of OID 0.
struct RegprocZero;

impl VisitorMut for RegprocZero {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::BinaryOp { left, op, right } = expr else {
            return ControlFlow::Continue(());
        };
        if !matches!(op, BinaryOperator::Eq | BinaryOperator::NotEq) {
            return ControlFlow::Continue(());
        }
        let dash = || Expr::value(Value::SingleQuotedString("-".into()));
        if is_regproc_column(left) && is_zero(right) {
            **right = dash();
        } else if is_regproc_column(right) && is_zero(left) {
            **left = dash();
        }
        ControlFlow::Continue(())
    }
}

fn is_regproc_column(e: &Expr) -> bool {
    let name = match e {
        Expr::Identifier(i) => i,
        Expr::CompoundIdentifier(parts) => match parts.last() {
            Some(i) => i,
            None => return false,
        },
        _ => return false,
    };
    REGPROC_COLUMNS.contains(&name.value.to_ascii_lowercase().as_str())
}

fn is_zero(e: &Expr) -> bool {
    matches!(e, Expr::Value(v) if matches!(&v.value, Value::Number(n, _) if n == "0"))
}

/// Install `pg_catalog` and the Postgres functions into a session state whose catalog
/// list holds Hindsight's catalog.
pub(crate) fn install(state: SessionState, db: &Db) -> Result<SessionState> {
    let ctx = SessionContext::new_with_state(state);
    datafusion_pg_catalog::setup_pg_catalog(&ctx, CATALOG, EmptyContextProvider)
        .map_err(|e: Box<DataFusionError>| *e)?;
    // The same pg_catalog, describing tables by their declared schema.
    let declared = DeclaredSchemas {
        db: db.clone(),
        list: ctx.state().catalog_list().clone(),
    };
    let static_tables = Arc::new(PgCatalogStaticTables::try_new()?);
    for f in crate::pg::functions::functions(static_tables.pg_type.data(), db) {
        ctx.register_udf(f);
    }
    let system = crate::plan::system::admin_udfs(db);
    for udf in system.into_iter().chain(crate::plan::system::wal_udfs(db)) {
        ctx.register_udf(udf);
    }
    let provider = PgCatalogSchemaProvider::try_new(declared, static_tables, EmptyContextProvider)?;
    ctx.register_udf(crate::pg::visibility::TableIsVisible::udf(
        db.clone(),
        provider.oid_cache(),
    ));
    for udf in crate::pg::sizes::udfs(db, &provider.oid_cache()) {
        ctx.register_udf(udf);
    }
    for f in crate::pg::indexes::Definition::udfs(db, &provider.oid_cache()) {
        ctx.register_udf(f);
    }
    let pg_catalog = WithLiveViews {
        inner: Arc::new(provider),
        db: db.clone(),
    };
    if let Some(catalog) = ctx.catalog(CATALOG) {
        catalog.register_schema("pg_catalog", Arc::new(pg_catalog))?;
    }
    Ok(ctx.state())
}

/// `pg_catalog` with the live views it does not have (`pg_stat_replication`).
#[derive(Debug)]
struct WithLiveViews {
    inner: Arc<dyn SchemaProvider>,
    db: Db,
}

#[async_trait]
impl SchemaProvider for WithLiveViews {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        names.push(STAT_REPLICATION_VIEW.to_string());
        names.push(CURSORS_VIEW.to_string());
        names.push(INDEXES_VIEW.to_string());
        names
    }

    async fn table(&self, name: &str) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
        if name.eq_ignore_ascii_case(STAT_REPLICATION_VIEW) {
            return Ok(crate::plan::system::view(name, &self.db));
        }
        if name.eq_ignore_ascii_case(CURSORS_VIEW) {
            return Ok(Some(Arc::new(cursors_view())));
        }
        if name.eq_ignore_ascii_case(INDEXES_VIEW) {
            return Ok(Some(Arc::new(crate::pg::indexes::indexes_view(
                self.db.clone(),
            ))));
        }
        if name.eq_ignore_ascii_case(VIEWS_VIEW) {
            return Ok(Some(Arc::new(views_view(self.db.clone()))));
        }
        self.inner.table(name).await
    }

    fn table_exist(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case(STAT_REPLICATION_VIEW)
            || name.eq_ignore_ascii_case(CURSORS_VIEW)
            || name.eq_ignore_ascii_case(INDEXES_VIEW)
            || self.inner.table_exist(name)
    }
}

/// The DataFusion catalog as `pg_catalog` sees it, with user tables' declared schemas.
#[derive(Clone)]
struct DeclaredSchemas {
    db: Db,
    list: Arc<dyn CatalogProviderList>,
}

impl std::fmt::Debug for DeclaredSchemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeclaredSchemas")
    }
}

#[async_trait]
impl CatalogInfo for DeclaredSchemas {
    async fn catalog_names(&self) -> std::result::Result<Vec<String>, DataFusionError> {
        CatalogInfo::catalog_names(&self.list).await
    }

    async fn schema_names(
        &self,
        catalog: &str,
    ) -> std::result::Result<Option<Vec<String>>, DataFusionError> {
        CatalogInfo::schema_names(&self.list, catalog).await
    }

    async fn table_names(
        &self,
        catalog: &str,
        schema: &str,
    ) -> std::result::Result<Option<Vec<String>>, DataFusionError> {
        CatalogInfo::table_names(&self.list, catalog, schema).await
    }

    async fn table_schema(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> std::result::Result<Option<SchemaRef>, DataFusionError> {
        let c = self.db.catalog();
        if catalog == CATALOG && c.schema_exists(schema) {
            let key = hindsight_storage::relation_key(schema, table);
            if let Some(view) = c.view(&key) {
                return Ok(Some(crate::plan::views::view_schema(view)));
            }
            return Ok(c.table(&key).map(|def| Arc::new(def.arrow_schema(None))));
        }
        CatalogInfo::table_schema(&self.list, catalog, schema, table).await
    }

    async fn table_type(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> std::result::Result<Option<TableType>, DataFusionError> {
        CatalogInfo::table_type(&self.list, catalog, schema, table).await
    }

    async fn table_indexes(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> std::result::Result<Vec<IndexInfo>, DataFusionError> {
        if catalog != CATALOG {
            return Ok(Vec::new());
        }
        Ok(crate::pg::indexes::index_infos(
            &self.db.catalog(),
            schema,
            table,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_subqueries_over_outer_columns_aggregate_only_their_own() {
        let c = ClientCompat::new();
        let sql = "SELECT (SELECT json_build_object('a', a.attidentity = 'a', 's', s.seqstart) \
                   FROM pg_sequence s WHERE s.seqrelid = a.attrelid) FROM pg_attribute a";
        let text = c.parse(sql).expect("a catalog query")[0].to_string();
        assert!(
            text.contains(
                "CASE WHEN count(1) = 0 THEN NULL ELSE json_build_object('a', a.attidentity = 'a', 's', max(s.seqstart)) END"
            ),
            "{text}"
        );
        let plain = c
            .parse("SELECT (SELECT s.seqstart FROM pg_sequence s WHERE s.seqrelid = a.attrelid) FROM pg_attribute a")
            .expect("a catalog query")[0]
            .to_string();
        assert!(plain.contains("SELECT max(s.seqstart) FROM"), "{plain}");
    }

    #[test]
    fn only_catalog_queries_take_the_compatibility_parser() {
        let c = ClientCompat::new();
        assert!(c.parse("SELECT * FROM t WHERE id = 1").is_none());
        assert!(
            c.parse("SELECT * FROM t FOR SYSTEM_TIME AS OF now() WHERE pg_x = 1")
                .is_none()
        );
        let s = c
            .parse("SELECT c.relname FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default")
            .unwrap();
        let text = s[0].to_string();
        assert!(!text.contains("OPERATOR"), "{text}");
        assert!(!text.contains("COLLATE"), "{text}");
    }
}
