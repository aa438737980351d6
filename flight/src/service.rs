//! The Flight SQL service: admits each call ([`crate::auth`]) and dispatches it to
//! statements ([`crate::runner`]), prepared statements ([`crate::prepared`]),
//! metadata ([`crate::metadata`]) or ingest ([`crate::ingest`]).
//!
//! Statements: `GetFlightInfo` prepares the SQL in a fresh session. A query's info
//! carries its schema and a ticket holding the SQL; `DoGet` runs it in a new session
//! and streams the batches. A statement that returns no rows (DDL, DML: ADBC sends
//! every `execute` as a query, prepared first) runs right there in `GetFlightInfo`,
//! plain or prepared, so it has happened when the call returns (ADBC reads results in
//! the background); its info's `total_records` is the affected-row count and its
//! ticket reads as an empty result. Updates by `DoPut` return their row counts.
//! Substrait plans, Flight transactions, savepoints, cross-reference and
//! exported/imported keys (there are no foreign keys) are `UNIMPLEMENTED`.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementIngest,
    CommandStatementQuery, CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt,
    SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage,
    SchemaAsIpc, Ticket, flight_service_server::FlightService,
};
use arrow_ipc::writer::IpcWriteOptions;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use futures::{Stream, TryStreamExt};
use hindsight_sql::{CATALOG, Output};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Authenticator, Caller};
use crate::error::{arrow, status};
use crate::metadata::{self, TABLE_TYPES};
use crate::prepared::{Registry, Statement};
use crate::runner::{Runner, empty, encode, unsupported};
use crate::ticket::StatementTicket;

type DoGet = Result<Response<<HsFlightSql as FlightService>::DoGetStream>, Status>;

/// The Flight SQL service over one engine.
#[derive(Debug)]
pub struct HsFlightSql {
    pub(crate) runner: Runner,
    pub(crate) auth: Authenticator,
    pub(crate) prepared: Registry,
}

impl HsFlightSql {
    fn admit<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        self.auth.admit(request.metadata(), peer(request))
    }

    /// A `FlightInfo` for a result of `schema` read with the ticket `ticket`.
    fn info(
        schema: &Schema,
        ticket: Vec<u8>,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket));
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(arrow)?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    /// A metadata command's `FlightInfo`, for an admitted caller: its result
    /// schema, and the command itself as the ticket.
    fn metadata_info(
        &self,
        request: Request<FlightDescriptor>,
        schema: &Schema,
        command: Any,
    ) -> Result<Response<FlightInfo>, Status> {
        self.admit(&request)?;
        Self::command_info(schema, command, request.into_inner())
    }

    /// The `FlightInfo` of a command `GetFlightInfo` already ran: no columns, the
    /// affected rows as `total_records`, a ticket that reads as an empty result.
    fn ran_info(rows: i64, descriptor: FlightDescriptor) -> Result<Response<FlightInfo>, Status> {
        let handle = TicketStatementQuery {
            statement_handle: StatementTicket::Done.encode().into(),
        };
        let mut info = Self::info(
            &Schema::empty(),
            handle.as_any().encode_to_vec(),
            descriptor,
        )?;
        info.get_mut().total_records = rows;
        Ok(info)
    }

    /// A `FlightInfo` whose ticket is the command itself.
    fn command_info(
        schema: &Schema,
        command: Any,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        Self::info(schema, command.encode_to_vec(), descriptor)
    }

    /// Run `work` and answer `DoGet` with the batch it builds.
    async fn one_batch<F, Fut>(&self, work: F) -> DoGet
    where
        F: FnOnce(hindsight_sql::Session) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<RecordBatch, Status>> + Send + 'static,
    {
        reply(self.runner.call(work).await?)
    }
}

/// Answer `DoGet` with one batch.
fn reply(batch: RecordBatch) -> DoGet {
    Ok(Response::new(encode(
        batch.schema(),
        futures::stream::iter([Ok(batch)]),
    )))
}

/// The caller's IP address.
fn peer<T>(request: &Request<T>) -> Option<IpAddr> {
    request.remote_addr().map(|a| a.ip())
}

/// A schema as Flight SQL sends it inside messages (an IPC schema message).
fn ipc_schema(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(arrow)?;
    Ok(bytes)
}

/// What `GetFlightInfo` learned of a statement: the schema of the rows a `DoGet`
/// will stream, or the affected-row count of a command it already ran.
enum Described {
    Rows(SchemaRef),
    Ran(i64),
}

/// Prepare `sql` in `session`: its result schema, or (a statement returning no
/// rows) run it now.
async fn describe_or_run(
    mut session: hindsight_sql::Session,
    sql: String,
) -> Result<Described, Status> {
    let prepared = session.prepare(&sql, &[]).await.map_err(status)?;
    if let Some(schema) = prepared.schema {
        return Ok(Described::Rows(schema));
    }
    let out = session
        .execute_prepared(&prepared, Vec::new())
        .await
        .map_err(status)?;
    Ok(Described::Ran(affected(out)))
}

/// Execute a prepared statement once per bound parameter row; the total
/// affected-row count.
async fn execute_all(held: &mut Statement) -> Result<i64, Status> {
    let mut total = 0i64;
    for params in held.executions() {
        let Statement {
            session, prepared, ..
        } = &mut *held;
        let out = session
            .execute_prepared(prepared, params)
            .await
            .map_err(status)?;
        total += affected(out).max(0);
    }
    Ok(total)
}

/// Run `sql` (one statement), collecting its affected-row count.
async fn update(mut session: hindsight_sql::Session, sql: String) -> Result<i64, Status> {
    let mut statements = session.parse(&sql).map_err(status)?;
    if statements.len() != 1 {
        return Err(Status::invalid_argument("send exactly one statement"));
    }
    let Some(stmt) = statements.pop() else {
        return Err(Status::invalid_argument("send exactly one statement"));
    };
    let out = session.execute(stmt).await.map_err(status)?;
    Ok(affected(out))
}

/// The affected-row count of a command (-1: unknown, as Flight SQL says).
fn affected(out: Output) -> i64 {
    match out {
        Output::Command { rows: Some(n), .. } => n as i64,
        _ => -1,
    }
}

/// Decode the batches of a `DoPut` stream.
async fn read_batches(data: PeekableFlightDataStream) -> Result<Vec<RecordBatch>, Status> {
    crate::ingest::decode(data)
        .try_collect()
        .await
        .map_err(Status::from)
}

#[tonic::async_trait]
impl FlightSqlService for HsFlightSql {
    type FlightService = HsFlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let bearer = self.auth.handshake(request.metadata(), peer(&request))?;
        let token = bearer.trim_start_matches("Bearer ").as_bytes().to_vec();
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: token.into(),
        };
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(futures::stream::iter([Ok(reply)])));
        let value = MetadataValue::try_from(bearer.as_str())
            .map_err(|_| Status::internal("a token that is not a header value"))?;
        response.metadata_mut().insert("authorization", value);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.admit(&request)?;
        if query.transaction_id.is_some() {
            return Err(unsupported("Flight SQL transactions are not supported"));
        }
        let sql = query.query.clone();
        let described = self
            .runner
            .call(move |session| describe_or_run(session, sql))
            .await?;
        let descriptor = request.into_inner();
        match described {
            Described::Rows(schema) => {
                let handle = TicketStatementQuery {
                    statement_handle: StatementTicket::Query(query.query).encode().into(),
                };
                Self::info(&schema, handle.as_any().encode_to_vec(), descriptor)
            }
            Described::Ran(rows) => Self::ran_info(rows, descriptor),
        }
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> DoGet {
        self.admit(&request)?;
        let sql = match StatementTicket::decode(&ticket.statement_handle)? {
            StatementTicket::Query(sql) => sql,
            StatementTicket::Done => return Ok(Response::new(empty(Arc::new(Schema::empty())))),
        };
        let stream = self
            .runner
            .stream(move |mut session, mut sink| async move {
                let mut statements = session.parse(&sql).map_err(status)?;
                let (Some(stmt), true) = (statements.pop(), statements.is_empty()) else {
                    return Err(Status::invalid_argument(
                        "a ticket holds exactly one statement",
                    ));
                };
                let out = session.execute(stmt).await.map_err(status)?;
                sink.output(out).await
            })
            .await?;
        Ok(Response::new(stream))
    }

    async fn do_get_fallback(&self, request: Request<Ticket>, message: Any) -> DoGet {
        self.admit(&request)?;
        Err(Status::invalid_argument(format!(
            "malformed ticket: {} is not a ticket this server issues",
            message.type_url
        )))
    }

    async fn do_put_statement_update(
        &self,
        cmd: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.admit(&request)?;
        if cmd.transaction_id.is_some() {
            return Err(unsupported("Flight SQL transactions are not supported"));
        }
        self.runner.call(move |s| update(s, cmd.query)).await
    }

    async fn do_put_statement_ingest(
        &self,
        cmd: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.admit(&request)?;
        let data = request.into_inner();
        self.runner
            .call_upload(move |session, confirm| crate::ingest::ingest(session, cmd, data, confirm))
            .await
    }

    // -- prepared statements -------------------------------------------------------

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let caller = self.admit(&request)?;
        if query.transaction_id.is_some() {
            return Err(unsupported("Flight SQL transactions are not supported"));
        }
        let statement = self
            .runner
            .call(move |mut session| async move {
                let prepared = session.prepare(&query.query, &[]).await.map_err(status)?;
                Ok(Statement {
                    session,
                    prepared,
                    params: Vec::new(),
                })
            })
            .await?;
        let dataset_schema = ipc_schema(&statement.dataset_schema())?;
        let parameter_schema = ipc_schema(&statement.parameter_schema())?;
        let handle = self.prepared.insert(&caller, statement)?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into(),
            dataset_schema,
            parameter_schema,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        let caller = self.admit(&request)?;
        self.prepared
            .remove(&caller, &query.prepared_statement_handle)
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let caller = self.admit(&request)?;
        let statement = self
            .prepared
            .get(&caller, &query.prepared_statement_handle)?;
        let batches = read_batches(request.into_inner()).await?;
        statement.lock().await.bind(&batches)?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(query.prepared_statement_handle),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.admit(&request)?;
        let statement = self.prepared.get(&caller, &cmd.prepared_statement_handle)?;
        let rows = statement.lock().await.prepared.schema.clone();
        if let Some(schema) = rows {
            return Self::command_info(&schema, cmd.as_any(), request.into_inner());
        }
        // A command (ADBC prepares every DB-API `execute`): run it now, so it has
        // happened when the call returns, as for an unprepared statement.
        let rows = self
            .runner
            .call(move |_| async move { execute_all(&mut *statement.lock_owned().await).await })
            .await?;
        Self::ran_info(rows, request.into_inner())
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> DoGet {
        let caller = self.admit(&request)?;
        let statement = self.prepared.get(&caller, &cmd.prepared_statement_handle)?;
        let stream = self
            .runner
            .stream(move |_, mut sink| async move {
                let mut held = statement.lock_owned().await;
                let schema = held.dataset_schema();
                sink.start(schema).await?;
                for params in held.executions() {
                    let Statement {
                        session, prepared, ..
                    } = &mut *held;
                    let out = session
                        .execute_prepared(prepared, params)
                        .await
                        .map_err(status)?;
                    sink.output(out).await?;
                }
                Ok(())
            })
            .await?;
        Ok(Response::new(stream))
    }

    async fn do_put_prepared_statement_update(
        &self,
        cmd: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let caller = self.admit(&request)?;
        let statement = self.prepared.get(&caller, &cmd.prepared_statement_handle)?;
        let data = request.into_inner();
        self.runner
            .call_upload(move |_, mut confirm| async move {
                let batches = read_batches(data).await?;
                confirm.upload_complete().await?;
                let mut held = statement.lock_owned().await;
                if !batches.is_empty() {
                    held.bind(&batches)?;
                }
                execute_all(&mut held).await
            })
            .await
    }

    // -- metadata --------------------------------------------------------------------

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.admit(&request)?;
        let schema = query.clone().into_builder(metadata::sql_info()?).schema();
        Self::command_info(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_sql_info(&self, query: CommandGetSqlInfo, request: Request<Ticket>) -> DoGet {
        self.admit(&request)?;
        reply(
            query
                .into_builder(metadata::sql_info()?)
                .build()
                .map_err(Status::from)?,
        )
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let command = query.as_any();
        self.metadata_info(request, &query.into_builder().schema(), command)
    }

    async fn do_get_catalogs(&self, query: CommandGetCatalogs, request: Request<Ticket>) -> DoGet {
        self.admit(&request)?;
        let mut b = query.into_builder();
        b.append(CATALOG);
        reply(b.build().map_err(Status::from)?)
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let command = query.as_any();
        self.metadata_info(request, &query.into_builder().schema(), command)
    }

    async fn do_get_schemas(&self, query: CommandGetDbSchemas, request: Request<Ticket>) -> DoGet {
        self.admit(&request)?;
        self.one_batch(move |s| metadata::schemas(s, query)).await
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let command = query.as_any();
        self.metadata_info(request, &query.into_builder().schema(), command)
    }

    async fn do_get_tables(&self, query: CommandGetTables, request: Request<Ticket>) -> DoGet {
        self.admit(&request)?;
        self.one_batch(move |s| metadata::tables(s, query)).await
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let command = query.as_any();
        self.metadata_info(request, &query.into_builder().schema(), command)
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> DoGet {
        self.admit(&request)?;
        let mut b = query.into_builder();
        TABLE_TYPES.iter().for_each(|t| b.append(t));
        reply(b.build().map_err(Status::from)?)
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(request, &metadata::primary_keys_schema(), query.as_any())
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> DoGet {
        self.admit(&request)?;
        self.one_batch(move |s| async move { metadata::primary_keys(&s, &query) })
            .await
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
