//! Writers of one schema in different processes (here: independent stores, each with its
//! own connections) wait their turn for ids within their lock wait; none fails while it
//! lasts. A server is needed: `SYNCLOG_TEST_POSTGRES_URL`; without it each test prints a
//! notice and returns.

use std::sync::Arc;
use std::time::{Duration, Instant};

use synclog_core::{ErrorKind, LogStoreExt, NewLog, Status};
use synclog_postgres::{PgOptions, PgStore};

mod common;

use common::{drop_schema, raw_client, schema, server};

fn opts(schema: &str, lock_wait: Duration) -> PgOptions {
    PgOptions {
        schema: schema.to_string(),
        lock_wait,
        pool_size: 2,
        ..PgOptions::default()
    }
}

const WRITERS: usize = 4;
const APPENDS: usize = 40;

/// Four stores (as four processes would have: own pools, own writer connections) append
/// at the same moment: none fails, and the ids are 1..=160, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_independent_writers_appending_at_once_all_succeed_with_dense_ids() {
    let Some(url) = server() else { return };
    let s = schema("writers");
    // --- step: open the four writers (the first one creates the schema)
    let mut stores = Vec::new();
    for _ in 0..WRITERS {
        stores.push(Arc::new(
            PgStore::connect(&url, opts(&s, Duration::from_secs(30)))
                .await
                .unwrap(),
        ));
    }
    // --- step: every writer appends, one log at a time, all starting together
    let start = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut tasks = Vec::new();
    for (w, store) in stores.iter().enumerate() {
        let (store, start) = (store.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let mut results = Vec::new();
            for n in 0..APPENDS {
                let log = NewLog::new(format!("writer-{w}"), Status::Succeeded).counts(n as u64, 0, 0);
                results.push(store.append(log).await.map(|r| r.id.get()));
            }
            results
        }));
    }
    let mut ids = Vec::new();
    let mut failures = Vec::new();
    for t in tasks {
        for r in t.await.unwrap() {
            match r {
                Ok(id) => ids.push(id),
                Err(e) => failures.push(e.kind()),
            }
        }
    }
    // --- step: no failure; ids unique and dense
    assert_eq!(
        failures,
        Vec::<ErrorKind>::new(),
        "no writer fails while its wait lasts"
    );
    ids.sort_unstable();
    let expected: Vec<u64> = (1..=(WRITERS * APPENDS) as u64).collect();
    assert_eq!(ids, expected);
    drop_schema(&url, &s).await;
}

/// A writer whose store is locked by someone else waits for it, and carries on when the
/// lock is released within its wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_waits_for_a_lock_released_within_its_wait() {
    let Some(url) = server() else { return };
    let s = schema("writers");
    let store = PgStore::connect(&url, opts(&s, Duration::from_secs(10)))
        .await
        .unwrap();
    let holder = raw_client(&url).await;
    holder
        .batch_execute(&format!("BEGIN; LOCK TABLE {s}.logs IN ACCESS EXCLUSIVE MODE"))
        .await
        .unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        holder.batch_execute("COMMIT").await.unwrap();
    });
    let rec = store
        .append(NewLog::new("waited", Status::Succeeded))
        .await
        .unwrap();
    assert_eq!(rec.id.get(), 1);
    release.await.unwrap();
    drop_schema(&url, &s).await;
}

/// A writer whose store stays locked fails with a retryable error once its wait is over,
/// not never, and not at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_locked_out_for_longer_than_its_wait_fails_retryable_after_it() {
    let Some(url) = server() else { return };
    let s = schema("writers");
    let wait = Duration::from_secs(1);
    let store = PgStore::connect(&url, opts(&s, wait)).await.unwrap();
    let holder = raw_client(&url).await;
    holder
        .batch_execute(&format!("BEGIN; LOCK TABLE {s}.logs IN ACCESS EXCLUSIVE MODE"))
        .await
        .unwrap();
    let started = Instant::now();
    let err = tokio::time::timeout(wait * 5, store.append(NewLog::new("late", Status::Failed)))
        .await
        .expect("the append gives up after its lock wait")
        .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Busy, "{err}");
    assert!(err.is_retryable());
    assert!(
        elapsed >= wait / 2,
        "gave up after {elapsed:?}, before its wait of {wait:?}"
    );
    assert!(
        elapsed < wait * 2,
        "gave up after {elapsed:?}, long after its wait of {wait:?}"
    );
    holder.batch_execute("COMMIT").await.unwrap();
    // The next append goes through and spends the first id.
    let rec = store
        .append(NewLog::new("after", Status::Succeeded))
        .await
        .unwrap();
    assert_eq!(rec.id.get(), 1);
    drop_schema(&url, &s).await;
}
