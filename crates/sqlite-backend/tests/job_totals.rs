//! The per-job totals (`job_stats`, kept by triggers) that answer a summary of everything
//! stay equal to the records through damage to a row's job, status or counters, its
//! repair, and rows deleted behind the store's back.

use synclog_core::query::{summary_by_scanning, Filter};
use synclog_core::{Durability, LogStore, LogStoreExt, NewLog, Status};
use synclog_sqlite::SqliteStore;

#[tokio::test]
async fn job_totals_follow_damage_repair_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let store = SqliteStore::open(&db).unwrap();
    let mut recs = Vec::new();
    for i in 0..30u64 {
        let status = [Status::Succeeded, Status::Failed, Status::Skipped][i as usize % 3];
        let log = NewLog::new(format!("job-{}", i % 4), status).counts(i, i / 2, 1);
        recs.push(store.append(log).await.unwrap());
    }
    let everything = Filter::default();
    let same = |step: &'static str| {
        let store = store.clone();
        async move {
            let got = store.summary(&Filter::default()).await.unwrap();
            let want = summary_by_scanning(&store, &Filter::default()).await.unwrap();
            assert_eq!(got, want, "--- {step}");
        }
    };
    same("written").await;

    // --- step: damage (moves a row to another job and status, changes its counters)
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "UPDATE logs SET job = 'job-9', status = 'partial', items_seen = 1000 WHERE id = 30;
             UPDATE logs SET started_at = 0, recorded_at = 1 WHERE id = 7;",
        )
        .unwrap();
    }
    same("damaged").await;

    // --- step: repair puts the records back
    let report = store.repair(recs.clone(), Durability::PowerLoss).await.unwrap();
    assert_eq!(report.replaced, 2);
    same("repaired").await;
    assert!(store.summary(&everything).await.unwrap().job("job-9").is_none());

    // --- step: rows deleted behind the store's back, the newest of a job among them
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("DELETE FROM logs WHERE id IN (29, 30, 4)")
            .unwrap();
    }
    same("deleted").await;
}

/// The counts by status of a `recorded` range (one count per status) are taken from one
/// snapshot: while a writer commits one `started` and one `skipped` log per transaction,
/// every answer holds as many of each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_by_status_of_a_recorded_range_come_from_one_snapshot() {
    use std::sync::Arc;
    use synclog_core::query::TimeRange;
    use synclog_core::Durability;

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("s.db")).unwrap());
    let filter =
        Filter::default().recorded(TimeRange::since(chrono::Utc::now() - chrono::Duration::hours(1)));
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..1500 {
                let pair = vec![
                    NewLog::new("j", Status::Started),
                    NewLog::new("j", Status::Skipped),
                ];
                store.commit(pair, Durability::Buffered).await.unwrap();
            }
        })
    };
    let (mut asked, mut uneven) = (0, Vec::new());
    while !writer.is_finished() {
        let counts = store.count_by_status(&filter).await.unwrap();
        asked += 1;
        let (s, a) = (counts.get(&Status::Started), counts.get(&Status::Skipped));
        if s != a {
            uneven.push((s.copied(), a.copied()));
        }
    }
    writer.await.unwrap();
    assert!(asked > 10, "the counts ran beside the writer ({asked} times)");
    assert!(
        uneven.is_empty(),
        "{} of {asked} answers mixed two snapshots: {:?}",
        uneven.len(),
        &uneven[..uneven.len().min(5)]
    );
    let last = store.count_by_status(&filter).await.unwrap();
    assert_eq!(last.values().sum::<u64>(), 3000);
}
