#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod cases;
pub mod child;
pub mod cross;
pub mod fault;
pub mod harness;
pub mod memory;
pub mod powercut;
mod runner;

pub use harness::{Faults, Harness, Location};
pub use runner::{
    case_deadline, check, check_cases, run, run_skipped, Outcome, DEADLINE_ENV, DEFAULT_DEADLINE,
};
