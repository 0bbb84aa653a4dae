//! The bookkeeping of a verification pass, shared by every engine.

use crate::canonical::{Checksum, RecordView};
use crate::record::LogId;
use crate::store::{CorruptRecord, VerifyReport};

/// Accumulates a [`VerifyReport`] as an engine reads its records in storage order.
#[derive(Debug, Default)]
pub struct Verifier {
    report: VerifyReport,
    prev: Option<LogId>,
    seen: Vec<u64>,
    unordered: bool,
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
        self.seen.push(id.get());
    }

    /// Adds a problem reported by the engine's own check.
    pub fn engine_problem(&mut self, problem: String) {
        self.report.engine_problems.push(problem);
    }

    /// Marks the engine's own check as run.
    pub fn deep_checked(&mut self) {
        self.report.deep_checked = true;
    }

    /// The report, with the gaps inside the id range listed as missing.
    pub fn finish(mut self) -> VerifyReport {
        let mut ids = self.seen;
        if self.unordered || !self.report.out_of_order.is_empty() {
            ids.sort_unstable();
        }
        if self.unordered {
            for pair in ids.windows(2).filter(|p| p[0] == p[1]) {
                self.report.out_of_order.extend(LogId::new(pair[1]));
            }
        }
        ids.dedup();
        for pair in ids.windows(2) {
            for missing in pair[0] + 1..pair[1] {
                if let Some(id) = LogId::new(missing) {
                    self.report.missing.push(id);
                }
            }
        }
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
        assert_eq!(r.missing, vec![LogId::new(3).unwrap()]);
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
        assert_eq!(r.missing, vec![LogId::new(4).unwrap()]);
    }
}
