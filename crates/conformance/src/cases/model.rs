//! Model: random operation sequences against a `BTreeMap` model (proptest, with shrinking).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use synclog_core::query::{AttrEq, StatusCounts, SummaryBuilder, TimeRange};
use synclog_core::{Durability, Filter, LogId, LogRecord, LogStore, LogStoreExt, Scan, Status};

use super::{sample, Ctx};

const JOBS: [&str; 3] = ["alpha", "beta", "gamma"];

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<(usize, u64)>),
    ImportNew {
        gap: u64,
        count: u64,
    },
    ImportExisting(usize),
    ImportConflicting(usize),
    Scan {
        filter: RandomFilter,
        after: Option<u64>,
        limit: usize,
        descending: bool,
    },
    /// Count and summarise what a filter matches.
    Tally(RandomFilter),
    Get(u64),
    /// Append log `n` (0..3) under idempotency key `key` (0..3).
    Keyed {
        key: usize,
        n: u64,
    },
    /// Append a record of status `RUN_STEPS[status]` to run `run` (0..2).
    RunStep {
        run: usize,
        status: usize,
    },
    /// Prune keeping the newest `keep` (1..4) of each job and/or below id `below`.
    Prune {
        keep: Option<u64>,
        below: Option<u64>,
    },
}

/// The statuses the model appends to runs.
const RUN_STEPS: [Status; 4] = [
    Status::Started,
    Status::Progress,
    Status::Succeeded,
    Status::Failed,
];

/// The same log every time for (`key`, `n`): the same content under the key or not.
fn keyed_log(key: usize, n: u64) -> synclog_core::NewLog {
    sample("keyed", n)
        .started(chrono::DateTime::from_timestamp(1_767_225_600, 0).unwrap())
        .idempotency_key(format!("k{key}"))
}

/// The same log every time for (`run`, `status`).
fn run_log(run: usize, status: Status) -> synclog_core::NewLog {
    let log = synclog_core::NewLog::new("runs", status)
        .run(format!("r{run}"))
        .started(chrono::DateTime::from_timestamp(1_767_225_600, 0).unwrap())
        .counts(3, 2, 1);
    match status.is_terminal() {
        true => log.finished(chrono::DateTime::from_timestamp(1_767_225_700, 0).unwrap()),
        false => log,
    }
}

/// The jobs a random filter picks from (those the operations write, and one never written).
const FILTER_JOBS: [&str; 6] = ["alpha", "beta", "gamma", "keyed", "runs", "nobody"];

/// A random [`Filter`]: jobs, statuses, an attribute condition on `n` (a number, or the
/// same digits as a string, which must not match), a `started_at` range around the fixed
/// instant keyed and run logs start at, a `finished_at` range around the one run logs end
/// at, a `recorded_at` range over the instants imported records carry (appended ones are
/// recorded now, after all of them), and a run key.
#[derive(Debug, Clone)]
struct RandomFilter {
    jobs: Vec<usize>,
    statuses: Vec<usize>,
    n: Option<(u64, bool)>,
    started: (Option<i64>, Option<i64>),
    finished: (Option<i64>, Option<i64>),
    recorded: (Option<i64>, Option<i64>),
    run: Option<usize>,
}

/// The `recorded_at` of imported record `id`: `id` seconds after the fixed instant.
fn imported_at(id: u64) -> chrono::DateTime<Utc> {
    chrono::DateTime::from_timestamp(1_767_225_600 + id as i64, 0).unwrap()
}

impl RandomFilter {
    fn filter(&self) -> Filter {
        let fixed = chrono::DateTime::from_timestamp(1_767_225_600, 0).unwrap();
        let at = |s: i64| fixed + chrono::Duration::seconds(s);
        let mut f = Filter {
            jobs: self.jobs.iter().map(|&j| FILTER_JOBS[j].to_string()).collect(),
            statuses: self.statuses.iter().map(|&s| Status::ALL[s]).collect(),
            started: TimeRange {
                from: self.started.0.map(at),
                until: self.started.1.map(at),
            },
            finished: TimeRange {
                from: self.finished.0.map(at),
                until: self.finished.1.map(at),
            },
            recorded: TimeRange {
                from: self.recorded.0.map(at),
                until: self.recorded.1.map(at),
            },
            run: self.run.map(|r| format!("r{r}")),
            ..Filter::default()
        };
        if let Some((n, as_text)) = self.n {
            f.attrs.push(match as_text {
                true => AttrEq::new("n", n.to_string()),
                false => AttrEq::new("n", n),
            });
        }
        // A reversed range is a bad filter; the model only asks good ones.
        for range in [&mut f.started, &mut f.finished, &mut f.recorded] {
            if let (Some(a), Some(b)) = (range.from, range.until) {
                range.until = Some(a.max(b));
            }
        }
        f
    }
}

fn random_filter() -> impl Strategy<Value = RandomFilter> {
    (
        prop::collection::vec(0..FILTER_JOBS.len(), 0..3),
        prop::collection::vec(0..Status::ALL.len(), 0..3),
        prop::option::weighted(0.3, (0u64..50, prop::bool::weighted(0.2))),
        (
            prop::option::weighted(0.3, -1i64..2),
            prop::option::weighted(0.3, -1i64..2),
        ),
        prop::option::weighted(0.2, 0usize..3),
        (
            prop::option::weighted(0.2, 99i64..102),
            prop::option::weighted(0.2, 99i64..102),
        ),
        (
            prop::option::weighted(0.2, 0i64..40),
            prop::option::weighted(0.2, 0i64..40),
        ),
    )
        .prop_map(
            |(jobs, statuses, n, started, run, finished, recorded)| RandomFilter {
                jobs,
                statuses,
                n,
                started,
                finished,
                recorded,
                run,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec((0..JOBS.len(), 0u64..50), 1..4).prop_map(Op::Append),
        1 => (0u64..3, 1u64..4).prop_map(|(gap, count)| Op::ImportNew { gap, count }),
        1 => any::<prop::sample::Index>().prop_map(|i| Op::ImportExisting(i.index(1 << 16))),
        1 => any::<prop::sample::Index>().prop_map(|i| Op::ImportConflicting(i.index(1 << 16))),
        3 => (
            random_filter(),
            prop::option::of(0u64..30),
            1usize..8,
            any::<bool>()
        )
            .prop_map(|(filter, after, limit, descending)| Op::Scan { filter, after, limit, descending }),
        1 => random_filter().prop_map(Op::Tally),
        1 => (1u64..30).prop_map(Op::Get),
        2 => (0usize..3, 0u64..3).prop_map(|(key, n)| Op::Keyed { key, n }),
        2 => (0usize..2, 0..RUN_STEPS.len()).prop_map(|(run, status)| Op::RunStep { run, status }),
        1 => (prop::option::of(1u64..4), prop::option::of(1u64..30))
            .prop_map(|(keep, below)| Op::Prune { keep: keep.or(below.is_none().then_some(2)), below }),
    ]
}

#[derive(Default)]
struct Model {
    records: BTreeMap<LogId, LogRecord>,
    high_water: u64,
    /// Idempotency key → (the `n` stored under it, its record).
    keys: BTreeMap<usize, (u64, LogRecord)>,
    /// Run → its terminal record once it has one (`None`: running).
    runs: BTreeMap<usize, Option<LogRecord>>,
    /// Every id pruned, and how many prunes removed something.
    pruned: Vec<LogId>,
    prunes: usize,
}

impl Model {
    fn next_id(&self) -> u64 {
        self.high_water + 1
    }
    /// The ids a prune by (`keep`, `below`) removes, by the rules of `crate::retention`
    /// written out again: a record goes when it meets every condition, is not its job's
    /// newest, and (in a run) its run has finished and every record of it goes.
    fn prunable(&self, keep: Option<u64>, below: Option<u64>) -> Vec<LogId> {
        let selected = |r: &LogRecord| {
            let newer_of_job = self
                .records
                .range(r.id..)
                .skip(1)
                .filter(|(_, o)| o.job == r.job)
                .count() as u64;
            below.is_none_or(|b| r.id.get() < b) && keep.is_none_or(|k| newer_of_job >= k) && newer_of_job > 0
        };
        let run_goes = |key: &str| {
            let recs: Vec<_> = self
                .records
                .values()
                .filter(|r| r.run.as_deref() == Some(key))
                .collect();
            recs.last().is_some_and(|r| r.status.is_terminal()) && recs.iter().all(|r| selected(r))
        };
        self.records
            .values()
            .filter(|r| match &r.run {
                None => selected(r),
                Some(key) => run_goes(key),
            })
            .map(|r| r.id)
            .collect()
    }

    fn pick(&self, i: usize) -> Option<LogRecord> {
        (!self.records.is_empty()).then(|| self.records.values().nth(i % self.records.len()).cloned())?
    }
}

async fn check(ctx: &Ctx, ops: &[Op]) -> Result<(), TestCaseError> {
    let (at, store) = ctx.fresh().await;
    let result = run_ops(ctx.durability(), &store, ops).await;
    ctx.done(at, store).await;
    result
}

async fn run_ops(level: Durability, store: &Arc<dyn LogStore>, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Append(logs) => {
                let batch = logs.iter().map(|(j, n)| sample(JOBS[*j], *n)).collect();
                let recs = store.commit(batch, level).await.map_err(fail)?;
                for (i, rec) in recs.iter().enumerate() {
                    prop_assert_eq!(rec.id.get(), model.next_id() + i as u64, "step {}: id", step);
                }
                for rec in recs {
                    model.high_water = rec.id.get();
                    model.records.insert(rec.id, rec);
                }
            }
            Op::ImportNew { gap, count } => {
                let first = model.next_id() + gap;
                let recs: Vec<_> = (first..first + count)
                    .map(|i| {
                        LogRecord::seal(LogId::new(i).unwrap(), imported_at(i), sample("imported", i))
                            .unwrap()
                    })
                    .collect();
                let report = store.import(recs.clone(), level).await.map_err(fail)?;
                prop_assert_eq!(report.inserted, *count, "step {}", step);
                for rec in recs {
                    model.high_water = model.high_water.max(rec.id.get());
                    model.records.insert(rec.id, rec);
                }
            }
            Op::ImportExisting(i) => {
                if let Some(rec) = model.pick(*i) {
                    let report = store.import(vec![rec], level).await.map_err(fail)?;
                    prop_assert_eq!((report.inserted, report.already_present), (0, 1), "step {}", step);
                }
            }
            Op::ImportConflicting(i) => {
                if let Some(rec) = model.pick(*i) {
                    let rival = LogRecord::seal(rec.id, Utc::now(), sample("rival", 7)).unwrap();
                    let report = store.import(vec![rival], level).await.map_err(fail)?;
                    prop_assert_eq!(report.conflicts.len(), 1, "step {}", step);
                    prop_assert_eq!(report.inserted, 0);
                }
            }
            Op::Tally(filter) => {
                let filter = filter.filter();
                let matching: Vec<_> = model.records.values().filter(|r| filter.matches(r)).collect();
                let count = store.count(&filter).await.map_err(fail)?;
                prop_assert_eq!(
                    count,
                    matching.len() as u64,
                    "step {}: count of {:?}",
                    step,
                    filter
                );
                let mut by_status = StatusCounts::new();
                matching
                    .iter()
                    .for_each(|r| *by_status.entry(r.status).or_default() += 1);
                let got = store.count_by_status(&filter).await.map_err(fail)?;
                prop_assert_eq!(got, by_status, "step {}: count by status of {:?}", step, filter);
                let mut want = SummaryBuilder::default();
                matching.iter().for_each(|r| want.add(r));
                let got = store.summary(&filter).await.map_err(fail)?;
                prop_assert_eq!(got, want.finish(), "step {}: summary of {:?}", step, filter);
            }
            Op::Scan {
                filter,
                after,
                limit,
                descending,
            } => {
                let scan = Scan {
                    filter: filter.filter(),
                    after: after.and_then(LogId::new),
                    limit: *limit,
                    descending: *descending,
                    ..Scan::default()
                };
                let got = store.scan(&scan).await.map_err(fail)?;
                let matching = model.records.values().filter(|r| scan.matches(r)).cloned();
                let want: Vec<_> = if *descending {
                    matching.rev().take(*limit).collect()
                } else {
                    matching.take(*limit).collect()
                };
                prop_assert_eq!(got, want, "step {}: {:?}", step, scan);
            }
            Op::Get(id) => {
                let id = LogId::new(*id).unwrap();
                let got = store.get(id).await.map_err(fail)?;
                prop_assert_eq!(got.as_ref(), model.records.get(&id), "step {}", step);
            }
            Op::Keyed { key, n } => {
                let got = store.commit_report(vec![keyed_log(*key, *n)], level).await;
                match model.keys.get(key) {
                    Some((stored_n, rec)) if stored_n == n => {
                        let got = got.map_err(fail)?;
                        prop_assert_eq!(&got.repeats, &vec![true], "step {}: a repeat", step);
                        prop_assert_eq!(&got.records[0], rec, "step {}", step);
                    }
                    Some((_, rec)) => match got {
                        Err(synclog_core::Error::IdempotencyConflict { stored, .. }) => {
                            prop_assert_eq!(stored, rec.id, "step {}", step)
                        }
                        other => prop_assert!(false, "step {}: expected a conflict, got {:?}", step, other),
                    },
                    None => {
                        let got = got.map_err(fail)?;
                        let rec = got.records[0].clone();
                        prop_assert_eq!(rec.id.get(), model.next_id(), "step {}: id", step);
                        model.high_water = rec.id.get();
                        model.records.insert(rec.id, rec.clone());
                        model.keys.insert(*key, (*n, rec));
                    }
                }
            }
            Op::Prune { keep, below } => {
                if !store.capabilities().prune {
                    continue;
                }
                let policy = synclog_core::retention::Policy {
                    keep_last: *keep,
                    before_id: below.and_then(LogId::new),
                    older_than: None,
                };
                let options = synclog_core::retention::PruneOptions {
                    durability: level,
                    ..Default::default()
                };
                let want = model.prunable(*keep, *below);
                let report = synclog_core::retention::prune(&**store, &policy, &options)
                    .await
                    .map_err(fail)?;
                let got: Vec<LogId> = report
                    .plan
                    .ranges
                    .iter()
                    .flat_map(|r| r.first.get()..=r.last.get())
                    .filter_map(LogId::new)
                    .collect();
                prop_assert_eq!(&got, &want, "step {}: pruned by {:?}", step, policy);
                prop_assert_eq!(report.deleted, want.len() as u64, "step {}", step);
                for id in &want {
                    model.records.remove(id);
                }
                model.prunes += usize::from(!want.is_empty());
                model.pruned.extend(want);
                model
                    .keys
                    .retain(|_, (_, rec)| model.records.contains_key(&rec.id));
                let runs_left: Vec<usize> = model
                    .runs
                    .keys()
                    .copied()
                    .filter(|run| {
                        model
                            .records
                            .values()
                            .any(|r| r.run.as_deref() == Some(format!("r{run}").as_str()))
                    })
                    .collect();
                model.runs.retain(|run, _| runs_left.contains(run));
            }
            Op::RunStep { run, status } => {
                let status = RUN_STEPS[*status];
                let got = store.commit_report(vec![run_log(*run, status)], level).await;
                let refused = |got: &synclog_core::Result<synclog_core::Committed>, field: &str| match got {
                    Err(synclog_core::Error::InvalidInput { field: f, .. }) => *f == field,
                    _ => false,
                };
                let new = match (model.runs.get(run), status) {
                    (None, Status::Started) => true,
                    (None, _) => {
                        prop_assert!(refused(&got, "run"), "step {}: unknown run: {:?}", step, got);
                        false
                    }
                    (Some(None), Status::Started) => {
                        prop_assert!(refused(&got, "run"), "step {}: second start: {:?}", step, got);
                        false
                    }
                    (Some(None), _) => true,
                    (Some(Some(terminal)), s) if s == terminal.status => {
                        let got = got.as_ref().map_err(|e| fail(e.replicate()))?;
                        prop_assert_eq!(&got.repeats, &vec![true], "step {}: a repeated finish", step);
                        prop_assert_eq!(&got.records[0], terminal, "step {}", step);
                        false
                    }
                    (Some(Some(terminal)), _) => {
                        let finished = matches!(&got, Err(synclog_core::Error::RunFinished { id, .. }) if *id == terminal.id);
                        prop_assert!(finished, "step {}: after the end: {:?}", step, got);
                        false
                    }
                };
                if new {
                    let rec = got.map_err(fail)?.records.remove(0);
                    prop_assert_eq!(rec.id.get(), model.next_id(), "step {}: id", step);
                    model.high_water = rec.id.get();
                    model.records.insert(rec.id, rec.clone());
                    model.runs.insert(*run, status.is_terminal().then_some(rec));
                }
                let row = store.run(&format!("r{run}")).await.map_err(fail)?;
                let ids: Vec<LogId> = model
                    .records
                    .values()
                    .filter(|r| r.run.as_deref() == Some(format!("r{run}").as_str()))
                    .map(|r| r.id)
                    .collect();
                prop_assert_eq!(
                    row.map(|r| r.record_ids).unwrap_or_default(),
                    ids,
                    "step {}: run row",
                    step
                );
            }
        }
    }
    let last = store.last_id().await.map_err(fail)?;
    prop_assert_eq!(last, model.records.keys().next_back().copied());
    let verified = store
        .verify(synclog_core::VerifyOptions::default())
        .await
        .map_err(fail)?;
    // Imports with a gap leave ids missing; a pruned id is never among them.
    prop_assert!(
        verified.corrupt.is_empty() && verified.out_of_order.is_empty(),
        "{:?}",
        verified
    );
    for range in &verified.missing {
        prop_assert!(
            !model.pruned.iter().any(|id| range.contains(*id)),
            "a pruned id reported missing: {:?}",
            verified
        );
    }
    prop_assert_eq!(verified.prunes.len(), model.prunes, "markers");
    Ok(())
}

fn fail(e: synclog_core::Error) -> TestCaseError {
    TestCaseError::fail(format!("store error: {e}"))
}

/// Random sequences of append, import (new, identical, conflicting), scan under random
/// filters, count and summary, get, appends
/// under idempotency keys (repeats and conflicts), run steps (starts, progress,
/// finishes, repeated and refused ones) and prunes (by count per job and by id, checked
/// against the retention rules written out again) give the same results as a `BTreeMap`
/// model, and the store verifies clean at the end. `SYNCLOG_MODEL_CASES` sets the number of sequences.
pub async fn random_operations_match_a_btreemap_model(ctx: Ctx) {
    let cases = std::env::var("SYNCLOG_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let handle = tokio::runtime::Handle::current();
    let result = tokio::task::block_in_place(|| {
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        runner.run(&prop::collection::vec(op(), 1..24), |ops| {
            handle.block_on(check(&ctx, &ops))
        })
    });
    if let Err(e) = result {
        panic!("{} disagrees with the model: {e}", ctx.caps.engine);
    }
}
