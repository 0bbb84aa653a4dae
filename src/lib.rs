//! # synclog
//!
//! Durable, verified logs for data-synchronisation runs: one contract ([`LogStore`]),
//! several engines behind it (SQLite, JSON lines, sled, PostgreSQL, memory; cargo features
//! `sqlite`, `json`, `sled`, `postgres`), a guarded store that keeps a verified backup and
//! restores lost records, and the `synclog` command (feature `cli`).
//!
//! An app depends on the engines it uses, without the command's dependencies:
//!
//! ```toml
//! synclog = { version = "0.1", default-features = false, features = ["sqlite", "json"] }
//! ```
//!
//! Open → append → the guarded pair → query → close, in one walk:
//!
//! ```
//! use synclog::prelude::*;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> synclog::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let at = |name: &str| dir.path().join(name).display().to_string();
//! // Any engine by URL, as an app would from its configuration.
//! let store = open_url(&format!("sqlite://{}", at("alone.db"))).await?;
//! let rec = store.append(NewLog::new("crm-contacts", Status::Succeeded).counts(120, 118, 2)).await?;
//! assert_eq!(store.get_required(rec.id).await?, rec); // durable and read back
//! store.close().await?;
//!
//! // The guarded default: SQLite guarded by a JSON-lines backup. Every append is durable in
//! // both copies (or in one, and copied over when the other is back); a copy that is lost
//! // or damaged is restored from the other at the next open or `check`.
//! let pair = open_guarded(
//!     &format!("sqlite://{}", at("logs.db")),
//!     &format!("json://{}", at("logs.jsonl")),
//!     GuardedOptions::default(),
//! )
//! .await?;
//! let run = pair.start_run(NewLog::new("erp-orders", Status::Started), Durability::PowerLoss).await?;
//! let key = run.record.run.clone().expect("a run key was made");
//! pair.finish_run(&key, NewLog::new("erp-orders", Status::Failed).message("HTTP 503"), Durability::PowerLoss)
//!     .await?;
//! pair.append(NewLog::new("crm-contacts", Status::Succeeded).attr("region", "eu")).await?;
//!
//! // Queries: filters, counts, a summary per job.
//! assert_eq!(pair.count(&Filter::status(Status::Failed)).await?, 1);
//! let eu = Filter::default().attr(AttrEq::new("region", "eu"));
//! let eu = pair.scan(&Scan::filtered(eu, 20)).await?;
//! assert_eq!(eu[0].attr("region")?, Some(serde_json::json!("eu")));
//! let summary = pair.summary(&Filter::default()).await?;
//! assert!(!summary.all_last_succeeded()); // erp-orders failed last
//!
//! // Both copies hold the same records, intact.
//! assert!(pair.check(false).await?.in_sync());
//! pair.close().await?;
//! # Ok(()) }
//! ```
//!
//! Programs without an async runtime use [`blocking`]. Recovery is never silent: the
//! library reports through [`tracing`](https://docs.rs/tracing) (the README's section
//! "What it tells you: `tracing` events" lists targets, messages and fields).
#![deny(missing_docs)]

mod aside;
/// What `synclog bench` and the criterion benches measure with; not part of the library's
/// API (the `cli` feature).
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod bench;
pub mod blocking;
mod open;

/// What ordinary use needs, traits included: `use synclog::prelude::*;`.
///
/// ```
/// use synclog::prelude::*;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let url = format!("sqlite://{}/logs.db", dir.path().display());
/// let store = open_url(&url).await?;
/// let rec = store.append(NewLog::new("crm-contacts", Status::Succeeded)).await?;
/// assert_eq!(store.scan(&Scan::default()).await?, vec![rec]);
/// store.close().await?;
/// # Ok(()) }
/// ```
pub mod prelude {
    pub use crate::{
        open_guarded, open_url, AttrEq, Durability, Error, ErrorKind, Filter, Guarded, GuardedOptions, LogId,
        LogRecord, LogStore, LogStoreExt, NewLog, Result, RunScan, Scan, Status,
    };
}

pub use aside::set_aside;
pub use open::{
    open_guarded, open_guarded_with, open_url, open_url_with, split_retain, OpenOptions, StoreUrl,
};
pub use synclog_core::guarded::{
    Copies, CopyProblem, Guarded, GuardedOptions, Receipt, ReconcileReport, Side, Unavailable,
};
pub use synclog_core::{follow, guarded, memory, query, retention, run, runtime, Appended};
pub use synclog_core::{
    redact_url, AttrEq, Attrs, BoxError, Capabilities, CheckpointMode, CheckpointReport, Checksum, Committed,
    CorruptRecord, Durability, Error, ErrorKind, Filter, Follower, IdRange, ImportConflict, ImportReport,
    JobSummary, LogId, LogRecord, LogStore, LogStoreExt, NewLog, Policy, PruneMarker, PrunePlan, PruneReport,
    Result, Run, RunScan, Scan, SharedStore, Status, StatusCounts, Summary, TimeRange, Timestamp, ValidBatch,
    ValidRecords, VerifyOptions, VerifyReport,
};
// The engine kit: what engines are built from. Public for engine authors (through
// `synclog_core`), kept off this crate's front page.
#[doc(hidden)]
pub use synclog_core::{
    canonical, deadline, durable, error, group, id, record, status, store, timefmt, url, validate, verify,
};

/// The SQLite engine.
#[cfg(feature = "sqlite")]
pub use synclog_sqlite as sqlite;

/// The JSON-lines engine.
#[cfg(feature = "json")]
pub use synclog_json as json;

/// The sled engine.
#[cfg(feature = "sled")]
pub use synclog_sled as sled;

/// The PostgreSQL engine.
#[cfg(feature = "postgres")]
pub use synclog_postgres as postgres;
