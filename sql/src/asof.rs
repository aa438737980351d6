//! Point-in-time-correct ASOF JOIN: planning, the logical node, the physical operator.
//!
//! `FROM s ASOF JOIN f MATCH_CONDITION (s.ts >= f.event_ts) ON s.k = f.k` keeps every
//! row of the spine `s` and attaches the columns of the version of `f` that matches
//! it, from `f`'s history (NULLs when none does):
//! - `>=` / `>`: the newest version with event time <= / < the spine time;
//!   `<=` / `<`: the oldest version with event time >= / > the spine time;
//! - ties on event time go to the newest write; a matching tombstone means no match;
//! - NULL keys or times never match;
//! - `f`'s TTL applies to backward matches (a version older than spine time minus TTL
//!   is not a candidate, the same rule online serving uses), and `ON` may add one
//!   explicit bound such as `s.ts - f.event_ts <= INTERVAL '1 day'`;
//! - `f FOR SYSTEM_TIME AS OF x` restricts `f` to what the database knew at `x`.
//!
//! The operator reads the spine, then picks a strategy: per-row point lookups when the
//! spine is small relative to `f`'s history, otherwise a streaming merge of the spine
//! sorted by (key, time) with `f`'s history, which storage returns already sorted by
//! (key, event time descending). Memory is bounded by the spine (its rows and sort
//! index) plus one entity's versions, never by the size of `f`.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, RecordBatch, RecordBatchOptions,
    UInt32Array, new_null_array,
};
use datafusion::arrow::buffer::ScalarBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType as ArrowType, Field, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use datafusion::catalog::Session as DfSession;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Column, DFSchema, DFSchemaRef, ScalarValue, TableReference};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::planner::RelationPlannerContext;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    BinaryExpr, Expr, Extension, LogicalPlan, Operator, UserDefinedLogicalNode,
    UserDefinedLogicalNodeCore,
};
use datafusion::physical_expr::expressions::Column as PhysicalColumn;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use datafusion::physical_planner::{ExtensionPlanner, PhysicalPlanner};
use futures::StreamExt;
use hindsight_storage::{
    Db, KeyRange, ReadAt, ScanOptions, Snapshot, SystemAt, TableDef, encode_key_arrays, key_eq,
};
use sqlparser::ast::{JoinConstraint, JoinOperator, TableFactor, TableVersion, TableWithJoins};

use crate::context;
use crate::error::{ErrorKind, SqlError};
use crate::timeexpr::{eval_scalar, eval_time, scalar_interval_micros};

/// Alias of the nested join `rewrite` produces for each ASOF JOIN.
pub const MARKER: &str = "__hindsight_asof";

/// How the spine time relates to the matched event time (`spine OP event`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd)]
pub enum MatchOp {
    Ge,
    Gt,
    Le,
    Lt,
}

impl MatchOp {
    fn backward(self) -> bool {
        matches!(self, MatchOp::Ge | MatchOp::Gt)
    }

    fn symbol(self) -> &'static str {
        match self {
            MatchOp::Ge => ">=",
            MatchOp::Gt => ">",
            MatchOp::Le => "<=",
            MatchOp::Lt => "<",
        }
    }
}

const MATCH_HINT: &str = "write MATCH_CONDITION (s.ts >= f.event_ts) with f's event-time column on one side \
                          (>=, >, <=, < are supported)";
const ON_HINT: &str = "ON may hold only equalities between spine expressions and every key column of the \
                       right table, plus at most one bound such as s.ts - f.event_ts <= INTERVAL '1 day'";

fn contract_error(message: impl Into<String>, hint: &str) -> DataFusionError {
    SqlError::new(ErrorKind::FeatureNotSupported, message)
        .with_hint(hint)
        .into_datafusion()
}

/// Plan the marker nested join `(left ASOF JOIN right ...)` built by `rewrite`.
pub(crate) fn plan(
    db: &Db,
    twj: TableWithJoins,
    ctx: &mut dyn RelationPlannerContext,
) -> DfResult<LogicalPlan> {
    let left = ctx.plan(twj.relation)?;
    let Some(join) = twj.joins.into_iter().next() else {
        return Err(SqlError::internal("as-of marker without a join").into_datafusion());
    };
    let JoinOperator::AsOf {
        match_condition,
        constraint,
    } = join.join_operator
    else {
        return Err(SqlError::internal("as-of marker around another join").into_datafusion());
    };
    let right_hint = "the right side of ASOF JOIN must be a Hindsight table: \
                      ASOF JOIN f [AS alias] [FOR SYSTEM_TIME AS OF <timestamp>]";
    let (def, qualifier, known_at) = match join.relation {
        TableFactor::Table {
            name,
            alias,
            args: None,
            version,
            ..
        } => {
            let table = name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(|i| ctx.normalize_ident(i.clone()))
                .unwrap_or_default();
            let def = db.catalog().table(&table).cloned().ok_or_else(|| {
                SqlError::new(
                    ErrorKind::UndefinedTable,
                    format!("relation \"{table}\" does not exist"),
                )
                .into_datafusion()
            })?;
            if alias.as_ref().is_some_and(|a| !a.columns.is_empty()) {
                return Err(contract_error(
                    "column aliases on the right side of ASOF JOIN are not supported",
                    right_hint,
                ));
            }
            let qualifier = alias.map(|a| ctx.normalize_ident(a.name)).unwrap_or(table);
            let known_at = match version {
                None => None,
                Some(TableVersion::ForSystemTimeAsOf(e)) => {
                    Some(ctx.sql_to_expr(e, &DFSchema::empty())?)
                }
                Some(other) => {
                    return Err(contract_error(
                        format!("table version clause \"{other}\" is not supported"),
                        right_hint,
                    ));
                }
            };
            (def, qualifier, known_at)
        }
        _ => {
            return Err(contract_error(
                "the right side of ASOF JOIN must be a table",
                right_hint,
            ));
        }
    };
    let Some(et_idx) = def.event_time else {
        return Err(contract_error(
            format!(
                "table \"{}\" has no event-time column to match on",
                def.name
            ),
            "create the feature table WITH (event_time = '<column>')",
        ));
    };
    if def.key.is_empty() {
        return Err(contract_error(
            format!("table \"{}\" has no PRIMARY KEY to join on", def.name),
            "as-of joins match entities by the right table's key",
        ));
    }
    let right_schema = DFSchema::try_from_qualified_schema(
        TableReference::bare(qualifier.clone()),
        &nullable(&def.arrow_schema(None)),
    )?;
    let joined = left.schema().join(&right_schema)?;
    let et_name = def
        .columns
        .get(et_idx)
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let is_right_et =
        |e: &Expr| matches!(e, Expr::Column(c) if c.name == et_name && right_schema.has_column(c));
    let left_only = |e: &Expr| -> bool {
        let cols = e.column_refs();
        cols.iter().all(|c| left.schema().has_column(c)) && !cols.is_empty()
    };
    // MATCH_CONDITION
    let mc = ctx.sql_to_expr(match_condition, &joined)?;
    let (left_time, op) = match &mc {
        Expr::BinaryExpr(BinaryExpr {
            left: l,
            op,
            right: r,
        }) => {
            let op = match op {
                Operator::GtEq => MatchOp::Ge,
                Operator::Gt => MatchOp::Gt,
                Operator::LtEq => MatchOp::Le,
                Operator::Lt => MatchOp::Lt,
                other => {
                    return Err(contract_error(
                        format!("MATCH_CONDITION operator {other} is not supported"),
                        MATCH_HINT,
                    ));
                }
            };
            if is_right_et(r) && left_only(l) {
                ((**l).clone(), op)
            } else if is_right_et(l) && left_only(r) {
                let flipped = match op {
                    MatchOp::Ge => MatchOp::Le,
                    MatchOp::Gt => MatchOp::Lt,
                    MatchOp::Le => MatchOp::Ge,
                    MatchOp::Lt => MatchOp::Gt,
                };
                ((**r).clone(), flipped)
            } else {
                return Err(contract_error(
                    format!("unsupported MATCH_CONDITION ({mc})"),
                    MATCH_HINT,
                ));
            }
        }
        _ => {
            return Err(contract_error(
                format!("unsupported MATCH_CONDITION ({mc})"),
                MATCH_HINT,
            ));
        }
    };
    // ON / USING
    let key_names: Vec<String> = def
        .key
        .iter()
        .filter_map(|&i| def.columns.get(i).map(|c| c.name.clone()))
        .collect();
    let mut left_keys: Vec<Option<Expr>> = vec![None; key_names.len()];
    let mut ttl: Option<Expr> = None;
    let right_key_pos = |e: &Expr| -> Option<usize> {
        match e {
            Expr::Column(c) if right_schema.has_column(c) => {
                key_names.iter().position(|k| *k == c.name)
            }
            _ => None,
        }
    };
    match constraint {
        JoinConstraint::On(on) => {
            let on = ctx.sql_to_expr(on, &joined)?;
            for conj in split_conjunction(&on) {
                if let Expr::BinaryExpr(BinaryExpr {
                    left: l,
                    op: Operator::Eq,
                    right: r,
                }) = conj
                {
                    let (pos, other) = match (right_key_pos(l), right_key_pos(r)) {
                        (Some(p), None) if left_only(r) => (p, r),
                        (None, Some(p)) if left_only(l) => (p, l),
                        _ => {
                            return Err(contract_error(
                                format!("unsupported ON condition ({conj})"),
                                ON_HINT,
                            ));
                        }
                    };
                    if let Some(slot) = left_keys.get_mut(pos) {
                        if slot.is_some() {
                            return Err(contract_error(
                                format!("key column \"{}\" is matched twice", key_names[pos]),
                                ON_HINT,
                            ));
                        }
                        *slot = Some((**other).clone());
                    }
                    continue;
                }
                match ttl_bound(conj, &left_time, op, &is_right_et) {
                    Some(d) if ttl.is_none() => ttl = Some(d),
                    Some(_) => {
                        return Err(contract_error("ON holds more than one time bound", ON_HINT));
                    }
                    None => {
                        return Err(contract_error(
                            format!("unsupported ON condition ({conj})"),
                            ON_HINT,
                        ));
                    }
                }
            }
        }
        JoinConstraint::Using(names) => {
            for n in names {
                let name =
                    n.0.last()
                        .and_then(|p| p.as_ident())
                        .map(|i| ctx.normalize_ident(i.clone()))
                        .unwrap_or_default();
                let pos = key_names.iter().position(|k| *k == name).ok_or_else(|| {
                    contract_error(
                        format!(
                            "USING column \"{name}\" is not a key column of \"{}\"",
                            def.name
                        ),
                        ON_HINT,
                    )
                })?;
                let (q, f) = left.schema().qualified_field_with_unqualified_name(&name)?;
                if let Some(slot) = left_keys.get_mut(pos) {
                    *slot = Some(Expr::Column(Column::new(q.cloned(), f.name())));
                }
            }
        }
        _ => {
            return Err(contract_error(
                "ASOF JOIN needs ON or USING naming the key",
                ON_HINT,
            ));
        }
    }
    let missing: Vec<&str> = left_keys
        .iter()
        .zip(&key_names)
        .filter(|(k, _)| k.is_none())
        .map(|(_, n)| n.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(contract_error(
            format!(
                "ON must match every key column of \"{}\"; missing: {}",
                def.name,
                missing.join(", ")
            ),
            ON_HINT,
        ));
    }
    let node = AsofJoinNode {
        schema: Arc::new(left.schema().join(&right_schema)?),
        left,
        right_schema: Arc::new(right_schema),
        table: def.name.clone(),
        left_keys: left_keys.into_iter().flatten().collect(),
        left_time,
        op,
        ttl,
        known_at,
    };
    Ok(LogicalPlan::Extension(Extension {
        node: Arc::new(node),
    }))
}

/// Recognize an explicit staleness bound: `t - f.et <= d` (backward) or
/// `f.et - t <= d` (forward), `<` allowed, or `f.et >= t - d` / `f.et <= t + d`.
fn ttl_bound(e: &Expr, time: &Expr, op: MatchOp, is_et: &dyn Fn(&Expr) -> bool) -> Option<Expr> {
    let Expr::BinaryExpr(BinaryExpr {
        left,
        op: cmp,
        right,
    }) = e
    else {
        return None;
    };
    let strict = matches!(cmp, Operator::Lt | Operator::Gt);
    let tighten = |d: &Expr| -> Expr {
        if strict {
            Expr::BinaryExpr(BinaryExpr::new(
                Box::new(d.clone()),
                Operator::Minus,
                Box::new(Expr::Literal(
                    ScalarValue::DurationMicrosecond(Some(1)),
                    None,
                )),
            ))
        } else {
            d.clone()
        }
    };
    let constant = |d: &Expr| d.column_refs().is_empty();
    match (left.as_ref(), cmp, right.as_ref()) {
        // t - f.et <= d   |   f.et - t <= d
        (
            Expr::BinaryExpr(BinaryExpr {
                left: a,
                op: Operator::Minus,
                right: b,
            }),
            Operator::LtEq | Operator::Lt,
            d,
        ) if constant(d) => {
            let backward_shape = a.as_ref() == time && is_et(b);
            let forward_shape = is_et(a) && b.as_ref() == time;
            ((op.backward() && backward_shape) || (!op.backward() && forward_shape))
                .then(|| tighten(d))
        }
        // f.et >= t - d   |   f.et <= t + d
        (
            et,
            Operator::GtEq | Operator::Gt,
            Expr::BinaryExpr(BinaryExpr {
                left: a,
                op: Operator::Minus,
                right: d,
            }),
        ) if is_et(et) && a.as_ref() == time && constant(d) && op.backward() => Some(tighten(d)),
        (
            et,
            Operator::LtEq | Operator::Lt,
            Expr::BinaryExpr(BinaryExpr {
                left: a,
                op: Operator::Plus,
                right: d,
            }),
        ) if is_et(et) && a.as_ref() == time && constant(d) && !op.backward() => Some(tighten(d)),
        _ => None,
    }
}

fn nullable(s: &Schema) -> Schema {
    Schema::new(
        s.fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<Field>>(),
    )
}

/// The logical as-of join.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AsofJoinNode {
    pub left: LogicalPlan,
    pub right_schema: DFSchemaRef,
    pub table: String,
    pub left_keys: Vec<Expr>,
    pub left_time: Expr,
    pub op: MatchOp,
    pub ttl: Option<Expr>,
    pub known_at: Option<Expr>,
    pub schema: DFSchemaRef,
}

impl PartialOrd for AsofJoinNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match self.table.partial_cmp(&other.table) {
            Some(Ordering::Equal) => match self.op.partial_cmp(&other.op) {
                Some(Ordering::Equal) if self != other => None,
                o => o,
            },
            o => o,
        }
    }
}

impl UserDefinedLogicalNodeCore for AsofJoinNode {
    fn name(&self) -> &str {
        "AsofJoin"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.left]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        let mut v = self.left_keys.clone();
        v.push(self.left_time.clone());
        v.extend(self.ttl.clone());
        v.extend(self.known_at.clone());
        v
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "AsofJoin: {} ON ({}) MATCH_CONDITION ({} {} event time)",
            self.table,
            self.left_keys
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            self.left_time,
            self.op.symbol()
        )?;
        if let Some(t) = &self.ttl {
            write!(f, " bound={t}")?;
        }
        if let Some(k) = &self.known_at {
            write!(f, " known_at={k}")?;
        }
        Ok(())
    }

    fn with_exprs_and_inputs(
        &self,
        mut exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> DfResult<Self> {
        let left = inputs
            .pop()
            .ok_or_else(|| SqlError::internal("AsofJoin needs one input").into_datafusion())?;
        let known_at = if self.known_at.is_some() {
            exprs.pop()
        } else {
            None
        };
        let ttl = if self.ttl.is_some() {
            exprs.pop()
        } else {
            None
        };
        let left_time = exprs
            .pop()
            .ok_or_else(|| SqlError::internal("AsofJoin lost its time").into_datafusion())?;
        Ok(AsofJoinNode {
            schema: Arc::new(left.schema().join(&self.right_schema)?),
            left,
            right_schema: self.right_schema.clone(),
            table: self.table.clone(),
            left_keys: exprs,
            left_time,
            op: self.op,
            ttl,
            known_at,
        })
    }
}

/// Turns [`AsofJoinNode`]s into [`AsofJoinExec`]s.
#[derive(Debug)]
pub struct AsofPlanner {
    pub db: Db,
    /// Smallest share of the spine worth its own thread.
    pub rows_per_thread: usize,
}

#[async_trait]
impl ExtensionPlanner for AsofPlanner {
    async fn plan_extension(
        &self,
        planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn DfSession,
        planning_ctx: &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        let Some(n) = node.as_any().downcast_ref::<AsofJoinNode>() else {
            return Ok(None);
        };
        let (Some(left_logical), Some(left)) = (logical_inputs.first(), physical_inputs.first())
        else {
            return Err(SqlError::internal("AsofJoin without input").into_datafusion());
        };
        let left_schema = left_logical.schema();
        let keys = n
            .left_keys
            .iter()
            .map(|e| planner.create_physical_expr(e, left_schema, session, planning_ctx))
            .collect::<DfResult<Vec<_>>>()?;
        let time =
            planner.create_physical_expr(&n.left_time, left_schema, session, planning_ctx)?;
        let ctx = context::of(session).map_err(SqlError::into_datafusion)?;
        let snapshot = ctx.snapshot().map_err(SqlError::into_datafusion)?;
        let params = ctx.params();
        let def = self.db.catalog().table(&n.table).cloned().ok_or_else(|| {
            SqlError::new(
                ErrorKind::UndefinedTable,
                format!("relation \"{}\" does not exist", n.table),
            )
            .into_datafusion()
        })?;
        let system = match &n.known_at {
            Some(e) => {
                SystemAt::Micros(eval_time(session, e, &params).map_err(SqlError::into_datafusion)?)
            }
            None => SystemAt::Current,
        };
        let bound = match &n.ttl {
            Some(e) => {
                let v = eval_scalar(session, e, &params).map_err(SqlError::into_datafusion)?;
                Some(scalar_interval_micros(&v).ok_or_else(|| {
                    contract_error(
                        format!(
                            "the ON time bound must be an interval, got {}",
                            v.data_type()
                        ),
                        ON_HINT,
                    )
                })?)
            }
            None => None,
        };
        let schema: SchemaRef = Arc::new(n.schema.as_arrow().clone());
        let spine_cols = left_schema.fields().len();
        let output = (0..spine_cols)
            .map(OutCol::Spine)
            .chain((0..def.columns.len()).map(OutCol::Table))
            .collect();
        Ok(Some(Arc::new(AsofJoinExec {
            props: properties(&schema),
            schema,
            output,
            left: left.clone(),
            spec: Arc::new(JoinSpec {
                keys,
                time,
                op: n.op,
                bound,
                def,
                snapshot,
                system,
                rows_per_thread: self.rows_per_thread.max(1),
            }),
        })))
    }
}

fn properties(schema: &SchemaRef) -> Arc<PlanProperties> {
    Arc::new(PlanProperties::new(
        EquivalenceProperties::new(schema.clone()),
        Partitioning::UnknownPartitioning(1),
        EmissionType::Final,
        Boundedness::Bounded,
    ))
}

/// Where one output column of the join comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutCol {
    /// A column of the spine (the left input), by index.
    Spine(usize),
    /// A column of the table, by index in its definition (NULL where nothing matched).
    Table(usize),
}

/// The physical as-of join (see the module documentation).
#[derive(Debug)]
pub struct AsofJoinExec {
    schema: SchemaRef,
    /// The source of each column of `schema`: all spine columns then all table
    /// columns as planned, fewer once a projection above is absorbed.
    output: Vec<OutCol>,
    props: Arc<PlanProperties>,
    left: Arc<dyn ExecutionPlan>,
    spec: Arc<JoinSpec>,
}

/// What a join matches and reads, shared by the plan node (and its rebuilt copies)
/// and the job that executes it.
#[derive(Debug)]
struct JoinSpec {
    /// The spine's key expressions, in the table's key order.
    keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The spine's time expression.
    time: Arc<dyn PhysicalExpr>,
    op: MatchOp,
    /// Staleness bound in microseconds (`s.ts - f.ts <= bound`), if any.
    bound: Option<i64>,
    def: Arc<TableDef>,
    snapshot: Snapshot,
    system: SystemAt,
    /// Smallest share of the spine worth its own thread (at least 1).
    rows_per_thread: usize,
}

impl AsofJoinExec {
    /// This join over input `left`, producing `output` as `schema`.
    fn rebuilt(
        &self,
        left: Arc<dyn ExecutionPlan>,
        output: Vec<OutCol>,
        schema: SchemaRef,
    ) -> AsofJoinExec {
        AsofJoinExec {
            props: properties(&schema),
            schema,
            output,
            left,
            spec: self.spec.clone(),
        }
    }
}

impl DisplayAs for AsofJoinExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "AsofJoinExec: table={} match=spine {} event_time",
            self.spec.def.name,
            self.spec.op.symbol()
        )?;
        if let Some(b) = self.spec.bound {
            write!(f, " bound={b}us")?;
        }
        let read: Vec<&str> = self
            .output
            .iter()
            .filter_map(|o| match *o {
                OutCol::Table(c) => self.spec.def.columns.get(c).map(|c| c.name.as_str()),
                OutCol::Spine(_) => None,
            })
            .collect();
        write!(f, " columns=[{}]", read.join(", "))
    }
}

impl ExecutionPlan for AsofJoinExec {
    fn name(&self) -> &str {
        "AsofJoinExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::SinglePartition]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.left]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        for e in self
            .spec
            .keys
            .iter()
            .chain(std::iter::once(&self.spec.time))
        {
            if f(e)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let left = children
            .pop()
            .ok_or_else(|| SqlError::internal("AsofJoinExec needs one child").into_datafusion())?;
        Ok(Arc::new(self.rebuilt(
            left,
            self.output.clone(),
            self.schema.clone(),
        )))
    }

    /// A projection of plain columns above the join is absorbed: the join then reads
    /// and gathers only the table columns the query uses (`count(*)` over a join of
    /// a wide table touches none of its features).
    fn try_swapping_with_projection(
        &self,
        projection: &ProjectionExec,
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        let mut output = Vec::with_capacity(projection.expr().len());
        for p in projection.expr() {
            let Some(column) = p.expr.downcast_ref::<PhysicalColumn>() else {
                return Ok(None);
            };
            let Some(&o) = self.output.get(column.index()) else {
                return Ok(None);
            };
            output.push(o);
        }
        Ok(Some(Arc::new(self.rebuilt(
            self.left.clone(),
            output,
            projection.schema(),
        ))))
    }

    fn execute(
        &self,
        partition: usize,
        ctx: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let threads = ctx.session_config().target_partitions().max(1);
        let mut input = self.left.execute(partition, ctx)?;
        let mut builder = RecordBatchReceiverStreamBuilder::new(self.schema.clone(), 2);
        let tx = builder.tx();
        let et_col = self.spec.def.event_time.unwrap_or(0);
        let mut fetched: Vec<usize> = vec![et_col];
        let output = self
            .output
            .iter()
            .map(|o| match *o {
                OutCol::Spine(c) => Source::Spine(c),
                OutCol::Table(c) => Source::Fetched(match fetched.iter().position(|&f| f == c) {
                    Some(p) => p,
                    None => {
                        fetched.push(c);
                        fetched.len() - 1
                    }
                }),
            })
            .collect();
        let job = Job {
            schema: self.schema.clone(),
            output,
            fetched,
            spec: self.spec.clone(),
            threads,
        };
        builder.spawn(async move {
            let mut spine = Vec::new();
            while let Some(b) = input.next().await {
                spine.push(b?);
            }
            let tx2 = tx.clone();
            let res = tokio::task::spawn_blocking(move || {
                job.run(spine, &|b| tx2.blocking_send(Ok(b)).is_ok())
            })
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
            if let Err(e) = res {
                let _ = tx.send(Err(e.into_datafusion())).await;
            }
            Ok(())
        });
        Ok(builder.build())
    }
}

/// One matchable spine row: the first 16 bytes of its encoded key (most comparisons
/// end there), its time, and where it is (the full key is in [`Spine::keys`]).
#[derive(Clone, Copy)]
struct SpineRow {
    prefix: u128,
    time: i64,
    batch: u32,
    row: u32,
}

/// The spine's batches and the encoded entity key of each row (NULL: never matches).
struct Spine {
    batches: Vec<RecordBatch>,
    keys: Vec<BinaryArray>,
    /// Every matchable key has the same length, at most 16 bytes (one integer
    /// column, say): a row's prefix is its whole key, and rows compare by prefix
    /// alone, without reading the keys (scattered in memory once rows are sorted).
    /// Holds that length.
    short: Option<usize>,
}

impl Spine {
    fn key(&self, r: &SpineRow) -> &[u8] {
        self.keys
            .get(r.batch as usize)
            .map_or(&[], |k| k.value(r.row as usize))
    }

    /// A row's key, rebuilt from its prefix (into `buf`) when keys are short.
    fn key_of<'a>(&'a self, r: &SpineRow, buf: &'a mut [u8; 16]) -> &'a [u8] {
        match self.short {
            Some(len) => {
                *buf = r.prefix.to_be_bytes();
                buf.get(..len).unwrap_or(buf)
            }
            None => self.key(r),
        }
    }

    fn same_key(&self, a: &SpineRow, b: &SpineRow) -> bool {
        a.prefix == b.prefix && (self.short.is_some() || key_eq(self.key(a), self.key(b)))
    }

    /// Sort rows by (key, time).
    fn sort(&self, rows: &mut [SpineRow]) {
        if self.short.is_some() {
            rows.sort_unstable_by_key(|r| (r.prefix, r.time));
        } else {
            rows.sort_unstable_by(|a, b| {
                cmp_keys(a.prefix, self.key(a), b.prefix, self.key(b)).then(a.time.cmp(&b.time))
            });
        }
    }
}

/// The first 16 bytes of an encoded key, zero-padded, as a big-endian integer.
#[inline]
fn key_prefix(k: &[u8]) -> u128 {
    if let Some(head) = k.first_chunk::<16>() {
        return u128::from_be_bytes(*head);
    }
    let mut b = [0u8; 16];
    for (d, s) in b.iter_mut().zip(k) {
        *d = *s;
    }
    u128::from_be_bytes(b)
}

/// Bytewise order of two keys given their prefixes: prefixes that differ decide; equal
/// prefixes of keys no longer than 16 bytes differ only in zero padding, so the
/// shorter key is first.
#[inline]
fn cmp_keys(pa: u128, a: &[u8], pb: u128, b: &[u8]) -> Ordering {
    pa.cmp(&pb).then_with(|| {
        if a.len() <= 16 && b.len() <= 16 {
            a.len().cmp(&b.len())
        } else {
            a.cmp(b)
        }
    })
}

/// One version of the current entity in the history stream.
#[derive(Clone, Copy)]
struct Version {
    et: i64,
    tomb: bool,
    batch: usize,
    row: usize,
}

/// One batch of the history stream with its internal columns downcast once.
struct HistoryBatch {
    batch: RecordBatch,
    keys: BinaryArray,
    et: ScalarBuffer<i64>,
    tomb: BooleanArray,
}

impl HistoryBatch {
    /// `batch` holds the `ncols` fetched columns (event time first), `_deleted`, `_key`.
    fn new(batch: RecordBatch, ncols: usize) -> Result<HistoryBatch, SqlError> {
        let missing = || SqlError::internal("history scan without its internal columns");
        let keys = batch
            .column(ncols + 1)
            .as_binary_opt::<i32>()
            .ok_or_else(missing)?
            .clone();
        let et = batch
            .column(0)
            .as_primitive_opt::<TimestampMicrosecondType>()
            .ok_or_else(missing)?
            .values()
            .clone();
        let tomb = batch
            .column(ncols)
            .as_boolean_opt()
            .ok_or_else(missing)?
            .clone();
        Ok(HistoryBatch {
            batch,
            keys,
            et,
            tomb,
        })
    }

    /// From `row` on, skip keys before `key` and collect `key`'s versions (tagged with
    /// batch number `number`), leaving `row` after them. Returns `Less` if the batch
    /// ended before a greater key (the entity may continue in the next batch).
    fn versions_of(
        &self,
        prefix: u128,
        key: &[u8],
        row: &mut usize,
        number: usize,
        versions: &mut Vec<Version>,
    ) -> Ordering {
        while *row < self.keys.len() {
            let k = self.keys.value(*row);
            match cmp_keys(key_prefix(k), k, prefix, key) {
                Ordering::Less => {}
                Ordering::Greater => return Ordering::Greater,
                Ordering::Equal => versions.push(Version {
                    et: self.et.get(*row).copied().unwrap_or(i64::MIN),
                    tomb: self.tomb.value(*row),
                    batch: number,
                    row: *row,
                }),
            }
            *row += 1;
        }
        Ordering::Less
    }
}

/// Where one output column of a running join comes from.
#[derive(Clone, Copy)]
enum Source {
    /// A spine column.
    Spine(usize),
    /// A column read from the table, by position in [`Job::fetched`].
    Fetched(usize),
}

/// Everything the blocking part of the operator needs.
struct Job {
    schema: SchemaRef,
    /// The source of each column of `schema`.
    output: Vec<Source>,
    /// The table columns read: the event time first, then those in the output.
    fetched: Vec<usize>,
    spec: Arc<JoinSpec>,
    /// How many threads may work on one join.
    threads: usize,
}

/// Where output goes; false once nobody is listening.
type Emit<'a> = &'a (dyn Fn(RecordBatch) -> bool + Sync);
/// A share of the spine's work: its rows, and where to emit output batches.
type Work<'a> = &'a (dyn Fn(&[SpineRow], Emit<'_>) -> Result<(), SqlError> + Sync);

const OUT_ROWS: usize = 8192;

impl Job {
    fn run(&self, batches: Vec<RecordBatch>, emit: Emit<'_>) -> Result<(), SqlError> {
        let (spine, mut rows, unmatched) = self.prepare(batches)?;
        let history = self.spec.snapshot.version_count(self.spec.def.id) as usize;
        let threads = self
            .threads
            .min(rows.len() / self.spec.rows_per_thread)
            .max(1);
        // Per-row seeks cost a few microseconds each; a merge costs tens of
        // nanoseconds per history version. Seek when the spine is much smaller.
        if self.spec.op.backward() && rows.len().saturating_mul(64) < history {
            let per = rows.len().div_ceil(threads).max(1);
            let parts: Vec<&[SpineRow]> = rows.chunks(per).collect();
            in_parallel(parts, emit, &|part, emit| self.seek(&spine, part, emit))?;
        } else {
            spine.sort(&mut rows);
            let parts = split_at_keys(&spine, &rows, threads);
            in_parallel(parts, emit, &|part, emit| self.merge(&spine, part, emit))?;
        }
        // Spine rows with a NULL key or time never match.
        for chunk in unmatched.chunks(OUT_ROWS) {
            let right: Vec<Option<(usize, usize)>> = vec![None; chunk.len()];
            if !emit(self.gather(&spine.batches, chunk, &[], &right)?) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Encode the keys and evaluate the times of every spine row; rows with a NULL
    /// key or time go apart (as (batch, row)).
    #[allow(clippy::type_complexity)]
    fn prepare(
        &self,
        batches: Vec<RecordBatch>,
    ) -> Result<(Spine, Vec<SpineRow>, Vec<(u32, u32)>), SqlError> {
        let key_types = self.spec.def.key_types();
        let key_names: Vec<String> = self
            .spec
            .def
            .key
            .iter()
            .filter_map(|&i| self.spec.def.columns.get(i).map(|c| c.name.clone()))
            .collect();
        let ts_type = ArrowType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()));
        let mut rows = Vec::new();
        let mut unmatched = Vec::new();
        let mut keys = Vec::with_capacity(batches.len());
        let mut key_len: Option<usize> = None;
        let mut short = true;
        for (bi, b) in batches.iter().enumerate() {
            let n = b.num_rows();
            let time = cast(&self.spec.time.evaluate(b)?.into_array(n)?, &ts_type)?;
            let time = time.as_primitive::<TimestampMicrosecondType>();
            let key_arrays = self
                .spec
                .keys
                .iter()
                .zip(&key_types)
                .map(|(k, &t)| {
                    let a = k.evaluate(b)?.into_array(n)?;
                    Ok(cast(
                        &a,
                        &hindsight_storage::DataType::Scalar(t).arrow_type(),
                    )?)
                })
                .collect::<Result<Vec<ArrayRef>, SqlError>>()?;
            let refs: Vec<&dyn Array> = key_arrays.iter().map(|a| a.as_ref()).collect();
            let encoded = encode_key_arrays(&refs, &key_types, &key_names)?;
            for r in 0..n {
                let at = (bi as u32, r as u32);
                if time.is_null(r) || encoded.is_null(r) {
                    unmatched.push(at);
                } else {
                    let key = encoded.value(r);
                    short &= key.len() <= 16 && *key_len.get_or_insert(key.len()) == key.len();
                    rows.push(SpineRow {
                        prefix: key_prefix(key),
                        time: time.value(r),
                        batch: at.0,
                        row: at.1,
                    });
                }
            }
            keys.push(encoded);
        }
        let spine = Spine {
            batches,
            keys,
            short: key_len.filter(|_| short),
        };
        Ok((spine, rows, unmatched))
    }

    /// Per-row point lookups (small spines), in spine order.
    fn seek(&self, spine: &Spine, rows: &[SpineRow], emit: Emit<'_>) -> Result<(), SqlError> {
        for chunk in rows.chunks(OUT_ROWS) {
            let requests: Vec<(Vec<u8>, ReadAt)> = chunk
                .iter()
                .map(|s| {
                    let t = if self.spec.op == MatchOp::Gt {
                        s.time.saturating_sub(1)
                    } else {
                        s.time
                    };
                    let mut at = ReadAt::as_of(t).known_at(self.spec.system);
                    at.ttl_reference = Some(s.time);
                    if let Some(b) = self.spec.bound {
                        at = at.with_min_event_time(s.time.saturating_sub(b));
                    }
                    (spine.key(s).to_vec(), at)
                })
                .collect();
            let right =
                self.spec
                    .snapshot
                    .lookup_each(&self.spec.def, &requests, Some(&self.fetched))?;
            let left_idx: Vec<(u32, u32)> = chunk.iter().map(|s| (s.batch, s.row)).collect();
            let left = SpineGather::new(&spine.batches, &left_idx);
            let batch = self.assemble(
                chunk.len(),
                |c| left.column(c),
                |j, _| {
                    right
                        .columns()
                        .get(j)
                        .cloned()
                        .ok_or_else(|| SqlError::internal("as-of lookup lost a column"))
                },
            )?;
            if !emit(batch) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Streaming merge of spine rows sorted by (key, time) with the history of
    /// their key range.
    fn merge(&self, spine: &Spine, rows: &[SpineRow], emit: Emit<'_>) -> Result<(), SqlError> {
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return Ok(());
        };
        let min_t = rows.iter().map(|r| r.time).min().unwrap_or(i64::MIN);
        let max_t = rows.iter().map(|r| r.time).max().unwrap_or(i64::MAX);
        let table_ttl = self.spec.def.options.ttl_micros;
        let (from, to) = if self.spec.op.backward() {
            let reach = [table_ttl, self.spec.bound].into_iter().flatten().min();
            (reach.map_or(i64::MIN, |r| min_t.saturating_sub(r)), max_t)
        } else {
            (
                min_t,
                self.spec
                    .bound
                    .map_or(i64::MAX, |b| max_t.saturating_add(b)),
            )
        };
        let mut end = spine.key(last).to_vec();
        end.push(0);
        let mut opts = ScanOptions::history(from, to);
        opts.projection = Some(self.fetched.clone());
        opts.at = opts.at.known_at(self.spec.system);
        opts.key_range = KeyRange::encoded(Some(spine.key(first).to_vec()), Some(end));
        opts.include_tombstones = true;
        opts.with_key_bytes = true;
        opts.batch_rows = 16_384;
        let mut history = self.spec.snapshot.scan(&self.spec.def, &opts)?;
        // A window of history batches still referenced by pending output.
        let mut window: VecDeque<HistoryBatch> = VecDeque::new();
        let mut base = 0usize; // batch number of window[0]
        let mut cursor = (0usize, 0usize); // (batch number, row)
        let mut exhausted = false;
        let mut versions: Vec<Version> = Vec::new();
        let mut out_left: Vec<(u32, u32)> = Vec::with_capacity(OUT_ROWS);
        let mut out_right: Vec<Option<(usize, usize)>> = Vec::with_capacity(OUT_ROWS);
        let mut i = 0;
        while let Some(head) = rows.get(i) {
            let mut buf = [0u8; 16];
            let (prefix, key) = (head.prefix, spine.key_of(head, &mut buf));
            let group = rows[i..]
                .iter()
                .take_while(|r| spine.same_key(r, head))
                .count();
            // Advance the history cursor to `key` and collect its versions.
            versions.clear();
            loop {
                while !exhausted && cursor.0 >= base + window.len() {
                    match history.next() {
                        Some(b) => window.push_back(HistoryBatch::new(b?, self.fetched.len())?),
                        None => exhausted = true,
                    }
                }
                let Some(h) = window.get(cursor.0 - base) else {
                    break;
                };
                let found = h.versions_of(prefix, key, &mut cursor.1, cursor.0, &mut versions);
                if found == Ordering::Less {
                    cursor = (cursor.0 + 1, 0);
                } else {
                    break;
                }
            }
            for s in &rows[i..i + group] {
                out_left.push((s.batch, s.row));
                out_right.push(self.pick(&versions, s.time).map(|v| (v.batch, v.row)));
            }
            i += group;
            if out_left.len() >= OUT_ROWS || i == rows.len() {
                let batches: Vec<&RecordBatch> = window.iter().map(|h| &h.batch).collect();
                let right: Vec<Option<(usize, usize)>> = out_right
                    .iter()
                    .map(|o| o.map(|(b, r)| (b - base, r)))
                    .collect();
                if !emit(self.gather(&spine.batches, &out_left, &batches, &right)?) {
                    return Ok(());
                }
                out_left.clear();
                out_right.clear();
                // Batches before the cursor are no longer referenced.
                while base < cursor.0 && !window.is_empty() {
                    window.pop_front();
                    base += 1;
                }
            }
        }
        Ok(())
    }

    /// The matching version for spine time `t` among one entity's versions (sorted by
    /// event time descending, newest write first on ties), after TTL and bound checks.
    fn pick<'v>(&self, versions: &'v [Version], t: i64) -> Option<&'v Version> {
        let v = match self.spec.op {
            MatchOp::Ge => versions.get(versions.partition_point(|v| v.et > t)),
            MatchOp::Gt => versions.get(versions.partition_point(|v| v.et >= t)),
            MatchOp::Le | MatchOp::Lt => {
                let j = if self.spec.op == MatchOp::Le {
                    versions.partition_point(|v| v.et >= t)
                } else {
                    versions.partition_point(|v| v.et > t)
                };
                let last = versions.get(j.checked_sub(1)?)?;
                // First (newest write) of the run with the smallest qualifying event time.
                versions.get(versions.partition_point(|v| v.et > last.et))
            }
        }?;
        if v.tomb {
            return None;
        }
        if self.spec.op.backward() {
            if let Some(ttl) = self.spec.def.options.ttl_micros
                && v.et < t.saturating_sub(ttl)
            {
                return None;
            }
            if let Some(b) = self.spec.bound
                && v.et < t.saturating_sub(b)
            {
                return None;
            }
        } else if let Some(b) = self.spec.bound
            && v.et > t.saturating_add(b)
        {
            return None;
        }
        Some(v)
    }

    /// Output rows: spine rows `left`, with the fetched table columns of `right`
    /// (batch in `history`, row; NULL if None).
    fn gather(
        &self,
        spine: &[RecordBatch],
        left: &[(u32, u32)],
        history: &[&RecordBatch],
        right: &[Option<(usize, usize)>],
    ) -> Result<RecordBatch, SqlError> {
        let spine = SpineGather::new(spine, left);
        let indices: Vec<(usize, usize)> = right
            .iter()
            .map(|o| o.unwrap_or((history.len(), 0)))
            .collect();
        self.assemble(
            left.len(),
            |c| spine.column(c),
            |j, ty| {
                let null = new_null_array(ty, 1);
                let mut sources: Vec<&dyn Array> =
                    history.iter().map(|b| b.column(j).as_ref()).collect();
                sources.push(null.as_ref());
                Ok(datafusion::arrow::compute::interleave(&sources, &indices)?)
            },
        )
    }

    /// An output batch of `rows` rows: each column from the spine (by spine column)
    /// or from what was fetched from the table (by position in `fetched`, with the
    /// output type).
    fn assemble(
        &self,
        rows: usize,
        spine: impl Fn(usize) -> Result<ArrayRef, SqlError>,
        fetched: impl Fn(usize, &ArrowType) -> Result<ArrayRef, SqlError>,
    ) -> Result<RecordBatch, SqlError> {
        let cols = self
            .output
            .iter()
            .zip(self.schema.fields())
            .map(|(o, f)| match *o {
                Source::Spine(c) => spine(c),
                Source::Fetched(j) => fetched(j, f.data_type()),
            })
            .collect::<Result<Vec<ArrayRef>, SqlError>>()?;
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            cols,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?)
    }
}

/// Split rows sorted by key into at most `parts` contiguous parts of similar size,
/// never splitting one key's rows.
fn split_at_keys<'r>(spine: &Spine, rows: &'r [SpineRow], parts: usize) -> Vec<&'r [SpineRow]> {
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    for p in 1..parts {
        let mut end = (rows.len() * p / parts).max(start);
        while let (Some(prev), Some(next)) =
            (end.checked_sub(1).and_then(|e| rows.get(e)), rows.get(end))
        {
            if !spine.same_key(prev, next) {
                break;
            }
            end += 1;
        }
        if end > start {
            out.push(&rows[start..end]);
            start = end;
        }
    }
    if start < rows.len() {
        out.push(&rows[start..]);
    }
    out
}

/// Run `work` on each part, on its own thread when there are several. The first
/// error stops the others at their next output batch and is returned.
fn in_parallel(parts: Vec<&[SpineRow]>, emit: Emit<'_>, work: Work<'_>) -> Result<(), SqlError> {
    if parts.len() <= 1 {
        return parts.into_iter().try_for_each(|p| work(p, emit));
    }
    let failed = AtomicBool::new(false);
    let guarded = |b: RecordBatch| !failed.load(AtomicOrdering::Relaxed) && emit(b);
    std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| {
                let (guarded, failed) = (&guarded, &failed);
                scope.spawn(move || {
                    let r = work(part, guarded);
                    if r.is_err() {
                        failed.store(true, AtomicOrdering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        let mut result = Ok(());
        for h in handles {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(SqlError::internal("an as-of join worker panicked")));
            if result.is_ok() {
                result = r;
            }
        }
        result
    })
}

/// Spine rows (batch, row) gathered into output columns, one column at a time.
struct SpineGather<'a> {
    batches: &'a [RecordBatch],
    /// The rows, when all are in the first batch (one `take`).
    rows: Option<UInt32Array>,
    /// (batch, row) pairs otherwise.
    pairs: Vec<(usize, usize)>,
}

impl<'a> SpineGather<'a> {
    fn new(batches: &'a [RecordBatch], idx: &[(u32, u32)]) -> SpineGather<'a> {
        if idx.iter().all(|&(b, _)| b == 0) {
            let rows = UInt32Array::from_iter_values(idx.iter().map(|&(_, r)| r));
            SpineGather {
                batches,
                rows: Some(rows),
                pairs: Vec::new(),
            }
        } else {
            let pairs = idx.iter().map(|&(b, r)| (b as usize, r as usize)).collect();
            SpineGather {
                batches,
                rows: None,
                pairs,
            }
        }
    }

    fn column(&self, c: usize) -> Result<ArrayRef, SqlError> {
        let missing = || SqlError::internal("as-of spine column out of range");
        match &self.rows {
            Some(rows) => {
                let first = self.batches.first().ok_or_else(missing)?;
                let col = first.columns().get(c).ok_or_else(missing)?;
                Ok(datafusion::arrow::compute::take(col.as_ref(), rows, None)?)
            }
            None => {
                let sources = self
                    .batches
                    .iter()
                    .map(|b| b.columns().get(c).map(|a| a.as_ref()).ok_or_else(missing))
                    .collect::<Result<Vec<&dyn Array>, SqlError>>()?;
                Ok(datafusion::arrow::compute::interleave(
                    &sources,
                    &self.pairs,
                )?)
            }
        }
    }
}
