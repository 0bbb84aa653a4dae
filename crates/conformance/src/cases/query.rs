//! Queries: every filter, combination, order and page boundary of scans and of runs,
//! counts and summaries against a model computed from the records themselves, bad
//! filters refused, and followers that deliver every record once, in order, across a
//! reopen and from another process.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration as StdDuration;
use synclog_core::LogStoreExt;

use chrono::{Duration, TimeZone, Utc};
use serde_json::json;
use synclog_core::follow::Follower;
use synclog_core::query::{AttrEq, StatusCounts, SummaryBuilder, TimeRange};
use synclog_core::run::select_runs;
use synclog_core::{Error, Filter, LogRecord, LogStore, NewLog, RunScan, Scan, Status, Timestamp};

use super::crash::CHILD_ENV;
use super::{everything, Ctx};

fn at(hour: i64) -> Timestamp {
    Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap() + Duration::hours(hour)
}

const JOBS: [&str; 4] = ["orders", "invoices", "crm", "büro"];
const LONE: [Status; 5] = [
    Status::Succeeded,
    Status::Failed,
    Status::Partial,
    Status::Skipped,
    Status::Started,
];

/// The `n`th lone log of the data set: jobs, statuses, times and attributes vary with `n`.
fn lone(n: i64) -> NewLog {
    let status = LONE[(n % 5) as usize];
    let mut log = NewLog::new(JOBS[(n % 4) as usize], status)
        .started(at(n))
        .counts(n as u64, (n / 2) as u64, (n % 3) as u64)
        .message(format!("log {n}"))
        .attr("env", if n % 3 == 0 { "prod" } else { "dev" })
        .attr("shard", n % 4);
    if n % 7 == 0 {
        log = log.attr("shard_text", (n % 4).to_string());
    }
    if n % 5 == 1 {
        log = log.attr("ratio", json!(1.0));
    } else if n % 5 == 2 {
        log = log.attr("ratio", 1);
    }
    if status.is_terminal() && n % 4 != 3 {
        log = log.finished(at(n) + Duration::minutes(30));
    }
    log
}

/// A store holding 60 lone logs and three runs (one finished, one failed, one running),
/// committed in several batches so `recorded_at` varies. Returns every record.
async fn data_set(ctx: &Ctx, store: &dyn LogStore) -> Vec<LogRecord> {
    let d = ctx.durability();
    for chunk in (0..60).collect::<Vec<i64>>().chunks(12) {
        store
            .commit(chunk.iter().map(|&n| lone(n)).collect(), d)
            .await
            .expect("commit the data set");
    }
    let run = |job: &str, key: &str, status: Status, hour: i64| {
        let log = NewLog::new(job, status)
            .run(key)
            .started(at(hour))
            .attr("env", "prod")
            .counts(5, 4, 1);
        if status.is_terminal() {
            log.finished(at(hour + 1))
        } else {
            log
        }
    };
    for batch in [
        vec![
            run("orders", "run-a", Status::Started, 10),
            run("crm", "run-b", Status::Started, 20),
        ],
        vec![
            run("orders", "run-a", Status::Progress, 10),
            run("crm", "run-c", Status::Started, 30),
        ],
        vec![
            run("orders", "run-a", Status::Succeeded, 10),
            run("crm", "run-b", Status::Failed, 20),
        ],
    ] {
        store.commit(batch, d).await.expect("commit the runs");
    }
    everything(store).await
}

/// The filters every engine must answer like the model, including combinations, empty
/// results, exact JSON comparison and open-ended ranges.
fn filters(recs: &[LogRecord]) -> Vec<Filter> {
    let rec_at = |i: usize| recs[i.min(recs.len() - 1)].recorded_at;
    vec![
        Filter::default(),
        Filter::job("orders"),
        Filter::default().jobs(["orders", "crm"]),
        Filter::job("büro"),
        Filter::job("nope"),
        Filter::default().statuses([Status::Failed, Status::Partial]),
        Filter::status(Status::Started),
        Filter::default().started(TimeRange::between(at(5), at(20))),
        Filter::default().started(TimeRange::since(at(50))),
        Filter::default().started(TimeRange::before(at(3))),
        Filter::default().started(TimeRange::between(at(7), at(7))),
        Filter::default().finished(TimeRange::between(at(10), at(40))),
        Filter::default().finished(TimeRange::since(at(0))),
        Filter::default().recorded(TimeRange::between(rec_at(12), rec_at(36))),
        Filter::default().recorded(TimeRange::since(rec_at(50))),
        Filter::default()
            .statuses([Status::Failed, Status::Succeeded, Status::Failed])
            .recorded(TimeRange::since(rec_at(20))),
        Filter::default()
            .jobs(["orders", "crm"])
            .statuses([Status::Succeeded, Status::Started]),
        Filter::default().attr(AttrEq::new("env", "prod")),
        Filter::default()
            .attr(AttrEq::new("env", "prod"))
            .attr(AttrEq::new("shard", 1)),
        Filter::default().attr(AttrEq::new("shard", "1")),
        Filter::default().attr(AttrEq::new("shard_text", "1")),
        Filter::default().attr(AttrEq::new("ratio", json!(1.0))),
        Filter::default().attr(AttrEq::new("ratio", 1)),
        Filter::default().attr(AttrEq::new("missing", 1)),
        Filter::default().run("run-a"),
        Filter::default().run("run-zz"),
        Filter::job("crm").run("run-b").statuses([Status::Failed]),
        Filter::default()
            .jobs(["orders", "invoices"])
            .statuses([Status::Failed, Status::Succeeded])
            .started(TimeRange::between(at(4), at(48)))
            .attr(AttrEq::new("env", "dev")),
    ]
}

/// Every page of `scan` (keyset paging by `after`/`before`) concatenated.
async fn all_pages(store: &dyn LogStore, mut scan: Scan) -> Vec<LogRecord> {
    let mut out: Vec<LogRecord> = Vec::new();
    for _ in 0..1000 {
        let page = store.scan(&scan).await.expect("scan");
        let Some(last) = page.last() else { return out };
        assert!(page.len() <= scan.limit, "a page longer than its limit: {scan:?}");
        if scan.descending {
            scan.before = Some(last.id);
        } else {
            scan.after = Some(last.id);
        }
        out.extend(page);
    }
    panic!("paging did not end after 1000 pages: {scan:?}");
}

/// Scans under every filter, ascending and descending, in pages of 1, 4 and 1000 and
/// inside id bounds, return exactly the matching records in id order.
pub async fn scans_answer_every_filter_like_the_model(ctx: Ctx) {
    let (loc, store) = ctx.fresh().await;
    let recs = data_set(&ctx, &*store).await;
    let (lo, hi) = (recs[8].id, recs[50].id);
    for filter in filters(&recs) {
        let want: Vec<_> = recs.iter().filter(|r| filter.matches(r)).cloned().collect();
        for limit in [1, 4, 1000] {
            for descending in [false, true] {
                let scan = Scan {
                    filter: filter.clone(),
                    limit,
                    descending,
                    ..Scan::default()
                };
                let mut expect = want.clone();
                if descending {
                    expect.reverse();
                }
                let got = all_pages(&*store, scan).await;
                assert_eq!(
                    ids(&got),
                    ids(&expect),
                    "{filter:?} limit {limit} descending {descending}"
                );
                assert_eq!(got, expect, "{filter:?}: records differ");
            }
        }
        let bounded = Scan {
            after: Some(lo),
            before: Some(hi),
            filter: filter.clone(),
            limit: 3,
            descending: true,
        };
        let expect: Vec<_> = want
            .iter()
            .rev()
            .filter(|r| r.id > lo && r.id < hi)
            .take(3)
            .cloned()
            .collect();
        assert_eq!(
            ids(&store.scan(&bounded).await.unwrap()),
            ids(&expect),
            "{bounded:?}"
        );
    }
    ctx.done(loc, store).await;
}

/// Counts (in all and by status) and summaries under every filter equal what the matching
/// records add up to.
pub async fn counts_and_summaries_answer_every_filter_like_the_model(ctx: Ctx) {
    let (loc, store) = ctx.fresh().await;
    let recs = data_set(&ctx, &*store).await;
    for filter in filters(&recs) {
        let matching: Vec<_> = recs.iter().filter(|r| filter.matches(r)).collect();
        assert_eq!(
            store.count(&filter).await.expect("count"),
            matching.len() as u64,
            "count of {filter:?}"
        );
        let mut by_status = StatusCounts::new();
        matching
            .iter()
            .for_each(|r| *by_status.entry(r.status).or_default() += 1);
        assert_eq!(
            store.count_by_status(&filter).await.expect("count by status"),
            by_status,
            "count by status of {filter:?}"
        );
        let mut model = SummaryBuilder::default();
        matching.iter().for_each(|r| model.add(r));
        let model = model.finish();
        let got = store.summary(&filter).await.expect("summary");
        assert_eq!(got, model, "summary of {filter:?}");
    }
    let all = store.summary(&Filter::default()).await.unwrap();
    assert_eq!(all.jobs.len(), JOBS.len(), "one entry per job");
    let crm = all.job("crm").expect("crm");
    assert_eq!(
        crm.latest_finished.as_ref().map(|r| r.status),
        Some(Status::Failed)
    );
    assert!(!all.all_last_succeeded());
    ctx.done(loc, store).await;
}

/// A summary adds up a run's counters once, from its terminal record: `started` and
/// `progress` records report the run so far, so their counters are not added to the sums
/// (they are still counted by status).
pub async fn a_summary_sums_a_runs_counters_once_from_its_terminal_record(ctx: Ctx) {
    let (loc, store) = ctx.fresh().await;
    let step = |status: Status, counts: (u64, u64, u64)| {
        let log = NewLog::new("crm", status)
            .run("r1")
            .started(at(1))
            .counts(counts.0, counts.1, counts.2);
        match status.is_terminal() {
            true => log.finished(at(2)),
            false => log,
        }
    };
    ctx.commit(&*store, vec![step(Status::Started, (0, 0, 0))]).await;
    ctx.commit(&*store, vec![step(Status::Progress, (500, 498, 2))])
        .await;
    ctx.commit(&*store, vec![step(Status::Progress, (900, 896, 4))])
        .await;
    ctx.commit(&*store, vec![step(Status::Succeeded, (1200, 1195, 5))])
        .await;
    // A lone log adds its own counters.
    let lone = NewLog::new("crm", Status::Failed).started(at(3)).counts(10, 7, 3);
    ctx.commit(&*store, vec![lone]).await;
    for filter in [Filter::default(), Filter::default().jobs(["crm"])] {
        let summary = store.summary(&filter).await.expect("summary");
        let crm = summary.job("crm").expect("crm");
        assert_eq!(
            (crm.items_seen, crm.items_written, crm.items_failed),
            (1210, 1202, 8),
            "the sums of {filter:?} count the run's terminal record and the lone log, not its progress"
        );
        assert_eq!(crm.counts.get(&Status::Progress), Some(&2), "{filter:?}");
        assert_eq!(crm.total(), 5, "{filter:?}");
    }
    ctx.done(loc, store).await;
}

/// Runs under every filter (applied to the run as a whole) and page size match the model
/// built from the records.
pub async fn runs_answer_every_filter_like_the_model(ctx: Ctx) {
    let (loc, store) = ctx.fresh().await;
    let recs = data_set(&ctx, &*store).await;
    let mut by_run: HashMap<String, Vec<LogRecord>> = HashMap::new();
    for r in &recs {
        if let Some(k) = &r.run {
            by_run.entry(k.clone()).or_default().push(r.clone());
        }
    }
    let mut run_filters = filters(&recs);
    run_filters.push(Filter::default().finished(TimeRange::between(at(10), at(12))));
    run_filters.push(Filter::default().statuses([Status::Started, Status::Progress]));
    for filter in run_filters {
        for descending in [false, true] {
            let scan = RunScan {
                filter: filter.clone(),
                descending,
                ..RunScan::default()
            };
            let want = select_runs(by_run.clone(), &scan, 1000);
            let got = store.runs(&scan).await.expect("runs");
            assert_eq!(got, want, "runs of {filter:?} descending {descending}");
            let mut paged = Vec::new();
            let mut page_scan = RunScan {
                limit: 1,
                ..scan.clone()
            };
            while let Some(run) = store.runs(&page_scan).await.unwrap().pop() {
                if descending {
                    page_scan.before = Some(run.first_id());
                } else {
                    page_scan.after = Some(run.first_id());
                }
                paged.push(run);
                assert!(paged.len() <= want.len(), "paging runs of {filter:?} did not end");
            }
            assert_eq!(paged, want, "paged runs of {filter:?}");
        }
    }
    ctx.done(loc, store).await;
}

fn field_of(err: Error) -> &'static str {
    match err {
        Error::InvalidInput { field, .. } => field,
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

/// A reversed time range, an attribute condition without a key and too many jobs are
/// refused by scan, runs, count and summary with an error naming the field.
pub async fn bad_filters_are_refused_naming_the_field(ctx: Ctx) {
    let (loc, store) = ctx.fresh().await;
    ctx.commit(&*store, vec![lone(1)]).await;
    let bad = [
        (
            Filter::default().started(TimeRange::between(at(2), at(1))),
            "from",
        ),
        (
            Filter::default().finished(TimeRange::between(at(2), at(1))),
            "finished",
        ),
        (
            Filter::default().recorded(TimeRange::between(at(2), at(1))),
            "recorded",
        ),
        (Filter::default().attr(AttrEq::new("", 1)), "attr"),
        (
            Filter::default().jobs((0..=Filter::MAX_TERMS).map(|i| i.to_string())),
            "job",
        ),
    ];
    for (filter, field) in bad {
        let scan = Scan::filtered(filter.clone(), 10);
        assert_eq!(
            field_of(store.scan(&scan).await.unwrap_err()),
            field,
            "scan {filter:?}"
        );
        assert_eq!(field_of(store.count(&filter).await.unwrap_err()), field, "count");
        assert_eq!(
            field_of(store.count_by_status(&filter).await.unwrap_err()),
            field,
            "count by status"
        );
        assert_eq!(
            field_of(store.summary(&filter).await.unwrap_err()),
            field,
            "summary"
        );
        let runs = RunScan {
            filter: filter.clone(),
            ..RunScan::default()
        };
        assert_eq!(field_of(store.runs(&runs).await.unwrap_err()), field, "runs");
    }
    ctx.done(loc, store).await;
}

fn ids(recs: &[LogRecord]) -> Vec<u64> {
    recs.iter().map(|r| r.id.get()).collect()
}

/// Collects what `follower` hands out until it has `n` records or `patience` passes.
async fn collect<S>(follower: &mut Follower<S>, n: usize, patience: StdDuration) -> Vec<LogRecord>
where
    S: std::ops::Deref + Send + Sync,
    S::Target: LogStore,
{
    let end = tokio::time::Instant::now() + patience;
    let mut got = Vec::new();
    while got.len() < n {
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        got.extend(follower.next_batch(left).await.expect("follow"));
    }
    got
}

/// Nothing more arrives (nothing is handed out twice), and the follower's position is the
/// store's last id.
async fn assert_caught_up<S>(follower: &mut Follower<S>, store: &dyn LogStore)
where
    S: std::ops::Deref + Send + Sync,
    S::Target: LogStore,
{
    assert!(follower
        .next_batch(StdDuration::from_millis(50))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(follower.position(), store.last_id().await.unwrap());
}

/// A follower started before a writer hands out every matching record the writer commits
/// (in batches, beside records that do not match), once each and in id order.
pub async fn a_follower_delivers_every_matching_record_once_in_order(ctx: Ctx) {
    let (loc, store) = ctx.fresh().await;
    ctx.commit(&*store, (0..5).map(lone).collect()).await;
    let filter = Filter::job("orders").attr(AttrEq::new("env", "prod"));
    let mut follower = Follower::new(store.clone(), filter.clone(), store.last_id().await.unwrap())
        .unwrap()
        .page_size(7);
    let writer = {
        let store = store.clone();
        let d = ctx.durability();
        tokio::spawn(async move {
            let mut all = Vec::new();
            for chunk in (5..125).collect::<Vec<i64>>().chunks(10) {
                all.extend(
                    store
                        .commit(chunk.iter().map(|&n| lone(n)).collect(), d)
                        .await
                        .unwrap(),
                );
                tokio::task::yield_now().await;
            }
            all
        })
    };
    let written = writer.await.unwrap();
    let want: Vec<_> = written.iter().filter(|r| filter.matches(r)).cloned().collect();
    assert!(want.len() >= 5, "the data set has matching records");
    let got = collect(&mut follower, want.len(), StdDuration::from_secs(30)).await;
    assert_eq!(ids(&got), ids(&want));
    assert_eq!(got, want);
    assert_caught_up(&mut follower, &*store).await;
    ctx.done(loc, store).await;
}

/// A follower watching before the writer starts gets this process's commits as they come,
/// and one that stops asking while more batches are committed than its in-process feed
/// keeps (256) reads the store instead: every matching record still arrives once, in id
/// order, and nothing more.
pub async fn a_follower_that_fell_behind_its_feed_reads_the_store_and_misses_nothing(ctx: Ctx) {
    let (loc, store) = ctx.fresh().await;
    let filter = Filter::job("orders");
    let mut follower = Follower::new(store.clone(), filter.clone(), None)
        .unwrap()
        .page_size(40);
    // The first ask starts the watch: every commit from here on reaches the feed.
    assert!(follower.try_next_batch().await.unwrap().is_empty());
    let mut want = Vec::new();
    for n in 0..8 {
        let committed = ctx.commit(&*store, vec![lone(n)]).await;
        want.extend(committed.into_iter().filter(|r| filter.matches(r)));
    }
    let got = collect(&mut follower, want.len(), StdDuration::from_secs(30)).await;
    assert_eq!(ids(&got), ids(&want), "commits followed as they came");
    // 300 one-record commits while the follower does not ask: more than the feed keeps.
    let mut more = Vec::new();
    for n in 8..308 {
        let committed = ctx.commit(&*store, vec![lone(n)]).await;
        more.extend(committed.into_iter().filter(|r| filter.matches(r)));
    }
    assert!(more.len() >= 70, "the data set has matching records");
    let got = collect(&mut follower, more.len(), StdDuration::from_secs(30)).await;
    assert_eq!(
        ids(&got),
        ids(&more),
        "every record after the lag, once, in order"
    );
    assert_eq!(got, more);
    assert_caught_up(&mut follower, &*store).await;
    ctx.done(loc, store).await;
}

/// A follower made again from a position resumes after a reopen exactly where the other
/// stopped: the records committed meanwhile arrive, none twice, none skipped.
pub async fn a_follower_resumes_from_its_position_after_a_reopen(ctx: Ctx) {
    let (loc, store) = ctx.fresh().await;
    let first = ctx.commit(&*store, (0..20).map(lone).collect()).await;
    let filter = Filter::default().statuses([Status::Failed, Status::Succeeded]);
    let mut follower = Follower::new(store.clone(), filter.clone(), None)
        .unwrap()
        .page_size(3);
    let got = collect(&mut follower, 2, StdDuration::from_secs(10)).await;
    assert!(got.len() >= 2);
    let position = follower.position();
    assert_eq!(
        position,
        Some(got.last().unwrap().id),
        "a partly read page stays unread"
    );
    drop(follower);
    store.close().await.unwrap();
    drop(store);
    let store = ctx.reopen(&loc).await;
    let more = ctx.commit(&*store, (20..40).map(lone).collect()).await;
    let want: Vec<_> = first
        .iter()
        .chain(&more)
        .filter(|r| filter.matches(r) && Some(r.id) > position)
        .cloned()
        .collect();
    let mut again = Follower::new(store.clone(), filter, position).unwrap();
    let rest = collect(&mut again, want.len(), StdDuration::from_secs(10)).await;
    assert_eq!(ids(&rest), ids(&want));
    ctx.done(loc, store).await;
}

/// A follower in this process hands out, in order and once each, records that another
/// process is committing while it follows.
pub async fn a_follower_sees_records_another_process_commits(ctx: Ctx) {
    let (loc, store) = ctx.fresh().await;
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(&exe)
        .env(CHILD_ENV, &loc.address)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the writing child");
    let stdout = child.stdout.take().expect("child stdout");
    let lines = std::thread::spawn(move || BufReader::new(stdout).lines().map_while(|l| l.ok()).count());
    let mut follower = Follower::new(store.clone(), Filter::default(), None).unwrap();
    let got = collect(&mut follower, 40, StdDuration::from_secs(60)).await;
    child.kill().expect("kill the child");
    child.wait().expect("reap the child");
    assert!(lines.join().unwrap() >= 1, "the child acknowledged appends");
    assert!(
        got.len() >= 40,
        "records from the other process arrived: {:?}",
        ids(&got)
    );
    let expect: Vec<u64> = (1..=got.len() as u64).collect();
    assert_eq!(ids(&got), expect, "in order, none skipped, none twice");
    for rec in &got {
        assert_eq!(store.get(rec.id).await.unwrap().as_ref(), Some(rec));
    }
    ctx.done(loc, store).await;
}

/// Records imported above a follower's position (a restore of newer records) are handed
/// out too: an import wakes followers as a commit does.
pub async fn a_follower_hands_out_records_imported_above_its_position(ctx: Ctx) {
    let (loc, store) = ctx.fresh().await;
    let recs = ctx.commit(&*store, (0..3).map(lone).collect()).await;
    let mut follower = Follower::new(store.clone(), Filter::default(), Some(recs[2].id)).unwrap();
    assert!(follower
        .next_batch(StdDuration::from_millis(10))
        .await
        .unwrap()
        .is_empty());
    let imported: Vec<LogRecord> = (4..7)
        .map(|i| {
            let id = synclog_core::LogId::new(i).unwrap();
            LogRecord::seal(id, Utc::now(), lone(i as i64)).unwrap()
        })
        .collect();
    store
        .import(imported.clone(), ctx.durability())
        .await
        .expect("import");
    let got = collect(&mut follower, 3, StdDuration::from_secs(30)).await;
    assert_eq!(ids(&got), ids(&imported));
    ctx.done(loc, store).await;
}

/// A follower's filter is checked when it is made.
pub async fn a_follower_refuses_a_bad_filter(ctx: Ctx) {
    let (loc, store) = ctx.fresh().await;
    let bad = Filter::default().recorded(TimeRange::between(at(3), at(1)));
    let err = Follower::new(store.clone(), bad, None).unwrap_err();
    assert_eq!(field_of(err), "recorded");
    ctx.done(loc, store).await;
}
