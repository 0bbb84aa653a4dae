//! The tokio runtime synclog's async API runs on.
//!
//! Engines do their file and database work on the runtime's blocking threads and their
//! group commits and watches in its tasks, so every call of the async API must come from
//! inside a tokio runtime (a `#[tokio::main]` program, a task, or a thread that entered one
//! with [`tokio::runtime::Runtime::enter`]). Outside one, the call returns
//! [`Error::NoRuntime`] instead of panicking; programs without a runtime use the facade's
//! `synclog::blocking` API.

use tokio::runtime::Handle;

use crate::error::{Error, Result};

/// The runtime of the calling thread, or [`Error::NoRuntime`] naming `operation` when the
/// thread is not inside a tokio runtime.
///
/// ```
/// let err = synclog_core::runtime::current("reading logs").unwrap_err();
/// assert_eq!(err.kind(), synclog_core::ErrorKind::Unsupported);
/// ```
pub fn current(operation: &'static str) -> Result<Handle> {
    Handle::try_current().map_err(|_| Error::NoRuntime { operation })
}
