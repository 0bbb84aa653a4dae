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

/// Whether a plan step reads a whole table or index instead of searching it. (`SCAN s`
/// reads what the capped walk's co-routine `s` produced, one row at a time.)
fn full_scan(step: &str) -> bool {
    step.starts_with("SCAN ")
        && !step.starts_with("SCAN job_stats")
        && !step.starts_with("SCAN (subquery")
        && step != "SCAN s"
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

/// A scan of statuses or jobs with a time range first walks at most a few hundred entries
/// of each value's index, in the index's order: nothing is sorted, and the rows are looked
/// up as the walk produces them (a co-routine), not collected first. Only the fallback for
/// rare matches (the time range's index, last) sorts what it found by id.
#[tokio::test]
async fn a_capped_walk_sorts_nothing_and_is_followed_by_its_fallbacks() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = common::Rng::new(7);
    let store = common::store_with(dir.path(), &common::records(&mut rng, 300)).await;
    let day = TimeRange::since(common::base() - Duration::hours(24));
    for filter in [
        Filter::status(Status::Failed).started(day),
        Filter::job("orders").finished(day),
        Filter::status(Status::Partial).recorded(day),
    ] {
        for descending in [false, true] {
            let scan = Scan {
                descending,
                before: LogId::new(200),
                ..Scan::filtered(filter.clone(), 50)
            };
            let plan = store.query_plan(PlannedQuery::Scan(scan)).await.unwrap();
            assert_eq!(plan.first().map(String::as_str), Some("CO-ROUTINE s"), "{plan:?}");
            let (last, before_last) = plan.split_last().unwrap();
            assert!(before_last.iter().all(|s| !s.contains("TEMP B-TREE")), "{plan:?}");
            assert_eq!(last, "USE TEMP B-TREE FOR ORDER BY", "{plan:?}");
            // Between them: how far each value's walk went, from its index alone.
            assert!(
                plan.iter()
                    .skip(2)
                    .any(|s| s.starts_with("SEARCH w USING COVERING INDEX")),
                "{plan:?}"
            );
            assert!(
                plan.iter().any(|s| s.contains("USING INDEX logs_by_started")
                    || s.contains("USING INDEX logs_by_recorded")
                    || s.contains("USING INDEX logs_by_finished")),
                "{plan:?}"
            );
        }
    }
    // Several values: one capped co-routine each, merged (each arm's page, at most 50
    // rows, is sorted for the merge).
    let two = Filter::default()
        .statuses([Status::Failed, Status::Partial])
        .recorded(day);
    let plan = store
        .query_plan(PlannedQuery::Scan(Scan::filtered(two, 50)))
        .await
        .unwrap();
    assert_eq!(
        plan.first().map(String::as_str),
        Some("MERGE (UNION ALL)"),
        "{plan:?}"
    );
    assert_eq!(
        plan.iter().filter(|s| *s == "CO-ROUTINE s").count(),
        2,
        "{plan:?}"
    );
}

/// A plan is asked for what the store would answer: a filter the store refuses is refused
/// here too, with the same kind of error, for every kind of question.
#[tokio::test]
async fn a_plan_of_a_bad_filter_is_refused_as_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("q.db")).unwrap();
    let backwards = Filter::default().recorded(TimeRange::between(
        common::base(),
        common::base() - Duration::days(1),
    ));
    for q in [
        PlannedQuery::Scan(Scan::filtered(backwards.clone(), 50)),
        PlannedQuery::Count(backwards.clone()),
        PlannedQuery::CountByStatus(backwards.clone()),
        PlannedQuery::Summary(backwards.clone()),
    ] {
        let what = format!("{q:?}");
        match store.query_plan(q).await {
            Err(synclog_core::Error::InvalidInput { .. }) => {}
            other => panic!("{what}: {other:?}"),
        }
    }
}
