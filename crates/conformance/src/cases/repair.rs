//! Repair: a damaged record is replaced by an intact one; an intact one never is.

use synclog_core::LogStoreExt;
use synclog_core::{ErrorKind, LogRecord, VerifyOptions};

use super::{everything, sample, Ctx};

/// A record damaged behind the store's back is replaced by the intact copy offered, and
/// reads return the intact record afterwards.
pub async fn repair_replaces_a_damaged_record(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    let recs = ctx
        .commit(&*store, (0..6).map(|n| sample("r", n)).collect())
        .await;
    store.close().await.unwrap();
    drop(store);
    let victim = recs[2].clone();
    ctx.harness.corrupt_record(&at, victim.id).await.unwrap();
    let store = ctx.reopen(&at).await;
    // --- step: repair offers every record; only the damaged one changes
    let report = store.repair(recs.clone(), ctx.durability()).await.unwrap();
    assert_eq!(report.replaced + report.inserted, 1, "{report:?}");
    assert_eq!(report.already_present, 5, "{report:?}");
    assert!(report.conflicts.is_empty(), "{report:?}");
    assert_eq!(store.get(victim.id).await.unwrap(), Some(victim.clone()));
    assert_eq!(everything(&*store).await, recs);
    store.close().await.unwrap();
    drop(store);
    // --- step: the repair is durable
    let store = ctx.reopen(&at).await;
    assert_eq!(store.get(victim.id).await.unwrap(), Some(victim));
    let verified = store.verify(VerifyOptions::default()).await.unwrap();
    assert!(verified.missing.is_empty(), "{verified:?}");
    ctx.done(at, store).await;
}

/// An intact stored record is never replaced: a different record offered under its id is
/// a conflict, and the stored one is kept.
pub async fn repair_never_replaces_an_intact_record(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    let recs = ctx
        .commit(&*store, (0..3).map(|n| sample("r", n)).collect())
        .await;
    let other = LogRecord::seal(recs[1].id, recs[1].recorded_at, sample("other", 9)).unwrap();
    let report = store.repair(vec![other], ctx.durability()).await.unwrap();
    assert_eq!(report.replaced, 0, "{report:?}");
    assert_eq!(report.conflicts.len(), 1, "{report:?}");
    assert_eq!(report.conflicts[0].id, recs[1].id);
    assert_eq!(everything(&*store).await, recs);
    ctx.done(at, store).await;
}

/// A damaged record is never offered as a repair: it is refused and nothing is written.
pub async fn repair_refuses_a_damaged_offer_and_writes_nothing(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    let recs = ctx
        .commit(&*store, (0..2).map(|n| sample("r", n)).collect())
        .await;
    let mut bad = LogRecord::seal(recs[1].id.next().unwrap(), recs[1].recorded_at, sample("r", 5)).unwrap();
    bad.message.push_str(" (damaged)");
    let err = store.repair(vec![bad], ctx.durability()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert_eq!(everything(&*store).await, recs);
    ctx.done(at, store).await;
}
