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
//!   queries cost one write;
//! - Bind, the one message of every prepared execution that carries data, is decoded
//!   here into a [`BindMsg`] that keeps its frame (pgwire's owns a String and three
//!   Vecs); its layout is checked whole before the connection reads any field, its
//!   names are checked to be UTF-8 when read; Describe, Execute and Sync are
//!   decoded here too, with the same checks (nothing may follow their fields).

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use pgwire::messages::{DecodeContext, PgWireBackendMessage, PgWireFrontendMessage};
use tokio_util::codec::{Decoder, Encoder};

use crate::cursor::Cursor;
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
    Bind(BindMsg),
    Refused(ProtocolError),
    /// An extended-protocol message (Parse, Bind, Describe, Execute) refused with a
    /// non-fatal error: like a failed one, the rest up to Sync is skipped.
    RefusedExtended(ProtocolError),
}

/// A Bind message, checked and kept as its frame: names, format codes and parameter
/// values are read from the frame's bytes on demand.
#[derive(Debug)]
pub struct BindMsg {
    frame: Bytes,
    portal: Range<usize>,
    statement: Range<usize>,
    param_formats: Range<usize>,
    /// The parameter values (each a 4-byte length, -1 for NULL, then the bytes).
    params: Range<usize>,
    param_count: usize,
    result_formats: Range<usize>,
}

/// Format codes of a Bind (2 bytes each, big-endian).
#[derive(Clone, Copy, Debug)]
pub struct Codes<'a>(&'a [u8]);

impl<'a> Codes<'a> {
    pub fn len(&self) -> usize {
        self.0.len() / 2
    }

    pub fn iter(&self) -> impl Iterator<Item = i16> + 'a {
        self.0
            .chunks_exact(2)
            .filter_map(|c| <[u8; 2]>::try_from(c).ok().map(i16::from_be_bytes))
    }
}

impl BindMsg {
    /// Check a whole Bind frame (type byte and length included) and note where its
    /// parts are; a violation names what is wrong.
    pub fn parse(frame: Bytes) -> Result<BindMsg, ProtocolError> {
        let mut r = Reader::new(&frame, 5);
        let portal = r.cstring()?;
        let statement = r.cstring()?;
        let n = r.count()?;
        let param_formats = r.take(2 * n)?;
        let param_count = r.count()?;
        let start = r.pos();
        for _ in 0..param_count {
            r.param()?;
        }
        let params = start..r.pos();
        let n = r.count()?;
        let result_formats = r.take(2 * n)?;
        if r.pos() != frame.len() {
            return Err(bad("bind message has trailing bytes"));
        }
        Ok(BindMsg {
            frame,
            portal,
            statement,
            param_formats,
            params,
            param_count,
            result_formats,
        })
    }

    fn text(&self, r: &Range<usize>) -> Result<&str, ProtocolError> {
        std::str::from_utf8(self.frame.get(r.clone()).unwrap_or_default())
            .map_err(|_| ProtocolError::InvalidUtf8)
    }

    /// The portal's name (22021 if it is not UTF-8).
    pub fn portal(&self) -> Result<&str, ProtocolError> {
        self.text(&self.portal)
    }

    /// The prepared statement's name (22021 if it is not UTF-8).
    pub fn statement(&self) -> Result<&str, ProtocolError> {
        self.text(&self.statement)
    }

    pub fn param_formats(&self) -> Codes<'_> {
        Codes(
            self.frame
                .get(self.param_formats.clone())
                .unwrap_or_default(),
        )
    }

    pub fn result_formats(&self) -> Codes<'_> {
        Codes(
            self.frame
                .get(self.result_formats.clone())
                .unwrap_or_default(),
        )
    }

    pub fn param_count(&self) -> usize {
        self.param_count
    }

    /// The parameter values in order (None: NULL).
    pub fn params(&self) -> impl Iterator<Item = Option<&[u8]>> {
        let mut r = Reader::new(
            self.frame.get(..self.params.end).unwrap_or_default(),
            self.params.start,
        );
        // Checked in `parse`: each step succeeds.
        (0..self.param_count).map(move |_| r.param().ok().flatten().and_then(|x| r.0.slice(x)))
    }
}

/// Describe, Execute and Sync, which with Bind make up every prepared execution,
/// decoded straight from the frame (pgwire's generic decoding of them cost more
/// instructions than the lookup they carry). None for other message types.
fn decode_round_trip(frame: &[u8]) -> Option<Result<PgWireFrontendMessage, ProtocolError>> {
    use pgwire::messages::extendedquery::{Describe, Execute, Sync};
    let mut r = Reader::new(frame, 5);
    let m = match frame.first()? {
        b'S' => Ok(PgWireFrontendMessage::Sync(Sync::new())),
        b'D' => r
            .take(1)
            .map(|t| frame.get(t.start).copied().unwrap_or(0))
            .and_then(|target| match target {
                b'S' | b'P' => Ok(PgWireFrontendMessage::Describe(Describe::new(
                    target,
                    r.name()?,
                ))),
                _ => Err(bad("invalid describe target")),
            }),
        b'E' => r
            .name()
            .and_then(|name| Ok(PgWireFrontendMessage::Execute(Execute::new(name, r.i32()?)))),
        _ => return None,
    };
    Some(m.and_then(|m| match r.pos() == frame.len() {
        true => Ok(m),
        false => Err(bad("message has trailing bytes")),
    }))
}

fn bad(what: &str) -> ProtocolError {
    ProtocolError::Violation(format!("invalid message: {what}"))
}

/// Frame decoding: the [`Cursor`]'s reads with the protocol error for each failure.
struct Reader<'a>(Cursor<'a>);

impl<'a> Reader<'a> {
    fn new(frame: &'a [u8], at: usize) -> Self {
        Reader(Cursor::at(frame, at))
    }

    fn take(&mut self, n: usize) -> Result<Range<usize>, ProtocolError> {
        self.0
            .take(n)
            .ok_or_else(|| bad("message is shorter than its contents"))
    }

    fn i32(&mut self) -> Result<i32, ProtocolError> {
        self.0
            .i32()
            .ok_or_else(|| bad("message is shorter than its contents"))
    }

    /// A parameter value of Bind (a 4-byte length, then the bytes): None for NULL.
    fn param(&mut self) -> Result<Option<Range<usize>>, ProtocolError> {
        match self.i32()? {
            -1 => Ok(None),
            len if len >= 0 => self.take(len as usize).map(Some),
            _ => Err(bad("invalid parameter length")),
        }
    }

    /// A 16-bit count (unsigned, as PostgreSQL reads it: up to 65535 parameters).
    fn count(&mut self) -> Result<usize, ProtocolError> {
        self.0
            .u16()
            .map(usize::from)
            .ok_or_else(|| bad("message is shorter than its contents"))
    }

    /// A NUL-terminated string; the range excludes the NUL.
    fn cstring(&mut self) -> Result<Range<usize>, ProtocolError> {
        self.0.cstring().ok_or_else(|| bad("unterminated string"))
    }

    /// A portal or statement name: None for the unnamed one.
    fn name(&mut self) -> Result<Option<String>, ProtocolError> {
        let r = self.cstring()?;
        match self.0.slice(r).map(std::str::from_utf8) {
            Some(Ok("")) => Ok(None),
            Some(Ok(name)) => Ok(Some(name.to_string())),
            _ => Err(ProtocolError::InvalidUtf8),
        }
    }

    fn pos(&self) -> usize {
        self.0.pos()
    }
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
        if header == 1 {
            // A refusal of an extended-protocol message that is not fatal skips to Sync.
            let kind = frame.first().copied();
            let refused = |e: ProtocolError| match (e.is_fatal(), kind) {
                (false, Some(b'P' | b'B' | b'D' | b'E')) => Frame::RefusedExtended(e),
                _ => Frame::Refused(e),
            };
            if kind == Some(b'B') {
                return Ok(Some(match BindMsg::parse(frame.freeze()) {
                    Ok(b) => Frame::Bind(b),
                    Err(e) => refused(e),
                }));
            }
            if let Some(m) = decode_round_trip(&frame) {
                return Ok(Some(m.map_or_else(refused, Frame::Message)));
            }
            if !text_is_utf8(&frame) {
                return Ok(Some(refused(ProtocolError::InvalidUtf8)));
            }
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

/// A ReadyForQuery message with transaction status `status` (`I`, `T` or `E`).
pub fn put_ready_for_query(buf: &mut BytesMut, status: u8) {
    buf.put_slice(&[b'Z', 0, 0, 0, 5, status]);
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
        use pgwire::messages::response::{ReadyForQuery, TransactionStatus};
        for (status, byte) in [
            (TransactionStatus::Idle, b'I'),
            (TransactionStatus::Transaction, b'T'),
            (TransactionStatus::Error, b'E'),
        ] {
            let mut ours = BytesMut::new();
            put_ready_for_query(&mut ours, byte);
            let mut theirs = BytesMut::new();
            PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(status))
                .encode(&mut theirs)
                .unwrap();
            assert_eq!(ours, theirs);
        }
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

    /// A Bind frame: portal, statement, parameter format codes, parameters, result
    /// format codes, as a client writes it (pgwire's encoder).
    fn bind_frame(
        portal: &str,
        stmt: &str,
        pformats: Vec<i16>,
        params: Vec<Option<&[u8]>>,
        rformats: Vec<i16>,
    ) -> BytesMut {
        use pgwire::messages::extendedquery::Bind;
        let bind = Bind::new(
            Some(portal.to_string()).filter(|p| !p.is_empty()),
            Some(stmt.to_string()).filter(|s| !s.is_empty()),
            pformats,
            params
                .into_iter()
                .map(|p| p.map(Bytes::copy_from_slice))
                .collect(),
            rformats,
        );
        let mut b = BytesMut::new();
        PgWireFrontendMessage::Bind(bind).encode(&mut b).unwrap();
        b
    }

    #[test]
    fn bind_frames_decode_to_their_fields() {
        let mut c = ready();
        let mut b = bind_frame(
            "p1",
            "P_0",
            vec![0, 1],
            vec![Some(b"42"), None, Some(b"")],
            vec![1],
        );
        let Some(Frame::Bind(m)) = c.decode(&mut b).unwrap() else {
            panic!("not a bind")
        };
        assert!(b.is_empty());
        assert_eq!(m.portal().unwrap(), "p1");
        assert_eq!(m.statement().unwrap(), "P_0");
        assert_eq!(m.param_formats().iter().collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(m.param_count(), 3);
        let params: Vec<Option<&[u8]>> = m.params().collect();
        assert_eq!(params, vec![Some(&b"42"[..]), None, Some(&b""[..])]);
        assert_eq!(m.result_formats().iter().collect::<Vec<_>>(), vec![1]);

        // The unnamed portal and statement, no codes, no parameters.
        let mut b = bind_frame("", "", vec![], vec![], vec![]);
        let Some(Frame::Bind(m)) = c.decode(&mut b).unwrap() else {
            panic!("not a bind")
        };
        assert_eq!((m.portal().unwrap(), m.statement().unwrap()), ("", ""));
        assert_eq!(m.param_count(), 0);
        assert_eq!(m.params().count(), 0);
        assert_eq!(m.result_formats().len(), 0);
    }

    #[test]
    fn describe_execute_and_sync_decode_like_pgwire() {
        use pgwire::messages::extendedquery::{Describe, Execute, Sync};
        for m in [
            PgWireFrontendMessage::Describe(Describe::new(b'P', None)),
            PgWireFrontendMessage::Describe(Describe::new(b'S', Some("P_0".into()))),
            PgWireFrontendMessage::Execute(Execute::new(None, 0)),
            PgWireFrontendMessage::Execute(Execute::new(Some("c1".into()), 50)),
            PgWireFrontendMessage::Sync(Sync::new()),
        ] {
            let mut b = BytesMut::new();
            m.encode(&mut b).unwrap();
            let Some(Frame::Message(got)) = ready().decode(&mut b).unwrap() else {
                panic!("{m:?} not decoded")
            };
            assert_eq!(format!("{got:?}"), format!("{m:?}"));
            assert!(b.is_empty());
        }
        // Truncated, trailing bytes, a bad target: violations, never panics.
        for frame in [
            &b"E\0\0\0\x06\0\0"[..],
            b"E\0\0\0\x0a\0\0\0\0\0\0",
            b"D\0\0\0\x06X\0",
            b"D\0\0\0\x05S",
            b"S\0\0\0\x05\0",
        ] {
            let mut b = BytesMut::from(frame);
            assert!(
                matches!(
                    ready().decode(&mut b).unwrap(),
                    Some(Frame::Refused(ProtocolError::Violation(_)))
                ),
                "{frame:?}"
            );
        }
    }

    #[test]
    fn malformed_binds_are_refused_without_panics() {
        let good = bind_frame("", "s", vec![0], vec![Some(b"12345")], vec![0]);
        // Every truncation of a valid Bind (its length field adjusted) is refused.
        for cut in 5..good.len() {
            let mut b = BytesMut::from(&good[..cut]);
            let len = (cut - 1) as i32;
            b[1..5].copy_from_slice(&len.to_be_bytes());
            match ready().decode(&mut b).unwrap() {
                Some(Frame::Refused(ProtocolError::Violation(_))) => {}
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
        // Trailing bytes, a negative parameter length other than -1.
        let mut b = good.clone();
        b.put_u8(7);
        let len = (b.len() - 1) as i32;
        b[1..5].copy_from_slice(&len.to_be_bytes());
        assert!(matches!(
            ready().decode(&mut b).unwrap(),
            Some(Frame::Refused(ProtocolError::Violation(_)))
        ));
        let mut b = bind_frame("", "s", vec![], vec![Some(b"1")], vec![]);
        let at = b.len() - 2 - 1 - 4; // the parameter's length field
        b[at..at + 4].copy_from_slice(&(-2i32).to_be_bytes());
        assert!(matches!(
            ready().decode(&mut b).unwrap(),
            Some(Frame::Refused(ProtocolError::Violation(_)))
        ));
        // A statement name that is not UTF-8 is 22021 when read, not a panic.
        let mut b = bind_frame("", "s", vec![], vec![], vec![]);
        b[6] = 0xff;
        let Some(Frame::Bind(m)) = ready().decode(&mut b).unwrap() else {
            panic!("not a bind")
        };
        assert!(matches!(m.statement(), Err(ProtocolError::InvalidUtf8)));
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
