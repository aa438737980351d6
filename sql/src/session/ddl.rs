//! CREATE TABLE (also `AS SELECT` and `IF NOT EXISTS`). The table and the rows of
//! `AS SELECT` are one batch: they commit together (DROP and ALTER: `alter`).
//!
//! ```sql
//! CREATE TABLE driver_stats (
//!   driver_id BIGINT NOT NULL, event_ts TIMESTAMPTZ NOT NULL, conv_rate DOUBLE PRECISION,
//!   PRIMARY KEY (driver_id)
//! ) WITH (event_time = 'event_ts', ttl = '2 days', retention = '90 days');
//! ```
//! Key and event-time columns are NOT NULL implicitly. Column options the engine
//! cannot honour (DEFAULT, UNIQUE, CHECK, REFERENCES) are errors, never ignored.

use std::sync::Arc;

use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType as ArrowType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use hindsight_storage::{CatalogOp, ColumnDef, DataType, TableDef, TableOptions, WriteBatch};
use sqlparser::ast::{
    ColumnOption, CreateTable, CreateTableOptions, Expr as SqlExpr, SqlOption, Statement,
    TableConstraint, Value as SqlValue,
};

use super::state::Session;
use crate::error::{ErrorKind, Result, SqlError};
use crate::ident::normalize;
use crate::output::Output;
use crate::types::{parse_interval_micros, storage_type};

const OPTIONS_HINT: &str =
    "supported options: event_time = '<column>', ttl = '<interval>', retention = '<interval>'";

fn option_text(v: &SqlExpr) -> Option<String> {
    match v {
        SqlExpr::Value(v) => match &v.value {
            SqlValue::SingleQuotedString(s) | SqlValue::DoubleQuotedString(s) => Some(s.clone()),
            SqlValue::Number(n, _) => Some(n.clone()),
            _ => None,
        },
        SqlExpr::Identifier(i) => Some(normalize(i)),
        _ => None,
    }
}

/// Parsed `WITH (...)` options.
#[derive(Default)]
pub(super) struct WithOptions {
    pub(super) event_time: Option<String>,
    pub(super) ttl: Option<i64>,
    pub(super) retention: Option<i64>,
}

pub(super) fn parse_options(opts: &[SqlOption]) -> Result<WithOptions> {
    let mut out = WithOptions::default();
    for o in opts {
        let SqlOption::KeyValue { key, value } = o else {
            return Err(
                SqlError::syntax(format!("unsupported table option {o}")).with_hint(OPTIONS_HINT)
            );
        };
        let k = normalize(key);
        let v = option_text(value).ok_or_else(|| {
            SqlError::syntax(format!("option {k} needs a quoted value")).with_hint(OPTIONS_HINT)
        })?;
        match k.as_str() {
            "event_time" => out.event_time = Some(v.to_ascii_lowercase()),
            "ttl" => out.ttl = Some(parse_interval_micros(&v)?),
            "retention" => out.retention = Some(parse_interval_micros(&v)?),
            other => {
                return Err(SqlError::new(
                    ErrorKind::InvalidParameterValue,
                    format!("unrecognized table option \"{other}\""),
                )
                .with_hint(OPTIONS_HINT));
            }
        }
    }
    Ok(out)
}

fn table_options(ct: &CreateTable) -> Result<WithOptions> {
    match &ct.table_options {
        CreateTableOptions::None => Ok(WithOptions::default()),
        CreateTableOptions::With(opts) => parse_options(opts),
        other => Err(
            SqlError::syntax(format!("unsupported table options {other}")).with_hint(OPTIONS_HINT),
        ),
    }
}

/// The storage type for an Arrow type produced by a query (CREATE TABLE AS).
fn type_of_arrow(t: &ArrowType, column: &str) -> Result<DataType> {
    crate::types::storage_type_of_arrow(t).ok_or_else(|| {
        SqlError::unsupported(format!(
            "column \"{column}\" has type {t}, which cannot be stored"
        ))
    })
}

/// The columns of a CREATE TABLE and the key their options and constraints name.
fn columns_and_key(ct: &CreateTable) -> Result<(Vec<ColumnDef>, Vec<usize>)> {
    let mut columns: Vec<ColumnDef> = Vec::new();
    let mut key: Vec<usize> = Vec::new();
    for c in &ct.columns {
        let mut col = ColumnDef::new(normalize(&c.name), storage_type(&c.data_type)?);
        for o in &c.options {
            match &o.option {
                ColumnOption::NotNull => col.nullable = false,
                ColumnOption::Null => {}
                ColumnOption::PrimaryKey(_) => key.push(columns.len()),
                other => {
                    return Err(SqlError::unsupported(format!(
                        "column option {other} is not supported"
                    ))
                    .with_hint("Hindsight tables support NOT NULL and PRIMARY KEY"));
                }
            }
        }
        columns.push(col);
    }
    for tc in &ct.constraints {
        let TableConstraint::PrimaryKey(pk) = tc else {
            return Err(
                SqlError::unsupported(format!("constraint {tc} is not supported"))
                    .with_hint("Hindsight tables support a PRIMARY KEY (the entity key)"),
            );
        };
        if !key.is_empty() {
            return Err(SqlError::syntax("multiple primary keys are not allowed"));
        }
        for ic in &pk.columns {
            let SqlExpr::Identifier(i) = &ic.column.expr else {
                return Err(SqlError::syntax("PRIMARY KEY lists column names"));
            };
            let n = normalize(i);
            let idx = columns.iter().position(|c| c.name == n).ok_or_else(|| {
                SqlError::new(
                    ErrorKind::UndefinedColumn,
                    format!("column \"{n}\" named in key does not exist"),
                )
            })?;
            key.push(idx);
        }
    }
    Ok((columns, key))
}

/// `batch`'s columns cast to `schema`'s types, as a batch of `schema`; where the query
/// gives NULLs in a NOT NULL column, a batch of the nullable schema, so that
/// `put_arrow` reports the NULL by column name.
fn cast_to_table(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let cols = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| cast(c, f.data_type()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let options =
        datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    match RecordBatch::try_new_with_options(schema.clone(), cols.clone(), &options) {
        Ok(b) => Ok(b),
        Err(_) => {
            let relaxed = datafusion::arrow::datatypes::Schema::new(
                schema
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone().with_nullable(true))
                    .collect::<Vec<_>>(),
            );
            Ok(RecordBatch::try_new_with_options(
                Arc::new(relaxed),
                cols,
                &options,
            )?)
        }
    }
}

impl Session {
    pub(crate) async fn create_table(&mut self, ct: CreateTable) -> Result<Output> {
        if ct.external || ct.or_replace || ct.on_commit.is_some() {
            return Err(SqlError::unsupported(
                "EXTERNAL and OR REPLACE tables, and ON COMMIT, are not supported",
            ));
        }
        let parts = crate::plan::names::name_parts(&ct.name)?;
        let name = if ct.temporary {
            let schema = self.temp_schema()?;
            match parts.as_slice() {
                [bare] => hindsight_storage::relation_key(&schema, bare),
                [s, bare] if s == "pg_temp" => hindsight_storage::relation_key(&schema, bare),
                _ => {
                    return Err(SqlError::new(
                        ErrorKind::InvalidTableDefinition,
                        "cannot create temporary relation in non-temporary schema",
                    ));
                }
            }
        } else {
            self.names().new_key(&parts)?
        };
        if self.catalog().relation_exists(&name) {
            if ct.if_not_exists {
                return Ok(Output::command("CREATE TABLE"));
            }
            return Err(SqlError::new(
                ErrorKind::DuplicateTable,
                format!("relation \"{}\" already exists", ct.name),
            ));
        }
        let opts = table_options(&ct)?;
        let (mut columns, key) = columns_and_key(&ct)?;
        // CREATE TABLE ... AS SELECT: columns from the query when none are given.
        let rows = match &ct.query {
            Some(query) => Some(self.ctas_source(query, &mut columns).await?),
            None => None,
        };
        let event_time = match &opts.event_time {
            Some(et) => Some(columns.iter().position(|c| c.name == *et).ok_or_else(|| {
                SqlError::new(
                    ErrorKind::UndefinedColumn,
                    format!("event_time column \"{et}\" does not exist"),
                )
            })?),
            None => None,
        };
        for &k in key.iter().chain(event_time.iter()) {
            if let Some(c) = columns.get_mut(k) {
                c.nullable = false;
            }
        }
        let options = TableOptions {
            ttl_micros: opts.ttl,
            retention_micros: opts.retention,
        };
        let mut def = TableDef::new(name, columns, key, event_time, options);
        def.id = self.engine.db().provisional_table_id();
        def.created_micros = self.engine.db().now_micros();
        def.validate()?;
        let mut wb = WriteBatch::catalog_only(CatalogOp::CreateTable(def.clone()));
        let mut n = 0u64;
        if let Some(rows) = &rows {
            let schema = Arc::new(def.arrow_schema(None));
            for b in rows {
                let b = cast_to_table(b, &schema)?;
                wb.put_arrow(&def, &b)?;
                n += b.num_rows() as u64;
            }
        }
        self.write(wb)?;
        Ok(match rows {
            Some(_) => Output::count("SELECT", n),
            None => Output::command("CREATE TABLE"),
        })
    }

    /// Run the query of CREATE TABLE ... AS: its rows, and its columns as the
    /// table's when the statement lists none (else the counts must agree).
    async fn ctas_source(
        &mut self,
        query: &sqlparser::ast::Query,
        columns: &mut Vec<ColumnDef>,
    ) -> Result<Vec<RecordBatch>> {
        let mut query = Box::new(query.clone());
        crate::plan::rewrite::name_query_outputs(&mut query);
        self.begin_statement(vec![])?;
        let plan = self.plan(Statement::Query(query)).await?;
        let schema = plan.schema().as_arrow().clone();
        if columns.is_empty() {
            for f in schema.fields() {
                columns.push(ColumnDef::new(
                    f.name().clone(),
                    type_of_arrow(f.data_type(), f.name())?,
                ));
            }
        } else if columns.len() != schema.fields().len() {
            return Err(SqlError::syntax(
                "CREATE TABLE AS: the query returns a different number of columns",
            ));
        }
        self.collect_plan(&plan).await
    }
}
