//! Framing of the Postgres protocol on a socket: pgwire's message types, with the
//! checks a server needs before it trusts a frame.
//!
//! Invariants:
//! - a frame longer than the configured limit is rejected from its header, before
//!   its body is buffered (no memory is spent on an oversized message);
//! - `Query` and `Parse` bodies must be valid UTF-8 (pgwire would decode them lossily);
//! - a frame whose body does not parse is a protocol violation, never a panic: the
//!   frame is cut from the buffer first and decoded in isolation;
//! - outgoing messages are only buffered here; the connection decides when to flush
//!   (once per Sync, Flush or simple query), which is what makes pipelined extended
//!   queries cost one write.

use bytes::{BufMut, BytesMut};
use pgwire::messages::{DecodeContext, PgWireBackendMessage, PgWireFrontendMessage};
use tokio_util::codec::{Decoder, Encoder};

use crate::sqlstate::ProtocolError;

/// Where in the connection's life the decoder is (which framing applies).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Startup packet (no type byte) expected.
    Startup,
    /// Password or SASL response expected.
    Authenticating,
    /// Regular typed messages.
    Ready,
}

/// What the decoder produces: a message, or a frame that was consumed but refused.
#[derive(Debug)]
pub enum Frame {
    Message(PgWireFrontendMessage),
    Refused(ProtocolError),
}

/// Output: a pgwire message, or bytes already framed (DataRows, CopyData).
#[derive(Debug)]
pub enum Outgoing {
    Message(PgWireBackendMessage),
    Raw(BytesMut),
}

impl From<PgWireBackendMessage> for Outgoing {
    fn from(m: PgWireBackendMessage) -> Self {
        Outgoing::Message(m)
    }
}

#[derive(Debug)]
pub struct HsCodec {
    pub phase: Phase,
    max_message: usize,
}

impl HsCodec {
    pub fn new(max_message: usize) -> Self {
        HsCodec {
            phase: Phase::Startup,
            max_message,
        }
    }

    fn context(&self) -> DecodeContext {
        let mut ctx = DecodeContext::default();
        ctx.awaiting_frontend_ssl = false;
        ctx.awaiting_frontend_startup = self.phase == Phase::Startup;
        ctx
    }
}

/// Decode an isolated frame with pgwire, turning its panics on malformed bodies
/// (it reads with `bytes::Buf`, which panics on underflow) into a protocol error.
fn decode_isolated(
    mut frame: BytesMut,
    ctx: &DecodeContext,
) -> Result<Option<PgWireFrontendMessage>, ProtocolError> {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        PgWireFrontendMessage::decode(&mut frame, ctx)
    }));
    match outcome {
        Ok(Ok(Some(m))) => Ok(Some(m)),
        Ok(Ok(None)) => Err(ProtocolError::Violation(
            "incomplete message body".to_string(),
        )),
        Ok(Err(e)) => Err(ProtocolError::Violation(format!("invalid message: {e}"))),
        Err(_) => Err(ProtocolError::Violation(
            "invalid message format".to_string(),
        )),
    }
}

/// Whether the SQL text of a Query (its body) or a Parse (its name and query, the
/// first two C strings; parameter OIDs follow in binary) is valid UTF-8.
fn text_is_utf8(frame: &[u8]) -> bool {
    let body = frame.get(5..).unwrap_or_default();
    let text = match frame.first() {
        Some(b'Q') => body,
        Some(b'P') => {
            let mut nuls = body.iter().enumerate().filter(|(_, b)| **b == 0);
            let end = nuls.nth(1).map_or(body.len(), |(i, _)| i);
            body.get(..end).unwrap_or(body)
        }
        _ => return true,
    };
    std::str::from_utf8(text).is_ok()
}

impl Decoder for HsCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        // Startup-phase packets have no type byte: length(4) then body.
        let header = if self.phase == Phase::Startup { 0 } else { 1 };
        if src.len() < header + 4 {
            return Ok(None);
        }
        let mut len_bytes = [0u8; 4];
        len_bytes.copy_from_slice(&src[header..header + 4]);
        let len = i32::from_be_bytes(len_bytes);
        if len < 4 {
            src.clear();
            return Ok(Some(Frame::Refused(ProtocolError::Violation(format!(
                "invalid message length {len}"
            )))));
        }
        let total = header + len as usize;
        if total > self.max_message {
            src.clear();
            return Ok(Some(Frame::Refused(ProtocolError::TooLarge {
                size: total,
                limit: self.max_message,
            })));
        }
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        let frame = src.split_to(total);
        if header == 1 && !text_is_utf8(&frame) {
            return Ok(Some(Frame::Refused(ProtocolError::InvalidUtf8)));
        }
        Ok(Some(match decode_isolated(frame, &self.context()) {
            Ok(Some(m)) => Frame::Message(m),
            Ok(None) => Frame::Refused(ProtocolError::Violation("empty message".into())),
            Err(e) => Frame::Refused(e),
        }))
    }
}

impl Encoder<Outgoing> for HsCodec {
    type Error = std::io::Error;

    fn encode(&mut self, item: Outgoing, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        match item {
            Outgoing::Message(m) => m
                .encode(dst)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())),
            Outgoing::Raw(bytes) => {
                dst.put(bytes);
                Ok(())
            }
        }
    }
}

/// Start a DataRow of `fields` fields in `buf`; returns where it starts, for
/// [`finish_row`].
pub fn begin_row(buf: &mut BytesMut, fields: i16) -> usize {
    let start = buf.len();
    buf.put_u8(b'D');
    buf.put_i32(0);
    buf.put_i16(fields);
    start
}

/// Fill in the length of the DataRow started at `start`.
pub fn finish_row(buf: &mut BytesMut, start: usize) {
    let len = (buf.len() - start - 1) as i32;
    if let Some(slot) = buf.get_mut(start + 1..start + 5) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
}

/// A CommandComplete message (`SELECT 3`, `INSERT 0 1`, ...) appended to `buf`
/// without building the tag as a string first.
pub fn put_command_complete(buf: &mut BytesMut, tag: &str, rows: Option<u64>) {
    let start = buf.len();
    buf.put_u8(b'C');
    buf.put_i32(0);
    buf.put_slice(tag.as_bytes());
    if let Some(n) = rows {
        if tag == "INSERT" {
            buf.put_slice(b" 0");
        }
        buf.put_u8(b' ');
        buf.put_slice(itoa::Buffer::new().format(n).as_bytes());
    }
    buf.put_u8(0);
    let len = (buf.len() - start - 1) as i32;
    if let Some(slot) = buf.get_mut(start + 1..start + 5) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
}

/// The BindComplete message.
pub const BIND_COMPLETE: &[u8] = b"2\0\0\0\x04";

/// Builds DataRow messages straight into one buffer (no per-row allocation).
#[derive(Debug, Default)]
pub struct RowWriter {
    pub buf: BytesMut,
    start: usize,
}

impl RowWriter {
    pub fn begin(&mut self, fields: i16) {
        self.start = begin_row(&mut self.buf, fields);
    }

    pub fn finish(&mut self) {
        finish_row(&mut self.buf, self.start);
    }

    pub fn take(&mut self) -> BytesMut {
        self.buf.split()
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready() -> HsCodec {
        let mut c = HsCodec::new(1024);
        c.phase = Phase::Ready;
        c
    }

    #[test]
    fn command_complete_and_bind_complete_encode_like_pgwire() {
        use pgwire::messages::extendedquery::BindComplete;
        use pgwire::messages::response::CommandComplete;
        for (tag, rows, text) in [
            ("SELECT", Some(3), "SELECT 3"),
            ("INSERT", Some(1), "INSERT 0 1"),
            ("BEGIN", None, "BEGIN"),
        ] {
            let mut ours = BytesMut::new();
            put_command_complete(&mut ours, tag, rows);
            let mut theirs = BytesMut::new();
            PgWireBackendMessage::CommandComplete(CommandComplete::new(text.to_string()))
                .encode(&mut theirs)
                .unwrap();
            assert_eq!(ours, theirs);
        }
        let mut theirs = BytesMut::new();
        PgWireBackendMessage::BindComplete(BindComplete::new())
            .encode(&mut theirs)
            .unwrap();
        assert_eq!(&theirs[..], BIND_COMPLETE);
    }

    #[test]
    fn oversized_frames_are_refused_from_the_header() {
        let mut c = ready();
        let mut b = BytesMut::new();
        b.put_u8(b'Q');
        b.put_i32(1_000_000);
        match c.decode(&mut b).unwrap() {
            Some(Frame::Refused(ProtocolError::TooLarge { .. })) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn invalid_utf8_queries_are_refused() {
        let mut c = ready();
        let mut b = BytesMut::new();
        b.put_u8(b'Q');
        b.put_i32(4 + 3);
        b.put_slice(&[0xff, 0xfe, 0]);
        assert!(matches!(
            c.decode(&mut b).unwrap(),
            Some(Frame::Refused(ProtocolError::InvalidUtf8))
        ));
        assert!(b.is_empty());
    }

    #[test]
    fn parse_messages_with_binary_parameter_oids_are_accepted() {
        let mut c = ready();
        let mut b = BytesMut::new();
        // Parse: name "", query "SELECT $1", one parameter OID 0x000000c8 (has 0xc8).
        let body: &[u8] = b"\0SELECT $1\0\0\x01\0\0\0\xc8";
        b.put_u8(b'P');
        b.put_i32(4 + body.len() as i32);
        b.put_slice(body);
        assert!(matches!(c.decode(&mut b).unwrap(), Some(Frame::Message(_))));
    }

    #[test]
    fn truncated_bodies_are_violations_not_panics() {
        let mut c = ready();
        // A Bind whose body claims parameters it does not carry.
        let mut b = BytesMut::new();
        b.put_u8(b'B');
        b.put_i32(4 + 4);
        b.put_slice(&[0, 0, 0, 9]);
        assert!(matches!(
            c.decode(&mut b).unwrap(),
            Some(Frame::Refused(ProtocolError::Violation(_)))
        ));
        let mut b = BytesMut::new();
        b.put_u8(b'Q');
        b.put_i32(4 + 6);
        b.put_slice(b"SELECT");
        // No NUL terminator: still no panic.
        assert!(c.decode(&mut b).unwrap().is_some());
    }
}
