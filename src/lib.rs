//! # synclog
//!
//! Durable, verified logs for data-synchronisation runs: one contract ([`LogStore`]),
//! several engines behind it, a guarded store that keeps a verified backup and restores
//! lost records, and the `synclog` command.
//!
//! Pick an engine by URL, as an app would from its configuration:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> synclog::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let url = format!("sqlite://{}/logs.db", dir.path().display());
//! use synclog::{LogStoreExt, NewLog, Status};
//! let store = synclog::open_url(&url).await?;
//! let rec = store.append(NewLog::new("crm-contacts", Status::Succeeded).counts(120, 118, 2)).await?;
//! assert_eq!(store.get_required(rec.id).await?, rec);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod aside;
pub mod bench;
mod open;

pub use aside::set_aside;
pub use open::{
    open_guarded, open_guarded_with, open_url, open_url_with, split_retain, OpenOptions, StoreUrl,
};
pub use synclog_core::guarded::{
    Copies, CopyProblem, Guarded, GuardedOptions, Receipt, ReconcileReport, Side, Unavailable,
};
pub use synclog_core::*;

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
