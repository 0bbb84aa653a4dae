//! Comparing the copies and repairing what one lacks: the merge-join of their
//! `(id, checksum)` listings, the watermark that bounds it at open, and prune markers one
//! copy lacks.

use super::*;

/// Reads the `(id, checksum)` listing of a store page by page.
pub(super) struct Listing<'a> {
    pub(super) store: &'a dyn LogStore,
    pub(super) buf: VecDeque<(LogId, Checksum)>,
    pub(super) after: Option<LogId>,
    pub(super) done: bool,
    pub(super) page: usize,
}

impl<'a> Listing<'a> {
    pub(super) fn new(store: &'a dyn LogStore, page: usize, after: Option<LogId>) -> Self {
        Listing {
            store,
            buf: VecDeque::new(),
            after,
            done: false,
            page,
        }
    }

    pub(super) async fn peek(&mut self) -> Result<Option<(LogId, Checksum)>> {
        if self.buf.is_empty() && !self.done {
            let page = self.store.id_checksums(self.after, self.page).await?;
            self.done = page.len() < self.page;
            self.after = page.last().map(|p| p.0).or(self.after);
            self.buf.extend(page);
        }
        Ok(self.buf.front().copied())
    }

    pub(super) fn pop(&mut self) {
        self.buf.pop_front();
    }
}

impl Leader {
    /// Merge-joins the two `(id, checksum)` listings; with `repair`, copies what each lacks.
    /// With `deep`, also recomputes every checksum of both copies (see `check.rs`).
    pub(super) async fn reconcile(&mut self, repair: bool, deep: bool) -> Result<ReconcileReport> {
        self.reconcile_after(None, repair, deep).await
    }

    /// The reconcile at open: from what the watermark lets it trust, repairing.
    pub(super) async fn reconcile_at_open(&mut self) -> Result<ReconcileReport> {
        let (after, note) = self.trusted_start().await;
        let mut report = self.reconcile_after(after, true, false).await?;
        if report.watermark_note.is_none() {
            report.watermark_note = note;
        }
        Ok(report)
    }

    /// Where the comparison at open can start: from the lowest of the watermark and the
    /// copies' ends, including the shorter copy's last record (its checksum is compared
    /// too). `None` (compare everything) without a usable watermark; the second value says
    /// why one was not used.
    pub(super) async fn trusted_start(&mut self) -> (Option<LogId>, Option<String>) {
        let Some(mark) = &self.watermark else {
            return (None, None);
        };
        let up_to = match mark.read() {
            Ok(up_to) => up_to,
            Err(watermark::Unusable::Missing) => return (None, None),
            Err(watermark::Unusable::Rejected(why)) => {
                tracing::warn!(target: TARGET, watermark = %mark.path().display(), %why, "the pair's watermark is not used; every record is compared");
                let note = format!(
                    "the watermark {} was not used ({why}); every record was compared",
                    mark.path().display()
                );
                return (None, Some(note));
            }
        };
        self.trusted = Some(up_to);
        let (p, b) = tokio::join!(self.primary.last_id(), self.backup.last_id());
        match (p, b) {
            (Ok(p), Ok(b)) => {
                let end = |id: Option<LogId>| id.map_or(0, LogId::get);
                let low = up_to.min(end(p)).min(end(b));
                (LogId::new(low.saturating_sub(1)), None)
            }
            // A copy that cannot say where it ends: compare everything (and report it).
            _ => (None, None),
        }
    }

    /// After a repairing comparison: saves how far the copies are now known to be equal.
    /// Ids a repair could not mend stay above it, so every open reports them again.
    pub(super) async fn save_watermark(&mut self, report: &mut ReconcileReport) {
        let Some(mark) = &self.watermark else {
            return;
        };
        if !report.unreadable.is_empty() || !report.repair_failures.is_empty() {
            // The comparison is incomplete: the watermark keeps what it said.
            return;
        }
        let (p, b) = tokio::join!(self.primary.last_id(), self.backup.last_id());
        let (Ok(p), Ok(b)) = (p, b) else {
            return;
        };
        let end = |id: Option<LogId>| id.map_or(0, LogId::get);
        let unmended = report
            .conflicts
            .iter()
            .map(|c| c.id)
            .chain(report.damaged_in_both.iter().copied())
            .map(LogId::get)
            .min();
        let mut up_to = end(p).min(end(b));
        if let Some(id) = unmended {
            up_to = up_to.min(id - 1);
        }
        if self.trusted == Some(up_to) {
            return;
        }
        match mark.write(up_to).await {
            Ok(()) => self.trusted = Some(up_to),
            Err(e) => {
                tracing::warn!(target: TARGET, watermark = %mark.path().display(), error = %e, "the pair's watermark could not be saved; the next open compares more records");
                report.watermark_note = Some(format!(
                    "the watermark {} could not be saved ({e}); the next open compares more records",
                    mark.path().display()
                ));
            }
        }
    }

    /// A copy missed records from id `first` on: the watermark must not say the copies are
    /// equal there, or a crash before the repair would hide the difference from the next
    /// open. Lowered below `first`; removed if that fails.
    pub(super) async fn lower_watermark(&mut self, first: Option<u64>) {
        let (Some(mark), Some(first)) = (&self.watermark, first) else {
            return;
        };
        // Read again: a guard in another process may have moved it since this one looked
        // (each does so under the pair's lock, which this guard holds now).
        let Ok(trusted) = mark.read() else {
            return;
        };
        if first > trusted {
            return;
        }
        let lowered = first.saturating_sub(1);
        if mark.write(lowered).await.is_ok() {
            self.trusted = Some(lowered);
            return;
        }
        match mark.remove().await {
            Ok(()) => self.trusted = None,
            Err(e) => tracing::error!(
                target: TARGET,
                watermark = %mark.path().display(),
                error = %e,
                "a copy missed records below the pair's watermark and the watermark could not be lowered or removed: remove it by hand, or run `synclog check --repair`"
            ),
        }
    }

    /// The lowest id waiting in either pending queue.
    pub(super) fn first_pending(&self) -> Option<u64> {
        self.pending_primary
            .iter()
            .chain(&self.pending_backup)
            .map(|r| r.id.get())
            .min()
    }

    /// Compares the ids above `after` (all with `None`); see [`Leader::reconcile`].
    pub(super) async fn reconcile_after(
        &mut self,
        after: Option<LogId>,
        repair: bool,
        deep: bool,
    ) -> Result<ReconcileReport> {
        if repair {
            self.flush_pending(Durability::PowerLoss).await;
        }
        let page = self.options.reconcile_page.max(1);
        let mut report = ReconcileReport {
            compared_after: after,
            ..ReconcileReport::default()
        };
        let common_end = self.compared_up_to;
        // Prunes first: a copy that missed one has it applied (or, without repair, the ids it
        // covers are left out of the comparison), so a pruned record is never restored.
        let pruned = self.sync_prunes(repair, &mut report).await;
        let (mut to_primary, mut to_backup) = match self.diff(page, after, &mut report).await {
            Ok(lists) => lists,
            Err((copy, e)) => {
                let store = if copy == Side::Primary {
                    &self.primary
                } else {
                    &self.backup
                };
                tracing::warn!(target: TARGET, copy = %store.describe(), error = %e, "a copy could not be listed; the pair goes on with the other one");
                report.unreadable.push(CopyProblem {
                    copy,
                    detail: format!("{}: cannot be listed: {e}", store.describe()),
                });
                self.counters.diverged.store(true, Ordering::Relaxed);
                return Ok(report);
            }
        };
        if !pruned.is_empty() {
            to_primary.retain(|&id| !pruned.contains(id));
            to_backup.retain(|&id| !pruned.contains(id));
        }
        if let Some(end) = common_end {
            for list in [&mut to_primary, &mut to_backup] {
                let settled = list.partition_point(|id| id.get() <= end);
                report.in_flight.extend(list.drain(settled..));
            }
            report.in_flight.sort_unstable();
        }
        let mut damaged_sources = Vec::new();
        if repair {
            let (n, skipped) = repair_side(
                &*self.backup,
                &*self.primary,
                Side::Primary,
                &to_primary,
                page,
                &mut report,
            )
            .await;
            report.restored_to_primary = n;
            damaged_sources.extend(skipped);
            let (n, skipped) = repair_side(
                &*self.primary,
                &*self.backup,
                Side::Backup,
                &to_backup,
                page,
                &mut report,
            )
            .await;
            report.copied_to_backup = n;
            damaged_sources.extend(skipped);
            self.counters
                .restored
                .fetch_add(report.restored_to_primary, Ordering::Relaxed);
            self.counters
                .copied
                .fetch_add(report.copied_to_backup, Ordering::Relaxed);
            self.pending_primary.clear();
            self.pending_backup.clear();
            self.set_pending_counters();
        }
        report.missing_in_primary = to_primary;
        report.missing_in_backup = to_backup;
        // A record one copy lacks and the other holds only damaged: nothing intact is left.
        report.damaged_in_both.extend(damaged_sources);
        if deep {
            self.check_damage(repair, &mut report).await;
        }
        for failure in &report.repair_failures {
            tracing::warn!(target: TARGET, %failure, "a copy could not be repaired; the next open or `synclog check --repair` tries again");
        }
        // The copies differ beyond the queues until a repair has put them in step.
        let unrepaired =
            !repair && (!report.missing_in_primary.is_empty() || !report.missing_in_backup.is_empty());
        let diverged = !report.repair_failures.is_empty() || !report.unreadable.is_empty() || unrepaired;
        self.counters.diverged.store(diverged, Ordering::Relaxed);
        if repair {
            self.save_watermark(&mut report).await;
        }
        Ok(report)
    }

    /// A reader's look at open (it compares nothing and repairs nothing): whether the
    /// copies end at different ids for another reason than a group being written now. A
    /// group one copy missed (acknowledged by the other alone) leaves them so until a
    /// writer repairs it; the reader must then read both copies, or it would miss an
    /// acknowledged record. A group in flight is in one copy before the other, and was not
    /// acknowledged before this reader opened: the writer announces its ids in the pair's
    /// lock file, read here without taking the lock. Looked at up to three times, since a
    /// group may end between two looks.
    pub(super) async fn copies_differ_at_open(&self) -> bool {
        for _ in 0..3 {
            let (p, b) = tokio::join!(self.primary.last_id(), self.backup.last_id());
            // A copy that cannot say where it ends is a stand-in (missing or damaged): reads
            // go to the other copy whatever this says.
            let (Ok(p), Ok(b)) = (p, b) else {
                return false;
            };
            if p == b {
                return false;
            }
            let (low, high) = (p.min(b).map_or(0, LogId::get), p.max(b).map_or(0, LogId::get));
            let writing = self
                .options
                .lock
                .as_deref()
                .and_then(pairlock::peek_state)
                .and_then(|s| s.writing);
            if matches!(writing, Some((first, last)) if first <= low + 1 && high <= last) {
                return false;
            }
            tokio::task::yield_now().await;
        }
        true
    }

    /// What a read-only comparison covers, from the copies' ends at open: every id up to
    /// the larger end (ids above it were assigned after this reader opened: a writer gives
    /// new groups ids above both copies); beside a writer, only up to the smaller end (a
    /// group in flight at open is in one copy at most, above the other's end).
    pub(super) async fn compared_up_to(&self) -> u64 {
        let (p, b) = tokio::join!(self.primary.last_id(), self.backup.last_id());
        let end = |r: Result<Option<LogId>>| r.ok().flatten().map_or(0, LogId::get);
        let (p, b) = (end(p), end(b));
        if self.options.writer_beside {
            p.min(b)
        } else {
            p.max(b)
        }
    }

    /// The ids each copy lacks, from a merge-join of the two listings; conflicts and the
    /// count in both go into `report`. A listing that fails names its copy.
    pub(super) async fn diff(
        &self,
        page: usize,
        after: Option<LogId>,
        report: &mut ReconcileReport,
    ) -> std::result::Result<(Vec<LogId>, Vec<LogId>), (Side, Error)> {
        let mut to_primary = Vec::new();
        let mut to_backup = Vec::new();
        let mut a = Listing::new(&*self.primary, page, after);
        let mut b = Listing::new(&*self.backup, page, after);
        loop {
            let pa = a.peek().await.map_err(|e| (Side::Primary, e))?;
            let pb = b.peek().await.map_err(|e| (Side::Backup, e))?;
            match (pa, pb) {
                (None, None) => break,
                (Some((id, _)), None) => {
                    to_backup.push(id);
                    a.pop();
                }
                (None, Some((id, _))) => {
                    to_primary.push(id);
                    b.pop();
                }
                (Some((ia, sa)), Some((ib, sb))) => {
                    if ia < ib {
                        to_backup.push(ia);
                        a.pop();
                    } else if ib < ia {
                        to_primary.push(ib);
                        b.pop();
                    } else {
                        if sa == sb {
                            report.in_both += 1;
                        } else {
                            report.conflicts.push(CopyConflict {
                                id: ia,
                                primary: sa,
                                backup: sb,
                            });
                        }
                        a.pop();
                        b.pop();
                    }
                }
            }
        }
        Ok((to_primary, to_backup))
    }

    /// Reads both copies' prune markers; a marker one copy lacks is applied to it when
    /// repairing, and reported either way. Returns every pruned id of either copy.
    pub(super) async fn sync_prunes(&mut self, repair: bool, report: &mut ReconcileReport) -> Pruned {
        let (p, b) = tokio::join!(self.primary.prune_markers(), self.backup.prune_markers());
        let mut lists = Vec::new();
        for (side, got) in [(Side::Primary, p), (Side::Backup, b)] {
            match got {
                Ok(list) => lists.push((side, list)),
                Err(e) => report.unreadable.push(CopyProblem {
                    copy: side,
                    detail: format!("its prune markers cannot be read: {e}"),
                }),
            }
        }
        if let [(_, p), (_, b)] = lists.as_slice() {
            let level = self
                .primary
                .capabilities()
                .strongest_durability()
                .min(self.backup.capabilities().strongest_durability());
            for (lacking, has, other, store) in [
                (Side::Backup, p, b, &self.backup),
                (Side::Primary, b, p, &self.primary),
            ] {
                for m in has.iter().filter(|m| !other.iter().any(|o| o.digest == m.digest)) {
                    report.prunes_missing.push(CopyProblem {
                        copy: lacking,
                        detail: format!(
                            "lacked the prune marker {} ({}, {} logs)",
                            m.name(),
                            m.policy,
                            m.count
                        ),
                    });
                    if repair {
                        match store.apply_prune(m, level).await {
                            Ok(_) => report.prunes_applied += 1,
                            Err(e) => report.repair_failures.push(format!(
                                "applying the prune marker {} to the {} {}: {e}",
                                m.name(),
                                lacking.name(),
                                store.describe()
                            )),
                        }
                    }
                }
            }
        }
        let all: Vec<PruneMarker> = lists.into_iter().flat_map(|(_, list)| list).collect();
        Pruned::of(&all)
    }

    /// Repairs into both copies (see [`LogStoreExt::repair`](crate::LogStoreExt::repair)); when
    /// one copy fails, the pair is marked diverged and the watermark lowered, so `check
    /// --repair` and the next open try again.
    pub(super) async fn repair(
        &mut self,
        records: ValidRecords,
        durability: Durability,
    ) -> Result<ImportReport> {
        let first = records.iter().map(|r| r.id.get()).min();
        let (p, b) = tokio::join!(
            self.primary.repair_valid(records.clone(), durability),
            self.backup.repair_valid(records, durability)
        );
        match (p, b) {
            (Ok(mut p), Ok(b)) => {
                // Per id, the copy that had to change says what happened to it.
                p.replaced += b.replaced;
                p.inserted = p.inserted.max(b.inserted);
                p.already_present = p.already_present.min(b.already_present);
                let known: HashSet<LogId> = p.conflicts.iter().map(|c| c.id).collect();
                p.conflicts
                    .extend(b.conflicts.into_iter().filter(|c| !known.contains(&c.id)));
                Ok(p)
            }
            (Ok(r), Err(e)) | (Err(e), Ok(r)) => {
                tracing::warn!(target: TARGET, error = %e, "one copy could not be repaired; `synclog check --repair` tries again");
                self.counters.diverged.store(true, Ordering::Relaxed);
                self.lower_watermark(first).await;
                Ok(r)
            }
            (Err(e), Err(_)) => Err(e),
        }
    }
}

/// Copies the records with `ids` (sorted) from `src` to `dst`, a run of consecutive ids at
/// a time. Returns how many `dst` inserted, and the ids left out because `src` holds them
/// damaged (copying those would spread the damage; `dst` refuses them anyway).
pub(super) async fn copy_ids(
    src: &dyn LogStore,
    dst: &dyn LogStore,
    ids: &[LogId],
    page: usize,
) -> Result<(u64, Vec<LogId>)> {
    let mut inserted = 0;
    let mut damaged = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i + 1;
        while j < ids.len() && j - i < page && ids[j].get() == ids[j - 1].get() + 1 {
            j += 1;
        }
        let scan = Scan {
            after: LogId::new(ids[i].get() - 1),
            before: ids[j - 1].next(),
            limit: j - i,
            ..Scan::default()
        };
        let (records, bad): (Vec<_>, Vec<_>) =
            src.scan(&scan).await?.into_iter().partition(LogRecord::is_intact);
        damaged.extend(bad.into_iter().map(|r| r.id));
        if !records.is_empty() {
            let level = dst.capabilities().strongest_durability();
            inserted += dst.import(records, level).await?.inserted;
        }
        i = j;
    }
    Ok((inserted, damaged))
}

/// Copies the records with `ids` that copy `side` (`dst`) lacks from `src`, and reports
/// it (`warn`): how many `dst` took, and the ids left out because `src` holds them damaged.
/// A failure goes into `report`'s repair failures.
async fn repair_side(
    src: &dyn LogStore,
    dst: &dyn LogStore,
    side: Side,
    ids: &[LogId],
    page: usize,
    report: &mut ReconcileReport,
) -> (u64, Vec<LogId>) {
    match copy_ids(src, dst, ids, page).await {
        Ok((n, skipped)) => {
            if n > 0 {
                tracing::warn!(
                    target: TARGET,
                    copy = %dst.describe(),
                    side = side.name(),
                    from = %src.describe(),
                    restored = n,
                    ids = %shown_ranges(ids),
                    "restored records a copy lacked from the other copy"
                );
            }
            (n, skipped)
        }
        Err(e) => {
            let verb = match side {
                Side::Primary => "restoring",
                Side::Backup => "copying",
            };
            report.repair_failures.push(format!(
                "{verb} {} logs into the {} {}: {e}",
                ids.len(),
                side.name(),
                dst.describe()
            ));
            (0, Vec::new())
        }
    }
}

/// `ids` (ascending) as ranges for a log line, e.g. `3..=90, 95`; past 20 ranges, how many
/// more.
pub(super) fn shown_ranges(ids: &[LogId]) -> String {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let ranges = crate::retention::ranges_of(ids);
    let mut shown: Vec<String> = ranges.iter().take(20).map(ToString::to_string).collect();
    if ranges.len() > 20 {
        shown.push(format!("and {} more ranges", ranges.len() - 20));
    }
    shown.join(", ")
}

/// Reports the records a copy's queue held that reached it at last.
pub(super) fn warn_caught_up(copy: &dyn LogStore, queue: &[LogRecord], inserted: u64) {
    if inserted > 0 {
        tracing::warn!(
            target: TARGET,
            copy = %copy.describe(),
            restored = inserted,
            ids = %shown_ranges(&queue.iter().map(|r| r.id).collect::<Vec<_>>()),
            "a copy that missed groups caught up from the other copy"
        );
    }
}
