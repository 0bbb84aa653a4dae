//! The guard's watermark: a small file saying up to which id both copies of a pair were
//! last found equal, so that opening the pair compares the copies' ends and what came
//! after, not the whole history.
//!
//! The file is a cache of a fact the copies themselves prove: a missing, damaged or
//! foreign watermark (another pair's) is ignored, and the open compares every record.
//! It is written only after a repairing comparison left the copies equal, and lowered
//! (or removed) before the guard relies on a copy that missed records at or below it, so
//! a crash at any point leaves a watermark that is still true or none.
//!
//! Format (text, one item a line): `synclog-guard-watermark 1`, `primary <describe>`,
//! `backup <describe>`, `equal-up-to <id>`, `crc32c <hex of the CRC-32C of the lines
//! above, newlines included>`.

use std::path::{Path, PathBuf};

const MAGIC: &str = "synclog-guard-watermark 1";

/// Where a pair keeps its watermark, and which pair it belongs to.
#[derive(Debug, Clone)]
pub(crate) struct Watermark {
    path: PathBuf,
    primary: String,
    backup: String,
}

/// Why a watermark was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unusable {
    /// No file: the first open of this pair (or the watermark was removed).
    Missing,
    /// The file is there but is not a watermark of this pair that checks out.
    Rejected(String),
}

impl Watermark {
    pub(crate) fn new(path: PathBuf, primary: String, backup: String) -> Watermark {
        Watermark {
            path,
            primary,
            backup,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn body(&self, up_to: u64) -> String {
        format!(
            "{MAGIC}\nprimary {}\nbackup {}\nequal-up-to {up_to}\n",
            one_line(&self.primary),
            one_line(&self.backup)
        )
    }

    /// The id up to which the copies were last found equal.
    pub(crate) fn read(&self) -> Result<u64, Unusable> {
        let text = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Unusable::Missing),
            Err(e) => return Err(Unusable::Rejected(format!("cannot be read: {e}"))),
        };
        let text = String::from_utf8(text).map_err(|_| Unusable::Rejected("not text".into()))?;
        let Some((body, crc_line)) = text.trim_end_matches('\n').rsplit_once('\n') else {
            return Err(Unusable::Rejected("too short".into()));
        };
        let body = format!("{body}\n");
        let stored = crc_line
            .strip_prefix("crc32c ")
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
            .ok_or_else(|| Unusable::Rejected("no checksum line".into()))?;
        if crc32c::crc32c(body.as_bytes()) != stored {
            return Err(Unusable::Rejected("its checksum does not match".into()));
        }
        let up_to = body
            .lines()
            .find_map(|l| l.strip_prefix("equal-up-to "))
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| Unusable::Rejected("no equal-up-to line".into()))?;
        if body != self.body(up_to) {
            return Err(Unusable::Rejected(
                "it belongs to another pair of copies (or another version)".into(),
            ));
        }
        Ok(up_to)
    }

    /// Saves `up_to` durably: written to a temporary file, synced, renamed over the old
    /// one, and the directory synced.
    pub(crate) async fn write(&self, up_to: u64) -> std::io::Result<()> {
        let body = self.body(up_to);
        let text = format!("{body}crc32c {:08x}\n", crc32c::crc32c(body.as_bytes()));
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || crate::durable::replace(&path, text.as_bytes()))
            .await
            .map_err(std::io::Error::other)?
    }

    /// Removes the watermark (the next open compares every record). A watermark that
    /// cannot be removed is reported by the caller.
    pub(crate) async fn remove(&self) -> std::io::Result<()> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => crate::durable::sync_parent(&path),
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

/// A description on one line (a describe() string has none, but a path could).
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(dir: &Path) -> Watermark {
        Watermark::new(dir.join("w"), "sqlite:a.db".into(), "json:a.jsonl".into())
    }

    #[tokio::test]
    async fn a_written_watermark_reads_back_and_any_change_is_rejected() {
        let dir = std::env::temp_dir().join(format!("synclog-wm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let m = mark(&dir);
        assert_eq!(m.read(), Err(Unusable::Missing));
        m.write(201).await.unwrap();
        assert_eq!(m.read(), Ok(201));

        // Another pair's watermark is not this pair's.
        let other = Watermark::new(dir.join("w"), "sqlite:b.db".into(), "json:a.jsonl".into());
        assert!(matches!(other.read(), Err(Unusable::Rejected(_))));

        // Every single flipped byte is caught.
        let good = std::fs::read(m.path()).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x04;
            std::fs::write(m.path(), &bad).unwrap();
            assert!(m.read().is_err(), "byte {i} flipped was accepted");
        }
        std::fs::write(m.path(), &good[..good.len() / 2]).unwrap();
        assert!(m.read().is_err());

        m.write(7).await.unwrap();
        assert_eq!(m.read(), Ok(7));
        m.remove().await.unwrap();
        assert_eq!(m.read(), Err(Unusable::Missing));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
