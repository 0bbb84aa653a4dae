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
    }
}

/// Opens the store, guarded by the backup unless `--no-backup`.
pub async fn open(args: &StoreArgs) -> Result<Opened> {
    if args.no_backup {
        Ok(Opened::Single(
            synclog::open_url_with(&args.store, &options(args)).await?,
        ))
    } else {
        let g = synclog::open_guarded_with(
            &args.store,
            &args.backup,
            GuardedOptions::default(),
            &options(args),
        )
        .await?;
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
