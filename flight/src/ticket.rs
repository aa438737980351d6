//! The statement tickets this server hands out (inside Flight SQL's
//! `TicketStatementQuery.statement_handle`): self-contained, so any `DoGet` (on any
//! connection, after any delay) can run them without server-side state.
//!
//! Layout (FORMAT.md, "Flight tickets"): the magic `HSFT`, a version byte (1), a kind
//! byte, then the kind's body:
//! - kind 1, a query: the SQL text (UTF-8, the rest of the ticket);
//! - kind 2, a command already run by `GetFlightInfo`: no body (the stream is empty).
//!
//! Invariant: decoding never panics; anything else is a clear `InvalidArgument`.

use tonic::Status;

const MAGIC: &[u8; 4] = b"HSFT";
const VERSION: u8 = 1;
const QUERY: u8 = 1;
const DONE: u8 = 2;

/// What a ticket asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StatementTicket {
    /// Run this query and stream its rows.
    Query(String),
    /// A command that already ran: an empty stream.
    Done,
}

impl StatementTicket {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.push(VERSION);
        match self {
            StatementTicket::Query(sql) => {
                out.push(QUERY);
                out.extend_from_slice(sql.as_bytes());
            }
            StatementTicket::Done => out.push(DONE),
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, Status> {
        let bad = |why: &str| Status::invalid_argument(format!("malformed ticket: {why}"));
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| bad("not issued by this server"))?;
        let (&version, rest) = rest.split_first().ok_or_else(|| bad("truncated"))?;
        if version != VERSION {
            return Err(bad(&format!("unknown version {version}")));
        }
        let (&kind, body) = rest.split_first().ok_or_else(|| bad("truncated"))?;
        match kind {
            QUERY => std::str::from_utf8(body)
                .map(|s| StatementTicket::Query(s.to_string()))
                .map_err(|_| bad("the query is not UTF-8")),
            DONE if body.is_empty() => Ok(StatementTicket::Done),
            _ => Err(bad(&format!("unknown kind {kind}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        for t in [
            StatementTicket::Query("SELECT 1".into()),
            StatementTicket::Done,
        ] {
            assert_eq!(StatementTicket::decode(&t.encode()).unwrap(), t);
        }
        for junk in [
            &b""[..],
            b"HSFT",
            b"HSFT\x01",
            b"HSFT\x02\x01",
            b"HSFT\x01\x09",
            b"HSFT\x01\x01\xff",
            b"xxxx\x01\x01",
        ] {
            let e = StatementTicket::decode(junk).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
        }
    }
}
