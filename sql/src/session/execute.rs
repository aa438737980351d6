//! Running statements: parse, dispatch by statement kind (queries, DML, DDL,
//! transaction control, SET/SHOW, COPY), planning and binding parameters.

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::sql::parser::Statement as DfStatement;
use futures::TryStreamExt;
use hindsight_storage::WriteBatch;
use sqlparser::ast::Statement;

use super::state::{Session, Txn};
use crate::error::{ErrorKind, Result, SqlError};
use crate::ident::normalize as normalize_ident;
use crate::output::{Collected, Output, memory_stream};
use crate::plan::fastpath::FastLookup;
use crate::plan::rewrite::{rename_stream, rewrite_asof};

impl Session {
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
        rewrite_input(&mut stmt);
        let result = match self.resolve_setting_calls(&mut stmt) {
            Ok(()) => self.dispatch(stmt, params).await,
            Err(e) => Err(e),
        };
        self.fail_open_txn_on_error(&result);
        result
    }

    async fn dispatch(&mut self, stmt: Statement, params: Vec<ScalarValue>) -> Result<Output> {
        if let Some(what) = write_command(&stmt) {
            self.check_writable(what)?;
        }
        match stmt {
            Statement::StartTransaction { .. } => {
                if let Txn::Idle = self.txn {
                    self.set_txn(Txn::Open(WriteBatch::new()));
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
                    self.set_txn(Txn::Open(before.clone()));
                }
                Ok(Output::command("ROLLBACK"))
            }
            Statement::Commit { .. } => self.end_block(true),
            Statement::Rollback { .. } => self.end_block(false),
            Statement::Declare { stmts } => self.declare(stmts, params).await,
            Statement::Fetch {
                name, direction, ..
            } => self.fetch(&name, &direction).await,
            Statement::Close { cursor } => self.close_cursor(&cursor),
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
            Statement::CreateIndex(ci) => self.create_index(ci),
            Statement::CreateView(cv) => self.create_view(cv).await,
            Statement::CreateSchema {
                schema_name,
                if_not_exists,
                ..
            } => self.create_schema(schema_name, if_not_exists),
            Statement::Drop { .. } => self.drop(stmt),
            Statement::AlterTable(at) => self.alter_table(at),
            Statement::Vacuum(v) => self.vacuum(v).await,
            Statement::Call(f) if super::lsn::is_wait(&f) => self.wait_for_lsn(&f).await,
            Statement::Set(set) => self.set(set),
            Statement::ShowVariable { variable } => self.show(&variable).await,
            Statement::Reset(r) => Ok(self.reset(r.reset)),
            other => Err(SqlError::unsupported(format!(
                "statement not supported: {}",
                first_words(&other.to_string())
            ))),
        }
    }

    /// `VACUUM [table]`: flush the memtable and compact every table's files into one
    /// sorted run (history is kept; superseded versions outside retention go). The
    /// work runs on a blocking thread; the statement returns when it is done.
    async fn vacuum(&mut self, v: sqlparser::ast::VacuumStatement) -> Result<Output> {
        if let Some(name) = &v.table_name {
            self.table_named(name)?;
        }
        let db = self.engine.db.clone();
        tokio::task::spawn_blocking(move || db.compact_now())
            .await
            .map_err(|e| SqlError::internal(format!("compaction task failed: {e}")))??;
        Ok(Output::command("VACUUM"))
    }

    /// Refuse a write on a node that does not take them (a cluster follower), as
    /// PostgreSQL's hot standby does: SQLSTATE 25006, naming the leader.
    pub(crate) fn check_writable(&self, what: &str) -> Result<()> {
        let role = self.engine.db().role();
        if role.takes_writes() {
            return Ok(());
        }
        Err(SqlError::new(
            ErrorKind::ReadOnly,
            format!(
                "cannot execute {what} in a read-only transaction: {}",
                role.standby_reason()
            ),
        ))
    }

    /// Plan a statement with DataFusion (catalog, relation planner, as-of join).
    pub(crate) async fn plan(&self, mut stmt: Statement) -> Result<LogicalPlan> {
        crate::plan::views::expand(&mut stmt, &self.names(), rewrite_input)?;
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

    pub(super) async fn query(
        &mut self,
        mut stmt: Statement,
        params: Vec<ScalarValue>,
    ) -> Result<Output> {
        if let Statement::Query(q) = &mut stmt {
            crate::plan::rewrite::name_query_outputs(q);
        }
        self.begin_statement(params.clone())?;
        let plan = self.plan(stmt).await?;
        let plan = Self::bind(plan, &params)?;
        Ok(Output::Rows(self.run_plan(&plan).await?))
    }

    /// Run a plan and collect its batches.
    pub(crate) async fn collect_plan(&self, plan: &LogicalPlan) -> Result<Vec<RecordBatch>> {
        let stream = self.run_plan(plan).await?;
        Ok(stream.try_collect().await?)
    }
}

/// The rewrites every statement gets before it runs or is prepared: ASOF JOIN
/// syntax, bytea literals read as PostgreSQL reads them, LIKE's ESCAPE character. A view keeps its query
/// as written; it is rewritten each time it is used.
pub(super) fn rewrite_input(stmt: &mut Statement) {
    if matches!(stmt, Statement::CreateView(_)) {
        return;
    }
    rewrite_asof(stmt);
    crate::pg::literals::bytea_casts(stmt);
    crate::pg::like::like_escapes(stmt);
}

fn first_words(s: &str) -> String {
    s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The command a statement writes with, if it writes (for the standby check).
fn write_command(stmt: &Statement) -> Option<&'static str> {
    Some(match stmt {
        Statement::Insert(_) => "INSERT",
        Statement::Update(_) => "UPDATE",
        Statement::Delete(_) => "DELETE",
        Statement::CreateTable(_) => "CREATE TABLE",
        Statement::CreateIndex(_) => "CREATE INDEX",
        Statement::CreateView(_) => "CREATE VIEW",
        Statement::CreateSchema { .. } => "CREATE SCHEMA",
        Statement::Drop { .. } => "DROP",
        Statement::AlterTable(_) => "ALTER TABLE",
        _ => return None,
    })
}
