//! Synchronous work too long for a connection worker: commits that wait for the
//! WAL's fsync, and point lookups of many keys.
//!
//! Connections run on a few runtime workers (one on a 2-CPU machine, see the
//! server's `--worker-threads`): a lookup of one key takes microseconds, and a
//! worker that never waits keeps the kernel from time-slicing several of them
//! against the clients on the same cores, which is what the p99 of busy lookups
//! measures. Work that blocks or runs long would stall every connection queued on
//! that worker, so it goes through [`blocking`]: on a multi-threaded runtime the
//! worker hands its queue to another thread (`tokio::task::block_in_place`) and
//! then runs the work; elsewhere (a current-thread runtime in tests, a plain
//! thread) it runs inline.
//!
//! Invariant: the closure never touches the async runtime (it runs outside it).

use tokio::runtime::{Handle, RuntimeFlavor};

/// Lookups of at least this many keys run through [`blocking`]. Handing the worker
/// over costs a thread wake-up (~10 us of CPU); a lookup costs ~2-3 us per key, so
/// below this the hand-over would cost more than the stall it avoids.
const BLOCKING_LOOKUP_KEYS: usize = 16;

/// Run `f`, a point lookup of `keys` keys: through [`blocking`] when they are many.
pub(crate) fn lookup<T>(keys: usize, f: impl FnOnce() -> T) -> T {
    if keys >= BLOCKING_LOOKUP_KEYS {
        blocking(f)
    } else {
        f()
    }
}

/// Run `f`, which may block or run long, without stalling the runtime worker's
/// other tasks.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}
