//! prune: retention by policy, archive first, with a marker `verify` can read.

use std::path::PathBuf;

use clap::Args;
use synclog::retention::{self, Policy, PruneOptions, PruneReport};
use synclog::{Durability, Error, LogId, LogStore, PruneMarker, Result, StoreUrl};

use super::open::{open_existing, options};
use super::out::{outln, Out};
use super::records::print_json_line;
use super::{exit, StoreArgs};

fn duration(s: &str) -> std::result::Result<std::time::Duration, String> {
    retention::parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Prune logs recorded longer ago than this (30m, 24h, 90d, 2w).
    #[arg(long, value_name = "AGE", value_parser = duration)]
    older_than: Option<std::time::Duration>,
    /// Keep the newest N logs of each job; prune the older ones.
    #[arg(long, value_name = "N")]
    keep_last: Option<u64>,
    /// Prune logs whose id is below ID.
    #[arg(long, value_name = "ID")]
    before_id: Option<LogId>,
    /// Copy what goes into this store first (e.g. json://archive/2026.jsonl), sync it and
    /// read it back; nothing is pruned unless that succeeds.
    #[arg(long, value_name = "URL")]
    archive: Option<String>,
    /// Print what would be pruned (per job, id ranges) and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Where a store URL keeps its data, to tell an archive from the store itself: a file or
/// directory that exists by its device and inode (so a symbolic link, a hard link or `..`
/// reach the same place), one that does not yet by its resolved path.
fn place(url: &str) -> Option<String> {
    let path = |p: PathBuf| {
        let abs = std::path::absolute(&p).unwrap_or(p);
        #[cfg(unix)]
        if let Ok(m) = std::fs::metadata(&abs) {
            use std::os::unix::fs::MetadataExt;
            return format!("inode {}:{}", m.dev(), m.ino());
        }
        // A file that exists resolves through links; one that does not yet, by its parent.
        let resolved = abs.canonicalize().ok().or_else(|| {
            let parent = abs.parent()?.canonicalize().ok()?;
            Some(parent.join(abs.file_name()?))
        });
        resolved.unwrap_or(abs).to_string_lossy().into_owned()
    };
    Some(match StoreUrl::parse(url).ok()? {
        StoreUrl::Sqlite(p) | StoreUrl::Sled(p) => path(p),
        StoreUrl::Json { path: p, .. } => path(p),
        StoreUrl::Postgres(u) => u,
        StoreUrl::Memory(n) => format!("memory://{n}"),
        #[allow(unreachable_patterns)]
        _ => url.to_string(),
    })
}

pub async fn prune(stores: &StoreArgs, args: PruneArgs, out: &mut Out) -> Result<u8> {
    let policy = Policy {
        older_than: args.older_than,
        keep_last: args.keep_last,
        before_id: args.before_id,
    };
    policy.validate()?;
    if let Some(url) = &args.archive {
        let mut copies = vec![&stores.store];
        if !stores.no_backup {
            copies.push(&stores.backup);
        }
        if copies
            .iter()
            .any(|c| place(c).is_some() && place(c) == place(url))
        {
            return Err(Error::invalid(
                "--archive",
                format!(
                    "{} is where the store keeps its logs; archive into another store",
                    synclog::redact_url(url)
                ),
            ));
        }
    }
    // Nothing to prune in a store that does not exist, and a dry run creates nothing.
    let opened = open_existing(stores).await?;
    let archive = match &args.archive {
        Some(url) if !args.dry_run => match synclog::open_url_with(url, &options(stores)).await {
            Ok(a) => Some(a),
            Err(e) => {
                opened.close().await?;
                return Err(e);
            }
        },
        _ => None,
    };
    let prune_options = PruneOptions {
        dry_run: args.dry_run,
        archive: archive.clone(),
        durability: Durability::PowerLoss,
    };
    let report = retention::prune(opened.store(), &policy, &prune_options).await;
    if let Some(a) = &archive {
        a.close().await?;
    }
    opened.close().await?;
    let report = report?;
    if args.json {
        print_json_line(&report, out)?;
    } else {
        print_report(&report, args.archive.as_deref(), out);
    }
    Ok(exit::OK)
}

fn print_report(report: &PruneReport, archive: Option<&str>, out: &mut Out) {
    let plan = &report.plan;
    if plan.is_empty() {
        outln!(out, "nothing to prune ({})", plan.policy);
        print_kept(report, out);
        return;
    }
    let verb = if report.dry_run { "would prune" } else { "pruned" };
    outln!(out, "{verb} {} logs ({})", plan.count, plan.policy);
    for (job, j) in &plan.jobs {
        outln!(out, "  job {job}: {} logs, ids {}..={}", j.count, j.first, j.last);
    }
    outln!(out, "id ranges ({}): {}", plan.ranges.len(), ranges(&plan.ranges));
    print_kept(report, out);
    if report.dry_run {
        if let Some(url) = archive {
            outln!(out, "would archive them into {} first", synclog::redact_url(url));
        }
        outln!(out, "dry run: nothing was changed");
        return;
    }
    if let (Some(n), Some(url)) = (report.archived, archive) {
        outln!(
            out,
            "archived into {} first ({n} new there), synced and read back: digest matches",
            synclog::redact_url(url)
        );
    }
    if let Some(m) = &report.marker {
        outln!(
            out,
            "marker: {} (sha256 of the pruned ids and checksums: {})",
            m.name(),
            m.digest
        );
    }
    if let (Some(a), Some(b)) = (report.bytes_before, report.bytes_after) {
        outln!(out, "storage: {} -> {}", bytes(a), bytes(b));
    }
}

fn print_kept(report: &PruneReport, out: &mut Out) {
    let plan = &report.plan;
    if plan.kept_newest > 0 {
        outln!(
            out,
            "kept {} logs that are the newest of their job",
            plan.kept_newest
        );
    }
    if plan.kept_in_runs > 0 {
        outln!(
            out,
            "kept {} logs of runs not finished or not old enough as a whole",
            plan.kept_in_runs
        );
    }
    if plan.kept_damaged > 0 {
        outln!(
            out,
            "kept {} damaged logs (run `synclog check --repair` first)",
            plan.kept_damaged
        );
    }
}

/// The first ranges of a list, with how many more there are.
pub(super) fn ranges(list: &[synclog::IdRange]) -> String {
    const SHOWN: usize = 10;
    let mut s: Vec<String> = list.iter().take(SHOWN).map(|r| r.to_string()).collect();
    if list.len() > SHOWN {
        s.push(format!("and {} more", list.len() - SHOWN));
    }
    s.join(", ")
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// A marker's time as the prune lines print it.
fn utc(at: &synclog::Timestamp) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// What a pruned id's marker says, for `show` and `verify`.
pub(super) fn pruned_line(id: LogId, markers: &[PruneMarker]) -> Option<String> {
    let m = markers.iter().find(|m| m.covers(id))?;
    Some(format!(
        "log {id} was pruned at {} by policy \"{}\" ({} logs, marker {})",
        utc(&m.at),
        m.policy,
        m.count,
        m.name()
    ))
}

/// `verify`'s lines about prunes.
pub(super) fn print_prunes(markers: &[PruneMarker], present: u64, out: &mut Out) {
    // Automatic retention makes a marker per interval, years of them: the newest are named
    // one by one, the earlier ones in one line.
    const SHOWN: usize = 20;
    let earlier = &markers[..markers.len().saturating_sub(SHOWN)];
    if let (Some(first), Some(last)) = (earlier.first(), earlier.last()) {
        // Each marker's ranges ascend: its first and last range bound its ids.
        let ends = earlier
            .iter()
            .flat_map(|m| m.ranges.first().into_iter().chain(m.ranges.last()));
        outln!(
            out,
            "pruned by policy: {} logs in {} earlier prunes from {} to {}, ids between {} and {}",
            earlier.iter().map(|m| m.count).sum::<u64>(),
            earlier.len(),
            utc(&first.at),
            utc(&last.at),
            ends.clone().map(|r| r.first).min().map_or(0, LogId::get),
            ends.map(|r| r.last).max().map_or(0, LogId::get),
        );
    }
    for m in &markers[earlier.len()..] {
        outln!(
            out,
            "pruned by policy: {} logs at {} (\"{}\"), ids {}{}",
            m.count,
            utc(&m.at),
            m.policy,
            ranges(&m.ranges),
            m.archive
                .as_deref()
                .map(|a| format!(", archived in {a}"))
                .unwrap_or_default()
        );
    }
    if present > 0 {
        outln!(
            out,
            "{present} logs under a prune marker are still present (an interrupted prune; run it again to finish)"
        );
    }
}

/// `show` of an absent id: says so, naming the prune that removed it if one did.
pub(super) async fn absent(store: &dyn LogStore, id: LogId, out: &mut Out) -> Result<u8> {
    let markers = store.prune_markers().await?;
    match pruned_line(id, &markers) {
        Some(line) => {
            outln!(out, "{line}");
            Ok(exit::NOT_FOUND)
        }
        None => Err(Error::NotFound { id }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::out::tests::Captured;

    fn marker(n: u64) -> PruneMarker {
        let id = |k| LogId::new(k).unwrap();
        let at = chrono::DateTime::from_timestamp(1_700_000_000 + n as i64 * 3600, 0).unwrap();
        let policy = Policy {
            before_id: Some(id(n * 10 + 1)),
            ..Policy::default()
        };
        let ranges = vec![synclog::IdRange::new(id(n * 10 - 9), id(n * 10)).unwrap()];
        PruneMarker::new(at, policy, ranges, "00".repeat(32), None)
    }

    /// Years of automatic retention make hundreds of markers: `verify` and `check` name the
    /// newest 20 one by one and sum up the rest in one line (count, span, ids).
    #[test]
    fn many_prunes_are_listed_as_the_newest_twenty_and_one_line_for_the_rest() {
        let markers: Vec<PruneMarker> = (1..=25).map(marker).collect();
        let captured = Captured::default();
        let mut out = Out::new(Box::new(captured.clone()), Box::new(std::io::sink()));
        print_prunes(&markers, 0, &mut out);
        let text = captured.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 21, "{text}");
        assert_eq!(
            lines[0],
            "pruned by policy: 50 logs in 5 earlier prunes from 2023-11-14 23:13:20 UTC to \
             2023-11-15 03:13:20 UTC, ids between 1 and 50",
            "{text}"
        );
        assert!(
            lines[1].starts_with("pruned by policy: 10 logs at 2023-11-15 04:13:20 UTC"),
            "{text}"
        );
        assert!(lines[1].ends_with("ids 51..=60"), "{text}");
        assert!(lines[20].ends_with("ids 241..=250"), "{text}");
        // A few are all named.
        let captured = Captured::default();
        let mut out = Out::new(Box::new(captured.clone()), Box::new(std::io::sink()));
        print_prunes(&markers[..3], 0, &mut out);
        assert_eq!(captured.text().lines().count(), 3);
    }
}
