//! Opening the stores the arguments name.

use std::sync::Arc;

use synclog::{
    Appended, Copies, Durability, Error, Guarded, GuardedOptions, LogStore, LogStoreExt, NewLog, OpenOptions,
    Result,
};

use super::StoreArgs;

/// The store a command works on: guarded (with a backup) or alone. Cheap to clone.
#[derive(Clone)]
pub enum Opened {
    Guarded(Arc<Guarded>),
    Single(Arc<dyn LogStore>),
}

impl Opened {
    pub fn store(&self) -> &dyn LogStore {
        match self {
            Opened::Guarded(g) => &**g,
            Opened::Single(s) => &**s,
        }
    }

    /// The store as a shared handle (what a follower holds).
    pub fn shared(&self) -> Arc<dyn LogStore> {
        match self {
            Opened::Guarded(g) => g.clone(),
            Opened::Single(s) => s.clone(),
        }
    }

    /// Appends one log at power-loss durability: the record (and whether it was stored
    /// before: a repeat), and for a guarded pair which copies hold it.
    pub async fn append_one(&self, log: NewLog) -> Result<(Appended, Option<Copies>)> {
        match self {
            Opened::Guarded(g) => {
                let receipt = g.append_batch(vec![log], Durability::PowerLoss).await?;
                let copies = receipt.durable_in;
                let repeat = receipt.repeats.first().copied().unwrap_or(false);
                let record = receipt.records.into_iter().next().ok_or_else(|| Error::Backend {
                    engine: "guarded",
                    context: "append of one log returned no record".into(),
                    source: "empty receipt".into(),
                })?;
                Ok((Appended { record, repeat }, Some(copies)))
            }
            Opened::Single(s) => s
                .append_report(log, Durability::PowerLoss)
                .await
                .map(|a| (a, None)),
        }
    }

    /// The primary's and the backup's descriptions, for a guarded pair.
    pub fn copy_names(&self) -> Option<(String, String)> {
        match self {
            Opened::Guarded(g) => Some((g.primary().describe(), g.backup().describe())),
            Opened::Single(_) => None,
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

/// Opens for a command that changes a store which must already exist (finish, abandon,
/// prune, checkpoint): a store that does not exist is [`Error::StoreNotFound`] (exit 3),
/// and nothing is created. A read-only open tells, since it creates nothing; any other
/// error of it is left to the writer's open, which reports its own.
pub async fn open_existing(args: &StoreArgs) -> Result<Opened> {
    match open_read_only(args).await {
        Ok(probe) => probe.close().await?,
        Err(e @ Error::StoreNotFound { .. }) => return Err(e),
        Err(_) => {}
    }
    open(args).await
}

async fn open_with(args: &StoreArgs, options: &OpenOptions) -> Result<Opened> {
    if !args.no_backup {
        for (flag, url) in [("--store", &args.store), ("--backup", &args.backup)] {
            if url.starts_with("memory://") {
                return Err(Error::invalid(
                    flag,
                    "a memory:// store lasts only as long as this process, so as a copy of the \
                     guarded pair it would keep nothing once it ends; name a file or \
                     PostgreSQL store (nothing was opened or written)",
                ));
            }
        }
    }
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
        Ok(Opened::Guarded(Arc::new(g)))
    }
}
