//! The SQL engine every session shares: the storage database, the DataFusion
//! session state each session starts from (catalog, `pg_catalog`, functions,
//! planners with the as-of join), and the client-compatibility parser.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session as DfSession;
use datafusion::error::Result as DfResult;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::{QueryPlanner, SessionState};
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::{Optimizer, OptimizerRule};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion::prelude::SessionConfig;
use hindsight_storage::Db;
use sqlparser::ast::Statement;

use crate::dialect;
use crate::error::Result;
use crate::pg::catalog::ClientCompat;
use crate::plan::apply::{ApplyPlanner, PerRowSubqueries};
use crate::plan::asof::AsofPlanner;
use crate::plan::catalog::{CATALOG, HsCatalog, SCHEMA};

/// Engine-wide settings of the SQL layer.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Memory one statement may use for sorts, joins and aggregations (bytes).
    pub query_memory_limit: usize,
    /// Parallelism of DataFusion plans (and threads one as-of join may use).
    pub target_partitions: usize,
    /// Smallest share of an as-of join's spine worth its own thread.
    pub asof_rows_per_thread: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            query_memory_limit: 2 << 30,
            target_partitions: 2,
            asof_rows_per_thread: 65_536,
        }
    }
}

/// The SQL engine: a storage database plus what every session shares.
pub struct Engine {
    pub(super) db: Db,
    pub(super) options: EngineOptions,
    /// The session state every session starts from: catalog (with `pg_catalog`),
    /// functions, planners. Built once; sessions clone it.
    pub(super) template: SessionState,
    /// The database as the engine sees it (committed tables; `pg_catalog`);
    /// sessions plan with a copy that adds their transaction's DDL.
    pub(super) catalog: Arc<HsCatalog>,
    compat: ClientCompat,
    /// Numbers of the sessions' temporary schemas.
    pub(super) temp_ids: super::temp::TempIds,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("db", &self.db).finish()
    }
}

impl Engine {
    pub fn new(db: Db, options: EngineOptions) -> Result<Arc<Engine>> {
        let catalog = Arc::new(HsCatalog::new(db.clone()));
        let base = SessionStateBuilder::new()
            .with_config(session_config(&options))
            .with_default_features()
            .with_query_planner(Arc::new(HsQueryPlanner {
                db: db.clone(),
                asof_rows_per_thread: options.asof_rows_per_thread,
            }))
            .with_optimizer_rules(optimizer_rules())
            .with_analyzer_rules(analyzer_rules())
            .build();
        base.catalog_list()
            .register_catalog(CATALOG.to_string(), catalog.clone());
        let template = crate::pg::catalog::install(base, &db)?;
        super::temp::drop_stale_temp_schemas(&db)?;
        Ok(Arc::new(Engine {
            db,
            options,
            template,
            catalog,
            compat: ClientCompat::new(),
            temp_ids: super::temp::TempIds::default(),
        }))
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Parse `sql`: client catalog queries through the compatibility rewrites, all
    /// others with Hindsight's dialect.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>> {
        match self.compat.parse(sql) {
            Some(stmts) => Ok(stmts),
            None => dialect::parse(sql),
        }
    }
}

/// DataFusion's optimizer rules, after Hindsight's [`PerRowSubqueries`] (first, so
/// that it sees subqueries before projection pruning drops the outer columns they
/// read; it offers each to DataFusion's decorrelation before running it per row).
fn optimizer_rules() -> Vec<Arc<dyn OptimizerRule + Send + Sync>> {
    let mut rules: Vec<Arc<dyn OptimizerRule + Send + Sync>> = vec![Arc::new(PerRowSubqueries)];
    rules.extend(Optimizer::new().rules);
    rules
}

/// DataFusion's analyzer rules, after Hindsight's [`UntypedLiterals`] (before type
/// coercion, which would otherwise compare numbers as text) and followed by
/// [`PgTextCasts`] (after it, so implicit casts to text are formatted too).
///
/// [`UntypedLiterals`]: crate::pg::untyped::UntypedLiterals
/// [`PgTextCasts`]: crate::pg::textcast::PgTextCasts
fn analyzer_rules() -> Vec<Arc<dyn datafusion::optimizer::AnalyzerRule + Send + Sync>> {
    let mut rules: Vec<Arc<dyn datafusion::optimizer::AnalyzerRule + Send + Sync>> =
        vec![Arc::new(crate::pg::untyped::UntypedLiterals)];
    rules.extend(datafusion::optimizer::Analyzer::new().rules);
    rules.push(Arc::new(crate::pg::textcast::PgTextCasts::new()));
    rules
}

/// DataFusion settings every session starts with.
pub(super) fn session_config(options: &EngineOptions) -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG, SCHEMA)
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(false)
        .with_target_partitions(options.target_partitions.max(1));
    let o = config.options_mut();
    o.sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
    o.sql_parser.map_string_types_to_utf8view = false;
    o.execution.time_zone = Some("+00:00".to_string());
    config
}

/// Plans Hindsight's extension nodes (the as-of join) next to DataFusion's own.
#[derive(Debug)]
pub(super) struct HsQueryPlanner {
    db: Db,
    asof_rows_per_thread: usize,
}

#[async_trait]
impl QueryPlanner for HsQueryPlanner {
    async fn create_physical_plan(
        &self,
        plan: &LogicalPlan,
        session: &dyn DfSession,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![
            Arc::new(AsofPlanner {
                db: self.db.clone(),
                rows_per_thread: self.asof_rows_per_thread,
            }),
            Arc::new(ApplyPlanner),
        ])
        .create_physical_plan(plan, session)
        .await
    }
}
