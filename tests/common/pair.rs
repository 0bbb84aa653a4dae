//! A guarded pair in a temporary directory: the SQLite primary `primary.db` and the
//! JSON-lines backup `backup.jsonl`, opened through `synclog::open_guarded`. Each test file
//! adds the helpers it needs in an `impl Pair` of its own.

use std::path::PathBuf;

use synclog::{Guarded, GuardedOptions};

pub struct Pair {
    _dir: tempfile::TempDir,
    pub primary: PathBuf,
    pub backup: PathBuf,
}

impl Pair {
    pub fn new() -> Pair {
        let dir = tempfile::tempdir().unwrap();
        Pair {
            primary: dir.path().join("primary.db"),
            backup: dir.path().join("backup.jsonl"),
            _dir: dir,
        }
    }

    /// The primary's and the backup's URLs.
    pub fn urls(&self) -> (String, String) {
        (
            format!("sqlite://{}", self.primary.display()),
            format!("json://{}", self.backup.display()),
        )
    }

    /// The pair, guarded with default options.
    pub async fn open(&self) -> Guarded {
        let (p, b) = self.urls();
        synclog::open_guarded(&p, &b, GuardedOptions::default())
            .await
            .unwrap()
    }
}
