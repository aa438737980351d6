//! Compaction execution: merge a job's input runs and keep only what retention
//! allows.
//!
//! What compaction may drop (DESIGN.md): for each entity, walking versions newest
//! first, a version is dropped only if an earlier version `w` "dominates" it, where
//! `w` is *settled* (committed before the table's system-time horizon, so every
//! reader the engine still serves sees `w`) and either has the same event time
//! (a superseded write) or both are at or below the event-time retention horizon
//! (keeping the newest version at or below the horizon). A tombstone follows the same
//! rule and is never dropped for being a tombstone: when it is the newest version at
//! or below the horizon it stays, since a late write with an older event time may
//! arrive after this compaction and must stay hidden by the delete (an earlier rule
//! dropped settled tombstones in bottommost outputs, which let such a write become
//! the current state). With no retention set nothing is ever dropped: every write
//! stays visible to time travel.

use std::sync::Arc;

use super::policy::Job;
use crate::error::Result;
use crate::fileset::SstFile;
use crate::keycodec::key_eq;
use crate::merge::{BlockPrune, FileSource, KeyRange, Merger, Source, SrcChunk};
use crate::scan::Selection;
use crate::types::{DataType, TableDef};
use crate::version_run::VersionRun;

/// Garbage-collection horizons for one compaction of one table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Horizons {
    /// Event-time retention horizon (versions at or below it may be thinned).
    pub event: i64,
    /// System-time horizon: versions committed at or before it are settled.
    pub system: i64,
}

impl Horizons {
    /// Horizons of `table` at wall-clock time `now`.
    pub(crate) fn of(table: &TableDef, now: i64) -> Horizons {
        match table.options.retention_micros {
            Some(r) => Horizons {
                event: now.saturating_sub(r),
                system: now.saturating_sub(r),
            },
            None => Horizons {
                event: i64::MIN,
                system: i64::MIN,
            },
        }
    }

    fn keeps_everything(&self) -> bool {
        self.system == i64::MIN
    }
}

/// Per-entity state of the compaction filter.
struct Gc {
    h: Horizons,
    key: Vec<u8>,
    have_key: bool,
    run_et: i64,
    settled_in_run: bool,
    settled_below_h: bool,
    dropped: u64,
}

impl Gc {
    fn process(
        &mut self,
        chunk: &Arc<SrcChunk>,
        rows: std::ops::Range<usize>,
        out: &mut Selection,
    ) -> Result<()> {
        if self.h.keeps_everything() {
            for i in rows {
                out.push(chunk, i);
            }
            return Ok(());
        }
        for i in rows {
            let k = chunk.keys.value(i);
            if !(self.have_key && key_eq(k, &self.key)) {
                self.key.clear();
                self.key.extend_from_slice(k);
                self.have_key = true;
                self.run_et = i64::MAX;
                self.settled_in_run = false;
                self.settled_below_h = false;
            }
            let et = chunk.et.value(i);
            if et != self.run_et {
                self.run_et = et;
                self.settled_in_run = false;
            }
            let below_h = et <= self.h.event;
            if self.settled_in_run || (self.settled_below_h && below_h) {
                self.dropped += 1;
                continue;
            }
            let settled = chunk.commit_time(chunk.seq.value(i))? <= self.h.system;
            if settled {
                self.settled_in_run = true;
                if below_h {
                    self.settled_below_h = true;
                }
            }
            out.push(chunk, i);
        }
        Ok(())
    }
}

/// Merge a job's inputs through the GC filter, handing the surviving versions to
/// `emit` in internal order, about `chunk_rows` at a time. Returns the number of
/// versions dropped.
pub(crate) fn run(
    job: &Job<Arc<SstFile>>,
    table: &TableDef,
    horizons: Horizons,
    chunk_rows: usize,
    mut emit: impl FnMut(VersionRun) -> Result<()>,
) -> Result<u64> {
    let feature_types: Vec<DataType> = table.feature_types();
    let sources: Vec<Box<dyn Source>> = job
        .inputs
        .iter()
        .map(|files| {
            Box::new(FileSource::new(
                files.clone(),
                KeyRange::all(),
                BlockPrune::NONE,
                feature_types.len(),
            )) as Box<dyn Source>
        })
        .collect();
    let mut merger = Merger::new(sources);
    let mut gc = Gc {
        h: horizons,
        key: Vec::new(),
        have_key: false,
        run_et: i64::MAX,
        settled_in_run: false,
        settled_below_h: false,
        dropped: 0,
    };
    let mut sel = Selection::default();
    while let Some(run) = merger.next_run()? {
        gc.process(&run.chunk, run.rows, &mut sel)?;
        if sel.len() >= chunk_rows {
            emit(sel.to_versions(&feature_types)?)?;
            sel = Selection::default();
        }
    }
    if sel.len() > 0 {
        emit(sel.to_versions(&feature_types)?)?;
    }
    Ok(gc.dropped)
}
