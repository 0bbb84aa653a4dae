//! The status of a log: how a sync run (or step) ended, or that it started (parsing it
//! from input is in [`crate::validate`]).

use std::fmt;

use serde::{Deserialize, Serialize};

/// How a sync run (or step) ended, or that it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The run started and has not finished yet.
    Started,
    /// Every item was synced.
    Succeeded,
    /// The run failed.
    Failed,
    /// Some items were synced, some failed.
    Partial,
    /// The run decided there was nothing to do.
    Skipped,
    /// A report from a run that is still going (only in a run's timeline, see
    /// [`NewLog::run`](crate::record::NewLog::run)).
    Progress,
    /// The run was given up for dead: started and never finished (only in a run's
    /// timeline; `synclog abandon`).
    Abandoned,
}

impl Status {
    /// Every status, in code order.
    pub const ALL: [Status; 7] = [
        Status::Started,
        Status::Succeeded,
        Status::Failed,
        Status::Partial,
        Status::Skipped,
        Status::Progress,
        Status::Abandoned,
    ];

    /// Whether this status ends a run: succeeded, failed, partial, skipped or abandoned.
    /// After a run's terminal record, no other record joins that run.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Status::Started | Status::Progress)
    }

    /// Whether a log with this status must belong to a run (progress and abandoned only
    /// make sense in a run's timeline).
    pub fn needs_run(self) -> bool {
        matches!(self, Status::Progress | Status::Abandoned)
    }

    /// The lowercase name used in every engine and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Started => "started",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Partial => "partial",
            Status::Skipped => "skipped",
            Status::Progress => "progress",
            Status::Abandoned => "abandoned",
        }
    }

    /// The status with this canonical code.
    pub fn from_code(code: u8) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.code() == code)
    }

    /// The one-byte code used in the canonical encoding.
    pub fn code(self) -> u8 {
        match self {
            Status::Started => 1,
            Status::Succeeded => 2,
            Status::Failed => 3,
            Status::Partial => 4,
            Status::Skipped => 5,
            Status::Progress => 6,
            Status::Abandoned => 7,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so that table columns (`{:<9}`) line up.
        f.pad(self.as_str())
    }
}
