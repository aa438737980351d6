//! Leveled compaction that keeps history.
//!
//! Picking: per table, level 0 scores by file count against the trigger, deeper levels
//! by bytes against their target (level 1 target, times the multiplier per level).
//! The highest score >= 1 wins. L0 compacts all its files with the overlapping L1
//! files into L1; level n compacts one file (round robin through the key space) with
//! its overlapping level n+1 files. A full compaction merges every file of a table
//! into one sorted run at the deepest level.
//!
//! What compaction may drop (DESIGN.md): for each entity, walking versions newest
//! first, a version is dropped only if an earlier version `w` "dominates" it, where
//! `w` is *settled* (committed before the table's system-time horizon, so every
//! reader the engine still serves sees `w`) and either has the same event time
//! (a superseded write) or both are at or below the event-time retention horizon
//! (keeping the newest version at or below the horizon). A tombstone is dropped when
//! it is settled, at or below the horizon (so everything older is dropped with it),
//! and the output is bottommost (no older data below). With no retention set nothing
//! is ever dropped: every write stays visible to time travel.

use std::sync::Arc;

use crate::error::Result;
use crate::keycodec::key_eq;
use crate::merge::{BlockPrune, FileSource, KeyRange, Merger, Source, SrcChunk};
use crate::scan::Selection;
use crate::types::{DataType, TableDef};
use crate::version::{NUM_LEVELS, SstFile, TableFiles};
use crate::versions::Versions;

/// Level sizing and triggers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LevelConfig {
    pub l0_trigger: usize,
    pub level1_bytes: u64,
    pub multiplier: u64,
}

impl LevelConfig {
    pub(crate) fn target_bytes(&self, level: usize) -> u64 {
        let mut t = self.level1_bytes;
        for _ in 1..level {
            t = t.saturating_mul(self.multiplier);
        }
        t
    }
}

/// A chosen compaction.
#[derive(Debug)]
pub(crate) struct Job {
    pub inputs: Vec<Vec<Arc<SstFile>>>,
    pub output_level: usize,
    pub bottommost: bool,
    pub score: f64,
}

impl Job {
    pub(crate) fn input_files(&self) -> impl Iterator<Item = &Arc<SstFile>> {
        self.inputs.iter().flatten()
    }
}

fn key_span(files: &[Arc<SstFile>]) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let lo = files.iter().map(|f| f.meta.min_key.clone()).min();
    let hi = files.iter().map(|f| f.meta.max_key.clone()).max();
    (lo, hi)
}

fn is_bottommost(
    files: &TableFiles,
    output_level: usize,
    lo: Option<&[u8]>,
    hi: Option<&[u8]>,
) -> bool {
    (output_level + 1..NUM_LEVELS).all(|l| files.overlapping(l, lo, hi).is_empty())
}

/// Pick the most urgent compaction of one table, if any level is over its target.
/// `cursor[level]` is the key where the next level-n pick starts (round robin).
pub(crate) fn pick(files: &TableFiles, cfg: &LevelConfig, cursor: &mut [Vec<u8>]) -> Option<Job> {
    let mut best: Option<(f64, usize)> = None;
    let l0 = files.level(0).len();
    if l0 >= cfg.l0_trigger.max(1) {
        best = Some((l0 as f64 / cfg.l0_trigger.max(1) as f64, 0));
    }
    for level in 1..NUM_LEVELS - 1 {
        let score = files.level_bytes(level) as f64 / cfg.target_bytes(level).max(1) as f64;
        if score >= 1.0 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, level));
        }
    }
    let (score, level) = best?;
    let upper: Vec<Arc<SstFile>> = if level == 0 {
        files.level(0).to_vec()
    } else {
        let fs = files.level(level);
        let start = cursor.get(level).cloned().unwrap_or_default();
        let f = fs
            .iter()
            .find(|f| f.meta.min_key > start)
            .or_else(|| fs.first())?
            .clone();
        if let Some(c) = cursor.get_mut(level) {
            c.clone_from(&f.meta.max_key);
        }
        vec![f]
    };
    let output_level = level + 1;
    let (lo, hi) = key_span(&upper);
    let lower = files.overlapping(output_level, lo.as_deref(), hi.as_deref());
    let (lo_all, hi_all) = key_span(&[upper.clone(), lower.clone()].concat());
    let bottommost = is_bottommost(files, output_level, lo_all.as_deref(), hi_all.as_deref());
    let mut inputs: Vec<Vec<Arc<SstFile>>> = if level == 0 {
        upper.into_iter().map(|f| vec![f]).collect()
    } else {
        vec![upper]
    };
    if !lower.is_empty() {
        inputs.push(lower);
    }
    Some(Job {
        inputs,
        output_level,
        bottommost,
        score,
    })
}

/// A job merging every file of a table into one sorted run, placed at the shallowest
/// level whose target holds it (and no shallower than the deepest level in use), so
/// that the result is not immediately over its level's target. A table already in
/// one run at that level is left alone unless `gc` (it has a retention to enforce).
pub(crate) fn full(files: &TableFiles, cfg: &LevelConfig, gc: bool) -> Option<Job> {
    let all: Vec<Arc<SstFile>> = files.all().cloned().collect();
    if all.is_empty() {
        return None;
    }
    let bytes: u64 = all.iter().map(|f| f.meta.size).sum();
    let fits = (1..NUM_LEVELS)
        .find(|&l| cfg.target_bytes(l) >= bytes)
        .unwrap_or(NUM_LEVELS - 1);
    let output_level = files.deepest_level().max(fits);
    let in_use: Vec<usize> = (0..NUM_LEVELS)
        .filter(|&l| !files.level(l).is_empty())
        .collect();
    if in_use == [output_level] && !gc {
        return None; // already one sorted run in place
    }
    let mut inputs: Vec<Vec<Arc<SstFile>>> =
        files.level(0).iter().map(|f| vec![f.clone()]).collect();
    for l in 1..NUM_LEVELS {
        if !files.level(l).is_empty() {
            inputs.push(files.level(l).to_vec());
        }
    }
    Some(Job {
        inputs,
        output_level,
        bottommost: true,
        score: 0.0,
    })
}

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
    bottommost: bool,
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
            if chunk.tomb.value(i) && settled && below_h && self.bottommost {
                // Everything older is at or below the horizon and dominated: gone too.
                self.dropped += 1;
                continue;
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
    job: &Job,
    table: &TableDef,
    horizons: Horizons,
    chunk_rows: usize,
    mut emit: impl FnMut(Versions) -> Result<()>,
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
        bottommost: job.bottommost,
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
