//! Transaction blocks: BEGIN opens a write batch that later writes append to and
//! reads see through a storage overlay; COMMIT writes it atomically; ROLLBACK and
//! savepoints drop all or part of it. After an error inside a block every statement
//! but ROLLBACK/COMMIT fails until the block ends (PostgreSQL behaviour).
//!
//! DDL is transactional: a catalog change is one more entry of the batch, so it
//! commits or rolls back with the rows; until then only this session sees it (its
//! planner reads the committed catalog plus the batch's changes, kept in the
//! statement context by [`Session::set_txn`] and [`Session::write`]). A table created
//! in the block has a provisional id until the commit gives it its real one.
//!
//! A simple-protocol query string of several statements runs as one implicit block
//! ([`Session::begin_implicit`] / [`Session::end_implicit`]) unless it controls its
//! transaction itself.

use datafusion::common::ScalarValue;
use std::sync::Arc;

use hindsight_storage::{Catalog, CatalogOp, Snapshot, TableDef, WriteBatch};
use sqlparser::ast::{ObjectName, Statement};

use super::state::{Session, Txn};
use crate::error::{ErrorKind, Result, SqlError};
use crate::offload;
use crate::output::Output;
use crate::plan::names::Names;

/// ReadyForQuery transaction status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionStatus {
    Idle,
    InBlock,
    Failed,
}

/// Statements allowed in an aborted transaction block (they end it, or roll back to a
/// savepoint before the error).
pub(super) fn is_txn_end(s: &Statement) -> bool {
    matches!(s, Statement::Rollback { .. } | Statement::Commit { .. })
}

impl Session {
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
            self.set_txn(Txn::Failed);
        }
    }

    /// Change the transaction state, keeping the planner's view of the transaction's
    /// catalog changes in step.
    pub(super) fn set_txn(&mut self, txn: Txn) {
        self.txn = txn;
        self.sync_pending_catalog();
    }

    fn sync_pending_catalog(&self) {
        let ops: &[CatalogOp] = match &self.txn {
            Txn::Open(batch) => batch.catalog_ops(),
            _ => &[],
        };
        self.stmt.set_pending_catalog(ops);
    }

    /// The catalog this session's statements see: committed tables plus the open
    /// transaction's DDL.
    pub(crate) fn catalog(&self) -> Arc<Catalog> {
        self.stmt.catalog(&self.engine.db)
    }

    /// Name resolution for this session's next statement (catalog, search path).
    pub(crate) fn names(&self) -> Names {
        self.stmt.names(&self.engine.db)
    }

    /// The table an object name refers to (by the search path), or 42P01.
    pub(crate) fn table_named(&self, name: &ObjectName) -> Result<Arc<TableDef>> {
        self.names().table_named(name)
    }

    /// A table of [`Session::catalog`] by relation key, or 42P01.
    pub(crate) fn table_def(&self, name: &str) -> Result<Arc<TableDef>> {
        self.catalog().table(name).cloned().ok_or_else(|| {
            SqlError::new(
                ErrorKind::UndefinedTable,
                format!("relation \"{name}\" does not exist"),
            )
        })
    }

    /// Make a catalog change: part of the open transaction, or committed now.
    pub(crate) fn change_catalog(&mut self, op: CatalogOp) -> Result<()> {
        self.write(WriteBatch::catalog_only(op))
    }

    /// Open the implicit transaction of a multi-statement query string, unless a
    /// block is already open. Returns whether one was opened.
    pub fn begin_implicit(&mut self) -> bool {
        if !matches!(self.txn, Txn::Idle) {
            return false;
        }
        self.savepoints.clear();
        self.set_txn(Txn::Open(WriteBatch::new()));
        true
    }

    /// End the implicit transaction opened by [`Session::begin_implicit`]: commit it
    /// when every statement succeeded (`ok`), else roll it back. A commit that fails
    /// (e.g. a conflicting catalog change) is the query string's error.
    pub fn end_implicit(&mut self, ok: bool) -> Result<()> {
        self.end_block(ok).map(|_| ())
    }

    /// End the open block (explicit or implicit): COMMIT when `commit`, else
    /// ROLLBACK; savepoints and cursors without HOLD end with it.
    pub(super) fn end_block(&mut self, commit: bool) -> Result<Output> {
        self.savepoints.clear();
        self.end_transaction_cursors();
        if commit {
            return self.commit();
        }
        self.set_txn(Txn::Idle);
        Ok(Output::command("ROLLBACK"))
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
        let txn = std::mem::replace(&mut self.txn, Txn::Idle);
        self.sync_pending_catalog();
        match txn {
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
    pub(super) fn savepoint(&mut self, name: String) -> Result<Output> {
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
    pub(super) fn find_savepoint(&self, name: &str) -> Result<usize> {
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

    /// Apply a write: append to the open transaction, or commit it now.
    pub(crate) fn write(&mut self, batch: WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        match &mut self.txn {
            Txn::Open(pending) => {
                pending.extend(&batch);
                if !batch.catalog_ops().is_empty() {
                    self.sync_pending_catalog();
                }
                Ok(())
            }
            _ => {
                offload::blocking(|| self.engine.db.write(batch))?;
                Ok(())
            }
        }
    }

    pub(super) fn check_not_failed_unless_end(&self, stmt: &Statement) -> Result<()> {
        if is_txn_end(stmt) {
            return Ok(());
        }
        self.check_not_failed()
    }

    /// An error inside an open transaction block aborts it.
    pub(super) fn fail_open_txn_on_error<T>(&mut self, result: &Result<T>) {
        if result.is_err()
            && let Txn::Open(_) = self.txn
        {
            self.set_txn(Txn::Failed);
        }
    }
}
