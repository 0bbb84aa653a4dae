//! Exit codes, documented in `synclog --help` and README.

use synclog::{Error, ErrorKind};

/// Success.
pub const OK: u8 = 0;
/// `verify` or `check` found problems (listed on stdout).
pub const PROBLEMS: u8 = 1;
/// Bad usage or input: an unknown flag or URL scheme, an invalid status, bad JSON.
pub const USAGE: u8 = 2;
/// The requested log does not exist, or a read-only command found no store.
pub const NOT_FOUND: u8 = 3;
/// The store is locked or busy (another process); retry later or wait longer (--lock-wait).
/// Also a checkpoint that could not copy every WAL frame.
pub const BUSY: u8 = 4;
/// An I/O or storage error, or a command that succeeded but could not write its output.
pub const STORAGE: u8 = 5;
/// Stored data is corrupt, or two copies conflict.
pub const CORRUPT: u8 = 6;
/// Refused by a rule of runs or idempotency keys: the key is stored with other content, or
/// the run has finished. Nothing was written.
pub const REFUSED: u8 = 7;

/// The exit code for an error.
pub fn code_for(e: &Error) -> u8 {
    match e.kind() {
        ErrorKind::InvalidInput | ErrorKind::Unsupported => USAGE,
        ErrorKind::NotFound => NOT_FOUND,
        ErrorKind::Locked | ErrorKind::Busy => BUSY,
        ErrorKind::Corrupt | ErrorKind::Conflict => CORRUPT,
        ErrorKind::Refused => REFUSED,
        _ => STORAGE,
    }
}

/// What to do about an error, when there is something to say.
pub fn hint(e: &Error) -> Option<&'static str> {
    match e.kind() {
        ErrorKind::Locked => {
            Some("another process (or connection) holds the store's lock; wait for it, raise --lock-wait, or use --backup/--store to pick other files")
        }
        ErrorKind::Busy => Some("the store stayed busy for the whole --lock-wait (other writers, or a server at its connection limit); retry, or raise --lock-wait"),
        ErrorKind::Corrupt => Some("run `synclog verify --deep` to list the damage and `synclog check --repair` to restore from the backup"),
        _ => None,
    }
}

/// The help text's section on exit codes.
pub const HELP: &str = "Exit codes:
  0  ok
  1  problems found (verify, check)
  2  bad usage or input (unknown URL scheme, invalid status, --attrs not a JSON object)
  3  the log asked for does not exist, or a read-only command found no store
  4  the store is locked or busy: another process holds it; retry or raise --lock-wait;
     or a checkpoint left WAL frames uncopied (a reader holds them)
  5  I/O or storage error, or the output could not be written (full disk, closed pipe);
     an acknowledged append still exits 0 and warns on stderr
  6  corrupt data, or the copies conflict
  7  refused: the idempotency key is stored with another log, or the run has finished;
     nothing was written";
