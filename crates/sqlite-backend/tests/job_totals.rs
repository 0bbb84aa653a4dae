//! The per-job totals (`job_stats`, kept by triggers) that answer a summary of everything
//! stay equal to the records through damage to a row's job, status or counters, its
//! repair, and rows deleted behind the store's back.

use std::future::Future;
use std::sync::Arc;

use synclog_core::query::{summary_by_scanning, Filter, TimeRange};
use synclog_core::retention::{self, Policy, PruneOptions};
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

/// Asks `ask` again and again until `task` finishes, then asserts that it was asked more
/// than ten times and never answered a problem (`what` names the answers).
async fn ask_beside<F, Fut>(task: tokio::task::JoinHandle<()>, what: &str, mut ask: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<String>>,
{
    let (mut asked, mut problems) = (0, Vec::new());
    while !task.is_finished() {
        asked += 1;
        problems.extend(ask().await);
    }
    task.await.unwrap();
    assert!(asked > 10, "the {what} ran beside the task ({asked} times)");
    assert!(
        problems.is_empty(),
        "{} of {asked} {what} went wrong: {:?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );
}

/// The counts by status of a `recorded` range (one count per status) are taken from one
/// snapshot: while a writer commits one `started` and one `skipped` log per transaction,
/// every answer holds as many of each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_by_status_of_a_recorded_range_come_from_one_snapshot() {
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
    ask_beside(writer, "counts (mixing two snapshots)", || async {
        let counts = store.count_by_status(&filter).await.unwrap();
        let (s, k) = (counts.get(&Status::Started), counts.get(&Status::Skipped));
        (s != k).then(|| format!("started {s:?}, skipped {k:?}"))
    })
    .await;
    let last = store.count_by_status(&filter).await.unwrap();
    assert_eq!(last.values().sum::<u64>(), 3000);
}

/// A summary is read from one snapshot: while another handle keeps appending a job's log
/// and pruning every record of that job, no summary reports a counted record as
/// unreadable (it sees the job whole or not at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_summary_beside_prunes_of_a_whole_job_never_calls_the_store_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("p.db")).unwrap());
    store
        .append(NewLog::new("stays", Status::Succeeded))
        .await
        .unwrap();
    let pruner = {
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..400 {
                let rec = store.append(NewLog::new("goes", Status::Failed)).await.unwrap();
                let policy = Policy::default().before_id(rec.id.next().unwrap());
                retention::prune(&*store, &policy, &PruneOptions::default())
                    .await
                    .unwrap();
                // `stays` went with it: it comes back, so summaries keep finding a job.
                store
                    .append(NewLog::new("stays", Status::Succeeded))
                    .await
                    .unwrap();
            }
        })
    };
    let filter = Filter::default().statuses([Status::Failed, Status::Succeeded]);
    ask_beside(pruner, "summaries", || async {
        store.summary(&filter).await.err().map(|e| e.to_string())
    })
    .await;
}
