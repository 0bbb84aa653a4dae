//! # synclog-core
//!
//! The record model, validation, canonical encoding and checksums, the [`LogStore`]
//! contract, durability levels, the error type and the group-commit helper shared by
//! synclog's storage engines.
//!
//! ```
//! use synclog_core::{LogId, LogRecord, NewLog, Status};
//! let log = NewLog::new("orders-import", Status::Partial).counts(10, 9, 1);
//! log.validate()?;
//! let rec = LogRecord::seal(LogId::MIN, chrono::Utc::now(), log)?;
//! assert!(rec.is_intact());
//! # Ok::<(), synclog_core::Error>(())
//! ```
#![deny(missing_docs)]

pub mod canonical;
pub mod deadline;
pub mod durable;
pub mod error;
pub mod follow;
pub mod group;
pub mod guarded;
pub mod id;
pub mod kv;
pub mod memory;
pub mod query;
pub mod record;
pub mod retention;
pub mod run;
pub mod runtime;
pub mod status;
pub mod store;
pub mod timefmt;
pub mod url;
pub mod validate;
pub mod verify;

pub use canonical::{Attrs, Checksum};
pub use error::{BoxError, Error, ErrorKind, Result};
pub use follow::Follower;
pub use query::{AttrEq, Filter, JobSummary, StatusCounts, Summary, TimeRange};
pub use record::{IdRange, LogId, LogRecord, NewLog, Status, Timestamp};
pub use retention::{Policy, PruneMarker, PrunePlan, PruneReport};
pub use run::{Appended, Committed, Run, RunScan};
pub use store::{
    Capabilities, CheckpointMode, CheckpointReport, CorruptRecord, Durability, ImportConflict, ImportReport,
    LogStore, LogStoreExt, Scan, SharedStore, VerifyOptions, VerifyReport,
};
pub use url::redact_url;
pub use validate::{Valid, ValidBatch, ValidRecords};
