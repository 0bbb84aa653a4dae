//! # synclog-conformance
//!
//! The suite every synclog storage engine must pass. An engine's author implements
//! [`Harness`] and adds one test target:
//!
//! ```toml
//! [[test]]
//! name = "conformance"
//! harness = false
//! ```
//! ```no_run
//! // tests/conformance.rs: the suite over the reference memory engine; an engine's
//! // author passes their own `Harness` instead.
//! use synclog_conformance::memory::MemoryHarness;
//!
//! synclog_conformance::conformance_main!(MemoryHarness);
//! ```
//!
//! Each case becomes a test named `area::case` (`cargo test -p my-engine restore` runs
//! the restore area). A case the engine cannot support is listed as ignored with the
//! reason. See the crate's README for the table of cases.
#![deny(missing_docs)]

pub mod cases;
pub mod child;
pub mod cross;
pub mod fault;
pub mod harness;
pub mod memory;
mod runner;

pub use harness::{Faults, Harness, Location};
pub use runner::{case_deadline, check, run, run_skipped, Outcome, DEADLINE_ENV, DEFAULT_DEADLINE};
