//! Every filter kind is answered from an index: no step of a scan, count (in all or by
//! status) or summary reads the whole `logs` table (SQLite's `EXPLAIN QUERY PLAN`).

use chrono::Duration;
use synclog_core::query::{AttrEq, Filter, TimeRange};
use synclog_core::{LogId, Scan, Status};
use synclog_sqlite::{PlannedQuery, SqliteStore};

mod common;

fn filters() -> Vec<(&'static str, Filter)> {
    let day = TimeRange::since(common::base() - Duration::hours(24));
    let week = TimeRange::between(common::base() - Duration::days(7), common::base());
    let attr = || AttrEq::parse("env=prod").unwrap();
    vec![
        ("job", Filter::job("orders")),
        ("jobs", Filter::default().jobs(["orders", "crm"])),
        ("status", Filter::status(Status::Failed)),
        (
            "statuses",
            Filter::default().statuses([Status::Failed, Status::Abandoned]),
        ),
        ("started", Filter::default().started(day)),
        ("finished", Filter::default().finished(week)),
        ("recorded", Filter::default().recorded(week)),
        (
            "started and finished",
            Filter::default().started(day).finished(week),
        ),
        ("attr", Filter::default().attr(attr())),
        (
            "attrs",
            Filter::default().attr(attr()).attr(AttrEq::parse("n=1").unwrap()),
        ),
        ("run", Filter::default().run("run-1")),
        (
            "failed started in the last day",
            Filter::status(Status::Failed).started(day),
        ),
        (
            "status over a week",
            Filter::status(Status::Failed).recorded(week),
        ),
        ("job and attr", Filter::job("orders").attr(attr())),
        (
            "job, statuses and finished",
            Filter::job("crm")
                .statuses([Status::Succeeded, Status::Partial])
                .finished(week),
        ),
    ]
}

/// Whether a plan step reads a whole table or index instead of searching it.
fn full_scan(step: &str) -> bool {
    step.starts_with("SCAN ") && !step.starts_with("SCAN job_stats") && !step.starts_with("SCAN (subquery")
}

#[tokio::test]
async fn every_filter_kind_is_answered_from_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = common::Rng::new(7);
    let store = common::store_with(dir.path(), &common::records(&mut rng, 300)).await;
    let mut bad = Vec::new();
    for (name, filter) in filters() {
        let mut queries = vec![
            ("count", PlannedQuery::Count(filter.clone())),
            ("count by status", PlannedQuery::CountByStatus(filter.clone())),
            ("summary", PlannedQuery::Summary(filter.clone())),
        ];
        for descending in [false, true] {
            let scan = Scan {
                descending,
                ..Scan::filtered(filter.clone(), 50)
            };
            let next_page = Scan {
                before: LogId::new(200),
                ..scan.clone()
            };
            queries.push(("scan", PlannedQuery::Scan(scan)));
            queries.push(("scan, next page", PlannedQuery::Scan(next_page)));
        }
        for (what, q) in queries {
            let plan = store.query_plan(q).await.unwrap();
            println!("--- {name} / {what}: {plan:?}");
            if plan.iter().any(|s| full_scan(s)) {
                bad.push(format!("{name} / {what}: {plan:?}"));
            }
        }
    }
    assert!(bad.is_empty(), "full scans:\n{}", bad.join("\n"));
}

/// The empty filter's summary reads the per-job totals, not the records.
#[tokio::test]
async fn a_summary_of_everything_reads_the_job_totals() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("q.db")).unwrap();
    let plan = store
        .query_plan(PlannedQuery::Summary(Filter::default()))
        .await
        .unwrap();
    assert!(plan[0].contains("job_stats"), "{plan:?}");
    assert!(
        plan.iter()
            .all(|s| !s.starts_with("SCAN l") && !s.starts_with("SCAN logs")),
        "{plan:?}"
    );
}
