//! Verify: the independent read path finds corrupt and missing records.

use synclog_core::{IdRange, VerifyOptions};

use super::{sample, Ctx};

/// A store that was only appended to verifies clean, having checked every record.
pub async fn clean_store_verifies_clean(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    let recs = ctx
        .commit(&*store, (0..30).map(|n| sample("v", n)).collect())
        .await;
    let report = store.verify(VerifyOptions::default()).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.checked, 30);
    assert_eq!(report.first_id, Some(recs[0].id));
    assert_eq!(report.last_id, Some(recs[29].id));
    if ctx.caps.deep_verify {
        let deep = store.verify(VerifyOptions { deep: true }).await.unwrap();
        assert!(deep.deep_checked && deep.is_clean(), "{deep:?}");
    }
    ctx.done(at, store).await;
}

/// A record damaged behind the store's back is reported corrupt, by its id.
pub async fn corrupted_record_is_found_by_id(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    let recs = ctx
        .commit(&*store, (0..10).map(|n| sample("v", n)).collect())
        .await;
    store.close().await.unwrap();
    drop(store);
    let victim = recs[4].id;
    ctx.harness.corrupt_record(&at, victim).await.unwrap();
    let store = ctx.reopen(&at).await;
    let report = store.verify(VerifyOptions::default()).await.unwrap();
    assert!(!report.is_clean());
    let ids: Vec<_> = report.corrupt.iter().map(|c| c.id).collect();
    assert_eq!(ids, vec![Some(victim)], "{report:?}");
    ctx.done(at, store).await;
}

/// A record removed behind the store's back is reported missing.
pub async fn missing_record_is_found(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    let recs = ctx
        .commit(&*store, (0..10).map(|n| sample("v", n)).collect())
        .await;
    store.close().await.unwrap();
    drop(store);
    let victim = recs[6].id;
    ctx.harness.remove_record(&at, victim).await.unwrap();
    let store = ctx.reopen(&at).await;
    let report = store.verify(VerifyOptions::default()).await.unwrap();
    assert_eq!(report.missing, vec![IdRange::single(victim)], "{report:?}");
    assert!(report.corrupt.is_empty());
    assert_eq!(report.checked, 9);
    ctx.done(at, store).await;
}

/// After its storage is deleted behind its back, a store reopens empty and verifies clean:
/// it never invents records, and ids start again at 1.
pub async fn destroyed_storage_reopens_empty_and_clean(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    ctx.commit(&*store, (0..5).map(|n| sample("gone", n)).collect())
        .await;
    store.close().await.unwrap();
    drop(store);
    ctx.harness.destroy(&at).await.unwrap();
    let store = ctx.reopen(&at).await;
    assert_eq!(store.last_id().await.unwrap(), None);
    let report = store.verify(VerifyOptions::default()).await.unwrap();
    assert!(report.is_clean() && report.checked == 0, "{report:?}");
    let first = ctx.commit(&*store, vec![sample("again", 1)]).await;
    assert_eq!(first[0].id.get(), 1);
    ctx.done(at, store).await;
}
