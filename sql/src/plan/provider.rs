//! DataFusion table providers over Hindsight tables, and their scan operator.
//!
//! One provider type serves every way a table is read:
//! - current state (`FROM t`): each entity's latest version, TTL relative to now;
//! - `FOR SYSTEM_TIME AS OF x`: the current state as the database held it at `x`;
//! - `as_of(t, ts [, known_at => x])`: each entity's newest version with event time
//!   <= `ts` (known at `x`), TTL relative to `ts`;
//! - `history(t)`: every version, with its commit time in `_system_time`.
//!
//! Time arguments are expressions (literals, `now()`, `$n`), evaluated when the scan
//! is planned for execution, so prepared statements bind them like any parameter.
//!
//! Filter pushdown (the rule "only key predicates go below the latest selection"):
//! equality / `IN` / `= ANY(array)` on the entity key become point lookups (Exact);
//! range predicates on a single-column key narrow the scanned key range (Inexact).
//! In history scans, event-time bounds prune files and blocks (Inexact). No other
//! predicate is pushed into a latest-version selection: DataFusion applies it to the
//! selected versions (latest-then-filter).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session as DfSession, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result as DfResult;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{
    BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType,
};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use hindsight_storage::{
    DataType, ReadAt, ScalarType, ScanMode, ScanOptions, Snapshot, SystemAt, TableDef, Value,
    encode_key,
};

use crate::error::SqlError;
use crate::plan::context;
use crate::plan::scanplan::{Narrowing, ScanPlan};
use crate::plan::timeexpr::eval_time;

/// Name of the commit-time column of `history(t)`.
pub const SYSTEM_TIME: &str = hindsight_storage::SYSTEM_TIME_COLUMN;
/// Name of the hidden encoded-key column of internal key scans (DELETE).
pub const KEY_BYTES: &str = "__hindsight_key";

/// How a table is read.
#[derive(Clone, Debug, PartialEq)]
pub enum ReadSpec {
    Current,
    SystemTime(Expr),
    AsOf {
        at: Expr,
        known_at: Option<Expr>,
    },
    /// Every version; `with_seq` adds the commit sequence as `_seq`.
    History {
        known_at: Option<Expr>,
        with_seq: bool,
    },
}

impl ReadSpec {
    fn is_history(&self) -> bool {
        matches!(self, ReadSpec::History { .. })
    }

    /// The columns this read adds after the table's, in schema order.
    fn extras(&self, key_bytes: bool) -> Vec<Extra> {
        let mut extras = Vec::new();
        if let ReadSpec::History { with_seq, .. } = self {
            extras.push(Extra::SystemTime);
            if *with_seq {
                extras.push(Extra::Seq);
            }
        }
        if key_bytes {
            extras.push(Extra::Key);
        }
        extras
    }

    /// How storage reads this spec: scan mode and read point, time arguments
    /// evaluated with the statement's parameters; `now` is the statement's clock.
    pub(crate) fn read_at(
        &self,
        state: &dyn DfSession,
        params: &[ScalarValue],
        now: i64,
    ) -> Result<(ScanMode, ReadAt), SqlError> {
        self.read_at_with(now, &|e: &Expr| eval_time(state, e, params))
    }

    /// [`ReadSpec::read_at`] with a given evaluator of time arguments.
    pub(crate) fn read_at_with(
        &self,
        now: i64,
        time: &dyn Fn(&Expr) -> Result<i64, SqlError>,
    ) -> Result<(ScanMode, ReadAt), SqlError> {
        let known = |e: &Option<Expr>| -> Result<SystemAt, SqlError> {
            Ok(match e {
                Some(e) => SystemAt::Micros(time(e)?),
                None => SystemAt::Current,
            })
        };
        Ok(match self {
            ReadSpec::Current => (ScanMode::Latest, ReadAt::latest(now)),
            // The state as the database held it at x: what a current read at x
            // would have answered, TTL included.
            ReadSpec::SystemTime(e) => {
                let x = time(e)?;
                (
                    ScanMode::Latest,
                    ReadAt::latest(x).known_at(SystemAt::Micros(x)),
                )
            }
            ReadSpec::AsOf { at, known_at } => (
                ScanMode::Latest,
                ReadAt::as_of(time(at)?).known_at(known(known_at)?),
            ),
            ReadSpec::History { known_at, .. } => (
                ScanMode::History {
                    from: i64::MIN,
                    to: i64::MAX,
                },
                ReadAt::latest(now).without_ttl().known_at(known(known_at)?),
            ),
        })
    }

    /// Time expressions this read evaluates (for placeholder type inference).
    pub fn time_exprs(&self) -> Vec<&Expr> {
        match self {
            ReadSpec::Current => vec![],
            ReadSpec::SystemTime(e) => vec![e],
            ReadSpec::AsOf { at, known_at } => std::iter::once(at).chain(known_at).collect(),
            ReadSpec::History { known_at, .. } => known_at.iter().collect(),
        }
    }
}

/// Name of the commit-sequence column of `history(t, with_seq => true)`.
pub const SEQ: &str = hindsight_storage::SEQ_COLUMN;

/// A column a read adds after the table's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Extra {
    /// `_system_time` (history).
    SystemTime,
    /// `_seq` (history with `with_seq => true`).
    Seq,
    /// The encoded key (internal key scans).
    Key,
}

impl Extra {
    fn field(self) -> Field {
        match self {
            Extra::SystemTime => Field::new(
                SYSTEM_TIME,
                ArrowType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                false,
            ),
            Extra::Seq => Field::new(SEQ, ArrowType::Int64, false),
            Extra::Key => Field::new(KEY_BYTES, ArrowType::Binary, false),
        }
    }
}

/// A Hindsight table as DataFusion sees it.
#[derive(Debug)]
pub struct HsTable {
    pub def: Arc<TableDef>,
    pub read: ReadSpec,
    /// Expose the encoded entity key as a last column (internal DELETE plans).
    pub key_bytes: bool,
    schema: SchemaRef,
}

impl HsTable {
    pub fn new(def: Arc<TableDef>, read: ReadSpec, key_bytes: bool) -> Self {
        // Every column is nullable as far as DataFusion knows: the engine enforces NOT
        // NULL on write (with PostgreSQL's error naming the column), and a non-nullable
        // schema would make DataFusion fail INSERT ... VALUES (NULL) with an Arrow error
        // first. Client catalogs report nullability from the storage catalog.
        let mut fields: Vec<Field> = def
            .arrow_schema(None)
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        fields.extend(read.extras(key_bytes).into_iter().map(Extra::field));
        HsTable {
            schema: Arc::new(Schema::new(fields)),
            def,
            read,
            key_bytes,
        }
    }
}

/// A filter this provider understands.
enum Pushed<'a> {
    /// Key column `pos` is one of these values (literals or placeholders).
    KeyIn(usize, Vec<&'a Expr>),
    /// Single-column key compared with a value.
    KeyRange(Operator, &'a Expr),
    /// Event time compared with a value (history only).
    EventTime(Operator, &'a Expr),
}

fn is_value(e: &Expr) -> bool {
    matches!(e, Expr::Literal(..) | Expr::Placeholder(_))
}

fn column_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::Column(c) => Some(c.name.as_str()),
        _ => None,
    }
}

fn flip(op: Operator) -> Operator {
    match op {
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        other => other,
    }
}

impl HsTable {
    fn key_pos(&self, name: &str) -> Option<usize> {
        let idx = self.def.column_index(name)?;
        self.def.key.iter().position(|&k| k == idx)
    }

    fn is_event_time(&self, name: &str) -> bool {
        self.def.event_time.is_some() && self.def.event_time == self.def.column_index(name)
    }

    /// Recognize one filter.
    fn understand<'a>(&self, e: &'a Expr) -> Option<Pushed<'a>> {
        match e {
            // DataFusion turns short IN lists into ORs of equalities.
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Or,
                right,
            }) => match (self.understand(left)?, self.understand(right)?) {
                (Pushed::KeyIn(a, mut va), Pushed::KeyIn(b, vb)) if a == b => {
                    va.extend(vb);
                    Some(Pushed::KeyIn(a, va))
                }
                _ => None,
            },
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (col, op, val) = match (column_name(left), column_name(right)) {
                    (Some(c), None) if is_value(right) => (c, *op, right.as_ref()),
                    (None, Some(c)) if is_value(left) => (c, flip(*op), left.as_ref()),
                    _ => return None,
                };
                let cmp = matches!(
                    op,
                    Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq
                );
                if let Some(pos) = self.key_pos(col) {
                    if op == Operator::Eq {
                        return Some(Pushed::KeyIn(pos, vec![val]));
                    }
                    if cmp && self.def.key.len() == 1 {
                        return Some(Pushed::KeyRange(op, val));
                    }
                } else if self.read.is_history()
                    && self.is_event_time(col)
                    && (cmp || op == Operator::Eq)
                {
                    return Some(Pushed::EventTime(op, val));
                }
                None
            }
            Expr::InList(l) if !l.negated && l.list.iter().all(is_value) => {
                let pos = self.key_pos(column_name(&l.expr)?)?;
                Some(Pushed::KeyIn(pos, l.list.iter().collect()))
            }
            Expr::ScalarFunction(f) if f.name() == "array_has" => match f.args.as_slice() {
                [arr, needle] if is_value(arr) => {
                    let pos = self.key_pos(column_name(needle)?)?;
                    Some(Pushed::KeyIn(pos, vec![arr]))
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// Which key positions have an equality set among `filters`.
    fn key_sets(&self, filters: &[&Expr]) -> Vec<bool> {
        let mut have = vec![false; self.def.key.len()];
        for f in filters {
            if let Some(Pushed::KeyIn(p, _)) = self.understand(f)
                && let Some(h) = have.get_mut(p)
            {
                *h = true;
            }
        }
        have
    }

    /// True if equality sets cover a leading prefix of the key usable for lookups.
    fn key_prefix_len(have: &[bool]) -> usize {
        have.iter().take_while(|&&h| h).count()
    }
}

#[async_trait]
impl TableProvider for HsTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        let prefix = Self::key_prefix_len(&self.key_sets(filters));
        Ok(filters
            .iter()
            .map(|f| match self.understand(f) {
                Some(Pushed::KeyIn(p, _)) if p < prefix => TableProviderFilterPushDown::Exact,
                Some(Pushed::KeyRange(..)) | Some(Pushed::EventTime(..)) => {
                    TableProviderFilterPushDown::Inexact
                }
                _ => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let ctx = context::of(state).map_err(SqlError::into_datafusion)?;
        let snapshot = ctx.snapshot().map_err(SqlError::into_datafusion)?;
        let params = ctx.params();
        let (mode, at) = self
            .read
            .read_at(state, &params, snapshot.now_micros())
            .map_err(SqlError::into_datafusion)?;
        let plan = self
            .plan_filters(filters, mode, &params)
            .map_err(SqlError::into_datafusion)?;
        let ncols = self.def.columns.len();
        let all: Vec<usize> = (0..self.schema.fields().len()).collect();
        let projection = projection.cloned().unwrap_or(all);
        let exec = HsScanExec {
            schema: Arc::new(self.schema.project(&projection)?),
            columns: projection.iter().copied().filter(|&i| i < ncols).collect(),
            output: projection,
            ncols,
            extras: self.read.extras(self.key_bytes),
            snapshot,
            def: self.def.clone(),
            at,
            plan,
            limit,
            props: Arc::new(PlanProperties::new(
                EquivalenceProperties::new(Arc::new(Schema::empty())),
                Partitioning::UnknownPartitioning(1),
                EmissionType::Incremental,
                Boundedness::Bounded,
            )),
        };
        Ok(Arc::new(exec.with_properties()))
    }
}

fn value_of(e: &Expr, params: &[ScalarValue]) -> Option<ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v.clone()),
        Expr::Placeholder(p) => {
            let i: usize = p.id.trim_start_matches('$').parse().ok()?;
            params.get(i.checked_sub(1)?).cloned()
        }
        _ => None,
    }
}

/// Values of an equality set: a scalar, or each element of an array literal.
fn set_values(e: &Expr, params: &[ScalarValue]) -> Vec<ScalarValue> {
    match value_of(e, params) {
        Some(ScalarValue::List(arr)) => {
            let values = arr.value(0);
            (0..values.len())
                .filter_map(|i| ScalarValue::try_from_array(&values, i).ok())
                .collect()
        }
        Some(ScalarValue::LargeList(arr)) => {
            let values = arr.value(0);
            (0..values.len())
                .filter_map(|i| ScalarValue::try_from_array(&values, i).ok())
                .collect()
        }
        Some(v) => vec![v],
        None => vec![],
    }
}

/// A SQL value as a storage key value of type `t`; `None` if it cannot equal any key.
pub(crate) fn key_value(v: &ScalarValue, t: ScalarType) -> Option<Value> {
    if v.is_null() {
        return None;
    }
    let target = DataType::Scalar(t).arrow_type();
    let v = if v.data_type() == target {
        v.clone()
    } else {
        v.cast_to(&target).ok()?
    };
    scalar_to_value(&v)
}

/// A non-list ScalarValue as a storage value.
pub(crate) fn scalar_to_value(v: &ScalarValue) -> Option<Value> {
    Some(match v {
        ScalarValue::Boolean(Some(b)) => Value::Bool(*b),
        ScalarValue::Int16(Some(x)) => Value::Int16(*x),
        ScalarValue::Int32(Some(x)) => Value::Int32(*x),
        ScalarValue::Int64(Some(x)) => Value::Int64(*x),
        ScalarValue::Float32(Some(x)) => Value::Float32(*x),
        ScalarValue::Float64(Some(x)) => Value::Float64(*x),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Value::Text(s.clone()),
        ScalarValue::Binary(Some(b))
        | ScalarValue::LargeBinary(Some(b))
        | ScalarValue::BinaryView(Some(b)) => Value::Bytes(b.clone()),
        ScalarValue::Date32(Some(d)) => Value::Date(*d),
        ScalarValue::TimestampMicrosecond(Some(t), _) => Value::Timestamp(*t),
        _ => return None,
    })
}

impl HsTable {
    /// The scan plan of the pushed-down `filters`: exact keys, key-prefix ranges or
    /// one key range, and (for history scans) the event-time window.
    fn plan_filters(
        &self,
        filters: &[Expr],
        mode: ScanMode,
        params: &[ScalarValue],
    ) -> crate::error::Result<ScanPlan> {
        let refs: Vec<&Expr> = filters.iter().collect();
        let prefix = Self::key_prefix_len(&self.key_sets(&refs));
        let key_types = self.def.key_types();
        let mut n = Narrowing::new(prefix);
        for f in filters {
            match self.understand(f) {
                Some(Pushed::KeyIn(p, exprs)) if p < prefix => {
                    let Some(&t) = key_types.get(p) else { continue };
                    let vals = exprs
                        .iter()
                        .flat_map(|e| set_values(e, params))
                        .filter_map(|v| key_value(&v, t))
                        .collect();
                    n.key_in(p, vals);
                }
                Some(Pushed::KeyRange(op, e)) => {
                    let (Some(v), Some(&t)) = (value_of(e, params), key_types.first()) else {
                        continue;
                    };
                    let Some(kv) = key_value(&v, t) else { continue };
                    n.key_bound(op, encode_key(&[kv], &key_types, &[])?);
                }
                Some(Pushed::EventTime(op, e)) => {
                    if let Some(t) = value_of(e, params).as_ref().and_then(ts_micros) {
                        n.event_time(op, t);
                    }
                }
                _ => {}
            }
        }
        n.plan(mode, &key_types)
    }
}

/// A timestamp-like scalar in microseconds.
pub(crate) fn ts_micros(v: &ScalarValue) -> Option<i64> {
    let target = ArrowType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()));
    match v.cast_to(&target).ok()? {
        ScalarValue::TimestampMicrosecond(Some(t), _) => Some(t),
        _ => None,
    }
}

/// Reads a Hindsight table: point lookups for key sets, streamed scans otherwise.
#[derive(Debug)]
pub struct HsScanExec {
    schema: SchemaRef,
    /// Table columns to read from storage, in output order.
    columns: Vec<usize>,
    /// The provider-schema index of each output column.
    output: Vec<usize>,
    ncols: usize,
    /// The provider's columns after the table's (provider index `ncols + i`).
    extras: Vec<Extra>,
    snapshot: Snapshot,
    def: Arc<TableDef>,
    at: ReadAt,
    plan: ScanPlan,
    limit: Option<usize>,
    props: Arc<PlanProperties>,
}

impl HsScanExec {
    fn with_properties(mut self) -> Self {
        self.props = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(self.schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        self
    }

    /// Produce every output batch, calling `emit` for each; stops when it returns false.
    fn produce(&self, emit: &mut dyn FnMut(RecordBatch) -> bool) -> crate::error::Result<()> {
        let storage_schema_cols: Vec<usize> = self.columns.clone();
        // The extra columns asked for, in the order storage appends them.
        let wanted: Vec<Extra> = (self.extras.iter().enumerate())
            .filter(|(i, _)| self.output.contains(&(self.ncols + i)))
            .map(|(_, e)| *e)
            .collect();
        // Latest reads of an exact key set are point lookups.
        if let (ScanMode::Latest, Some(keys)) = (self.plan.mode, &self.plan.keys)
            && wanted.is_empty()
        {
            let batch = self.snapshot.lookup_batch(
                &self.def,
                keys,
                &self.at,
                Some(&storage_schema_cols),
            )?;
            emit(self.arrange(batch, &storage_schema_cols, &[])?);
            return Ok(());
        }
        let mut remaining = self.limit.unwrap_or(usize::MAX);
        for range in &self.plan.ranges {
            let mut opts = ScanOptions::latest(self.at);
            opts.mode = self.plan.mode;
            opts.key_range = range.clone();
            opts.projection = Some(storage_schema_cols.clone());
            opts.with_system_time = wanted.contains(&Extra::SystemTime);
            opts.with_seq = wanted.contains(&Extra::Seq);
            opts.with_key_bytes = wanted.contains(&Extra::Key);
            opts.batch_rows = 8192;
            for b in self.snapshot.scan(&self.def, &opts)? {
                let b = b?;
                let n = b.num_rows();
                if !emit(self.arrange(b, &storage_schema_cols, &wanted)?) {
                    return Ok(());
                }
                remaining = remaining.saturating_sub(n);
                if remaining == 0 {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Reorder a storage batch (table columns, then the `wanted` extras in storage
    /// order) into the output order DataFusion asked for.
    fn arrange(
        &self,
        b: RecordBatch,
        cols: &[usize],
        wanted: &[Extra],
    ) -> crate::error::Result<RecordBatch> {
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.output.len());
        for &o in &self.output {
            let extra = o.checked_sub(self.ncols).and_then(|i| self.extras.get(i));
            let idx = match extra {
                None => cols.iter().position(|&c| c == o),
                Some(e) => wanted.iter().position(|w| w == e).map(|k| cols.len() + k),
            };
            let a = idx
                .and_then(|i| b.columns().get(i).cloned())
                .ok_or_else(|| SqlError::internal(format!("scan lost output column {o}")))?;
            arrays.push(match extra {
                // Postgres has no unsigned 64-bit type; seqs stay far below i64::MAX.
                Some(Extra::Seq) => cast(&a, &ArrowType::Int64)?,
                _ => a,
            });
        }
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(b.num_rows())),
        )?)
    }
}

impl DisplayAs for HsScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let mode = match self.plan.mode {
            ScanMode::Latest if self.at.event_time.is_some() => "as_of",
            ScanMode::Latest => "latest",
            ScanMode::History { .. } => "history",
        };
        write!(f, "HindsightScan: table={} mode={mode}", self.def.name)?;
        if let Some(keys) = &self.plan.keys {
            write!(f, " point_lookups={}", keys.len())?;
        } else if self
            .plan
            .ranges
            .iter()
            .any(|r| r.start.is_some() || r.end.is_some())
        {
            write!(f, " key_ranges={}", self.plan.ranges.len())?;
        }
        if let ScanMode::History { from, to } = self.plan.mode
            && (from != i64::MIN || to != i64::MAX)
        {
            write!(f, " event_time=[{from}, {to}]")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for HsScanExec {
    fn name(&self) -> &str {
        "HindsightScan"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        _ctx: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let mut builder = RecordBatchReceiverStreamBuilder::new(self.schema.clone(), 2);
        let tx = builder.tx();
        let me = HsScanExec {
            schema: self.schema.clone(),
            columns: self.columns.clone(),
            output: self.output.clone(),
            ncols: self.ncols,
            extras: self.extras.clone(),
            snapshot: self.snapshot.clone(),
            def: self.def.clone(),
            at: self.at,
            plan: self.plan.clone(),
            limit: self.limit,
            props: self.props.clone(),
        };
        builder.spawn_blocking(move || {
            let res = me.produce(&mut |b| tx.blocking_send(Ok(b)).is_ok());
            if let Err(e) = res {
                let _ = tx.blocking_send(Err(e.into_datafusion()));
            }
            Ok(())
        });
        Ok(builder.build())
    }
}
