//! The writer task: one connection, one transaction per group (commits, imports, repairs,
//! prune chunks), ids assigned under the store's advisory lock.

use super::*;

pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

pub(crate) enum Job {
    Commit {
        logs: Vec<NewLog>,
        durability: Durability,
        seq: u64,
        reply: Reply<Committed>,
    },
    Import {
        records: Vec<LogRecord>,
        durability: Durability,
        reply: Reply<ImportReport>,
    },
    Sync {
        level: Durability,
        reply: Reply<()>,
    },
    Repair {
        records: Vec<LogRecord>,
        durability: Durability,
        reply: Reply<ImportReport>,
    },
    /// One transaction of a prune: with `first`, the marker and the high-water mark;
    /// then the deletion of `ranges` (at most [`PRUNE_CHUNK_IDS`] ids).
    Prune {
        marker: Box<PruneMarker>,
        first: bool,
        ranges: Vec<IdRange>,
        durability: Durability,
        reply: Reply<Applied>,
    },
    /// Ends the writer: its connection is closed, later jobs are refused.
    Close {
        reply: Reply<()>,
    },
}

/// The writer task: one connection, one transaction per group.
pub(crate) struct Writer {
    pub(crate) endpoint: Endpoint,
    pub(crate) client: Option<Client>,
    pub(crate) sql: Arc<Sql>,
    pub(crate) store: String,
    pub(crate) lock_key: i64,
    /// How long one operation waits for other writers' locks.
    pub(crate) lock_wait: Duration,
    /// The id this writer expects to assign next (None: read it from the database).
    pub(crate) expected_next: Option<i64>,
    /// The group insert, prepared on the current connection.
    pub(crate) insert: Option<tokio_postgres::Statement>,
    /// The lookups of a keyed group, prepared on the current connection.
    pub(crate) lookups: Option<Lookups>,
    pub(crate) submitted: Arc<AtomicU64>,
    pub(crate) gathering: Gathering,
    pub(crate) max_group_logs: usize,
    pub(crate) stats: Arc<Stats>,
    /// Raised to the last id of each acknowledged commit, import and repair.
    pub(crate) signal: CommitSignal,
    /// The prune markers read so far (they are only ever added, under the store's lock)
    /// and the last sequence number read: what imports and repairs skip.
    pub(crate) markers: Markers,
}

/// The prune markers a writer has read, in sequence order.
#[derive(Default)]
pub(crate) struct Markers {
    pub(crate) seq: i64,
    pub(crate) markers: Vec<PruneMarker>,
    pub(crate) pruned: Pruned,
}

/// What a group with run or idempotency keys reads under the store's lock, prepared.
#[derive(Clone)]
pub(crate) struct Lookups {
    pub(crate) next_id: tokio_postgres::Statement,
    pub(crate) by_idempotency_keys: tokio_postgres::Statement,
    pub(crate) run_ends: tokio_postgres::Statement,
}

/// What each batch of a group came to: its records, or the error of a batch the rules of
/// runs and idempotency keys refused (nothing of it written).
pub(crate) type Outcomes = Vec<Result<Committed>>;

/// Counters of a [`PgStore`].
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) groups: AtomicU64,
    pub(crate) logs: AtomicU64,
    pub(crate) connects: AtomicU64,
}

/// The most times the writer yields for answered callers to come back before a group.
pub(crate) const MAX_GATHER_YIELDS: u32 = 64;

/// The `synchronous_commit` setting a transaction at `d` runs with (see the crate docs).
pub fn synchronous_commit_for(d: Durability) -> &'static str {
    match d {
        Durability::PowerLoss => "on",
        Durability::Process => "local",
        Durability::Buffered => "off",
    }
}

impl Writer {
    pub(crate) async fn client(&mut self) -> Result<&mut Client> {
        if self.client.is_none() {
            let client = self.endpoint.connect("connecting the writer to").await?;
            self.stats.connects.fetch_add(1, Ordering::Relaxed);
            self.client = Some(client);
        }
        let store = self.store.clone();
        self.client.as_mut().ok_or(Error::Closed { store })
    }

    /// Runs `op` and drops the connection if it failed (the next call opens a fresh one).
    pub(crate) fn settle<R>(&mut self, result: Result<R>) -> Result<R> {
        if result.is_err() {
            self.client = None;
            self.insert = None;
            self.lookups = None;
            self.expected_next = None;
        }
        result
    }

    pub(crate) async fn commit_group(
        &mut self,
        batches: &[Vec<NewLog>],
        durability: Durability,
    ) -> Result<Outcomes> {
        let deadline = Deadline::after(self.lock_wait);
        let r = if Planner::any_keys(batches.iter().map(Vec::as_slice)) {
            self.insert_keyed_group(batches, durability, deadline).await
        } else {
            self.try_commit_group(batches, durability, deadline)
                .await
                .map(|out| out.into_iter().map(|recs| Ok(Committed::fresh(recs))).collect())
        };
        self.settle(r)
    }

    /// A group whose logs carry no run or idempotency key: every log is new, nothing is
    /// looked up.
    pub(crate) async fn try_commit_group(
        &mut self,
        batches: &[Vec<NewLog>],
        durability: Durability,
        deadline: Deadline,
    ) -> Result<Vec<Vec<LogRecord>>> {
        // First with the next id this writer expects, pipelined into one round trip; if
        // another process wrote since, the guard inserts nothing and nothing is lost. (The
        // insert was prepared along with that id, inside a transaction bounded by its wait.)
        if let (Some(first), Some(_)) = (self.expected_next, &self.insert) {
            if let Some(out) = self.insert_group(batches, durability, first, deadline).await? {
                return Ok(out);
            }
        }
        // Then in turn with the other writers: the next id is read under the store's lock.
        self.insert_group_in_turn(batches, durability, deadline).await
    }

    /// The group insert, prepared on the current connection. Preparing it takes a lock on
    /// the table: do it inside a transaction whose lock_timeout bounds the wait.
    pub(crate) async fn prepared_insert(&mut self) -> Result<tokio_postgres::Statement> {
        if let Some(stmt) = &self.insert {
            return Ok(stmt.clone());
        }
        let (store, sql) = (self.store.clone(), self.sql.clone());
        let stmt = self
            .client()
            .await?
            .prepare(&sql.insert)
            .await
            .map_err(|e| pg_err(&store, "preparing the insert on", e))?;
        self.insert = Some(stmt.clone());
        Ok(stmt)
    }

    /// The statements of a keyed group, prepared on the current connection (inside a
    /// transaction bounded by its wait, as preparing takes locks).
    pub(crate) async fn prepared_lookups(&mut self) -> Result<Lookups> {
        if let Some(l) = &self.lookups {
            return Ok(l.clone());
        }
        let (store, sql) = (self.store.clone(), self.sql.clone());
        let client = self.client().await?;
        let prep = |text: &'static str, q: String| {
            let store = store.clone();
            let client = &*client;
            async move {
                client
                    .prepare(&q)
                    .await
                    .map_err(|e| pg_err(&store, &format!("preparing the {text} of"), e))
            }
        };
        let (next_id, by_keys, run_ends) = tokio::join!(
            prep("next id", sql.next_id.clone()),
            prep("idempotency lookup", sql.by_idempotency_keys.clone()),
            prep("run lookup", sql.run_ends.clone())
        );
        let l = Lookups {
            next_id: next_id?,
            by_idempotency_keys: by_keys?,
            run_ends: run_ends?,
        };
        self.lookups = Some(l.clone());
        Ok(l)
    }

    /// A group where some log carries a run or idempotency key, in one transaction: the
    /// store's lock (so the rules hold across processes), the next id and every key the
    /// group names looked up under it, each batch planned and sealed (a refused batch gets
    /// its error and spends no id), the new records inserted, commit.
    pub(crate) async fn insert_keyed_group(
        &mut self,
        batches: &[Vec<NewLog>],
        durability: Durability,
        deadline: Deadline,
    ) -> Result<Outcomes> {
        let (store, sql) = (self.store.clone(), self.sql.clone());
        let begin = self.begin_sql(durability, deadline);
        let wanted = Planner::wanted(batches.iter().map(Vec::as_slice));
        // Once the statements are prepared, the lock and the lookups go in one round trip
        // (the server runs them in order: the lookups see every commit made before the lock).
        let prepared = self.insert.is_some() && self.lookups.is_some();
        if !prepared {
            self.client()
                .await?
                .batch_execute(&begin)
                .await
                .map_err(|e| pg_err(&store, "waiting for the store's lock on", e))?;
        }
        let stmt = self.prepared_insert().await?;
        let lookups = self.prepared_lookups().await?;
        let client = self.client().await?;
        let (began, next, by_key, ends) = tokio::join!(
            async {
                match prepared {
                    true => client.batch_execute(&begin).await,
                    false => Ok(()),
                }
            },
            client.query_one(&lookups.next_id, &[]),
            async {
                match wanted.idempotent.is_empty() {
                    true => Ok(Vec::new()),
                    false => {
                        client
                            .query(&lookups.by_idempotency_keys, &[&wanted.idempotent])
                            .await
                    }
                }
            },
            async {
                match wanted.runs.is_empty() {
                    true => Ok(Vec::new()),
                    false => client.query(&lookups.run_ends, &[&wanted.runs]).await,
                }
            }
        );
        began.map_err(|e| pg_err(&store, "waiting for the store's lock on", e))?;
        let first: i64 = next
            .map_err(|e| pg_err(&store, "reading the next id of", e))?
            .get(0);
        let mut keys = Fetched::default();
        for row in by_key.map_err(|e| pg_err(&store, "looking up idempotency keys in", e))? {
            let rec = decode(&row, &store)?;
            if let Some(k) = rec.idempotency_key.clone() {
                keys.idempotent.insert(k, rec);
            }
        }
        for row in ends.map_err(|e| pg_err(&store, "looking up runs in", e))? {
            let rec = decode(&row, &store)?;
            let Some(run) = rec.run.clone() else { continue };
            match keys.runs.get_mut(&run) {
                Some(ends) if rec.id < ends.first.id => ends.first = rec,
                Some(ends) if rec.id > ends.last.id => ends.last = rec,
                Some(_) => {}
                None => {
                    keys.runs.insert(
                        run,
                        RunEnds {
                            first: rec.clone(),
                            last: rec,
                        },
                    );
                }
            }
        }
        let now = Utc::now();
        let mut next = first;
        let mut planner = Planner::new();
        let mut outcomes = Vec::with_capacity(batches.len());
        let mut all = Vec::new();
        for batch in batches {
            let outcome = seal_batch(&mut planner, batch, &mut keys, &mut |log| {
                let id = LogId::new(next as u64).ok_or_else(|| Error::corrupt(&store, "invalid next id"))?;
                next += 1;
                LogRecord::seal_ref(id, now, log)
            })?;
            if let Ok(done) = &outcome {
                all.extend(done.new_records().cloned());
            }
            outcomes.push(outcome);
        }
        if all.is_empty() {
            // Only repeats (or refusals): nothing to insert. A repeat answers for a record
            // another transaction committed, maybe at a weaker level: a write here makes
            // this commit's flush cover it.
            let repeats = outcomes
                .iter()
                .any(|o| o.as_ref().is_ok_and(|c| !c.records.is_empty()));
            if repeats && durability > Durability::Buffered {
                client
                    .execute(&sql.sync, &[])
                    .await
                    .map_err(|e| pg_err(&store, "syncing", e))?;
            }
            client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| pg_err(&store, "committing to", e))?;
            self.expected_next = Some(first);
            return Ok(outcomes);
        }
        insert_and_commit(client, &stmt, &all, first, &store).await?;
        self.expected_next = Some(next);
        Ok(outcomes)
    }

    /// `BEGIN` at `durability`, then the store's advisory lock, waited for until `deadline`.
    /// Read committed (whatever the server's default): each statement after the lock sees
    /// every transaction that held it before.
    pub(crate) fn begin_sql(&self, durability: Durability, deadline: Deadline) -> String {
        format!(
            "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL synchronous_commit = {}; {}; \
             SELECT pg_advisory_xact_lock({})",
            synchronous_commit_for(durability),
            deadline.set_lock_timeout(),
            self.lock_key
        )
    }

    /// One transaction: lock, guarded insert of the group with ids from `first`, commit;
    /// sent as a pipeline. `None` when the guard found the ids taken (nothing written).
    pub(crate) async fn insert_group(
        &mut self,
        batches: &[Vec<NewLog>],
        durability: Durability,
        first: i64,
        deadline: Deadline,
    ) -> Result<Option<Vec<Vec<LogRecord>>>> {
        let store = self.store.clone();
        let (out, all, next) = seal_group(batches, first, &store)?;
        let cols = Columns::of(&all);
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = cols.params().to_vec();
        params.push(&first);
        params.extend(cols.attr_params());
        let begin = self.begin_sql(durability, deadline);
        let stmt = self
            .insert
            .clone()
            .ok_or_else(|| Error::Closed { store: store.clone() })?;
        let client = self.client().await?;
        let (began, inserted, committed) = tokio::join!(
            client.batch_execute(&begin),
            client.query_one(&stmt, &params),
            client.batch_execute("COMMIT")
        );
        began.map_err(|e| pg_err(&store, "waiting for the store's lock on", e))?;
        // If the insert failed, the pipelined COMMIT only ended an aborted transaction.
        let row = inserted.map_err(|e| pg_err(&store, "inserting into", e))?;
        committed.map_err(|e| pg_err(&store, "committing to", e))?;
        let n: i64 = row.get(0);
        if n == 0 {
            self.expected_next = None;
            return Ok(None);
        }
        if n as usize != all.len() {
            return Err(Error::corrupt(
                store,
                format!("inserted {n} of {} rows", all.len()),
            ));
        }
        self.expected_next = Some(next);
        Ok(Some(out))
    }

    /// One transaction that takes the store's lock first (waiting its turn until
    /// `deadline`), reads the next id under it, then inserts and commits: no other synclog
    /// writer can take those ids in between.
    pub(crate) async fn insert_group_in_turn(
        &mut self,
        batches: &[Vec<NewLog>],
        durability: Durability,
        deadline: Deadline,
    ) -> Result<Vec<Vec<LogRecord>>> {
        let (store, sql) = (self.store.clone(), self.sql.clone());
        let begin = self.begin_sql(durability, deadline);
        self.client()
            .await?
            .batch_execute(&begin)
            .await
            .map_err(|e| pg_err(&store, "waiting for the store's lock on", e))?;
        let stmt = self.prepared_insert().await?;
        let client = self.client().await?;
        let first: i64 = client
            .query_one(&sql.next_id, &[])
            .await
            .map_err(|e| pg_err(&store, "reading the next id of", e))?
            .get(0);
        let (out, all, next) = seal_group(batches, first, &store)?;
        insert_and_commit(client, &stmt, &all, first, &store).await?;
        self.expected_next = Some(next);
        Ok(out)
    }

    pub(crate) async fn import(
        &mut self,
        records: Vec<LogRecord>,
        durability: Durability,
    ) -> Result<ImportReport> {
        let r = self.try_import(records, durability).await;
        self.settle(r)
    }

    pub(crate) async fn repair(
        &mut self,
        records: Vec<LogRecord>,
        durability: Durability,
    ) -> Result<ImportReport> {
        let r = self.try_repair(records, durability).await;
        self.settle(r)
    }

    /// In one transaction under the store's lock: reads the stored rows of the offered ids,
    /// deletes those that are damaged (undecodable, or fields that no longer give their
    /// checksum), and inserts the offered records that are not stored intact.
    pub(crate) async fn try_repair(
        &mut self,
        records: Vec<LogRecord>,
        durability: Durability,
    ) -> Result<ImportReport> {
        self.expected_next = None;
        offered_keys_are_unique(&records)?;
        let (store, sql, lock) = (self.store.clone(), self.sql.clone(), self.lock_key);
        let deadline = Deadline::after(self.lock_wait);
        // Taken out while the connection is borrowed; an error leaves them to be read
        // again from the start.
        let mut markers = std::mem::take(&mut self.markers);
        let client = self.client().await?;
        let tx = begin(client, durability, lock, deadline, &store).await?;
        Self::refresh_markers(&mut markers, &tx, &sql, &store).await?;
        let pruned = &markers.pruned;
        let before = records.len();
        let records: Vec<LogRecord> = records.into_iter().filter(|r| !pruned.contains(r.id)).collect();
        let skipped = (before - records.len()) as u64;
        let ids: Vec<i64> = records.iter().map(|r| r.id.get() as i64).collect();
        let rows = tx
            .query(
                &format!("SELECT {} FROM {} WHERE id = ANY($1)", sql::COLUMNS, sql.table),
                &[&ids],
            )
            .await
            .map_err(|e| pg_err(&store, "reading the records to repair in", e))?;
        let mut intact: HashMap<i64, Checksum> = HashMap::new();
        let mut damaged: Vec<i64> = Vec::new();
        for row in &rows {
            let id: i64 = row.get(0);
            match decode(row, &store) {
                Ok(rec) if rec.is_intact() => {
                    intact.insert(id, rec.checksum);
                }
                _ => damaged.push(id),
            }
        }
        if !damaged.is_empty() {
            tx.execute(
                &format!("DELETE FROM {} WHERE id = ANY($1)", sql.table),
                &[&damaged],
            )
            .await
            .map_err(|e| pg_err(&store, "removing damaged records from", e))?;
        }
        let fresh: Vec<LogRecord> = records
            .iter()
            .filter(|r| !intact.contains_key(&(r.id.get() as i64)))
            .cloned()
            .collect();
        if !fresh.is_empty() {
            let cols = Columns::of(&fresh);
            let inserted: HashSet<i64> = tx
                .query(&sql.import, &cols.import_params())
                .await
                .map_err(|e| pg_err(&store, "repairing", e))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let left: Vec<&LogRecord> = fresh
                .iter()
                .filter(|r| !inserted.contains(&(r.id.get() as i64)))
                .collect();
            // Returning drops the transaction: nothing of the repair is written.
            key_held_elsewhere(&tx, &sql, &store, &left).await?;
        }
        let damaged: std::collections::HashSet<i64> = damaged.into_iter().collect();
        let mut report = ImportReport {
            pruned: skipped,
            ..ImportReport::default()
        };
        for rec in &records {
            let id = rec.id.get() as i64;
            match intact.get(&id) {
                Some(&stored) => report.note_existing(rec.id, stored, rec.checksum),
                None if damaged.contains(&id) => report.replaced += 1,
                None => report.inserted += 1,
            }
        }
        tx.commit()
            .await
            .map_err(|e| pg_err(&store, "committing to", e))?;
        self.markers = markers;
        if let Some(last) = records.iter().map(|r| r.id).max() {
            self.signal.committed(last);
        }
        Ok(report)
    }

    /// In one transaction under the store's lock: inserts the records whose ids are free,
    /// then compares the others' checksums with the stored ones. A record whose idempotency
    /// key is stored under another id refuses the whole import (nothing is written).
    pub(crate) async fn try_import(
        &mut self,
        records: Vec<LogRecord>,
        durability: Durability,
    ) -> Result<ImportReport> {
        self.expected_next = None;
        offered_keys_are_unique(&records)?;
        let (store, sql, lock) = (self.store.clone(), self.sql.clone(), self.lock_key);
        let deadline = Deadline::after(self.lock_wait);
        // Taken out while the connection is borrowed; an error leaves them to be read
        // again from the start.
        let mut markers = std::mem::take(&mut self.markers);
        let client = self.client().await?;
        let tx = begin(client, durability, lock, deadline, &store).await?;
        Self::refresh_markers(&mut markers, &tx, &sql, &store).await?;
        let pruned = &markers.pruned;
        let before = records.len();
        let records: Vec<LogRecord> = records.into_iter().filter(|r| !pruned.contains(r.id)).collect();
        let skipped = (before - records.len()) as u64;
        let cols = Columns::of(&records);
        let inserted: HashSet<i64> = tx
            .query(&sql.import, &cols.import_params())
            .await
            .map_err(|e| pg_err(&store, "importing into", e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut report = ImportReport {
            inserted: inserted.len() as u64,
            pruned: skipped,
            ..ImportReport::default()
        };
        let others: Vec<i64> = records
            .iter()
            .map(|r| r.id.get() as i64)
            .filter(|i| !inserted.contains(i))
            .collect();
        if !others.is_empty() {
            let stored: HashMap<i64, i64> = tx
                .query(&sql.checksums_of, &[&others])
                .await
                .map_err(|e| pg_err(&store, "reading checksums of", e))?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            // Neither inserted nor stored under its id: its idempotency key is stored under
            // another id (the only other unique index).
            let blocked: Vec<&LogRecord> = records
                .iter()
                .filter(|r| {
                    let id = r.id.get() as i64;
                    !inserted.contains(&id) && !stored.contains_key(&id)
                })
                .collect();
            key_held_elsewhere(&tx, &sql, &store, &blocked).await?;
            for rec in records
                .iter()
                .filter(|r| !inserted.contains(&(r.id.get() as i64)))
            {
                let stored = Checksum(stored.get(&(rec.id.get() as i64)).copied().unwrap_or(-1) as u32);
                report.note_existing(rec.id, stored, rec.checksum);
            }
        }
        tx.commit()
            .await
            .map_err(|e| pg_err(&store, "committing to", e))?;
        self.markers = markers;
        if let Some(last) = inserted.iter().max().and_then(|&i| LogId::new(i as u64)) {
            self.signal.committed(last);
        }
        Ok(report)
    }

    /// Reads the markers stored since the last read (inside `tx`, under the store's lock):
    /// the ids they cover.
    pub(crate) async fn refresh_markers(
        markers: &mut Markers,
        tx: &tokio_postgres::Transaction<'_>,
        sql: &Sql,
        store: &str,
    ) -> Result<()> {
        let rows = tx
            .query(&sql.markers_after, &[&markers.seq])
            .await
            .map_err(|e| pg_err(store, "reading the prune markers of", e))?;
        if rows.is_empty() {
            return Ok(());
        }
        for row in &rows {
            let (seq, marker) = decode_marker(row, store)?;
            markers.seq = markers.seq.max(seq);
            markers.markers.push(marker);
        }
        markers.pruned = Pruned::of(&markers.markers);
        Ok(())
    }

    pub(crate) async fn apply_prune(
        &mut self,
        marker: &PruneMarker,
        first: bool,
        ranges: &[IdRange],
        durability: Durability,
    ) -> Result<Applied> {
        let r = self.try_apply_prune(marker, first, ranges, durability).await;
        self.settle(r)
    }

    /// One transaction under the store's lock: with `first`, stores the marker unless a
    /// marker with its digest is stored and raises the high-water mark to its last id;
    /// then deletes the records of `ranges` (the triggers drop their `attrs` rows and make
    /// their `job_stats` and `runs` rows again).
    pub(crate) async fn try_apply_prune(
        &mut self,
        marker: &PruneMarker,
        first: bool,
        ranges: &[IdRange],
        durability: Durability,
    ) -> Result<Applied> {
        let (store, sql, lock) = (self.store.clone(), self.sql.clone(), self.lock_key);
        let deadline = Deadline::after(self.lock_wait);
        let client = self.client().await?;
        let tx = begin(client, durability, lock, deadline, &store).await?;
        let mut stored = 1;
        let top = marker.last_id().map(|l| l.get() as i64);
        if first {
            stored = tx
                .execute(&sql.marker_insert, &[&marker.digest, &marker.encode()])
                .await
                .map_err(|e| pg_err(&store, "storing a prune marker in", e))?;
            if let Some(top) = top {
                tx.query(&sql.raise_high_water, &[&top])
                    .await
                    .map_err(|e| pg_err(&store, "raising the high-water mark of", e))?;
            }
        }
        let firsts: Vec<i64> = ranges.iter().map(|r| r.first.get() as i64).collect();
        let lasts: Vec<i64> = ranges.iter().map(|r| r.last.get() as i64).collect();
        let deleted = tx
            .execute(&sql.prune_delete, &[&firsts, &lasts])
            .await
            .map_err(|e| pg_err(&store, "deleting pruned records from", e))?;
        tx.commit()
            .await
            .map_err(|e| pg_err(&store, "committing to", e))?;
        if let (Some(top), Some(next)) = (top, self.expected_next) {
            if next <= top {
                self.expected_next = None;
            }
        }
        Ok(Applied {
            deleted,
            already_marked: stored == 0,
        })
    }

    pub(crate) async fn sync(&mut self, level: Durability) -> Result<()> {
        let r = self.try_sync(level).await;
        self.settle(r)
    }

    /// A write transaction at `level`: its commit record's flush covers all earlier WAL.
    pub(crate) async fn try_sync(&mut self, level: Durability) -> Result<()> {
        let (store, sql, lock) = (self.store.clone(), self.sql.clone(), self.lock_key);
        let deadline = Deadline::after(self.lock_wait);
        let client = self.client().await?;
        let tx = begin(client, level, lock, deadline, &store).await?;
        tx.execute(&sql.sync, &[])
            .await
            .map_err(|e| pg_err(&store, "syncing", e))?;
        tx.commit().await.map_err(|e| pg_err(&store, "committing to", e))
    }

    pub(crate) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Job>) {
        let mut deferred: Option<Job> = None;
        loop {
            let job = match deferred.take() {
                Some(j) => j,
                None => match rx.recv().await {
                    Some(j) => j,
                    None => return,
                },
            };
            match job {
                Job::Commit {
                    logs,
                    durability,
                    seq,
                    reply,
                } => {
                    self.gathering.start(seq);
                    let mut durability = durability;
                    let mut total = logs.len();
                    let mut group = vec![(logs, reply)];
                    let mut yields = 0;
                    while total < self.max_group_logs {
                        match rx.try_recv() {
                            Ok(Job::Commit {
                                logs,
                                durability: d,
                                seq,
                                reply,
                            }) => {
                                self.gathering.join(seq);
                                durability = durability.max(d);
                                total += logs.len();
                                group.push((logs, reply));
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
                    let (batches, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
                    let result = self.commit_group(&batches, durability).await;
                    self.gathering
                        .answering(replies.len(), self.submitted.load(Ordering::Relaxed));
                    match result {
                        Ok(outcomes) => {
                            let written: usize = outcomes
                                .iter()
                                .map(|o| o.as_ref().map_or(0, Committed::written))
                                .sum();
                            self.stats.groups.fetch_add(1, Ordering::Relaxed);
                            self.stats.logs.fetch_add(written as u64, Ordering::Relaxed);
                            self.signal.committed_records(
                                outcomes
                                    .iter()
                                    .filter_map(|o| o.as_ref().ok())
                                    .flat_map(Committed::new_records),
                            );
                            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                                let _ = reply.send(outcome);
                            }
                        }
                        Err(e) => {
                            for reply in replies {
                                let _ = reply.send(Err(e.replicate()));
                            }
                        }
                    }
                }
                Job::Import {
                    records,
                    durability,
                    reply,
                } => {
                    let _ = reply.send(self.import(records, durability).await);
                }
                Job::Sync { level, reply } => {
                    let _ = reply.send(self.sync(level).await);
                }
                Job::Repair {
                    records,
                    durability,
                    reply,
                } => {
                    let _ = reply.send(self.repair(records, durability).await);
                }
                Job::Prune {
                    marker,
                    first,
                    ranges,
                    durability,
                    reply,
                } => {
                    let _ = reply.send(self.apply_prune(&marker, first, &ranges, durability).await);
                }
                Job::Close { reply } => {
                    self.client = None;
                    let _ = reply.send(Ok(()));
                    return;
                }
            }
        }
    }
}

/// Begins a transaction at `durability` holding the store's advisory lock, waiting for it
/// (and for every lock the transaction takes) until `deadline`.
pub(crate) async fn begin<'a>(
    client: &'a mut Client,
    durability: Durability,
    lock: i64,
    deadline: Deadline,
    store: &str,
) -> Result<tokio_postgres::Transaction<'a>> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::ReadCommitted)
        .start()
        .await
        .map_err(|e| pg_err(store, "beginning a transaction on", e))?;
    tx.batch_execute(&format!(
        "SET LOCAL synchronous_commit = {}; {}; SELECT pg_advisory_xact_lock({lock})",
        synchronous_commit_for(durability),
        deadline.set_lock_timeout()
    ))
    .await
    .map_err(|e| pg_err(store, "waiting for the store's lock on", e))?;
    Ok(tx)
}

/// Refuses records offered for import that give one idempotency key to different ids
/// (the store keeps each key once).
pub(crate) fn offered_keys_are_unique(records: &[LogRecord]) -> Result<()> {
    let mut seen: HashMap<&str, LogId> = HashMap::new();
    for (i, rec) in records.iter().enumerate() {
        let Some(key) = rec.idempotency_key.as_deref() else {
            continue;
        };
        match seen.insert(key, rec.id) {
            Some(other) if other != rec.id => {
                return Err(Error::invalid(
                    "idempotency_key",
                    format!("{key:?} is given to logs {other} and {}", rec.id),
                )
                .at_index(i))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The error for the first of `records` (offered, not inserted) whose idempotency key is
/// stored under another id, if any.
pub(crate) async fn key_held_elsewhere(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &Sql,
    store: &str,
    records: &[&LogRecord],
) -> Result<()> {
    for rec in records {
        let Some(key) = &rec.idempotency_key else { continue };
        let holder = tx
            .query_opt(&sql.by_idempotency_key, &[key])
            .await
            .map_err(|e| pg_err(store, "looking up an idempotency key in", e))?;
        if let Some(row) = holder {
            let stored = decode(&row, store)?.id;
            if stored != rec.id {
                return Err(Error::IdempotencyConflict {
                    key: key.clone(),
                    stored,
                });
            }
        }
    }
    Ok(())
}

/// Seals a group's logs with ids from `first`: the records per batch, all of them, and the
/// id after the last.
/// Inserts `all` (ids from `first` on) and commits, in one round trip, inside a
/// transaction that holds the store's lock. Fewer rows than offered means that a writer
/// that does not take the lock (not synclog) took some of those ids: the transaction wrote
/// nothing, and the error is retryable.
pub(crate) async fn insert_and_commit(
    client: &Client,
    stmt: &tokio_postgres::Statement,
    all: &[LogRecord],
    first: i64,
    store: &str,
) -> Result<()> {
    let cols = Columns::of(all);
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = cols.params().to_vec();
    params.push(&first);
    params.extend(cols.attr_params());
    let (inserted, committed) = tokio::join!(client.query_one(stmt, &params), client.batch_execute("COMMIT"));
    let row = inserted.map_err(|e| pg_err(store, "inserting into", e))?;
    committed.map_err(|e| pg_err(store, "committing to", e))?;
    let n: i64 = row.get(0);
    if n as usize != all.len() {
        return Err(Error::Busy {
            resource: store.to_string(),
            detail: format!(
                "inserted {n} of {} rows: something that does not take synclog's lock wrote ids \
                 from {first} on; retry",
                all.len()
            ),
            source: None,
        });
    }
    Ok(())
}

pub(crate) fn seal_group(
    batches: &[Vec<NewLog>],
    first: i64,
    store: &str,
) -> Result<(Vec<Vec<LogRecord>>, Vec<LogRecord>, i64)> {
    let now = Utc::now();
    let mut next = first;
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        let mut recs = Vec::with_capacity(batch.len());
        for log in batch {
            let id = LogId::new(next as u64).ok_or_else(|| Error::corrupt(store, "invalid next id"))?;
            recs.push(LogRecord::seal_ref(id, now, log)?);
            next += 1;
        }
        out.push(recs);
    }
    let all = out.iter().flatten().cloned().collect();
    Ok((out, all, next))
}
