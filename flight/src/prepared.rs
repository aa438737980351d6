//! Prepared statements over Flight SQL: each handle owns a session with the statement
//! prepared in it (planned once) and the parameter rows last bound by `DoPut`.
//!
//! A handle is 16 random bytes, usable only by the user who created it, until
//! `ClosePreparedStatement`, an hour unused, or a restart. Executions on one handle
//! take turns (its session runs one statement at a time); handles are independent.
//! At most [`MAX_HANDLES`] are open; creating one more is `RESOURCE_EXHAUSTED`.
//!
//! Parameters arrive as an Arrow batch, one row per execution, column i for `$i+1`;
//! each value is cast to the type the statement infers for its parameter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use hindsight_sql::{Prepared, Session, SqlError};
use tonic::Status;

use crate::auth::Caller;
use crate::error::status;

/// Most prepared statements open at once (all users).
pub(crate) const MAX_HANDLES: usize = 10_000;
/// A handle unused this long is dropped.
const IDLE: Duration = Duration::from_secs(3600);

/// One prepared statement.
pub(crate) struct Statement {
    pub(crate) session: Session,
    pub(crate) prepared: Prepared,
    /// Bound parameter rows (none bound: one execution without parameters).
    pub(crate) params: Vec<Vec<ScalarValue>>,
}

impl Statement {
    /// The result schema (empty for a statement that returns no rows).
    pub(crate) fn dataset_schema(&self) -> SchemaRef {
        self.prepared
            .schema
            .clone()
            .unwrap_or_else(|| Arc::new(Schema::empty()))
    }

    /// The parameters' schema: `$1..$n` with their inferred types (Null when
    /// nothing constrains one).
    pub(crate) fn parameter_schema(&self) -> Schema {
        Schema::new(
            self.prepared
                .param_types
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    Field::new(
                        format!("${}", i + 1),
                        t.clone().unwrap_or(DataType::Null),
                        true,
                    )
                })
                .collect::<Vec<_>>(),
        )
    }

    /// Bind `batch`'s rows as the parameter rows of the next executions.
    pub(crate) fn bind(&mut self, batches: &[RecordBatch]) -> Result<(), Status> {
        let want = self.prepared.param_types.len();
        let mut rows = Vec::new();
        for batch in batches {
            if batch.num_columns() != want {
                return Err(status(SqlError::new(
                    hindsight_sql::ErrorKind::Syntax,
                    format!(
                        "bind message supplies {} parameters, but prepared statement requires {want}",
                        batch.num_columns()
                    ),
                )));
            }
            for r in 0..batch.num_rows() {
                let row = batch
                    .columns()
                    .iter()
                    .zip(&self.prepared.param_types)
                    .map(|(col, ty)| param_value(col, r, ty.as_ref()))
                    .collect::<Result<Vec<_>, Status>>()?;
                rows.push(row);
            }
        }
        self.params = rows;
        Ok(())
    }

    /// The parameter rows to execute with: the bound ones, or one empty row.
    pub(crate) fn executions(&self) -> Vec<Vec<ScalarValue>> {
        match self.params.is_empty() {
            true => vec![Vec::new()],
            false => self.params.clone(),
        }
    }
}

/// Row `r` of `col` as the value of a parameter of type `ty`.
fn param_value(
    col: &datafusion::arrow::array::ArrayRef,
    r: usize,
    ty: Option<&DataType>,
) -> Result<ScalarValue, Status> {
    let v = ScalarValue::try_from_array(col, r).map_err(|e| status(SqlError::from(e)))?;
    match ty {
        Some(t) if v.data_type() != *t => v.cast_to(t).map_err(|e| {
            status(SqlError::new(
                hindsight_sql::ErrorKind::DatatypeMismatch,
                format!("parameter of type {} does not fit {t}: {e}", v.data_type()),
            ))
        }),
        _ => Ok(v),
    }
}

struct Entry {
    owner: Option<String>,
    statement: Arc<tokio::sync::Mutex<Statement>>,
    last_used: Instant,
}

/// The open prepared statements.
#[derive(Default)]
pub(crate) struct Registry {
    open: Mutex<HashMap<Vec<u8>, Entry>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.open.lock().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("Registry").field("open", &n).finish()
    }
}

impl Registry {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<Vec<u8>, Entry>>, Status> {
        self.open
            .lock()
            .map_err(|_| Status::internal("the prepared statement table is poisoned"))
    }

    /// Register a statement for `caller`; its handle.
    pub(crate) fn insert(&self, caller: &Caller, statement: Statement) -> Result<Vec<u8>, Status> {
        let mut handle = vec![0u8; 16];
        getrandom::fill(&mut handle)
            .map_err(|e| Status::internal(format!("no randomness for a handle: {e}")))?;
        let mut open = self.lock()?;
        let now = Instant::now();
        open.retain(|_, e| now.duration_since(e.last_used) < IDLE);
        if open.len() >= MAX_HANDLES {
            return Err(Status::resource_exhausted(format!(
                "too many prepared statements open ({MAX_HANDLES}): close some (SQLSTATE 53000)"
            )));
        }
        open.insert(
            handle.clone(),
            Entry {
                owner: caller.user.clone(),
                statement: Arc::new(tokio::sync::Mutex::new(statement)),
                last_used: now,
            },
        );
        Ok(handle)
    }

    /// The statement behind `handle`, if `caller` may use it.
    pub(crate) fn get(
        &self,
        caller: &Caller,
        handle: &[u8],
    ) -> Result<Arc<tokio::sync::Mutex<Statement>>, Status> {
        let mut open = self.lock()?;
        match open.get_mut(handle) {
            Some(e) if e.owner == caller.user => {
                e.last_used = Instant::now();
                Ok(e.statement.clone())
            }
            _ => Err(Status::not_found(
                "prepared statement does not exist (closed, expired, or the server restarted) (SQLSTATE 26000)",
            )),
        }
    }

    /// Close `handle` (a handle already gone is not an error).
    pub(crate) fn remove(&self, caller: &Caller, handle: &[u8]) -> Result<(), Status> {
        let mut open = self.lock()?;
        if open.get(handle).is_some_and(|e| e.owner == caller.user) {
            open.remove(handle);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, Int32Array};

    #[test]
    fn parameters_cast_to_the_inferred_type() {
        let col: ArrayRef = Arc::new(Int32Array::from(vec![Some(7), None]));
        let v = param_value(&col, 0, Some(&DataType::Int64)).unwrap();
        assert_eq!(v, ScalarValue::Int64(Some(7)));
        let null = param_value(&col, 1, Some(&DataType::Int64)).unwrap();
        assert_eq!(null, ScalarValue::Int64(None));
        assert_eq!(
            param_value(&col, 0, None).unwrap(),
            ScalarValue::Int32(Some(7))
        );
    }
}
