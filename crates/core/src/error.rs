//! The one error type of synclog: kinds a caller can act on, sources kept.

use std::fmt;

use crate::id::LogId;

/// A boxed error from an engine or library, kept as the source of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with synclog's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, as a kind a caller can match on (see [`Error::kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input broke a validation rule; nothing was written.
    InvalidInput,
    /// The requested record or storage does not exist.
    NotFound,
    /// A different record already exists under the same id; nothing was overwritten.
    Conflict,
    /// Stored data failed its checksum or could not be decoded.
    Corrupt,
    /// Another process or handle holds the storage's lock.
    Locked,
    /// The storage was busy (for example `SQLITE_BUSY`); retrying may succeed.
    Busy,
    /// The store was closed.
    Closed,
    /// The engine cannot do what was asked (a durability level, a hook).
    Unsupported,
    /// An operating-system I/O error.
    Io,
    /// Any other engine error, with its source.
    Backend,
    /// The store refused the log by a rule of runs or idempotency keys (its idempotency
    /// key is stored with other content, or its run has finished); nothing was written.
    Refused,
}

/// The error of every synclog operation.
///
/// Messages say what happened and, where it helps, what to do. Match on
/// [`Error::kind`], never on message text. A URL with a password never appears here:
/// engines describe stores with [`crate::redact_url`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A log (or a record being imported) broke a validation rule. Nothing of its batch was written.
    #[error("invalid {field}{}: {reason}", index.map(|i| format!(" in log #{i} of the batch")).unwrap_or_default())]
    InvalidInput {
        /// The field that broke the rule (`job`, `message`, `attrs`, ...).
        field: &'static str,
        /// The position of the offending log inside its batch, when there was a batch.
        index: Option<usize>,
        /// What rule it broke.
        reason: String,
    },
    /// No record with this id.
    #[error("log {id} not found")]
    NotFound {
        /// The id that was asked for.
        id: LogId,
    },
    /// The store itself (its file, directory or database) does not exist. A read-only
    /// open reports this rather than create anything.
    #[error("{store} does not exist: {detail}")]
    StoreNotFound {
        /// The store, by the path or URL it was asked for (passwords redacted).
        store: String,
        /// What to do.
        detail: String,
    },
    /// A different record is stored under this id.
    #[error("conflict at log {id}: {detail}")]
    Conflict {
        /// The contested id.
        id: LogId,
        /// What differs.
        detail: String,
    },
    /// Stored data failed its checksum or could not be decoded.
    #[error("corrupt data in {location}: {detail}")]
    Corrupt {
        /// Which store, file, line or id.
        location: String,
        /// What was wrong.
        detail: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// Another process or handle holds the lock on the storage.
    #[error("{resource} is locked: {detail}")]
    Locked {
        /// The locked file or database.
        resource: String,
        /// Who holds it and what to do.
        detail: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The storage stayed busy after bounded retries; retrying later may succeed.
    #[error("{resource} is busy: {detail}")]
    Busy {
        /// The busy file or database.
        resource: String,
        /// What was attempted.
        detail: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The store was closed; open it again.
    #[error("the store {store} is closed")]
    Closed {
        /// Which store.
        store: String,
    },
    /// The engine does not support this.
    #[error("{engine} does not support {what}")]
    Unsupported {
        /// The engine's name.
        engine: &'static str,
        /// What was asked for.
        what: String,
    },
    /// An I/O error, with what was being done.
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What was being done, naming the file.
        context: String,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// The idempotency key is already stored, with other content. Nothing was written.
    #[error("idempotency key {key:?} is already stored as log {stored} with other content; nothing was written (use a new key for a new log)")]
    IdempotencyConflict {
        /// The key.
        key: String,
        /// The id of the record stored under it.
        stored: LogId,
    },
    /// The run has finished (its terminal record is stored): no record joins it after that.
    /// Nothing was written.
    #[error("run {run:?} has finished ({status} as log {id}); nothing was written")]
    RunFinished {
        /// The run key.
        run: String,
        /// Its terminal status.
        status: crate::status::Status,
        /// The id of its terminal record.
        id: LogId,
    },
    /// The async API was called from a thread outside a tokio runtime, where it cannot run
    /// (see [`crate::runtime`]). Nothing was done.
    #[error("{operation} needs a tokio runtime and was called outside one; nothing was done (call it inside one, such as #[tokio::main], or use synclog::blocking)")]
    NoRuntime {
        /// What was asked for.
        operation: &'static str,
    },
    /// Any other engine error.
    #[error("{engine}: {context}: {source}")]
    Backend {
        /// The engine's name.
        engine: &'static str,
        /// What was being done.
        context: String,
        /// The engine's error.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// The kind of this error, for matching.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidInput { .. } => ErrorKind::InvalidInput,
            Error::NotFound { .. } | Error::StoreNotFound { .. } => ErrorKind::NotFound,
            Error::Conflict { .. } => ErrorKind::Conflict,
            Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::Locked { .. } => ErrorKind::Locked,
            Error::Busy { .. } => ErrorKind::Busy,
            Error::Closed { .. } => ErrorKind::Closed,
            Error::Unsupported { .. } | Error::NoRuntime { .. } => ErrorKind::Unsupported,
            Error::Io { .. } => ErrorKind::Io,
            Error::Backend { .. } => ErrorKind::Backend,
            Error::IdempotencyConflict { .. } | Error::RunFinished { .. } => ErrorKind::Refused,
        }
    }

    /// Whether the same call may succeed if retried later (busy or locked storage).
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind(), ErrorKind::Busy | ErrorKind::Locked)
    }

    /// Shorthand for an [`Error::InvalidInput`] without a batch index.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            field,
            index: None,
            reason: reason.into(),
        }
    }

    /// The [`Error::Unsupported`] of a write (`what`: commit, import, repair, sync,
    /// checkpoint, ...) through a handle opened read-only. Nothing was written.
    pub fn read_only(engine: &'static str, store: &str, what: &str) -> Self {
        Error::Unsupported {
            engine,
            what: format!(
                "{what} through a read-only handle of {store}; nothing was written: open it without read_only to write"
            ),
        }
    }

    /// Shorthand for an [`Error::Io`].
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Shorthand for an [`Error::Corrupt`] without a source.
    pub fn corrupt(location: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            location: location.into(),
            detail: detail.into(),
            source: None,
        }
    }

    /// Sets the batch index of an [`Error::InvalidInput`]; other errors pass through.
    pub fn at_index(self, i: usize) -> Self {
        match self {
            Error::InvalidInput { field, reason, .. } => Error::InvalidInput {
                field,
                index: Some(i),
                reason,
            },
            other => other,
        }
    }

    /// A copy of this error with the same kind and message, for answering every caller
    /// of a failed group commit. The source chain is kept as text.
    pub fn replicate(&self) -> Self {
        fn text(e: &Option<BoxError>) -> Option<BoxError> {
            e.as_ref()
                .map(|s| -> BoxError { Box::new(Message(s.to_string())) })
        }
        match self {
            Error::InvalidInput { field, index, reason } => Error::InvalidInput {
                field,
                index: *index,
                reason: reason.clone(),
            },
            Error::NotFound { id } => Error::NotFound { id: *id },
            Error::StoreNotFound { store, detail } => Error::StoreNotFound {
                store: store.clone(),
                detail: detail.clone(),
            },
            Error::Conflict { id, detail } => Error::Conflict {
                id: *id,
                detail: detail.clone(),
            },
            Error::Corrupt {
                location,
                detail,
                source,
            } => Error::Corrupt {
                location: location.clone(),
                detail: detail.clone(),
                source: text(source),
            },
            Error::Locked {
                resource,
                detail,
                source,
            } => Error::Locked {
                resource: resource.clone(),
                detail: detail.clone(),
                source: text(source),
            },
            Error::Busy {
                resource,
                detail,
                source,
            } => Error::Busy {
                resource: resource.clone(),
                detail: detail.clone(),
                source: text(source),
            },
            Error::Closed { store } => Error::Closed { store: store.clone() },
            Error::NoRuntime { operation } => Error::NoRuntime { operation },
            Error::IdempotencyConflict { key, stored } => Error::IdempotencyConflict {
                key: key.clone(),
                stored: *stored,
            },
            Error::RunFinished { run, status, id } => Error::RunFinished {
                run: run.clone(),
                status: *status,
                id: *id,
            },
            Error::Unsupported { engine, what } => Error::Unsupported {
                engine,
                what: what.clone(),
            },
            Error::Io { context, source } => Error::Io {
                context: context.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Error::Backend {
                engine,
                context,
                source,
            } => Error::Backend {
                engine,
                context: context.clone(),
                source: Box::new(Message(source.to_string())),
            },
        }
    }
}

/// A plain-text error, used where a source must be copied.
#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_and_locked_are_retryable_others_are_not() {
        let busy = Error::Busy {
            resource: "db".into(),
            detail: "x".into(),
            source: None,
        };
        assert!(busy.is_retryable());
        assert!(!Error::invalid("job", "empty").is_retryable());
        assert!(!Error::corrupt("f", "bad").is_retryable());
    }

    #[test]
    fn replicate_keeps_kind_and_message() {
        let e = Error::io("writing x", std::io::Error::other("disk full"));
        let copy = e.replicate();
        assert_eq!(copy.kind(), ErrorKind::Io);
        assert_eq!(copy.to_string(), e.to_string());
    }

    #[test]
    fn invalid_input_names_its_batch_position() {
        let e = Error::invalid("job", "must not be empty").at_index(3);
        assert!(e.to_string().contains("log #3"));
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }
}
