//! What one connection holds: its socket, session, registration, prepared
//! statements and portals, and the extended-protocol skip flag. A leaf of the
//! connection: the other rooms add methods to [`Connection`] and import it here.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use datafusion::arrow::datatypes::DataType as ArrowType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::physical_plan::SendableRecordBatchStream;
use hindsight_sql::{Prepared, Session};
use hindsight_storage::DataType as StorageType;
use pgwire::messages::PgWireBackendMessage as B;
use pgwire::tokio::server::MaybeTls;
use tokio_util::codec::Framed;

use super::rows::{Formats, row_description};
use crate::codec::{Frame, HsCodec};
use crate::copy::CopyCommand;
use crate::named::Named;
use crate::shared::{Registration, Shared, Slot};
use crate::types::pg_type;

/// How long a client may take to finish startup and authentication.
pub(super) const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) type Socket = Framed<MaybeTls, HsCodec>;

/// A parsed (and where possible planned) statement.
pub(super) struct Stmt {
    pub(super) prepared: Prepared,
    /// A COPY, which the protocol layer runs itself.
    pub(super) copy: Option<CopyCommand>,
    /// Parameter OIDs as the client declared them (0: unspecified).
    pub(super) declared: Vec<u32>,
    /// The encoded RowDescription of its rows in text format (libpq describes the
    /// portal on every execution; this answers without rebuilding it), or None if
    /// the statement returns no rows.
    pub(super) text_row_description: Option<Bytes>,
    /// For a point lookup: each column's storage type and the Arrow type it is
    /// described as (what [`encode_value`] needs).
    pub(super) lookup: Option<Vec<(StorageType, ArrowType)>>,
    /// Its SQL, shortened, for the log line of a failed execution.
    pub(super) sql: Arc<str>,
}

impl Stmt {
    pub(super) fn new(
        prepared: Prepared,
        copy: Option<CopyCommand>,
        declared: Vec<u32>,
        sql: Arc<str>,
    ) -> Stmt {
        let text_row_description = prepared
            .schema
            .as_ref()
            .filter(|s| !s.fields().is_empty())
            .and_then(|s| {
                let mut buf = BytesMut::new();
                B::RowDescription(row_description(s, &Formats::TEXT))
                    .encode(&mut buf)
                    .ok()
                    .map(|()| buf.freeze())
            });
        let lookup = match (prepared.point_lookup_types(), &prepared.schema) {
            (Some(types), Some(schema)) if types.len() == schema.fields().len() => Some(
                types
                    .iter()
                    .zip(schema.fields())
                    .map(|(t, f)| (*t, f.data_type().clone()))
                    .collect(),
            ),
            _ => None,
        };
        Stmt {
            prepared,
            copy,
            declared,
            text_row_description,
            lookup,
            sql,
        }
    }

    pub(super) fn param_oids(&self) -> Vec<u32> {
        self.prepared
            .param_types
            .iter()
            .enumerate()
            .map(|(i, t)| match self.declared.get(i) {
                Some(&o) if o != 0 => o,
                _ => t
                    .as_ref()
                    .map(|t| pg_type(t).oid)
                    .unwrap_or(crate::types::oid::TEXT),
            })
            .collect()
    }
}

/// What a session's wait for its next message ends with.
pub(super) enum Next {
    Frame(Option<std::io::Result<Frame>>),
    Shutdown,
    /// This node stopped leading its cluster since the session started.
    Demoted,
}

pub(super) enum PortalState {
    Ready,
    Running {
        stream: SendableRecordBatchStream,
        pending: Option<(RecordBatch, usize)>,
        sent: u64,
    },
    Done,
}

pub(super) struct Portal {
    pub(super) stmt: Arc<Stmt>,
    pub(super) params: Vec<ScalarValue>,
    /// Per result column: binary format?
    pub(super) binary: Formats,
    pub(super) state: PortalState,
}

/// The longest statement text a log line quotes.
const LOGGED_SQL_CHARS: usize = 300;

/// A statement's text as log lines quote it: whitespace runs folded, at most
/// [`LOGGED_SQL_CHARS`] characters.
pub(super) fn loggable(sql: &str) -> Arc<str> {
    let mut out = String::with_capacity(sql.len().min(LOGGED_SQL_CHARS + 3));
    for (n, word) in sql.split_whitespace().enumerate() {
        if n > 0 {
            out.push(' ');
        }
        out.push_str(word);
        if out.len() > LOGGED_SQL_CHARS {
            let cut = (0..=LOGGED_SQL_CHARS)
                .rev()
                .find(|&i| out.is_char_boundary(i))
                .unwrap_or(0);
            out.truncate(cut);
            out.push_str("...");
            break;
        }
    }
    out.into()
}

pub(crate) struct Connection {
    pub(crate) socket: Socket,
    /// The client's address (named in the log line of a failed statement).
    pub(super) peer: std::net::SocketAddr,
    /// The statement being run, as [`loggable`] shortens it.
    pub(super) statement: Arc<str>,
    pub(super) shared: Arc<Shared>,
    pub(crate) session: Session,
    pub(super) reg: Registration,
    /// Where statements other than point lookups run (see [`Scope`]).
    pub(super) query_runtime: Option<tokio::runtime::Handle>,
    pub(super) statements: Named<Arc<Stmt>>,
    pub(super) portals: Named<Portal>,
    /// An extended-protocol error happened: discard until Sync.
    pub(super) skipping: bool,
    pub(super) _slot: Slot,
}
