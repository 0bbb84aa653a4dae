//! Commit: atomic batches, ids, checksums.

use synclog_core::ErrorKind;
use synclog_core::LogStoreExt;

use super::{sample, Ctx};

/// A batch comes back in order with strictly increasing ids, readable at once.
pub async fn returns_records_in_batch_order_with_increasing_ids(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    let logs: Vec<_> = (0..5).map(|n| sample("orders", n)).collect();
    let recs = ctx.commit(&*store, logs.clone()).await;
    assert_eq!(recs.len(), 5);
    for (i, (rec, log)) in recs.iter().zip(&logs).enumerate() {
        assert_eq!(rec.items_seen, log.items_seen, "record {i} is log {i}");
        assert_eq!(store.get(rec.id).await.unwrap().as_ref(), Some(rec));
    }
    assert!(recs.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(store.last_id().await.unwrap(), Some(recs[4].id));
    ctx.done(at, store).await;
}

/// Every committed record's checksum matches its fields, and `recorded_at` is set.
pub async fn records_carry_intact_checksums_and_recorded_at(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    for rec in ctx.commit(&*store, vec![sample("a", 1), sample("b", 2)]).await {
        assert!(rec.is_intact());
        assert!(rec.recorded_at >= before);
        let stored = store.get(rec.id).await.unwrap().unwrap();
        assert!(stored.is_intact());
        assert_eq!(stored.checksum, rec.checksum);
    }
    ctx.done(at, store).await;
}

/// An empty batch succeeds, returns nothing and assigns no id.
pub async fn empty_batch_writes_nothing(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    assert!(ctx.commit(&*store, vec![]).await.is_empty());
    assert_eq!(store.last_id().await.unwrap(), None);
    let first = ctx.commit(&*store, vec![sample("a", 1)]).await;
    assert_eq!(first[0].id.get(), 1);
    ctx.done(at, store).await;
}

/// Each commit's ids are greater than every id committed before it.
pub async fn ids_exceed_every_earlier_id(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    let mut last = 0;
    for n in 0..10 {
        let recs = ctx
            .commit(&*store, vec![sample("j", n); (n % 3 + 1) as usize])
            .await;
        for r in recs {
            assert!(r.id.get() > last, "{} after {last}", r.id);
            last = r.id.get();
        }
    }
    ctx.done(at, store).await;
}

/// After `close`, a commit fails with the `Closed` kind.
pub async fn commit_after_close_is_closed(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    store.close().await.unwrap();
    let err = store
        .commit(vec![sample("a", 1)], ctx.durability())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);
    drop(store);
    ctx.harness.cleanup(&at).await.unwrap();
}
