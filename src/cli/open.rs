//! Opening the stores the arguments name.

use std::sync::Arc;

use synclog::{Guarded, GuardedOptions, LogStore, OpenOptions, Result};

use super::StoreArgs;

/// The store a command works on: guarded (with a backup) or alone.
pub enum Opened {
    Guarded(Box<Guarded>),
    Single(Arc<dyn LogStore>),
}

impl Opened {
    pub fn store(&self) -> &dyn LogStore {
        match self {
            Opened::Guarded(g) => &**g,
            Opened::Single(s) => &**s,
        }
    }

    pub async fn close(self) -> Result<()> {
        self.store().close().await
    }
}

pub fn options(args: &StoreArgs) -> OpenOptions {
    OpenOptions {
        lock_wait: args.lock_wait(),
        ..OpenOptions::default()
    }
}

/// Open options for a command that only reads: no writer lock, nothing created or repaired.
pub fn read_options(args: &StoreArgs) -> OpenOptions {
    OpenOptions {
        read_only: true,
        ..options(args)
    }
}

/// Opens the store, guarded by the backup unless `--no-backup`.
pub async fn open(args: &StoreArgs) -> Result<Opened> {
    open_with(args, &options(args)).await
}

/// Opens the store for a command that only reads (list, show, verify, export): it takes
/// no writer lock, so it neither waits for a writer nor makes one wait; it creates and
/// repairs nothing (copies that differ are reported by verify and check).
pub async fn open_read_only(args: &StoreArgs) -> Result<Opened> {
    open_with(args, &read_options(args)).await
}

async fn open_with(args: &StoreArgs, options: &OpenOptions) -> Result<Opened> {
    if args.no_backup {
        Ok(Opened::Single(
            synclog::open_url_with(&args.store, options).await?,
        ))
    } else {
        let g =
            synclog::open_guarded_with(&args.store, &args.backup, GuardedOptions::default(), options).await?;
        let report = g.open_report();
        if report.restored_to_primary > 0 || report.copied_to_backup > 0 {
            tracing::warn!(
                restored_to_primary = report.restored_to_primary,
                copied_to_backup = report.copied_to_backup,
                "the copies were out of step at open and have been reconciled"
            );
        }
        Ok(Opened::Guarded(Box::new(g)))
    }
}
