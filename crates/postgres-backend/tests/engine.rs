//! The PostgreSQL engine's own promises (a server is needed: `SYNCLOG_TEST_POSTGRES_URL`;
//! without it each test prints a notice and returns).

use synclog_core::{Durability, ErrorKind, LogStore, LogStoreExt, NewLog, Status, VerifyOptions};
use synclog_postgres::{synchronous_commit_for, PgOptions, PgStore};

mod common;

use common::{drop_schema, raw_client, schema, server};

/// A plain tokio-postgres client, to act behind the store's back.
fn opts(schema: &str) -> PgOptions {
    PgOptions {
        schema: schema.to_string(),
        ..PgOptions::default()
    }
}

/// Two writers (as two app instances would be) append in turn: each one's remembered
/// next id is stale every time, the insert's guard refuses it, and the retry takes the
/// right one. Ids stay unique and dense.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_one_schema_get_unique_dense_ids() {
    let Some(url) = server() else { return };
    let s = schema("engine");
    let a = PgStore::connect(&url, opts(&s)).await.unwrap();
    let b = PgStore::connect(&url, opts(&s)).await.unwrap();
    let mut ids = Vec::new();
    for n in 0..20 {
        let store = if n % 2 == 0 { &a } else { &b };
        ids.push(
            store
                .append(NewLog::new("two", Status::Succeeded).counts(n, n, 0))
                .await
                .unwrap()
                .id
                .get(),
        );
    }
    assert_eq!(ids, (1..=20).collect::<Vec<u64>>());
    let report = a.verify(VerifyOptions::default()).await.unwrap();
    assert!(report.is_clean() && report.checked == 20, "{report:?}");
    drop_schema(&url, &s).await;
}

/// A read-only open (`must_exist`) of a schema that holds no store fails with
/// `NotFound` and creates nothing: neither the schema nor a table in an existing one;
/// once a writer has created the store, the same open succeeds.
#[tokio::test]
async fn an_open_that_must_find_a_store_creates_no_schema_or_table() {
    let Some(url) = server() else { return };
    let s = schema("must_exist");
    let must = PgOptions {
        must_exist: true,
        ..opts(&s)
    };
    let err = PgStore::connect(&url, must.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let raw = raw_client(&url).await;
    let schemas = raw
        .query(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = $1",
            &[&s],
        )
        .await
        .unwrap();
    assert!(schemas.is_empty(), "the schema {s} was created");

    // An existing schema that holds something else: no synclog table appears in it.
    raw.batch_execute(&format!("CREATE SCHEMA {s}; CREATE TABLE {s}.theirs (x int)"))
        .await
        .unwrap();
    let err = PgStore::connect(&url, must.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let tables: Vec<String> = raw
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
            &[&s],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tables, vec!["theirs".to_string()]);

    let writer = PgStore::connect(&url, opts(&s)).await.unwrap();
    let id = writer
        .append(NewLog::new("j", Status::Succeeded))
        .await
        .unwrap()
        .id;
    writer.close().await.unwrap();
    let reader = PgStore::connect(&url, must).await.unwrap();
    assert_eq!(reader.get(id).await.unwrap().map(|r| r.id), Some(id));
    reader.close().await.unwrap();
    drop_schema(&url, &s).await;
}

#[tokio::test]
async fn a_newer_schema_version_is_refused() {
    let Some(url) = server() else { return };
    let s = schema("engine");
    PgStore::connect(&url, opts(&s))
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    let client = raw_client(&url).await;
    client
        .batch_execute(&format!(
            "UPDATE {s}.meta SET value = 99 WHERE key = 'schema_version'"
        ))
        .await
        .unwrap();
    let err = PgStore::connect(&url, opts(&s)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    drop_schema(&url, &s).await;
}

#[tokio::test]
async fn a_schema_name_that_is_not_a_plain_identifier_is_invalid_input() {
    for bad in [
        "",
        "has space",
        "x;DROP TABLE y",
        "1starts_with_digit",
        &"x".repeat(64),
    ] {
        let err = PgStore::connect("postgres://u@127.0.0.1:1/db", opts(bad))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
    }
}

#[tokio::test]
async fn a_password_never_appears_in_an_error_or_description() {
    let err = PgStore::connect("postgres://alice:s3cr3tpw@127.0.0.1:1/db", PgOptions::default())
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("s3cr3tpw"), "{text}");
    let Some(url) = server() else { return };
    let s = schema("engine");
    let store = PgStore::connect(&url, opts(&s)).await.unwrap();
    assert!(!store.describe().contains("password"));
    store.close().await.unwrap();
    drop_schema(&url, &s).await;
}

#[test]
fn durability_levels_map_to_synchronous_commit() {
    assert_eq!(synchronous_commit_for(Durability::PowerLoss), "on");
    assert_eq!(synchronous_commit_for(Durability::Process), "local");
    assert_eq!(synchronous_commit_for(Durability::Buffered), "off");
}

/// When the server drops the writer's connection, the commit in flight fails (nothing is
/// acknowledged), and the next one opens a fresh connection and carries on without a gap.
#[tokio::test]
async fn the_writer_reconnects_after_its_connection_is_killed() {
    let Some(url) = server() else { return };
    let s = schema("engine");
    let store = PgStore::connect(&url, opts(&s)).await.unwrap();
    let first = store
        .append(NewLog::new("before", Status::Succeeded))
        .await
        .unwrap();
    let client = raw_client(&url).await;
    let killed: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1) t",
            &[&format!("synclog-writer:{s}")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1, "exactly the writer's connection");
    // Wait (bounded) until the server has really ended that backend.
    for _ in 0..500 {
        let left: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&format!("synclog-writer:{s}")],
            )
            .await
            .unwrap()
            .get(0);
        if left == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    let err = store
        .append(NewLog::new("lost", Status::Failed))
        .await
        .unwrap_err();
    assert_ne!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let next = store
        .append(NewLog::new("after", Status::Succeeded))
        .await
        .unwrap();
    assert_eq!(next.id.get(), first.id.get() + 1, "the failed commit spent no id");
    assert_eq!(store.stats().2, 2, "one reconnection");
    drop_schema(&url, &s).await;
}
