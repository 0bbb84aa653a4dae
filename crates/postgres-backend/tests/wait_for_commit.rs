//! `wait_for_commit` hears of other processes' commits through LISTEN/NOTIFY, and `close`
//! releases the listening connection with the others. A server is needed:
//! `SYNCLOG_TEST_POSTGRES_URL`; without it each test prints a notice and returns.

use std::time::{Duration, Instant};

use synclog_core::{LogStore, LogStoreExt, NewLog, Status};
use synclog_postgres::{PgOptions, PgStore};

mod common;

use common::{drop_schema, raw_client, schema, server};

fn opts(schema: &str) -> PgOptions {
    PgOptions {
        schema: schema.to_string(),
        pool_size: 2,
        ..PgOptions::default()
    }
}

/// How many listening connections of `schema`'s stores the server has (by application name).
async fn listeners(admin: &tokio_postgres::Client, schema: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&format!("synclog-listener:{schema}")],
        )
        .await
        .unwrap()
        .get(0)
}

/// A commit made through a second store handle (its own connections, as another process
/// would have) wakes a wait on the first within well under 250 ms: the commit's NOTIFY,
/// not the once-a-second safety poll, woke it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_by_another_handle_wakes_a_wait_through_notify() {
    let Some(url) = server() else { return };
    let s = schema("notify");
    let admin = raw_client(&url).await;
    let waiter = PgStore::connect(&url, opts(&s)).await.unwrap();
    let writer = PgStore::connect(&url, opts(&s)).await.unwrap();
    // --- step: the first wait opens the listener (and times out: nothing committed)
    let seen = writer
        .append(NewLog::new("j", Status::Succeeded))
        .await
        .unwrap()
        .id;
    waiter
        .wait_for_commit(Some(seen), Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(
        listeners(&admin, &s).await,
        1,
        "the wait opened a listening connection"
    );
    for round in 0..5 {
        // --- step: a wait, then a commit elsewhere 300 ms later
        let seen = writer.last_id().await.unwrap();
        let (waited, appended) = tokio::join!(
            async {
                let start = Instant::now();
                waiter
                    .wait_for_commit(seen, Duration::from_secs(5))
                    .await
                    .unwrap();
                Instant::now().checked_duration_since(start).unwrap_or_default()
            },
            async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let at = Instant::now();
                writer.append(NewLog::new("j", Status::Failed)).await.unwrap();
                at
            }
        );
        let _ = appended;
        // Woken after the commit (300 ms in) and before the safety poll (1 s in) could.
        assert!(
            waited >= Duration::from_millis(290) && waited < Duration::from_millis(990),
            "round {round}: woken after {waited:?}"
        );
    }
    // --- step: a record newer than `seen` already there answers at once
    let start = Instant::now();
    waiter
        .wait_for_commit(None, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(1));
    waiter.close().await.unwrap();
    writer.close().await.unwrap();
    drop_schema(&url, &s).await;
}

/// After a wait (which opened the listener) and a commit (which opened the writer's
/// connection), `close` leaves no connection of the store on the server, and later calls
/// fail as closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_after_a_wait_leaves_no_connection_behind() {
    let Some(url) = server() else { return };
    let s = schema("closewait");
    let admin = raw_client(&url).await;
    let store = PgStore::connect(&url, opts(&s)).await.unwrap();
    let rec = store.append(NewLog::new("j", Status::Succeeded)).await.unwrap();
    store
        .wait_for_commit(Some(rec.id), Duration::from_millis(20))
        .await
        .unwrap();
    let names = [
        format!("synclog-listener:{s}"),
        format!("synclog-writer:{s}"),
        format!("synclog-reader:{s}"),
    ];
    let count = || async {
        admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = ANY($1)",
                &[&names.to_vec()],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert!(
        count().await >= 3,
        "the listener, the writer and a reader are connected"
    );
    store.close().await.unwrap();
    // A backend leaves pg_stat_activity shortly after its client hangs up.
    let end = Instant::now() + Duration::from_secs(5);
    while count().await > 0 && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count().await, 0, "no connection of the store is left");
    let err = store
        .wait_for_commit(None, Duration::from_millis(10))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), synclog_core::ErrorKind::Closed, "{err}");
    assert_eq!(listeners(&admin, &s).await, 0);
    drop_schema(&url, &s).await;
}
