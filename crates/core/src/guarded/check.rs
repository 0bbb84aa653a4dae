//! The deep part of `check`: every checksum of both copies recomputed, and a record
//! damaged in one copy replaced by the other copy's intact one.

use std::collections::BTreeSet;

use super::{CopyProblem, Leader, ReconcileReport, Side};
use crate::record::{LogId, LogRecord};
use crate::store::{LogStore, LogStoreExt, VerifyOptions};

/// Most ids repaired in one call to a copy's repair hook.
const REPAIR_PAGE: usize = 1000;

impl Leader {
    /// Verifies both copies (recomputing each checksum through their independent read
    /// paths), sorts the damaged ids into `report`, and with `repair` replaces each damaged
    /// record by the other copy's intact one. A copy that cannot be verified is reported as
    /// unreadable; a repair that fails is reported as a repair failure.
    pub(super) async fn check_damage(&mut self, repair: bool, report: &mut ReconcileReport) {
        // Deep: the engine's own check (SQLite's quick_check) finds damaged pages too.
        let options = VerifyOptions { deep: true };
        let (p, b) = tokio::join!(self.primary.verify(options), self.backup.verify(options));
        if let (Ok(p), Ok(b)) = (&p, &b) {
            report.missing_in_both = crate::id::intersect_ranges(&p.missing, &b.missing);
        }
        let mut damaged = |copy: Side, verified: crate::Result<crate::VerifyReport>| -> BTreeSet<LogId> {
            let store = self.store(copy).describe();
            match verified {
                Ok(v) => {
                    // Only an engine's own deep check (a damaged page) calls for a rebuild.
                    if v.deep_checked && !v.engine_problems.is_empty() {
                        report.unreadable.push(CopyProblem {
                            copy,
                            detail: format!(
                                "{store}: the engine's check found damage: {}",
                                v.engine_problems.join("; ")
                            ),
                        });
                    } else {
                        // The rest leaves the records intact; reported as verify reports it.
                        for p in &v.engine_problems {
                            report.problems.push(CopyProblem {
                                copy,
                                detail: format!("{store}: {p}"),
                            });
                        }
                    }
                    for c in v.corrupt.iter().filter(|c| c.id.is_none()) {
                        report.problems.push(CopyProblem {
                            copy,
                            detail: format!("{store}: unreadable: {}", c.detail),
                        });
                    }
                    if !v.out_of_order.is_empty() {
                        report.problems.push(CopyProblem {
                            copy,
                            detail: format!(
                                "{store}: {} record(s) stored more than once or out of order (first: log {})",
                                v.out_of_order.len(),
                                v.out_of_order[0]
                            ),
                        });
                    }
                    v.corrupt.iter().filter_map(|c| c.id).collect()
                }
                Err(e) => {
                    report.unreadable.push(CopyProblem {
                        copy,
                        detail: format!("{store}: cannot be verified: {e}"),
                    });
                    BTreeSet::new()
                }
            }
        };
        let damaged_p = damaged(Side::Primary, p);
        let damaged_b = damaged(Side::Backup, b);
        // An id the copies hold different records under is a conflict, reported and never
        // overwritten, even when one side's record is damaged as well: the other copy's
        // record is another record, not an intact copy of this one. Unless the damage is
        // in the stored checksum itself: the damaged record's fields then give the other
        // copy's checksum, it is the same record, and it is repaired.
        let mut conflicts = BTreeSet::new();
        let mut same_record = BTreeSet::new();
        for c in &report.conflicts {
            let fields_give = |rec: Option<LogRecord>, other: crate::Checksum| {
                rec.is_some_and(|r| r.compute_checksum() == other)
            };
            if (damaged_p.contains(&c.id)
                && fields_give(self.primary.get(c.id).await.ok().flatten(), c.backup))
                || (damaged_b.contains(&c.id)
                    && fields_give(self.backup.get(c.id).await.ok().flatten(), c.primary))
            {
                same_record.insert(c.id);
            } else {
                conflicts.insert(c.id);
            }
        }
        report.conflicts.retain(|c| !same_record.contains(&c.id));
        let in_primary: BTreeSet<LogId> = damaged_p.difference(&conflicts).copied().collect();
        let in_backup: BTreeSet<LogId> = damaged_b.difference(&conflicts).copied().collect();
        let mut both: BTreeSet<LogId> = report.damaged_in_both.iter().copied().collect();
        both.extend(in_primary.intersection(&in_backup).copied());
        // A damaged record is repaired from the other copy's intact record, read back and
        // checked again here: never the reverse, never from a damaged one.
        let mut fix_primary = Vec::new();
        for &id in in_primary.difference(&in_backup) {
            match intact(&*self.backup, id).await {
                Some(rec) => fix_primary.push(rec),
                None => {
                    both.insert(id);
                }
            }
        }
        let mut fix_backup = Vec::new();
        for &id in in_backup.difference(&in_primary) {
            match intact(&*self.primary, id).await {
                Some(rec) => fix_backup.push(rec),
                None => {
                    both.insert(id);
                }
            }
        }
        report.damaged_in_primary = fix_primary.iter().map(|r| r.id).collect();
        report.damaged_in_backup = fix_backup.iter().map(|r| r.id).collect();
        report.damaged_in_both = both.into_iter().collect();
        if repair {
            report.repaired_in_primary = self.repair_copy(Side::Primary, fix_primary, report).await;
            report.repaired_in_backup = self.repair_copy(Side::Backup, fix_backup, report).await;
        }
    }

    /// Replaces damaged records of one copy by `records`; returns how many it now holds
    /// intact. Failures and conflicts go into `report`.
    async fn repair_copy(&self, side: Side, records: Vec<LogRecord>, report: &mut ReconcileReport) -> u64 {
        let store = self.store(side);
        let level = store.capabilities().strongest_durability();
        let mut repaired = 0;
        let mut kept_bytes = 0;
        for chunk in records.chunks(REPAIR_PAGE) {
            match store.repair(chunk.to_vec(), level).await {
                Ok(r) => {
                    repaired += chunk.len() as u64 - r.conflicts.len() as u64;
                    // Re-added rather than replaced: the damaged bytes are still stored.
                    kept_bytes += r.inserted + r.already_present;
                }
                Err(e) => {
                    report.repair_failures.push(format!(
                        "replacing {} damaged logs in the {} {}: {e}",
                        chunk.len(),
                        side.name(),
                        store.describe()
                    ));
                    break;
                }
            }
        }
        if repaired > 0 {
            tracing::warn!(
                target: super::TARGET,
                copy = %store.describe(),
                side = side.name(),
                repaired,
                ids = %super::shown_ranges(&records.iter().map(|r| r.id).collect::<Vec<_>>()),
                "replaced damaged records of a copy by the other copy's intact ones"
            );
        }
        if kept_bytes > 0 {
            report.problems.push(CopyProblem {
                copy: side,
                detail: format!(
                    "{}: {kept_bytes} damaged record(s) are intact again, but their damaged bytes stay in the \
                     storage (a JSON-lines copy: `synclog compact` removes them, keeping them aside)",
                    store.describe()
                ),
            });
        }
        repaired
    }

    fn store(&self, side: Side) -> &dyn LogStore {
        match side {
            Side::Primary => &*self.primary,
            Side::Backup => &*self.backup,
        }
    }
}

/// `store`'s record `id` when it is there and intact.
async fn intact(store: &dyn LogStore, id: LogId) -> Option<LogRecord> {
    match store.get(id).await {
        Ok(Some(rec)) if rec.is_intact() => Some(rec),
        _ => None,
    }
}
