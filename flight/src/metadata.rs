//! The metadata commands Flight SQL clients call (ADBC's `adbc_get_objects`,
//! `adbc_get_table_schema`, driver info): catalogs, schemas, tables with their Arrow
//! schemas, table types, primary keys and the server's SQL info.
//!
//! Every listing reads the catalog a session sees (`information_schema`, the same
//! one psql and dbt read), so Flight and pgwire clients never disagree. There is one
//! catalog, `hindsight`. Filters (catalog, LIKE patterns, table types) are Arrow
//! Flight's own builders'; a table's schema is planned only for tables that pass
//! them.

use std::sync::{Arc, LazyLock};

use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetTables, SqlInfo, SqlSupportedTransaction,
};
use datafusion::arrow::array::{ArrayRef, AsArray, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use hindsight_sql::{CATALOG, Collected, Session, SqlError};
use tonic::Status;

use crate::error::status;

/// Table types, as Flight SQL clients name them.
pub(crate) const TABLE_TYPES: [&str; 3] = ["TABLE", "VIEW", "SYSTEM TABLE"];

/// The server's `GetSqlInfo` answers.
pub(crate) static SQL_INFO: LazyLock<Result<SqlInfoData, String>> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Hindsight");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    // The Arrow columnar format version (Schema.fbs MetadataVersion V5 = "1.3").
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, true);
    b.append(SqlInfo::SqlDdlTable, true);
    b.build().map_err(|e| e.to_string())
});

/// The SQL info data, or an internal error if it could not be built.
pub(crate) fn sql_info() -> Result<&'static SqlInfoData, Status> {
    SQL_INFO.as_ref().map_err(|e| Status::internal(e.clone()))
}

/// Rows of `sql` as text columns.
async fn text_rows(session: &mut Session, sql: &str) -> Result<Vec<Vec<String>>, Status> {
    let out = session.run(sql).await.map_err(status)?;
    let mut rows = Vec::new();
    for collected in out {
        let Collected::Rows(_, batches) = collected else {
            continue;
        };
        for batch in batches {
            let columns = batch
                .columns()
                .iter()
                .map(|c| cast(c, &DataType::Utf8).map_err(|e| status(SqlError::from(e))))
                .collect::<Result<Vec<ArrayRef>, Status>>()?;
            for r in 0..batch.num_rows() {
                rows.push(
                    columns
                        .iter()
                        .map(|c| c.as_string::<i32>().value(r).to_string())
                        .collect(),
                );
            }
        }
    }
    Ok(rows)
}

/// `GetDbSchemas`.
pub(crate) async fn schemas(
    mut session: Session,
    cmd: CommandGetDbSchemas,
) -> Result<RecordBatch, Status> {
    let rows = text_rows(
        &mut session,
        "SELECT schema_name FROM information_schema.schemata ORDER BY schema_name",
    )
    .await?;
    let mut b = cmd.into_builder();
    for row in rows {
        if let Some(name) = row.first() {
            b.append(CATALOG, name);
        }
    }
    b.build().map_err(Status::from)
}

/// `GetTables`: the tables passing the filters, with their Arrow schemas if asked.
pub(crate) async fn tables(
    mut session: Session,
    cmd: CommandGetTables,
) -> Result<RecordBatch, Status> {
    let rows = text_rows(
        &mut session,
        "SELECT table_schema, table_name, table_type FROM information_schema.tables \
         ORDER BY table_schema, table_name",
    )
    .await?;
    let include_schema = cmd.include_schema;
    // Filter first with a schema-less builder, so only the survivors are planned.
    let mut names = CommandGetTables {
        include_schema: false,
        ..cmd.clone()
    }
    .into_builder();
    for row in &rows {
        if let [schema, name, kind] = row.as_slice() {
            names
                .append(
                    CATALOG,
                    schema,
                    name,
                    table_type(schema, kind),
                    &Schema::empty(),
                )
                .map_err(Status::from)?;
        }
    }
    let kept = names.build().map_err(Status::from)?;
    let column = |i: usize| kept.column(i).as_string::<i32>().clone();
    let (schemas, tables, types) = (column(1), column(2), column(3));
    let mut b = cmd.into_builder();
    for i in 0..kept.num_rows() {
        let (schema, table) = (schemas.value(i), tables.value(i));
        let columns = match include_schema {
            true => table_schema(&mut session, schema, table).await?,
            false => Arc::new(Schema::empty()),
        };
        b.append(CATALOG, schema, table, types.value(i), &columns)
            .map_err(Status::from)?;
    }
    b.build().map_err(Status::from)
}

/// A relation's Arrow schema (its columns as a query returns them).
async fn table_schema(
    session: &mut Session,
    schema: &str,
    table: &str,
) -> Result<SchemaRef, Status> {
    let sql = format!("SELECT * FROM {}.{}", quote(schema), quote(table));
    let prepared = session.prepare(&sql, &[]).await.map_err(status)?;
    Ok(prepared.schema.unwrap_or_else(|| Arc::new(Schema::empty())))
}

/// The Flight SQL table type of an `information_schema.tables` row.
fn table_type<'a>(schema: &str, kind: &'a str) -> &'a str {
    match (schema, kind) {
        ("pg_catalog" | "information_schema", _) => "SYSTEM TABLE",
        (_, "BASE TABLE") => "TABLE",
        (_, other) => other,
    }
}

/// `GetPrimaryKeys`: the table's entity key, in key order.
pub(crate) fn primary_keys(
    session: &Session,
    cmd: &CommandGetPrimaryKeys,
) -> Result<RecordBatch, Status> {
    if cmd.catalog.as_deref().is_some_and(|c| c != CATALOG) {
        return build_keys(&cmd.table, None, &[]);
    }
    let mut name: Vec<String> = cmd.db_schema.iter().cloned().collect();
    name.push(cmd.table.clone());
    let keys = session.primary_key(&name).map_err(status)?;
    build_keys(&cmd.table, cmd.db_schema.as_deref(), &keys)
}

/// The primary keys result (Flight SQL's `CommandGetPrimaryKeys` schema).
fn build_keys(table: &str, schema: Option<&str>, keys: &[String]) -> Result<RecordBatch, Status> {
    let n = keys.len();
    let text = |v: Vec<Option<&str>>| Arc::new(StringArray::from(v)) as ArrayRef;
    let schema_name = schema.unwrap_or("public");
    let columns: Vec<ArrayRef> = vec![
        text(vec![Some(CATALOG); n]),
        text(vec![Some(schema_name); n]),
        text(vec![Some(table); n]),
        text(keys.iter().map(|k| Some(k.as_str())).collect()),
        text(vec![Some("PRIMARY KEY"); n]),
        Arc::new(Int32Array::from_iter_values(1..=n as i32)),
    ];
    RecordBatch::try_new(primary_keys_schema(), columns).map_err(|e| status(SqlError::from(e)))
}

pub(crate) fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// `name` as a quoted SQL identifier.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_info_builds_and_types_map() {
        assert!(sql_info().is_ok());
        assert_eq!(table_type("public", "BASE TABLE"), "TABLE");
        assert_eq!(table_type("public", "VIEW"), "VIEW");
        assert_eq!(table_type("pg_catalog", "BASE TABLE"), "SYSTEM TABLE");
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
        let keys = build_keys("t", None, &["a".into(), "b".into()]).unwrap();
        assert_eq!(keys.num_rows(), 2);
        assert!(
            keys.column(5)
                .as_any()
                .downcast_ref::<Int32Array>()
                .is_some()
        );
        assert_eq!(keys.column(0).len(), 2);
    }
}
