//! Scans, runs, counts and summaries answered in SQL (indexes, the attribute table, the
//! per-job aggregates) give the answers of the scanning defaults, on a random store
//! written through every path that inserts, replaces or deletes records. A server is
//! needed: `SYNCLOG_TEST_POSTGRES_URL`; without it each test prints a notice and returns.

use chrono::{Duration, TimeZone, Utc};
use serde_json::json;
use synclog_core::memory::MemoryStore;
use synclog_core::query::{count_by_scanning, summary_by_scanning, AttrEq, Filter, TimeRange};
use synclog_core::{
    Durability, LogId, LogRecord, LogStore, LogStoreExt, NewLog, RunScan, Scan, Status, Timestamp,
};
use synclog_postgres::{PgOptions, PgStore};

mod common;

use common::{drop_schema, raw_client, schema, server};

const JOBS: [&str; 5] = ["orders", "invoices", "crm", "büro", "stock"];
const LONE: [Status; 5] = [
    Status::Succeeded,
    Status::Failed,
    Status::Partial,
    Status::Skipped,
    Status::Started,
];

fn t0() -> Timestamp {
    Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap()
}

fn at(rng: &mut fastrand::Rng) -> Timestamp {
    t0() + Duration::minutes(rng.i64(0..10 * 24 * 60)) + Duration::microseconds(rng.i64(0..1_000_000))
}

/// The values attribute `n` takes: equal as jsonb, different as canonical text.
fn n_values() -> [serde_json::Value; 3] {
    [json!(1), json!(1.0), json!("1")]
}

fn lone(rng: &mut fastrand::Rng) -> NewLog {
    let started = at(rng);
    let mut log = NewLog::new(JOBS[rng.usize(..JOBS.len())], LONE[rng.usize(..LONE.len())])
        .started(started)
        .counts(rng.u64(0..100), rng.u64(0..50), rng.u64(0..10))
        .attr("env", if rng.bool() { "prod" } else { "dev" })
        .attr("shard", rng.i64(0..3));
    if rng.u8(..3) == 0 {
        log = log.attr("n", n_values()[rng.usize(..3)].clone());
    }
    if rng.bool() {
        log = log.finished(started + Duration::seconds(rng.i64(0..7200)));
    }
    log
}

/// A random filter over the data set's jobs, statuses, times, attributes and runs.
fn filter(rng: &mut fastrand::Rng, runs: &[String]) -> Filter {
    let mut f = Filter::default();
    let range = |rng: &mut fastrand::Rng| {
        let (a, b) = (at(rng), at(rng));
        match rng.u8(..3) {
            0 => TimeRange::between(a.min(b), a.max(b)),
            1 => TimeRange::since(a),
            _ => TimeRange::before(a),
        }
    };
    if rng.u8(..3) == 0 {
        f = f.jobs((0..rng.usize(1..3)).map(|_| JOBS[rng.usize(..JOBS.len())]));
    }
    if rng.u8(..3) == 0 {
        f = f.statuses((0..rng.usize(1..3)).map(|_| Status::ALL[rng.usize(..Status::ALL.len())]));
    }
    if rng.u8(..4) == 0 {
        f = f.started(range(rng));
    }
    if rng.u8(..5) == 0 {
        f = f.finished(range(rng));
    }
    if rng.u8(..5) == 0 {
        f = f.recorded(range(rng));
    }
    if rng.u8(..4) == 0 {
        f = f.attr(AttrEq::new("env", json!(if rng.bool() { "prod" } else { "dev" })));
    }
    if rng.u8(..4) == 0 {
        f = f.attr(AttrEq::new("n", n_values()[rng.usize(..3)].clone()));
    }
    if rng.u8(..6) == 0 {
        f = f.attr(AttrEq::new("shard", json!(rng.i64(0..3))));
    }
    if rng.u8(..8) == 0 && !runs.is_empty() {
        f = f.run(runs[rng.usize(..runs.len())].clone());
    }
    f
}

/// Every record, in id order, through pages of a plain scan.
async fn everything(store: &dyn LogStore) -> Vec<LogRecord> {
    let mut all = Vec::new();
    store
        .for_each_page(1000, &mut |page| {
            all.extend(page);
            Ok(())
        })
        .await
        .unwrap();
    all
}

/// `filter`'s matches read page by page through `scan`, ascending or descending.
async fn paged(store: &PgStore, filter: &Filter, descending: bool, page: usize) -> Vec<LogId> {
    let mut scan = Scan {
        filter: filter.clone(),
        limit: page,
        descending,
        ..Scan::default()
    };
    let mut out = Vec::new();
    loop {
        let got = store.scan(&scan).await.unwrap();
        let Some(last) = got.last() else { break };
        match descending {
            true => scan.before = Some(last.id),
            false => scan.after = Some(last.id),
        }
        let full = got.len() == page;
        out.extend(got.iter().map(|r| r.id));
        if !full {
            break;
        }
    }
    out
}

/// On a store written by commits, out-of-order imports, keyed runs, a repair of a damaged
/// record and a delete made outside synclog, every random filter's scan (paged both
/// ways), runs, count and summary equal what the scanning defaults answer over the same
/// records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_summaries_scans_and_runs_equal_the_scanning_answers_on_a_random_store() {
    let Some(url) = server() else { return };
    let s = schema("queries");
    let seed = fastrand::u64(..);
    eprintln!("--- seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let store = PgStore::connect(
        &url,
        PgOptions {
            schema: s.clone(),
            pool_size: 2,
            ..PgOptions::default()
        },
    )
    .await
    .unwrap();
    let d = Durability::Buffered;

    // --- step: imported records, in shuffled batches (ids 1..=300)
    let mut imported: Vec<LogRecord> = (1..=300u64)
        .map(|i| LogRecord::seal(LogId::new(i).unwrap(), at(&mut rng), lone(&mut rng)).unwrap())
        .collect();
    rng.shuffle(&mut imported);
    for batch in imported.chunks(37) {
        store.import(batch.to_vec(), d).await.unwrap();
    }
    // --- step: commits and runs on top
    let mut runs = Vec::new();
    for i in 0..40 {
        store
            .commit((0..rng.usize(1..6)).map(|_| lone(&mut rng)).collect(), d)
            .await
            .unwrap();
        let key = format!("run-{i}");
        let job = JOBS[rng.usize(..JOBS.len())];
        let start = NewLog::new(job, Status::Started)
            .run(key.clone())
            .started(at(&mut rng))
            .attr("env", if rng.bool() { "prod" } else { "dev" });
        store.start_run(start, d).await.unwrap();
        if rng.bool() {
            store
                .append_with(NewLog::new(job, Status::Progress).run(key.clone()), d)
                .await
                .unwrap();
        }
        let end = [Status::Succeeded, Status::Failed, Status::Abandoned][rng.usize(..3)];
        if rng.u8(..4) > 0 {
            store
                .finish_run(&key, NewLog::new("", end).counts(3, 2, 1), d)
                .await
                .unwrap();
        }
        runs.push(key);
    }
    // --- step: a record damaged outside synclog and repaired; one deleted outside synclog
    let admin = raw_client(&url).await;
    let victim = store.get(LogId::new(42).unwrap()).await.unwrap().unwrap();
    admin
        .execute(
            &format!("UPDATE {s}.logs SET message = 'tampered', status = 'failed' WHERE id = 42"),
            &[],
        )
        .await
        .unwrap();
    store.repair(vec![victim], d).await.unwrap();
    admin
        .execute(&format!("DELETE FROM {s}.logs WHERE id = 7"), &[])
        .await
        .unwrap();

    // --- step: the same records in the reference store
    let all = everything(&store).await;
    assert!(all.iter().all(LogRecord::is_intact));
    let model = MemoryStore::new();
    model.import(all.clone(), d).await.unwrap();

    // --- step: every filter's answers
    for round in 0..250 {
        let f = filter(&mut rng, &runs);
        let want: Vec<LogId> = all.iter().filter(|r| f.matches(r)).map(|r| r.id).collect();
        assert_eq!(
            store.count(&f).await.unwrap(),
            want.len() as u64,
            "round {round}: count {f:?}"
        );
        assert_eq!(
            store.count(&f).await.unwrap(),
            count_by_scanning(&model, &f).await.unwrap(),
            "round {round}: {f:?}"
        );
        assert_eq!(
            store.summary(&f).await.unwrap(),
            summary_by_scanning(&model, &f).await.unwrap(),
            "round {round}: summary {f:?}"
        );
        let page = rng.usize(1..9);
        assert_eq!(
            paged(&store, &f, false, page).await,
            want,
            "round {round}: scan {f:?}"
        );
        let mut down = want.clone();
        down.reverse();
        assert_eq!(
            paged(&store, &f, true, page).await,
            down,
            "round {round}: scan down {f:?}"
        );
        let rs = RunScan {
            filter: f.clone(),
            descending: rng.bool(),
            limit: rng.usize(0..5),
            unfinished: rng.u8(..4) == 0,
            ..RunScan::default()
        };
        assert_eq!(
            store.runs(&rs).await.unwrap(),
            model.runs(&rs).await.unwrap(),
            "round {round}: runs {rs:?}"
        );
    }
    store.close().await.unwrap();
    drop_schema(&url, &s).await;
}
