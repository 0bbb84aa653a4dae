//! What the pair reports: which copies hold a record, what a reconcile found and did,
//! and its counters.

use serde::Serialize;

use crate::canonical::Checksum;
use crate::record::{LogId, LogRecord};

/// Which copies hold a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Copies {
    /// The primary holds it.
    pub primary: bool,
    /// The backup holds it.
    pub backup: bool,
}

/// What [`Guarded::append_batch`](super::Guarded::append_batch) acknowledges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The records, with their ids (a repeat as stored the first time).
    pub records: Vec<LogRecord>,
    /// `repeats[i]`: `records[i]` was stored before (an idempotency key or a run's finish
    /// seen again, see [`crate::run`]); nothing was written for it.
    pub repeats: Vec<bool>,
    /// Where they are durable at the requested level (at least one copy).
    pub durable_in: Copies,
    /// Whether they were read back through an independent path before the acknowledgement.
    pub verified: bool,
}

/// One id holding different records in the two copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyConflict {
    /// The id.
    pub id: LogId,
    /// The primary's checksum.
    pub primary: Checksum,
    /// The backup's checksum.
    pub backup: Checksum,
}

/// What a reconciliation found and did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ReconcileReport {
    /// Ids present in both copies with the same checksum.
    pub in_both: u64,
    /// Ids the primary lacked (restored from the backup unless this was a dry run).
    pub missing_in_primary: Vec<LogId>,
    /// Ids the backup lacked (copied to it unless this was a dry run).
    pub missing_in_backup: Vec<LogId>,
    /// Records written into the primary.
    pub restored_to_primary: u64,
    /// Records written into the backup.
    pub copied_to_backup: u64,
    /// Ids holding different records in the two copies; neither was overwritten.
    pub conflicts: Vec<CopyConflict>,
    /// Ids whose primary record is damaged (its fields do not give its stored checksum,
    /// or it cannot be decoded) while the backup's is intact. Found by [`Guarded::check`](super::Guarded::check)
    /// only: it recomputes every checksum.
    pub damaged_in_primary: Vec<LogId>,
    /// Ids whose backup record is damaged while the primary's is intact (`check` only).
    pub damaged_in_backup: Vec<LogId>,
    /// Ids damaged (or missing) in both copies: nothing intact is left to repair them from.
    pub damaged_in_both: Vec<LogId>,
    /// Ids both copies' verification found missing (below their ends, no prune covering
    /// them): lost, with nothing to restore them from. `check` only (the comparison of
    /// listings cannot see an id neither copy lists); `verify` reports the same.
    pub missing_in_both: Vec<crate::IdRange>,
    /// Damaged primary records replaced by the backup's intact ones.
    pub repaired_in_primary: u64,
    /// Damaged backup records replaced by the primary's intact ones.
    pub repaired_in_backup: u64,
    /// Copies that could not be listed or verified, or whose engine check found damage, and
    /// why: the comparison is incomplete, and `check --repair` rebuilds such a copy.
    pub unreadable: Vec<CopyProblem>,
    /// Other problems a copy's verification found that leave its records readable and
    /// intact, but its storage not clean (a record stored twice, an unreadable line whose
    /// record is intact elsewhere, damaged bytes an engine set aside and kept). `check`
    /// only; `verify` reports the same. For a JSON-lines copy, `synclog compact` cleans them.
    pub problems: Vec<CopyProblem>,
    /// Repairs that failed (a full disk, a failing copy), and why; the next open or
    /// `check --repair` tries again. Nothing acknowledged is lost: the other copy holds it.
    pub repair_failures: Vec<String>,
    /// Read-only comparisons: ids above what the comparison covers (see
    /// [`GuardedOptions::writer_beside`](super::GuardedOptions::writer_beside)) held by one copy only: groups written since the
    /// reader opened, or being written then; not counted as problems. Empty otherwise.
    pub in_flight: Vec<LogId>,
    /// The comparison covered only the ids above this one: a reconcile at open that
    /// trusted the pair's watermark ([`GuardedOptions::watermark`](super::GuardedOptions::watermark)). `None`: every id was
    /// compared. `in_both` counts the compared ids only.
    pub compared_after: Option<LogId>,
    /// Why the watermark was not used, or could not be saved, if that happened.
    pub watermark_note: Option<String>,
    /// Prune markers one copy held and the other lacked (a prune interrupted between the
    /// copies): applied to the copy that lacked them when repairing, so the records they
    /// cover are pruned there too (never restored).
    pub prunes_missing: Vec<CopyProblem>,
    /// How many of `prunes_missing` were applied.
    pub prunes_applied: u64,
}

impl ReconcileReport {
    /// Both copies hold the same, intact records (after the repairs made, if any).
    pub fn in_sync(&self) -> bool {
        self.missing_in_primary.len() as u64 == self.restored_to_primary
            && self.missing_in_backup.len() as u64 == self.copied_to_backup
            && self.conflicts.is_empty()
            && self.damaged_in_primary.len() as u64 == self.repaired_in_primary
            && self.damaged_in_backup.len() as u64 == self.repaired_in_backup
            && self.damaged_in_both.is_empty()
            && self.missing_in_both.is_empty()
            && self.unreadable.is_empty()
            && self.problems.is_empty()
            && self.repair_failures.is_empty()
            && self.prunes_missing.len() as u64 == self.prunes_applied
    }

    /// Whether anything differs, is damaged or could not be read (repaired or not).
    pub fn found_problems(&self) -> bool {
        !(self.missing_in_primary.is_empty()
            && self.missing_in_backup.is_empty()
            && self.conflicts.is_empty()
            && self.damaged_in_primary.is_empty()
            && self.damaged_in_backup.is_empty()
            && self.damaged_in_both.is_empty()
            && self.missing_in_both.is_empty()
            && self.unreadable.is_empty()
            && self.problems.is_empty()
            && self.repair_failures.is_empty()
            && self.prunes_missing.is_empty())
    }
}

/// Counters of a guarded store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct GuardStats {
    /// Groups acknowledged.
    pub groups: u64,
    /// Logs acknowledged.
    pub logs: u64,
    /// Nanoseconds the pair's leader spent on the groups it acknowledged, from taking a
    /// group to answering it (key lookups, both copies' writes and syncs, read-backs):
    /// `commit_nanos / groups` is the mean time a group holds the pair, and its share of
    /// the wall time shows how busy the pair is.
    pub commit_nanos: u64,
    /// Groups the primary failed to take.
    pub primary_failures: u64,
    /// Groups the backup failed to take.
    pub backup_failures: u64,
    /// Records restored into the primary after it failed.
    pub restored_to_primary: u64,
    /// Records copied into the backup after it failed.
    pub copied_to_backup: u64,
    /// Records waiting for the primary now.
    pub pending_primary: u64,
    /// Records waiting for the backup now.
    pub pending_backup: u64,
    /// Reads that met a damaged record in one copy and served the other copy's intact one.
    pub damaged_served: u64,
}

/// One copy of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The primary.
    Primary,
    /// The backup.
    Backup,
}

/// A problem of one copy, and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyProblem {
    /// Which copy.
    pub copy: Side,
    /// What went wrong (the store and the error).
    pub detail: String,
}

impl Side {
    /// `primary` or `backup`.
    pub fn name(self) -> &'static str {
        match self {
            Side::Primary => "primary",
            Side::Backup => "backup",
        }
    }
}
