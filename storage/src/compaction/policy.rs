//! Compaction policy: which files to merge, decided from file metadata alone.
//!
//! Picking: per table, level 0 scores by file count against the trigger, deeper
//! levels by bytes against their target (level 1 target, times the multiplier per
//! level). The highest score >= 1 wins. L0 compacts all its files with the
//! overlapping L1 files into L1; level n compacts one file (round robin through the
//! key space) with its overlapping level n+1 files. A full compaction merges every
//! file of a table into one sorted run at the shallowest level whose target holds it.
//!
//! The policy is generic over [`PolicyFile`] (anything that carries a
//! [`FileMeta`]): the engine passes its open files, tests and simulations pass bare
//! metadata. It never reads a file.
//!
//! Invariants of a [`Job`]: each input run is key-sorted and non-overlapping inside
//! itself (a level-0 file is its own run); the output level is one deeper than the
//! picked level (or the full compaction's target).

use std::sync::Arc;

use crate::fileset::{NUM_LEVELS, SstFile};
use crate::manifest::FileMeta;

/// What the policy needs of a file: its manifest record.
pub(crate) trait PolicyFile: Clone {
    fn meta(&self) -> &FileMeta;
}

impl PolicyFile for Arc<SstFile> {
    fn meta(&self) -> &FileMeta {
        &self.meta
    }
}

impl PolicyFile for FileMeta {
    fn meta(&self) -> &FileMeta {
        self
    }
}

/// Level sizing and triggers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LevelConfig {
    pub l0_trigger: usize,
    pub level1_bytes: u64,
    pub multiplier: u64,
}

impl LevelConfig {
    /// Target bytes of `level` (>= 1).
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
pub(crate) struct Job<F> {
    /// Sorted runs to merge, newest first.
    pub inputs: Vec<Vec<F>>,
    pub output_level: usize,
    pub score: f64,
}

impl<F> Job<F> {
    pub(crate) fn input_files(&self) -> impl Iterator<Item = &F> {
        self.inputs.iter().flatten()
    }
}

/// Files of `level` (empty past the last level).
fn level<F>(levels: &[Vec<F>], level: usize) -> &[F] {
    levels.get(level).map_or(&[], Vec::as_slice)
}

fn level_bytes<F: PolicyFile>(levels: &[Vec<F>], l: usize) -> u64 {
    level(levels, l).iter().map(|f| f.meta().size).sum()
}

/// Files of level `l` whose key range intersects [`lo`, `hi`].
fn overlapping<F: PolicyFile>(
    levels: &[Vec<F>],
    l: usize,
    lo: Option<&[u8]>,
    hi: Option<&[u8]>,
) -> Vec<F> {
    level(levels, l)
        .iter()
        .filter(|f| f.meta().bounds.overlaps(lo, hi))
        .cloned()
        .collect()
}

fn key_span<F: PolicyFile>(files: &[F]) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let lo = files.iter().map(|f| f.meta().bounds.min_key.clone()).min();
    let hi = files.iter().map(|f| f.meta().bounds.max_key.clone()).max();
    (lo, hi)
}

/// The level most over its target, with its score, if any is at or over it.
fn most_urgent<F: PolicyFile>(levels: &[Vec<F>], cfg: &LevelConfig) -> Option<(f64, usize)> {
    let mut best: Option<(f64, usize)> = None;
    let l0 = level(levels, 0).len();
    let trigger = cfg.l0_trigger.max(1);
    if l0 >= trigger {
        best = Some((l0 as f64 / trigger as f64, 0));
    }
    for l in 1..NUM_LEVELS - 1 {
        let score = level_bytes(levels, l) as f64 / cfg.target_bytes(l).max(1) as f64;
        if score >= 1.0 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, l));
        }
    }
    best
}

/// Pick the most urgent compaction of one table's `levels`, if any level is over its
/// target. `cursor[level]` is the key where the next level-n pick starts (round
/// robin); the pick advances it.
pub(crate) fn pick<F: PolicyFile>(
    levels: &[Vec<F>],
    cfg: &LevelConfig,
    cursor: &mut [Vec<u8>],
) -> Option<Job<F>> {
    let (score, from) = most_urgent(levels, cfg)?;
    let upper: Vec<F> = if from == 0 {
        level(levels, 0).to_vec()
    } else {
        let fs = level(levels, from);
        let start = cursor.get(from).map_or(&[][..], Vec::as_slice);
        let f = fs
            .iter()
            .find(|f| f.meta().bounds.min_key.as_slice() > start)
            .or_else(|| fs.first())?
            .clone();
        if let Some(c) = cursor.get_mut(from) {
            c.clone_from(&f.meta().bounds.max_key);
        }
        vec![f]
    };
    let output_level = from + 1;
    let (lo, hi) = key_span(&upper);
    let lower = overlapping(levels, output_level, lo.as_deref(), hi.as_deref());
    let mut inputs: Vec<Vec<F>> = if from == 0 {
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
        score,
    })
}

/// A job merging every file of a table into one sorted run, placed at the shallowest
/// level whose target holds it (and no shallower than the deepest level in use), so
/// that the result is not immediately over its level's target. A table already in
/// one run at that level is left alone unless `gc` (it has a retention to enforce).
pub(crate) fn full<F: PolicyFile>(
    levels: &[Vec<F>],
    cfg: &LevelConfig,
    gc: bool,
) -> Option<Job<F>> {
    let bytes: u64 = levels.iter().flatten().map(|f| f.meta().size).sum();
    let in_use: Vec<usize> = (0..NUM_LEVELS)
        .filter(|&l| !level(levels, l).is_empty())
        .collect();
    let deepest = *in_use.last()?;
    let fits = (1..NUM_LEVELS)
        .find(|&l| cfg.target_bytes(l) >= bytes)
        .unwrap_or(NUM_LEVELS - 1);
    let output_level = deepest.max(fits);
    if in_use == [output_level] && !gc {
        return None; // already one sorted run in place
    }
    let mut inputs: Vec<Vec<F>> = level(levels, 0).iter().map(|f| vec![f.clone()]).collect();
    for l in 1..NUM_LEVELS {
        if !level(levels, l).is_empty() {
            inputs.push(level(levels, l).to_vec());
        }
    }
    Some(Job {
        inputs,
        output_level,
        score: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounds::Bounds;
    use crate::types::TableId;

    const CFG: LevelConfig = LevelConfig {
        l0_trigger: 4,
        level1_bytes: 1000,
        multiplier: 10,
    };

    fn file(number: u64, level: u8, size: u64, keys: (u8, u8)) -> FileMeta {
        FileMeta {
            number,
            table: TableId(1),
            level,
            size,
            rows: 1,
            bounds: Bounds {
                min_et: 0,
                max_et: 0,
                min_seq: number,
                max_seq: number,
                min_key: vec![keys.0],
                max_key: vec![keys.1],
            },
        }
    }

    fn levels(files: &[FileMeta]) -> Vec<Vec<FileMeta>> {
        let mut ls = vec![Vec::new(); NUM_LEVELS];
        for f in files {
            ls[f.level as usize].push(f.clone());
        }
        ls
    }

    fn numbers(job: &Job<FileMeta>) -> Vec<Vec<u64>> {
        job.inputs
            .iter()
            .map(|r| r.iter().map(|f| f.number).collect())
            .collect()
    }

    #[test]
    fn nothing_is_picked_below_every_trigger() {
        let ls = levels(&[file(1, 0, 10, (0, 9)), file(2, 1, 999, (0, 9))]);
        assert!(pick(&ls, &CFG, &mut vec![Vec::new(); NUM_LEVELS]).is_none());
    }

    #[test]
    fn level0_at_its_trigger_merges_every_l0_file_with_the_overlapping_l1_files() {
        let ls = levels(&[
            file(1, 0, 10, (10, 20)),
            file(2, 0, 10, (15, 30)),
            file(3, 0, 10, (12, 13)),
            file(4, 0, 10, (25, 28)),
            file(5, 1, 100, (0, 9)),
            file(6, 1, 100, (18, 40)),
            file(7, 1, 100, (41, 50)),
        ]);
        let job = pick(&ls, &CFG, &mut vec![Vec::new(); NUM_LEVELS]).unwrap();
        assert_eq!(job.output_level, 1);
        assert_eq!(
            numbers(&job),
            vec![vec![1], vec![2], vec![3], vec![4], vec![6]]
        );
        assert_eq!(job.score, 1.0);
    }

    #[test]
    fn an_oversized_level_compacts_one_file_at_a_time_round_robin() {
        let ls = levels(&[
            file(1, 1, 600, (0, 9)),
            file(2, 1, 600, (10, 19)),
            file(3, 2, 100, (5, 12)),
            file(4, 3, 100, (100, 110)),
        ]);
        let mut cursor = vec![Vec::new(); NUM_LEVELS];
        let first = pick(&ls, &CFG, &mut cursor).unwrap();
        assert_eq!(numbers(&first), vec![vec![1], vec![3]]);
        assert_eq!(first.output_level, 2);
        let second = pick(&ls, &CFG, &mut cursor).unwrap();
        assert_eq!(numbers(&second), vec![vec![2], vec![3]]);
        let third = pick(&ls, &CFG, &mut cursor).unwrap();
        assert_eq!(numbers(&third), vec![vec![1], vec![3]], "wraps around");
    }

    #[test]
    fn the_most_urgent_level_wins() {
        // L0 at 5/4 = 1.25; L2 at 25_000/10_000 = 2.5.
        let mut files: Vec<FileMeta> = (1..=5).map(|n| file(n, 0, 1, (0, 1))).collect();
        files.push(file(9, 2, 25_000, (0, 9)));
        let job = pick(&levels(&files), &CFG, &mut vec![Vec::new(); NUM_LEVELS]).unwrap();
        assert_eq!(job.output_level, 3);
        assert_eq!(job.score, 2.5);
    }

    #[test]
    fn full_compaction_lands_at_the_shallowest_level_that_holds_the_table() {
        let ls = levels(&[file(1, 0, 600, (0, 9)), file(2, 0, 600, (0, 9))]);
        let job = full(&ls, &CFG, false).unwrap();
        assert_eq!(job.output_level, 2, "1,200 bytes exceed level 1's 1,000");
        assert_eq!(numbers(&job), vec![vec![1], vec![2]]);
    }

    #[test]
    fn full_compaction_never_moves_data_up_and_skips_a_single_run_unless_gc() {
        let one_run = levels(&[file(1, 4, 10, (0, 9)), file(2, 4, 10, (10, 19))]);
        assert!(full(&one_run, &CFG, false).is_none());
        let gc = full(&one_run, &CFG, true).unwrap();
        assert_eq!(gc.output_level, 4);
        let spread = levels(&[file(1, 0, 10, (0, 9)), file(2, 4, 10, (10, 19))]);
        assert_eq!(full(&spread, &CFG, false).unwrap().output_level, 4);
        assert!(full(&levels(&[]), &CFG, true).is_none());
    }

    /// A small simulation: files flushed at a steady rate into level 0 and compacted
    /// as the policy picks (outputs modelled as one file of the summed size) keep every
    /// level under its target, level 0 under its trigger, and write amplification
    /// bounded.
    #[test]
    fn a_simulated_write_stream_keeps_levels_near_their_targets() {
        let mut ls: Vec<Vec<FileMeta>> = vec![Vec::new(); NUM_LEVELS];
        let mut cursor = vec![Vec::new(); NUM_LEVELS];
        let mut next = 1u64;
        let mut written = 0u64;
        for step in 0..2_000u64 {
            let k = (step % 250) as u8;
            ls[0].push(file(next, 0, 100, (k, k.saturating_add(5))));
            next += 1;
            while let Some(job) = pick(&ls, &CFG, &mut cursor) {
                let gone: Vec<u64> = job.input_files().map(|f| f.number).collect();
                let size: u64 = job.input_files().map(|f| f.size).sum();
                written += size;
                let (lo, hi) = key_span(&job.input_files().cloned().collect::<Vec<_>>());
                for l in ls.iter_mut() {
                    l.retain(|f| !gone.contains(&f.number));
                }
                let mut out = file(next, job.output_level as u8, size, (0, 0));
                out.bounds.min_key = lo.unwrap_or_default();
                out.bounds.max_key = hi.unwrap_or_default();
                next += 1;
                ls[job.output_level].push(out);
                ls[job.output_level].sort_by(|a, b| a.bounds.min_key.cmp(&b.bounds.min_key));
            }
            assert!(ls[0].len() < CFG.l0_trigger);
            for l in 1..NUM_LEVELS - 1 {
                assert!(
                    level_bytes(&ls, l) < CFG.target_bytes(l),
                    "level {l} over target"
                );
            }
        }
        let total: u64 = ls.iter().flatten().map(|f| f.size).sum();
        assert_eq!(
            total,
            2_000 * 100,
            "compaction neither loses nor invents bytes"
        );
        eprintln!("compaction wrote {written} bytes for {total} flushed");
        // Leveled compaction rewrites a byte at most (multiplier + 1) times per level
        // it passes through (its own write plus the overlap of the level below).
        let deepest = (0..NUM_LEVELS).rev().find(|&l| !ls[l].is_empty()).unwrap();
        let bound = deepest as u64 * (CFG.multiplier + 1) * total;
        assert!(written <= bound, "wrote {written}, bound {bound}");
    }
}
