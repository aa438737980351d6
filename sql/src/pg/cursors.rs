//! `pg_catalog.pg_cursors`: the session's open cursors, as psycopg reads them before
//! it closes a server-side cursor. A leaf of the `pg` floor.
//!
//! Invariant: the view shows the session that queries it: each session puts its
//! [`OpenCursors`] into its DataFusion config, keeps it in step with its cursors,
//! and the view reads it at scan time.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BooleanArray, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{MemTable, Session as DfSession, TableProvider};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;

/// The name of the view in `pg_catalog`.
pub(crate) const CURSORS_VIEW: &str = "pg_cursors";

/// One open cursor as the view lists it.
#[derive(Clone, Debug)]
pub(crate) struct CursorInfo {
    pub name: String,
    pub statement: String,
    pub holdable: bool,
    pub created_micros: i64,
}

/// A session's open cursors (a DataFusion config extension).
#[derive(Debug, Default)]
pub(crate) struct OpenCursors(Mutex<Vec<CursorInfo>>);

impl OpenCursors {
    /// Replace the listing.
    pub(crate) fn set(&self, cursors: Vec<CursorInfo>) {
        if let Ok(mut l) = self.0.lock() {
            *l = cursors;
        }
    }

    fn list(&self) -> Vec<CursorInfo> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// The `pg_cursors` view.
#[derive(Debug)]
pub(crate) struct CursorsView {
    schema: SchemaRef,
}

impl CursorsView {
    pub(crate) fn new() -> Self {
        let flag = |n: &str| Field::new(n, DataType::Boolean, false);
        CursorsView {
            schema: Arc::new(Schema::new(vec![
                Field::new("name", DataType::Utf8, false),
                Field::new("statement", DataType::Utf8, false),
                flag("is_holdable"),
                flag("is_binary"),
                flag("is_scrollable"),
                Field::new(
                    "creation_time",
                    DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                    false,
                ),
            ])),
        }
    }
}

#[async_trait]
impl TableProvider for CursorsView {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let rows = state
            .config()
            .get_extension::<OpenCursors>()
            .map(|c| c.list())
            .unwrap_or_default();
        let flags = |f: &dyn Fn(&CursorInfo) -> bool| -> ArrayRef {
            Arc::new(rows.iter().map(|c| Some(f(c))).collect::<BooleanArray>())
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(
                rows.iter()
                    .map(|c| Some(c.name.as_str()))
                    .collect::<StringArray>(),
            ),
            Arc::new(
                rows.iter()
                    .map(|c| Some(c.statement.as_str()))
                    .collect::<StringArray>(),
            ),
            flags(&|c| c.holdable),
            flags(&|_| false),
            flags(&|_| false),
            Arc::new(
                rows.iter()
                    .map(|c| Some(c.created_micros))
                    .collect::<TimestampMicrosecondArray>()
                    .with_timezone("+00:00"),
            ),
        ];
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        MemTable::try_new(self.schema.clone(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}
