//! Restore and import: ids and checksums kept, idempotent, conflicts reported.

use chrono::Utc;
use synclog_core::{Attrs, Error, ErrorKind, LogId, LogRecord, LogStoreExt, VerifyOptions};

use super::{everything, sample, Ctx};

/// Records sealed elsewhere with ids 1..=n, as an export would carry them.
pub fn foreign(n: u64) -> Vec<LogRecord> {
    let now = Utc::now();
    (1..=n)
        .map(|i| LogRecord::seal(LogId::new(i).unwrap(), now, sample("foreign", i)).unwrap())
        .collect()
}

/// Imported records read back with the same ids, fields and checksums.
pub async fn import_keeps_ids_and_checksums(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    let recs: Vec<_> = foreign(9).into_iter().skip(4).collect();
    let report = store.import(recs.clone(), ctx.durability()).await.unwrap();
    assert_eq!(report.inserted, 5);
    assert_eq!(everything(&*store).await, recs);
    ctx.done(at, store).await;
}

/// Importing the same records again inserts nothing and counts them as already present.
pub async fn importing_twice_changes_nothing(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    let recs = foreign(6);
    store.import(recs.clone(), ctx.durability()).await.unwrap();
    let again = store.import(recs.clone(), ctx.durability()).await.unwrap();
    assert_eq!((again.inserted, again.already_present), (0, 6));
    assert!(again.conflicts.is_empty());
    assert_eq!(everything(&*store).await, recs);
    ctx.done(at, store).await;
}

/// A different record under a stored id is reported as a conflict; the stored one stays.
pub async fn conflict_is_reported_and_the_stored_record_kept(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    let stored = ctx
        .commit(&*store, vec![sample("mine", 1), sample("mine", 2)])
        .await;
    let rival = LogRecord::seal(stored[1].id, Utc::now(), sample("theirs", 99)).unwrap();
    let fresh = LogRecord::seal(LogId::new(3).unwrap(), Utc::now(), sample("theirs", 3)).unwrap();
    let report = store
        .import(vec![rival.clone(), fresh.clone()], ctx.durability())
        .await
        .unwrap();
    assert_eq!(report.inserted, 1);
    assert_eq!(report.conflicts.len(), 1);
    assert_eq!(report.conflicts[0].id, stored[1].id);
    assert_eq!(report.conflicts[0].stored, stored[1].checksum);
    assert_eq!(report.conflicts[0].offered, rival.checksum);
    assert_eq!(store.get_required(stored[1].id).await.unwrap(), stored[1]);
    assert_eq!(store.get_required(fresh.id).await.unwrap(), fresh);
    ctx.done(at, store).await;
}

/// Everything exported from one store imports into an empty one, which verifies clean.
pub async fn import_into_an_empty_store_verifies_clean(ctx: Ctx) {
    let (at, source) = ctx.fresh().await;
    let recs = ctx
        .commit(&*source, (0..40).map(|n| sample("x", n)).collect())
        .await;
    let (at2, target) = ctx.fresh().await;
    let report = source.copy_to(&*target, 7, ctx.durability()).await.unwrap();
    assert_eq!(report.inserted, 40);
    let verified = target.verify(VerifyOptions::default()).await.unwrap();
    assert!(verified.is_clean() && verified.checked == 40, "{verified:?}");
    assert_eq!(everything(&*target).await, recs);
    ctx.done(at, source).await;
    ctx.done(at2, target).await;
}

/// After importing ids up to n, the next append gets an id above n.
pub async fn appends_after_import_get_larger_ids(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    let recs: Vec<_> = foreign(20).into_iter().skip(17).collect();
    store.import(recs, ctx.durability()).await.unwrap();
    let next = ctx.commit(&*store, vec![sample("after", 1)]).await;
    assert_eq!(next[0].id.get(), 21);
    ctx.done(at, store).await;
}

/// An import holding one record whose checksum does not match is refused whole as `Corrupt`.
pub async fn import_refuses_a_corrupt_record_and_writes_nothing(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    let mut recs = foreign(3);
    recs[2].message.push_str(" (edited)");
    let err = store.import(recs, ctx.durability()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert_eq!(store.last_id().await.unwrap(), None);
    ctx.done(at, store).await;
}

/// An import holding one record whose attributes are not JSON (its checksum made to match,
/// as a buggy exporter would) is refused whole as `InvalidInput` naming `attrs`.
pub async fn import_refuses_attributes_that_are_not_json_and_writes_nothing(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    let mut recs = foreign(3);
    recs[1].attrs = Attrs::from_stored("{\"source\":".into());
    recs[1].checksum = recs[1].compute_checksum();
    let err = store.import(recs, ctx.durability()).await.unwrap_err();
    match &err {
        Error::InvalidInput { field, .. } => assert_eq!(*field, "attrs", "{err}"),
        other => panic!("expected InvalidInput for attrs, got {other:?}"),
    }
    assert_eq!(store.last_id().await.unwrap(), None);
    ctx.done(at, store).await;
}
