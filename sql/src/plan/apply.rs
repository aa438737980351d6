//! Correlated subqueries DataFusion cannot decorrelate, run once per outer row.
//!
//! DataFusion turns most correlated subqueries into joins. What it cannot (a scalar
//! subquery inside `CASE`, as SQLAlchemy's reflection sends; `LATERAL (... ORDER BY
//! ... LIMIT 1)`, the point-in-time join written by hand) would fail at physical
//! planning. The [`PerRowSubqueries`] rule, the optimizer's first, offers each node
//! to DataFusion's decorrelation rules and rewrites what they leave into an
//! [`ApplyNode`] over the outer input; [`ApplyExec`] then binds
//! each outer row's values into the subquery's outer references, plans and runs it
//! (results memoised per distinct outer values), and appends its answer:
//!
//! - scalar subquery: one column, NULL for no row, 21000 for more than one;
//! - `EXISTS`: one boolean column;
//! - `LATERAL` join (inner or left, no ON condition): the outer row repeated for each
//!   subquery row (left: once with NULLs when there is none).
//!
//! Invariant: the output schema of every rewritten node is unchanged (added columns
//! are projected away above it), and the subquery reads the statement's snapshot,
//! since it runs in the same session while the statement does.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, UInt32Array, new_null_array};
use datafusion::arrow::compute::{concat_batches, take};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::Session as DfSession;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, DFSchemaRef, ScalarValue};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{
    Expr, Extension, Filter, Join, JoinType, LogicalPlan, Projection, Subquery, SubqueryAlias,
    UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::optimizer::decorrelate_lateral_join::DecorrelateLateralJoin;
use datafusion::optimizer::decorrelate_predicate_subquery::DecorrelatePredicateSubquery;
use datafusion::optimizer::scalar_subquery_to_join::ScalarSubqueryToJoin;
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::ExecutionPlanProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream, collect,
};
use datafusion::physical_planner::{ExtensionPlanner, PhysicalPlanner};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::Mutex;

use crate::error::{ErrorKind, SqlError};

/// Prefix of the columns the rewrite adds (projected away above the node).
const ADDED: &str = "__hs_subquery_";

/// What the subquery contributes to each outer row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd)]
pub enum ApplyKind {
    Scalar,
    Exists,
    Lateral { left: bool },
}

/// The outer input with a subquery applied to each of its rows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApplyNode {
    input: LogicalPlan,
    subquery: LogicalPlan,
    /// The outer columns the subquery references, in the input's schema.
    outer: Vec<Column>,
    kind: ApplyKind,
    schema: DFSchemaRef,
}

impl PartialOrd for ApplyNode {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        match self.kind.partial_cmp(&other.kind) {
            Some(std::cmp::Ordering::Equal) if self != other => None,
            o => o,
        }
    }
}

impl ApplyNode {
    /// A scalar or EXISTS apply adding column `added` to `input`.
    fn adding(
        input: LogicalPlan,
        subquery: LogicalPlan,
        outer: Vec<Column>,
        kind: ApplyKind,
        added: &str,
    ) -> DfResult<Self> {
        let schema = match kind {
            ApplyKind::Lateral { .. } => {
                return Err(
                    SqlError::internal("a lateral apply keeps its join's schema").into_datafusion(),
                );
            }
            ApplyKind::Scalar | ApplyKind::Exists => {
                let field = match kind {
                    ApplyKind::Scalar => subquery
                        .schema()
                        .fields()
                        .first()
                        .map(|f| f.as_ref().clone().with_name(added).with_nullable(true))
                        .ok_or_else(|| {
                            SqlError::syntax("a scalar subquery must return one column")
                                .into_datafusion()
                        })?,
                    _ => Field::new(
                        added,
                        datafusion::arrow::datatypes::DataType::Boolean,
                        false,
                    ),
                };
                let one = DFSchema::from_unqualified_fields(vec![field].into(), HashMap::new())?;
                input.schema().join(&one)?
            }
        };
        Ok(ApplyNode {
            input,
            subquery,
            outer,
            kind,
            schema: Arc::new(schema),
        })
    }
}

impl UserDefinedLogicalNodeCore for ApplyNode {
    fn name(&self) -> &str {
        "Apply"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "Apply: {:?} per outer row of ({})",
            self.kind,
            self.outer.len()
        )
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> DfResult<Self> {
        let input = inputs
            .pop()
            .ok_or_else(|| SqlError::internal("Apply needs one input").into_datafusion())?;
        Ok(ApplyNode {
            schema: self.schema.clone(),
            input,
            subquery: self.subquery.clone(),
            outer: self.outer.clone(),
            kind: self.kind,
        })
    }
}

/// The outer columns a subquery references.
fn outer_columns(refs: &[Expr]) -> Vec<Column> {
    refs.iter()
        .filter_map(|e| match e {
            Expr::OuterReferenceColumn(_, c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

/// Rewrites the correlated subqueries DataFusion left in place into [`ApplyNode`]s.
#[derive(Debug, Default)]
pub struct PerRowSubqueries;

impl OptimizerRule for PerRowSubqueries {
    fn name(&self) -> &str {
        "hindsight_per_row_subqueries"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    /// DataFusion's own decorrelation gets each node first; what it leaves becomes an
    /// apply. (This rule runs before projection pruning, which would otherwise drop
    /// outer columns that only a subquery reads.)
    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> DfResult<Transformed<LogicalPlan>> {
        match plan {
            LogicalPlan::Join(j) if lateral_subquery(&j.right).is_some() => {
                let tried = DecorrelateLateralJoin::new().rewrite(LogicalPlan::Join(j), config)?;
                match tried.data {
                    LogicalPlan::Join(j) if !tried.transformed => lateral_apply(j),
                    other => Ok(Transformed::new_transformed(other, tried.transformed)),
                }
            }
            LogicalPlan::Projection(_) | LogicalPlan::Filter(_) if node_has_subquery(&plan) => {
                if aggregates_outer_values(&plan) {
                    return Ok(Transformed::yes(lift_node(plan)?));
                }
                let mut tried = Transformed::no(plan);
                if matches!(tried.data, LogicalPlan::Filter(_)) {
                    tried = tried.transform_data(|p| {
                        DecorrelatePredicateSubquery::new().rewrite(p, config)
                    })?;
                }
                tried = tried.transform_data(|p| ScalarSubqueryToJoin::new().rewrite(p, config))?;
                if node_has_subquery(&tried.data) {
                    return Ok(Transformed::yes(lift_node(tried.data)?));
                }
                Ok(tried)
            }
            other => Ok(Transformed::no(other)),
        }
    }
}

/// The subquery of a LATERAL join's right side (`Subquery`, maybe aliased).
fn lateral_subquery(right: &LogicalPlan) -> Option<(&Subquery, Option<&SubqueryAlias>)> {
    match right {
        LogicalPlan::Subquery(sq) => Some((sq, None)),
        LogicalPlan::SubqueryAlias(a) => match a.input.as_ref() {
            LogicalPlan::Subquery(sq) => Some((sq, Some(a))),
            _ => None,
        },
        _ => None,
    }
}

/// A LATERAL join DataFusion could not decorrelate, as an apply (inner or left,
/// without an ON condition; anything else is left for the planner to refuse).
fn lateral_apply(j: Join) -> DfResult<Transformed<LogicalPlan>> {
    let supported = matches!(j.join_type, JoinType::Inner | JoinType::Left)
        && j.on.is_empty()
        && j.filter.as_ref().is_none_or(is_true);
    let Some((sq, alias)) = lateral_subquery(&j.right).filter(|_| supported) else {
        return Ok(Transformed::no(LogicalPlan::Join(j)));
    };
    let subquery = match alias {
        Some(a) => LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(
            sq.subquery.clone(),
            a.alias.clone(),
        )?),
        None => (*sq.subquery).clone(),
    };
    let node = ApplyNode {
        input: (*j.left).clone(),
        subquery,
        outer: outer_columns(&sq.outer_ref_columns),
        kind: ApplyKind::Lateral {
            left: j.join_type == JoinType::Left,
        },
        schema: j.schema.clone(),
    };
    Ok(Transformed::yes(extension(node)))
}

/// True if a subquery of the node aggregates an expression of outer columns
/// (`max(json_build_object(outer.a, ...))`): DataFusion's decorrelation would
/// produce a plan that names a column it does not have.
fn aggregates_outer_values(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_subqueries(|sub| {
        sub.apply(|p| {
            if let LogicalPlan::Aggregate(a) = p
                && a.aggr_expr.iter().any(|e| {
                    e.exists(|e| Ok(matches!(e, Expr::OuterReferenceColumn(..))))
                        .unwrap_or(false)
                })
            {
                found = true;
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })
    });
    found
}

fn node_has_subquery(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Projection(p) => p.expr.iter().any(has_subquery),
        LogicalPlan::Filter(f) => has_subquery(&f.predicate),
        _ => false,
    }
}

/// Move the subqueries left in a projection or filter into applies below it; the
/// node's output schema stays as it was.
fn lift_node(plan: LogicalPlan) -> DfResult<LogicalPlan> {
    match plan {
        LogicalPlan::Projection(p) => {
            let mut input = (*p.input).clone();
            let mut exprs = Vec::with_capacity(p.expr.len());
            for e in p.expr {
                exprs.push(lift_subqueries(e, &mut input)?);
            }
            let out = Projection::try_new_with_schema(exprs, Arc::new(input), p.schema)?;
            Ok(LogicalPlan::Projection(out))
        }
        LogicalPlan::Filter(f) => {
            let schema = f.input.schema().clone();
            let mut input = (*f.input).clone();
            let predicate = lift_subqueries(f.predicate, &mut input)?;
            let filtered = LogicalPlan::Filter(Filter::try_new(predicate, Arc::new(input))?);
            let keep = schema.columns().into_iter().map(Expr::Column).collect();
            let out = Projection::try_new_with_schema(keep, Arc::new(filtered), schema)?;
            Ok(LogicalPlan::Projection(out))
        }
        other => Ok(other),
    }
}

fn is_true(e: &Expr) -> bool {
    matches!(e, Expr::Literal(ScalarValue::Boolean(Some(true)), _))
}

fn extension(node: ApplyNode) -> LogicalPlan {
    LogicalPlan::Extension(Extension {
        node: Arc::new(node),
    })
}

fn has_subquery(e: &Expr) -> bool {
    e.exists(|e| Ok(matches!(e, Expr::ScalarSubquery(_) | Expr::Exists(_))))
        .unwrap_or(false)
}

/// Replace each scalar or EXISTS subquery in `e` by a column that an [`ApplyNode`]
/// stacked on `input` computes.
fn lift_subqueries(e: Expr, input: &mut LogicalPlan) -> DfResult<Expr> {
    let name = e.schema_name().to_string();
    let lifted = e.transform_up(|e| {
        let (sq, kind, negated) = match e {
            Expr::ScalarSubquery(sq) => (sq, ApplyKind::Scalar, false),
            Expr::Exists(x) => (x.subquery, ApplyKind::Exists, x.negated),
            other => return Ok(Transformed::no(other)),
        };
        let added = format!("{ADDED}{}", input.schema().fields().len());
        let node = ApplyNode::adding(
            input.clone(),
            (*sq.subquery).clone(),
            outer_columns(&sq.outer_ref_columns),
            kind,
            &added,
        )?;
        *input = extension(node);
        let col = Expr::Column(Column::from_name(added));
        Ok(Transformed::yes(if negated {
            Expr::Not(Box::new(col))
        } else {
            col
        }))
    })?;
    Ok(if lifted.transformed {
        lifted.data.alias_if_changed(name)?
    } else {
        lifted.data
    })
}

/// Plans [`ApplyNode`]s.
#[derive(Debug)]
pub struct ApplyPlanner;

#[async_trait]
impl ExtensionPlanner for ApplyPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn DfSession,
        _planning_ctx: &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        let Some(n) = node.as_any().downcast_ref::<ApplyNode>() else {
            return Ok(None);
        };
        let (Some(logical), Some(input)) = (logical_inputs.first(), physical_inputs.first()) else {
            return Err(SqlError::internal("Apply without input").into_datafusion());
        };
        let state = session
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| SqlError::internal("Apply needs a session state").into_datafusion())?;
        let outer = n
            .outer
            .iter()
            .map(|c| logical.schema().index_of_column(c))
            .collect::<DfResult<Vec<_>>>()?;
        let schema: SchemaRef = Arc::new(n.schema.as_arrow().clone());
        Ok(Some(Arc::new(ApplyExec {
            props: properties(&schema, input),
            schema,
            input: input.clone(),
            job: Arc::new(Job {
                subquery: n.subquery.clone(),
                outer_cols: n.outer.clone(),
                outer,
                kind: n.kind,
                state: state.clone(),
                memo: Mutex::new(HashMap::new()),
            }),
        })))
    }
}

/// One output partition per input partition (the input may be replanned with more).
fn properties(schema: &SchemaRef, input: &Arc<dyn ExecutionPlan>) -> Arc<PlanProperties> {
    Arc::new(PlanProperties::new(
        EquivalenceProperties::new(schema.clone()),
        input.output_partitioning().clone(),
        EmissionType::Incremental,
        Boundedness::Bounded,
    ))
}

/// Runs a subquery for each outer row.
#[derive(Debug)]
pub struct ApplyExec {
    input: Arc<dyn ExecutionPlan>,
    job: Arc<Job>,
    schema: SchemaRef,
    props: Arc<PlanProperties>,
}

struct Job {
    subquery: LogicalPlan,
    outer_cols: Vec<Column>,
    /// Index in the input of each outer column.
    outer: Vec<usize>,
    kind: ApplyKind,
    state: SessionState,
    memo: Mutex<HashMap<Vec<ScalarValue>, Arc<RecordBatch>>>,
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Apply({:?})", self.kind)
    }
}

impl DisplayAs for ApplyExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ApplyExec: {:?}", self.job.kind)
    }
}

impl ExecutionPlan for ApplyExec {
    fn name(&self) -> &str {
        "ApplyExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = children
            .pop()
            .ok_or_else(|| SqlError::internal("ApplyExec needs one child").into_datafusion())?;
        Ok(Arc::new(ApplyExec {
            props: properties(&self.schema, &input),
            input,
            job: self.job.clone(),
            schema: self.schema.clone(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        ctx: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, ctx.clone())?;
        let job = self.job.clone();
        let schema = self.schema.clone();
        let out = input.and_then(move |batch| {
            let job = job.clone();
            let schema = schema.clone();
            let ctx = ctx.clone();
            async move { job.apply(&batch, &schema, ctx).await }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            out.boxed(),
        )))
    }
}

impl Job {
    /// The subquery's rows for the outer values `key`.
    async fn rows(
        &self,
        key: Vec<ScalarValue>,
        ctx: Arc<TaskContext>,
    ) -> DfResult<Arc<RecordBatch>> {
        if let Some(hit) = self.memo.lock().await.get(&key) {
            return Ok(hit.clone());
        }
        let bound = self
            .subquery
            .clone()
            .transform_up_with_subqueries(|p| {
                p.map_expressions(|e| {
                    e.transform(|e| {
                        if let Expr::OuterReferenceColumn(_, c) = &e
                            && let Some(v) = self
                                .outer_cols
                                .iter()
                                .position(|o| o == c)
                                .and_then(|i| key.get(i))
                        {
                            return Ok(Transformed::yes(Expr::Literal(v.clone(), None)));
                        }
                        Ok(Transformed::no(e))
                    })
                })
            })?
            .data;
        let physical = self.state.create_physical_plan(&bound).await?;
        let schema = physical.schema();
        let batches = collect(physical, ctx).await?;
        let rows = Arc::new(concat_batches(&schema, &batches)?);
        self.memo.lock().await.insert(key, rows.clone());
        Ok(rows)
    }

    async fn apply(
        &self,
        batch: &RecordBatch,
        schema: &SchemaRef,
        ctx: Arc<TaskContext>,
    ) -> DfResult<RecordBatch> {
        let mut results = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let key = self
                .outer
                .iter()
                .map(|&c| ScalarValue::try_from_array(batch.column(c), row))
                .collect::<DfResult<Vec<_>>>()?;
            results.push(self.rows(key, ctx.clone()).await?);
        }
        match self.kind {
            ApplyKind::Scalar => scalar_column(batch, &results, schema),
            ApplyKind::Exists => {
                let flags: BooleanArray = results.iter().map(|r| Some(r.num_rows() > 0)).collect();
                with_column(batch, Arc::new(flags), schema)
            }
            ApplyKind::Lateral { left } => lateral(batch, &results, left, schema),
        }
    }
}

fn with_column(batch: &RecordBatch, col: ArrayRef, schema: &SchemaRef) -> DfResult<RecordBatch> {
    let mut cols = batch.columns().to_vec();
    cols.push(col);
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// The first column of each result (NULL for none, 21000 for more than one row).
fn scalar_column(
    batch: &RecordBatch,
    results: &[Arc<RecordBatch>],
    schema: &SchemaRef,
) -> DfResult<RecordBatch> {
    let field = schema
        .fields()
        .last()
        .ok_or_else(|| SqlError::internal("a scalar apply without its column").into_datafusion())?;
    let mut values = Vec::with_capacity(results.len());
    for r in results {
        values.push(match r.num_rows() {
            0 => ScalarValue::try_from(field.data_type())?,
            1 => ScalarValue::try_from_array(r.column(0), 0)?,
            _ => {
                return Err(SqlError::new(
                    ErrorKind::CardinalityViolation,
                    "more than one row returned by a subquery used as an expression",
                )
                .into_datafusion());
            }
        });
    }
    let col = if values.is_empty() {
        new_null_array(field.data_type(), 0)
    } else {
        ScalarValue::iter_to_array(values)?
    };
    with_column(batch, col, schema)
}

/// Each outer row joined with its subquery rows (left: kept once with NULLs when
/// there are none).
fn lateral(
    batch: &RecordBatch,
    results: &[Arc<RecordBatch>],
    left: bool,
    schema: &SchemaRef,
) -> DfResult<RecordBatch> {
    let outer_width = batch.num_columns();
    let right_schema = Arc::new(Schema::new(schema.fields()[outer_width..].to_vec()));
    let mut indices = Vec::new();
    let mut parts = Vec::new();
    for (row, r) in results.iter().enumerate() {
        let n = r.num_rows();
        if n == 0 && left {
            indices.push(row as u32);
            let nulls = right_schema
                .fields()
                .iter()
                .map(|f| new_null_array(f.data_type(), 1))
                .collect();
            parts.push(RecordBatch::try_new(right_schema.clone(), nulls)?);
            continue;
        }
        indices.extend(std::iter::repeat_n(row as u32, n));
        parts.push(RecordBatch::try_new(
            right_schema.clone(),
            r.columns().to_vec(),
        )?);
    }
    let right = concat_batches(&right_schema, &parts)?;
    let take_idx = UInt32Array::from(indices);
    let mut cols = Vec::with_capacity(schema.fields().len());
    for c in batch.columns() {
        cols.push(take(c, &take_idx, None)?);
    }
    cols.extend(right.columns().iter().cloned());
    RecordBatch::try_new(schema.clone(), cols).map_err(DataFusionError::from)
}
