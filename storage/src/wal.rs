//! Framed logs: the write-ahead log, and the manifest (which reuses the framing).
//!
//! ```text
//! log     := magic[8] version:u32 reserved:u32 frame*     (WAL magic "HSIGHTW1")
//! frame   := magic:u32 ("HWF1") len:u32 crc32(payload):u32 payload[len]
//! ```
//! In the WAL there is one frame per write batch; in the manifest one per version edit.
//! Invariants: a batch is acknowledged only after its frame is written and (under
//! the default policy) fsynced; frames are appended in sequence order. Recovery
//! accepts a damaged frame only at the tail of the newest log, and only if no intact
//! frame follows it (a torn write of unacknowledged batches): replay stops there. A
//! damaged frame anywhere else is corruption, reported with the file and byte
//! offset, and the engine refuses to open rather than skip data. Replay never
//! modifies the file: a successful open retires old logs anyway, and a failed one
//! leaves the evidence in place.

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Seek, Write};
use std::path::{Path, PathBuf};

use crate::codec::le_u32_at;
use crate::error::{Error, Result};

/// First 8 bytes of every WAL segment.
pub(crate) const WAL_MAGIC: [u8; 8] = *b"HSIGHTW1";
const WAL_VERSION: u32 = 1;
pub(crate) const WAL_HEADER_LEN: usize = 16;
const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"HWF1");
pub(crate) const FRAME_HEADER_LEN: usize = 12;
/// Largest frame payload accepted (a batch larger than this is refused at commit).
pub(crate) const MAX_FRAME_LEN: usize = 1 << 30;

/// File name of WAL segment `number`.
pub(crate) fn segment_name(number: u64) -> String {
    format!("{number:06}.wal")
}

/// The header of the frame holding `payload`: magic, length, CRC32 of the payload.
pub(crate) fn frame_header(payload: &[u8]) -> [u8; FRAME_HEADER_LEN] {
    let mut h = [0u8; FRAME_HEADER_LEN];
    h[..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[8..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    h
}

/// Append one frame for `payload` to `out`.
pub(crate) fn encode_frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&frame_header(payload));
    out.extend_from_slice(payload);
}

/// An open log that new frames are appended to.
pub(crate) struct LogWriter {
    path: PathBuf,
    file: File,
    pub(crate) size: u64,
}

impl LogWriter {
    /// Create WAL segment `number` in `dir` and make its existence durable.
    pub(crate) fn create_wal(dir: &Path, number: u64) -> Result<LogWriter> {
        Self::create(&dir.join(segment_name(number)), WAL_MAGIC)
    }

    /// Create the log `path` with header `magic` and make its existence durable.
    pub(crate) fn create(path: &Path, magic: [u8; 8]) -> Result<LogWriter> {
        let path = path.to_path_buf();
        let dir = path
            .parent()
            .ok_or_else(|| Error::InvalidArgument(format!("{} has no parent", path.display())))?
            .to_path_buf();
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let mut header = Vec::with_capacity(WAL_HEADER_LEN);
        header.extend_from_slice(&magic);
        header.extend_from_slice(&WAL_VERSION.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        file.write_all(&header).map_err(|e| Error::io(&path, e))?;
        file.sync_all().map_err(|e| Error::io(&path, e))?;
        crate::fsutil::sync_dir(&dir)?;
        Ok(LogWriter {
            path,
            file,
            size: WAL_HEADER_LEN as u64,
        })
    }

    /// Open the existing log `path` for appending after its last byte.
    pub(crate) fn open_end(path: &Path) -> Result<LogWriter> {
        let mut file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let size = file
            .seek(std::io::SeekFrom::End(0))
            .map_err(|e| Error::io(path, e))?;
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            size,
        })
    }

    /// Append encoded frames (not yet durable).
    pub(crate) fn append(&mut self, frames: &[u8]) -> Result<()> {
        self.file
            .write_all(frames)
            .map_err(|e| Error::io(&self.path, e))?;
        self.size += frames.len() as u64;
        Ok(())
    }

    /// Append one frame per payload, written straight from the payloads (vectored
    /// writes: a large batch is not copied into a frame buffer first). Returns the
    /// bytes appended.
    pub(crate) fn append_frames(&mut self, payloads: &[&[u8]]) -> Result<u64> {
        let headers: Vec<[u8; FRAME_HEADER_LEN]> =
            payloads.iter().map(|p| frame_header(p)).collect();
        let mut slices: Vec<IoSlice<'_>> = headers
            .iter()
            .zip(payloads)
            .flat_map(|(h, p)| [IoSlice::new(h), IoSlice::new(p)])
            .collect();
        let total: u64 = slices.iter().map(|s| s.len() as u64).sum();
        let mut rest: &mut [IoSlice<'_>] = &mut slices;
        while !rest.is_empty() {
            match self.file.write_vectored(rest) {
                Ok(0) => {
                    return Err(Error::io(
                        &self.path,
                        std::io::Error::from(std::io::ErrorKind::WriteZero),
                    ));
                }
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(&self.path, e)),
            }
        }
        self.size += total;
        Ok(total)
    }

    /// Make everything appended so far durable.
    pub(crate) fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }

    /// A second handle for syncing without holding the writer (periodic fsync).
    pub(crate) fn sync_handle(&self) -> Result<(PathBuf, File)> {
        let f = self
            .file
            .try_clone()
            .map_err(|e| Error::io(&self.path, e))?;
        Ok((self.path.clone(), f))
    }
}

/// What reading one log found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SegmentReplay {
    pub frames: u64,
    /// Set if replay stopped at a torn tail: where the intact prefix ends.
    pub torn_at: Option<u64>,
}

/// The frame at `pos` of `buf`: the end of the frame and its payload, or why the
/// frame there cannot be used.
pub(crate) fn frame_at(buf: &[u8], pos: usize) -> std::result::Result<(usize, &[u8]), String> {
    let magic = le_u32_at(buf, pos).ok_or("incomplete frame header")?;
    if magic != FRAME_MAGIC {
        return Err(format!("bad frame magic {magic:#010x}"));
    }
    let len = le_u32_at(buf, pos + 4).ok_or("incomplete frame header")? as usize;
    let crc = le_u32_at(buf, pos + 8).ok_or("incomplete frame header")?;
    if len > MAX_FRAME_LEN {
        return Err(format!("frame length {len} exceeds the maximum"));
    }
    let start = pos + FRAME_HEADER_LEN;
    let payload = buf
        .get(start..start + len)
        .ok_or_else(|| format!("frame of {len} bytes runs past the end of the file"))?;
    if crc32fast::hash(payload) != crc {
        return Err("frame checksum mismatch".into());
    }
    Ok((start + len, payload))
}

/// True if an intact frame starts anywhere after `pos`.
fn intact_frame_after(buf: &[u8], pos: usize) -> bool {
    let magic = FRAME_MAGIC.to_le_bytes();
    let mut p = pos + 1;
    while p + FRAME_HEADER_LEN <= buf.len() {
        match buf
            .get(p..)
            .and_then(|s| s.windows(4).position(|w| w == magic))
        {
            None => return false,
            Some(off) => {
                let at = p + off;
                if frame_at(buf, at).is_ok() {
                    return true;
                }
                p = at + 1;
            }
        }
    }
    false
}

/// Read the log `path` (header `magic`), calling `apply(payload, offset)` for every
/// intact frame in order. `is_last` marks the newest log, whose torn tail ends
/// replay instead of being an error.
pub(crate) fn replay_log(
    path: &Path,
    magic: [u8; 8],
    is_last: bool,
    mut apply: impl FnMut(&[u8], u64) -> Result<()>,
) -> Result<SegmentReplay> {
    let buf = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut out = SegmentReplay::default();
    if buf.len() < WAL_HEADER_LEN {
        if is_last {
            // Created but its header never became durable: nothing was acknowledged.
            out.torn_at = Some(0);
            return Ok(out);
        }
        return Err(Error::corruption(path, 0, "log shorter than its header"));
    }
    if buf.get(..8) != Some(&magic[..]) {
        return Err(Error::corruption(path, 0, "bad magic number in log header"));
    }
    let version = le_u32_at(&buf, 8).unwrap_or(0);
    if version != WAL_VERSION {
        return Err(Error::corruption(
            path,
            8,
            format!("unsupported log format version {version}"),
        ));
    }
    let mut pos = WAL_HEADER_LEN;
    while pos < buf.len() {
        match frame_at(&buf, pos) {
            Ok((next, payload)) => {
                apply(payload, pos as u64)?;
                out.frames += 1;
                pos = next;
            }
            Err(why) => {
                if !is_last || intact_frame_after(&buf, pos) {
                    return Err(Error::corruption(
                        path,
                        pos as u64,
                        format!("{why}; intact data follows, refusing to skip it"),
                    ));
                }
                out.torn_at = Some(pos as u64);
                return Ok(out);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_segment(dir: &Path, payloads: &[&[u8]]) -> PathBuf {
        let mut w = LogWriter::create_wal(dir, 1).unwrap();
        for p in payloads {
            let mut f = Vec::new();
            encode_frame(p, &mut f);
            w.append(&f).unwrap();
        }
        w.sync().unwrap();
        dir.join(segment_name(1))
    }

    fn collect(path: &Path, last: bool) -> Result<(Vec<Vec<u8>>, SegmentReplay)> {
        let mut got = Vec::new();
        let r = replay_log(path, WAL_MAGIC, last, |p, _| {
            got.push(p.to_vec());
            Ok(())
        })?;
        Ok((got, r))
    }

    #[test]
    fn frames_replay_in_order() {
        let d = tempfile::tempdir().unwrap();
        let p = write_segment(d.path(), &[b"one", b"two", b""]);
        let (got, r) = collect(&p, true).unwrap();
        assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec(), vec![]]);
        assert_eq!(r.torn_at, None);
    }

    #[test]
    fn torn_tail_of_the_last_segment_ends_replay_without_touching_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = write_segment(d.path(), &[b"one", b"two-two-two"]);
        let len = std::fs::metadata(&p).unwrap().len();
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(len - 3).unwrap();
        let (got, r) = collect(&p, true).unwrap();
        assert_eq!(got, vec![b"one".to_vec()]);
        assert!(r.torn_at.is_some());
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            len - 3,
            "file untouched"
        );
    }

    #[test]
    fn damaged_frame_before_intact_ones_is_corruption_with_offset() {
        let d = tempfile::tempdir().unwrap();
        let p = write_segment(d.path(), &[b"first", b"second", b"third"]);
        let mut bytes = std::fs::read(&p).unwrap();
        let second_payload = WAL_HEADER_LEN + FRAME_HEADER_LEN + 5 + FRAME_HEADER_LEN;
        bytes[second_payload] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        match collect(&p, true) {
            Err(Error::Corruption { offset, file, .. }) => {
                assert_eq!(offset as usize, WAL_HEADER_LEN + FRAME_HEADER_LEN + 5);
                assert_eq!(file, p);
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn damage_in_an_older_segment_is_corruption() {
        let d = tempfile::tempdir().unwrap();
        let p = write_segment(d.path(), &[b"only"]);
        let len = std::fs::metadata(&p).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        assert!(matches!(collect(&p, false), Err(Error::Corruption { .. })));
    }
}
