//! INSERT, UPDATE and DELETE: every write is a new version.
//!
//! INSERT and UPDATE are planned by DataFusion; its DML input plan (source rows already
//! cast to the table's column types, missing columns NULL, parameter types inferred
//! from the target columns) is executed here and the rows are written as versions:
//! - `INSERT`: one version per row;
//! - `ON CONFLICT (key) DO NOTHING`: rows whose entity exists in the current state, or
//!   appeared earlier in the same statement, are skipped;
//! - `ON CONFLICT (key) DO UPDATE SET ... [WHERE ...]`: for existing entities, the new
//!   version is the current row with the assignments applied (`EXCLUDED` is the
//!   proposed row); others are inserted as proposed;
//! - `UPDATE`: a new version of each matched row, at the same event time (a newer
//!   system version of the same fact); key and event-time columns cannot be assigned;
//! - `DELETE`: a tombstone for each matched entity, at event time max(now, the
//!   entity's latest event time), so the entity leaves the current state while its
//!   history stays visible to time travel.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch, UInt64Array};
use datafusion::arrow::compute::{cast, concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::LogicalPlan;
use hindsight_storage::{ColumnRole, ReadAt, Snapshot, TableDef, WriteBatch, encode_batch_keys};
use sqlparser::ast::{
    Assignment, AssignmentTarget, Delete, Expr as SqlExpr, FromTable, Insert, OnConflictAction,
    OnInsert, SetExpr, Statement, TableFactor, TableObject, Update, UpdateTableFromKind,
};

use super::state::Session;
use crate::error::{ErrorKind, Result, SqlError};
use crate::ident::normalize;
use crate::output::Output;
use crate::plan::provider::KEY_BYTES;
use crate::plan::relation::{KEYS_FUNCTION, STASH_FUNCTION};

const ORDINAL: &str = "__hindsight_ordinal";

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Session {
    /// Plan a DML statement the way executing it would (for parameter types).
    pub(crate) async fn plan_dml_for_types(&self, stmt: Statement) -> Result<LogicalPlan> {
        match stmt {
            Statement::Insert(mut ins) => {
                ins.on = None;
                self.plan(Statement::Insert(ins)).await
            }
            Statement::Delete(d) => {
                let (_, query) = self.delete_query(d)?;
                self.plan(query).await
            }
            other => self.plan(other).await,
        }
    }

    pub(crate) async fn insert(
        &mut self,
        mut ins: Insert,
        params: Vec<ScalarValue>,
    ) -> Result<Output> {
        if ins.returning.is_some() {
            return Err(SqlError::unsupported(
                "INSERT ... RETURNING is not supported",
            ));
        }
        let TableObject::TableName(name) = &ins.table else {
            return Err(SqlError::unsupported(
                "INSERT into a table function is not supported",
            ));
        };
        let def = self.table_named(name)?;
        ins.table = TableObject::TableName(crate::plan::names::qualified_name(&def.name));
        let on = ins.on.take();
        let alias = ins
            .table_alias
            .take()
            .map(|a| normalize(&a.alias))
            .unwrap_or_else(|| def.bare_name().to_string());
        crate::pg::literals::rewrite_insert_literals(&mut ins, &def);
        if let Some(source) = ins.source.as_mut() {
            crate::plan::rewrite::name_query_outputs(source);
        }
        let snapshot = self.begin_statement(params.clone())?;
        let plan = Session::bind(self.plan(Statement::Insert(ins)).await?, &params)?;
        let LogicalPlan::Dml(dml) = plan else {
            return Err(SqlError::internal("INSERT did not plan to a DML statement"));
        };
        // Assignment casts: a parameter declared narrower than its column (a driver
        // sending int2 for a BIGINT) is widened as PostgreSQL does.
        let batches = self
            .collect_plan(&dml.input)
            .await?
            .iter()
            .map(|b| cast_to_table(&def, b))
            .collect::<Result<Vec<_>>>()?;
        let mut wb = WriteBatch::new();
        let rows = match on {
            None => {
                for b in &batches {
                    wb.put_arrow(&def, b)?;
                }
                batches.iter().map(|b| b.num_rows() as u64).sum()
            }
            Some(OnInsert::OnConflict(oc)) => {
                check_conflict_target(&def, oc.conflict_target.as_ref())?;
                let proposed = Proposed::new(&def, &snapshot, &batches)?;
                match oc.action {
                    OnConflictAction::DoNothing => proposed.write_new(&def, &mut wb)?,
                    OnConflictAction::DoUpdate(du) => {
                        let upsert = Upsert {
                            def: &def,
                            alias: &alias,
                            assignments: &du.assignments,
                            selection: du.selection,
                            params: &params,
                        };
                        self.write_upsert(&proposed, upsert, &mut wb).await?
                    }
                }
            }
            Some(other) => {
                return Err(SqlError::unsupported(format!("{other} is not supported"))
                    .with_hint("use ON CONFLICT (key) DO NOTHING or DO UPDATE SET ..."));
            }
        };
        self.write(wb)?;
        Ok(Output::count("INSERT", rows))
    }

    /// `ON CONFLICT DO UPDATE`: proposed rows of new entities as they are, existing
    /// ones updated by the assignments. Returns the rows written.
    async fn write_upsert(
        &mut self,
        proposed: &Proposed,
        upsert: Upsert<'_>,
        wb: &mut WriteBatch,
    ) -> Result<u64> {
        let mut seen: HashSet<&[u8]> = HashSet::new();
        if proposed.keys.iter().any(|k| !seen.insert(k.as_slice())) {
            return Err(SqlError::new(
                ErrorKind::CardinalityViolation,
                "ON CONFLICT DO UPDATE command cannot affect row a second time",
            )
            .with_hint("ensure that no rows proposed for insertion within the same command have duplicate constrained values"));
        }
        let conflict: BooleanArray = proposed
            .keys
            .iter()
            .map(|k| Some(proposed.existing.contains(k)))
            .collect();
        let fresh =
            filter_record_batch(&proposed.rows, &datafusion::arrow::compute::not(&conflict)?)?;
        wb.put_arrow(upsert.def, &fresh)?;
        let mut rows = fresh.num_rows() as u64;
        let excluded = filter_record_batch(&proposed.rows, &conflict)?;
        if excluded.num_rows() > 0 {
            let def = upsert.def;
            let updated = self.upsert_rows(&excluded, upsert).await?;
            wb.put_arrow(def, &updated)?;
            rows += updated.num_rows() as u64;
        }
        Ok(rows)
    }

    /// New versions for conflicting rows: the current rows with the assignments
    /// applied, `EXCLUDED` being the proposed rows.
    async fn upsert_rows(
        &mut self,
        excluded: &RecordBatch,
        upsert: Upsert<'_>,
    ) -> Result<RecordBatch> {
        let Upsert {
            def,
            alias,
            assignments,
            selection,
            params,
        } = upsert;
        let snapshot = self.stmt.snapshot()?;
        let keys = encode_batch_keys(def, excluded)?;
        let now = snapshot.now_micros();
        let current = snapshot.lookup_batch(def, &keys, &ReadAt::latest(now), None)?;
        if current.num_rows() != excluded.num_rows() {
            return Err(SqlError::internal(
                "conflicting rows changed during ON CONFLICT",
            ));
        }
        let ordinals = Arc::new(UInt64Array::from_iter_values(0..excluded.num_rows() as u64));
        let with_ordinal = |b: &RecordBatch| -> Result<RecordBatch> {
            let mut fields: Vec<Field> = b
                .schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            fields.push(Field::new(
                ORDINAL,
                datafusion::arrow::datatypes::DataType::UInt64,
                false,
            ));
            let mut cols = b.columns().to_vec();
            cols.push(ordinals.clone());
            Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
        };
        let cur = self.stmt.stash(vec![with_ordinal(&current)?]);
        let exc = self.stmt.stash(vec![with_ordinal(excluded)?]);
        let mut select = Vec::new();
        for c in &def.columns {
            let assigned = assignments
                .iter()
                .rev()
                .find(|a| assignment_column(a).as_deref() == Some(c.name.as_str()));
            match assigned {
                Some(a) => select.push(format!("{} AS {}", a.value, quote(&c.name))),
                None => select.push(format!("{}.{}", quote(alias), quote(&c.name))),
            }
        }
        for a in assignments {
            if let Some(name) = assignment_column(a) {
                check_assignable(def, &name, true)?;
            }
        }
        let mut sql = format!(
            "SELECT {} FROM {STASH_FUNCTION}({cur}) AS {a} JOIN {STASH_FUNCTION}({exc}) AS excluded ON {a}.{ORDINAL} = excluded.{ORDINAL}",
            select.join(", "),
            a = quote(alias),
        );
        if let Some(w) = selection {
            sql.push_str(&format!(" WHERE {w}"));
        }
        let stmt = crate::dialect::parse(&sql)?
            .pop()
            .ok_or_else(|| SqlError::internal("empty upsert query"))?;
        let plan = Session::bind(self.plan(stmt).await?, params)?;
        let batches = self.collect_plan(&plan).await?;
        cast_to_table(def, &concat(&batches)?)
    }

    pub(crate) async fn update(
        &mut self,
        mut u: Update,
        params: Vec<ScalarValue>,
    ) -> Result<Output> {
        if u.returning.is_some() {
            return Err(SqlError::unsupported(
                "UPDATE ... RETURNING is not supported",
            ));
        }
        let TableFactor::Table { name, .. } = &u.table.relation else {
            return Err(SqlError::unsupported("UPDATE needs a table"));
        };
        let def = self.table_named(name)?;
        // ORMs set every mapped column, the key and event time included, to the
        // values they already have: such assignments are kept only if no matched
        // row would change (checked below), and then assign the column to itself.
        let mut pinned = Vec::new();
        for a in &mut u.assignments {
            let Some(col) = assignment_column(a) else {
                continue;
            };
            match check_assignable(&def, &col, false) {
                Ok(()) => {}
                Err(e) if e.kind == ErrorKind::FeatureNotSupported => {
                    let itself = SqlExpr::Identifier(sqlparser::ast::Ident::with_quote('"', &col));
                    pinned.push((col, std::mem::replace(&mut a.value, itself), e));
                }
                Err(e) => return Err(e),
            }
        }
        self.begin_statement(params.clone())?;
        if !pinned.is_empty() {
            self.check_pinned_unchanged(&u, &pinned, &params).await?;
        }
        let plan = Session::bind(self.plan(Statement::Update(u)).await?, &params)?;
        let LogicalPlan::Dml(dml) = plan else {
            return Err(SqlError::internal("UPDATE did not plan to a DML statement"));
        };
        let batches = self.collect_plan(&dml.input).await?;
        let mut wb = WriteBatch::new();
        let mut rows = 0u64;
        for b in &batches {
            let b = cast_to_table(&def, b)?;
            wb.put_arrow(&def, &b)?;
            rows += b.num_rows() as u64;
        }
        self.write(wb)?;
        Ok(Output::count("UPDATE", rows))
    }

    /// Fail with `refusal` (the error a changing assignment gets) when a row the
    /// UPDATE matches would get a different key or event time than it has.
    async fn check_pinned_unchanged(
        &self,
        u: &Update,
        pinned: &[(String, SqlExpr, SqlError)],
        params: &[ScalarValue],
    ) -> Result<()> {
        let changes = pinned
            .iter()
            .map(|(col, value, _)| format!("({} IS DISTINCT FROM ({value}))", quote(col)))
            .collect::<Vec<_>>()
            .join(" OR ");
        let from = match &u.from {
            Some(UpdateTableFromKind::AfterSet(t) | UpdateTableFromKind::BeforeSet(t)) => {
                t.iter().map(|t| format!(", {t}")).collect::<String>()
            }
            None => String::new(),
        };
        let filter = u
            .selection
            .as_ref()
            .map(|s| format!("({s}) AND "))
            .unwrap_or_default();
        let sql = format!(
            "SELECT count(*) FROM {}{from} WHERE {filter}({changes})",
            u.table
        );
        let stmt = crate::dialect::parse(&sql)?
            .pop()
            .ok_or_else(|| SqlError::internal("empty UPDATE check query"))?;
        let plan = Session::bind(self.plan(stmt).await?, params)?;
        let batches = self.collect_plan(&plan).await?;
        let changed = batches
            .first()
            .and_then(|b| {
                b.column(0)
                    .as_primitive_opt::<datafusion::arrow::datatypes::Int64Type>()
            })
            .is_some_and(|c| !c.is_empty() && c.value(0) > 0);
        match (changed, pinned.first()) {
            (true, Some((_, _, refusal))) => Err(refusal.clone()),
            _ => Ok(()),
        }
    }

    /// `DELETE FROM t [AS a] [USING ...] [WHERE p]` as a query of the matched
    /// entities' encoded keys and event times.
    fn delete_query(&self, d: Delete) -> Result<(Arc<TableDef>, Statement)> {
        if d.returning.is_some() || d.limit.is_some() || !d.order_by.is_empty() {
            return Err(SqlError::unsupported(
                "DELETE with RETURNING, ORDER BY or LIMIT is not supported",
            ));
        }
        let from = match d.from {
            FromTable::WithFromKeyword(v) | FromTable::WithoutKeyword(v) => v,
        };
        let [twj] = from.as_slice() else {
            return Err(SqlError::unsupported(
                "DELETE from more than one table is not supported",
            ));
        };
        let (TableFactor::Table { name, alias, .. }, true) = (&twj.relation, twj.joins.is_empty())
        else {
            return Err(SqlError::unsupported("DELETE needs a single table")
                .with_hint("use DELETE FROM t USING other WHERE ..."));
        };
        let def = self.table_named(name)?;
        let q = alias
            .as_ref()
            .map(|a| normalize(&a.name))
            .unwrap_or_else(|| def.bare_name().to_string());
        let et = def
            .event_time
            .and_then(|i| def.columns.get(i))
            .map(|c| format!("{}.{}", quote(&q), quote(&c.name)))
            .unwrap_or_else(|| "NULL".into());
        let sql = format!(
            "SELECT {q}.{KEY_BYTES}, {et} FROM {KEYS_FUNCTION}({t}) AS {q}",
            q = quote(&q),
            t = crate::plan::names::quote_key(&def.name),
        );
        let mut stmt = crate::dialect::parse(&sql)?
            .pop()
            .ok_or_else(|| SqlError::internal("empty delete query"))?;
        if let Statement::Query(query) = &mut stmt
            && let SetExpr::Select(select) = query.body.as_mut()
        {
            select.selection = d.selection;
            if let Some(using) = d.using {
                select.from.extend(using);
            }
        }
        Ok((def, stmt))
    }

    pub(crate) async fn delete(&mut self, d: Delete, params: Vec<ScalarValue>) -> Result<Output> {
        let (def, query) = self.delete_query(d)?;
        let snapshot = self.begin_statement(params.clone())?;
        let plan = Session::bind(self.plan(query).await?, &params)?;
        let batches = self.collect_plan(&plan).await?;
        let now = snapshot.now_micros();
        let mut wb = WriteBatch::new();
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        for b in &batches {
            let keys = b.column(0).as_binary::<i32>();
            let ets = cast(b.column(1), &datafusion::arrow::datatypes::DataType::Int64)?;
            let ets = ets.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            for r in 0..b.num_rows() {
                let key = keys.value(r);
                if !seen.insert(key.to_vec()) {
                    continue;
                }
                let et = if def.event_time.is_some() && !ets.is_null(r) {
                    Some(now.max(ets.value(r)))
                } else {
                    None
                };
                wb.delete_encoded(&def, key, et);
            }
        }
        let rows = seen.len() as u64;
        self.write(wb)?;
        Ok(Output::count("DELETE", rows))
    }
}

fn assignment_column(a: &Assignment) -> Option<String> {
    match &a.target {
        AssignmentTarget::ColumnName(n) => n.0.last().and_then(|p| p.as_ident()).map(normalize),
        AssignmentTarget::Tuple(_) => None,
    }
}

/// Key columns are never assigned; the event-time column only by an upsert, whose
/// new version may carry the proposed event time.
fn check_assignable(def: &TableDef, col: &str, upsert: bool) -> Result<()> {
    let idx = def.column_index(col).ok_or_else(|| {
        SqlError::new(
            ErrorKind::UndefinedColumn,
            format!(
                "column \"{col}\" of relation \"{}\" does not exist",
                def.name
            ),
        )
    })?;
    match def.roles().get(idx) {
        Some(ColumnRole::Key(_)) => Err(SqlError::unsupported(format!(
            "cannot update key column \"{col}\": versions belong to their entity"
        ))
        .with_hint("DELETE the entity and INSERT it under the new key")),
        Some(ColumnRole::EventTime) if !upsert => Err(SqlError::unsupported(format!(
            "cannot update event-time column \"{col}\""
        ))
        .with_hint("INSERT a new version with the new event time")),
        _ => Ok(()),
    }
}

fn check_conflict_target(
    def: &TableDef,
    target: Option<&sqlparser::ast::ConflictTarget>,
) -> Result<()> {
    if def.key.is_empty() {
        return Err(SqlError::new(
            ErrorKind::InvalidParameterValue,
            format!(
                "table \"{}\" has no PRIMARY KEY for ON CONFLICT to match",
                def.name
            ),
        ));
    }
    if let Some(sqlparser::ast::ConflictTarget::Columns(cols)) = target {
        let mut given: Vec<String> = cols.iter().map(normalize).collect();
        let mut key: Vec<String> = def
            .key
            .iter()
            .filter_map(|&i| def.columns.get(i).map(|c| c.name.clone()))
            .collect();
        given.sort();
        key.sort();
        if given != key {
            return Err(SqlError::new(
                ErrorKind::InvalidParameterValue,
                "there is no unique or exclusion constraint matching the ON CONFLICT specification",
            )
            .with_hint(format!(
                "the key of \"{}\" is ({})",
                def.name,
                key.join(", ")
            )));
        }
    }
    Ok(())
}

fn concat(batches: &[RecordBatch]) -> Result<RecordBatch> {
    let Some(first) = batches.first() else {
        return Ok(RecordBatch::new_empty(Arc::new(Schema::empty())));
    };
    Ok(concat_batches(&first.schema(), batches)?)
}

/// Cast a batch's columns to the table's column types.
fn cast_to_table(def: &TableDef, b: &RecordBatch) -> Result<RecordBatch> {
    let schema = Arc::new(def.arrow_schema(None));
    if b.num_columns() != schema.fields().len() {
        if b.num_columns() == 0 {
            return Ok(RecordBatch::new_empty(schema));
        }
        return Err(SqlError::internal("row shape does not match the table"));
    }
    let cols = b
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| cast(c, f.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        )),
        cols,
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(b.num_rows())),
    )?)
}

/// Encoded keys of a batch holding only the key columns (in key order).
fn encode_batch_keys_subset(def: &TableDef, keys_only: &RecordBatch) -> Result<HashSet<Vec<u8>>> {
    let types = def.key_types();
    let mut out = HashSet::new();
    for r in 0..keys_only.num_rows() {
        let vals = keys_only
            .columns()
            .iter()
            .zip(&types)
            .map(|(c, &t)| {
                ScalarValue::try_from_array(c, r)
                    .ok()
                    .and_then(|s| crate::plan::provider::key_value(&s, t))
            })
            .collect::<Option<Vec<_>>>();
        if let Some(v) = vals {
            out.insert(hindsight_storage::encode_key(&v, &types, &[])?);
        }
    }
    Ok(out)
}

/// The rows an `INSERT ... ON CONFLICT` proposes, with their encoded keys and the
/// keys of those that already exist in the current state.
struct Proposed {
    rows: RecordBatch,
    keys: Vec<Vec<u8>>,
    existing: HashSet<Vec<u8>>,
}

impl Proposed {
    fn new(def: &TableDef, snapshot: &Snapshot, batches: &[RecordBatch]) -> Result<Self> {
        let rows = concat(batches)?;
        let keys = encode_batch_keys(def, &rows)?;
        let now = snapshot.now_micros();
        let exists = snapshot.lookup_batch(def, &keys, &ReadAt::latest(now), Some(&def.key))?;
        let existing = encode_batch_keys_subset(def, &exists)?;
        Ok(Proposed {
            rows,
            keys,
            existing,
        })
    }

    /// `DO NOTHING`: write the rows of entities that neither exist nor appeared
    /// earlier in the statement. Returns the rows written.
    fn write_new(&self, def: &TableDef, wb: &mut WriteBatch) -> Result<u64> {
        let mut seen: HashSet<&[u8]> = HashSet::new();
        let keep: BooleanArray = self
            .keys
            .iter()
            .map(|k| Some(!self.existing.contains(k) && seen.insert(k.as_slice())))
            .collect();
        let kept = filter_record_batch(&self.rows, &keep)?;
        wb.put_arrow(def, &kept)?;
        Ok(kept.num_rows() as u64)
    }
}

/// The `DO UPDATE` half of an upsert: the assignments and their context.
struct Upsert<'a> {
    def: &'a TableDef,
    alias: &'a str,
    assignments: &'a [Assignment],
    selection: Option<SqlExpr>,
    params: &'a [ScalarValue],
}
