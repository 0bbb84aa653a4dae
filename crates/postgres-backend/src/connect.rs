//! Connecting and waiting: how long an operation waits for other writers' locks, how
//! long a connection may take, and what a failure says (the server's message and SQLSTATE,
//! or which server did not answer), never a password.

use std::time::Duration;

use deadpool_postgres::{PoolError, TimeoutType};
use synclog_core::deadline::Deadline;
use synclog_core::{Error, Result};
use tokio_postgres::{Client, NoTls};

/// A deadline as PostgreSQL's `lock_timeout`.
pub(crate) trait LockTimeout {
    /// `SET LOCAL lock_timeout` to the time left: at least 1 ms (0 would mean no limit),
    /// at most what the server accepts.
    fn set_lock_timeout(&self) -> String;
}

impl LockTimeout for Deadline {
    fn set_lock_timeout(&self) -> String {
        let ms = self.remaining().as_millis().clamp(1, i32::MAX as u128);
        format!("SET LOCAL lock_timeout = {ms}")
    }
}

/// The servers a config names, as `host:port` (or a socket directory), for messages.
pub(crate) fn server_of(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    let names: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| match h {
            tokio_postgres::config::Host::Tcp(name) if name.contains(':') => format!("[{name}]:{}", port(i)),
            tokio_postgres::config::Host::Tcp(name) => format!("{name}:{}", port(i)),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(dir) => format!("{} (port {})", dir.display(), port(i)),
        })
        .collect();
    if names.is_empty() {
        format!("localhost:{}", port(0))
    } else {
        names.join(", ")
    }
}

/// The error of a connection the server did not complete within `timeout`.
fn no_answer(store: &str, server: &str, timeout: Duration) -> Error {
    Error::io(
        format!("connecting to {store}"),
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "the server at {server} did not answer within {timeout:?}; is it PostgreSQL, and is it up?"
            ),
        ),
    )
}

/// Where a store connects and how long a connection may take.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) config: tokio_postgres::Config,
    /// The store, described without its password.
    pub(crate) store: String,
    /// `host:port` of the server(s).
    pub(crate) server: String,
    /// How long a new connection may take.
    pub(crate) connect_timeout: Duration,
}

impl Endpoint {
    /// A new connection, or a clear error: the server's refusal, or its silence.
    pub(crate) async fn connect(&self, what: &str) -> Result<Client> {
        let (client, connection) = tokio::time::timeout(self.connect_timeout, self.config.connect(NoTls))
            .await
            .map_err(|_| no_answer(&self.store, &self.server, self.connect_timeout))?
            .map_err(|e| pg_err(&self.store, what, e))?;
        // The connection task ends with the connection; its error, if any, reaches us as
        // the next call's error, which drops the client and reconnects.
        tokio::spawn(connection);
        Ok(client)
    }

    /// What a failure to get a pooled connection means.
    pub(crate) fn pool_err(&self, e: PoolError) -> Error {
        match e {
            PoolError::Timeout(TimeoutType::Create) => {
                no_answer(&self.store, &self.server, self.connect_timeout)
            }
            PoolError::Backend(e) => pg_err(&self.store, "connecting to", e),
            PoolError::Closed => Error::Closed {
                store: self.store.clone(),
            },
            other => Error::io(
                format!("getting a pooled connection to {}", self.store),
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, other.to_string()),
            ),
        }
    }
}

/// What the server said: its message and SQLSTATE (and detail and hint, if any), e.g.
/// `role "nope" does not exist (28000)`. tokio-postgres displays it as just "db error".
#[derive(Debug)]
struct ServerSaid {
    text: String,
    source: tokio_postgres::Error,
}

impl std::fmt::Display for ServerSaid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for ServerSaid {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

pub(crate) fn pg_err(store: &str, context: &str, e: tokio_postgres::Error) -> Error {
    let code = e.code().map(|c| c.code().to_string());
    let source: synclog_core::BoxError = match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{} ({})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text.push_str(&format!("; {detail}"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; hint: {hint}"));
            }
            Box::new(ServerSaid { text, source: e })
        }
        None => Box::new(e),
    };
    match code.as_deref() {
        Some("55P03") => Error::Busy {
            resource: store.to_string(),
            detail: format!(
                "{context}: another connection held a lock on the store for the whole lock wait ({source}); \
                 retry, or wait longer"
            ),
            source: Some(source),
        },
        Some(c) if c.starts_with("40") || c == "53300" => Error::Busy {
            resource: store.to_string(),
            detail: format!("{context}: the server asked to retry: {source}"),
            source: Some(source),
        },
        None if source.to_string().contains("connect") || is_closed(&*source) => Error::io(
            format!("{context} {store}"),
            std::io::Error::new(std::io::ErrorKind::ConnectionAborted, source.to_string()),
        ),
        _ => Error::Backend {
            engine: "postgres",
            context: format!("{context} {store}"),
            source,
        },
    }
}

fn is_closed(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<tokio_postgres::Error>()
        .is_some_and(|e| e.is_closed())
}
