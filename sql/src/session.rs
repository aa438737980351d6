//! Sessions: one per client connection. A session parses, plans and runs statements
//! against the shared [`Engine`], and holds the connection's transaction and settings.
//!
//! Statement flow: parse (Hindsight dialect) -> AST rewrites (ASOF JOIN markers) ->
//! one of: DDL and transaction control (handled here), DML (planned by DataFusion, whose
//! DML input plan is executed and written as new versions), or a query (planned by
//! DataFusion with Hindsight's catalog, relation planner and as-of operator).
//!
//! Transactions: `BEGIN` opens a write batch; writes append to it and reads see it
//! through a storage overlay (read-your-writes); `COMMIT` writes it atomically;
//! `ROLLBACK` drops it. After an error inside a transaction, every statement but
//! `ROLLBACK`/`COMMIT` fails until the block ends (PostgreSQL behaviour). DDL runs
//! immediately even inside a transaction block (it is not rolled back).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session as DfSession;
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::{QueryPlanner, SessionState};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::Statement as DfStatement;
use futures::TryStreamExt;
use hindsight_storage::{Db, Snapshot, WriteBatch};
use sqlparser::ast::{Statement, Value as SqlValue};

use crate::asof::AsofPlanner;
use crate::catalog::{CATALOG, HsCatalog, SCHEMA};
use crate::context::StatementContext;
use crate::dialect;
use crate::dml::normalize as normalize_ident;
use crate::error::{ErrorKind, Result, SqlError};
use crate::fastpath::FastLookup;
use crate::offload;
use crate::pgcatalog::ClientCompat;
use crate::relation::HsRelationPlanner;
use crate::rewrite::rewrite_asof;

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
    db: Db,
    options: EngineOptions,
    /// The session state every session starts from: catalog (with `pg_catalog`),
    /// functions, planners. Built once; sessions clone it.
    template: SessionState,
    compat: ClientCompat,
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
            .build();
        base.catalog_list()
            .register_catalog(CATALOG.to_string(), catalog);
        let template = crate::pgcatalog::install(base, &db)?;
        Ok(Arc::new(Engine {
            db,
            options,
            template,
            compat: ClientCompat::new(),
        }))
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// A new session (one per connection).
    pub fn session(self: &Arc<Self>) -> Result<Session> {
        Session::new(self.clone())
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

/// DataFusion settings every session starts with.
fn session_config(options: &EngineOptions) -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG, SCHEMA)
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(true)
        .with_target_partitions(options.target_partitions.max(1));
    let o = config.options_mut();
    o.sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
    o.sql_parser.map_string_types_to_utf8view = false;
    o.execution.time_zone = Some("+00:00".to_string());
    config
}

/// Plans Hindsight's extension nodes (the as-of join) next to DataFusion's own.
#[derive(Debug)]
struct HsQueryPlanner {
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
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(AsofPlanner {
            db: self.db.clone(),
            rows_per_thread: self.asof_rows_per_thread,
        })])
        .create_physical_plan(plan, session)
        .await
    }
}

/// What a statement produced.
pub enum Output {
    /// Rows (a query, SHOW, EXPLAIN).
    Rows(SendableRecordBatchStream),
    /// A command completion: the tag and, for DML, the affected row count.
    Command {
        tag: &'static str,
        rows: Option<u64>,
    },
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::Rows(s) => write!(f, "Rows({:?})", s.schema()),
            Output::Command { tag, rows } => write!(f, "Command({tag}, {rows:?})"),
        }
    }
}

impl Output {
    pub(crate) fn command(tag: &'static str) -> Output {
        Output::Command { tag, rows: None }
    }

    pub(crate) fn count(tag: &'static str, rows: u64) -> Output {
        Output::Command {
            tag,
            rows: Some(rows),
        }
    }
}

/// The transaction state of a session.
pub(crate) enum Txn {
    Idle,
    Open(WriteBatch),
    Failed,
}

/// A prepared statement: parsed and rewritten once; queries also planned once.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub(crate) statement: Option<Statement>,
    pub(crate) plan: Option<LogicalPlan>,
    /// Types of `$1..$n` (None where nothing constrains a parameter).
    pub param_types: Vec<Option<ArrowType>>,
    /// Row schema for statements that return rows.
    pub schema: Option<SchemaRef>,
    pub(crate) fast: Option<crate::fastpath::FastLookup>,
    /// A statement whose answer cannot change (no table, no function, no parameter:
    /// `SELECT 1`, a pool's validation query): planned once at prepare (DataFusion's
    /// planning would cost ~150 us each time) and, when that succeeds, answered once.
    pub(crate) constant: Option<Constant>,
}

/// The prepared form of a constant statement (see [`Prepared::constant`]).
#[derive(Clone, Debug)]
pub(crate) struct Constant {
    plan: Arc<dyn ExecutionPlan>,
    /// The answer, computed at prepare; `None` when computing it failed (division by
    /// zero, say), so that each execution runs the plan and raises the error itself.
    answer: Option<(SchemaRef, Vec<RecordBatch>)>,
}

impl Prepared {
    /// True when executions re-run a physical plan made at prepare (a constant query).
    pub fn is_constant(&self) -> bool {
        self.constant.is_some()
    }

    /// True when executions are answered by storage point lookups (the fast path).
    pub fn is_point_lookup(&self) -> bool {
        self.fast.is_some()
    }

    /// The storage types of a point lookup's row values (in schema order), as
    /// [`Session::point_lookup_rows`] hands them out; `None` for other statements.
    pub fn point_lookup_types(&self) -> Option<&[hindsight_storage::DataType]> {
        self.fast.as_ref().map(|f| f.row_types())
    }

    /// True when an execution is answered without planning or scanning: a point
    /// lookup (one of many keys hands its worker over by itself, see `offload`) or a
    /// constant answered at prepare. Such executions take microseconds, so the
    /// server runs them on the connection's worker.
    pub fn answers_at_once(&self) -> bool {
        self.fast.is_some() || self.constant.as_ref().is_some_and(|c| c.answer.is_some())
    }

    /// True for an empty statement (only whitespace or comments).
    pub fn is_empty(&self) -> bool {
        self.statement.is_none()
    }
}

/// One client's session.
pub struct Session {
    pub(crate) engine: Arc<Engine>,
    pub(crate) state: SessionState,
    pub(crate) stmt: Arc<StatementContext>,
    pub(crate) txn: Txn,
    /// Savepoints of the open transaction block: name and the writes before it.
    savepoints: Vec<(String, WriteBatch)>,
    settings: BTreeMap<String, String>,
    /// `statement_timeout` parsed, kept in step with `settings` by
    /// [`Session::store_setting`]: every Execute reads it.
    statement_timeout_ms: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session")
    }
}

/// Settings every session starts with (what PostgreSQL drivers read back).
pub const DEFAULT_SETTINGS: &[(&str, &str)] = &[
    ("application_name", ""),
    ("client_encoding", "UTF8"),
    ("datestyle", "ISO, MDY"),
    ("default_transaction_isolation", "read committed"),
    ("extra_float_digits", "1"),
    ("integer_datetimes", "on"),
    ("intervalstyle", "postgres"),
    ("is_superuser", "on"),
    ("search_path", "\"$user\", public"),
    ("server_encoding", "UTF8"),
    ("server_version", "16.0 (Hindsight 0.1.0)"),
    ("server_version_num", "160000"),
    ("standard_conforming_strings", "on"),
    ("statement_timeout", "0"),
    ("timezone", "UTC"),
    ("transaction_isolation", "read committed"),
];

impl Session {
    fn new(engine: Arc<Engine>) -> Result<Session> {
        let stmt = Arc::new(StatementContext::default());
        let mut config = session_config(&engine.options);
        config.set_extension(stmt.clone());
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(
                engine.options.query_memory_limit,
            )))
            .build_arc()?;
        let state = SessionStateBuilder::new_from_existing(engine.template.clone())
            .with_config(config)
            .with_runtime_env(runtime)
            .with_relation_planners(vec![Arc::new(HsRelationPlanner::new(
                engine.db.clone(),
                stmt.clone(),
            ))])
            .build();
        let settings = DEFAULT_SETTINGS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(Session {
            engine,
            state,
            stmt,
            txn: Txn::Idle,
            savepoints: Vec::new(),
            settings,
            statement_timeout_ms: 0,
        })
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// True while a transaction block is open (or failed): the "T"/"E" of ReadyForQuery.
    pub fn transaction_status(&self) -> TransactionStatus {
        match self.txn {
            Txn::Idle => TransactionStatus::Idle,
            Txn::Open(_) => TransactionStatus::InBlock,
            Txn::Failed => TransactionStatus::Failed,
        }
    }

    /// An error outside the SQL layer (e.g. a failed COPY) aborts an open transaction.
    pub fn mark_failed(&mut self) {
        if let Txn::Open(_) = self.txn {
            self.txn = Txn::Failed;
        }
    }

    /// Refuse work while the transaction block is aborted.
    pub(crate) fn check_not_failed(&self) -> Result<()> {
        if matches!(self.txn, Txn::Failed) {
            return Err(SqlError::new(
                ErrorKind::InFailedTransaction,
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        Ok(())
    }

    /// A setting's current value.
    pub fn setting(&self, name: &str) -> Option<&str> {
        self.settings
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// Parse `sql` into statements (for the simple query protocol).
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>> {
        self.engine.parse(sql)
    }

    /// Run every statement of `sql`, collecting all rows (tests, scripts).
    pub async fn run(&mut self, sql: &str) -> Result<Vec<Collected>> {
        let mut out = Vec::new();
        for s in self.parse(sql)? {
            out.push(self.execute(s).await?.collect().await?);
        }
        Ok(out)
    }

    /// Execute one statement with no parameters.
    pub async fn execute(&mut self, stmt: Statement) -> Result<Output> {
        self.execute_with(stmt, Vec::new()).await
    }

    /// Execute one statement with parameter values for `$1..$n`.
    pub async fn execute_with(
        &mut self,
        mut stmt: Statement,
        params: Vec<ScalarValue>,
    ) -> Result<Output> {
        self.check_not_failed_unless_end(&stmt)?;
        rewrite_asof(&mut stmt);
        let result = self.dispatch(stmt, params).await;
        self.fail_open_txn_on_error(&result);
        result
    }

    async fn dispatch(&mut self, stmt: Statement, params: Vec<ScalarValue>) -> Result<Output> {
        match stmt {
            Statement::StartTransaction { .. } => {
                if let Txn::Idle = self.txn {
                    self.txn = Txn::Open(WriteBatch::new());
                    self.savepoints.clear();
                }
                Ok(Output::command("BEGIN"))
            }
            Statement::Savepoint { name } => self.savepoint(normalize_ident(&name)),
            Statement::ReleaseSavepoint { name } => {
                let at = self.find_savepoint(&normalize_ident(&name))?;
                self.savepoints.truncate(at);
                Ok(Output::command("RELEASE"))
            }
            Statement::Rollback {
                savepoint: Some(name),
                ..
            } => {
                let at = self.find_savepoint(&normalize_ident(&name))?;
                self.savepoints.truncate(at + 1);
                if let Some((_, before)) = self.savepoints.last() {
                    self.txn = Txn::Open(before.clone());
                }
                Ok(Output::command("ROLLBACK"))
            }
            Statement::Commit { .. } => {
                self.savepoints.clear();
                self.commit()
            }
            Statement::Rollback { .. } => {
                self.txn = Txn::Idle;
                self.savepoints.clear();
                Ok(Output::command("ROLLBACK"))
            }
            Statement::Query(_) => {
                match FastLookup::recognize(&self.state, &self.engine.db, &stmt, &[]) {
                    Some(fast) => self
                        .run_fast(&fast, &params)
                        .map(|b| Output::Rows(memory_stream(vec![b]))),
                    None => self.query(stmt, params).await,
                }
            }
            Statement::Explain { .. } => self.query(stmt, params).await,
            Statement::Insert(ins) => self.insert(ins, params).await,
            Statement::Update(u) => self.update(u, params).await,
            Statement::Delete(d) => self.delete(d, params).await,
            Statement::CreateTable(ct) => self.create_table(ct).await,
            Statement::Drop { .. } => self.drop(stmt),
            Statement::AlterTable(at) => self.alter_table(at),
            Statement::Vacuum(v) => self.vacuum(v).await,
            Statement::Set(set) => self.set(set),
            Statement::ShowVariable { variable } => self.show(&variable).await,
            Statement::Reset(r) => {
                match r.reset {
                    sqlparser::ast::Reset::ALL => {
                        let names: Vec<String> = self.settings.keys().cloned().collect();
                        for name in names {
                            self.reset_variable(&name);
                        }
                    }
                    sqlparser::ast::Reset::ConfigurationParameter(name) => {
                        self.reset_variable(&name.to_string().replace(' ', "_"));
                    }
                }
                Ok(Output::command("RESET"))
            }
            other => Err(SqlError::unsupported(format!(
                "statement not supported: {}",
                first_words(&other.to_string())
            ))),
        }
    }

    /// The snapshot a statement reads: the latest committed state, plus the open
    /// transaction's writes.
    pub(crate) fn statement_snapshot(&self) -> Result<Snapshot> {
        let snap = self.engine.db.snapshot();
        match &self.txn {
            Txn::Open(batch) => Ok(snap.with_overlay(batch)?),
            _ => Ok(snap),
        }
    }

    /// Prepare the statement context and DataFusion's clock for a statement.
    pub(crate) fn begin_statement(&mut self, params: Vec<ScalarValue>) -> Result<Snapshot> {
        let snapshot = self.statement_snapshot()?;
        let now =
            chrono::DateTime::from_timestamp_micros(snapshot.now_micros()).unwrap_or_default();
        self.state.execution_props_mut().query_execution_start_time = Some(now);
        self.stmt.begin(snapshot.clone(), params);
        Ok(snapshot)
    }

    /// `COMMIT`: write the open block's batch atomically (an aborted block rolls back).
    fn commit(&mut self) -> Result<Output> {
        match std::mem::replace(&mut self.txn, Txn::Idle) {
            Txn::Open(batch) => {
                self.write(batch)?;
                Ok(Output::command("COMMIT"))
            }
            Txn::Failed => Ok(Output::command("ROLLBACK")),
            Txn::Idle => Ok(Output::command("COMMIT")),
        }
    }

    /// `SAVEPOINT name`: remember the transaction's writes so far (a copy: savepoints
    /// cost O(writes in the block)).
    fn savepoint(&mut self, name: String) -> Result<Output> {
        match &self.txn {
            Txn::Open(batch) => {
                self.savepoints.push((name, batch.clone()));
                Ok(Output::command("SAVEPOINT"))
            }
            _ => Err(SqlError::new(
                ErrorKind::NoActiveTransaction,
                "SAVEPOINT can only be used in transaction blocks",
            )),
        }
    }

    /// Position of the newest savepoint called `name`.
    fn find_savepoint(&self, name: &str) -> Result<usize> {
        if matches!(self.txn, Txn::Idle) {
            return Err(SqlError::new(
                ErrorKind::NoActiveTransaction,
                "savepoints can only be used in transaction blocks",
            ));
        }
        self.savepoints
            .iter()
            .rposition(|(n, _)| n == name)
            .ok_or_else(|| {
                SqlError::new(
                    ErrorKind::InvalidSavepoint,
                    format!("savepoint \"{name}\" does not exist"),
                )
            })
    }

    /// `VACUUM [table]`: flush the memtable and compact every table's files into one
    /// sorted run (history is kept; superseded versions outside retention go). The
    /// work runs on a blocking thread; the statement returns when it is done.
    async fn vacuum(&mut self, v: sqlparser::ast::VacuumStatement) -> Result<Output> {
        if let Some(name) = &v.table_name {
            let table = name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(crate::dml::normalize)
                .unwrap_or_default();
            if self.engine.db.catalog().table(&table).is_none() {
                return Err(SqlError::new(
                    ErrorKind::UndefinedTable,
                    format!("relation \"{table}\" does not exist"),
                ));
            }
        }
        let db = self.engine.db.clone();
        tokio::task::spawn_blocking(move || db.compact_now())
            .await
            .map_err(|e| SqlError::internal(format!("compaction task failed: {e}")))??;
        Ok(Output::command("VACUUM"))
    }

    /// Answer a recognized point lookup (no DataFusion planning).
    fn run_fast(&mut self, fast: &FastLookup, params: &[ScalarValue]) -> Result<RecordBatch> {
        let snapshot = self.fast_snapshot(fast)?;
        fast.execute(&self.state, &snapshot, params)
    }

    /// The snapshot a fast lookup reads.
    fn fast_snapshot(&mut self, fast: &FastLookup) -> Result<Snapshot> {
        if fast.needs_clock() {
            // Time arguments read the statement's clock (`now()`).
            self.begin_statement(Vec::new())
        } else {
            self.statement_snapshot()
        }
    }

    /// Plan a statement with DataFusion (catalog, relation planner, as-of join).
    pub(crate) async fn plan(&self, stmt: Statement) -> Result<LogicalPlan> {
        Ok(self
            .state
            .statement_to_plan(DfStatement::Statement(Box::new(stmt)))
            .await?)
    }

    /// Optimize and execute a logical plan (placeholders already bound).
    pub(crate) async fn run_plan(&self, plan: &LogicalPlan) -> Result<SendableRecordBatchStream> {
        let physical = self.state.create_physical_plan(plan).await?;
        let stream = datafusion::physical_plan::execute_stream(physical, self.state.task_ctx())?;
        Ok(rename_stream(stream))
    }

    /// Bind parameter values into a planned statement.
    pub(crate) fn bind(plan: LogicalPlan, params: &[ScalarValue]) -> Result<LogicalPlan> {
        if params.is_empty() {
            return Ok(plan);
        }
        Ok(plan.with_param_values(params.to_vec())?)
    }

    async fn query(&mut self, mut stmt: Statement, params: Vec<ScalarValue>) -> Result<Output> {
        if let Statement::Query(q) = &mut stmt {
            crate::rewrite::name_query_outputs(q);
        }
        self.begin_statement(params.clone())?;
        let plan = self.plan(stmt).await?;
        let plan = Self::bind(plan, &params)?;
        Ok(Output::Rows(self.run_plan(&plan).await?))
    }

    /// Apply a write: append to the open transaction, or commit it now.
    pub(crate) fn write(&mut self, batch: WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        match &mut self.txn {
            Txn::Open(pending) => {
                pending.extend(&batch);
                Ok(())
            }
            _ => {
                offload::blocking(|| self.engine.db.write(batch))?;
                Ok(())
            }
        }
    }

    /// Run a plan and collect its batches.
    pub(crate) async fn collect_plan(&self, plan: &LogicalPlan) -> Result<Vec<RecordBatch>> {
        let stream = self.run_plan(plan).await?;
        Ok(stream.try_collect().await?)
    }

    fn set(&mut self, set: sqlparser::ast::Set) -> Result<Output> {
        use sqlparser::ast::Set as S;
        match set {
            S::SingleAssignment {
                variable, values, ..
            } => {
                let name = variable.to_string().to_ascii_lowercase();
                let value = values
                    .iter()
                    .map(|v| match v {
                        sqlparser::ast::Expr::Value(v) => match &v.value {
                            SqlValue::SingleQuotedString(s) | SqlValue::DoubleQuotedString(s) => {
                                s.clone()
                            }
                            other => other.to_string(),
                        },
                        sqlparser::ast::Expr::Identifier(i) => i.value.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                self.set_variable(&name, &value)?;
                Ok(Output::command("SET"))
            }
            S::SetTimeZone { value, .. } => {
                let v = match value {
                    sqlparser::ast::Expr::Value(v) => match v.value {
                        SqlValue::SingleQuotedString(s) => s,
                        other => other.to_string(),
                    },
                    other => other.to_string(),
                };
                self.set_variable("timezone", &v)?;
                Ok(Output::command("SET"))
            }
            S::SetNames { charset_name, .. } => {
                self.set_variable("client_encoding", &charset_name.to_string())?;
                Ok(Output::command("SET"))
            }
            S::SetTransaction { .. } | S::SetSessionAuthorization(_) | S::SetRole { .. } => {
                Ok(Output::command("SET"))
            }
            other => Err(SqlError::unsupported(format!("{other} is not supported"))),
        }
    }

    /// Set a session variable (also used by the wire layer for startup parameters).
    pub fn set_variable(&mut self, name: &str, value: &str) -> Result<()> {
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            "client_encoding" | "server_encoding"
                if !matches!(
                    value.to_ascii_uppercase().replace(['-', '_'], "").as_str(),
                    "UTF8" | "UNICODE"
                ) =>
            {
                return Err(SqlError::new(
                    ErrorKind::InvalidParameterValue,
                    format!("unsupported encoding \"{value}\": only UTF8 is supported"),
                ));
            }
            "statement_timeout" => {
                parse_timeout_ms(value)?;
            }
            "server_version" | "server_version_num" | "integer_datetimes" | "server_encoding" => {
                return Err(SqlError::new(
                    ErrorKind::InvalidParameterValue,
                    format!("parameter \"{name}\" cannot be changed"),
                ));
            }
            _ => {}
        }
        let value = if name == "client_encoding" {
            "UTF8".to_string()
        } else {
            value.to_string()
        };
        self.store_setting(name, Some(value));
        Ok(())
    }

    /// Store (or with `None` remove) a checked setting, keeping parsed copies in step.
    fn store_setting(&mut self, name: String, value: Option<String>) {
        if name == "statement_timeout" {
            self.statement_timeout_ms = value
                .as_deref()
                .and_then(|v| parse_timeout_ms(v).ok())
                .unwrap_or(0);
        }
        match value {
            Some(v) => self.settings.insert(name, v),
            None => self.settings.remove(&name),
        };
    }

    /// Reset a variable to its default.
    pub fn reset_variable(&mut self, name: &str) {
        let name = name.to_ascii_lowercase();
        let default = DEFAULT_SETTINGS
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string());
        self.store_setting(name, default);
    }

    /// The session's statement timeout in milliseconds (0: none).
    pub fn statement_timeout_ms(&self) -> u64 {
        self.statement_timeout_ms
    }

    async fn show(&mut self, variable: &[sqlparser::ast::Ident]) -> Result<Output> {
        let name = variable
            .iter()
            .map(|i| i.value.to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(" ");
        let (names, values): (Vec<String>, Vec<String>) = if name == "all" {
            self.settings
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .unzip()
        } else {
            let key = match name.as_str() {
                "time zone" => "timezone".to_string(),
                "transaction isolation level" => "transaction_isolation".to_string(),
                _ => name.clone(),
            };
            match self.settings.get(&key) {
                Some(v) => (vec![key], vec![v.clone()]),
                None => {
                    return Err(SqlError::new(
                        ErrorKind::UndefinedObject,
                        format!("unrecognized configuration parameter \"{name}\""),
                    ));
                }
            }
        };
        use datafusion::arrow::array::StringArray;
        let batch = if name == "all" {
            RecordBatch::try_new(
                Arc::new(Schema::new(vec![
                    Field::new("name", ArrowType::Utf8, false),
                    Field::new("setting", ArrowType::Utf8, false),
                ])),
                vec![
                    Arc::new(StringArray::from(names)),
                    Arc::new(StringArray::from(values)),
                ],
            )?
        } else {
            RecordBatch::try_new(
                Arc::new(Schema::new(vec![Field::new(&name, ArrowType::Utf8, false)])),
                vec![Arc::new(StringArray::from(values))],
            )?
        };
        Ok(Output::Rows(memory_stream(vec![batch])))
    }

    /// Prepare `sql` (one statement) with optionally declared parameter types.
    pub async fn prepare(&mut self, sql: &str, declared: &[Option<ArrowType>]) -> Result<Prepared> {
        let mut stmts = self.engine.parse(sql)?;
        if stmts.len() > 1 {
            return Err(SqlError::syntax(
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let Some(mut stmt) = stmts.pop() else {
            return Ok(Prepared {
                statement: None,
                plan: None,
                param_types: declared.to_vec(),
                schema: None,
                fast: None,
                constant: None,
            });
        };
        rewrite_asof(&mut stmt);
        if let Some(fast) = FastLookup::recognize(&self.state, &self.engine.db, &stmt, declared) {
            return Ok(Prepared {
                param_types: fast.param_types(),
                schema: Some(fast.schema()),
                statement: Some(stmt),
                plan: None,
                fast: Some(fast),
                constant: None,
            });
        }
        let needs_plan = matches!(stmt, Statement::Query(_) | Statement::Explain { .. });
        let dml = matches!(
            stmt,
            Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_)
        );
        if !(needs_plan || dml) {
            let schema = matches!(stmt, Statement::ShowVariable { .. }).then(|| {
                Arc::new(Schema::new(vec![Field::new(
                    "setting",
                    ArrowType::Utf8,
                    false,
                )]))
            });
            return Ok(Prepared {
                statement: Some(stmt),
                plan: None,
                param_types: declared.to_vec(),
                schema,
                fast: None,
                constant: None,
            });
        }
        if let Statement::Query(q) = &mut stmt {
            crate::rewrite::name_query_outputs(q);
        }
        self.begin_statement(vec![])?;
        let planned = if needs_plan {
            self.plan(stmt.clone()).await?
        } else {
            self.plan_dml_for_types(stmt.clone()).await?
        };
        let mut types = crate::params::infer(&planned, declared)?;
        for (i, d) in declared.iter().enumerate() {
            if let (Some(d), Some(slot)) = (d, types.get_mut(i)) {
                *slot = Some(d.clone());
            }
        }
        let schema = needs_plan.then(|| {
            let s: SchemaRef = Arc::new(planned.schema().as_arrow().clone());
            crate::rewrite::output_schema(&s).unwrap_or(s)
        });
        let constant = if matches!(stmt, Statement::Query(_)) && is_constant(&planned) {
            let plan = self.state.create_physical_plan(&planned).await?;
            let answer = match datafusion::physical_plan::execute_stream(
                plan.clone(),
                self.state.task_ctx(),
            ) {
                Ok(stream) => {
                    let stream = rename_stream(stream);
                    let schema = stream.schema();
                    datafusion::physical_plan::common::collect(stream)
                        .await
                        .ok()
                        .map(|batches| (schema, batches))
                }
                Err(_) => None,
            };
            Some(Constant { plan, answer })
        } else {
            None
        };
        Ok(Prepared {
            statement: Some(stmt),
            plan: needs_plan.then_some(planned),
            param_types: types,
            schema,
            fast: None,
            constant,
        })
    }

    /// Execute a prepared statement with bound parameter values.
    pub async fn execute_prepared(
        &mut self,
        p: &Prepared,
        params: Vec<ScalarValue>,
    ) -> Result<Output> {
        if let Some(result) = self.point_lookup(p, &params) {
            return result.map(|b| Output::Rows(memory_stream(vec![b])));
        }
        let Some(stmt) = &p.statement else {
            return Ok(Output::command("EMPTY"));
        };
        self.check_not_failed_unless_end(stmt)?;
        if let Some(constant) = &p.constant {
            let result = match &constant.answer {
                Some((schema, batches)) => Ok(Output::Rows(batches_stream(
                    schema.clone(),
                    batches.clone(),
                ))),
                None => datafusion::physical_plan::execute_stream(
                    constant.plan.clone(),
                    self.state.task_ctx(),
                )
                .map(|s| Output::Rows(rename_stream(s)))
                .map_err(SqlError::from),
            };
            self.fail_open_txn_on_error(&result);
            return result;
        }
        let result = match &p.plan {
            Some(plan) => {
                self.begin_statement(params.clone())?;
                match Self::bind(plan.clone(), &params) {
                    // Boxed: DataFusion's planning futures are large; keeping them
                    // out of this future keeps every caller's future small.
                    Ok(bound) => Box::pin(self.run_plan(&bound)).await.map(Output::Rows),
                    Err(e) => Err(e),
                }
            }
            None => return Box::pin(self.execute_with(stmt.clone(), params)).await,
        };
        self.fail_open_txn_on_error(&result);
        result
    }

    /// A prepared point lookup's rows as one batch, computed synchronously; `None`
    /// when `p` is not a point lookup. The wire layer calls this first: a lookup
    /// takes microseconds, so it skips the stream, cancel and timeout machinery.
    pub fn point_lookup(
        &mut self,
        p: &Prepared,
        params: &[ScalarValue],
    ) -> Option<Result<RecordBatch>> {
        let fast = p.fast.as_ref()?;
        let stmt = p.statement.as_ref()?;
        if let Err(e) = self.check_not_failed_unless_end(stmt) {
            return Some(Err(e));
        }
        let result = self.run_fast(fast, params);
        self.fail_open_txn_on_error(&result);
        Some(result)
    }

    /// [`Session::point_lookup`] row by row: `row` gets each present entity's values
    /// (in the order of the statement's schema) from one reused buffer; returns the
    /// number of rows. `None` when `p` is not a point lookup. Nothing is allocated per
    /// row for fixed-width values: this is what the wire layer's Execute uses.
    pub fn point_lookup_rows(
        &mut self,
        p: &Prepared,
        params: &[ScalarValue],
        row: impl FnMut(&[hindsight_storage::Value]),
    ) -> Option<Result<usize>> {
        let fast = p.fast.as_ref()?;
        let stmt = p.statement.as_ref()?;
        if let Err(e) = self.check_not_failed_unless_end(stmt) {
            return Some(Err(e));
        }
        let result = self
            .fast_snapshot(fast)
            .and_then(|snapshot| fast.execute_rows(&self.state, &snapshot, params, row));
        self.fail_open_txn_on_error(&result);
        Some(result)
    }

    fn check_not_failed_unless_end(&self, stmt: &Statement) -> Result<()> {
        if is_txn_end(stmt) {
            return Ok(());
        }
        self.check_not_failed()
    }

    /// An error inside an open transaction block aborts it.
    fn fail_open_txn_on_error<T>(&mut self, result: &Result<T>) {
        if result.is_err()
            && let Txn::Open(_) = self.txn
        {
            self.txn = Txn::Failed;
        }
    }
}

/// Whether a plan's answer can never change: only projections of literals and
/// operators over no table (no scan, no function call, no parameter, no cast, whose
/// result may depend on session settings such as the time zone).
fn is_constant(plan: &LogicalPlan) -> bool {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::Expr;
    let constant_expr = |e: &Expr| {
        let mut ok = true;
        let _ = e.apply(|x| {
            ok = matches!(
                x,
                Expr::Literal(..)
                    | Expr::Alias(_)
                    | Expr::Column(_)
                    | Expr::BinaryExpr(_)
                    | Expr::Not(_)
                    | Expr::Negative(_)
                    | Expr::IsNull(_)
                    | Expr::IsNotNull(_)
            );
            Ok(if ok {
                TreeNodeRecursion::Continue
            } else {
                TreeNodeRecursion::Stop
            })
        });
        ok
    };
    let mut ok = true;
    let _ = plan.apply(|node| {
        ok = matches!(
            node,
            LogicalPlan::Projection(_)
                | LogicalPlan::EmptyRelation(_)
                | LogicalPlan::Values(_)
                | LogicalPlan::SubqueryAlias(_)
        ) && node.expressions().iter().all(constant_expr);
        Ok(if ok {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    ok
}

/// ReadyForQuery transaction status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionStatus {
    Idle,
    InBlock,
    Failed,
}

/// Statements allowed in an aborted transaction block (they end it, or roll back to a
/// savepoint before the error).
fn is_txn_end(s: &Statement) -> bool {
    matches!(s, Statement::Rollback { .. } | Statement::Commit { .. })
}

fn first_words(s: &str) -> String {
    s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// A statement timeout setting: plain milliseconds or with a unit ('5s', '100ms', '1min').
fn parse_timeout_ms(v: &str) -> Result<u64> {
    let v = v.trim().trim_matches('\'');
    if let Ok(ms) = v.parse::<u64>() {
        return Ok(ms);
    }
    crate::types::parse_interval_micros(v)
        .map(|us| (us / 1000) as u64)
        .map_err(|_| {
            SqlError::new(
                ErrorKind::InvalidParameterValue,
                format!("invalid value for statement_timeout: \"{v}\""),
            )
        })
}

/// Apply PostgreSQL output names (duplicates allowed) to a result stream.
fn rename_stream(stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
    let Some(schema) = crate::rewrite::output_schema(&stream.schema()) else {
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

/// A stream over in-memory batches.
pub fn memory_stream(batches: Vec<RecordBatch>) -> SendableRecordBatchStream {
    let schema = batches
        .first()
        .map(|b| b.schema())
        .unwrap_or_else(|| Arc::new(Schema::empty()));
    batches_stream(schema, batches)
}

/// A stream of batches already in memory, with their schema.
fn batches_stream(schema: SchemaRef, batches: Vec<RecordBatch>) -> SendableRecordBatchStream {
    Box::pin(
        datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
            schema,
            futures::stream::iter(batches.into_iter().map(Ok)),
        ),
    )
}

/// A statement's output with all rows in memory.
#[derive(Debug)]
pub enum Collected {
    Rows(SchemaRef, Vec<RecordBatch>),
    Command {
        tag: &'static str,
        rows: Option<u64>,
    },
}

impl Output {
    /// Drain the output.
    pub async fn collect(self) -> Result<Collected> {
        match self {
            Output::Rows(s) => {
                let schema = s.schema();
                let batches: Vec<RecordBatch> = s.try_collect().await?;
                Ok(Collected::Rows(schema, batches))
            }
            Output::Command { tag, rows } => Ok(Collected::Command { tag, rows }),
        }
    }
}

/// Total rows of collected batches.
pub fn row_count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}
