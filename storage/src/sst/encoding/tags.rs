//! Chunk flags and encoding tags (FORMAT.md), and the limits every chunk obeys.

pub(super) const FLAG_NULLS: u8 = 1;

pub(super) const ENC_PLAIN: u8 = 0;
pub(super) const ENC_FOR: u8 = 1;
pub(super) const ENC_BITMAP: u8 = 2;
pub(super) const ENC_VARLEN: u8 = 3;
pub(super) const ENC_DICT: u8 = 4;
pub(super) const ENC_LIST: u8 = 5;
pub(super) const ENC_KEY_U64: u8 = 6;
pub(super) const ENC_CONST_BOOL: u8 = 7;

/// Most values one chunk may hold (list elements included); blocks are cut well
/// below this, so a larger count can only come from damaged bytes.
pub(crate) const MAX_CHUNK_VALUES: usize = 1 << 24;

/// Widest frame-of-reference packing; wider values are stored plain.
pub(super) const MAX_PACK_WIDTH: u32 = 56;
/// Zero bytes after every packed area (see the module invariants).
pub(super) const PACK_PAD: usize = 8;
