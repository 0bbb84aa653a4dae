//! Stores of schema versions 1 and 2 answer filters identically read as they are
//! (read-only handle, no upgrade) and after a writer's open upgrades them to the current
//! version, whose attribute index and per-job totals (version 3) are backfilled from the
//! records.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use synclog_core::query::{attr_entries, AttrEq, Filter, SummaryBuilder};
use synclog_core::{LogRecord, LogStore, LogStoreExt, Status};
use synclog_sqlite::SqliteStore;

mod common;

const FIXTURE_V1: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/release-9f44466/sqlite/synclog.db"
);

fn user_version(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

/// Turns a version 4 database back into the version 2 schema.
fn downgrade_to_2(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(
        "DROP TRIGGER logs_into_job_stats; DROP TRIGGER logs_out_of_job_stats;
         DROP TRIGGER logs_update_job_stats; DROP TABLE job_stats; DROP TABLE log_attrs;
             DROP TABLE prune_markers;
         DROP INDEX logs_by_recorded; DROP INDEX logs_by_started; DROP INDEX logs_by_finished;
         DROP INDEX logs_by_status; DROP INDEX logs_by_status_recorded;
         PRAGMA user_version = 2;",
    )
    .unwrap();
}

/// The `(key, value, id)` rows of `log_attrs`.
fn side_table(db: &Path) -> BTreeSet<(String, String, i64)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT key, value, id FROM log_attrs").unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap();
    rows.collect::<rusqlite::Result<_>>().unwrap()
}

/// What `log_attrs` must hold for `records`.
fn entries(records: &[LogRecord]) -> BTreeSet<(String, String, i64)> {
    records
        .iter()
        .flat_map(|r| {
            attr_entries(r.attrs.as_str())
                .into_iter()
                .map(move |(k, v)| (k, v, r.id.get() as i64))
        })
        .collect()
}

/// `store` answers every filter of `filters` as the model of `all` does.
async fn answers_like_the_model(store: &SqliteStore, all: &[LogRecord], filters: &[Filter], step: &str) {
    for f in filters {
        let want: Vec<LogRecord> = all.iter().filter(|r| f.matches(r)).cloned().collect();
        let mut got = Vec::new();
        store
            .for_each_match(f, 7, &mut |page| {
                got.extend(page);
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(got, want, "--- {step}: scan {f:?}");
        let mut scan = synclog_core::Scan {
            descending: true,
            ..synclog_core::Scan::filtered(f.clone(), 5)
        };
        let mut down = Vec::new();
        loop {
            let page = store.scan(&scan).await.unwrap();
            scan.before = page.last().map(|r| r.id);
            let full = page.len() == 5;
            down.extend(page);
            if !full {
                break;
            }
        }
        down.reverse();
        assert_eq!(down, want, "--- {step}: descending scan {f:?}");
        assert_eq!(
            store.count(f).await.unwrap(),
            want.len() as u64,
            "--- {step}: count {f:?}"
        );
        let mut b = SummaryBuilder::default();
        want.iter().for_each(|r| b.add(r));
        assert_eq!(
            store.summary(f).await.unwrap(),
            b.finish(),
            "--- {step}: summary {f:?}"
        );
    }
}

/// A version 2 store answers identically before and after its upgrade; the upgrade fills
/// the side table with every record's attributes.
#[tokio::test]
async fn a_version_2_store_answers_filters_identically_before_and_after_its_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = common::Rng::new(11);
    let all = common::records(&mut rng, 800);
    let store = common::store_with(dir.path(), &all).await;
    store.close().await.unwrap();
    let db = dir.path().join("q.db");
    downgrade_to_2(&db);
    let run = all.iter().find_map(|r| r.run.clone()).unwrap();
    let filters: Vec<Filter> = (0..60).map(|_| common::filter(&mut rng, &run)).collect();

    // --- step: read as it is
    let ro = SqliteStore::open_read_only(&db, Duration::from_secs(5)).unwrap();
    answers_like_the_model(&ro, &all, &filters, "version 2, read-only").await;
    ro.close().await.unwrap();
    assert_eq!(user_version(&db), 2, "a read-only open upgrades nothing");

    // --- step: upgraded by a writer
    let store = SqliteStore::open(&db).unwrap();
    assert_eq!(user_version(&db), synclog_sqlite::SCHEMA_VERSION);
    assert_eq!(side_table(&db), entries(&all));
    answers_like_the_model(&store, &all, &filters, "upgraded to 3").await;
    let sum = store.summary(&Filter::default()).await.unwrap();
    let mut b = SummaryBuilder::default();
    all.iter().for_each(|r| b.add(r));
    assert_eq!(sum, b.finish(), "the per-job totals are backfilled");
}

/// The version 1 fixture (release 9f44466) answers identically read as it is and after a
/// writer upgrades it, its attributes backfilled.
#[tokio::test]
async fn the_version_1_fixture_answers_filters_identically_before_and_after_its_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("synclog.db");
    std::fs::copy(FIXTURE_V1, &db).unwrap();
    assert_eq!(user_version(&db), 1);
    let ro = SqliteStore::open_read_only(&db, Duration::from_secs(5)).unwrap();
    let mut all = Vec::new();
    ro.for_each_page(100, &mut |page| {
        all.extend(page);
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(all.len(), 12);
    let mut filters = vec![
        Filter::default(),
        Filter::job("orders"),
        Filter::default().statuses([Status::Failed, Status::Partial]),
        Filter::default().run("r"),
    ];
    // A condition on every attribute value the fixture holds, and a value it does not.
    for r in &all {
        for (key, value) in attr_entries(r.attrs.as_str()) {
            let value: serde_json::Value = serde_json::from_str(&value).unwrap();
            filters.push(Filter::default().attr(AttrEq::new(key.clone(), value)));
        }
    }
    filters.push(Filter::default().attr(AttrEq::parse("nope=1").unwrap()));
    assert!(filters.len() > 10, "the fixture has attributes");
    answers_like_the_model(&ro, &all, &filters, "version 1, read-only").await;
    ro.close().await.unwrap();

    let store = SqliteStore::open(&db).unwrap();
    assert_eq!(user_version(&db), synclog_sqlite::SCHEMA_VERSION);
    assert_eq!(side_table(&db), entries(&all));
    assert!(!side_table(&db).is_empty());
    answers_like_the_model(&store, &all, &filters, "upgraded to 3").await;
}
