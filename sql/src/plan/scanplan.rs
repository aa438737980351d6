//! What a table scan reads, decided from its pushed-down filters: exact keys when
//! every key column is pinned by equality sets, key-prefix ranges when leading ones
//! are, else one key range; and the event-time window of a history scan. Built
//! filter by filter in a [`Narrowing`], then turned into a [`ScanPlan`].

use datafusion::logical_expr::Operator;
use hindsight_storage::{
    KeyRange, ScalarType, ScanMode, Value, encode_key, encode_key_prefix, prefix_successor,
};

/// What a scan reads, after filter analysis.
#[derive(Clone, Debug)]
pub(super) struct ScanPlan {
    pub(super) mode: ScanMode,
    /// Full keys to look up (latest) or to scan exactly (history); `None`: no key set.
    pub(super) keys: Option<Vec<Vec<u8>>>,
    /// Key ranges to scan (a single full range when there is no key restriction).
    pub(super) ranges: Vec<KeyRange>,
}

/// What a scan's pushed-down filters narrow it to, gathered filter by filter.
pub(super) struct Narrowing {
    /// Per key position of the pinned prefix, the intersection of all equality
    /// sets on it (`None`: no set seen yet).
    sets: Vec<Option<Vec<Value>>>,
    /// Encoded bounds of a single-column key range; the bool marks an inclusive end.
    lo: Option<Vec<u8>>,
    hi: Option<(Vec<u8>, bool)>,
    /// Event-time window, inclusive.
    from: i64,
    to: i64,
}

impl Narrowing {
    pub(super) fn new(prefix: usize) -> Self {
        Narrowing {
            sets: vec![None; prefix],
            lo: None,
            hi: None,
            from: i64::MIN,
            to: i64::MAX,
        }
    }

    /// Key position `p` is one of `vals` (and of every earlier set on it).
    pub(super) fn key_in(&mut self, p: usize, mut vals: Vec<Value>) {
        let Some(slot) = self.sets.get_mut(p) else {
            return;
        };
        if let Some(prev) = slot {
            vals.retain(|v| prev.contains(v));
        }
        vals.dedup();
        *slot = Some(vals);
    }

    /// The first key column compared with `op` to the encoded key `enc`; the
    /// tightest bound on each side wins.
    pub(super) fn key_bound(&mut self, op: Operator, enc: Vec<u8>) {
        match op {
            Operator::Gt | Operator::GtEq => {
                if self.lo.as_ref().is_none_or(|l| enc > *l) {
                    self.lo = Some(enc);
                }
            }
            _ => {
                let inclusive = op == Operator::LtEq;
                if self.hi.as_ref().is_none_or(|(h, _)| enc < *h) {
                    self.hi = Some((enc, inclusive));
                }
            }
        }
    }

    /// Event time compared with `op` to `t` (microseconds).
    pub(super) fn event_time(&mut self, op: Operator, t: i64) {
        match op {
            Operator::Gt | Operator::GtEq => self.from = self.from.max(t),
            Operator::Lt | Operator::LtEq => self.to = self.to.min(t),
            Operator::Eq => {
                self.from = self.from.max(t);
                self.to = self.to.min(t);
            }
            _ => {}
        }
    }

    /// Whole keys when every key column is pinned, prefix ranges when some leading
    /// ones are, else the one key range.
    pub(super) fn plan(
        self,
        mode: ScanMode,
        key_types: &[ScalarType],
    ) -> crate::error::Result<ScanPlan> {
        let mode = match mode {
            ScanMode::History { .. } => ScanMode::History {
                from: self.from,
                to: self.to,
            },
            m => m,
        };
        if self.sets.is_empty() {
            let end = self.hi.map(|(k, inclusive)| match inclusive {
                true => exact_range(&k).end.unwrap_or(k),
                false => k,
            });
            return Ok(ScanPlan {
                mode,
                keys: None,
                ranges: vec![KeyRange::encoded(self.lo, end)],
            });
        }
        let pinned = self.sets.len();
        let sets: Vec<Vec<Value>> = self
            .sets
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect();
        let combos = cartesian(&sets);
        if pinned == key_types.len() {
            let mut keys = combos
                .iter()
                .map(|c| encode_key(c, key_types, &[]))
                .collect::<Result<Vec<_>, _>>()?;
            keys.sort();
            keys.dedup();
            let ranges = keys.iter().map(|k| exact_range(k)).collect();
            return Ok(ScanPlan {
                mode,
                keys: Some(keys),
                ranges,
            });
        }
        let mut ranges = combos
            .iter()
            .map(|c| {
                let p = encode_key_prefix(c, key_types, &[])?;
                let end = prefix_successor(&p);
                Ok(KeyRange::encoded(Some(p), end))
            })
            .collect::<Result<Vec<_>, hindsight_storage::Error>>()?;
        ranges.sort_by(|a, b| a.start.cmp(&b.start));
        Ok(ScanPlan {
            mode,
            keys: None,
            ranges,
        })
    }
}

/// The key range holding exactly the full key `k`.
fn exact_range(k: &[u8]) -> KeyRange {
    let mut end = k.to_vec();
    end.push(0);
    KeyRange::encoded(Some(k.to_vec()), Some(end))
}

fn cartesian(sets: &[Vec<Value>]) -> Vec<Vec<Value>> {
    let mut out: Vec<Vec<Value>> = vec![vec![]];
    for set in sets {
        let mut next = Vec::with_capacity(out.len() * set.len());
        for prefix in &out {
            for v in set {
                let mut p = prefix.clone();
                p.push(v.clone());
                next.push(p);
            }
        }
        out = next;
    }
    out
}
