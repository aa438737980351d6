//! The logical as-of join node and the extension planner that turns it into an
//! [`AsofJoinExec`], evaluating `known_at` and the ON time bound once per query.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session as DfSession;
use datafusion::common::DFSchemaRef;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    Expr, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{ExtensionPlanner, PhysicalPlanner};
use hindsight_storage::{Db, SystemAt};

use super::contract::{MatchOp, ON_HINT, contract_error};
use super::exec::{AsofJoinExec, OutCol, properties};
use super::strategy::JoinSpec;
use crate::error::{ErrorKind, SqlError};
use crate::plan::context;
use crate::plan::timeexpr::{eval_scalar, eval_time, scalar_interval_micros};

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
        let def = snapshot.catalog().table(&n.table).cloned().ok_or_else(|| {
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
