//! What a failed connection says: which server did not answer, or what the server
//! refused (its message and SQLSTATE), never a password. The silent-server case needs no
//! PostgreSQL; the others need `SYNCLOG_TEST_POSTGRES_URL` and skip with a notice without it.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use synclog_core::ErrorKind;
use synclog_postgres::{PgOptions, PgStore};

mod common;

use common::server;

/// `url` with its user (and password) and database replaced.
fn with_user_and_db(url: &str, user: &str, db: &str) -> String {
    let config: tokio_postgres::Config = url.parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        #[allow(unreachable_patterns)]
        other => panic!("the test server must be reached over TCP, not {other:?}"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("postgres://{user}@{host}:{port}/{db}")
}

/// A TCP server that accepts connections and never answers them.
fn silent_server() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

#[tokio::test]
async fn a_server_that_accepts_and_never_answers_is_named_after_the_connect_timeout() {
    let (listener, port) = silent_server();
    // Accept (and keep) every connection, answer nothing.
    let keeper = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(4) {
            match stream {
                Ok(s) => held.push(s),
                Err(_) => break,
            }
        }
        std::thread::sleep(Duration::from_secs(10));
        drop(held);
    });
    let wait = Duration::from_secs(1);
    let options = PgOptions {
        connect_timeout: wait,
        ..PgOptions::default()
    };
    let started = Instant::now();
    let err = tokio::time::timeout(
        wait * 5,
        PgStore::connect(&format!("postgres://alice:s3cr3tpw@127.0.0.1:{port}/db"), options),
    )
    .await
    .expect("connect gives up after its connect timeout")
    .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(
        !err.is_retryable(),
        "a silent server is no lock to wait for: {err}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("127.0.0.1:{port}")),
        "names the server: {text}"
    );
    assert!(!text.contains("s3cr3tpw"), "{text}");
    assert!(elapsed < wait * 3, "gave up after {elapsed:?}");
    drop(keeper);
}

#[tokio::test]
async fn a_role_that_does_not_exist_is_named_with_the_servers_sqlstate() {
    let Some(url) = server() else { return };
    let bad = with_user_and_db(&url, "nope_synclog_role:hunter2pw", "test");
    let err = PgStore::connect(&bad, PgOptions::default()).await.unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Backend, "{text}");
    assert!(
        text.contains("role \"nope_synclog_role\" does not exist (28000)"),
        "the server's message and SQLSTATE: {text}"
    );
    assert!(!text.contains("hunter2pw"), "{text}");
}

#[tokio::test]
async fn a_database_that_does_not_exist_is_named_with_the_servers_sqlstate() {
    let Some(url) = server() else { return };
    let config: tokio_postgres::Config = url.parse().unwrap();
    let user = config.get_user().unwrap_or("postgres").to_string();
    let bad = with_user_and_db(&url, &user, "no_such_synclog_db");
    let err = PgStore::connect(&bad, PgOptions::default()).await.unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Backend, "{text}");
    assert!(
        text.contains("database \"no_such_synclog_db\" does not exist (3D000)"),
        "the server's message and SQLSTATE: {text}"
    );
}
