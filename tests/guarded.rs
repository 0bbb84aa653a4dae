//! The guarded store's promises: nothing acknowledged is lost when a copy is deleted,
//! rolled back or failing.

use std::path::PathBuf;
use std::sync::Arc;

use synclog::{
    Durability, Filter, Guarded, GuardedOptions, LogId, LogStore, LogStoreExt, NewLog, Status, VerifyOptions,
};
use synclog_conformance::cases::everything;
use synclog_conformance::fault::{DamagedReads, FailEveryNth};

mod common;

use common::pair::Pair;

impl Pair {
    /// The primary alone, by URL (to wrap it in a fault injector).
    async fn sqlite(&self) -> Arc<dyn LogStore> {
        synclog::open_url(&format!("sqlite://{}", self.primary.display()))
            .await
            .unwrap()
    }

    /// The backup alone, by URL.
    async fn json(&self) -> Arc<dyn LogStore> {
        synclog::open_url(&format!("json://{}", self.backup.display()))
            .await
            .unwrap()
    }

    /// A guarded store over `primary` (the pair's SQLite store, usually wrapped to
    /// misbehave) and the pair's backup, which is returned too.
    async fn guard(&self, primary: Arc<dyn LogStore>) -> (Guarded, Arc<dyn LogStore>) {
        let backup = self.json().await;
        let store = Guarded::open(primary, backup.clone(), GuardedOptions::default())
            .await
            .unwrap();
        (store, backup)
    }

    /// A guarded store over the pair's SQLite store and its backup behind an
    /// [`Unplugged`](synclog_conformance::fault::Unplugged) switch (returned too), retrying
    /// what the backup missed every `retry` while idle.
    async fn guard_unplugged_backup(
        &self,
        retry: std::time::Duration,
    ) -> (Guarded, Arc<synclog_conformance::fault::Unplugged>) {
        let backup = Arc::new(synclog_conformance::fault::Unplugged::new(self.json().await));
        let options = GuardedOptions {
            retry_pending_after: Some(retry),
            ..GuardedOptions::default()
        };
        let store = Guarded::open(self.sqlite().await, backup.clone(), options)
            .await
            .unwrap();
        (store, backup)
    }

    fn primary_files(&self) -> Vec<PathBuf> {
        ["", "-wal", "-shm"]
            .iter()
            .map(|s| PathBuf::from(format!("{}{s}", self.primary.display())))
            .collect()
    }
}

fn log(n: u64) -> NewLog {
    NewLog::new(format!("job-{}", n % 4), Status::Succeeded)
        .counts(n, n, 0)
        .attr("run", n)
}

async fn append_n(store: &Guarded, range: std::ops::RangeInclusive<u64>) -> Vec<synclog::LogRecord> {
    let mut out = Vec::new();
    for n in range {
        out.push(store.append(log(n)).await.unwrap());
    }
    out
}

fn remove(paths: &[PathBuf]) {
    for p in paths {
        if p.exists() {
            std::fs::remove_file(p).unwrap();
        }
    }
}

#[tokio::test]
async fn receipt_says_both_copies_hold_a_verified_append() {
    let pair = Pair::new();
    let store = pair.open().await;
    let receipt = store
        .append_batch(vec![log(1), log(2)], Durability::PowerLoss)
        .await
        .unwrap();
    assert!(receipt.durable_in.primary && receipt.durable_in.backup && receipt.verified);
    let ids: Vec<u64> = receipt.records.iter().map(|r| r.id.get()).collect();
    assert_eq!(ids, vec![1, 2]);
    for rec in &receipt.records {
        assert_eq!(store.primary().get(rec.id).await.unwrap().as_ref(), Some(rec));
        assert_eq!(store.backup().get(rec.id).await.unwrap().as_ref(), Some(rec));
    }
}

#[tokio::test]
async fn stats_count_the_groups_and_the_time_they_held_the_pair() {
    let pair = Pair::new();
    let store = pair.open().await;
    let before = store.stats();
    let started = std::time::Instant::now();
    store
        .append_batch(vec![log(1), log(2)], Durability::PowerLoss)
        .await
        .unwrap();
    let after_one = store.stats();
    store.append(log(3)).await.unwrap();
    let wall = u64::try_from(started.elapsed().as_nanos()).unwrap();
    let after = store.stats();
    assert_eq!((after.groups - before.groups, after.logs - before.logs), (2, 3));
    let first = after_one.commit_nanos - before.commit_nanos;
    let both = after.commit_nanos - before.commit_nanos;
    // Each group wrote and synced two files: it took time, all of it within the appends.
    assert!(first > 0 && both > first, "{before:?} {after_one:?} {after:?}");
    assert!(both <= wall, "{both} ns committing within {wall} ns of appends");
}

/// An observer of groups hears of each acknowledged group once, with its size and the
/// time it held the pair: the totals of `stats` split per group (for a histogram).
#[tokio::test]
async fn a_group_observer_hears_each_acknowledged_group_with_its_size_and_time() {
    let pair = Pair::new();
    let store = pair.open().await;
    let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = heard.clone();
    store.observe_groups(Arc::new(move |n, took| sink.lock().unwrap().push((n, took))));
    let before = store.stats();
    store
        .append_batch(vec![log(1), log(2)], Durability::PowerLoss)
        .await
        .unwrap();
    store.append(log(3)).await.unwrap();
    let after = store.stats();
    let heard = heard.lock().unwrap().clone();
    assert_eq!(
        heard.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        vec![2, 1],
        "{heard:?}"
    );
    let nanos: u128 = heard.iter().map(|(_, t)| t.as_nanos()).sum();
    assert_eq!(nanos, u128::from(after.commit_nanos - before.commit_nanos));
}

/// The guard's own append path refuses bad input as the store's commit does: nothing
/// reaches either copy, and no id is spent.
#[tokio::test]
async fn append_batch_refuses_bad_input_and_spends_no_id() {
    let pair = Pair::new();
    let store = pair.open().await;
    let first = store
        .append_batch(vec![log(1)], Durability::PowerLoss)
        .await
        .unwrap();
    for bad in [
        vec![log(2), NewLog::new("", Status::Succeeded)],
        vec![NewLog::new("job", Status::Progress)],
        vec![log(3); synclog::validate::MAX_BATCH + 1],
    ] {
        let err = store.append_batch(bad, Durability::PowerLoss).await.unwrap_err();
        assert_eq!(err.kind(), synclog::ErrorKind::InvalidInput, "{err}");
    }
    assert_eq!(
        store.primary().last_id().await.unwrap(),
        Some(first.records[0].id)
    );
    assert_eq!(store.backup().last_id().await.unwrap(), Some(first.records[0].id));
    let next = store
        .append_batch(vec![log(4)], Durability::PowerLoss)
        .await
        .unwrap();
    assert_eq!(next.records[0].id.get(), first.records[0].id.get() + 1);
}

#[tokio::test]
async fn deleted_primary_comes_back_from_the_backup() {
    let pair = Pair::new();
    let store = pair.open().await;
    let written = append_n(&store, 1..=50).await;
    store.close().await.unwrap();
    drop(store);
    remove(&pair.primary_files());

    let store = pair.open().await;
    assert_eq!(store.open_report().restored_to_primary, 50);
    assert_eq!(everything(&**store.primary()).await, written);
    assert!(store.verify(VerifyOptions::default()).await.unwrap().is_clean());
}

#[tokio::test]
async fn deleted_backup_is_rebuilt_from_the_primary() {
    let pair = Pair::new();
    let store = pair.open().await;
    let written = append_n(&store, 1..=30).await;
    store.close().await.unwrap();
    drop(store);
    remove(std::slice::from_ref(&pair.backup));

    let store = pair.open().await;
    assert_eq!(store.open_report().copied_to_backup, 30);
    assert_eq!(everything(&**store.backup()).await, written);
}

/// Rotation seals backup files but keeps their records in the store: reconcile finds
/// nothing missing, and a lost primary comes back whole from every segment.
#[tokio::test]
async fn a_rotating_backup_keeps_every_record_for_restore() {
    let pair = Pair::new();
    let open = || async {
        let primary = synclog::sqlite::SqliteStore::open(&pair.primary).unwrap();
        let options = synclog::json::JsonOptions {
            rotate_after_bytes: Some(4096),
            ..Default::default()
        };
        let backup =
            synclog::json::JsonStore::open_with(&pair.backup, options, Arc::new(synclog::json::fs::RealFs))
                .unwrap();
        Guarded::open(Arc::new(primary), Arc::new(backup), GuardedOptions::default())
            .await
            .unwrap()
    };
    let store = open().await;
    let written = append_n(&store, 1..=60).await;
    store.close().await.unwrap();
    drop(store);
    let sealed = synclog::json::store_files(&pair.backup).unwrap().len() - 1;
    assert!(sealed >= 3, "the backup rotated: {sealed} segments");

    let store = open().await;
    let report = store.open_report();
    assert_eq!(
        (
            report.in_both,
            report.copied_to_backup,
            report.restored_to_primary
        ),
        (60, 0, 0)
    );
    store.close().await.unwrap();
    drop(store);
    remove(&pair.primary_files());

    let store = open().await;
    assert_eq!(store.open_report().restored_to_primary, 60);
    assert_eq!(everything(&**store.primary()).await, written);
    assert!(store.verify(VerifyOptions::default()).await.unwrap().is_clean());
}

/// The example from DESIGN.md: the primary lost logs 198–201 because its file was replaced
/// by an older copy; at the next open exactly those come back and the max id is 201.
#[tokio::test]
async fn primary_rolled_back_to_an_older_copy_gets_exactly_198_to_201_back() {
    let pair = Pair::new();
    let store = pair.open().await;
    append_n(&store, 1..=197).await;
    store.checkpoint(synclog::CheckpointMode::Truncate).await.unwrap();
    store.close().await.unwrap();
    drop(store);
    let older = pair.primary.with_extension("older");
    std::fs::copy(&pair.primary, &older).unwrap();

    let store = pair.open().await;
    let lost = append_n(&store, 198..=201).await;
    assert_eq!(lost.first().unwrap().id.get(), 198);
    store.close().await.unwrap();
    drop(store);
    remove(&pair.primary_files());
    std::fs::copy(&older, &pair.primary).unwrap();

    let store = pair.open().await;
    let report = store.open_report();
    // Found by comparing the copies' ends, from the watermark (197) on, not every record.
    assert_eq!(report.compared_after, LogId::new(196), "{report:?}");
    let restored: Vec<u64> = report.missing_in_primary.iter().map(|i| i.get()).collect();
    assert_eq!(restored, vec![198, 199, 200, 201]);
    assert_eq!(report.restored_to_primary, 4);
    assert!(report.conflicts.is_empty());
    assert_eq!(store.primary().last_id().await.unwrap(), LogId::new(201));
    let all = everything(&**store.primary()).await;
    assert_eq!(all.len(), 201, "nothing duplicated");
    assert_eq!(all[197..], lost[..]);
    let next = store.append(log(202)).await.unwrap();
    assert_eq!(next.id.get(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_failing_every_third_commit_loses_no_acknowledged_log() {
    let pair = Pair::new();
    let sqlite = pair.sqlite().await;
    let faulty = Arc::new(FailEveryNth::new(sqlite.clone(), 3));
    let store = Arc::new(pair.guard(faulty.clone()).await.0);

    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let s = store.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for n in 0..25 {
                    acked.push(s.append(log(t * 100 + n)).await.unwrap());
                }
                acked
            })
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert!(faulty.failures() > 0, "the fault was injected");
    let stats = store.stats();
    assert!(stats.primary_failures > 0, "{stats:?}");
    let report = store.reconcile(true).await.unwrap();
    assert!(report.conflicts.is_empty(), "{report:?}");
    for rec in &acked {
        assert_eq!(
            sqlite.get(rec.id).await.unwrap().as_ref(),
            Some(rec),
            "primary has {}",
            rec.id
        );
        assert_eq!(
            store.backup().get(rec.id).await.unwrap().as_ref(),
            Some(rec),
            "backup has {}",
            rec.id
        );
    }
    let verify = store.verify(VerifyOptions::default()).await.unwrap();
    assert!(verify.is_clean(), "{verify:?}");
    assert_eq!(verify.checked, 400);
}

#[tokio::test]
async fn a_failed_primary_commit_is_restored_at_once_with_a_fresh_attempt() {
    let pair = Pair::new();
    let sqlite = pair.sqlite().await;
    // Call 1 succeeds, call 2 (the second append) fails, call 3 (the immediate restore) succeeds.
    let faulty = Arc::new(FailEveryNth::new(sqlite.clone(), 2));
    let (store, _backup) = pair.guard(faulty.clone()).await;
    store.append(log(1)).await.unwrap();
    let receipt = store
        .append_batch(vec![log(2)], Durability::PowerLoss)
        .await
        .unwrap();
    assert_eq!(faulty.failures(), 1);
    assert!(
        receipt.durable_in.primary && receipt.durable_in.backup,
        "{receipt:?}"
    );
    assert_eq!(store.stats().restored_to_primary, 1);
    assert_eq!(
        sqlite.get(receipt.records[0].id).await.unwrap().as_ref(),
        Some(&receipt.records[0])
    );
}

#[tokio::test]
async fn a_primary_that_keeps_failing_leaves_logs_in_the_backup_until_reconcile() {
    let pair = Pair::new();
    let sqlite = pair.sqlite().await;
    let broken = Arc::new(FailEveryNth::new(sqlite.clone(), 1));
    let (store, backup) = pair.guard(broken).await;
    let receipt = store
        .append_batch(vec![log(1), log(2)], Durability::PowerLoss)
        .await
        .unwrap();
    assert!(!receipt.durable_in.primary && receipt.durable_in.backup && receipt.verified);
    assert_eq!(store.stats().pending_primary, 2);
    // Reads still see the records, through the backup.
    assert_eq!(
        store.get_required(receipt.records[0].id).await.unwrap(),
        receipt.records[0]
    );
    assert_eq!(everything(&store).await, receipt.records);
    // So do counts, in all and by status, though the primary holds none of them.
    assert_eq!(store.count(&Filter::default()).await.unwrap(), 2);
    assert_eq!(
        store
            .count_by_status(&Filter::default())
            .await
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        [(Status::Succeeded, 2)]
    );
    store.close().await.unwrap();
    drop(store);
    backup.close().await.unwrap();
    drop(backup);
    drop(sqlite);

    // With a healthy primary, the next open restores them.
    let store = pair.open().await;
    assert_eq!(store.open_report().restored_to_primary, 2);
    assert_eq!(everything(&**store.primary()).await, receipt.records);
}

#[tokio::test]
async fn verify_reports_a_record_missing_from_one_copy() {
    let pair = Pair::new();
    let store = pair.open().await;
    append_n(&store, 1..=5).await;
    let conn = rusqlite::Connection::open(&pair.primary).unwrap();
    conn.execute("DELETE FROM logs WHERE id = 5", []).unwrap();
    let report = store.verify(VerifyOptions::default()).await.unwrap();
    assert!(!report.is_clean());
    assert!(
        report
            .engine_problems
            .iter()
            .any(|p| p.contains("primary lacks 1")),
        "{report:?}"
    );
    let fixed = store.reconcile(true).await.unwrap();
    assert_eq!(fixed.restored_to_primary, 1);
    assert!(store.verify(VerifyOptions::default()).await.unwrap().is_clean());
}

/// sled drops damaged log data silently on open (see synclog-sled's tests); guarded by a
/// JSON backup, every record comes back.
#[tokio::test]
async fn a_sled_primary_that_silently_lost_its_data_is_restored_from_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let primary = format!("sled://{}/db", dir.path().display());
    let backup = format!("json://{}/backup.jsonl", dir.path().display());
    let store = synclog::open_guarded(&primary, &backup, GuardedOptions::default())
        .await
        .unwrap();
    let written = store
        .commit((1..=200).map(log).collect(), Durability::PowerLoss)
        .await
        .unwrap();
    store.close().await.unwrap();
    drop(store);
    for entry in std::fs::read_dir(dir.path().join("db")).unwrap().flatten() {
        let p = entry.path();
        if !p.is_file() {
            continue;
        }
        let mut bytes = std::fs::read(&p).unwrap();
        let n = bytes.len();
        for b in bytes.iter_mut().skip((n / 4).max(4096)).take(n / 2) {
            *b = 0xA5;
        }
        std::fs::write(&p, bytes).unwrap();
    }
    let store = synclog::open_guarded(&primary, &backup, GuardedOptions::default())
        .await
        .unwrap();
    assert!(
        store.open_report().restored_to_primary > 0,
        "{:?}",
        store.open_report()
    );
    assert_eq!(everything(&**store.primary()).await, written);
}

/// A guarded pair gives only the durability both copies give, and refuses the rest
/// instead of silently writing less.
#[tokio::test]
async fn a_level_one_copy_cannot_give_is_refused_and_nothing_is_written() {
    let pair = Pair::new();
    let sqlite = pair.sqlite().await;
    let memory = synclog::open_url("memory://guarded-refusal").await.unwrap();
    let store = Guarded::open(sqlite.clone(), memory, GuardedOptions::default())
        .await
        .unwrap();
    assert_eq!(store.capabilities().durability, vec![Durability::Buffered]);
    let err = store
        .commit(vec![log(1)], Durability::PowerLoss)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), synclog::ErrorKind::Unsupported);
    // The guard's own append path (the server's and the CLI's) refuses it the same way.
    let err = store
        .append_batch(vec![log(1)], Durability::PowerLoss)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), synclog::ErrorKind::Unsupported, "{err}");
    assert_eq!(sqlite.last_id().await.unwrap(), None);
    let rec = store.append_with(log(2), Durability::Buffered).await.unwrap();
    assert_eq!(rec.id.get(), 1);
}

/// The read-back is what acknowledges: a primary that takes the write but reads it back
/// damaged is not counted as holding it; the backup's intact read-back carries the receipt.
#[tokio::test]
async fn a_primary_that_reads_back_damaged_is_not_counted_in_the_receipt() {
    let pair = Pair::new();
    let sqlite = pair.sqlite().await;
    let lying = Arc::new(DamagedReads::new(sqlite));
    let (store, backup) = pair.guard(lying).await;
    let receipt = store
        .append_batch(vec![log(1), log(2)], Durability::PowerLoss)
        .await
        .unwrap();
    assert!(receipt.verified);
    assert!(!receipt.durable_in.primary, "{receipt:?}");
    assert!(receipt.durable_in.backup);
    assert_eq!(store.stats().primary_failures, 1);
    assert_eq!(everything(&*backup).await, receipt.records);
}

/// With both copies reading back damaged, nothing is acknowledged.
#[tokio::test]
async fn nothing_is_acknowledged_when_no_copy_reads_back_intact() {
    let pair = Pair::new();
    let sqlite = pair.sqlite().await;
    let json = pair.json().await;
    let store = Guarded::open(
        Arc::new(DamagedReads::new(sqlite)),
        Arc::new(DamagedReads::new(json)),
        GuardedOptions::default(),
    )
    .await
    .unwrap();
    let err = store
        .append_batch(vec![log(1)], Durability::PowerLoss)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), synclog::ErrorKind::Corrupt);
}

/// A key stored only in the backup (a group the primary missed, in this process or
/// another) is a repeat through the guard, not a second record: the guard looks keys up
/// in both copies.
#[tokio::test]
async fn a_key_only_the_backup_holds_is_a_repeat_through_the_guard() {
    let pair = Pair::new();
    let keyed = log(1).idempotency_key("only-in-backup");
    let backup = pair.json().await;
    let first = backup.append(keyed.clone()).await.unwrap();
    backup.close().await.unwrap();
    drop(backup);
    let store = Guarded::open(
        pair.sqlite().await,
        pair.json().await,
        GuardedOptions {
            reconcile_at_open: false,
            ..GuardedOptions::default()
        },
    )
    .await
    .unwrap();
    let again = store.append_report(keyed, Durability::PowerLoss).await.unwrap();
    assert!(again.repeat, "the key is stored in the backup");
    assert_eq!(again.record, first);
    assert_eq!(
        store.primary().last_id().await.unwrap(),
        None,
        "nothing was written"
    );
    store.close().await.unwrap();
}

/// A group of repeats only writes nothing, but syncs both copies to its durability before
/// it answers (the record it repeats may have been written at a weaker level).
#[tokio::test(flavor = "multi_thread")]
async fn a_group_of_repeats_syncs_both_copies_before_it_answers() {
    let pair = Pair::new();
    let store = pair.open().await;
    let keyed = log(1).idempotency_key("k");
    let first = store
        .append_batch(vec![keyed.clone()], Durability::Process)
        .await
        .unwrap();
    let syncs = || -> i64 {
        let conn = rusqlite::Connection::open(&pair.primary).unwrap();
        conn.query_row("SELECT value FROM meta WHERE key = 'syncs'", [], |r| r.get(0))
            .unwrap()
    };
    let before = syncs();
    let again = store
        .append_batch(vec![keyed], Durability::PowerLoss)
        .await
        .unwrap();
    assert_eq!(
        (again.repeats.clone(), again.records.clone()),
        (vec![true], first.records)
    );
    assert!(
        again.durable_in.primary && again.durable_in.backup,
        "{:?}",
        again.durable_in
    );
    assert_eq!(syncs(), before + 1, "the primary was synced for the repeat");
    store.close().await.unwrap();
}

/// A copy whose writes failed catches up by itself once it can take them again: the guard
/// retries what it queued for it `retry_pending_after` after its last attempt, with no
/// other append to carry it, and counts what it copied.
#[tokio::test]
async fn a_copy_whose_disk_came_back_catches_up_without_another_append() {
    use std::time::{Duration, Instant};
    let pair = Pair::new();
    let (store, backup) = pair.guard_unplugged_backup(Duration::from_millis(50)).await;
    store.append(log(1)).await.unwrap();
    backup.set_down(true);
    let receipt = store
        .append_batch(vec![log(2)], Durability::PowerLoss)
        .await
        .unwrap();
    assert!(
        receipt.durable_in.primary && !receipt.durable_in.backup,
        "{receipt:?}"
    );
    assert_eq!(store.stats().pending_backup, 1);
    backup.set_down(false);
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.stats().pending_backup > 0 {
        assert!(Instant::now() < deadline, "the backup never caught up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(store.stats().copied_to_backup, 1);
    assert_eq!(
        everything(&**backup.inner()).await,
        everything(&store).await,
        "the backup holds both records, as the pair does"
    );
    assert_eq!(everything(&store).await.len(), 2);
}

/// The idle retries stop when the guard is closed: it has closed its copies and must not
/// take the pair's lock or write to them any more.
#[tokio::test]
async fn a_closed_guard_retries_nothing() {
    use std::time::{Duration, Instant};
    let pair = Pair::new();
    let (store, backup) = pair.guard_unplugged_backup(Duration::from_millis(20)).await;
    backup.set_down(true);
    store.append(log(1)).await.unwrap();
    assert_eq!(store.stats().pending_backup, 1);
    // While open, the guard keeps trying the copy that is down.
    let deadline = Instant::now() + Duration::from_secs(20);
    while backup.refused() < 4 {
        assert!(Instant::now() < deadline, "no retries while open");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store.close().await.unwrap();
    let at_close = backup.refused();
    // Fifteen retry intervals: a guard that went on retrying would be refused again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        backup.refused() <= at_close + 1,
        "{} refused writes after the close ({} at it)",
        backup.refused(),
        at_close
    );
}

/// A follower that read the pair while the backup was down stopped where both copies
/// agree (a group one copy lacks is not readable yet). When the idle retry brings the
/// backup up to date, the follower is woken and hands out what became readable, whether
/// it follows every job or only the job of those records, with no other commit to wake it.
#[tokio::test]
async fn followers_get_what_a_caught_up_copy_made_readable_without_another_commit() {
    use std::time::Duration;
    use synclog::follow::Follower;
    let pair = Pair::new();
    let (store, backup) = pair.guard_unplugged_backup(Duration::from_millis(50)).await;
    let store = Arc::new(store);
    backup.set_down(true);
    let first = store.append(log(1)).await.unwrap();
    assert_eq!(store.stats().pending_backup, 1);
    let mut everyone = Follower::new(store.clone(), Filter::default(), None).unwrap();
    let mut of_its_job = Follower::new(store.clone(), Filter::job(first.job.clone()), None).unwrap();
    assert!(
        everyone.try_next_batch().await.unwrap().is_empty(),
        "readable before the backup holds it"
    );
    assert!(of_its_job.try_next_batch().await.unwrap().is_empty());
    backup.set_down(false);
    // Both wait at once (`next` waits for a wake-up, an hour at most): without one
    // neither returns.
    let (a, b) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(everyone.next(), of_its_job.next())
    })
    .await
    .expect("a follower was not woken when the backup caught up");
    for got in [a.unwrap(), b.unwrap()] {
        assert_eq!((got.id, got.checksum), (first.id, first.checksum));
    }
    assert_eq!(store.stats().pending_backup, 0);
}

/// A retry interval of zero would retry a copy that stays down in a loop, holding the
/// pair's lock: the open refuses it, naming the option.
#[tokio::test]
async fn a_retry_interval_under_a_millisecond_is_refused_at_open() {
    let pair = Pair::new();
    for retry in [std::time::Duration::ZERO, std::time::Duration::from_micros(999)] {
        let options = GuardedOptions {
            retry_pending_after: Some(retry),
            ..GuardedOptions::default()
        };
        let err = Guarded::open(pair.sqlite().await, pair.json().await, options)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), synclog::ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains("retry_pending_after"), "{err}");
    }
}
