//! The physical as-of join operator: its properties, projection pushdown, and
//! `execute`, which reads the spine and hands it to a [`Job`].

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::Column as PhysicalColumn;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use futures::StreamExt;

use super::strategy::{Job, JoinSpec, Source};
use crate::error::SqlError;

pub(super) fn properties(schema: &SchemaRef) -> Arc<PlanProperties> {
    Arc::new(PlanProperties::new(
        EquivalenceProperties::new(schema.clone()),
        Partitioning::UnknownPartitioning(1),
        EmissionType::Final,
        Boundedness::Bounded,
    ))
}

/// Where one output column of the join comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OutCol {
    /// A column of the spine (the left input), by index.
    Spine(usize),
    /// A column of the table, by index in its definition (NULL where nothing matched).
    Table(usize),
}

/// The physical as-of join (see the module documentation).
#[derive(Debug)]
pub struct AsofJoinExec {
    pub(super) schema: SchemaRef,
    /// The source of each column of `schema`: all spine columns then all table
    /// columns as planned, fewer once a projection above is absorbed.
    pub(super) output: Vec<OutCol>,
    pub(super) props: Arc<PlanProperties>,
    pub(super) left: Arc<dyn ExecutionPlan>,
    pub(super) spec: Arc<JoinSpec>,
}

impl AsofJoinExec {
    /// This join over input `left`, producing `output` as `schema`.
    pub(super) fn rebuilt(
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
