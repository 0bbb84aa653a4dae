//! compact: rewrites a JSON-lines store without the lines `verify` complains about.

use clap::Args;
use synclog::{redact_url, Error, Result, StoreUrl};

use super::out::Out;
use super::StoreArgs;

#[derive(Debug, Args)]
pub struct CompactArgs {}

/// Compacts the JSON-lines store the arguments name: the backup (by default), or the
/// store with `--no-backup`. Identical repeated lines are dropped; corrupt lines, and
/// lines repeating an id with another record, are saved to a `.rejected-…` file (never
/// deleted); each file is rewritten by write-then-rename.
pub async fn compact(stores: &StoreArgs, _args: CompactArgs, out: &mut Out) -> Result<u8> {
    let url = if stores.no_backup {
        &stores.store
    } else {
        &stores.backup
    };
    let which = if stores.no_backup { "--store" } else { "--backup" };
    let StoreUrl::Json {
        path,
        rotate_after_bytes,
    } = StoreUrl::parse(url)?
    else {
        return Err(Error::invalid(
            "url",
            format!(
                "{which} {:?} is not a JSON-lines store; compact rewrites json://PATH stores \
                 (the backup by default, or --store json://PATH with --no-backup)",
                redact_url(url)
            ),
        ));
    };
    if !path.is_file() {
        return Err(Error::invalid(
            "url",
            format!("{which}: there is no JSON-lines store at {}", path.display()),
        ));
    }
    run(path, rotate_after_bytes, stores.lock_wait(), out).await
}

#[cfg(feature = "json")]
pub(super) async fn run(
    path: std::path::PathBuf,
    rotate_after_bytes: Option<u64>,
    lock_wait: std::time::Duration,
    out: &mut Out,
) -> Result<u8> {
    use super::exit;
    use super::out::outln;
    use std::sync::Arc;
    use synclog::json::{fs::RealFs, JsonOptions, JsonStore};
    use synclog::LogStore;

    let options = JsonOptions {
        lock_wait,
        rotate_after_bytes,
        ..JsonOptions::default()
    };
    let store = tokio::task::spawn_blocking(move || JsonStore::open_with(path, options, Arc::new(RealFs)))
        .await
        .map_err(|e| Error::Backend {
            engine: "json",
            context: "opening".into(),
            source: Box::new(e),
        })??;
    let found = store.open_report().clone();
    let result = store.compact().await;
    let closed = store.close().await;
    let report = result?;
    closed?;
    outln!(
        out,
        "compacted json://{}: {} logs; {} identical repeated line(s) dropped, {} corrupt line(s) saved aside",
        store.path().display(),
        report.records,
        report.duplicates_dropped,
        report.rejected_lines
    );
    for to in &report.rejected_to {
        outln!(out, "saved aside: {}", to.display());
    }
    outln!(
        out,
        "files rewritten: {}; bytes {} -> {}",
        report.files_rewritten,
        report.bytes_before,
        report.bytes_after
    );
    if found.duplicate_lines() + found.corrupt_line_count() == 0 {
        outln!(out, "nothing to clean");
    }
    Ok(exit::OK)
}

#[cfg(not(feature = "json"))]
pub(super) async fn run(
    _: std::path::PathBuf,
    _: Option<u64>,
    _: std::time::Duration,
    _: &mut Out,
) -> Result<u8> {
    Err(Error::Unsupported {
        engine: "synclog",
        what: "compact in this build: the `json` feature was not compiled in".into(),
    })
}
