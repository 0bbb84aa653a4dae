//! A large guarded pair for the deployment-scale figures, built fast and kept between
//! runs: a SQLite primary `x.db` and a JSON-lines backup `x.jsonl`, filled by imports of
//! 10,000 sealed records at a time at [`Durability::Process`](crate::Durability) and one
//! final sync (not one fsync per log), plus `alone.db`, a copy of the primary as built,
//! for baselines that write to the SQLite copy alone without putting the pair out of step.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{Error, GuardedOptions, LogStore, OpenOptions, Result};

/// The files of a deployment pair in one directory.
#[derive(Debug, Clone)]
pub struct DeploymentPair {
    dir: PathBuf,
}

/// What [`DeploymentPair::build`] did.
#[derive(Debug, Clone, Copy)]
pub struct Built {
    /// The pair was already built with as many records by an earlier run, and kept.
    pub reused: bool,
    /// Records the primary holds now (the ones built, plus any earlier runs appended).
    pub holds: u64,
    /// How long the build took (zero when reused).
    pub elapsed: Duration,
}

const MARKER: &str = "x.built";

impl DeploymentPair {
    /// The pair in `dir` (nothing is opened or created yet).
    pub fn new(dir: &Path) -> DeploymentPair {
        DeploymentPair {
            dir: dir.to_path_buf(),
        }
    }

    /// `sqlite://DIR/x.db`.
    pub fn primary_url(&self) -> String {
        format!("sqlite://{}/x.db", self.dir.display())
    }

    /// `json://DIR/x.jsonl`.
    pub fn backup_url(&self) -> String {
        format!("json://{}/x.jsonl", self.dir.display())
    }

    /// `sqlite://DIR/alone.db`: the primary as built, for writes to SQLite alone.
    pub fn alone_url(&self) -> String {
        format!("sqlite://{}/alone.db", self.dir.display())
    }

    /// Builds the pair with records `1..=n` unless an earlier build of `n` records is
    /// there (its marker file `x.built` says `n`, and every file exists). A build first
    /// deletes the directory's `x.*` and `alone.*` files, and only them.
    pub async fn build(&self, n: u64) -> Result<Built> {
        let d = &self.dir;
        let built_n = std::fs::read_to_string(d.join(MARKER)).ok();
        let complete = ["x.db", "x.jsonl", "alone.db"].iter().all(|f| d.join(f).exists());
        if complete && built_n.as_deref().map(str::trim) == Some(n.to_string().as_str()) {
            return Ok(Built {
                reused: true,
                holds: self.holds().await?,
                elapsed: Duration::ZERO,
            });
        }
        let start = Instant::now();
        self.clear()?;
        std::fs::create_dir_all(d).map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
        let pair =
            crate::open_guarded(&self.primary_url(), &self.backup_url(), GuardedOptions::default()).await?;
        super::fill(&pair, n).await?;
        pair.close().await?;
        drop(pair);
        // Closed, the primary is whole in its files: copy them as they are.
        for (from, to) in [("x.db", "alone.db"), ("x.db-wal", "alone.db-wal")] {
            if d.join(from).exists() {
                std::fs::copy(d.join(from), d.join(to))
                    .map_err(|e| Error::io(format!("copying {from} to {to} in {}", d.display()), e))?;
            }
        }
        std::fs::write(d.join(MARKER), format!("{n}\n"))
            .map_err(|e| Error::io(format!("writing {MARKER} in {}", d.display()), e))?;
        Ok(Built {
            reused: false,
            holds: n,
            elapsed: start.elapsed(),
        })
    }

    /// Copies the pair's files (as they are now, closed) to `DIR2/NAME.db` and
    /// `DIR2/NAME.jsonl`, for figures that write a lot; returns their URLs. Their first
    /// writing open compares every record, the watermark being the original pair's.
    pub fn copy_to(&self, dir: &Path, name: &str) -> Result<(String, String)> {
        for (from, ext) in [("x.db", "db"), ("x.db-wal", "db-wal"), ("x.jsonl", "jsonl")] {
            let (src, dst) = (self.dir.join(from), dir.join(format!("{name}.{ext}")));
            if src.exists() {
                std::fs::copy(&src, &dst)
                    .map_err(|e| Error::io(format!("copying {} to {}", src.display(), dst.display()), e))?;
            }
        }
        Ok((
            format!("sqlite://{}/{name}.db", dir.display()),
            format!("json://{}/{name}.jsonl", dir.display()),
        ))
    }

    /// How many records the primary holds (its last id: ids run from 1 without gaps).
    async fn holds(&self) -> Result<u64> {
        let options = OpenOptions {
            read_only: true,
            ..OpenOptions::default()
        };
        let store = crate::open_url_with(&self.primary_url(), &options).await?;
        let last = store.last_id().await;
        store.close().await?;
        Ok(last?.map_or(0, |id| id.get()))
    }

    fn clear(&self) -> Result<()> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(format!("listing {}", self.dir.display()), e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(format!("listing {}", self.dir.display()), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("x.") || name.starts_with("alone.") {
                let path = entry.path();
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed.map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
            }
        }
        Ok(())
    }
}
