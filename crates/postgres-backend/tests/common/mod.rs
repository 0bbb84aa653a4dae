//! What the PostgreSQL tests share: the server's URL (or a notice and a skip), scratch
//! schema names, and a raw client to set up and drop them.
#![allow(dead_code)] // each test file uses a part

/// The server to test against, from `SYNCLOG_TEST_POSTGRES_URL`; without it, a notice and
/// `None` (the test returns).
pub fn server() -> Option<String> {
    match std::env::var("SYNCLOG_TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            eprintln!("notice: SYNCLOG_TEST_POSTGRES_URL is not set; skipping this PostgreSQL test");
            None
        }
    }
}

/// A schema name no other test uses: `synclog_<what>_<pid>_<random>`.
pub fn schema(what: &str) -> String {
    format!("synclog_{what}_{}_{}", std::process::id(), fastrand::u32(..))
}

/// A plain client of its own, outside synclog.
pub async fn raw_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// Drops `schema` and everything in it.
pub async fn drop_schema(url: &str, schema: &str) {
    raw_client(url)
        .await
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .unwrap();
}
