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
//! ```ignore
//! // tests/conformance.rs
//! synclog_conformance::conformance_main!(MyHarness::new());
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
pub use runner::{run, run_skipped};
