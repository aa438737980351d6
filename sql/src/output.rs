//! What a statement produces ([`Output`]: a result stream or a command tag), and
//! helpers for results held in memory. A leaf: statement executors and the wire
//! layer both speak it.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::TryStreamExt;

use crate::error::Result;

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

/// A stream over in-memory batches.
pub fn memory_stream(batches: Vec<RecordBatch>) -> SendableRecordBatchStream {
    let schema = batches
        .first()
        .map(|b| b.schema())
        .unwrap_or_else(|| Arc::new(Schema::empty()));
    batches_stream(schema, batches)
}

/// A stream of batches already in memory, with their schema.
pub(crate) fn batches_stream(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> SendableRecordBatchStream {
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
