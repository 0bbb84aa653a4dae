//! Retention: policies and the records every prune keeps, dry runs, archives that hold
//! exactly what went, markers that verify reads, pruned records that never come back,
//! ids never reused, and prunes interrupted by SIGKILL.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use synclog_core::query::summary_by_scanning;
use synclog_core::retention::{self, PairDigest, Policy, PruneMarker, PruneOptions};
use synclog_core::{
    Checksum, Error, ErrorKind, Filter, IdRange, LogId, LogRecord, LogStore, LogStoreExt, NewLog, RunScan,
    Status, Timestamp, VerifyOptions,
};

use super::crash::{rounds, CHILD_ENV};
use super::{everything, sample, Ctx};
use crate::harness::Location;

/// With [`CHILD_ENV`]: the child appends batches and prunes between them, forever.
pub const PRUNE_ENV: &str = "SYNCLOG_CRASH_PRUNE";

fn id(n: u64) -> LogId {
    LogId::new(n).expect("id")
}

fn days_ago(now: Timestamp, d: i64) -> Timestamp {
    now - Duration::days(d)
}

/// The data set, imported so `recorded_at` is chosen: ids 1..=40 of jobs `a` and `b`
/// (alternating), recorded 40..1 days ago; id 41 job `lone`, 30 days ago; then three runs
/// of job `r`: run `done` (42 started, 43 progress, 44 succeeded, 20–19 days ago), run
/// `open` (45 started, 46 progress, 18 days ago, never finished), run `late` (47 started
/// 17 days ago, 48 failed today); and 49..=52 jobs `a`/`b` today.
fn data_set(now: Timestamp) -> Vec<LogRecord> {
    let mut out = Vec::new();
    let seal = |n: u64, at: Timestamp, log: NewLog| {
        LogRecord::seal(id(n), at, log.started(at - Duration::minutes(5))).expect("seal")
    };
    for n in 1..=40u64 {
        let job = if n % 2 == 1 { "a" } else { "b" };
        out.push(seal(n, days_ago(now, 41 - n as i64), sample(job, n)));
    }
    out.push(seal(41, days_ago(now, 30), sample("lone", 41)));
    let run = |key: &str, status: Status| NewLog::new("r", status).run(key);
    out.push(seal(42, days_ago(now, 20), run("done", Status::Started)));
    out.push(seal(43, days_ago(now, 20), run("done", Status::Progress)));
    out.push(seal(44, days_ago(now, 19), run("done", Status::Succeeded)));
    out.push(seal(45, days_ago(now, 18), run("open", Status::Started)));
    out.push(seal(46, days_ago(now, 18), run("open", Status::Progress)));
    out.push(seal(47, days_ago(now, 17), run("late", Status::Started)));
    out.push(seal(48, now, run("late", Status::Failed)));
    for n in 49..=52u64 {
        let job = if n % 2 == 1 { "a" } else { "b" };
        out.push(seal(n, now, sample(job, n)));
    }
    out
}

async fn loaded(ctx: &Ctx) -> (Location, std::sync::Arc<dyn LogStore>, Vec<LogRecord>) {
    let (at, store) = ctx.fresh().await;
    let now = Utc::now();
    let records = data_set(now);
    let report = store
        .import(records.clone(), ctx.durability())
        .await
        .expect("import");
    assert_eq!(report.inserted, records.len() as u64);
    (at, store, records)
}

fn options(ctx: &Ctx) -> PruneOptions {
    PruneOptions {
        durability: ctx.durability(),
        ..PruneOptions::default()
    }
}

fn ids(records: &[LogRecord]) -> BTreeSet<u64> {
    records.iter().map(|r| r.id.get()).collect()
}

fn in_ranges(ranges: &[IdRange]) -> BTreeSet<u64> {
    ranges.iter().flat_map(|r| r.first.get()..=r.last.get()).collect()
}

/// The digest a marker must carry for `records`.
fn digest_of(records: &[&LogRecord]) -> String {
    let mut d = PairDigest::default();
    for r in records {
        d.add(r.id, r.checksum);
    }
    d.finish()
}

/// "Below id 41" removes every record of jobs `a` and `b` below it and nothing else:
/// the marker lists exactly those ids, with their count and digest, and `get` no longer
/// finds them.
pub async fn a_prune_by_id_removes_exactly_the_selected_records(ctx: Ctx) {
    let (at, store, records) = loaded(&ctx).await;
    let report = retention::prune(&*store, &Policy::default().before_id(id(41)), &options(&ctx))
        .await
        .expect("prune");
    let gone: Vec<&LogRecord> = records.iter().filter(|r| r.id.get() < 41).collect();
    let marker = report.marker.expect("a marker");
    assert_eq!(marker.ranges, vec![IdRange::new(id(1), id(40)).unwrap()]);
    assert_eq!((marker.count, report.deleted), (40, 40));
    assert_eq!(marker.digest, digest_of(&gone));
    assert_eq!(report.plan.jobs["a"].count, 20);
    assert_eq!(report.plan.jobs["b"].count, 20);
    assert_eq!(
        (report.plan.jobs["b"].first, report.plan.jobs["b"].last),
        (id(2), id(40))
    );
    assert!(store.get(id(1)).await.expect("get").is_none());
    assert!(store.get(id(40)).await.expect("get").is_none());
    assert_eq!(ids(&everything(&*store).await), (41..=52).collect());
    assert_eq!(store.prune_markers().await.expect("markers"), vec![marker]);
    // Indexes, counts and summaries forget the pruned records too.
    assert_eq!(store.count(&Filter::default()).await.expect("count"), 12);
    assert_eq!(
        store.count(&Filter::default().jobs(["a"])).await.expect("count"),
        2
    );
    let summary = store.summary(&Filter::default()).await.expect("summary");
    assert_eq!(
        summary,
        summary_by_scanning(&*store, &Filter::default())
            .await
            .expect("by scanning")
    );
    assert_eq!(summary.job("a").map(|j| j.total()), Some(2));
    let runs = store.runs(&RunScan::default()).await.expect("runs");
    assert_eq!(
        runs.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        ["done", "open", "late"]
    );
    ctx.done(at, store).await;
}

/// Whatever the policy, each job's newest record stays, every record of a run that has not
/// finished stays, and a finished run goes whole or not at all.
pub async fn each_jobs_newest_record_and_unfinished_runs_are_kept(ctx: Ctx) {
    let (at, store, _) = loaded(&ctx).await;
    // Older than 10 days: 1..=31 of a/b, lone 41, and the runs `done`, `open`, `late`(start).
    let report = retention::prune(
        &*store,
        &Policy::default().older_than(StdDuration::from_secs(10 * 86_400)),
        &options(&ctx),
    )
    .await
    .expect("prune");
    let left = ids(&everything(&*store).await);
    // lone (41) is its job's newest; `open` has not finished; `late` finished only today.
    for kept in [41, 45, 46, 47, 48] {
        assert!(left.contains(&kept), "{kept} was pruned: {left:?}");
    }
    for gone in [1, 31, 42, 43, 44] {
        assert!(!left.contains(&gone), "{gone} was kept: {left:?}");
    }
    assert_eq!(
        left,
        [32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 45, 46, 47, 48, 49, 50, 51, 52].into()
    );
    assert_eq!(report.plan.kept_newest, 1);
    assert_eq!(
        report.plan.kept_in_runs, 3,
        "45, 46 (open) and 47 (late) were old enough"
    );
    assert_eq!(in_ranges(&report.plan.ranges), (1..=31).chain(42..=44).collect());
    // Now every old record of a/b goes except their newest 2 (50..52 and 49 are newer).
    let report = retention::prune(&*store, &Policy::default().keep_last(2), &options(&ctx))
        .await
        .expect("prune");
    let left = ids(&everything(&*store).await);
    assert_eq!(left, [41, 45, 46, 47, 48, 49, 50, 51, 52].into(), "{report:?}");
    let runs = store.runs(&RunScan::default()).await.expect("runs");
    assert_eq!(
        runs.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        ["open", "late"]
    );
    assert!(store.run("done").await.expect("run").is_none());
    let summary = store.summary(&Filter::default()).await.expect("summary");
    assert_eq!(
        summary,
        summary_by_scanning(&*store, &Filter::default())
            .await
            .expect("by scanning")
    );
    ctx.done(at, store).await;
}

/// A finished run goes whole or not at all: when its terminal record is among the kept
/// ones, its older records stay too.
pub async fn a_finished_run_goes_whole_or_not_at_all(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    let step = |run: &str, status: Status| NewLog::new("j", status).run(run);
    let x = ctx
        .commit(
            &*store,
            vec![
                step("x", Status::Started),
                step("x", Status::Progress),
                step("x", Status::Succeeded),
            ],
        )
        .await;
    let lone = ctx.commit(&*store, vec![sample("j", 1), sample("j", 2)]).await;
    let gone = retention::prune(&*store, &Policy::default().keep_last(2), &options(&ctx))
        .await
        .expect("prune");
    assert_eq!(in_ranges(&gone.plan.ranges), ids(&x), "the whole of run x goes");
    let y = ctx
        .commit(
            &*store,
            vec![
                step("y", Status::Started),
                step("y", Status::Progress),
                step("y", Status::Succeeded),
            ],
        )
        .await;
    // Newest two of job j: y's progress and terminal. y's start is old enough alone: kept.
    let report = retention::prune(&*store, &Policy::default().keep_last(2), &options(&ctx))
        .await
        .expect("prune");
    assert_eq!(in_ranges(&report.plan.ranges), ids(&lone), "{report:?}");
    assert_eq!(report.plan.kept_in_runs, 1);
    assert_eq!(ids(&everything(&*store).await), ids(&y));
    let run = store.run("y").await.expect("run").expect("run y is whole");
    assert_eq!(run.record_ids.len(), 3);
    ctx.done(at, store).await;
}

/// Conditions narrow each other: older than 10 days *and* below id 20 *and* not among the
/// newest 25 of its job.
pub async fn policy_conditions_combine(ctx: Ctx) {
    let (at, store, _) = loaded(&ctx).await;
    let policy = Policy::default()
        .older_than(StdDuration::from_secs(10 * 86_400))
        .before_id(id(20))
        .keep_last(15);
    let report = retention::prune(&*store, &policy, &options(&ctx))
        .await
        .expect("prune");
    // a: 22 records (1,3,..,39,49,51): its newest 15 reach down to 15 → 1..=13 odd may go;
    // b: 22 records (2,..,40,50,52): its newest 15 reach down to 16 → 2..=14 even may go;
    // below 20 and older than 10 days would allow 1..=19.
    assert_eq!(in_ranges(&report.plan.ranges), (1..=14).collect());
    assert_eq!(report.plan.count, 14);
    ctx.done(at, store).await;
}

/// A dry run returns the same plan a prune then carries out, and changes nothing.
pub async fn a_dry_run_reports_the_plan_and_changes_nothing(ctx: Ctx) {
    let (at, store, records) = loaded(&ctx).await;
    let policy = Policy::default().keep_last(5);
    let dry = retention::prune(
        &*store,
        &policy,
        &PruneOptions {
            dry_run: true,
            ..options(&ctx)
        },
    )
    .await
    .expect("dry run");
    assert!(dry.dry_run && dry.marker.is_none() && dry.deleted == 0);
    assert!(dry.plan.count > 0);
    assert_eq!(ids(&everything(&*store).await), ids(&records));
    assert!(store.prune_markers().await.expect("markers").is_empty());
    let real = retention::prune(&*store, &policy, &options(&ctx))
        .await
        .expect("prune");
    assert_eq!(
        (real.plan.ranges.clone(), real.plan.digest.clone()),
        (dry.plan.ranges, dry.plan.digest)
    );
    assert_eq!(real.deleted, real.plan.count);
    ctx.done(at, store).await;
}

/// A policy that selects nothing writes no marker and deletes nothing; a bad policy is an
/// invalid-input error naming its field.
pub async fn nothing_to_prune_and_bad_policies_change_nothing(ctx: Ctx) {
    let (at, store, records) = loaded(&ctx).await;
    let none = retention::prune(
        &*store,
        &Policy::default().older_than(StdDuration::from_secs(365 * 86_400)),
        &options(&ctx),
    )
    .await
    .expect("prune");
    assert!(none.plan.is_empty() && none.marker.is_none() && none.deleted == 0);
    let lone = retention::prune(&*store, &Policy::default().keep_last(100), &options(&ctx))
        .await
        .expect("prune");
    assert!(lone.plan.is_empty());
    for (policy, field) in [
        (Policy::default(), "policy"),
        (Policy::default().keep_last(0), "keep_last"),
        (Policy::default().older_than(StdDuration::ZERO), "older_than"),
    ] {
        match retention::prune(&*store, &policy, &options(&ctx)).await {
            Err(Error::InvalidInput { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{policy:?}: {other:?}"),
        }
    }
    assert_eq!(ids(&everything(&*store).await), ids(&records));
    assert!(store.prune_markers().await.expect("markers").is_empty());
    ctx.done(at, store).await;
}

/// `verify` accounts for pruned ids as pruned (listing the marker), and still reports a
/// record lost outside them.
pub async fn verify_reports_pruned_ids_as_pruned_and_losses_as_missing(ctx: Ctx) {
    let (at, store, _) = loaded(&ctx).await;
    retention::prune(&*store, &Policy::default().before_id(id(30)), &options(&ctx))
        .await
        .expect("prune");
    let report = store.verify(VerifyOptions::default()).await.expect("verify");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.prunes.len(), 1);
    assert_eq!(
        report.prunes[0].ranges,
        vec![IdRange::new(id(1), id(29)).unwrap()]
    );
    assert_eq!(report.pruned_present, 0);
    assert_eq!(report.checked, 23);
    store.close().await.expect("close");
    // A record lost beside the pruned ones is still a loss.
    ctx.harness
        .remove_record(&at, id(31))
        .await
        .expect("remove_record");
    let store = ctx.reopen(&at).await;
    let report = store.verify(VerifyOptions::default()).await.expect("verify");
    assert_eq!(report.missing, vec![IdRange::single(id(31))], "{report:?}");
    ctx.done(at, store).await;
}

/// A pruned record offered again (a restore from an old backup, a reconcile) is skipped and
/// counted as pruned: it never comes back.
pub async fn a_pruned_record_is_never_imported_again(ctx: Ctx) {
    let (at, store, records) = loaded(&ctx).await;
    retention::prune(&*store, &Policy::default().before_id(id(11)), &options(&ctx))
        .await
        .expect("prune");
    let report = store
        .import(records.clone(), ctx.durability())
        .await
        .expect("import");
    assert_eq!(
        (report.pruned, report.inserted, report.already_present),
        (10, 0, 42)
    );
    assert!(store.get(id(5)).await.expect("get").is_none());
    assert_eq!(ids(&everything(&*store).await), (11..=52).collect());
    ctx.done(at, store).await;
}

/// Ids are never handed out again after a prune, even when the marker covers the newest
/// record (a marker applied from another copy can), across a reopen too; and
/// `high_water` still covers the pruned newest ids.
pub async fn ids_are_never_reused_after_a_prune(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    let recs = ctx
        .commit(&*store, (1..=5).map(|n| sample("j", n)).collect())
        .await;
    let top = recs[4].id;
    let marker = PruneMarker::new(
        Utc::now(),
        Policy::default().before_id(top.next().unwrap()),
        vec![IdRange::new(recs[3].id, top).unwrap()],
        digest_of(&recs[3..].iter().collect::<Vec<_>>()),
        None,
    );
    let applied = store.apply_prune(&marker, ctx.durability()).await.expect("apply");
    assert_eq!(applied.deleted, 2);
    // What a caller that assigns ids itself (the guarded pair) starts above.
    let mark = store.high_water().await.expect("high_water");
    assert!(
        mark >= Some(top),
        "high_water {mark:?} is below {top}, an id handed out"
    );
    let next = ctx.commit(&*store, vec![sample("j", 6)]).await;
    assert!(next[0].id > top, "id {} handed out again", next[0].id);
    store.close().await.expect("close");
    let store = ctx.reopen(&at).await;
    let again = ctx.commit(&*store, vec![sample("j", 7)]).await;
    assert!(again[0].id > next[0].id);
    ctx.done(at, store).await;
}

/// Markers survive a reopen; applying one again deletes nothing and says it was stored; a
/// marker that does not match its checksum is refused and changes nothing.
pub async fn markers_survive_a_reopen_and_a_damaged_one_is_refused(ctx: Ctx) {
    let (at, store, records) = loaded(&ctx).await;
    let report = retention::prune(&*store, &Policy::default().before_id(id(21)), &options(&ctx))
        .await
        .expect("prune");
    let marker = report.marker.expect("marker");
    store.close().await.expect("close");
    let store = ctx.reopen(&at).await;
    assert_eq!(
        store.prune_markers().await.expect("markers"),
        vec![marker.clone()]
    );
    let again = store.apply_prune(&marker, ctx.durability()).await.expect("again");
    assert!(again.already_marked && again.deleted == 0, "{again:?}");
    assert_eq!(store.prune_markers().await.expect("markers").len(), 1);
    let mut bad = PruneMarker::new(
        Utc::now(),
        Policy::default().before_id(id(30)),
        vec![IdRange::new(id(21), id(29)).unwrap()],
        String::new(),
        None,
    );
    bad.count += 1;
    let err = store
        .apply_prune(&bad, ctx.durability())
        .await
        .expect_err("a damaged marker");
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert_eq!(ids(&everything(&*store).await), ids(&records[20..]));
    assert_eq!(store.prune_markers().await.expect("markers").len(), 1);
    ctx.done(at, store).await;
}

/// With an archive, the records that go are in the archive first, intact, with the same
/// ids and checksums, and nothing else of the store is; the marker names the archive.
pub async fn the_archive_holds_exactly_what_went(ctx: Ctx) {
    let (at, store, records) = loaded(&ctx).await;
    let (arch_at, archive) = ctx.fresh().await;
    let report = retention::prune(
        &*store,
        &Policy::default().keep_last(3),
        &PruneOptions {
            archive: Some(archive.clone()),
            ..options(&ctx)
        },
    )
    .await
    .expect("prune");
    let marker = report.marker.expect("marker");
    assert_eq!(marker.archive.as_deref(), Some(archive.describe().as_str()));
    let archived = everything(&*archive).await;
    let pruned = in_ranges(&marker.ranges);
    assert_eq!(ids(&archived), pruned);
    assert_eq!(report.archived, Some(pruned.len() as u64));
    let by_id: BTreeMap<LogId, Checksum> = records.iter().map(|r| (r.id, r.checksum)).collect();
    for rec in &archived {
        assert!(rec.is_intact());
        assert_eq!(by_id[&rec.id], rec.checksum);
    }
    assert_eq!(marker.digest, digest_of(&archived.iter().collect::<Vec<_>>()));
    // Archiving into the store itself is refused.
    let err = retention::prune(
        &*store,
        &Policy::default().keep_last(1),
        &PruneOptions {
            archive: Some(store.clone()),
            ..options(&ctx)
        },
    )
    .await
    .expect_err("self archive");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    ctx.done(arch_at, archive).await;
    ctx.done(at, store).await;
}

/// An archive that holds another record under an id to prune stops the prune: nothing is
/// deleted and no marker is written.
pub async fn an_archive_that_disagrees_stops_the_prune(ctx: Ctx) {
    let (at, store, records) = loaded(&ctx).await;
    let (arch_at, archive) = ctx.fresh().await;
    let other = LogRecord::seal(id(3), Utc::now(), sample("other", 3)).expect("seal");
    archive
        .import(vec![other], ctx.durability())
        .await
        .expect("import");
    let err = retention::prune(
        &*store,
        &Policy::default().before_id(id(11)),
        &PruneOptions {
            archive: Some(archive.clone()),
            ..options(&ctx)
        },
    )
    .await
    .expect_err("conflicting archive");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(ids(&everything(&*store).await), ids(&records));
    assert!(store.prune_markers().await.expect("markers").is_empty());
    ctx.done(arch_at, archive).await;
    ctx.done(at, store).await;
}

/// An archive whose import fails, or that reads back other than it was given (a store
/// that acknowledges and then lies), stops the prune with that error: nothing is deleted
/// and no marker is written.
pub async fn an_archive_that_fails_or_reads_back_damaged_stops_the_prune(ctx: Ctx) {
    let (at, store, records) = loaded(&ctx).await;
    let (arch_at, inner) = ctx.fresh().await;
    let failing: std::sync::Arc<dyn LogStore> =
        std::sync::Arc::new(crate::fault::FailEveryNth::new(inner.clone(), 1));
    let lying: std::sync::Arc<dyn LogStore> =
        std::sync::Arc::new(crate::fault::DamagedReads::new(inner.clone()));
    for (archive, kind) in [(failing, ErrorKind::Io), (lying, ErrorKind::Corrupt)] {
        let what = archive.describe();
        let err = retention::prune(
            &*store,
            &Policy::default().before_id(id(11)),
            &PruneOptions {
                archive: Some(archive),
                ..options(&ctx)
            },
        )
        .await
        .expect_err(&what);
        assert_eq!(err.kind(), kind, "{what}: {err}");
        assert_eq!(ids(&everything(&*store).await), ids(&records), "{what}");
        assert!(store.prune_markers().await.expect("markers").is_empty(), "{what}");
    }
    ctx.done(arch_at, inner).await;
    ctx.done(at, store).await;
}

/// The child's side of the prune crash case: append a batch of 40, print each id and
/// checksum, prune all but the newest 30 of each job, forever.
pub async fn prune_child_main(store: std::sync::Arc<dyn LogStore>) -> ! {
    let level = store.capabilities().strongest_durability();
    let mut out = std::io::stdout().lock();
    let options = PruneOptions {
        durability: level,
        ..PruneOptions::default()
    };
    for round in 0u64.. {
        let batch = (0..40)
            .map(|i| sample(["x", "y"][(i % 2) as usize], round * 40 + i))
            .collect();
        match store.commit(batch, level).await {
            Ok(recs) => {
                for r in recs {
                    if writeln!(out, "{} {}", r.id, r.checksum)
                        .and_then(|_| out.flush())
                        .is_err()
                    {
                        std::process::exit(0);
                    }
                }
            }
            Err(e) => {
                eprintln!("prune child: append failed: {e}");
                std::process::exit(4)
            }
        }
        if let Err(e) = retention::prune(&*store, &Policy::default().keep_last(30), &options).await {
            eprintln!("prune child: prune failed: {e}");
            std::process::exit(4)
        }
    }
    std::process::exit(0)
}

/// SIGKILL at any moment of appends and prunes leaves a store that opens and verifies
/// clean, where every acknowledged record is either present with its checksum or covered
/// by a marker; running the prune again completes it.
pub async fn a_prune_killed_at_any_moment_leaves_every_record_present_or_marked(ctx: Ctx) {
    let at = ctx.harness.create().await.expect("create");
    let exe = std::env::current_exe().expect("current_exe");
    let mut acked: BTreeMap<LogId, Checksum> = BTreeMap::new();
    let rounds = rounds().div_ceil(2);
    let mut pruned_seen = 0;
    for round in 0..rounds {
        eprintln!("--- step: prune crash round {round}");
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, &at.address)
            .env(PRUNE_ENV, "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(|l| l.ok())
                .collect::<Vec<_>>()
        });
        tokio::time::sleep(StdDuration::from_millis(fastrand::u64(50..400))).await;
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("round {round}: prune child exited by itself ({status}); see its stderr above");
        }
        child.kill().expect("kill");
        child.wait().expect("wait");
        for line in reader.join().expect("reader") {
            let mut parts = line.split(' ');
            let (Some(i), Some(s), None) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            if let (Ok(i), Ok(s)) = (i.parse::<LogId>(), s.parse::<Checksum>()) {
                acked.insert(i, s);
            }
        }
        let store = ctx.reopen(&at).await;
        let markers = store.prune_markers().await.expect("markers");
        let pruned = retention::Pruned::of(&markers);
        for (i, sum) in &acked {
            match store.get(*i).await.expect("get") {
                Some(rec) => assert_eq!(rec.checksum, *sum, "round {round}: log {i} changed"),
                None => assert!(
                    pruned.contains(*i),
                    "round {round}: acknowledged log {i} is gone and no marker covers it"
                ),
            }
        }
        let report = store.verify(VerifyOptions::default()).await.expect("verify");
        assert!(report.is_clean(), "round {round}: {report:?}");
        // Applying every marker again finishes an interrupted prune.
        for m in &markers {
            store.apply_prune(m, ctx.durability()).await.expect("apply again");
        }
        let report = store.verify(VerifyOptions::default()).await.expect("verify");
        assert!(
            report.is_clean() && report.pruned_present == 0,
            "round {round}: {report:?}"
        );
        pruned_seen = pruned_seen.max(markers.len());
        store.close().await.expect("close");
    }
    assert!(!acked.is_empty(), "no append was acknowledged");
    assert!(pruned_seen > 0, "no prune completed in {rounds} rounds");
    eprintln!(
        "prune crash: {rounds} kills, {} acknowledged, {pruned_seen} markers",
        acked.len()
    );
    ctx.harness.cleanup(&at).await.expect("cleanup");
}
