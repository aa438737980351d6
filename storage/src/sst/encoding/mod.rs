//! Column-chunk encodings of SST blocks (byte layouts in FORMAT.md).
//!
//! A chunk holds one column of one block. Every encoding supports both random access
//! to row `i` (point lookups: binary search on keys, one row's features) and bulk
//! decoding into the column's canonical Arrow array (scans). Encodings are chosen per
//! chunk by size: frame-of-reference bit-packing for integers, timestamps and
//! sequences; dictionaries for repetitive strings; plain for floats.
//!
//! Invariants: [`Chunk::parse`] checks every length against the bytes it has, and
//! every accessor is bounds-checked, so a damaged chunk yields a [`DecodeError`] and
//! never a panic. Packed integer areas are followed by 8 zero bytes, so an unaligned
//! 8-byte load at any packed position stays inside the chunk.

mod access;
mod chunk;
mod encode;
mod pack;
mod primitives;
mod tags;
#[cfg(test)]
mod tests;

pub(crate) use access::{prefetch, prefetch_ref, value_at, value_layout, value_offset};
pub(crate) use chunk::Chunk;
pub(crate) use encode::{encode_column, encode_ints, encode_keys, key_as_u64};
pub(crate) use primitives::{KeyProbe, interpolate};
