//! Pruning in the SQLite engine, beyond the conformance cases: a version 3 store is
//! upgraded to version 4 and prunes like a new one (read as it is by a read-only handle
//! before); a new database gives the pruned space back to the file system; the per-job
//! totals, the attribute index and the runs equal what the remaining records give after
//! prunes of every shape, cut into many transactions; a damaged marker is reported.
//!
//! A throwaway measurement of the delete rate runs when `SYNCLOG_PRUNE_BENCH` is set:
//! `SYNCLOG_PRUNE_BENCH=200000 cargo test --release -p synclog-sqlite --test prune -- --nocapture bench`

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rusqlite::Connection;
use synclog_core::query::{summary_by_scanning, AttrEq, Filter};
use synclog_core::retention::{self, PairDigest, Policy, PruneMarker, PruneOptions};
use synclog_core::run::runs_by_scanning;
use synclog_core::{
    Durability, ErrorKind, IdRange, LogId, LogRecord, LogStore, LogStoreExt, NewLog, RunScan, Status,
    VerifyOptions,
};
use synclog_sqlite::{SqliteOptions, SqliteStore, SCHEMA_VERSION, UPGRADE_TO_3};

mod common;

fn id(n: u64) -> LogId {
    LogId::new(n).unwrap()
}

fn pragma(db: &Path, name: &str) -> i64 {
    let conn = Connection::open(db).unwrap();
    conn.pragma_query_value(None, name, |r| r.get(0)).unwrap()
}

/// Turns a version 4 database back into what the previous release made: no marker table,
/// no attribute index by id, the job totals' delete trigger of version 3, and
/// `auto_vacuum = NONE`.
fn downgrade_to_3(db: &Path) {
    let start = UPGRADE_TO_3.find("CREATE TRIGGER logs_out_of_job_stats").unwrap();
    let end = start + UPGRADE_TO_3[start..].find("END;").unwrap() + "END;".len();
    let trigger = &UPGRADE_TO_3[start..end];
    let conn = Connection::open(db).unwrap();
    conn.execute_batch(&format!(
        "DROP TABLE prune_markers; DROP INDEX log_attrs_by_id; DROP TRIGGER logs_out_of_job_stats;
         {trigger}
         PRAGMA user_version = 3; PRAGMA auto_vacuum = NONE; VACUUM;"
    ))
    .unwrap();
}

/// The marker of a prune of `gone` (in id order), as a prune would make it.
fn marker_of(gone: &[&LogRecord]) -> PruneMarker {
    let mut digest = PairDigest::default();
    gone.iter().for_each(|r| digest.add(r.id, r.checksum));
    let last = gone.last().unwrap().id;
    PruneMarker::new(
        Utc::now(),
        Policy::default().before_id(last.next().unwrap()),
        retention::ranges_of(gone.iter().map(|r| r.id)),
        digest.finish(),
        None,
    )
}

async fn everything(store: &dyn LogStore) -> Vec<LogRecord> {
    let mut all = Vec::new();
    store
        .for_each_page(1000, &mut |page| {
            all.extend(page);
            Ok(())
        })
        .await
        .unwrap();
    all
}

type Totals = Vec<(String, String, Vec<i64>)>;

/// `job_stats` as stored, and as the remaining rows give it.
fn job_stats(db: &Path) -> (Totals, Totals) {
    let conn = Connection::open(db).unwrap();
    let read = |sql: &str| -> Totals {
        let mut stmt = conn.prepare(sql).unwrap();
        let rows = stmt
            .query_map([], |r| {
                let values = (2..12).map(|i| r.get(i)).collect::<rusqlite::Result<_>>()?;
                Ok((r.get(0)?, r.get(1)?, values))
            })
            .unwrap();
        let mut out: Totals = rows.collect::<rusqlite::Result<_>>().unwrap();
        out.sort();
        out
    };
    (
        read(
            "SELECT job, status, n, seen_hi, seen_lo, written_hi, written_lo, failed_hi, failed_lo, \
             min_started, max_recorded, max_id FROM job_stats",
        ),
        read(
            "SELECT job, status, count(*), sum(items_seen >> 32), sum(items_seen & 4294967295), \
             sum(items_written >> 32), sum(items_written & 4294967295), \
             sum(items_failed >> 32), sum(items_failed & 4294967295), \
             min(started_at), max(recorded_at), max(id) FROM logs GROUP BY job, status",
        ),
    )
}

/// The store's totals, attribute counts and runs are those of its remaining records.
async fn answers_from_what_remains(store: &SqliteStore, db: &Path, step: &str) {
    let (stored, computed) = job_stats(db);
    assert_eq!(stored, computed, "--- {step}: job_stats");
    assert_eq!(
        store.summary(&Filter::default()).await.unwrap(),
        summary_by_scanning(store, &Filter::default()).await.unwrap(),
        "--- {step}: summary"
    );
    let all = everything(store).await;
    for cond in ["env=prod", "env=dev", "n=1", "n=2.5", "tag={\"a\":[1,0]}"] {
        let f = Filter::default().attr(AttrEq::parse(cond).unwrap());
        let want = all.iter().filter(|r| f.matches(r)).count() as u64;
        assert_eq!(store.count(&f).await.unwrap(), want, "--- {step}: count {cond}");
    }
    let scan = RunScan {
        limit: 10_000,
        ..RunScan::default()
    };
    assert_eq!(
        store.runs(&scan).await.unwrap(),
        runs_by_scanning(store, &scan).await.unwrap(),
        "--- {step}: runs"
    );
}

/// A store of the previous release (schema version 3) is read as it is by a read-only
/// handle (no markers), and upgraded by a writer's open: it then prunes, keeps its markers
/// across a reopen, skips pruned records on import, and its job totals stay right, for
/// prunes and for deletes behind its back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_3_store_is_upgraded_and_prunes_like_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("q.db");
    let all = common::records(&mut common::Rng::new(3), 600);
    let store = common::store_with(dir.path(), &all).await;
    store.close().await.unwrap();
    downgrade_to_3(&db);
    assert_eq!((pragma(&db, "user_version"), pragma(&db, "auto_vacuum")), (3, 0));

    // --- step: read as it is
    let ro = SqliteStore::open_read_only(&db, Duration::from_secs(5)).unwrap();
    assert!(ro.prune_markers().await.unwrap().is_empty());
    let report = ro.verify(VerifyOptions::default()).await.unwrap();
    assert!(report.is_clean() && report.prunes.is_empty(), "{report:?}");
    ro.close().await.unwrap();
    assert_eq!(
        pragma(&db, "user_version"),
        3,
        "a read-only open upgrades nothing"
    );

    // --- step: upgraded by a writer, then pruned
    let store = SqliteStore::open(&db).unwrap();
    assert_eq!(pragma(&db, "user_version"), SCHEMA_VERSION);
    assert!(store.prune_markers().await.unwrap().is_empty());
    let options = PruneOptions::default();
    let report = retention::prune(&store, &Policy::default().before_id(id(301)), &options)
        .await
        .unwrap();
    let marker = report.marker.unwrap();
    assert_eq!((marker.count, report.deleted), (300, 300));
    assert_eq!(store.prune_markers().await.unwrap(), vec![marker.clone()]);
    answers_from_what_remains(&store, &db, "pruned after the upgrade").await;
    let again = store.import(all.clone(), Durability::PowerLoss).await.unwrap();
    assert_eq!((again.pruned, again.inserted), (300, 0));
    // The version 4 trigger still keeps the totals for a delete behind the store's back.
    Connection::open(&db)
        .unwrap()
        .execute("DELETE FROM logs WHERE id = 450", [])
        .unwrap();
    let (stored, computed) = job_stats(&db);
    assert_eq!(stored, computed, "--- deleted behind its back: job_stats");
    assert_eq!(
        pragma(&db, "auto_vacuum"),
        0,
        "an existing database keeps its mode"
    );
    store.close().await.unwrap();

    // --- step: the marker survives, for a read-only handle too
    let ro = SqliteStore::open_read_only(&db, Duration::from_secs(5)).unwrap();
    assert_eq!(ro.prune_markers().await.unwrap(), vec![marker]);
    let report = ro.verify(VerifyOptions::default()).await.unwrap();
    assert_eq!(report.missing, vec![IdRange::single(id(450))], "{report:?}");
    assert_eq!(report.prunes.len(), 1);
    ro.close().await.unwrap();
}

/// A database created by this version gives what a prune freed back to the file system:
/// after pruning most of its records it takes much less space than before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn space_comes_back_after_a_prune_on_a_new_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let store = SqliteStore::open(&db).unwrap();
    assert_eq!(
        pragma(&db, "auto_vacuum"),
        2,
        "new databases vacuum incrementally"
    );
    let filler = "x".repeat(300);
    for b in 0..20 {
        let batch = (0..1000)
            .map(|i| {
                NewLog::new(["a", "b"][i % 2], Status::Succeeded)
                    .message(format!("{b} {i} {filler}"))
                    .attr("env", "prod")
            })
            .collect();
        store.commit(batch, Durability::Process).await.unwrap();
    }
    let cp = store
        .checkpoint(synclog_core::CheckpointMode::Truncate)
        .await
        .unwrap();
    assert!(!cp.busy);
    let before = store.storage_bytes().await.unwrap().unwrap();
    let report = retention::prune(
        &store,
        &Policy::default().before_id(id(19_001)),
        &PruneOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.deleted, 19_000);
    let after = store.storage_bytes().await.unwrap().unwrap();
    assert_eq!(
        (report.bytes_before, report.bytes_after),
        (Some(before), Some(after))
    );
    assert!(
        after * 5 < before,
        "{before} bytes before the prune, {after} after"
    );
    assert_eq!(pragma(&db, "freelist_count"), 0);
    assert_eq!(store.count(&Filter::default()).await.unwrap(), 1000);
    let report = store.verify(VerifyOptions { deep: true }).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    store.close().await.unwrap();
}

/// After prunes of every shape (policies, scattered ids, the newest records of a group,
/// whole runs), each cut into many transactions, the per-job totals, attribute counts and
/// runs equal what the remaining records give.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_totals_equal_a_scan_after_prunes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("q.db");
    let mut rng = common::Rng::new(7);
    let all = common::records(&mut rng, 1500);
    let store = SqliteStore::open_with(
        &db,
        SqliteOptions {
            prune_chunk_ids: 37,
            ..SqliteOptions::default()
        },
    )
    .unwrap();
    for chunk in all.chunks(500) {
        store.import(chunk.to_vec(), Durability::Buffered).await.unwrap();
    }
    answers_from_what_remains(&store, &db, "before").await;
    let options = PruneOptions::default();
    retention::prune(&store, &Policy::default().keep_last(250), &options)
        .await
        .unwrap();
    answers_from_what_remains(&store, &db, "keep the newest 250 per job").await;
    for round in 0..6 {
        // A third of what is left, at random: scattered ids, some groups' newest and
        // earliest records among them.
        let left = everything(&store).await;
        let gone: Vec<&LogRecord> = left.iter().filter(|_| rng.chance(33)).collect();
        let applied = store
            .apply_prune(&marker_of(&gone), Durability::Buffered)
            .await
            .unwrap();
        assert_eq!(applied.deleted, gone.len() as u64);
        answers_from_what_remains(&store, &db, &format!("scattered round {round}")).await;
    }
    // Every record of one job's newest status group.
    let left = everything(&store).await;
    let newest = left.last().unwrap().clone();
    let gone: Vec<&LogRecord> = left
        .iter()
        .filter(|r| r.job == newest.job && r.status == newest.status)
        .collect();
    store
        .apply_prune(&marker_of(&gone), Durability::Buffered)
        .await
        .unwrap();
    answers_from_what_remains(&store, &db, "a whole group").await;
    let ids: BTreeSet<u64> = everything(&store).await.iter().map(|r| r.id.get()).collect();
    assert!(!ids.contains(&newest.id.get()));
    let report = store.verify(VerifyOptions::default()).await.unwrap();
    assert!(report.is_clean() && report.pruned_present == 0, "{report:?}");
    assert_eq!(report.prunes.len(), 8);
    store.close().await.unwrap();
}

/// Groups too rare to be met in the first rows of the time index (their earliest records
/// pruned, the next ones far down it) get their extremes from their job's or status's
/// index, several groups of one job or status in one pass: the totals still equal what
/// the remaining records give.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rare_groups_keep_exact_totals_when_their_earliest_records_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("q.db");
    let store = SqliteStore::open(&db).unwrap();
    let rare = [
        ("b", Status::Failed),
        ("b", Status::Partial),
        ("c", Status::Failed),
        ("d", Status::Skipped),
    ];
    let mut all = Vec::new();
    for n in 1..=25_000u64 {
        // Started in id order: the time index runs like the ids.
        let started = common::base() + chrono::Duration::seconds(n as i64);
        // The rare groups: among the oldest 6,000 and past 17,000 only.
        let (job, status) = match n % 500 == 0 && !(6_000..17_000).contains(&n) {
            true => rare[(n / 500 % 4) as usize],
            false => ("a", Status::Succeeded),
        };
        let log = NewLog::new(job, status).started(started).counts(n, 1, 0);
        all.push(LogRecord::seal(id(n), started, log).unwrap());
    }
    for chunk in all.chunks(5000) {
        store.import(chunk.to_vec(), Durability::Buffered).await.unwrap();
    }
    // The oldest 6,000 go: every group loses its earliest records, and the rare groups'
    // next ones lie past the first 10,000 remaining rows of the time index.
    let gone: Vec<&LogRecord> = all.iter().take(6_000).collect();
    store
        .apply_prune(&marker_of(&gone), Durability::Buffered)
        .await
        .unwrap();
    answers_from_what_remains(&store, &db, "the oldest 6,000").await;
    // Then everything but the newest 2,000: the rare groups' extremes are far down.
    let gone: Vec<&LogRecord> = all.iter().skip(6_000).take(17_000).collect();
    store
        .apply_prune(&marker_of(&gone), Durability::Buffered)
        .await
        .unwrap();
    answers_from_what_remains(&store, &db, "all but the newest 2,000").await;
    store.close().await.unwrap();
}

/// A prune cut off after its first transaction (the marker stored, records it covers
/// still there: made here by storing a marker by hand) is finished by the next writer's
/// open: the covered records, their attribute entries and their share of the job totals go.
#[tokio::test(flavor = "multi_thread")]
async fn a_prune_cut_off_between_transactions_is_finished_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let store = SqliteStore::open(&db).unwrap();
    let recs = store
        .commit(
            (0..10)
                .map(|i| NewLog::new(["a", "b"][i % 2], Status::Succeeded).attr("n", i as i64))
                .collect(),
            Durability::PowerLoss,
        )
        .await
        .unwrap();
    store.close().await.unwrap();
    let gone: Vec<&LogRecord> = recs[..6].iter().collect();
    let marker = marker_of(&gone);
    let conn = Connection::open(&db).unwrap();
    conn.execute(
        "INSERT INTO prune_markers (digest, body) VALUES (?1, ?2)",
        (&marker.digest, marker.encode()),
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&db).unwrap();
    assert_eq!(
        everything(&store)
            .await
            .iter()
            .map(|r| r.id.get())
            .collect::<Vec<_>>(),
        (7..=10).collect::<Vec<_>>()
    );
    let report = store.verify(VerifyOptions::default()).await.unwrap();
    assert!(report.is_clean() && report.pruned_present == 0, "{report:?}");
    answers_from_what_remains(&store, &db, "after the open finished the prune").await;
    let again = store.apply_prune(&marker, Durability::PowerLoss).await.unwrap();
    assert!(again.already_marked && again.deleted == 0, "{again:?}");
    store.close().await.unwrap();
}

/// A marker damaged behind the store's back: `prune_markers` says so, `verify` reports it
/// corrupt and the ids it covered missing, and imports stop rather than bring its records
/// back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_marker_is_reported_and_stops_imports() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.db");
    let store = SqliteStore::open(&db).unwrap();
    let recs = store
        .commit(
            (0..6).map(|_| NewLog::new("j", Status::Succeeded)).collect(),
            Durability::PowerLoss,
        )
        .await
        .unwrap();
    let gone: Vec<&LogRecord> = recs[..3].iter().collect();
    store
        .apply_prune(&marker_of(&gone), Durability::PowerLoss)
        .await
        .unwrap();
    Connection::open(&db)
        .unwrap()
        .execute(
            "UPDATE prune_markers SET body = replace(body, '\"count\":3', '\"count\":4')",
            [],
        )
        .unwrap();
    assert_eq!(
        store.prune_markers().await.unwrap_err().kind(),
        ErrorKind::Corrupt
    );
    let report = store.verify(VerifyOptions::default()).await.unwrap();
    assert_eq!(report.corrupt.len(), 1, "{report:?}");
    assert!(report.prunes.is_empty());
    let err = store
        .import(recs.clone(), Durability::PowerLoss)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert_eq!(store.count(&Filter::default()).await.unwrap(), 3);
    store.close().await.unwrap();
}

/// Measures a prune of half of `SYNCLOG_PRUNE_BENCH` records: the plan, the deletion, the
/// space given back, and the whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_prune_half() {
    let Some(n) = std::env::var("SYNCLOG_PRUNE_BENCH")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    for vacuum in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("b.db");
        if !vacuum {
            // A database of an earlier release: auto_vacuum NONE.
            let conn = Connection::open(&db).unwrap();
            conn.execute_batch("PRAGMA auto_vacuum = NONE; CREATE TABLE t(x); DROP TABLE t;")
                .unwrap();
            drop(conn);
        }
        let store = Arc::new(SqliteStore::open(&db).unwrap());
        let t = Instant::now();
        let mut rng = common::Rng::new(5);
        let mut next = 0u64;
        while next < n {
            let page: Vec<LogRecord> = (0..10_000.min(n - next))
                .map(|i| {
                    let at = common::base() + chrono::Duration::seconds((next + i) as i64);
                    let mut log = NewLog::new(*rng.pick(&common::JOBS), Status::Succeeded)
                        .started(at - chrono::Duration::seconds(30))
                        .counts(rng.below(100), rng.below(50), 0)
                        .message("synced the orders of the day");
                    if rng.chance(70) {
                        log = log.attr("env", "prod");
                    }
                    LogRecord::seal(id(next + i + 1), at, log).unwrap()
                })
                .collect();
            next += page.len() as u64;
            store.import(page, Durability::Process).await.unwrap();
        }
        store
            .checkpoint(synclog_core::CheckpointMode::Truncate)
            .await
            .unwrap();
        let bytes = store.storage_bytes().await.unwrap().unwrap();
        eprintln!(
            "auto_vacuum {}: {n} records in {:?}, {} MB",
            pragma(&db, "auto_vacuum"),
            t.elapsed(),
            bytes >> 20
        );
        if let Ok(keep) = std::env::var("KEEP_DB") {
            std::fs::copy(&db, format!("{keep}-{vacuum}.db")).unwrap();
        }
        let policy = Policy::default().before_id(id(n / 2 + 1));
        let t = Instant::now();
        let plan = retention::plan_prune(&*store, &policy, Utc::now()).await.unwrap();
        let planned = t.elapsed();
        let marker = plan.marker(None);
        let t = Instant::now();
        let applied = store.apply_prune(&marker, Durability::PowerLoss).await.unwrap();
        let apply = t.elapsed();
        let after = store.storage_bytes().await.unwrap().unwrap();
        let total = planned + apply;
        eprintln!(
            "pruned {} in {total:?} ({:.0} logs/s end to end): plan {planned:?}, apply {apply:?} \
             ({:.0} logs/s incl. space); {} MB -> {} MB",
            applied.deleted,
            applied.deleted as f64 / total.as_secs_f64(),
            applied.deleted as f64 / apply.as_secs_f64(),
            bytes >> 20,
            after >> 20
        );
        let (stored, computed) = job_stats(&db);
        assert_eq!(stored, computed);
        store.close().await.unwrap();
    }
}
