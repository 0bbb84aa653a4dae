//! The SQLite engine's own behaviour: what the conformance suite cannot see from outside.

use std::sync::Arc;

use rusqlite::Connection;
use synclog_core::{
    CheckpointMode, Durability, ErrorKind, LogId, LogStore, LogStoreExt, NewLog, Scan, Status, VerifyOptions,
};
use synclog_sqlite::{SqliteOptions, SqliteStore};
use tempfile::TempDir;

fn log(job: &str) -> NewLog {
    NewLog::new(job, Status::Succeeded)
        .counts(10, 9, 1)
        .message("one item had no e-mail")
        .attr("source", "crm")
}

fn fresh() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("logs.db")).unwrap();
    (dir, store)
}

#[tokio::test]
async fn appended_record_reads_back_identical_with_matching_checksum() {
    let (_dir, store) = fresh();
    let rec = store.append(log("crm")).await.unwrap();
    assert_eq!(rec.id, LogId::MIN);
    assert!(rec.is_intact());
    let got = store.get(rec.id).await.unwrap().unwrap();
    assert_eq!(got, rec);
    assert_eq!(got.attrs_value().unwrap()["source"], "crm");
}

#[tokio::test]
async fn batch_with_one_invalid_log_writes_nothing() {
    let (_dir, store) = fresh();
    let bad = vec![log("a"), log("b"), NewLog::new("", Status::Failed)];
    let err = store.commit(bad, Durability::PowerLoss).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(store.last_id().await.unwrap(), None);
    assert!(store.scan(&Scan::all(10)).await.unwrap().is_empty());
}

#[tokio::test]
async fn ids_keep_increasing_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.db");
    let store = SqliteStore::open(&path).unwrap();
    let first: Vec<u64> = store
        .commit(vec![log("a"), log("b"), log("c")], Durability::PowerLoss)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id.get())
        .collect();
    assert_eq!(first, vec![1, 2, 3]);
    store.close().await.unwrap();
    let store = SqliteStore::open(&path).unwrap();
    let next = store.append(log("d")).await.unwrap();
    assert_eq!(next.id.get(), 4);
}

#[tokio::test]
async fn ids_are_not_reused_after_the_newest_record_is_removed_behind_the_stores_back() {
    let (dir, store) = fresh();
    store
        .commit(vec![log("a"), log("b")], Durability::PowerLoss)
        .await
        .unwrap();
    let side = Connection::open(dir.path().join("logs.db")).unwrap();
    side.execute("DELETE FROM logs WHERE id = 2", []).unwrap();
    let next = store.append(log("c")).await.unwrap();
    assert_eq!(
        next.id.get(),
        3,
        "id 2 was handed out once and must not come back"
    );
}

#[tokio::test]
async fn ids_are_not_reused_after_the_newest_record_is_removed_while_closed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.db");
    let store = SqliteStore::open(&path).unwrap();
    store
        .commit(vec![log("a"), log("b"), log("c")], Durability::PowerLoss)
        .await
        .unwrap();
    store.close().await.unwrap();
    Connection::open(&path)
        .unwrap()
        .execute("DELETE FROM logs WHERE id >= 2", [])
        .unwrap();
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.append(log("d")).await.unwrap().id.get(),
        4,
        "the mark was stored at close"
    );
}

#[tokio::test]
async fn pragmas_read_back_as_set() {
    let (_dir, store) = fresh();
    let p = store.pragmas().await.unwrap();
    assert_eq!(p.journal_mode, "wal");
    assert_eq!(p.synchronous, 2, "power-loss durability is synchronous=FULL");
    assert_eq!(p.busy_timeout_ms, 5000);
    assert_eq!(p.wal_autocheckpoint, 1000);
    assert_eq!(p.user_version, synclog_sqlite::SCHEMA_VERSION);
    store.append_with(log("a"), Durability::Process).await.unwrap();
    assert_eq!(
        store.pragmas().await.unwrap().synchronous,
        1,
        "process durability is NORMAL"
    );
}

#[tokio::test]
async fn opening_a_database_that_cannot_use_wal_fails() {
    let err = SqliteStore::open(":memory:").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
}

#[tokio::test]
async fn a_newer_schema_version_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.db");
    SqliteStore::open(&path).unwrap().close().await.unwrap();
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let files = |dir: &std::path::Path| {
        let mut all: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        all.sort();
        all
    };
    let before = files(dir.path());
    let err = SqliteStore::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.to_string().contains("99"), "{err}");
    // Refused untouched: the same files, byte for byte, and nothing beside them.
    let after = files(dir.path());
    assert_eq!(
        after.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        before.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    assert!(after == before, "a refused newer store was changed");
}

#[tokio::test]
async fn another_applications_database_is_not_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE users(id INTEGER)")
        .unwrap();
    assert_eq!(
        SqliteStore::open(&path).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[tokio::test]
async fn checkpoint_blocked_by_an_open_read_transaction_is_reported_busy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.db");
    let options = SqliteOptions {
        busy_timeout: std::time::Duration::from_millis(50),
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(&path, options).unwrap();
    store
        .commit(vec![log("a"); 10], Durability::PowerLoss)
        .await
        .unwrap();
    let reader = Connection::open(&path).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let n: i64 = reader
        .query_row("SELECT count(*) FROM logs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 10);
    store
        .commit(vec![log("b"); 10], Durability::PowerLoss)
        .await
        .unwrap();

    let blocked = store.checkpoint(CheckpointMode::Truncate).await.unwrap();
    assert!(blocked.busy, "{blocked:?}");
    let passive = store.checkpoint(CheckpointMode::Passive).await.unwrap();
    assert!(passive.checkpointed < passive.log_frames, "{passive:?}");

    reader.execute_batch("COMMIT").unwrap();
    let done = store.checkpoint(CheckpointMode::Truncate).await.unwrap();
    assert!(!done.busy, "{done:?}");
    assert_eq!(done.log_frames, 0, "TRUNCATE empties the WAL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_commits() {
    let (_dir, store) = fresh();
    let store = Arc::new(store);
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..20 {
                    ids.push(store.append(log(&format!("job-{i}"))).await.unwrap().id.get());
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    ids.sort_unstable();
    assert_eq!(ids, (1..=1280).collect::<Vec<u64>>());
    let stats = store.writer_stats();
    assert_eq!(stats.group.logs, 1280);
    assert!(
        stats.group.groups < 1280 / 2,
        "64 concurrent appenders should share commits: {stats:?}"
    );
}

#[tokio::test]
async fn writer_connection_is_recycled_after_the_configured_number_of_commits() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions {
        recycle_after_commits: 3,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(dir.path().join("logs.db"), options).unwrap();
    for _ in 0..10 {
        store.append(log("a")).await.unwrap();
    }
    // 1 at open, then a fresh one after commits 3, 6 and 9.
    assert_eq!(store.writer_stats().connection_opens, 4);
    assert_eq!(store.last_id().await.unwrap(), LogId::new(10));
}

#[tokio::test]
async fn writer_reopens_its_connection_after_an_error() {
    let (dir, store) = fresh();
    store.append(log("a")).await.unwrap();
    let side = Connection::open(dir.path().join("logs.db")).unwrap();
    side.execute_batch("ALTER TABLE meta RENAME TO meta_hidden")
        .unwrap();
    let err = store.append(log("b")).await.unwrap_err();
    assert_ne!(err.kind(), ErrorKind::InvalidInput);
    side.execute_batch("ALTER TABLE meta_hidden RENAME TO meta")
        .unwrap();
    let rec = store.append(log("c")).await.unwrap();
    assert_eq!(rec.id.get(), 2, "the failed commit wrote nothing");
    assert_eq!(store.writer_stats().connection_opens, 2);
}

#[tokio::test]
async fn a_batch_failing_half_way_through_its_inserts_is_rolled_back_whole() {
    let (dir, store) = fresh();
    store.append(log("a")).await.unwrap();
    // A trigger added behind the store's back makes the third insert of the batch fail.
    let side = Connection::open(dir.path().join("logs.db")).unwrap();
    side.execute_batch(
        "CREATE TRIGGER boom BEFORE INSERT ON logs WHEN NEW.job = 'boom' \
         BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END;",
    )
    .unwrap();
    let batch = vec![log("b"), log("c"), log("boom"), log("d")];
    let err = store.commit(batch, Durability::PowerLoss).await.unwrap_err();
    assert_ne!(err.kind(), ErrorKind::InvalidInput);
    side.execute_batch("DROP TRIGGER boom").unwrap();
    let all = synclog_conformance::cases::everything(&store).await;
    assert_eq!(all.len(), 1, "none of the failed batch is stored");
    let next = store.append(log("e")).await.unwrap();
    assert_eq!(next.id.get(), 2, "the failed batch spent no id");
}

#[tokio::test]
async fn sync_hook_makes_process_level_commits_power_loss_durable() {
    let (_dir, store) = fresh();
    store.append_with(log("a"), Durability::Process).await.unwrap();
    store.sync(Durability::PowerLoss).await.unwrap();
    assert_eq!(store.pragmas().await.unwrap().synchronous, 2);
}

#[tokio::test]
async fn deep_verify_runs_quick_check() {
    let (_dir, store) = fresh();
    store
        .commit(vec![log("a"); 5], Durability::PowerLoss)
        .await
        .unwrap();
    let report = store.verify(VerifyOptions { deep: true }).await.unwrap();
    assert!(report.deep_checked);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.checked, 5);
}

#[tokio::test]
async fn calls_after_close_fail_as_closed() {
    let (_dir, store) = fresh();
    store.close().await.unwrap();
    assert_eq!(
        store.append(log("a")).await.unwrap_err().kind(),
        ErrorKind::Closed
    );
    assert_eq!(store.last_id().await.unwrap_err().kind(), ErrorKind::Closed);
}

/// The `syncs` counter of the database at `path` (each write transaction that syncs a
/// repeat or a `sync` call raises it).
fn syncs(path: &std::path::Path) -> i64 {
    let conn = Connection::open(path).unwrap();
    conn.query_row("SELECT value FROM meta WHERE key = 'syncs'", [], |r| r.get(0))
        .unwrap()
}

/// A repeat answered at power-loss durability commits a write (and so syncs the WAL up to
/// it), because the record it repeats may have been committed at a weaker level.
#[tokio::test(flavor = "multi_thread")]
async fn a_repeat_answered_at_power_loss_syncs_what_it_repeats() {
    let (dir, store) = fresh();
    let keyed = log("crm").idempotency_key("k");
    let first = store
        .append_report(keyed.clone(), Durability::Process)
        .await
        .unwrap();
    assert!(!first.repeat);
    let before = syncs(&dir.path().join("logs.db"));
    let again = store.append_report(keyed, Durability::PowerLoss).await.unwrap();
    assert!(again.repeat);
    assert_eq!(again.record, first.record);
    assert_eq!(
        syncs(&dir.path().join("logs.db")),
        before + 1,
        "the repeat committed a write"
    );
    store.close().await.unwrap();
}
