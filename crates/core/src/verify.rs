//! The bookkeeping of a verification pass, shared by every engine.

use std::collections::BTreeMap;

use crate::canonical::{Checksum, RecordView};
use crate::record::{IdRange, LogId};
use crate::retention::{PruneMarker, Pruned};
use crate::store::{CorruptRecord, VerifyReport};

/// The ids seen so far, as disjoint runs `start -> end` (inclusive) merged when they touch:
/// its size grows with the number of gaps, not with the ids or their spread.
#[derive(Debug, Default)]
struct IdSet {
    runs: BTreeMap<u64, u64>,
}

impl IdSet {
    /// Adds `id`; false when it was already there.
    fn insert(&mut self, id: u64) -> bool {
        let before = self.runs.range(..=id).next_back().map(|(&s, &e)| (s, e));
        if let Some((_, end)) = before {
            if end >= id {
                return false;
            }
        }
        let after = self.runs.get(&(id + 1)).copied();
        match (before.filter(|&(_, end)| end + 1 == id), after) {
            (Some((start, _)), Some(end)) => {
                self.runs.remove(&(id + 1));
                self.runs.insert(start, end);
            }
            (Some((start, _)), None) => {
                self.runs.insert(start, id);
            }
            (None, Some(end)) => {
                self.runs.remove(&(id + 1));
                self.runs.insert(id, end);
            }
            (None, None) => {
                self.runs.insert(id, id);
            }
        }
        true
    }

    /// The gaps between the runs.
    fn gaps(&self) -> Vec<IdRange> {
        let mut gaps = Vec::new();
        let mut prev_end: Option<u64> = None;
        for (&start, &end) in &self.runs {
            if let Some(p) = prev_end {
                if let (Some(a), Some(b)) = (LogId::new(p + 1), LogId::new(start - 1)) {
                    gaps.extend(IdRange::new(a, b));
                }
            }
            prev_end = Some(end);
        }
        gaps
    }
}

/// Accumulates a [`VerifyReport`] as an engine reads its records in storage order.
#[derive(Debug, Default)]
pub struct Verifier {
    report: VerifyReport,
    prev: Option<LogId>,
    seen: IdSet,
    unordered: bool,
    pruned: Pruned,
}

impl Verifier {
    /// A verifier for storage kept in id order: an id not greater than the one before it
    /// is reported out of order.
    pub fn new() -> Self {
        Self::default()
    }

    /// A verifier for storage where records may legitimately appear in any id order (an
    /// append-only file that also receives imports of older ids): only an id stored twice
    /// is reported, under `out_of_order`.
    pub fn unordered() -> Self {
        Verifier {
            unordered: true,
            ..Self::default()
        }
    }

    /// The store's prune markers (read before its records): their ids count as pruned,
    /// not missing, and a record still present under one is counted in
    /// [`VerifyReport::pruned_present`].
    pub fn prunes(&mut self, markers: Vec<PruneMarker>) {
        self.pruned = Pruned::of(&markers);
        self.report.prunes = markers;
    }

    /// A record read back as raw fields: its checksum is recomputed from `view`.
    pub fn check(&mut self, view: &RecordView<'_>, stored: Checksum, location: impl FnOnce() -> String) {
        let Some(id) = LogId::new(view.id) else {
            self.corrupt(None, format!("{}: id {} is not valid", location(), view.id));
            return;
        };
        let computed = view.checksum();
        if computed != stored {
            self.corrupt(
                Some(id),
                format!(
                    "{}: stored checksum {stored} but the fields give {computed}",
                    location()
                ),
            );
            return;
        }
        self.report.checked += 1;
        self.note(id);
    }

    /// A record that could not be decoded (its id, if known, still counts as present).
    pub fn corrupt(&mut self, id: Option<LogId>, detail: String) {
        self.report.checked += 1;
        self.report.corrupt.push(CorruptRecord { id, detail });
        if let Some(id) = id {
            self.note(id);
        }
    }

    fn note(&mut self, id: LogId) {
        if let Some(prev) = self.prev.filter(|_| !self.unordered) {
            if id <= prev {
                self.report.out_of_order.push(id);
            }
        }
        self.prev = Some(self.prev.map_or(id, |p| p.max(id)));
        self.report.first_id = Some(self.report.first_id.map_or(id, |f| f.min(id)));
        self.report.last_id = Some(self.report.last_id.map_or(id, |l| l.max(id)));
        if !self.seen.insert(id.get()) {
            if self.unordered {
                self.report.out_of_order.push(id);
            }
        } else if self.pruned.contains(id) {
            self.report.pruned_present += 1;
        }
    }

    /// Adds a problem reported by the engine's own check.
    pub fn engine_problem(&mut self, problem: String) {
        self.report.engine_problems.push(problem);
    }

    /// Marks the engine's own check as run.
    pub fn deep_checked(&mut self) {
        self.report.deep_checked = true;
    }

    /// The report, with the gaps inside the id range listed as missing ranges. Memory stays
    /// bounded by the number of gaps, however far apart the ids are.
    pub fn finish(mut self) -> VerifyReport {
        self.report.missing = self.pruned.subtract(&self.seen.gaps());
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: u64) -> RecordView<'static> {
        RecordView {
            id,
            recorded_at: 0,
            job: "j",
            status: 1,
            started_at: 0,
            finished_at: None,
            items_seen: 0,
            items_written: 0,
            items_failed: 0,
            message: "",
            attrs: "{}",
            run: None,
            idempotency_key: None,
        }
    }

    #[test]
    fn reports_gaps_bad_checksums_and_disorder() {
        let mut v = Verifier::new();
        for id in [1, 2, 5, 4] {
            v.check(&view(id), view(id).checksum(), || format!("row {id}"));
        }
        v.check(&view(6), Checksum(0), || "row 6".into());
        let r = v.finish();
        assert_eq!(r.checked, 5);
        assert_eq!(r.missing, vec![IdRange::single(LogId::new(3).unwrap())]);
        assert_eq!(r.out_of_order, vec![LogId::new(4).unwrap()]);
        assert_eq!(r.corrupt.len(), 1);
        assert_eq!(r.corrupt[0].id, LogId::new(6));
        assert!(!r.is_clean());
    }

    #[test]
    fn unordered_storage_reports_only_duplicates() {
        let mut v = Verifier::unordered();
        for id in [3, 1, 2, 2, 5] {
            v.check(&view(id), view(id).checksum(), || format!("line {id}"));
        }
        let r = v.finish();
        assert_eq!(r.out_of_order, vec![LogId::new(2).unwrap()]);
        assert_eq!(r.missing, vec![IdRange::single(LogId::new(4).unwrap())]);
    }

    #[test]
    fn pruned_ids_are_not_missing_and_a_gap_beside_them_still_is() {
        let id = |n| LogId::new(n).unwrap();
        let marker = PruneMarker::new(
            chrono::Utc::now(),
            crate::retention::Policy::default().before_id(id(5)),
            vec![IdRange::new(id(2), id(3)).unwrap()],
            String::new(),
            None,
        );
        let mut v = Verifier::new();
        v.prunes(vec![marker.clone()]);
        for n in [1, 3, 6] {
            v.check(&view(n), view(n).checksum(), || format!("row {n}"));
        }
        let r = v.finish();
        assert_eq!(r.missing, vec![IdRange::new(id(4), id(5)).unwrap()]);
        assert_eq!(r.pruned_present, 1);
        assert_eq!(r.prunes, vec![marker]);
    }

    #[test]
    fn ids_far_apart_are_reported_as_one_missing_range() {
        // The ids a corrupted high-water mark makes: the gap is a trillion ids wide.
        let mut v = Verifier::new();
        for id in [1, 2, 3, 1_099_511_627_780] {
            v.check(&view(id), view(id).checksum(), || format!("row {id}"));
        }
        let r = v.finish();
        let gap = IdRange::new(LogId::new(4).unwrap(), LogId::new(1_099_511_627_779).unwrap()).unwrap();
        assert_eq!(r.missing, vec![gap]);
        assert_eq!(r.missing_count(), 1_099_511_627_776);
    }

    #[test]
    fn ids_arriving_in_any_order_merge_into_runs() {
        let mut v = Verifier::unordered();
        for id in [10, 1, 3, 2, 9, 5, 4, 3, 12] {
            v.check(&view(id), view(id).checksum(), || format!("line {id}"));
        }
        let r = v.finish();
        let id = |n| LogId::new(n).unwrap();
        assert_eq!(r.out_of_order, vec![id(3)]);
        assert_eq!(
            r.missing,
            vec![IdRange::new(id(6), id(8)).unwrap(), IdRange::single(id(11))]
        );
    }
}
