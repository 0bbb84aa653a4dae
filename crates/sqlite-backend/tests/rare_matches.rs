//! A status with a time window whose matches sit beyond the first walk of the status's
//! index (more than the first walk's worth of newer records of that status outside the window): the
//! page is still complete and in order, for one status and for several merged.

use chrono::{Duration, TimeZone, Utc};
use synclog_core::query::{Filter, TimeRange};
use synclog_core::LogStoreExt;
use synclog_core::{Durability, LogId, LogRecord, LogStore, NewLog, Scan, Status};
use synclog_sqlite::SqliteStore;

fn rec(id: u64, status: Status, recent: bool) -> LogRecord {
    let base = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    let started = if recent { base + Duration::days(30) } else { base };
    LogRecord::seal(
        LogId::new(id).unwrap(),
        started,
        NewLog::new("j", status).started(started),
    )
    .unwrap()
}

/// Partial ids 1..=60 and failed 61..=70 started recently; failed 71..=1570 started
/// long before.
async fn store() -> (tempfile::TempDir, SqliteStore, Vec<LogRecord>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("r.db")).unwrap();
    let mut all: Vec<LogRecord> = (1..=60).map(|i| rec(i, Status::Partial, true)).collect();
    all.extend((61..=70).map(|i| rec(i, Status::Failed, true)));
    all.extend((71..=1570).map(|i| rec(i, Status::Failed, false)));
    store.import(all.clone(), Durability::Process).await.unwrap();
    (dir, store, all)
}

fn ids(recs: &[LogRecord]) -> Vec<u64> {
    recs.iter().map(|r| r.id.get()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rare_matches_of_one_status_behind_the_first_walk_are_found() {
    let (_dir, store, all) = store().await;
    let recent = TimeRange::since(Utc.with_ymd_and_hms(2026, 6, 15, 0, 0, 0).unwrap());
    let f = Filter::status(Status::Failed).started(recent);
    for descending in [true, false] {
        let scan = Scan {
            filter: f.clone(),
            limit: 50,
            descending,
            ..Scan::default()
        };
        let mut want: Vec<_> = all.iter().filter(|r| f.matches(r)).cloned().collect();
        if descending {
            want.reverse();
        }
        assert_eq!(
            ids(&store.scan(&scan).await.unwrap()),
            ids(&want),
            "descending {descending}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merged_page_of_several_statuses_keeps_matches_beyond_one_walk() {
    let (_dir, store, all) = store().await;
    let recent = TimeRange::since(Utc.with_ymd_and_hms(2026, 6, 15, 0, 0, 0).unwrap());
    let f = Filter::default()
        .statuses([Status::Failed, Status::Partial])
        .started(recent);
    let scan = Scan {
        filter: f.clone(),
        limit: 60,
        descending: true,
        ..Scan::default()
    };
    let want: Vec<u64> = all
        .iter()
        .rev()
        .filter(|r| f.matches(r))
        .take(60)
        .map(|r| r.id.get())
        .collect();
    assert_eq!(
        want[..10],
        (61..=70).rev().collect::<Vec<u64>>()[..],
        "the failed ones lead"
    );
    assert_eq!(ids(&store.scan(&scan).await.unwrap()), want);
}
