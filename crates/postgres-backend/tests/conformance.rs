//! The conformance suite against a real PostgreSQL server, read from
//! `SYNCLOG_TEST_POSTGRES_URL`. Each case gets its own schema, dropped afterwards. When the
//! variable is unset, a notice is printed and every case shows as ignored; `.ci/run` sets
//! it, so CI always runs them (and fails if the server cannot be reached).

use std::sync::Arc;

use synclog_conformance::{Faults, Harness, Location};
use synclog_core::{Error, LogId, LogStore, Result};
use synclog_postgres::{PgOptions, PgStore};

const URL_VAR: &str = "SYNCLOG_TEST_POSTGRES_URL";

struct PgHarness {
    url: String,
}

fn schema_of(at: &Location) -> &str {
    at.address.rsplit_once("synclog_schema=").map_or("", |(_, s)| s)
}

async fn admin(url: &str, sql: &str) -> Result<()> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| Error::Backend {
            engine: "postgres",
            context: "connecting as the test harness".into(),
            source: Box::new(e),
        })?;
    tokio::spawn(connection);
    client.batch_execute(sql).await.map_err(|e| Error::Backend {
        engine: "postgres",
        context: sql.into(),
        source: Box::new(e),
    })
}

#[async_trait::async_trait]
impl Harness for PgHarness {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn create(&self) -> Result<Location> {
        let schema = format!("synclog_test_{}_{}", std::process::id(), fastrand::u32(..));
        let sep = if self.url.contains('?') { '&' } else { '?' };
        Ok(Location::at(format!("{}{sep}synclog_schema={schema}", self.url)))
    }

    async fn open(&self, at: &Location) -> Result<Arc<dyn LogStore>> {
        Ok(Arc::new(
            PgStore::connect(&at.address, PgOptions::default()).await?,
        ))
    }

    fn faults(&self) -> Faults {
        Faults::ALL
    }

    fn cross_process(&self) -> bool {
        true
    }

    async fn corrupt_record(&self, at: &Location, id: LogId) -> Result<()> {
        let s = schema_of(at);
        admin(
            &self.url,
            &format!("UPDATE \"{s}\".logs SET message = message || ' (damaged)' WHERE id = {id}"),
        )
        .await
    }

    async fn remove_record(&self, at: &Location, id: LogId) -> Result<()> {
        admin(
            &self.url,
            &format!("DELETE FROM \"{}\".logs WHERE id = {id}", schema_of(at)),
        )
        .await
    }

    async fn destroy(&self, at: &Location) -> Result<()> {
        admin(
            &self.url,
            &format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", schema_of(at)),
        )
        .await
    }

    async fn cleanup(&self, at: &Location) -> Result<()> {
        self.destroy(at).await
    }
}

fn main() -> std::process::ExitCode {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => synclog_conformance::run(PgHarness { url }),
        _ => {
            eprintln!("notice: {URL_VAR} is not set; skipping the PostgreSQL conformance suite");
            eprintln!("notice: e.g. {URL_VAR}=postgres://postgres@127.0.0.1:5432/test cargo test -p synclog-postgres");
            synclog_conformance::run_skipped(&format!("{URL_VAR} is not set"))
        }
    }
}
