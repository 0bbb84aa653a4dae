//! Pruning in the PostgreSQL engine, beyond the conformance cases: a schema of version 3
//! (the release before retention) is upgraded to 4 at open and prunes; the side tables
//! (`attrs`, `job_stats`, `runs`) hold exactly what the remaining records give; applying
//! a marker again deletes nothing; a summary reads one snapshot while a delete commits
//! between its statements. A server is needed: `SYNCLOG_TEST_POSTGRES_URL`; without
//! it each test prints a notice and returns.

use chrono::Utc;
use synclog_core::retention::{self, Policy, PruneMarker, PruneOptions};
use synclog_core::LogStoreExt;
use synclog_core::{Durability, IdRange, LogId, LogStore, NewLog, Status, VerifyOptions};
use synclog_postgres::{PgOptions, PgStore, SCHEMA_VERSION};

mod common;

use common::{drop_schema, raw_client, schema, server};

fn opts(schema: &str) -> PgOptions {
    PgOptions {
        schema: schema.to_string(),
        pool_size: 2,
        ..PgOptions::default()
    }
}

fn id(n: u64) -> LogId {
    LogId::new(n).unwrap()
}

/// `(job, status, n, items_seen)` of `job_stats`, and the same computed from `logs`.
async fn job_stats(client: &tokio_postgres::Client, s: &str) -> (Vec<String>, Vec<String>) {
    let rows = |sql: String| async move {
        client
            .query(&sql, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{} {} {} {}",
                    r.get::<_, String>(0),
                    r.get::<_, String>(1),
                    r.get::<_, i64>(2),
                    r.get::<_, String>(3)
                )
            })
            .collect::<Vec<_>>()
    };
    (
        rows(format!(
            "SELECT job, status, n, items_seen::text FROM {s}.job_stats ORDER BY job, status"
        ))
        .await,
        rows(format!(
            "SELECT job, status, count(*), sum(items_seen)::numeric::text FROM {s}.logs \
             GROUP BY job, status ORDER BY job, status"
        ))
        .await,
    )
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// A schema of version 3 (its marker table dropped, its version set back) is upgraded at
/// open and prunes; the attribute rows, job totals and runs of the pruned records go with
/// them; the marker survives a reopen; applying it again deletes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_3_schema_is_upgraded_and_its_side_tables_follow_a_prune() {
    let Some(url) = server() else { return };
    let s = schema("prune");
    let store = PgStore::connect(&url, opts(&s)).await.unwrap();
    let mut batch = Vec::new();
    // Five runs of six records (started, four progress reports, succeeded), in jobs a, b,
    // c, a, b.
    for i in 0..30u64 {
        let job = ["a", "b", "c"][((i / 6) % 3) as usize];
        let status = match i % 6 {
            0 => Status::Started,
            5 => Status::Succeeded,
            _ => Status::Progress,
        };
        batch.push(
            NewLog::new(job, status)
                .run(format!("run-{}", i / 6))
                .counts(i, i, 0)
                .attr("n", i as i64)
                .attr("env", if i % 2 == 0 { "prod" } else { "dev" }),
        );
    }
    let recs = store.commit(batch, Durability::PowerLoss).await.unwrap();
    assert_eq!(recs.len(), 30);
    store.close().await.unwrap();

    let admin = raw_client(&url).await;
    admin
        .batch_execute(&format!(
            "DROP TABLE {s}.prune_markers; UPDATE {s}.meta SET value = 3 WHERE key = 'schema_version'"
        ))
        .await
        .unwrap();
    let store = PgStore::connect(&url, opts(&s)).await.unwrap();
    let version = count(
        &admin,
        &format!("SELECT value FROM {s}.meta WHERE key = 'schema_version'"),
    )
    .await;
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION, 4);

    let report = retention::prune(
        &store,
        &Policy::default().before_id(id(13)),
        &PruneOptions {
            durability: Durability::PowerLoss,
            ..PruneOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(report.deleted, 12, "{report:?}");
    let marker = report.marker.expect("marker");
    assert_eq!(
        count(&admin, &format!("SELECT count(*) FROM {s}.attrs WHERE id <= 12")).await,
        0
    );
    assert_eq!(
        count(&admin, &format!("SELECT count(*) FROM {s}.attrs")).await,
        18 * 2
    );
    let (stored, computed) = job_stats(&admin, &s).await;
    assert_eq!(stored, computed);
    // Runs 0 and 1 (ids 1..=12) went whole; runs 2..=4 stay.
    assert_eq!(count(&admin, &format!("SELECT count(*) FROM {s}.runs")).await, 3);
    assert_eq!(
        count(
            &admin,
            &format!("SELECT count(*) FROM {s}.runs WHERE first_id <= 12")
        )
        .await,
        0
    );
    store.close().await.unwrap();

    let store = PgStore::connect(&url, opts(&s)).await.unwrap();
    assert_eq!(store.prune_markers().await.unwrap(), vec![marker.clone()]);
    let again = store.apply_prune(&marker, Durability::PowerLoss).await.unwrap();
    assert!(again.already_marked && again.deleted == 0, "{again:?}");
    let verified = store.verify(VerifyOptions::default()).await.unwrap();
    assert!(verified.is_clean() && verified.checked == 18, "{verified:?}");
    // A marker over ids past the newest (one applied from another copy) keeps them taken.
    let ahead = PruneMarker::new(
        Utc::now(),
        Policy::default().before_id(id(41)),
        vec![IdRange::new(id(31), id(40)).unwrap()],
        "0".repeat(64),
        None,
    );
    store.apply_prune(&ahead, Durability::PowerLoss).await.unwrap();
    let next = store
        .commit(vec![NewLog::new("a", Status::Succeeded)], Durability::PowerLoss)
        .await
        .unwrap();
    assert_eq!(next[0].id.get(), 41);
    store.close().await.unwrap();
    drop_schema(&url, &s).await;
}

/// A prune cut off after its first transaction (the marker stored, records it covers
/// still there: made here by storing a marker by hand) is finished by the next connect,
/// with the side tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_cut_off_between_transactions_is_finished_at_connect() {
    let Some(url) = server() else { return };
    let s = schema("prune_cut");
    let store = PgStore::connect(&url, opts(&s)).await.unwrap();
    let batch = (0..10u64)
        .map(|i| NewLog::new(["a", "b"][(i % 2) as usize], Status::Succeeded).attr("n", i as i64))
        .collect();
    store.commit(batch, Durability::PowerLoss).await.unwrap();
    store.close().await.unwrap();
    let marker = PruneMarker::new(
        Utc::now(),
        Policy::default().before_id(id(7)),
        vec![IdRange::new(id(1), id(6)).unwrap()],
        "0".repeat(64),
        None,
    );
    let admin = raw_client(&url).await;
    admin
        .execute(
            &format!("INSERT INTO {s}.prune_markers (digest, body) VALUES ($1, $2)"),
            &[&marker.digest, &marker.encode()],
        )
        .await
        .unwrap();
    let store = PgStore::connect(&url, opts(&s)).await.unwrap();
    assert_eq!(count(&admin, &format!("SELECT count(*) FROM {s}.logs")).await, 4);
    assert_eq!(count(&admin, &format!("SELECT count(*) FROM {s}.attrs")).await, 4);
    let (stored, computed) = job_stats(&admin, &s).await;
    assert_eq!(stored, computed);
    let verified = store.verify(VerifyOptions::default()).await.unwrap();
    assert!(
        verified.is_clean() && verified.pruned_present == 0,
        "{verified:?}"
    );
    store.close().await.unwrap();
    drop_schema(&url, &s).await;
}

/// A summary's statements share one snapshot. Here a delete of a job's latest success
/// commits between them: it is held behind a table lock until the summary's count of
/// failures (its second statement, the first to read `logs`) waits on that lock. Read in
/// one snapshot, the summary still names the success and reads it; read statement by
/// statement, it named a record its last statement no longer found (`NotFound`).
#[tokio::test]
async fn a_summary_is_one_snapshot_when_a_delete_commits_between_its_statements() {
    let Some(url) = server() else { return };
    let s = schema("summary_snapshot");
    let store = std::sync::Arc::new(PgStore::connect(&url, opts(&s)).await.unwrap());
    let ok = store.append(NewLog::new("a", Status::Succeeded)).await.unwrap();
    let failed = store.append(NewLog::new("a", Status::Failed)).await.unwrap();
    let deleter = raw_client(&url).await;
    deleter
        .batch_execute(&format!(
            "BEGIN; DELETE FROM {s}.logs WHERE id = {}; LOCK TABLE {s}.logs IN ACCESS EXCLUSIVE MODE",
            ok.id.get()
        ))
        .await
        .unwrap();
    let summary = {
        let store = store.clone();
        tokio::spawn(async move { store.summary(&synclog_core::query::Filter::default()).await })
    };
    // Until the summary waits for the lock on this schema's `logs` (other tests run
    // statements of their own schemas beside this one).
    let watcher = raw_client(&url).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let waiting: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                 AND position('unnest' in query) > 0 AND position($1 in query) > 0 \
                 AND pid <> pg_backend_pid()",
                &[&format!("\"{s}\".logs")],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the summary never waited for the lock"
        );
        assert!(!summary.is_finished(), "the summary ended before reading logs");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    deleter.batch_execute("COMMIT").await.unwrap();
    let summary = summary.await.unwrap().expect("a summary of one snapshot");
    let job = &summary.jobs[0];
    assert_eq!(job.latest.id, failed.id);
    assert_eq!(job.latest_success.as_ref().map(|r| r.id), Some(ok.id));
    assert_eq!(job.consecutive_failures, 1);
    // The delete did commit: a summary asked now no longer has the success.
    let after = store
        .summary(&synclog_core::query::Filter::default())
        .await
        .unwrap();
    assert_eq!(after.jobs[0].latest_success, None);
    store.close().await.unwrap();
    drop_schema(&url, &s).await;
}
