//! The attribute side table `log_attrs` holds exactly the attributes of the stored
//! records after commits, imports (new and repeated) and repairs of damaged rows, and
//! attribute filters see what was repaired.

use std::collections::BTreeSet;
use std::path::Path;

use synclog_core::query::{attr_entries, AttrEq, Filter};
use synclog_core::{Durability, LogId, LogRecord, LogStore, LogStoreExt, NewLog, Status};
use synclog_sqlite::SqliteStore;

fn side_table(db: &Path) -> BTreeSet<(String, String, i64)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT key, value, id FROM log_attrs").unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap();
    rows.collect::<rusqlite::Result<_>>().unwrap()
}

/// What `log_attrs` must hold: the entries of every stored row's attributes.
fn expected(db: &Path) -> BTreeSet<(String, String, i64)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT id, attrs FROM logs").unwrap();
    let rows: Vec<(i64, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    rows.into_iter()
        .flat_map(|(id, attrs)| attr_entries(&attrs).into_iter().map(move |(k, v)| (k, v, id)))
        .collect()
}

fn env(e: &str) -> Filter {
    Filter::default().attr(AttrEq::parse(&format!("env={e}")).unwrap())
}

/// Imports index new records once and leave repeated ones alone.
#[tokio::test]
async fn imports_keep_the_attribute_index_exact() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let source = SqliteStore::open(dir.path().join("src.db")).unwrap();
    let mut recs = Vec::new();
    for i in 0..20u64 {
        let log = NewLog::new("j", Status::Succeeded)
            .attr("env", if i % 2 == 0 { "prod" } else { "dev" })
            .attr("n", i);
        recs.push(source.append(log).await.unwrap());
    }
    let store = SqliteStore::open(&db).unwrap();
    store
        .import(recs[..12].to_vec(), Durability::Buffered)
        .await
        .unwrap();
    store.import(recs.clone(), Durability::Buffered).await.unwrap();
    assert_eq!(side_table(&db), expected(&db));
    assert_eq!(side_table(&db).len(), 40);
    assert_eq!(store.count(&env("prod")).await.unwrap(), 10);
}

/// A repair that replaces a row whose attributes were damaged removes the entries of the
/// damaged text (as an upgrade's backfill of the damaged row would have indexed them) and
/// indexes the replacement's.
#[tokio::test]
async fn repair_of_damaged_attributes_keeps_the_attribute_index_exact() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let store = SqliteStore::open(&db).unwrap();
    let mut recs: Vec<LogRecord> = Vec::new();
    for i in 0..10u64 {
        let log = NewLog::new("j", Status::Failed).attr("env", "prod").attr("n", i);
        recs.push(store.append(log).await.unwrap());
    }
    let damaged = LogId::new(4).unwrap();
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute(
            "UPDATE logs SET attrs = '{\"env\":\"dev\",\"n\":3}', message = 'x' WHERE id = 4",
            [],
        )
        .unwrap();
        conn.execute(
            "UPDATE log_attrs SET value = '\"dev\"' WHERE id = 4 AND key = 'env'",
            [],
        )
        .unwrap();
    }
    assert_eq!(store.count(&env("dev")).await.unwrap(), 1, "indexed as damaged");
    let report = store.repair(recs.clone(), Durability::PowerLoss).await.unwrap();
    assert_eq!(report.replaced, 1);
    assert_eq!(store.get(damaged).await.unwrap().as_ref(), Some(&recs[3]));
    assert_eq!(side_table(&db), expected(&db));
    assert_eq!(store.count(&env("prod")).await.unwrap(), 10);
    assert_eq!(store.count(&env("dev")).await.unwrap(), 0);
    let summary = store.summary(&Filter::default()).await.unwrap();
    assert_eq!(summary.jobs[0].total(), 10);
}

/// A repair that re-inserts a row deleted behind the store's back indexes it again.
#[tokio::test]
async fn repair_of_a_missing_row_indexes_its_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let store = SqliteStore::open(&db).unwrap();
    let mut recs = Vec::new();
    for i in 0..5u64 {
        recs.push(
            store
                .append(NewLog::new("j", Status::Succeeded).attr("n", i))
                .await
                .unwrap(),
        );
    }
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute("DELETE FROM logs WHERE id = 2", []).unwrap();
        conn.execute("DELETE FROM log_attrs WHERE id = 2", []).unwrap();
    }
    store.repair(recs.clone(), Durability::PowerLoss).await.unwrap();
    assert_eq!(side_table(&db), expected(&db));
    assert_eq!(side_table(&db).len(), 5);
}
