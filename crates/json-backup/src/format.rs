//! The JSON-lines format.
//!
//! ```text
//! {"synclog":"jsonl","version":1}
//! {"id":1,"recorded_at":"2026-11-24T23:08:50.123456Z","job":"crm","status":"succeeded",...,"attrs":{...},"checksum":"0a1b2c3d"}
//! {"id":2,...}
//! {"synclog_commit":2}
//! ```
//!
//! The first line is the header. Every record is one [`LogRecord`] as a JSON object with
//! its checksum (CRC-32C of the canonical encoding, see `synclog_core::canonical`), so `jq`
//! or Python's `json` read every line and each line can be checked on its own.
//!
//! Records are written in groups (one group commit, one import), each ended by a commit
//! line `{"synclog_commit":N}` naming how many lines the group has. A group counts only
//! once its commit line is in the file: on open, a trailing group without one (a write cut
//! short by a crash) is moved aside whole, so a batch is never half there.

use serde::{Deserialize, Serialize};
use synclog_core::{Error, LogRecord, Result};

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The header line, newline included.
pub fn header_line() -> Vec<u8> {
    format!("{{\"synclog\":\"jsonl\",\"version\":{FORMAT_VERSION}}}\n").into_bytes()
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    synclog: String,
    version: u32,
}

/// Checks the header line (without its newline).
pub fn check_header(line: &[u8], file: &str) -> Result<()> {
    let header: Header = serde_json::from_slice(line).map_err(|_| {
        Error::corrupt(
            file,
            "the first line is not a synclog JSON-lines header; is this a synclog backup?",
        )
    })?;
    if header.synclog != "jsonl" {
        return Err(Error::corrupt(
            file,
            format!("header names format {:?}, not \"jsonl\"", header.synclog),
        ));
    }
    if header.version > FORMAT_VERSION {
        return Err(Error::Unsupported {
            engine: "json",
            what: format!(
                "format version {} of {file} (this synclog reads {FORMAT_VERSION}); upgrade synclog",
                header.version
            ),
        });
    }
    Ok(())
}

/// The prefix of a commit line.
const COMMIT_PREFIX: &[u8] = b"{\"synclog_commit\":";

/// Appends the commit line of a group of `lines` lines to `out`.
pub fn encode_commit(lines: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("{{\"synclog_commit\":{lines}}}\n").as_bytes());
}

/// The line count of a commit line (without its newline), or `None` if `line` is not one.
pub fn commit_count(line: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(COMMIT_PREFIX)?.strip_suffix(b"}")?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

/// Appends `rec` as one line (newline included) to `out`.
pub fn encode(rec: &LogRecord, out: &mut Vec<u8>) -> Result<()> {
    serde_json::to_writer(&mut *out, rec).map_err(|e| Error::Backend {
        engine: "json",
        context: format!("encoding log {}", rec.id),
        source: Box::new(e),
    })?;
    out.push(b'\n');
    Ok(())
}

/// Parses one line (without its newline).
pub fn decode(line: &[u8]) -> std::result::Result<LogRecord, serde_json::Error> {
    serde_json::from_slice(line)
}
