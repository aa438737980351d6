//! SplitMix64: the one deterministic generator of the tests' and benchmarks' data.
//! Shared by `#[path]` include (storage tests and benches, the SQL crate's tests
//! and benches), so every seed means the same sequence everywhere.
#![allow(dead_code)]

/// The golden-ratio increment of SplitMix64.
pub const GOLD: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output for state `z` (the state after adding [`GOLD`] to `z`).
pub fn mix64(z: u64) -> u64 {
    let mut z = z.wrapping_add(GOLD);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A SplitMix64 stream.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let out = mix64(self.0);
        self.0 = self.0.wrapping_add(GOLD);
        out
    }
    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    /// True with the given chance in percent.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
}
