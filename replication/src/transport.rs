//! The Raft transport: one TCP connection per (node, peer) direction, with
//! checksummed frames.
//!
//! Frame: `len:u32 | crc32(body):u32 | body`, big-endian; body: `json_len:u32 |
//! json | blob*` with each blob `len:u32 | bytes`. The JSON part is a [`Call`] or
//! an [`Answer`]; the blobs are log entries in the storage encoding
//! (`raftlog::Entry::to_bytes`), so batch payloads cross the wire as raw bytes.
//!
//! A connection starts with `Hello { cluster, from, to }`; the server refuses a
//! peer of another cluster (the hash of the initial voter ids) or a call meant for
//! another node id, so a misaddressed `--peers` entry cannot join the wrong group
//! (a `--join` node adopts the first cluster that calls it: [`Identity`]).
//! Any I/O error or timeout drops the connection; the next call reconnects.
//!
//! A snapshot (openraft's `full_snapshot`) travels on the snapshot connection as
//! `SnapshotBegin` (id and file list), the files in order as `SnapshotChunk`s of
//! [`CHUNK`] bytes (each frame checksummed), and `SnapshotInstall` with the vote
//! and metadata; the receiver stages, verifies and installs it
//! ([`crate::snapshot::SnapshotStore`]).

use std::sync::Arc;
use std::time::Duration;

use hindsight_storage::raftlog;
use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError,
    Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RaftNetwork, RaftNetworkFactory, Snapshot};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};

pub use crate::identity::Identity;
use crate::snapshot::SnapshotStore;
use crate::types::{NodeId, NodeInfo, Raft, RaftLogId, RaftVote, TypeConfig, entry_in, entry_out};

/// The largest frame accepted (a 1 GiB COPY batch plus framing).
const MAX_FRAME: usize = (1 << 30) + (1 << 20);

/// Bytes of snapshot file per frame.
const CHUNK: usize = 4 << 20;

/// How long one snapshot chunk may take to be answered.
const CHUNK_TTL: Duration = Duration::from_secs(30);

/// How long the receiver may take to verify and install a snapshot.
const INSTALL_TTL: Duration = Duration::from_secs(600);

/// What a node asks a peer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Call {
    Hello {
        cluster: u64,
        from: NodeId,
        to: NodeId,
    },
    /// AppendEntries; the entries follow as blobs.
    Append {
        vote: RaftVote,
        prev_log_id: Option<RaftLogId>,
        leader_commit: Option<RaftLogId>,
    },
    Vote(VoteRequest<NodeId>),
    Status,
    /// Leadership transfer: hold elections off for `ms` (the voters that are not
    /// the target).
    Hold {
        ms: u64,
    },
    /// Leadership transfer: campaign now (the target).
    Elect,
    /// A snapshot transfer starts: its id and its files with their sizes.
    SnapshotBegin {
        id: String,
        files: Vec<(String, u64)>,
    },
    /// The bytes at `offset` of one file of the snapshot follow as a blob.
    SnapshotChunk {
        id: String,
        file: String,
        offset: u64,
    },
    /// Every file is sent: verify and install.
    SnapshotInstall {
        vote: RaftVote,
        meta: crate::snapshot::Meta,
        files: Vec<(String, u64)>,
    },
}

/// A peer's answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Answer {
    Hello(Result<(), String>),
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Status(Status),
    Done(Result<(), String>),
    Snapshot(Result<SnapshotResponse<NodeId>, String>),
}

/// What a node reports about itself (polled by its peers).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub node: NodeId,
    pub pg_addr: String,
    pub role: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub applied_seq: u64,
    pub applied_index: Option<u64>,
    pub last_log_index: Option<u64>,
}

fn invalid(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    json: &[u8],
    blobs: &[Vec<u8>],
) -> std::io::Result<()> {
    let len = 4 + json.len() + blobs.iter().map(|b| 4 + b.len()).sum::<usize>();
    if len > MAX_FRAME {
        return Err(invalid(format!("frame of {len} bytes exceeds {MAX_FRAME}")));
    }
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(&(json.len() as u32).to_be_bytes());
    body.extend_from_slice(json);
    for b in blobs {
        body.extend_from_slice(&(b.len() as u32).to_be_bytes());
        body.extend_from_slice(b);
    }
    w.write_all(&(len as u32).to_be_bytes()).await?;
    w.write_all(&crc32fast::hash(&body).to_be_bytes()).await?;
    w.write_all(&body).await?;
    w.flush().await
}

pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
) -> std::io::Result<(Vec<u8>, Vec<Vec<u8>>)> {
    let len = r.read_u32().await? as usize;
    let crc = r.read_u32().await?;
    if len > MAX_FRAME {
        return Err(invalid(format!("frame of {len} bytes exceeds {MAX_FRAME}")));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    if crc32fast::hash(&body) != crc {
        return Err(invalid("frame checksum mismatch"));
    }
    split_body(&body)
}

fn split_body(body: &[u8]) -> std::io::Result<(Vec<u8>, Vec<Vec<u8>>)> {
    let mut parts = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (head, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| invalid("truncated frame part length"))?;
        let n = u32::from_be_bytes(*head) as usize;
        let (part, after) = tail
            .split_at_checked(n)
            .ok_or_else(|| invalid("frame part longer than the frame"))?;
        parts.push(part.to_vec());
        rest = after;
    }
    let mut parts = parts.into_iter();
    let json = parts.next().ok_or_else(|| invalid("empty frame"))?;
    Ok((json, parts.collect()))
}

async fn send<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
    blobs: &[Vec<u8>],
) -> std::io::Result<()> {
    let json = serde_json::to_vec(msg).map_err(|e| invalid(e.to_string()))?;
    write_frame(w, &json, blobs).await
}

async fn receive<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
    r: &mut R,
) -> std::io::Result<(T, Vec<Vec<u8>>)> {
    let (json, blobs) = read_frame(r).await?;
    let msg = serde_json::from_slice(&json).map_err(|e| invalid(e.to_string()))?;
    Ok((msg, blobs))
}

/// What a node's Raft server answers with.
#[derive(Clone)]
pub(crate) struct Served {
    pub id: Arc<Identity>,
    pub raft: Raft,
    pub status: Arc<dyn Fn() -> Status + Send + Sync>,
    pub snapshots: Arc<SnapshotStore>,
}

/// Serve peers' calls until the listener fails.
pub(crate) async fn serve(listener: TcpListener, served: Served) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "raft listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let served = served.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_conn(stream, &served).await
                && e.kind() != std::io::ErrorKind::UnexpectedEof
            {
                tracing::debug!(%peer, error = %e, "raft connection closed");
            }
        });
    }
}

async fn serve_conn(stream: TcpStream, served: &Served) -> std::io::Result<()> {
    let (id, raft) = (&served.id, &served.raft);
    let (r, w) = stream.into_split();
    let (mut r, mut w) = (BufReader::new(r), BufWriter::new(w));
    let (hello, _) = receive::<_, Call>(&mut r).await?;
    let verdict = match hello {
        Call::Hello { to, .. } if to != id.me => {
            Err(format!("this is node {}, not node {to}", id.me))
        }
        Call::Hello { cluster, .. } => id.accept_cluster(cluster),
        _ => Err("expected hello".to_string()),
    };
    let ok = verdict.is_ok();
    send(&mut w, &Answer::Hello(verdict), &[]).await?;
    if !ok {
        return Ok(());
    }
    loop {
        let (call, blobs) = receive::<_, Call>(&mut r).await?;
        let answer = match call {
            Call::Append {
                vote,
                prev_log_id,
                leader_commit,
            } => {
                let entries = blobs
                    .iter()
                    .map(|b| {
                        raftlog::Entry::from_bytes(b)
                            .map_err(|e| invalid(e.to_string()))
                            .and_then(|e| entry_in(e).map_err(|e| invalid(e.to_string())))
                    })
                    .collect::<std::io::Result<Vec<_>>>()?;
                let req = AppendEntriesRequest {
                    vote,
                    prev_log_id,
                    entries,
                    leader_commit,
                };
                Answer::Append(raft.append_entries(req).await)
            }
            Call::Vote(req) => Answer::Vote(raft.vote(req).await),
            Call::Status => Answer::Status((served.status)()),
            Call::Hold { ms } => {
                hold_elections(raft, Duration::from_millis(ms));
                Answer::Done(Ok(()))
            }
            Call::Elect => Answer::Done(raft.trigger().elect().await.map_err(|e| e.to_string())),
            Call::SnapshotBegin { id, files } => {
                let store = served.snapshots.clone();
                let r = blocking_io(move || store.begin_receive(&id, &files)).await;
                Answer::Done(r)
            }
            Call::SnapshotChunk { id, file, offset } => {
                let store = served.snapshots.clone();
                let bytes = blobs.into_iter().next().unwrap_or_default();
                let r = blocking_io(move || store.write_chunk(&id, &file, offset, &bytes)).await;
                Answer::Done(r)
            }
            Call::SnapshotInstall { vote, meta, files } => {
                Answer::Snapshot(receive_snapshot(served, vote, meta, files).await)
            }
            Call::Hello { .. } => return Err(invalid("hello twice")),
        };
        send(&mut w, &answer, &[]).await?;
    }
}

/// Run snapshot file work off the runtime threads; errors become text.
async fn blocking_io<T: Send + 'static>(
    f: impl FnOnce() -> crate::ReplResult<T> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(format!("snapshot task failed: {e}")),
    }
}

/// Finish a received snapshot and hand it to openraft to install.
async fn receive_snapshot(
    served: &Served,
    vote: RaftVote,
    meta: crate::snapshot::Meta,
    files: Vec<(String, u64)>,
) -> Result<SnapshotResponse<NodeId>, String> {
    let store = served.snapshots.clone();
    let id = meta.snapshot_id.clone();
    let dir = blocking_io(move || store.finish_receive(&id, &files)).await?;
    tracing::info!(node = served.id.me, snapshot = %meta.snapshot_id, "snapshot received; installing");
    let snapshot = Snapshot {
        meta,
        snapshot: Box::new(dir),
    };
    served
        .raft
        .install_full_snapshot(vote, snapshot)
        .await
        .map_err(|e| e.to_string())
}

/// Turn this node's election timer off for `span`, then on again.
pub(crate) fn hold_elections(raft: &Raft, span: Duration) {
    raft.runtime_config().elect(false);
    let raft = raft.clone();
    tokio::spawn(async move {
        tokio::time::sleep(span).await;
        raft.runtime_config().elect(true);
    });
}

type Conn = (
    BufReader<tokio::net::tcp::OwnedReadHalf>,
    BufWriter<tokio::net::tcp::OwnedWriteHalf>,
);

/// Builds a [`Peer`] per target for openraft.
#[derive(Clone)]
pub struct Network {
    id: Arc<Identity>,
}

impl Network {
    pub fn new(id: Arc<Identity>) -> Network {
        Network { id }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> Peer {
        self.id.learn(std::iter::once((&target, node)));
        Peer::new(self.id.clone(), target)
    }
}

/// One outgoing connection to a peer.
pub struct Peer {
    id: Arc<Identity>,
    target: NodeId,
    conn: Option<Conn>,
}

type RpcError = RPCError<NodeId, NodeInfo, RaftError<NodeId>>;

impl Peer {
    pub fn new(id: Arc<Identity>, target: NodeId) -> Peer {
        Peer {
            id,
            target,
            conn: None,
        }
    }

    async fn connect(&self) -> std::io::Result<Conn> {
        let addr = self
            .id
            .addr(self.target)
            .ok_or_else(|| invalid(format!("no address for node {}", self.target)))?;
        let stream = TcpStream::connect(addr.as_str()).await?;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        let (mut r, mut w) = (BufReader::new(r), BufWriter::new(w));
        let hello = Call::Hello {
            cluster: self.id.cluster(),
            from: self.id.me,
            to: self.target,
        };
        send(&mut w, &hello, &[]).await?;
        match receive::<_, Answer>(&mut r).await?.0 {
            Answer::Hello(Ok(())) => Ok((r, w)),
            Answer::Hello(Err(why)) => Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                why,
            )),
            _ => Err(invalid("expected a hello answer")),
        }
    }

    /// One call and its answer within `ttl`; any failure drops the connection.
    pub(crate) async fn call(
        &mut self,
        call: &Call,
        blobs: &[Vec<u8>],
        ttl: Duration,
    ) -> std::io::Result<Answer> {
        let r = tokio::time::timeout(ttl, self.call_inner(call, blobs)).await;
        let r = r.unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer from node {} within {ttl:?}", self.target),
            ))
        });
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    async fn call_inner(&mut self, call: &Call, blobs: &[Vec<u8>]) -> std::io::Result<Answer> {
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        let Some((r, w)) = self.conn.as_mut() else {
            return Err(invalid("not connected"));
        };
        send(w, call, blobs).await?;
        Ok(receive::<_, Answer>(r).await?.0)
    }

    fn unexpected(&self) -> RpcError {
        RPCError::Network(NetworkError::new(&invalid(format!(
            "node {} answered another call",
            self.target
        ))))
    }

    fn remote(&self, e: RaftError<NodeId>) -> RpcError {
        RPCError::RemoteError(RemoteError::new(self.target, e))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError> {
        let blobs = req
            .entries
            .iter()
            .map(|e| entry_out(e).map(|e| e.to_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let call = Call::Append {
            vote: req.vote,
            prev_log_id: req.prev_log_id,
            leader_commit: req.leader_commit,
        };
        match self.call(&call, &blobs, option.hard_ttl()).await {
            Ok(Answer::Append(Ok(r))) => Ok(r),
            Ok(Answer::Append(Err(e))) => Err(self.remote(e)),
            Ok(_) => Err(self.unexpected()),
            Err(e) => Err(RPCError::Unreachable(Unreachable::new(&e))),
        }
    }

    async fn vote(
        &mut self,
        req: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcError> {
        match self.call(&Call::Vote(req), &[], option.hard_ttl()).await {
            Ok(Answer::Vote(Ok(r))) => Ok(r),
            Ok(Answer::Vote(Err(e))) => Err(self.remote(e)),
            Ok(_) => Err(self.unexpected()),
            Err(e) => Err(RPCError::Unreachable(Unreachable::new(&e))),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: RaftVote,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl std::future::Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let target = self.target;
        tracing::info!(to = target, snapshot = %snapshot.meta.snapshot_id, "sending a snapshot");
        tokio::select! {
            r = self.send_snapshot(vote, snapshot) => r.map_err(|e| {
                tracing::warn!(to = target, error = %e, "snapshot transfer failed");
                StreamingError::Network(NetworkError::new(&e))
            }),
            closed = cancel => Err(StreamingError::Closed(closed)),
        }
    }
}

impl Peer {
    /// Ship a snapshot's files and ask the peer to install it.
    async fn send_snapshot(
        &mut self,
        vote: RaftVote,
        snapshot: Snapshot<TypeConfig>,
    ) -> std::io::Result<SnapshotResponse<NodeId>> {
        let dir = (*snapshot.snapshot).clone();
        let listed = dir.clone();
        let files = tokio::task::spawn_blocking(move || crate::snapshot::snapshot_files(&listed))
            .await
            .map_err(std::io::Error::other)?
            .map_err(|e| invalid(e.to_string()))?;
        // Open every file first: a newer snapshot replacing this one mid-transfer
        // deletes the directory, not the open files.
        let mut opened = Vec::with_capacity(files.len());
        for (name, _) in &files {
            opened.push(tokio::fs::File::open(dir.dir.join(name)).await?);
        }
        let id = snapshot.meta.snapshot_id.clone();
        let begin = Call::SnapshotBegin {
            id: id.clone(),
            files: files.clone(),
        };
        self.expect_done(&begin, Vec::new()).await?;
        for ((name, len), mut file) in files.iter().zip(opened) {
            let mut offset = 0u64;
            loop {
                let mut buf = Vec::with_capacity(CHUNK.min(*len as usize));
                (&mut file).take(CHUNK as u64).read_to_end(&mut buf).await?;
                if buf.is_empty() && offset > 0 {
                    break;
                }
                let n = buf.len() as u64;
                let chunk = Call::SnapshotChunk {
                    id: id.clone(),
                    file: name.clone(),
                    offset,
                };
                self.expect_done(&chunk, vec![buf]).await?;
                offset += n;
                if n == 0 || offset >= *len {
                    break;
                }
            }
        }
        let install = Call::SnapshotInstall {
            vote,
            meta: snapshot.meta,
            files,
        };
        match self.call(&install, &[], INSTALL_TTL).await? {
            Answer::Snapshot(Ok(r)) => Ok(r),
            Answer::Snapshot(Err(why)) => Err(invalid(why)),
            _ => Err(invalid("expected a snapshot answer")),
        }
    }

    async fn expect_done(&mut self, call: &Call, blobs: Vec<Vec<u8>>) -> std::io::Result<()> {
        match self.call(call, &blobs, CHUNK_TTL).await? {
            Answer::Done(Ok(())) => Ok(()),
            Answer::Done(Err(why)) => Err(invalid(why)),
            _ => Err(invalid("expected a done answer")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_reject_damage() {
        let blobs = vec![vec![1, 2, 3], vec![], vec![9; 1000]];
        let mut buf = Vec::new();
        write_frame(&mut buf, b"{\"x\":1}", &blobs).await.unwrap();
        let (json, back) = read_frame(&mut buf.as_slice()).await.unwrap();
        assert_eq!(json, b"{\"x\":1}");
        assert_eq!(back, blobs);

        let mut flipped = buf.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let err = read_frame(&mut flipped.as_slice()).await.unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");

        let truncated = &buf[..buf.len() - 3];
        assert!(read_frame(&mut &truncated[..]).await.is_err());
    }

    #[test]
    fn a_part_longer_than_the_body_is_refused() {
        let mut body = 10u32.to_be_bytes().to_vec();
        body.extend_from_slice(b"abc");
        assert!(split_body(&body).is_err());
    }
}
