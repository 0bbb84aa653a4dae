//! Read: get, scan, filters, paging.

use synclog_core::{ErrorKind, Filter, LogId, Scan, Status};

use super::{everything, sample, Ctx};

/// `get` of an id never assigned is `None`, not an error.
pub async fn get_of_an_absent_id_is_none(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    assert_eq!(store.get(LogId::new(42).unwrap()).await.unwrap(), None);
    ctx.commit(&*store, vec![sample("a", 1)]).await;
    assert_eq!(store.get(LogId::new(2).unwrap()).await.unwrap(), None);
    ctx.done(at, store).await;
}

/// Paging with `after` visits every record exactly once, in id order.
pub async fn scan_pages_through_everything_once(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    let logs: Vec<_> = (0..23).map(|n| sample("p", n)).collect();
    let recs = ctx.commit(&*store, logs).await;
    let mut seen = Vec::new();
    let mut scan = Scan::all(5);
    loop {
        let page = store.scan(&scan).await.unwrap();
        assert!(page.len() <= 5);
        let Some(last) = page.last() else { break };
        super::assert_pages_advance(scan.after, last.id, false);
        scan.after = Some(last.id);
        seen.extend(page);
    }
    assert_eq!(seen, recs);
    ctx.done(at, store).await;
}

/// `job` and `status` filters return exactly the matching records.
pub async fn scan_filters_by_job_and_status(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    let logs: Vec<_> = (0..20)
        .map(|n| sample(if n % 2 == 0 { "even" } else { "odd" }, n))
        .collect();
    let recs = ctx.commit(&*store, logs).await;
    let by_job = store
        .scan(&Scan {
            filter: Filter::job("even"),
            ..Scan::all(100)
        })
        .await
        .unwrap();
    let expect: Vec<_> = recs.iter().filter(|r| r.job == "even").cloned().collect();
    assert_eq!(by_job, expect);
    let failed_odd = store
        .scan(&Scan {
            filter: Filter::job("odd").statuses([Status::Failed]),
            ..Scan::all(100)
        })
        .await
        .unwrap();
    let expect: Vec<_> = recs
        .iter()
        .filter(|r| r.job == "odd" && r.status == Status::Failed)
        .cloned()
        .collect();
    assert!(!expect.is_empty());
    assert_eq!(failed_odd, expect);
    ctx.done(at, store).await;
}

/// `after`/`before` bound the ids, and `descending` returns the newest first.
pub async fn scan_honours_bounds_and_descending_order(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    let recs = ctx
        .commit(&*store, (0..10).map(|n| sample("b", n)).collect())
        .await;
    let mid = store
        .scan(&Scan {
            after: Some(recs[2].id),
            before: Some(recs[7].id),
            ..Scan::all(100)
        })
        .await
        .unwrap();
    assert_eq!(mid, recs[3..7].to_vec());
    let newest = store
        .scan(&Scan {
            descending: true,
            ..Scan::all(3)
        })
        .await
        .unwrap();
    let expect: Vec<_> = recs.iter().rev().take(3).cloned().collect();
    assert_eq!(newest, expect);
    ctx.done(at, store).await;
}

/// A limit of 0 means the default page size; a limit above the maximum is invalid input.
pub async fn scan_limit_zero_means_default_and_too_large_is_rejected(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    ctx.commit(&*store, (0..3).map(|n| sample("l", n)).collect())
        .await;
    assert_eq!(store.scan(&Scan::default()).await.unwrap().len(), 3);
    let err = store.scan(&Scan::all(Scan::MAX_LIMIT + 1)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(everything(&*store).await.len(), 3);
    ctx.done(at, store).await;
}
