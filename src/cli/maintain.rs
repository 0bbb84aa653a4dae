//! verify, check, export, restore, checkpoint.

use std::io::IsTerminal;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use synclog::{
    CheckpointMode, Error, GuardedOptions, ImportReport, LogStore, LogStoreExt, ReconcileReport, Result,
    Side, StoreUrl, VerifyOptions,
};

use super::open::{open, open_existing, open_read_only, options, read_options, Opened};
use super::out::{outln, Out};
use super::{exit, StoreArgs};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Also run the engine's own consistency check (SQLite quick_check).
    #[arg(long)]
    deep: bool,
}

pub async fn verify(stores: &StoreArgs, args: VerifyArgs, out: &mut Out) -> Result<u8> {
    let opened = open_read_only(stores).await?;
    let report = opened.store().verify(VerifyOptions { deep: args.deep }).await;
    let describe = opened.store().describe();
    opened.close().await?;
    let report = report?;
    outln!(out, "verified {describe}: {} logs checked", report.checked);
    if let (Some(a), Some(b)) = (report.first_id, report.last_id) {
        outln!(out, "ids {a}..={b}");
    }
    if report.deep_checked {
        outln!(
            out,
            "engine check: {}",
            if report.engine_problems.is_empty() {
                "ok"
            } else {
                "problems"
            }
        );
    }
    for range in &report.missing {
        outln!(out, "missing: log {range}");
    }
    for c in &report.corrupt {
        let id = c.id.map(|i| i.to_string()).unwrap_or_else(|| "?".into());
        outln!(out, "corrupt: log {id}: {}", c.detail);
    }
    for id in &report.out_of_order {
        outln!(out, "out of order or repeated: log {id}");
    }
    for p in &report.engine_problems {
        outln!(out, "problem: {p}");
    }
    super::retention::print_prunes(&report.prunes, report.pruned_present, out);
    if report.is_clean() {
        outln!(out, "clean");
        Ok(exit::OK)
    } else {
        outln!(out, "NOT CLEAN");
        Ok(exit::PROBLEMS)
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Restore what the store lacks from the backup, and copy what the backup lacks to it.
    #[arg(long)]
    repair: bool,
    /// A run started longer ago than this and not finished is stale (reported as a problem;
    /// end it with `synclog finish` or `synclog abandon`).
    #[arg(long, value_parser = super::runs::parse_duration, default_value = "24h")]
    stale_after: std::time::Duration,
}

fn ids(list: &[synclog::LogId]) -> String {
    const SHOWN: usize = 20;
    let mut s: Vec<String> = list.iter().take(SHOWN).map(|i| i.to_string()).collect();
    if list.len() > SHOWN {
        s.push(format!("… ({} more)", list.len() - SHOWN));
    }
    s.join(", ")
}

pub async fn check(stores: &StoreArgs, args: CheckArgs, out: &mut Out) -> Result<u8> {
    if stores.no_backup {
        return Err(Error::invalid(
            "--no-backup",
            "check compares the store with its backup; drop --no-backup",
        ));
    }
    let cutoff = super::runs::stale_cutoff(args.stale_after)?;
    let (mut report, stale, lost, mut prunes) = check_once(stores, args.repair, cutoff).await?;
    let mut clean = print_check(&report, args.repair, out);
    clean &= print_lost(&lost, out);
    if args.repair && !report.unreadable.is_empty() {
        // A copy that cannot be read whole is rebuilt from the other: its files are set
        // aside (kept, never deleted), it is created anew, and everything is copied back.
        let bad = |side| report.unreadable.iter().any(|u| u.copy == side);
        let (copy, url) = match (bad(Side::Primary), bad(Side::Backup)) {
            (true, false) => (Side::Primary, &stores.store),
            (false, true) => (Side::Backup, &stores.backup),
            _ => {
                outln!(
                    out,
                    "both copies are damaged: nothing to rebuild from; neither was changed"
                );
                return Ok(exit::PROBLEMS);
            }
        };
        let other = if copy == Side::Primary {
            &stores.backup
        } else {
            &stores.store
        };
        let salvaged = salvage(stores, url, other, out).await?;
        if salvaged > 0 {
            outln!(
                out,
                "salvaged {salvaged} intact logs only the damaged {} held into the other copy",
                copy.name()
            );
        }
        for moved in synclog::set_aside(url)? {
            outln!(
                out,
                "set the damaged {} aside as {}",
                copy.name(),
                moved.display()
            );
        }
        outln!(out, "rebuilding the {} from the other copy", copy.name());
        let (rebuilt, _, lost, rebuilt_prunes) = check_once(stores, true, cutoff).await?;
        clean = print_check(&rebuilt, true, out);
        clean &= print_lost(&lost, out);
        prunes = rebuilt_prunes;
        report = rebuilt;
    }
    if args.repair
        && !report.problems.is_empty()
        && report.damaged_in_both.is_empty()
        && report.conflicts.is_empty()
        && report.unreadable.is_empty()
    {
        // A JSON-lines copy is repaired by appending the intact records: its damaged and
        // repeated lines stay in its files until they are compacted. Every record is now
        // intact in both copies, so the repair finishes the job (what compact drops is
        // kept aside, never deleted), and the copies are compared once more.
        let mut compacted = false;
        for side in [Side::Primary, Side::Backup] {
            let url = if side == Side::Primary {
                &stores.store
            } else {
                &stores.backup
            };
            let json = StoreUrl::parse(url).ok().and_then(|u| match u {
                StoreUrl::Json {
                    path,
                    rotate_after_bytes,
                } => Some((path, rotate_after_bytes)),
                _ => None,
            });
            if let (true, Some((path, rotate))) = (report.problems.iter().any(|p| p.copy == side), json) {
                outln!(
                    out,
                    "compacting the {} (JSON lines): its damaged and repeated lines go aside",
                    side.name()
                );
                super::compact::run(path, rotate, stores.lock_wait(), out).await?;
                compacted = true;
            }
        }
        if compacted {
            outln!(out, "comparing the copies again");
            let (again, _, lost, again_prunes) = check_once(stores, false, cutoff).await?;
            clean = print_check(&again, false, out);
            clean &= print_lost(&lost, out);
            prunes = again_prunes;
        }
    }
    // Ids a prune removed are named as pruned (when, by which policy), as verify does.
    match prunes {
        Ok(markers) => super::retention::print_prunes(&markers, 0, out),
        Err(e) => {
            clean = false;
            outln!(out, "prunes: could not be listed: {e}");
        }
    }
    let stale_after = humanize(args.stale_after);
    match stale {
        Ok(runs) if runs.is_empty() => {
            outln!(out, "stale runs (unfinished after {stale_after}): none")
        }
        Ok(runs) => {
            clean = false;
            let more = if runs.len() >= STALE_SHOWN { " or more" } else { "" };
            outln!(
                out,
                "stale runs (unfinished after {stale_after}): {}{more}; end each with `synclog finish` or `synclog abandon`",
                runs.len()
            );
            for run in &runs {
                outln!(
                    out,
                    "  {}  job {}  {}  since {}",
                    run.key,
                    run.job,
                    run.status,
                    run.started_at.format("%Y-%m-%d %H:%M:%S UTC")
                );
            }
        }
        Err(e) => {
            clean = false;
            outln!(out, "stale runs: could not be listed: {e}");
        }
    }
    Ok(if clean { exit::OK } else { exit::PROBLEMS })
}

/// The most stale runs `check` lists.
const STALE_SHOWN: usize = 100;

fn humanize(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Opens the pair as it is (no repair at open), checks it deeply, closes it. Without
/// `repair` the pair is opened read-only: no writer lock, nothing created or changed.
async fn check_once(stores: &StoreArgs, repair: bool, stale_before: synclog::Timestamp) -> Result<CheckOnce> {
    let guarded = synclog::open_guarded_with(
        &stores.store,
        &stores.backup,
        GuardedOptions {
            reconcile_at_open: false,
            ..GuardedOptions::default()
        },
        &if repair {
            options(stores)
        } else {
            read_options(stores)
        },
    )
    .await?;
    let report = guarded.check(repair).await;
    // Ids neither copy holds (and no prune covers) are lost: the comparison cannot see
    // them, having nothing to compare, but each copy's verify does, and check says so.
    let lost = match &report {
        Ok(r) => r.missing_in_both.clone(),
        Err(_) => Vec::new(),
    };
    let stale = synclog::LogStore::runs(
        &guarded,
        &synclog::RunScan {
            limit: STALE_SHOWN,
            ..synclog::RunScan::stale(stale_before)
        },
    )
    .await;
    let prunes = guarded.prune_markers().await;
    guarded.close().await?;
    Ok((report?, stale, lost, prunes))
}

/// What one [`check_once`] found: the comparison, the stale runs, the ids lost from both
/// copies, and the pair's prune markers.
type CheckOnce = (
    ReconcileReport,
    Result<Vec<synclog::Run>>,
    Vec<synclog::IdRange>,
    Result<Vec<synclog::PruneMarker>>,
);

/// Before a copy that cannot be read whole is set aside and rebuilt from the other: every
/// record it still reads intact is offered to the other copy (ids kept; what it holds
/// already, a conflict or a pruned id is left as it is), so that the rebuild, which copies
/// the other copy back, does not lose records only the damaged copy held. Pages that do
/// not read are read record by record, skipping what does not decode. Returns how many
/// records the other copy took.
async fn salvage(stores: &StoreArgs, damaged: &str, other: &str, out: &mut Out) -> Result<u64> {
    const PAGE: u64 = 1000;
    let from = match synclog::open_url_with(damaged, &read_options(stores)).await {
        Ok(s) => s,
        Err(e) => {
            outln!(out, "the damaged copy cannot be opened to salvage from: {e}");
            return Ok(0);
        }
    };
    let result = async {
        let to = synclog::open_url_with(other, &options(stores)).await?;
        let durability = to.capabilities().strongest_durability();
        let top = from.last_id().await.ok().flatten().map_or(0, synclog::LogId::get);
        let (mut after, mut taken) = (0u64, 0u64);
        let copied = async {
            while after < top {
                let scan = synclog::Scan {
                    after: synclog::LogId::new(after),
                    limit: PAGE as usize,
                    ..synclog::Scan::default()
                };
                // Pages of records (ids may lie far apart); a page that does not read is
                // read id by id over the next PAGE ids, skipping what does not decode.
                let (records, next) = match from.scan(&scan).await {
                    Ok(r) if r.is_empty() => break,
                    Ok(r) => {
                        let next = r.last().map_or(top, |l| l.id.get());
                        (r, next)
                    }
                    Err(_) => {
                        let end = after.saturating_add(PAGE).min(top);
                        let mut one_by_one = Vec::new();
                        for id in (after + 1..=end).filter_map(synclog::LogId::new) {
                            if let Ok(Some(rec)) = from.get(id).await {
                                one_by_one.push(rec);
                            }
                        }
                        (one_by_one, end)
                    }
                };
                let intact: Vec<_> = records.into_iter().filter(|r| r.is_intact()).collect();
                if !intact.is_empty() {
                    taken += to.import(intact, durability).await?.inserted;
                }
                after = next;
            }
            Ok::<_, Error>(taken)
        }
        .await;
        to.close().await?;
        copied
    }
    .await;
    from.close().await?;
    result
}

/// Prints the ids lost from both copies; returns whether there are none.
fn print_lost(lost: &[synclog::IdRange], out: &mut Out) -> bool {
    if lost.is_empty() {
        return true;
    }
    let n: u64 = lost.iter().map(synclog::IdRange::count).sum();
    let shown: Vec<String> = lost.iter().map(ToString::to_string).collect();
    outln!(
        out,
        "MISSING FROM BOTH COPIES, nothing to restore them from ({n}): {}",
        shown.join(", ")
    );
    false
}

/// Prints what `check` found and did; returns whether the pair is (now) clean.
fn print_check(report: &ReconcileReport, repair: bool, out: &mut Out) -> bool {
    outln!(out, "in both copies: {}", report.in_both);
    outln!(
        out,
        "missing from the store ({}): {}",
        report.missing_in_primary.len(),
        ids(&report.missing_in_primary)
    );
    outln!(
        out,
        "missing from the backup ({}): {}",
        report.missing_in_backup.len(),
        ids(&report.missing_in_backup)
    );
    if !report.damaged_in_primary.is_empty() {
        outln!(
            out,
            "damaged in the store, intact in the backup ({}): {}",
            report.damaged_in_primary.len(),
            ids(&report.damaged_in_primary)
        );
    }
    if !report.damaged_in_backup.is_empty() {
        outln!(
            out,
            "damaged in the backup, intact in the store ({}): {}",
            report.damaged_in_backup.len(),
            ids(&report.damaged_in_backup)
        );
    }
    if !report.damaged_in_both.is_empty() {
        outln!(
            out,
            "DAMAGED IN BOTH COPIES, cannot be repaired ({}): {}",
            report.damaged_in_both.len(),
            ids(&report.damaged_in_both)
        );
    }
    for c in &report.conflicts {
        outln!(
            out,
            "conflict: log {} differs (store {}, backup {}); neither was changed",
            c.id,
            c.primary,
            c.backup
        );
    }
    if !report.in_flight.is_empty() {
        outln!(
            out,
            "being written by a writer beside this check, in one copy so far ({}): {}",
            report.in_flight.len(),
            ids(&report.in_flight)
        );
    }
    for u in &report.unreadable {
        outln!(out, "unreadable {}: {}", u.copy.name(), u.detail);
    }
    for p in &report.prunes_missing {
        let done = if repair && report.prunes_applied as usize == report.prunes_missing.len() {
            "; applied now (the logs it covers are pruned there too, never restored)"
        } else {
            "; `synclog check --repair` applies it"
        };
        outln!(out, "the {} {}{done}", p.copy.name(), p.detail);
    }
    for p in &report.problems {
        outln!(out, "problem in the {}: {}", p.copy.name(), p.detail);
    }
    if !report.problems.is_empty() {
        outln!(
            out,
            "hint: `synclog compact` cleans a JSON-lines copy's files (what it drops is kept aside, never deleted)"
        );
    }
    if repair {
        outln!(out,
            "repaired: {} restored to the store, {} copied to the backup, {} damaged replaced in the store, {} in the backup",
            report.restored_to_primary,
            report.copied_to_backup,
            report.repaired_in_primary,
            report.repaired_in_backup
        );
    }
    for f in &report.repair_failures {
        outln!(out, "repair failed: {f}");
    }
    if repair {
        report.in_sync()
    } else {
        !report.found_problems()
    }
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Where to copy the logs: sqlite://PATH, json://PATH, ...
    #[arg(long)]
    to: String,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Where to copy the logs from.
    #[arg(long)]
    from: String,
    /// Where to copy them into (default: the store, guarded by its backup).
    #[arg(long)]
    into: Option<String>,
}

/// Records per page when copying: two pages are in flight (one read while the other is
/// imported), so this bounds the copy's memory.
pub const COPY_PAGE: usize = 5_000;

/// Copies `src` into `dst` with a progress bar on a terminal, and prints a summary.
async fn copy(src: &dyn LogStore, dst: &dyn LogStore, out: &mut Out) -> Result<u8> {
    let total = src.last_id().await?.map_or(0, |i| i.get());
    let bar = ProgressBar::new(total);
    if std::io::stderr().is_terminal() {
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} logs ({per_sec}, {eta} left)")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let level = dst.capabilities().strongest_durability();
    let started = std::time::Instant::now();
    let report: ImportReport = src
        .copy_to_with(dst, COPY_PAGE, level, &mut |page| {
            bar.inc(page.inserted + page.already_present + page.conflicts.len() as u64 + page.pruned)
        })
        .await?;
    bar.finish_and_clear();
    let n = report.inserted + report.already_present + report.conflicts.len() as u64 + report.pruned;
    let secs = started.elapsed().as_secs_f64();
    // Logs a prune of the target removed are skipped (a pruned log never comes back): an
    // archive restored into the store it was pruned from inserts nothing, and says why.
    let pruned = match report.pruned {
        0 => String::new(),
        p => format!(", {p} skipped: pruned by policy there (a pruned log is never restored)"),
    };
    outln!(
        out,
        "{} -> {}: {n} logs, {} inserted, {} already present, {} conflicts{pruned} ({:.0} logs/s)",
        src.describe(),
        dst.describe(),
        report.inserted,
        report.already_present,
        report.conflicts.len(),
        n as f64 / secs.max(1e-9)
    );
    for c in &report.conflicts {
        outln!(
            out,
            "conflict: log {} (kept {}, offered {})",
            c.id,
            c.stored,
            c.offered
        );
    }
    for id in &report.damaged {
        outln!(
            out,
            "damaged, not copied: log {id} (its fields do not match its checksum)"
        );
    }
    Ok(if report.conflicts.is_empty() && report.damaged.is_empty() {
        exit::OK
    } else {
        exit::PROBLEMS
    })
}

pub async fn export(stores: &StoreArgs, args: ExportArgs, out: &mut Out) -> Result<u8> {
    let opened = open_read_only(stores).await?;
    let target = synclog::open_url_with(&args.to, &options(stores)).await?;
    let result = copy(opened.store(), &*target, out).await;
    target.close().await?;
    opened.close().await?;
    result
}

pub async fn restore(stores: &StoreArgs, args: RestoreArgs, out: &mut Out) -> Result<u8> {
    // The source is only read: a typo in it is a store that does not exist (exit 3), not
    // an empty store created there and "restored".
    let source = synclog::open_url_with(&args.from, &read_options(stores)).await?;
    let target = match &args.into {
        Some(url) => Opened::Single(synclog::open_url_with(url, &options(stores)).await?),
        None => open(stores).await?,
    };
    let result = copy(&*source, target.store(), out).await;
    target.close().await?;
    source.close().await?;
    result
}

#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// passive, full, restart or truncate.
    #[arg(long, default_value = "passive", value_parser = |s: &str| s.parse::<CheckpointMode>().map_err(|e| e.to_string()))]
    mode: CheckpointMode,
}

pub async fn checkpoint(stores: &StoreArgs, args: CheckpointArgs, out: &mut Out) -> Result<u8> {
    let opened = open_existing(stores).await?;
    let report = opened.store().checkpoint(args.mode).await;
    opened.close().await?;
    let r = report?;
    let mode = format!("{:?}", r.mode).to_lowercase();
    let frames = format!("{} of {} WAL frames copied", r.checkpointed, r.log_frames);
    if r.busy {
        outln!(
            out,
            "checkpoint ({mode}): BLOCKED by another connection; {frames}"
        );
        Ok(exit::BUSY)
    } else if r.checkpointed < r.log_frames {
        // A passive checkpoint does not wait: frames a reader may still need stay in the WAL
        // and SQLite reports no busy. What did not happen is said, and is not success.
        outln!(
            out,
            "checkpoint ({mode}): INCOMPLETE; {frames} (a reader or writer holds older frames; \
             retry, or use --mode full to wait for it)"
        );
        Ok(exit::BUSY)
    } else {
        outln!(out, "checkpoint ({mode}): complete; {frames}");
        Ok(exit::OK)
    }
}
