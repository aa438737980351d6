//! A file set: the immutable set of live SST files, per table and level.
//!
//! Level 0 holds flushed memtables, possibly overlapping, newest first. Levels 1 and
//! up each hold non-overlapping files sorted by key, and a key's versions never span
//! two files of one level. File sets are replaced, never mutated: readers hold an
//! `Arc<FileSet>` and keep seeing the same files (which stay readable through their
//! mmaps even after deletion) for as long as they hold it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::keycodec::key_cmp;
use crate::manifest::{FileMeta, ManifestEdit};
use crate::sst::SstReader;
use crate::types::TableId;

/// Number of levels (0..NUM_LEVELS).
pub(crate) const NUM_LEVELS: usize = 7;

/// An open SST with its manifest record.
#[derive(Debug)]
pub(crate) struct SstFile {
    pub meta: FileMeta,
    pub reader: SstReader,
}

/// The files of one table.
#[derive(Clone, Debug, Default)]
pub(crate) struct TableFiles {
    pub levels: Vec<Vec<Arc<SstFile>>>,
}

impl TableFiles {
    fn normalize(&mut self) {
        self.levels.resize_with(NUM_LEVELS, Vec::new);
        if let Some(l0) = self.levels.get_mut(0) {
            l0.sort_by(|a, b| {
                b.meta
                    .bounds
                    .max_seq
                    .cmp(&a.meta.bounds.max_seq)
                    .then(b.meta.number.cmp(&a.meta.number))
            });
        }
        for l in self.levels.iter_mut().skip(1) {
            l.sort_by(|a, b| a.meta.bounds.min_key.cmp(&b.meta.bounds.min_key));
        }
    }

    /// Files of `level` (empty if none).
    pub(crate) fn level(&self, level: usize) -> &[Arc<SstFile>] {
        self.levels
            .get(level)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The file of a sorted level (>= 1) whose key range holds `key`.
    pub(crate) fn file_for_key(&self, level: usize, key: &[u8]) -> Option<&Arc<SstFile>> {
        let files = self.level(level);
        let i = files.partition_point(|f| key_cmp(&f.meta.bounds.max_key, key).is_lt());
        files
            .get(i)
            .filter(|f| key_cmp(&f.meta.bounds.min_key, key).is_le())
    }

    /// Every file, level by level.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Arc<SstFile>> {
        self.levels.iter().flatten()
    }
}

/// The live files of every table.
#[derive(Clone, Debug, Default)]
pub(crate) struct FileSet {
    pub tables: HashMap<TableId, Arc<TableFiles>>,
}

impl FileSet {
    /// Files of `table`.
    pub(crate) fn table(&self, table: TableId) -> Option<&Arc<TableFiles>> {
        self.tables.get(&table)
    }

    /// Every live file.
    pub(crate) fn all_files(&self) -> impl Iterator<Item = &Arc<SstFile>> {
        self.tables.values().flat_map(|t| t.all())
    }

    /// A new file set with `edit` applied; `opened` supplies the added files.
    pub(crate) fn apply(&self, edit: &ManifestEdit, opened: &[Arc<SstFile>]) -> FileSet {
        let mut tables = self.tables.clone();
        let mut touched: HashMap<TableId, TableFiles> = HashMap::new();
        fn entry<'a>(
            touched: &'a mut HashMap<TableId, TableFiles>,
            tables: &HashMap<TableId, Arc<TableFiles>>,
            t: TableId,
        ) -> &'a mut TableFiles {
            let tf = touched
                .entry(t)
                .or_insert_with(|| tables.get(&t).map(|f| (**f).clone()).unwrap_or_default());
            tf.levels.resize_with(NUM_LEVELS, Vec::new);
            tf
        }
        for (t, n) in &edit.deleted {
            for l in &mut entry(&mut touched, &tables, *t).levels {
                l.retain(|f| f.meta.number != *n);
            }
        }
        for f in opened {
            let tf = entry(&mut touched, &tables, f.meta.table);
            if let Some(l) = tf.levels.get_mut(f.meta.level as usize) {
                l.push(f.clone());
            }
        }
        for (t, mut tf) in touched {
            tf.normalize();
            if tf.all().next().is_none() {
                tables.remove(&t);
            } else {
                tables.insert(t, Arc::new(tf));
            }
        }
        FileSet { tables }
    }
}
