//! `CommandStatementIngest` (ADBC's `adbc_ingest`): Arrow batches streamed by
//! `DoPut` into a table, with COPY's semantics (every row a new version, one
//! atomic durable write at the end of the stream).
//!
//! Table options: `if_exists` append (the default) or fail; `replace` is refused
//! (a feature table keeps its history; drop it first if you mean it). With
//! `if_not_exist = create`, a missing table is created from the data's schema as an
//! append-only table (no key: an uploaded spine or label set) in the same
//! transaction as its rows, so a failed ingest leaves no empty table behind.
//! Temporary tables and Flight transactions are not supported.
//!
//! Invariant: rows become visible only when the whole stream arrived and converted
//! and the call is still alive; a client that disconnects or cancels mid-stream, a
//! schema that does not fit, or a bad value anywhere writes nothing.

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::CommandStatementIngest;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{TableExistsOption, TableNotExistOption};
use datafusion::arrow::datatypes::Schema;
use futures::{StreamExt, TryStreamExt};
use hindsight_sql::{CATALOG, ErrorKind, Session, SqlError, pg_type_name, storage_type_of_arrow};
use tonic::Status;

use crate::error::status;
use crate::metadata::quote;
use crate::runner::{Confirm, unsupported};

/// Ingest the stream's batches into the command's table; the number of rows.
pub(crate) async fn ingest(
    mut session: Session,
    cmd: CommandStatementIngest,
    data: PeekableFlightDataStream,
    mut confirm: Confirm,
) -> Result<i64, Status> {
    check_options(&cmd)?;
    let name: Vec<String> = cmd
        .schema
        .iter()
        .cloned()
        .chain([cmd.table.clone()])
        .collect();
    let options = cmd.table_definition_options.unwrap_or_default();
    let mut batches = decode(data).peekable();
    run(&mut session, "BEGIN").await?;
    let mut ingest = match session.ingest(&name) {
        Ok(ingest) => {
            if options.if_exists == TableExistsOption::Fail as i32 {
                return Err(status(SqlError::new(
                    ErrorKind::DuplicateTable,
                    format!("relation \"{}\" already exists", cmd.table),
                )));
            }
            ingest
        }
        Err(e)
            if e.kind == ErrorKind::UndefinedTable
                && options.if_not_exist == TableNotExistOption::Create as i32 =>
        {
            let schema = match std::pin::Pin::new(&mut batches).peek().await {
                Some(Ok(b)) => b.schema(),
                Some(Err(_)) => return Err(next_error(batches.next().await)),
                None => {
                    return Err(Status::invalid_argument(
                        "an ingest that creates its table needs data",
                    ));
                }
            };
            run(&mut session, &create_table(&name, &schema)?).await?;
            session.ingest(&name).map_err(status)?
        }
        Err(e) => return Err(status(e)),
    };
    while let Some(batch) = batches.next().await {
        let batch = batch
            .map_err(|e| Status::invalid_argument(format!("reading the ingest stream: {e}")))?;
        ingest.push(&batch).map_err(status)?;
    }
    confirm.upload_complete().await?;
    let rows = session.finish_ingest(ingest).map_err(status)?;
    run(&mut session, "COMMIT").await?;
    Ok(rows as i64)
}

/// The record batches of a `DoPut` stream. A message with no IPC header (the
/// descriptor alone, as clients send before or instead of data) carries no rows.
pub(crate) fn decode(data: PeekableFlightDataStream) -> FlightRecordBatchStream {
    let messages = data
        .map_err(FlightError::from)
        .try_filter(|m| std::future::ready(!m.data_header.is_empty()));
    FlightRecordBatchStream::new_from_flight_data(messages)
}

/// The error of a stream's failed item.
fn next_error(
    item: Option<Result<datafusion::arrow::record_batch::RecordBatch, FlightError>>,
) -> Status {
    match item {
        Some(Err(e)) => Status::invalid_argument(format!("reading the ingest stream: {e}")),
        _ => Status::internal("the ingest stream changed under its reader"),
    }
}

fn check_options(cmd: &CommandStatementIngest) -> Result<(), Status> {
    if cmd.transaction_id.is_some() {
        return Err(unsupported("Flight SQL transactions are not supported"));
    }
    if cmd.temporary {
        return Err(unsupported(
            "ingest into a temporary table is not supported",
        ));
    }
    if cmd.catalog.as_deref().is_some_and(|c| c != CATALOG) {
        return Err(status(SqlError::new(
            ErrorKind::UndefinedObject,
            format!(
                "catalog \"{}\" does not exist (the one catalog is \"{CATALOG}\")",
                cmd.catalog.as_deref().unwrap_or_default()
            ),
        )));
    }
    let options = cmd.table_definition_options.unwrap_or_default();
    if options.if_exists == TableExistsOption::Replace as i32 {
        return Err(unsupported(
            "ingest with replace: a feature table keeps its history; DROP TABLE first, or append",
        ));
    }
    Ok(())
}

/// `CREATE TABLE` of an append-only table with the data's columns.
fn create_table(name: &[String], schema: &Schema) -> Result<String, Status> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            storage_type_of_arrow(f.data_type())
                .map(|t| format!("{} {}", quote(f.name()), pg_type_name(t)))
                .ok_or_else(|| {
                    unsupported(&format!(
                        "column \"{}\": no table column type holds Arrow {}",
                        f.name(),
                        f.data_type()
                    ))
                })
        })
        .collect::<Result<Vec<_>, Status>>()?;
    let table: Vec<String> = name.iter().map(|n| quote(n)).collect();
    Ok(format!(
        "CREATE TABLE {} ({})",
        table.join("."),
        columns.join(", ")
    ))
}

async fn run(session: &mut Session, sql: &str) -> Result<(), Status> {
    session.run(sql).await.map(drop).map_err(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
    use std::sync::Arc;

    #[test]
    fn created_tables_use_postgres_types() {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new(
                "emb",
                DataType::List(Arc::new(Field::new("item", DataType::Float32, true))),
                true,
            ),
        ]);
        let sql = create_table(&["spine".into()], &schema).unwrap();
        assert!(
            sql.starts_with("CREATE TABLE \"spine\" (\"id\" bigint"),
            "{sql}"
        );
        let bad = Schema::new(vec![Field::new(
            "d",
            DataType::Duration(TimeUnit::Second),
            true,
        )]);
        assert_eq!(
            create_table(&["t".into()], &bad).unwrap_err().code(),
            tonic::Code::Unimplemented
        );
    }
}
