//! Ids of stored logs, their ranges, and timestamps: plain values every other module
//! builds on (parsing them from input is in [`crate::validate`]).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A UTC instant. synclog keeps timestamps at microsecond precision (every engine can store that).
pub type Timestamp = DateTime<Utc>;

/// The id of a stored log: greater than zero, assigned by the store, strictly increasing
/// in commit order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct LogId(u64);

impl LogId {
    /// The smallest id.
    pub const MIN: LogId = LogId(1);
    /// The largest id (engines store ids as signed 64-bit integers).
    pub const MAX: LogId = LogId(i64::MAX as u64);

    /// `Some` when `n` is a valid id (1 ..= `i64::MAX`).
    pub fn new(n: u64) -> Option<LogId> {
        (1..=Self::MAX.0).contains(&n).then_some(LogId(n))
    }

    /// The id as a number.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The next id, if there is one.
    pub fn next(self) -> Option<LogId> {
        LogId::new(self.0 + 1)
    }
}

/// An inclusive range of ids, `first..=last` (`first <= last`): how reports name runs of
/// ids, so that their size does not grow with the width of a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IdRange {
    /// The first id of the range.
    pub first: LogId,
    /// The last id of the range (inclusive).
    pub last: LogId,
}

impl IdRange {
    /// `first..=last`, or `None` when `first > last`.
    pub fn new(first: LogId, last: LogId) -> Option<IdRange> {
        (first <= last).then_some(IdRange { first, last })
    }

    /// The range holding `id` alone.
    pub fn single(id: LogId) -> IdRange {
        IdRange { first: id, last: id }
    }

    /// How many ids it holds (at least 1).
    pub fn count(&self) -> u64 {
        self.last.0 - self.first.0 + 1
    }

    /// Whether `id` is inside.
    pub fn contains(&self, id: LogId) -> bool {
        self.first <= id && id <= self.last
    }

    /// The ids where `self` and `other` overlap, if they do.
    pub fn intersect(&self, other: &IdRange) -> Option<IdRange> {
        IdRange::new(self.first.max(other.first), self.last.min(other.last))
    }
}

impl fmt::Display for IdRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}..={}", self.first, self.last)
        }
    }
}

/// The ids present in two sorted, non-overlapping range lists (both in ascending order).
pub fn intersect_ranges(a: &[IdRange], b: &[IdRange]) -> Vec<IdRange> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        if let Some(r) = a[i].intersect(&b[j]) {
            out.push(r);
        }
        if a[i].last < b[j].last {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

impl From<LogId> for u64 {
    fn from(id: LogId) -> u64 {
        id.0
    }
}

impl fmt::Display for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
