//! Setting a damaged copy's files aside, so that it can be rebuilt from the other copy.

use std::path::{Path, PathBuf};

use synclog_core::{redact_url, Error, Result};

use crate::StoreUrl;

/// Renames every file of the store `url` names to `NAME.damaged-<UTC time>` (nothing is
/// deleted), and syncs the directory, so that the next open creates the store anew and a
/// guarded pair can rebuild it from its other copy. Returns the new paths.
///
/// SQLite: the database and its `-wal`, `-shm` and `-journal` files; JSON lines: the active
/// file, its sealed segments and its side files (`.format`, `.prunes`, `.hwm`, `.idx`);
/// sled: the directory. Stores that are not files (PostgreSQL,
/// memory) are [`Error::Unsupported`]: rebuild those by hand. The store must be closed.
pub fn set_aside(url: &str) -> Result<Vec<PathBuf>> {
    let files: Vec<PathBuf> = match StoreUrl::parse(url)? {
        StoreUrl::Sqlite(path) => ["", "-wal", "-shm", "-journal"]
            .iter()
            .map(|suffix| with_suffix(&path, suffix))
            .collect(),
        // Its side files too (format marker, prune markers, high-water mark, index): a
        // damaged one left in place would stop the rebuilt copy from opening, at every try.
        // The prune markers come back from the other copy.
        #[cfg(feature = "json")]
        StoreUrl::Json { path, .. } => {
            let mut files = synclog_json::store_files(&path)?;
            files.extend(
                [".format", ".prunes", ".hwm", ".idx"]
                    .iter()
                    .map(|s| with_suffix(&path, s)),
            );
            files
        }
        StoreUrl::Sled(path) => vec![path],
        _ => {
            return Err(Error::Unsupported {
                engine: "synclog",
                what: format!(
                "setting {} aside: only file stores can be rebuilt by `check --repair`; rebuild it by hand",
                redact_url(url)
            ),
            })
        }
    };
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
    let mut moved = Vec::new();
    for file in files {
        if std::fs::symlink_metadata(&file).is_err() {
            continue;
        }
        let to = with_suffix(&file, &format!(".damaged-{stamp}"));
        std::fs::rename(&file, &to)
            .map_err(|e| Error::io(format!("setting {} aside as {}", file.display(), to.display()), e))?;
        sync_dir(&to)?;
        moved.push(to);
    }
    Ok(moved)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Makes a rename durable: fsync of the directory that holds `path`.
fn sync_dir(path: &Path) -> Result<()> {
    synclog_core::durable::sync_parent(path)
        .map_err(|e| Error::io(format!("syncing the directory of {}", path.display()), e))
}
