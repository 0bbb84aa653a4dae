//! Object safety: the store works as `Arc<dyn LogStore>` moved across tasks.

use std::sync::Arc;

use synclog_core::{LogStore, LogStoreExt, Scan};

use super::{sample, Ctx};

fn assert_shareable<T: Send + Sync + 'static>(_: &T) {}

/// An `Arc<dyn LogStore>` is `Send + Sync`, clones into spawned tasks, and the extension
/// trait's conveniences work through it.
pub async fn shared_dyn_store_works_across_tasks(ctx: Ctx) {
    let (at, store) = ctx.fresh().await;
    let shared: Arc<dyn LogStore> = store.clone();
    assert_shareable(&shared);
    let level = ctx.durability();
    let writer = {
        let s = shared.clone();
        tokio::spawn(async move { s.append_with(sample("dyn", 1), level).await.unwrap() })
    };
    let rec = writer.await.unwrap();
    let reader = {
        let s = shared.clone();
        tokio::spawn(async move { s.get_required(rec.id).await.unwrap() })
    };
    assert_eq!(reader.await.unwrap(), rec);
    assert_eq!(shared.scan(&Scan::all(10)).await.unwrap(), vec![rec]);
    ctx.done(at, store).await;
}
