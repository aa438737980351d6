//! Decoding a chunk: [`Chunk::parse`] checks every length against the bytes, then
//! serves random access to row `i` (point lookups) and bulk decoding into the
//! column's canonical Arrow array (scans).

use std::sync::Arc;

use arrow_array::types::{
    Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    TimestampMicrosecondType, UInt64Type,
};
use arrow_array::{ArrayRef, BinaryArray, BooleanArray, ListArray, PrimitiveArray, StringArray};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};

use crate::codec::Reader;
use crate::error::{DecodeError, DecodeResult};
use crate::types::{DataType, ScalarType, Value, list_item_field};

use super::pack::ForInts;
use super::primitives::*;
use super::tags::*;

/// A parsed column chunk of `n` rows.
#[derive(Debug)]
pub(crate) struct Chunk<'a> {
    pub(super) n: usize,
    pub(super) nulls: Option<&'a [u8]>,
    pub(super) body: Body<'a>,
}

#[derive(Debug)]
pub(super) enum Body<'a> {
    Plain {
        data: &'a [u8],
        width: usize,
    },
    For(ForInts<'a>),
    Bitmap(&'a [u8]),
    ConstBool(bool),
    VarLen {
        offsets: ForInts<'a>,
        data: &'a [u8],
    },
    Dict {
        offsets: ForInts<'a>,
        data: &'a [u8],
        codes: ForInts<'a>,
        size: usize,
    },
    List {
        offsets: ForInts<'a>,
        child: Box<Chunk<'a>>,
    },
    KeyU64 {
        len: usize,
        vals: ForInts<'a>,
    },
}

impl<'a> Body<'a> {
    /// The body of a chunk of `n` rows of type `ty` in encoding `enc`.
    fn parse(r: &mut Reader<'a>, n: usize, enc: u8, ty: DataType) -> DecodeResult<Self> {
        Ok(match (enc, ty) {
            (ENC_LIST, DataType::List(elem)) => Body::list(r, n, elem)?,
            (_, DataType::List(_)) => return Err(r.err(format!("encoding {enc} for a list"))),
            (ENC_PLAIN, DataType::Scalar(s)) if s != ScalarType::Bool => {
                let width = s
                    .fixed_width()
                    .ok_or_else(|| r.err("plain encoding for a variable-width type"))?;
                let len = n.checked_mul(width).ok_or_else(|| r.err("size overflow"))?;
                Body::Plain {
                    data: r.bytes(len, "plain values")?,
                    width,
                }
            }
            (ENC_FOR, DataType::Scalar(s)) if s.is_integer_like() => {
                Body::For(ForInts::parse(r, n)?)
            }
            (ENC_BITMAP, DataType::Scalar(ScalarType::Bool)) => {
                Body::Bitmap(r.bytes(n.div_ceil(8), "bool bitmap")?)
            }
            (ENC_CONST_BOOL, DataType::Scalar(ScalarType::Bool)) => {
                Body::ConstBool(r.u8("const bool")? != 0)
            }
            (ENC_VARLEN, DataType::Scalar(ScalarType::Text | ScalarType::Bytes)) => {
                let offsets = ForInts::parse(r, n + 1)?;
                let len = offsets
                    .offset(n, r.remaining())
                    .map_err(|e| r.err(e.detail))?;
                Body::VarLen {
                    offsets,
                    data: r.bytes(len, "var-len data")?,
                }
            }
            (ENC_DICT, DataType::Scalar(ScalarType::Text | ScalarType::Bytes)) => Body::dict(r, n)?,
            (ENC_KEY_U64, DataType::Scalar(ScalarType::Bytes)) => {
                let len = usize::from(r.u8("key length")?);
                if !(1..=8).contains(&len) {
                    return Err(r.err(format!("bad fixed key length {len}")));
                }
                Body::KeyU64 {
                    len,
                    vals: ForInts::parse(r, n)?,
                }
            }
            _ => return Err(r.err(format!("encoding {enc} is not valid for {ty}"))),
        })
    }

    /// `offsets(n + 1)` then a chunk of the elements, none of them NULL.
    fn list(r: &mut Reader<'a>, n: usize, elem: ScalarType) -> DecodeResult<Self> {
        let offsets = ForInts::parse(r, n + 1)?;
        let child_n = usize::try_from(offsets.get(n))
            .ok()
            .filter(|&c| c <= MAX_CHUNK_VALUES)
            .ok_or_else(|| r.err("bad list length"))?;
        let child = Chunk::parse(r, child_n, DataType::Scalar(elem))?;
        if child.nulls.is_some() {
            return Err(r.err("list elements must not be NULL"));
        }
        Ok(Body::List {
            offsets,
            child: Box::new(child),
        })
    }

    /// `size`, the dictionary's offsets and bytes, then one code per row.
    fn dict(r: &mut Reader<'a>, n: usize) -> DecodeResult<Self> {
        let size = r.len(n.max(1), "dictionary size")?;
        let offsets = ForInts::parse(r, size + 1)?;
        let len = offsets
            .offset(size, r.remaining())
            .map_err(|e| r.err(e.detail))?;
        let data = r.bytes(len, "dictionary data")?;
        let codes = ForInts::parse(r, n)?;
        Ok(Body::Dict {
            offsets,
            data,
            codes,
            size,
        })
    }
}

impl<'a> Chunk<'a> {
    /// Parse a chunk of `n` rows of type `ty` from the front of `r`.
    pub(crate) fn parse(r: &mut Reader<'a>, n: usize, ty: DataType) -> DecodeResult<Self> {
        let flags = r.u8("chunk flags")?;
        if flags & !FLAG_NULLS != 0 {
            return Err(r.err(format!("unknown chunk flags {flags:#x}")));
        }
        let nulls = if flags & FLAG_NULLS != 0 {
            Some(r.bytes(n.div_ceil(8), "null bitmap")?)
        } else {
            None
        };
        let enc = r.u8("chunk encoding")?;
        let body = Body::parse(r, n, enc, ty)?;
        Ok(Chunk { n, nulls, body })
    }

    /// True if row `i` is NULL.
    #[inline]
    pub(crate) fn is_null(&self, i: usize) -> bool {
        self.nulls
            .is_some_and(|b| b.get(i / 8).is_none_or(|byte| byte & (1 << (i % 8)) == 0))
    }

    /// Integer value of row `i` (integer-like and FOR/PLAIN chunks).
    #[inline]
    pub(crate) fn int(&self, i: usize) -> i64 {
        match &self.body {
            Body::For(f) => f.get(i),
            Body::Plain { data, width } => plain_int(data, *width, i),
            _ => 0,
        }
    }

    /// Boolean value of row `i`.
    #[inline]
    pub(crate) fn bool(&self, i: usize) -> bool {
        match &self.body {
            Body::Bitmap(b) => b.get(i / 8).is_some_and(|byte| byte & (1 << (i % 8)) != 0),
            Body::ConstBool(v) => *v,
            _ => false,
        }
    }

    /// True if no row is true (a boolean column of all `false`).
    pub(crate) fn all_false(&self) -> bool {
        matches!(self.body, Body::ConstBool(false))
    }

    /// Bytes of row `i` of a TEXT/BYTES chunk.
    pub(crate) fn bytes(&self, i: usize) -> DecodeResult<&'a [u8]> {
        match &self.body {
            Body::VarLen { offsets, data } => slice_at(offsets, data, i),
            Body::Dict {
                offsets,
                data,
                codes,
                size,
            } => {
                let code = usize::try_from(codes.get(i))
                    .ok()
                    .filter(|c| c < size)
                    .ok_or_else(|| DecodeError::new(0, "dictionary code out of range"))?;
                slice_at(offsets, data, code)
            }
            _ => Err(DecodeError::new(0, "not a var-len chunk")),
        }
    }

    /// The first row whose key is `>= target`, for chunks of fixed-length integer
    /// keys (KEY_U64) probed with a key of that length; `None` for other chunks.
    /// `last`: the chunk's last key if the caller knows it (the block index holds
    /// it), which saves reading the far end of the column.
    ///
    /// One interpolation step (the key's place between the first and last keys)
    /// guesses the row; a gallop outward from the guess then brackets the answer and
    /// a bisection finishes. Dense ids land on or next to the answer, so the search
    /// touches one or two cache lines; any distribution needs at most about twice a
    /// binary search's probes (the gallop is logarithmic in the guess's error).
    pub(crate) fn lower_bound_u64(
        &self,
        target: &KeyProbe<'_>,
        last: Option<u64>,
    ) -> Option<usize> {
        let Body::KeyU64 { len, vals } = &self.body else {
            return None;
        };
        if target.bytes.len() != *len {
            return None;
        }
        let n = self.n;
        let t = target.as_u64;
        let key = |i: usize| vals.get(i) as u64;
        if n == 0 || t <= key(0) {
            return Some(0);
        }
        let guess = interpolate(t, key(0), last.unwrap_or_else(|| key(n - 1)), n);
        Some(lower_bound_from(n, guess, |i| key(i) < t))
    }

    /// The key of row 0 of an integer key chunk.
    pub(crate) fn first_key_u64(&self) -> Option<u64> {
        match &self.body {
            Body::KeyU64 { vals, .. } if self.n > 0 => Some(vals.get(0) as u64),
            _ => None,
        }
    }

    /// Compare the key of row `i` with `target` (key chunks only).
    #[inline]
    pub(crate) fn cmp_key(
        &self,
        i: usize,
        target: &KeyProbe<'_>,
    ) -> DecodeResult<std::cmp::Ordering> {
        match (&self.body, target) {
            (Body::KeyU64 { len, vals }, KeyProbe { bytes, as_u64 }) if bytes.len() == *len => {
                Ok((vals.get(i) as u64).cmp(as_u64))
            }
            (Body::KeyU64 { len, vals }, KeyProbe { bytes, .. }) => {
                let v = (vals.get(i) as u64).to_be_bytes();
                Ok(v[8 - len..].cmp(bytes))
            }
            _ => Ok(self.bytes(i)?.cmp(target.bytes)),
        }
    }

    /// Key bytes of row `i` (key chunks only).
    pub(crate) fn key(&self, i: usize) -> DecodeResult<Vec<u8>> {
        match &self.body {
            Body::KeyU64 { len, vals } => {
                Ok((vals.get(i) as u64).to_be_bytes()[8 - len..].to_vec())
            }
            _ => Ok(self.bytes(i)?.to_vec()),
        }
    }

    /// Row `i` as a [`Value`] of type `ty`.
    pub(crate) fn value(&self, i: usize, ty: DataType) -> DecodeResult<Value> {
        if i >= self.n {
            return Err(DecodeError::new(
                0,
                format!("row {i} past chunk of {}", self.n),
            ));
        }
        if self.is_null(i) {
            return Ok(Value::Null);
        }
        match (ty, &self.body) {
            (DataType::List(elem), Body::List { offsets, child }) => {
                let s = offsets.offset(i, child.n)?;
                let e = offsets.offset(i + 1, child.n)?;
                if e < s {
                    return Err(DecodeError::new(0, "list offsets decrease"));
                }
                (s..e)
                    .map(|j| child.value(j, DataType::Scalar(elem)))
                    .collect::<DecodeResult<Vec<_>>>()
                    .map(Value::List)
            }
            (DataType::Scalar(s), _) => Ok(match s {
                ScalarType::Bool => Value::Bool(self.bool(i)),
                ScalarType::Float32 => Value::Float32(f32::from_bits(self.plain_bits(i) as u32)),
                ScalarType::Float64 => Value::Float64(f64::from_bits(self.plain_bits(i))),
                ScalarType::Text => Value::Text(
                    std::str::from_utf8(self.bytes(i)?)
                        .map_err(|_| DecodeError::new(0, "text is not UTF-8"))?
                        .to_string(),
                ),
                ScalarType::Bytes => Value::Bytes(self.bytes(i)?.to_vec()),
                ScalarType::Int16
                | ScalarType::Int32
                | ScalarType::Int64
                | ScalarType::Date
                | ScalarType::Timestamp
                | ScalarType::TimestampTz => int_value(s, self.int(i)),
            }),
            _ => Err(DecodeError::new(0, "chunk does not match its column type")),
        }
    }

    pub(super) fn plain_bits(&self, i: usize) -> u64 {
        match &self.body {
            Body::Plain { data, width } => plain_int(data, *width, i) as u64,
            _ => 0,
        }
    }

    pub(super) fn null_buffer(&self) -> Option<NullBuffer> {
        self.nulls
            .map(|b| NullBuffer::new(BooleanBuffer::new(Buffer::from_slice_ref(b), 0, self.n)))
    }

    /// All integer values (integer-like chunks).
    pub(crate) fn ints(&self) -> Vec<i64> {
        match &self.body {
            Body::For(f) => f.to_vec(),
            Body::Plain { data, width } => {
                (0..self.n).map(|i| plain_int(data, *width, i)).collect()
            }
            _ => vec![0; self.n],
        }
    }

    /// Decode the whole chunk into the canonical Arrow array of `ty`.
    pub(crate) fn to_arrow(&self, ty: DataType) -> DecodeResult<ArrayRef> {
        let nulls = self.null_buffer();
        let n = self.n;
        Ok(match ty {
            DataType::List(elem) => {
                let Body::List { offsets, child } = &self.body else {
                    return Err(DecodeError::new(0, "list column without list encoding"));
                };
                let offs = offsets.checked_offsets(child.n)?;
                if offs.first().copied().unwrap_or(0) != 0 {
                    return Err(DecodeError::new(0, "list offsets do not start at 0"));
                }
                let values = child.to_arrow(DataType::Scalar(elem))?;
                let list = ListArray::try_new(
                    Arc::new(list_item_field(elem)),
                    OffsetBuffer::new(ScalarBuffer::from(offs)),
                    values,
                    nulls,
                )
                .map_err(|e| DecodeError::new(0, e.to_string()))?;
                Arc::new(list)
            }
            DataType::Scalar(s) => match s {
                ScalarType::Bool => {
                    let values = match &self.body {
                        Body::Bitmap(b) => BooleanBuffer::new(Buffer::from_slice_ref(b), 0, n),
                        Body::ConstBool(v) => {
                            if *v {
                                BooleanBuffer::new_set(n)
                            } else {
                                BooleanBuffer::new_unset(n)
                            }
                        }
                        _ => return Err(DecodeError::new(0, "bool column with bad encoding")),
                    };
                    Arc::new(BooleanArray::new(values, nulls))
                }
                ScalarType::Int16 => {
                    prim::<Int16Type>(self.ints().iter().map(|&v| v as i16), nulls)
                }
                ScalarType::Int32 => {
                    prim::<Int32Type>(self.ints().iter().map(|&v| v as i32), nulls)
                }
                ScalarType::Date => {
                    prim::<Date32Type>(self.ints().iter().map(|&v| v as i32), nulls)
                }
                ScalarType::Int64 => prim::<Int64Type>(self.ints(), nulls),
                ScalarType::Timestamp => prim::<TimestampMicrosecondType>(self.ints(), nulls),
                ScalarType::TimestampTz => Arc::new(
                    PrimitiveArray::<TimestampMicrosecondType>::new(self.ints().into(), nulls)
                        .with_timezone("+00:00"),
                ),
                ScalarType::Float32 => {
                    let data = self.plain_data(4)?;
                    prim::<Float32Type>(
                        data.chunks_exact(4).map(|c| {
                            f32::from_le_bytes(<[u8; 4]>::try_from(c).unwrap_or_default())
                        }),
                        nulls,
                    )
                }
                ScalarType::Float64 => {
                    let data = self.plain_data(8)?;
                    prim::<Float64Type>(
                        data.chunks_exact(8).map(|c| {
                            f64::from_le_bytes(<[u8; 8]>::try_from(c).unwrap_or_default())
                        }),
                        nulls,
                    )
                }
                ScalarType::Text | ScalarType::Bytes => self.bytes_to_arrow(s, nulls)?,
            },
        })
    }

    pub(super) fn plain_data(&self, width: usize) -> DecodeResult<&'a [u8]> {
        match &self.body {
            Body::Plain { data, width: w } if *w == width => Ok(data),
            _ => Err(DecodeError::new(0, "float column without plain encoding")),
        }
    }

    pub(super) fn bytes_to_arrow(
        &self,
        s: ScalarType,
        nulls: Option<NullBuffer>,
    ) -> DecodeResult<ArrayRef> {
        let (offsets, data): (Vec<i32>, Vec<u8>) = match &self.body {
            Body::VarLen { offsets, data } => (offsets.checked_offsets(data.len())?, data.to_vec()),
            Body::Dict { .. } | Body::KeyU64 { .. } => {
                let mut offs = Vec::with_capacity(self.n + 1);
                let mut buf = Vec::new();
                offs.push(0i32);
                for i in 0..self.n {
                    match &self.body {
                        Body::KeyU64 { .. } => buf.extend_from_slice(&self.key(i)?),
                        _ => buf.extend_from_slice(self.bytes(i)?),
                    }
                    let len = i32::try_from(buf.len())
                        .map_err(|_| DecodeError::new(0, "chunk larger than 2 GiB"))?;
                    offs.push(len);
                }
                (offs, buf)
            }
            _ => return Err(DecodeError::new(0, "text column with bad encoding")),
        };
        let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
        let values = Buffer::from_vec(data);
        let arr: ArrayRef = if s == ScalarType::Text {
            Arc::new(
                StringArray::try_new(offsets, values, nulls)
                    .map_err(|e| DecodeError::new(0, e.to_string()))?,
            )
        } else {
            Arc::new(
                BinaryArray::try_new(offsets, values, nulls)
                    .map_err(|e| DecodeError::new(0, e.to_string()))?,
            )
        };
        Ok(arr)
    }

    /// Sequence numbers of a `seq` chunk as an Arrow array.
    pub(crate) fn to_u64_arrow(&self) -> PrimitiveArray<UInt64Type> {
        PrimitiveArray::<UInt64Type>::from(
            self.ints()
                .into_iter()
                .map(|v| v as u64)
                .collect::<Vec<_>>(),
        )
    }
}
