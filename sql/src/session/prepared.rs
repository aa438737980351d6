//! Prepared statements: parsed, rewritten and (for queries) planned once; point
//! lookups compiled to the storage fast path; constant statements answered at
//! prepare. Executions bind parameters into the stored plan.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use hindsight_storage::Snapshot;
use sqlparser::ast::Statement;

use super::state::Session;
use crate::error::{Result, SqlError};
use crate::output::{Output, batches_stream, memory_stream};
use crate::plan::fastpath::FastLookup;
use crate::plan::rewrite::rename_stream;

/// A prepared statement: parsed and rewritten once; queries also planned once.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub(crate) statement: Option<Statement>,
    pub(crate) plan: Option<LogicalPlan>,
    /// Types of `$1..$n` (None where nothing constrains a parameter).
    pub param_types: Vec<Option<ArrowType>>,
    /// Row schema for statements that return rows.
    pub schema: Option<SchemaRef>,
    pub(crate) fast: Option<crate::plan::fastpath::FastLookup>,
    /// A statement whose answer cannot change (no table, no function, no parameter:
    /// `SELECT 1`, a pool's validation query): planned once at prepare (DataFusion's
    /// planning would cost ~150 us each time) and, when that succeeds, answered once.
    pub(crate) constant: Option<Constant>,
}

/// The prepared form of a constant statement (see [`Prepared::constant`]).
#[derive(Clone, Debug)]
pub(crate) struct Constant {
    plan: Arc<dyn ExecutionPlan>,
    /// The answer, computed at prepare; `None` when computing it failed (division by
    /// zero, say), so that each execution runs the plan and raises the error itself.
    answer: Option<(SchemaRef, Vec<RecordBatch>)>,
}

impl Prepared {
    /// A statement executed as it is, with no plan made at prepare (a command, or
    /// none at all).
    fn unplanned(
        statement: Option<Statement>,
        declared: &[Option<ArrowType>],
        schema: Option<SchemaRef>,
    ) -> Self {
        Prepared {
            statement,
            plan: None,
            param_types: declared.to_vec(),
            schema,
            fast: None,
            constant: None,
        }
    }

    /// True when executions re-run a physical plan made at prepare (a constant query).
    pub fn is_constant(&self) -> bool {
        self.constant.is_some()
    }

    /// True when executions are answered by storage point lookups (the fast path).
    pub fn is_point_lookup(&self) -> bool {
        self.fast.is_some()
    }

    /// The storage types of a point lookup's row values (in schema order), as
    /// [`Session::point_lookup_rows`] hands them out; `None` for other statements.
    pub fn point_lookup_types(&self) -> Option<&[hindsight_storage::DataType]> {
        self.fast.as_ref().map(|f| f.row_types())
    }

    /// True when an execution is answered without planning or scanning: a point
    /// lookup (one of many keys hands its worker over by itself, see `offload`) or a
    /// constant answered at prepare. Such executions take microseconds, so the
    /// server runs them on the connection's worker.
    pub fn answers_at_once(&self) -> bool {
        self.fast.is_some() || self.constant.as_ref().is_some_and(|c| c.answer.is_some())
    }

    /// True for an empty statement (only whitespace or comments).
    pub fn is_empty(&self) -> bool {
        self.statement.is_none()
    }
}

/// Whether a plan's answer can never change: only projections of literals and
/// operators over no table (no scan, no function call, no parameter, no cast, whose
/// result may depend on session settings such as the time zone).
pub(super) fn is_constant(plan: &LogicalPlan) -> bool {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::Expr;
    let constant_expr = |e: &Expr| {
        let mut ok = true;
        let _ = e.apply(|x| {
            ok = matches!(
                x,
                Expr::Literal(..)
                    | Expr::Alias(_)
                    | Expr::Column(_)
                    | Expr::BinaryExpr(_)
                    | Expr::Not(_)
                    | Expr::Negative(_)
                    | Expr::IsNull(_)
                    | Expr::IsNotNull(_)
            );
            Ok(if ok {
                TreeNodeRecursion::Continue
            } else {
                TreeNodeRecursion::Stop
            })
        });
        ok
    };
    let mut ok = true;
    let _ = plan.apply(|node| {
        ok = matches!(
            node,
            LogicalPlan::Projection(_)
                | LogicalPlan::EmptyRelation(_)
                | LogicalPlan::Values(_)
                | LogicalPlan::SubqueryAlias(_)
        ) && node.expressions().iter().all(constant_expr);
        Ok(if ok {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    ok
}

impl Session {
    /// Answer a recognized point lookup (no DataFusion planning).
    pub(super) fn run_fast(
        &mut self,
        fast: &FastLookup,
        params: &[ScalarValue],
    ) -> Result<RecordBatch> {
        let snapshot = self.fast_snapshot(fast)?;
        fast.execute(&self.state, &snapshot, params)
    }

    /// The snapshot a fast lookup reads.
    pub(super) fn fast_snapshot(&mut self, fast: &FastLookup) -> Result<Snapshot> {
        if fast.needs_clock() {
            // Time arguments read the statement's clock (`now()`).
            self.begin_statement(Vec::new())
        } else {
            self.statement_snapshot()
        }
    }

    /// Prepare `sql` (one statement) with optionally declared parameter types.
    pub async fn prepare(&mut self, sql: &str, declared: &[Option<ArrowType>]) -> Result<Prepared> {
        let mut stmts = self.engine.parse(sql)?;
        if stmts.len() > 1 {
            return Err(SqlError::syntax(
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let Some(mut stmt) = stmts.pop() else {
            return Ok(Prepared::unplanned(None, declared, None));
        };
        super::execute::rewrite_input(&mut stmt);
        self.resolve_setting_calls(&mut stmt)?;
        if let Some(fast) = FastLookup::recognize(&self.state, &self.engine.db, &stmt, declared) {
            return Ok(Prepared {
                param_types: fast.param_types(),
                schema: Some(fast.schema()),
                statement: Some(stmt),
                plan: None,
                fast: Some(fast),
                constant: None,
            });
        }
        let needs_plan = matches!(stmt, Statement::Query(_) | Statement::Explain { .. });
        let dml = matches!(
            stmt,
            Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_)
        );
        if !(needs_plan || dml) {
            let schema = match &stmt {
                Statement::ShowVariable { .. } => Some(Arc::new(Schema::new(vec![Field::new(
                    "setting",
                    ArrowType::Utf8,
                    false,
                )]))),
                Statement::Fetch { name, .. } => self.cursor_schema(name),
                Statement::Call(f) if super::lsn::is_wait(f) => Some(super::lsn::wait_schema()),
                _ => None,
            };
            return Ok(Prepared::unplanned(Some(stmt), declared, schema));
        }
        if let Statement::Query(q) = &mut stmt {
            crate::plan::rewrite::name_query_outputs(q);
        }
        self.begin_statement(vec![])?;
        let planned = if needs_plan {
            self.plan(stmt.clone()).await?
        } else {
            self.plan_dml_for_types(stmt.clone()).await?
        };
        let mut types = crate::plan::params::infer(&planned, declared)?;
        for (i, d) in declared.iter().enumerate() {
            if let (Some(d), Some(slot)) = (d, types.get_mut(i)) {
                *slot = Some(d.clone());
            }
        }
        let schema = needs_plan.then(|| {
            let s: SchemaRef = Arc::new(planned.schema().as_arrow().clone());
            crate::plan::rewrite::output_schema(&s).unwrap_or(s)
        });
        let constant = match matches!(stmt, Statement::Query(_)) && is_constant(&planned) {
            true => Some(self.constant(&planned).await?),
            false => None,
        };
        Ok(Prepared {
            statement: Some(stmt),
            plan: needs_plan.then_some(planned),
            param_types: types,
            schema,
            fast: None,
            constant,
        })
    }

    /// A constant query's physical plan, and its answer computed now if it runs
    /// (one that fails is left to fail at execution, with the error there).
    async fn constant(&self, planned: &LogicalPlan) -> Result<Constant> {
        let plan = self.state.create_physical_plan(planned).await?;
        let answer =
            match datafusion::physical_plan::execute_stream(plan.clone(), self.state.task_ctx()) {
                Ok(stream) => {
                    let stream = rename_stream(stream);
                    let schema = stream.schema();
                    datafusion::physical_plan::common::collect(stream)
                        .await
                        .ok()
                        .map(|batches| (schema, batches))
                }
                Err(_) => None,
            };
        Ok(Constant { plan, answer })
    }

    /// Execute a prepared statement with bound parameter values.
    pub async fn execute_prepared(
        &mut self,
        p: &Prepared,
        params: Vec<ScalarValue>,
    ) -> Result<Output> {
        if let Some(result) = self.point_lookup(p, &params) {
            return result.map(|b| Output::Rows(memory_stream(vec![b])));
        }
        let Some(stmt) = &p.statement else {
            return Ok(Output::command("EMPTY"));
        };
        self.check_not_failed_unless_end(stmt)?;
        if let Some(constant) = &p.constant {
            let result = match &constant.answer {
                Some((schema, batches)) => Ok(Output::Rows(batches_stream(
                    schema.clone(),
                    batches.clone(),
                ))),
                None => datafusion::physical_plan::execute_stream(
                    constant.plan.clone(),
                    self.state.task_ctx(),
                )
                .map(|s| Output::Rows(rename_stream(s)))
                .map_err(SqlError::from),
            };
            self.fail_open_txn_on_error(&result);
            return result;
        }
        let result = match &p.plan {
            Some(plan) => {
                self.begin_statement(params.clone())?;
                match Self::bind(plan.clone(), &params) {
                    // Boxed: DataFusion's planning futures are large; keeping them
                    // out of this future keeps every caller's future small.
                    Ok(bound) => Box::pin(self.run_plan(&bound)).await.map(Output::Rows),
                    Err(e) => Err(e),
                }
            }
            None => return Box::pin(self.execute_with(stmt.clone(), params)).await,
        };
        self.fail_open_txn_on_error(&result);
        result
    }

    /// A prepared point lookup's rows as one batch, computed synchronously; `None`
    /// when `p` is not a point lookup. The wire layer calls this first: a lookup
    /// takes microseconds, so it skips the stream, cancel and timeout machinery.
    pub fn point_lookup(
        &mut self,
        p: &Prepared,
        params: &[ScalarValue],
    ) -> Option<Result<RecordBatch>> {
        let fast = p.fast.as_ref()?;
        let stmt = p.statement.as_ref()?;
        if let Err(e) = self.check_not_failed_unless_end(stmt) {
            return Some(Err(e));
        }
        let result = self.run_fast(fast, params);
        self.fail_open_txn_on_error(&result);
        Some(result)
    }

    /// [`Session::point_lookup`] row by row: `row` gets each present entity's values
    /// (in the order of the statement's schema) from one reused buffer; returns the
    /// number of rows. `None` when `p` is not a point lookup. Nothing is allocated per
    /// row for fixed-width values: this is what the wire layer's Execute uses.
    pub fn point_lookup_rows(
        &mut self,
        p: &Prepared,
        params: &[ScalarValue],
        row: impl FnMut(&[hindsight_storage::Value]),
    ) -> Option<Result<usize>> {
        let fast = p.fast.as_ref()?;
        let stmt = p.statement.as_ref()?;
        if let Err(e) = self.check_not_failed_unless_end(stmt) {
            return Some(Err(e));
        }
        let result = self
            .fast_snapshot(fast)
            .and_then(|snapshot| fast.execute_rows(&self.state, &snapshot, params, row));
        self.fail_open_txn_on_error(&result);
        Some(result)
    }
}
