//! A large import sets the insert triggers aside and brings `job_stats`, `runs` and
//! `idempotency_keys` up to date in bulk: the tables must end up exactly as the triggers
//! leave them, the triggers must be back afterwards, and records already stored must not
//! be counted twice.

use std::path::Path;

use chrono::{Duration, TimeZone, Utc};
use synclog_core::{Durability, LogId, LogRecord, LogStore, LogStoreExt, NewLog, Status};
use synclog_sqlite::SqliteStore;

/// Record `n`: five jobs, every status, runs of a few records each, repeated idempotency
/// keys, and counters that need both halves of the stored sums.
fn record(n: u64) -> LogRecord {
    let statuses = [
        Status::Started,
        Status::Progress,
        Status::Succeeded,
        Status::Failed,
        Status::Partial,
    ];
    // A run (`n % 300`) keeps its job and goes through different statuses.
    let mut log = NewLog::new(format!("job-{}", n % 5), statuses[((n + n / 300) % 5) as usize]);
    log.items_seen = if n.is_multiple_of(97) {
        i64::MAX as u64 - n
    } else {
        n * 1_000
    };
    log.items_written = n % 13 * (1 << 33);
    log.items_failed = n % 3;
    log.started_at = Utc
        .timestamp_opt(1_700_000_000 + (n * 7919 % 100_000) as i64, 0)
        .unwrap();
    log.finished_at = Some(log.started_at + Duration::seconds((n % 50) as i64));
    if !n.is_multiple_of(4) || log.status.needs_run() {
        log.run = Some(format!("run-{}", n % 300));
    }
    if n.is_multiple_of(3) {
        log.idempotency_key = Some(format!("key-{}", n % 700));
    }
    log.attrs = serde_json::json!({ "tenant": format!("t-{}", n % 7) });
    let recorded = Utc.timestamp_opt(1_710_000_000 + n as i64, 0).unwrap();
    LogRecord::seal(LogId::new(n).unwrap(), recorded, log).unwrap()
}

fn rows(db: &Path, sql: &str) -> Vec<Vec<String>> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    let rows = stmt
        .query_map([], |r| {
            (0..n)
                .map(|i| r.get::<_, rusqlite::types::Value>(i).map(|v| format!("{v:?}")))
                .collect()
        })
        .unwrap();
    rows.collect::<rusqlite::Result<_>>().unwrap()
}

/// Everything the triggers keep, and the triggers themselves.
fn derived(db: &Path) -> [Vec<Vec<String>>; 4] {
    [
        rows(db, "SELECT * FROM job_stats ORDER BY job, status"),
        rows(db, "SELECT * FROM runs ORDER BY run_key"),
        rows(db, "SELECT * FROM idempotency_keys ORDER BY key"),
        triggers(db),
    ]
}

#[tokio::test]
async fn a_large_import_leaves_the_derived_tables_as_the_triggers_would() {
    let dir = tempfile::tempdir().unwrap();
    let (bulk_db, rows_db) = (dir.path().join("bulk.db"), dir.path().join("rows.db"));
    let all: Vec<LogRecord> = (1..=4_000).map(record).collect();

    // Through the triggers: imports smaller than the bulk threshold.
    let by_rows = SqliteStore::open(&rows_db).unwrap();
    for chunk in all.chunks(250) {
        by_rows
            .import(chunk.to_vec(), Durability::Buffered)
            .await
            .unwrap();
    }
    assert_eq!(by_rows.writer_stats().bulk_imports, 0);
    by_rows.close().await.unwrap();

    // In bulk: a store that already holds the first 600 (through the triggers), then one
    // import of everything (the 600 are offered again and must count once), then the rest
    // of the triggers' work on a commit after it.
    let bulk = SqliteStore::open(&bulk_db).unwrap();
    for chunk in all[..600].chunks(200) {
        bulk.import(chunk.to_vec(), Durability::Buffered).await.unwrap();
    }
    let report = bulk.import(all.clone(), Durability::Buffered).await.unwrap();
    assert_eq!((report.inserted, report.already_present), (3_400, 600));
    assert_eq!(
        bulk.writer_stats().bulk_imports,
        1,
        "the large import went in bulk"
    );
    bulk.close().await.unwrap();

    let after_bulk = derived(&bulk_db);
    assert_eq!(after_bulk, derived(&rows_db));
    assert_eq!(after_bulk[3].len(), 7, "every trigger is back");

    // The triggers are at work again: a small import (below the threshold) after it
    // changes both stores alike.
    let more: Vec<LogRecord> = (4_001..=4_050).map(record).collect();
    for db in [&bulk_db, &rows_db] {
        let store = SqliteStore::open(db).unwrap();
        store.import(more.clone(), Durability::Buffered).await.unwrap();
        store.close().await.unwrap();
    }
    assert_ne!(
        derived(&bulk_db),
        after_bulk,
        "the small import changed the tables"
    );
    assert_eq!(derived(&bulk_db), derived(&rows_db));
}

/// A second import of the same large set inserts nothing and changes no derived row.
#[tokio::test]
async fn importing_the_same_large_set_twice_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("twice.db");
    let all: Vec<LogRecord> = (1..=1_500).map(record).collect();
    let store = SqliteStore::open(&db).unwrap();
    store.import(all.clone(), Durability::Buffered).await.unwrap();
    store.close().await.unwrap();
    let before = derived(&db);
    let store = SqliteStore::open(&db).unwrap();
    let again = store.import(all, Durability::Buffered).await.unwrap();
    assert_eq!((again.inserted, again.already_present), (0, 1_500));
    store.close().await.unwrap();
    assert_eq!(derived(&db), before);
}

/// A large import that fails after it set the triggers aside (here its `job_stats`
/// statement, the table dropped behind the store's back) leaves nothing of itself: no row,
/// and every trigger as it was.
#[tokio::test]
async fn a_large_import_that_fails_part_way_leaves_the_rows_and_the_triggers_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fails.db");
    let store = SqliteStore::open(&db).unwrap();
    let first: Vec<LogRecord> = (1..=100).map(record).collect();
    store.import(first, Durability::Buffered).await.unwrap();
    store.close().await.unwrap();
    let before = derived(&db);
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("DROP TABLE job_stats")
        .unwrap();

    let store = SqliteStore::open(&db).unwrap();
    let rest: Vec<LogRecord> = (101..=1_500).map(record).collect();
    let err = store.import(rest, Durability::Buffered).await.unwrap_err();
    assert!(err.to_string().contains("indexing the imported rows"), "{err}");
    assert_eq!(store.writer_stats().bulk_imports, 0);
    assert_eq!(store.last_id().await.unwrap(), LogId::new(100));
    store.close().await.unwrap();
    assert_eq!(triggers(&db), before[3], "the triggers are all back");
}

/// Every trigger's name and text.
fn triggers(db: &Path) -> Vec<Vec<String>> {
    rows(
        db,
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name",
    )
}
