//! Scans, counts, summaries and runs under random filters give the answers of the
//! reference semantics (`Filter::matches`, the scanning defaults) on a random store.

use synclog_core::query::{count_by_scanning, summary_by_scanning, Filter, SummaryBuilder};
use synclog_core::run::runs_by_scanning;
use synclog_core::{LogRecord, LogStore, RunScan, Scan};
use synclog_sqlite::SqliteStore;

mod common;

/// Every record matching `f` through keyset paging, `page` at a time.
pub async fn paged(store: &SqliteStore, f: &Filter, page: usize, descending: bool) -> Vec<LogRecord> {
    let mut scan = Scan {
        descending,
        ..Scan::filtered(f.clone(), page)
    };
    let mut out = Vec::new();
    loop {
        let got = store.scan(&scan).await.unwrap();
        let Some(last) = got.last().map(|r| r.id) else {
            return out;
        };
        let full = got.len() == page;
        out.extend(got);
        if !full {
            return out;
        }
        match descending {
            true => scan.before = Some(last),
            false => scan.after = Some(last),
        }
    }
}

/// Scans in both directions, counts and summaries agree with the model for random filters.
#[tokio::test]
async fn filters_answer_like_the_reference_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = common::Rng::new(42);
    let all = common::records(&mut rng, 1500);
    let store = common::store_with(dir.path(), &all).await;
    let run = all.iter().find_map(|r| r.run.clone()).unwrap();
    for i in 0..150 {
        let f = common::filter(&mut rng, &run);
        let want: Vec<&LogRecord> = all.iter().filter(|r| f.matches(r)).collect();
        let page = 1 + rng.below(40) as usize;
        let up = paged(&store, &f, page, false).await;
        assert_eq!(
            up.iter().collect::<Vec<_>>(),
            want,
            "--- filter {i} ascending: {f:?}"
        );
        let mut down = paged(&store, &f, page, true).await;
        down.reverse();
        assert_eq!(
            down.iter().collect::<Vec<_>>(),
            want,
            "--- filter {i} descending: {f:?}"
        );
        assert_eq!(
            store.count(&f).await.unwrap(),
            want.len() as u64,
            "--- filter {i} count: {f:?}"
        );
        assert_eq!(
            store.count(&f).await.unwrap(),
            count_by_scanning(&store, &f).await.unwrap(),
            "--- filter {i}"
        );
        let mut b = SummaryBuilder::default();
        want.iter().for_each(|r| b.add(r));
        let summary = store.summary(&f).await.unwrap();
        assert_eq!(summary, b.finish(), "--- filter {i} summary: {f:?}");
        assert_eq!(
            summary,
            summary_by_scanning(&store, &f).await.unwrap(),
            "--- filter {i}"
        );
    }
}

/// The summary of everything (from the per-job totals) equals the one built record by
/// record, sums past `i64::MAX` included.
#[tokio::test]
async fn the_summary_of_everything_equals_the_scanning_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = common::Rng::new(3);
    let all = common::records(&mut rng, 2000);
    let store = common::store_with(dir.path(), &all).await;
    let got = store.summary(&Filter::default()).await.unwrap();
    assert_eq!(
        got,
        summary_by_scanning(&store, &Filter::default()).await.unwrap()
    );
    assert!(
        got.jobs.iter().any(|j| j.items_seen > i64::MAX as u64),
        "the data has huge counters"
    );
    assert_eq!(store.count(&Filter::default()).await.unwrap(), all.len() as u64);
}

/// Runs under random filters, paged both ways, equal the runs found by reading every record.
#[tokio::test]
async fn run_filters_answer_like_the_reference_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = common::Rng::new(9);
    let all = common::records(&mut rng, 1500);
    let store = common::store_with(dir.path(), &all).await;
    let run = all.iter().find_map(|r| r.run.clone()).unwrap();
    for i in 0..100 {
        let filter = common::filter(&mut rng, &run);
        for descending in [false, true] {
            let scan = RunScan {
                filter: filter.clone(),
                descending,
                unfinished: rng.chance(20),
                limit: 1 + rng.below(30) as usize,
                ..RunScan::default()
            };
            let mut want = runs_by_scanning(
                &store,
                &RunScan {
                    limit: 10_000,
                    ..scan.clone()
                },
            )
            .await
            .unwrap();
            let mut got = Vec::new();
            let mut page = scan.clone();
            loop {
                let runs = store.runs(&page).await.unwrap();
                let Some(last) = runs.last().map(|r| r.first_id()) else {
                    break;
                };
                let full = runs.len() == page.limit;
                got.extend(runs);
                if !full {
                    break;
                }
                match descending {
                    true => page.before = Some(last),
                    false => page.after = Some(last),
                }
            }
            want.truncate(10_000);
            assert_eq!(got, want, "--- filter {i} descending {descending}: {scan:?}");
        }
    }
}
