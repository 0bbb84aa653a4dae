//! The pair's leader: one task per guard that gathers appends into groups, assigns ids
//! above both copies, writes each group to both and reads it back before answering, and
//! keeps what a copy missed queued for it.

use super::*;

/// The most times the leader yields to let answered callers come back before a group.
pub(super) const MAX_GATHER_YIELDS: u32 = 64;

pub(super) struct Leader {
    pub(super) primary: Arc<dyn LogStore>,
    pub(super) backup: Arc<dyn LogStore>,
    pub(super) next_id: u64,
    /// Records a copy missed, retried before the next group. Only records that are valid
    /// go in (sealed by the guard from a [`ValidBatch`], or taken from [`ValidRecords`]):
    /// they are written back unchecked ([`ValidRecords::already_valid`]), so a record
    /// read back from a copy must never be queued here.
    pub(super) pending_primary: Vec<LogRecord>,
    /// As `pending_primary`, for the backup.
    pub(super) pending_backup: Vec<LogRecord>,
    /// The strongest durability asked of the requests that queued records: what a retry
    /// with no request to ride on (see [`GuardedOptions::retry_pending_after`]) writes at.
    pub(super) pending_durability: Durability,
    pub(super) options: GuardedOptions,
    pub(super) counters: Arc<Counters>,
    pub(super) gathering: Gathering,
    /// Read-only: the last id a comparison covers (see [`GuardedOptions::writer_beside`]),
    /// fixed at open; `None` when writable.
    pub(super) compared_up_to: Option<u64>,
    /// The pair's watermark file ([`GuardedOptions::watermark`]); `None` for read-only guards.
    pub(super) watermark: Option<watermark::Watermark>,
    /// What the watermark file says now, as far as this guard knows (read at open, then
    /// as written or lowered).
    pub(super) trusted: Option<u64>,
    /// The pair's lock ([`GuardedOptions::lock`]); `None` for read-only guards.
    pub(super) pair_lock: Option<pairlock::PairLock>,
    /// The pair's lock while this guard holds it (for one request).
    pub(super) held: Option<pairlock::Held>,
}

impl Leader {
    pub(super) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Request>) {
        let mut deferred: Option<Request> = None;
        loop {
            let req = match deferred.take() {
                Some(r) => r,
                None => match self.retry_after() {
                    None => match rx.recv().await {
                        Some(r) => r,
                        None => return,
                    },
                    Some(after) => match tokio::time::timeout(after, rx.recv()).await {
                        Ok(Some(r)) => r,
                        Ok(None) => return,
                        Err(_) => {
                            // Idle with a copy behind: try it again now (unless the guard
                            // was closed meanwhile).
                            if self.retry_after().is_some() {
                                if self.hold().await.is_ok() {
                                    self.flush_pending(self.pending_durability).await;
                                }
                                self.release();
                            }
                            continue;
                        }
                    },
                },
            };
            // With several processes on the pair, every request runs holding its lock; a
            // group gathers what arrives while another process holds it.
            let held = self.hold().await;
            match req {
                Request::Commit {
                    logs,
                    durability,
                    seq,
                    reply,
                } => {
                    // Gather as `synclog_core::group` does, yielding instead of a timed wait:
                    // while callers answered by the last group are still missing, let them run.
                    self.gathering.start(seq);
                    let mut group = vec![(logs, durability, reply)];
                    let mut total = group[0].0.len();
                    let mut yields = 0;
                    while total < self.options.max_group_logs {
                        match rx.try_recv() {
                            Ok(Request::Commit {
                                logs,
                                durability,
                                seq,
                                reply,
                            }) => {
                                self.gathering.join(seq);
                                total += logs.len();
                                group.push((logs, durability, reply));
                            }
                            Ok(other) => {
                                deferred = Some(other);
                                break;
                            }
                            Err(_) if self.gathering.waiting_for_more() && yields < MAX_GATHER_YIELDS => {
                                yields += 1;
                                tokio::task::yield_now().await;
                            }
                            Err(_) => break,
                        }
                    }
                    match held {
                        Ok(()) => self.commit_group(group).await,
                        // Everything gathered while waiting fails with it, not after a wait each.
                        Err(e) => fail_all(group, &e),
                    }
                }
                Request::Import {
                    records,
                    durability,
                    reply,
                } => {
                    let answer = match held {
                        Ok(()) => self.import(records, durability).await,
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(answer);
                }
                Request::Reconcile { repair, deep, reply } => {
                    let answer = match held {
                        Ok(()) => self.reconcile(repair, deep).await,
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(answer);
                }
                Request::Repair {
                    records,
                    durability,
                    reply,
                } => {
                    let answer = match held {
                        Ok(()) => self.repair(records, durability).await,
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(answer);
                }
                Request::FlushPending { durability, reply } => {
                    let answer = match held {
                        Ok(()) => {
                            self.flush_pending(durability).await;
                            Ok(())
                        }
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(answer);
                }
            }
            self.release();
        }
    }

    /// Takes the pair's lock, if it has one, and moves the next id past what the other
    /// processes handed out (the lock file says, or else the copies do).
    pub(super) async fn hold(&mut self) -> Result<()> {
        let Some(lock) = &self.pair_lock else {
            return Ok(());
        };
        let mut held = lock.take().await?;
        let state = held.state();
        self.held = Some(held);
        match state {
            Some(pairlock::State { next, writing: None }) => self.next_id = self.next_id.max(next),
            Some(pairlock::State {
                next,
                writing: Some((first, last)),
            }) => {
                // Never below what the file said was handed out before that group, nor
                // below any id of it a copy holds; when the copies cannot be listed, past
                // the whole group (a gap, never an id handed out twice).
                let floor = match self.finish_interrupted(first, last).await {
                    Some(Some(top)) => top + 1,
                    Some(None) => next,
                    None => last + 1,
                };
                self.next_id = self.stores_next_id().await.max(next).max(floor);
                self.announce(None);
            }
            None => self.next_id = self.stores_next_id().await,
        }
        Ok(())
    }

    /// The last holder of the pair's lock died while writing the group `first..=last`:
    /// each copy holds all of it or none (a group is atomic in every engine), so copy it
    /// to the copy that lacks it. If neither has it, its ids were never acknowledged and
    /// are handed out again. A copy that cannot take it now is left to the next open,
    /// whose comparison covers it (it is above the watermark). Returns the highest id of
    /// the group either copy holds (`Some(None)`: neither holds any), or `None` when the
    /// copies could not be listed.
    pub(super) async fn finish_interrupted(&mut self, first: u64, last: u64) -> Option<Option<u64>> {
        let after = LogId::new(first - 1);
        let span = usize::try_from(last - first + 1).unwrap_or(usize::MAX);
        let page = self.options.reconcile_page.max(1);
        let listed = |store: Arc<dyn LogStore>| async move {
            let mut ids = HashSet::new();
            let mut from = after;
            loop {
                let got = store.id_checksums(from, page.min(span)).await?;
                let done = got.len() < page.min(span);
                for (id, _) in &got {
                    if id.get() <= last {
                        ids.insert(*id);
                    }
                }
                match got.last() {
                    Some((id, _)) if !done && id.get() < last => from = Some(*id),
                    _ => return Ok::<_, Error>(ids),
                }
            }
        };
        let (p, b) = tokio::join!(listed(self.primary.clone()), listed(self.backup.clone()));
        let (Ok(p), Ok(b)) = (p, b) else {
            tracing::warn!(
                target: TARGET,
                first,
                last,
                "a group cut off by a dead process could not be listed; the next open compares it"
            );
            return None;
        };
        let top = p.iter().chain(&b).map(|id| id.get()).max();
        let mut to_backup: Vec<LogId> = p.difference(&b).copied().collect();
        let mut to_primary: Vec<LogId> = b.difference(&p).copied().collect();
        to_backup.sort_unstable();
        to_primary.sort_unstable();
        for (src, dst, ids) in [
            (&self.primary, &self.backup, &to_backup),
            (&self.backup, &self.primary, &to_primary),
        ] {
            if ids.is_empty() {
                continue;
            }
            if let Err(e) = copy_ids(&**src, &**dst, ids, page).await {
                tracing::warn!(target: TARGET, copy = %dst.describe(), error = %e, "a group cut off by a dead process could not be completed; the next open does it");
            }
        }
        tracing::info!(
            target: TARGET,
            first,
            last,
            completed_in_backup = to_backup.len(),
            completed_in_primary = to_primary.len(),
            "finished a group a dead process had started"
        );
        Some(top)
    }

    /// Tells the other processes (through the lock file, while holding it) the next id
    /// and, while a group is being written, its ids: if this process dies before it ends,
    /// the next holder completes the group instead of handing its ids out again.
    pub(super) fn announce(&mut self, writing: Option<(u64, u64)>) {
        let next = self.next_id;
        if let Some(held) = &mut self.held {
            held.set_state(pairlock::State { next, writing });
        }
    }

    /// Leaves the next id in the lock file for the other processes, and lets go.
    pub(super) fn release(&mut self) {
        self.announce(None);
        self.held = None;
    }

    /// Above every id either copy holds or ever handed out or took (its high-water mark:
    /// records deleted behind its back keep their ids spent; a copy that cannot say counts
    /// as empty) and every id this guard handed out.
    pub(super) async fn stores_next_id(&self) -> u64 {
        let (p, b) = tokio::join!(self.primary.high_water(), self.backup.high_water());
        let p = p.ok().flatten().map_or(0, LogId::get);
        let b = b.ok().flatten().map_or(0, LogId::get);
        p.max(b).max(self.next_id.saturating_sub(1)) + 1
    }

    /// How long to wait for a request before retrying what a copy still lacks (`None`:
    /// nothing is queued, or retries wait for a request).
    fn retry_after(&self) -> Option<std::time::Duration> {
        // A closed guard has closed its copies and takes the pair's lock no more.
        if self.counters.closed.load(Ordering::Acquire)
            || (self.pending_primary.is_empty() && self.pending_backup.is_empty())
        {
            return None;
        }
        self.options.retry_pending_after
    }

    pub(super) fn set_pending_counters(&mut self) {
        for (queue, copy) in [
            (&mut self.pending_primary, &self.primary),
            (&mut self.pending_backup, &self.backup),
        ] {
            if queue.len() > self.options.max_pending {
                tracing::warn!(
                    target: TARGET,
                    copy = %copy.describe(),
                    queued = queue.len(),
                    "a copy keeps failing; its queue is dropped (the other copy holds the records; the next open or `synclog check --repair` copies them)"
                );
                queue.clear();
                self.counters.diverged.store(true, Ordering::Relaxed);
            }
        }
        self.counters
            .pending_primary
            .store(self.pending_primary.len() as u64, Ordering::Relaxed);
        self.counters
            .pending_backup
            .store(self.pending_backup.len() as u64, Ordering::Relaxed);
    }

    /// Retries what a copy is missing. Records the other copy already holds differently
    /// are conflicts: reported by reconcile, dropped from the queue, never overwritten.
    pub(super) async fn flush_pending(&mut self, durability: Durability) {
        let queued = !self.pending_primary.is_empty() || !self.pending_backup.is_empty();
        if !self.pending_primary.is_empty() {
            let records = self.pending_primary.clone();
            if let Ok(report) = self
                .primary
                .import_valid(ValidRecords::already_valid(records), durability)
                .await
            {
                self.counters
                    .restored
                    .fetch_add(report.inserted, Ordering::Relaxed);
                warn_caught_up(&*self.primary, &self.pending_primary, report.inserted);
                self.pending_primary.clear();
            }
        }
        if !self.pending_backup.is_empty() {
            let records = self.pending_backup.clone();
            if let Ok(report) = self
                .backup
                .import_valid(ValidRecords::already_valid(records), durability)
                .await
            {
                self.counters.copied.fetch_add(report.inserted, Ordering::Relaxed);
                warn_caught_up(&*self.backup, &self.pending_backup, report.inserted);
                self.pending_backup.clear();
            }
        }
        let caught_up = self.pending_primary.is_empty() && self.pending_backup.is_empty();
        if caught_up {
            self.pending_durability = Durability::Buffered;
        }
        self.set_pending_counters();
        if queued && caught_up {
            // While a copy lacked them, followers could read only up to the other copy's
            // end; what they stopped below is readable now, and no commit may come to say so.
            self.counters.signal.readable_again();
        }
    }

    /// Reads `records` back from `store` and compares ids and checksums.
    pub(super) async fn read_back(store: &dyn LogStore, records: &[LogRecord]) -> bool {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return true;
        };
        let scan = Scan {
            after: LogId::new(first.id.get() - 1),
            before: last.id.next(),
            limit: records.len(),
            ..Scan::default()
        };
        match store.scan(&scan).await {
            Ok(got) => {
                got.len() == records.len()
                    && got
                        .iter()
                        .zip(records)
                        .all(|(g, r)| g.id == r.id && g.checksum == r.checksum && g.is_intact())
            }
            Err(_) => false,
        }
    }

    /// Looks up every run and idempotency key of a group in both copies, and merges their
    /// answers (the lowest id of a key, the widest ends of a run): either copy may lack
    /// records the other holds (a group one of them missed, here or in another process),
    /// so asking one could store a key twice. Called holding the pair lock, after this
    /// process's queues were retried. A copy that cannot answer is left out (a warning):
    /// the pair goes on with the other, as it does for writes.
    pub(super) async fn fetch_keys(&self, wanted: &Wanted) -> Result<Fetched> {
        let (p, b) = tokio::join!(
            Self::fetch_keys_from(&*self.primary, wanted),
            Self::fetch_keys_from(&*self.backup, wanted)
        );
        match (p, b) {
            (Ok(mut p), Ok(b)) => {
                for (key, rec) in b.idempotent {
                    match p.idempotent.get(&key) {
                        Some(have) if have.id <= rec.id => {}
                        _ => {
                            p.idempotent.insert(key, rec);
                        }
                    }
                }
                for (run, ends) in b.runs {
                    let merged = match p.runs.remove(&run) {
                        None => ends,
                        Some(have) => RunEnds {
                            first: if ends.first.id < have.first.id {
                                ends.first
                            } else {
                                have.first
                            },
                            last: if ends.last.id > have.last.id {
                                ends.last
                            } else {
                                have.last
                            },
                        },
                    };
                    p.runs.insert(run, merged);
                }
                Ok(p)
            }
            (Ok(one), Err(e)) | (Err(e), Ok(one)) => {
                tracing::warn!(target: TARGET, error = %e, "a copy could not look up run and idempotency keys; the other copy answered alone");
                Ok(one)
            }
            (Err(e), Err(_)) => Err(e),
        }
    }

    pub(super) async fn fetch_keys_from(store: &dyn LogStore, wanted: &Wanted) -> Result<Fetched> {
        let mut fetched = Fetched::default();
        if !wanted.idempotent.is_empty() {
            for r in store.find_idempotent_many(&wanted.idempotent).await? {
                if let Some(key) = r.idempotency_key.clone() {
                    fetched.idempotent.entry(key).or_insert(r);
                }
            }
        }
        for run in &wanted.runs {
            if let Some(ends) = RunEnds::of(&store.run_records(run).await?) {
                fetched.runs.insert(run.clone(), ends);
            }
        }
        Ok(fetched)
    }

    pub(super) async fn commit_group(&mut self, group: Vec<(ValidBatch, Durability, Reply<Receipt>)>) {
        let started = std::time::Instant::now();
        let durability = group.iter().map(|g| g.1).max().unwrap_or_default();
        self.flush_pending(durability).await;
        self.pending_durability = self.pending_durability.max(durability);
        let now = Utc::now();
        let wanted = Planner::wanted(group.iter().map(|g| &g.0[..]));
        let mut keys = match wanted.is_empty() {
            true => Fetched::default(),
            false => match self.fetch_keys(&wanted).await {
                Ok(k) => k,
                Err(e) => return fail_all(group, &e),
            },
        };
        let mut planner = Planner::new();
        let mut sealed = Vec::new();
        let mut next = self.next_id;
        let mut outcomes = Vec::with_capacity(group.len());
        for (logs, _, _) in &group {
            let mut seal = |log: &NewLog| {
                let rec = LogRecord::seal_next("guarded", &mut next, now, log)?;
                sealed.push(rec.clone());
                Ok(rec)
            };
            match seal_batch(&mut planner, logs, &mut keys, &mut seal) {
                Ok(outcome) => outcomes.push(outcome),
                Err(e) => return fail_all(group, &e),
            }
        }
        if let (Some(first), Some(last)) = (sealed.first(), sealed.last()) {
            self.announce(Some((first.id.get(), last.id.get())));
        }
        let stored = if sealed.is_empty() {
            // Only repeats (or refusals): nothing to write, but a repeat is answered at this
            // group's durability, which the record it repeats may not have had yet.
            self.sync_both(durability).await
        } else {
            self.store_both(&sealed, durability).await
        };
        self.gathering
            .answering(group.len(), self.counters.submitted.load(Ordering::Relaxed));
        match stored {
            Ok((durable_in, verified)) => {
                self.next_id = next;
                self.counters.signal.committed_records(&sealed);
                self.counters.groups.fetch_add(1, Ordering::Relaxed);
                let elapsed = started.elapsed();
                let spent = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
                self.counters.commit_nanos.fetch_add(spent, Ordering::Relaxed);
                if let Some(observe) = self
                    .counters
                    .group_observer
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                {
                    observe(sealed.len(), elapsed);
                }
                self.counters
                    .logs
                    .fetch_add(sealed.len() as u64, Ordering::Relaxed);
                for ((_, _, reply), outcome) in group.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome.map(|done| Receipt {
                        records: done.records,
                        repeats: done.repeats,
                        durable_in,
                        verified,
                    }));
                }
            }
            Err(e) => {
                // Move past any id either copy holds now, so the next group cannot collide.
                self.next_id = self.stores_next_id().await;
                fail_all(group, &e)
            }
        }
    }

    /// Brings both copies to `durability` (a group of repeats only): where they are.
    pub(super) async fn sync_both(&mut self, durability: Durability) -> Result<(Copies, bool)> {
        let (p, b) = tokio::join!(self.primary.sync(durability), self.backup.sync(durability));
        match (p, b) {
            (Err(pe), Err(be)) => Err(Error::Backend {
                engine: "guarded",
                context: format!("neither copy could be synced (backup: {be})"),
                source: Box::new(pe),
            }),
            (p, b) => Ok((
                Copies {
                    primary: p.is_ok() && self.pending_primary.is_empty(),
                    backup: b.is_ok() && self.pending_backup.is_empty(),
                },
                true,
            )),
        }
    }

    /// Writes `sealed` to both copies at once, reads back, queues what a copy missed.
    pub(super) async fn store_both(
        &mut self,
        sealed: &[LogRecord],
        durability: Durability,
    ) -> Result<(Copies, bool)> {
        let (p, b) = tokio::join!(
            self.primary
                .import_valid(ValidRecords::already_valid(sealed.to_vec()), durability),
            self.backup
                .import_valid(ValidRecords::already_valid(sealed.to_vec()), durability)
        );
        let conflict = |r: &Result<ImportReport>| match r {
            Ok(rep) => rep.conflicts.first().map(|c| c.id),
            Err(_) => None,
        };
        if let Some(id) = conflict(&p).or(conflict(&b)) {
            return Err(Error::Conflict {
                id,
                detail: "a copy already holds a different record under an id the guard assigned; \
                         was the store written outside the guard? the guard moved past it, retry"
                    .into(),
            });
        }
        // A copy that stayed busy or locked for the whole lock wait is not tried again at
        // once (that would wait as long again): its records are queued for the next group.
        let again = |r: &Result<ImportReport>| r.as_ref().err().is_none_or(|e| !e.is_retryable());
        let (again_primary, again_backup) = (again(&p), again(&b));
        for (copy, result) in [(&self.primary, &p), (&self.backup, &b)] {
            if let Err(e) = result {
                tracing::warn!(
                    target: TARGET,
                    copy = %copy.describe(),
                    ids = %shown_ranges(&sealed.iter().map(|r| r.id).collect::<Vec<_>>()),
                    error = %e,
                    "a copy missed a group; the other copy holds it and it is copied over (at once, or queued for the next group)"
                );
            }
        }
        let (mut in_primary, mut in_backup) = match (p, b) {
            (Err(pe), Err(be)) => {
                return Err(Error::Backend {
                    engine: "guarded",
                    context: format!("neither copy took the logs (backup: {be})"),
                    source: Box::new(pe),
                })
            }
            (p, b) => (p.is_ok(), b.is_ok()),
        };
        if !in_primary {
            self.counters.primary_failures.fetch_add(1, Ordering::Relaxed);
            // Restore at once: the primary's writer reopens its connection after an error.
            let retried = match again_primary {
                true => Some(
                    self.primary
                        .import_valid(ValidRecords::already_valid(sealed.to_vec()), durability)
                        .await,
                ),
                false => None,
            };
            match retried {
                Some(Ok(rep)) if rep.conflicts.is_empty() => {
                    self.counters.restored.fetch_add(rep.inserted, Ordering::Relaxed);
                    in_primary = true;
                }
                _ => self.pending_primary.extend_from_slice(sealed),
            }
        }
        if !in_backup {
            self.counters.backup_failures.fetch_add(1, Ordering::Relaxed);
            let retried = match again_backup {
                true => Some(
                    self.backup
                        .import_valid(ValidRecords::already_valid(sealed.to_vec()), durability)
                        .await,
                ),
                false => None,
            };
            match retried {
                Some(Ok(rep)) if rep.conflicts.is_empty() => {
                    self.counters.copied.fetch_add(rep.inserted, Ordering::Relaxed);
                    in_backup = true;
                }
                _ => self.pending_backup.extend_from_slice(sealed),
            }
        }
        self.set_pending_counters();
        self.lower_watermark(self.first_pending()).await;
        let mut verified = false;
        if self.options.verify {
            // One independent read is enough; the backup is read only if the primary's fails.
            // A copy that took the write but does not read it back intact is not counted as
            // holding it (its stored checksum still matches, so only verify and `check` can
            // see the damage).
            if in_primary && !Self::read_back(&*self.primary, sealed).await {
                in_primary = false;
                self.counters.primary_failures.fetch_add(1, Ordering::Relaxed);
            }
            verified = in_primary || (in_backup && Self::read_back(&*self.backup, sealed).await);
            if !verified {
                return Err(Error::corrupt(
                    format!("{} and {}", self.primary.describe(), self.backup.describe()),
                    "the logs were written but did not read back intact from either copy; nothing acknowledged",
                ));
            }
        }
        Ok((
            Copies {
                primary: in_primary,
                backup: in_backup,
            },
            verified,
        ))
    }

    pub(super) async fn import(
        &mut self,
        records: ValidRecords,
        durability: Durability,
    ) -> Result<ImportReport> {
        self.flush_pending(durability).await;
        self.pending_durability = self.pending_durability.max(durability);
        let min = records.iter().map(|r| r.id.get()).min().unwrap_or(0);
        let max = records.iter().map(|r| r.id.get()).max().unwrap_or(0);
        if min > 0 {
            self.announce(Some((min, max)));
        }
        self.next_id = self.next_id.max(max + 1);
        let (p, b) = tokio::join!(
            self.primary.import_valid(records.clone(), durability),
            self.backup.import_valid(records.clone(), durability)
        );
        let report = match (p, b) {
            (Ok(p), Ok(b)) => {
                let mut report = p;
                let known: HashSet<LogId> = report.conflicts.iter().map(|c| c.id).collect();
                report
                    .conflicts
                    .extend(b.conflicts.into_iter().filter(|c| !known.contains(&c.id)));
                report
            }
            (Ok(p), Err(_)) => {
                self.counters.backup_failures.fetch_add(1, Ordering::Relaxed);
                let conflicted: HashSet<LogId> = p.conflicts.iter().map(|c| c.id).collect();
                self.pending_backup.extend(
                    records
                        .into_inner()
                        .into_iter()
                        .filter(|r| !conflicted.contains(&r.id)),
                );
                p
            }
            (Err(_), Ok(b)) => {
                self.counters.primary_failures.fetch_add(1, Ordering::Relaxed);
                let conflicted: HashSet<LogId> = b.conflicts.iter().map(|c| c.id).collect();
                self.pending_primary.extend(
                    records
                        .into_inner()
                        .into_iter()
                        .filter(|r| !conflicted.contains(&r.id)),
                );
                b
            }
            (Err(e), Err(_)) => return Err(e),
        };
        self.set_pending_counters();
        self.lower_watermark(self.first_pending()).await;
        Ok(report)
    }
}

pub(super) fn fail_all(group: Vec<(ValidBatch, Durability, Reply<Receipt>)>, err: &Error) {
    for (_, _, reply) in group {
        let _ = reply.send(Err(err.replicate()));
    }
}
