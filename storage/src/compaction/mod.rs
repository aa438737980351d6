//! Leveled compaction that keeps history, in two parts:
//!
//! - [`policy`]: which files to merge, from file metadata alone (unit-tested and
//!   simulated without any file on disk);
//! - [`filter`]: executing a job's merge through the retention filter, which decides
//!   which versions survive.
//!
//! The engine (`engine::background`) asks the policy for a job, runs the filter
//! over the job's files, writes the surviving versions to new files and installs
//! them in one manifest edit.

mod filter;
pub(crate) mod policy;

pub(crate) use filter::{Horizons, run};
pub(crate) use policy::{Job, LevelConfig};
