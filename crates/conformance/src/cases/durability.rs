//! Durability: what survives a reopen, the levels, the sync and checkpoint hooks.

use synclog_core::LogStoreExt;
use synclog_core::{CheckpointMode, Durability, ErrorKind};

use super::{everything, sample, Ctx};

/// Every committed record reads back identical after the store is closed and reopened.
pub async fn records_survive_a_reopen(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    let recs = ctx
        .commit(&*store, (0..12).map(|n| sample("r", n)).collect())
        .await;
    store.close().await.unwrap();
    drop(store);
    let store = ctx.reopen(&at).await;
    assert_eq!(everything(&*store).await, recs);
    assert_eq!(store.last_id().await.unwrap(), Some(recs[11].id));
    ctx.done(at, store).await;
}

/// After a reopen, new ids continue above the old ones.
pub async fn ids_continue_after_a_reopen(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    let first = ctx.commit(&*store, vec![sample("a", 1), sample("a", 2)]).await;
    store.close().await.unwrap();
    drop(store);
    let store = ctx.reopen(&at).await;
    let next = ctx.commit(&*store, vec![sample("a", 3)]).await;
    assert_eq!(next[0].id.get(), first[1].id.get() + 1);
    ctx.done(at, store).await;
}

/// Each level in the capabilities commits; each level outside them is refused as
/// `Unsupported` and writes nothing.
pub async fn every_supported_level_commits_and_others_are_refused(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    for level in Durability::ALL {
        let before = store.last_id().await.unwrap();
        let result = store.commit(vec![sample("lvl", 1)], level).await;
        if ctx.caps.durability.contains(&level) {
            let rec = &result.unwrap()[0];
            assert_eq!(store.get(rec.id).await.unwrap().as_ref(), Some(rec));
        } else {
            assert_eq!(result.unwrap_err().kind(), ErrorKind::Unsupported, "{level:?}");
            assert_eq!(store.last_id().await.unwrap(), before);
        }
    }
    ctx.done(at, store).await;
}

/// The sync hook succeeds at every supported level and refuses the others.
pub async fn sync_hook_succeeds_at_supported_levels(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    ctx.commit(&*store, vec![sample("s", 1)]).await;
    for level in Durability::ALL {
        let result = store.sync(level).await;
        if ctx.caps.durability.contains(&level) {
            result.unwrap();
        } else {
            assert_eq!(result.unwrap_err().kind(), ErrorKind::Unsupported);
        }
    }
    ctx.done(at, store).await;
}

/// `checkpoint` works when the capabilities say so and is `Unsupported` otherwise.
pub async fn checkpoint_is_reported_or_refused_as_unsupported(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    ctx.commit(&*store, vec![sample("c", 1)]).await;
    let result = store.checkpoint(CheckpointMode::Passive).await;
    if ctx.caps.checkpoint {
        result.unwrap();
    } else {
        assert_eq!(result.unwrap_err().kind(), ErrorKind::Unsupported);
    }
    ctx.done(at, store).await;
}

/// With no reader in the way, a passive then a truncating checkpoint complete.
pub async fn idle_passive_checkpoint_is_not_busy(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    ctx.commit(&*store, (0..50).map(|n| sample("c", n)).collect())
        .await;
    let passive = store.checkpoint(CheckpointMode::Passive).await.unwrap();
    assert!(!passive.busy, "{passive:?}");
    let truncate = store.checkpoint(CheckpointMode::Truncate).await.unwrap();
    assert!(!truncate.busy, "{truncate:?}");
    ctx.done(at, store).await;
}
