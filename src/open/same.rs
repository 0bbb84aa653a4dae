//! Whether two store URLs name the same storage, so a guarded pair is never one copy twice.

use synclog_core::{redact_url, Error, Result};

use super::paths::FileIdentity;
use super::StoreUrl;

/// The storage a URL names, in a form two URLs can be compared by.
#[derive(Debug)]
enum Storage {
    /// A file or directory, whatever the engine.
    File(FileIdentity),
    /// A named in-process store.
    Memory(String),
    /// A PostgreSQL schema: its servers (host, port), database and schema.
    Postgres {
        servers: Vec<(String, u16)>,
        database: String,
        schema: String,
    },
}

impl Storage {
    fn of(url: &StoreUrl, text: &str) -> Result<Storage> {
        Ok(match url {
            StoreUrl::Sqlite(path) | StoreUrl::Json { path, .. } | StoreUrl::Sled(path) => {
                Storage::File(FileIdentity::of(path)?)
            }
            StoreUrl::Memory(name) => Storage::Memory(name.clone()),
            StoreUrl::Postgres(url) => postgres(url, text)?,
        })
    }

    fn same_as(&self, other: &Storage) -> bool {
        match (self, other) {
            (Storage::File(a), Storage::File(b)) => a.same_as(b),
            (Storage::Memory(a), Storage::Memory(b)) => a == b,
            (
                Storage::Postgres {
                    servers: sa,
                    database: da,
                    schema: xa,
                },
                Storage::Postgres {
                    servers: sb,
                    database: db,
                    schema: xb,
                },
            ) => da == db && xa == xb && sa.iter().any(|s| sb.contains(s)),
            _ => false,
        }
    }
}

#[cfg(feature = "postgres")]
fn postgres(url: &str, text: &str) -> Result<Storage> {
    use tokio_postgres::config::Host;
    let (base, schema) = synclog_postgres::split_schema(url);
    let schema = schema.unwrap_or_else(|| synclog_postgres::PgOptions::default().schema);
    // tokio-postgres's message names the parameter, never its value.
    let config: tokio_postgres::Config = base.parse().map_err(|e: tokio_postgres::Error| {
        Error::invalid(
            "url",
            format!("{} is not a PostgreSQL URL: {e}", redact_url(text)),
        )
    })?;
    let ports = config.get_ports();
    let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    let mut servers: Vec<(String, u16)> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let name = match host {
                Host::Tcp(name) => loopback(&name.to_ascii_lowercase()),
                Host::Unix(path) => path.display().to_string(),
            };
            (name, port(i))
        })
        .collect();
    servers.extend(
        config
            .get_hostaddrs()
            .iter()
            .enumerate()
            .map(|(i, addr)| (loopback(&addr.to_string()), port(i))),
    );
    let database = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or_default()
        .to_string();
    Ok(Storage::Postgres {
        servers,
        database,
        schema,
    })
}

#[cfg(not(feature = "postgres"))]
fn postgres(url: &str, _text: &str) -> Result<Storage> {
    Ok(Storage::Postgres {
        servers: vec![(url.to_string(), 0)],
        database: String::new(),
        schema: String::new(),
    })
}

/// The loopback names of this machine as one name.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
fn loopback(host: &str) -> String {
    match host {
        "localhost" | "127.0.0.1" | "::1" | "[::1]" => "localhost".to_string(),
        other => other.to_string(),
    }
}

/// Refuses, with [`Error::InvalidInput`] on `backup`, a primary and a backup that name the
/// same storage: one file by any path (a symlink, a hard link, `..`), whatever the two
/// engines; one memory store; one PostgreSQL schema. Runs before either is opened.
pub fn refuse_same_storage(primary: &str, backup: &str) -> Result<()> {
    let p = Storage::of(&StoreUrl::parse(primary)?, primary)?;
    let b = Storage::of(&StoreUrl::parse(backup)?, backup)?;
    if p.same_as(&b) {
        return Err(Error::invalid(
            "backup",
            format!(
                "{} and {} are the same storage; the backup must be a separate copy (another file, store or schema)",
                redact_url(backup),
                redact_url(primary)
            ),
        ));
    }
    Ok(())
}

#[cfg(all(test, feature = "postgres"))]
mod tests {
    use super::*;

    fn storage(url: &str) -> Storage {
        Storage::of(&StoreUrl::parse(url).unwrap(), url).unwrap()
    }

    #[test]
    fn postgres_urls_are_one_storage_only_for_one_server_database_and_schema() {
        let base = storage("postgres://u@db.example/logs");
        for same in [
            "postgres://v:pw@DB.example:5432/logs",
            "postgres://u@db.example/logs?synclog_schema=synclog",
            "postgres://u@other.example,db.example/logs",
        ] {
            assert!(base.same_as(&storage(same)), "{same}");
        }
        for other in [
            "postgres://u@db.example/logs?synclog_schema=second",
            "postgres://u@db.example/other",
            "postgres://u@db.example:5433/logs",
            "postgres://u@elsewhere.example/logs",
        ] {
            assert!(!base.same_as(&storage(other)), "{other}");
        }
    }
}
