//! Where Flight requests do their SQL work, under the limits pgwire statements have.
//!
//! Every request that plans or runs a statement ([`Runner::call`], [`Runner::stream`])
//! - takes one of `max_streams` slots for its whole life (a result stream holds its
//!   slot until the client has read it or gone), else `RESOURCE_EXHAUSTED` (53300);
//! - runs on the query runtime, like pgwire's statements, so long scans never stall
//!   the gRPC connections;
//! - ends with 57014 when it outlives the statement timeout;
//! - stops as soon as the client goes away (the result channel closes), dropping
//!   DataFusion's stream and what it holds;
//! - uses a session of its own, with its own per-query memory pool.
//!
//! Results stream as DataFusion produces them: batches go through a channel of two
//! (back-pressure from the client's reads down to the scan) into Arrow Flight's
//! IPC encoder; nothing is converted row by row. A statement's first message is its
//! schema, so an error while planning fails the RPC itself, not its stream.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::FlightData;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use futures::{Stream, StreamExt, TryStreamExt};
use hindsight_sql::{Engine, ErrorKind, Output, Session, SqlError};
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::error::{status, timeout};
use tonic::Status;

/// A stream of Flight messages, as `DoGet` returns it.
pub(crate) type FlightStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send>>;

/// What a running statement sends: its schema first, then its batches.
enum Item {
    Schema(SchemaRef),
    Batch(RecordBatch),
}

/// The sending end of a result stream.
pub(crate) struct Sink {
    tx: mpsc::Sender<Result<Item, Status>>,
    started: bool,
}

impl Sink {
    /// Send an output's rows (a command sends an empty schema, once).
    pub(crate) async fn output(&mut self, out: Output) -> Result<(), Status> {
        match out {
            Output::Rows(mut stream) => {
                self.start(stream.schema()).await?;
                while let Some(batch) = stream.next().await {
                    let batch = batch.map_err(|e| status(SqlError::from(e)))?;
                    if batch.num_rows() > 0 {
                        self.send(Item::Batch(batch)).await?;
                    }
                }
                Ok(())
            }
            Output::Command { .. } => self.start(Arc::new(Schema::empty())).await,
        }
    }

    /// Send the schema, unless already sent.
    pub(crate) async fn start(&mut self, schema: SchemaRef) -> Result<(), Status> {
        if !self.started {
            self.started = true;
            self.send(Item::Schema(schema)).await?;
        }
        Ok(())
    }

    async fn send(&self, item: Item) -> Result<(), Status> {
        self.tx
            .send(Ok(item))
            .await
            .map_err(|_| Status::cancelled("the client went away"))
    }
}

/// Permission to write the data of an upload (see [`Runner::call_upload`]).
pub(crate) struct Confirm {
    ready: Option<tokio::sync::oneshot::Sender<()>>,
    go: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl Confirm {
    /// Wait until the call is known to be alive after its upload ended; an error
    /// if the client canceled it.
    pub(crate) async fn upload_complete(&mut self) -> Result<(), Status> {
        if let (Some(ready), Some(go)) = (self.ready.take(), self.go.take()) {
            let _ = ready.send(());
            go.await.map_err(|_| {
                Status::cancelled("the client canceled the upload: nothing written")
            })?;
        }
        Ok(())
    }
}

/// The limits and runtime Flight requests share.
#[derive(Clone)]
pub(crate) struct Runner {
    engine: Arc<Engine>,
    runtime: Option<Handle>,
    timeout: Option<Duration>,
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("timeout", &self.timeout)
            .field("free_slots", &self.slots.available_permits())
            .finish()
    }
}

impl Runner {
    pub(crate) fn new(
        engine: Arc<Engine>,
        runtime: Option<Handle>,
        statement_timeout_ms: u64,
        max_streams: usize,
    ) -> Self {
        Runner {
            engine,
            runtime,
            timeout: (statement_timeout_ms > 0)
                .then(|| Duration::from_millis(statement_timeout_ms)),
            slots: Arc::new(Semaphore::new(max_streams.max(1))),
        }
    }

    /// A new session on the engine.
    pub(crate) fn session(&self) -> Result<Session, Status> {
        self.engine.session().map_err(status)
    }

    fn slot(&self) -> Result<OwnedSemaphorePermit, Status> {
        self.slots.clone().try_acquire_owned().map_err(|_| {
            let mut s = Status::resource_exhausted(
                "sorry, too many clients already: every Flight stream slot is in use (SQLSTATE 53300)",
            );
            if let Ok(v) = "53300".parse() {
                s.metadata_mut().insert("x-sqlstate", v);
            }
            s
        })
    }

    fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match &self.runtime {
            Some(h) => drop(h.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }

    /// Run `work` (planning, a command, a write) to its answer, under a slot and the
    /// statement timeout, on the query runtime.
    pub(crate) async fn call<T, F, Fut>(&self, work: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(Session) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, Status>> + Send + 'static,
    {
        let permit = self.slot()?;
        let session = self.session()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let limit = self.timeout;
        self.spawn(async move {
            let _permit = permit;
            let result = within(limit, work(session)).await;
            let _ = tx.send(result);
        });
        rx.await.unwrap_or_else(|_| {
            Err(status(SqlError::internal(
                "a Flight request's task ended early",
            )))
        })
    }

    /// [`Runner::call`] for work that ends a client's upload (`DoPut`): before
    /// writing, `work` waits on [`Confirm::upload_complete`], which succeeds only if
    /// the call is still alive once the upload's end was read. hyper turns a client's
    /// RST_STREAM (a canceled call) into a clean end of the request body, so the end
    /// alone does not prove the client finished; the reset does reach this handler,
    /// which hyper drops when it next waits, and with it the permission to write.
    pub(crate) async fn call_upload<T, F, Fut>(&self, work: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(Session, Confirm) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, Status>> + Send + 'static,
    {
        let (ready, ready_rx) = tokio::sync::oneshot::channel();
        let (go_tx, go) = tokio::sync::oneshot::channel();
        let confirm = Confirm {
            ready: Some(ready),
            go: Some(go),
        };
        let call = self.call(move |session| work(session, confirm));
        let gate = async move {
            if ready_rx.await.is_ok() {
                // Wait once: hyper checks for a reset of this call while it waits.
                tokio::task::yield_now().await;
                let _ = go_tx.send(());
            }
            std::future::pending::<Result<T, Status>>().await
        };
        tokio::select! {
            result = call => result,
            never = gate => never,
        }
    }

    /// Run `work`, which sends a result through its [`Sink`], as a Flight stream:
    /// returns once the schema is known (or the statement failed before it).
    pub(crate) async fn stream<F, Fut>(&self, work: F) -> Result<FlightStream, Status>
    where
        F: FnOnce(Session, Sink) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), Status>> + Send + 'static,
    {
        let permit = self.slot()?;
        let session = self.session()?;
        let (tx, mut rx) = mpsc::channel(2);
        let sink = Sink {
            tx: tx.clone(),
            started: false,
        };
        let limit = self.timeout;
        self.spawn(async move {
            let _permit = permit;
            tokio::select! {
                result = within(limit, work(session, sink)) => {
                    if let Err(e) = result {
                        let _ = tx.send(Err(e)).await;
                    }
                }
                _ = tx.closed() => {}
            }
        });
        let schema = match rx.recv().await {
            Some(Ok(Item::Schema(schema))) => schema,
            Some(Err(e)) => return Err(e),
            Some(Ok(Item::Batch(_))) | None => {
                return Err(status(SqlError::internal(
                    "a result stream ended before its schema",
                )));
            }
        };
        let batches = futures::stream::unfold(rx, |mut rx| async move {
            let item = match rx.recv().await? {
                Ok(Item::Batch(b)) => Ok(b),
                Ok(Item::Schema(_)) => Err(FlightError::ProtocolError("a second schema".into())),
                Err(s) => Err(FlightError::Tonic(Box::new(s))),
            };
            Some((item, rx))
        });
        Ok(encode(schema, batches))
    }
}

/// A result of `schema` (and no rows) as a Flight stream.
pub(crate) fn empty(schema: SchemaRef) -> FlightStream {
    encode(schema, futures::stream::empty())
}

/// Batches as Flight messages (Arrow IPC), schema first.
pub(crate) fn encode<S>(schema: SchemaRef, batches: S) -> FlightStream
where
    S: Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static,
{
    Box::pin(
        FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from),
    )
}

/// `fut`, unless it outlives `limit` (then 57014).
async fn within<T>(
    limit: Option<Duration>,
    fut: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    match limit {
        Some(d) => tokio::time::timeout(d, fut)
            .await
            .unwrap_or_else(|_| Err(timeout())),
        None => fut.await,
    }
}

/// A SQL-layer error for a request that needs something we do not do.
pub(crate) fn unsupported(what: &str) -> Status {
    status(SqlError::new(ErrorKind::FeatureNotSupported, what))
}
