//! A random store for the query tests: records of several jobs, statuses, runs, times
//! and attributes, imported with their own (not monotonic) `recorded_at`, and random
//! filters over them.
#![allow(dead_code)]

use chrono::{DateTime, Duration, Utc};
use synclog_core::query::{AttrEq, Filter, TimeRange};
use synclog_core::LogStoreExt;
use synclog_core::{Durability, LogId, LogRecord, NewLog, Status};
use synclog_sqlite::SqliteStore;

/// A small deterministic generator (xorshift64*), so a failure can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

pub const JOBS: [&str; 4] = ["orders", "invoices", "crm", "stock"];

/// The instant every generated time is near.
pub fn base() -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000, 0).unwrap_or_default()
}

fn minutes(rng: &mut Rng) -> Duration {
    Duration::minutes(rng.below(60 * 24 * 10) as i64) + Duration::microseconds(rng.below(1_000_000) as i64)
}

fn attrs(rng: &mut Rng, mut log: NewLog) -> NewLog {
    if rng.chance(70) {
        log = log.attr("env", *rng.pick(&["prod", "dev"]));
    }
    if rng.chance(40) {
        log = match rng.below(3) {
            0 => log.attr("n", 1),
            1 => log.attr("n", "1"),
            _ => log.attr("n", 2.5),
        };
    }
    if rng.chance(30) {
        log = log.attr("tag", serde_json::json!({"a": [1, rng.below(2)]}));
    }
    log
}

/// `n` random records (some in runs), with ids 1.. and random `recorded_at`.
pub fn records(rng: &mut Rng, n: usize) -> Vec<LogRecord> {
    let mut out = Vec::with_capacity(n);
    let mut open_runs: Vec<(String, &str)> = Vec::new();
    while out.len() < n {
        let id = LogId::new(out.len() as u64 + 1).unwrap_or(LogId::MIN);
        let recorded = base() + minutes(rng);
        let started = base() + minutes(rng) - Duration::hours(2);
        let log = if !open_runs.is_empty() && rng.chance(30) {
            let i = rng.below(open_runs.len() as u64) as usize;
            let (key, job) = open_runs[i].clone();
            let status = *rng.pick(&[
                Status::Progress,
                Status::Succeeded,
                Status::Failed,
                Status::Abandoned,
            ]);
            if status.is_terminal() {
                open_runs.remove(i);
            }
            NewLog::new(job, status).run(key)
        } else if rng.chance(15) {
            let job = *rng.pick(&JOBS);
            let key = format!("run-{}", id.get());
            open_runs.push((key.clone(), job));
            attrs(rng, NewLog::new(job, Status::Started).run(key))
        } else {
            let status = *rng.pick(&[
                Status::Started,
                Status::Succeeded,
                Status::Failed,
                Status::Partial,
                Status::Skipped,
            ]);
            let job = *rng.pick(&JOBS);
            attrs(rng, NewLog::new(job, status))
        };
        let mut log = log
            .started(started)
            .counts(rng.below(100), rng.below(50), rng.below(5));
        if rng.chance(2) {
            log = log.counts(i64::MAX as u64, 1, 0);
        }
        if rng.chance(60) {
            log = log.finished(started + Duration::seconds(rng.below(7200) as i64));
        }
        out.push(LogRecord::seal(id, recorded, log).unwrap());
    }
    out
}

/// A fresh store in `dir` holding `records`.
pub async fn store_with(dir: &std::path::Path, records: &[LogRecord]) -> SqliteStore {
    let store = SqliteStore::open(dir.join("q.db")).unwrap();
    for chunk in records.chunks(500) {
        store.import(chunk.to_vec(), Durability::Buffered).await.unwrap();
    }
    store
}

fn range(rng: &mut Rng) -> TimeRange {
    let a = base() + minutes(rng) - Duration::hours(1);
    let b = a + Duration::hours(rng.below(24 * 5) as i64 + 1);
    match rng.below(3) {
        0 => TimeRange::since(a),
        1 => TimeRange::before(b),
        _ => TimeRange::between(a, b),
    }
}

/// A random filter; `run` says which run key it may ask for.
pub fn filter(rng: &mut Rng, run: &str) -> Filter {
    let mut f = Filter::default();
    if rng.chance(30) {
        f = f.jobs((0..rng.below(3) + 1).map(|_| *rng.pick(&JOBS)));
    }
    if rng.chance(30) {
        f = f.statuses((0..rng.below(3) + 1).map(|_| *rng.pick(&Status::ALL)));
    }
    if rng.chance(25) {
        f = f.started(range(rng));
    }
    if rng.chance(20) {
        f = f.finished(range(rng));
    }
    if rng.chance(25) {
        f = f.recorded(range(rng));
    }
    for _ in 0..rng.below(3) {
        if rng.chance(40) {
            let cond = rng.pick(&[
                "env=prod",
                "env=dev",
                "n=1",
                "n=\"1\"",
                "n=2.5",
                "tag={\"a\":[1,0]}",
            ]);
            f = f.attr(AttrEq::parse(cond).unwrap());
        }
    }
    if rng.chance(10) {
        f = f.run(run);
    }
    f
}
