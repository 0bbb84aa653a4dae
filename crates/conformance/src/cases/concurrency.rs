//! Concurrency: many appenders at once.

use std::collections::HashSet;

use synclog_core::LogStoreExt;

use super::{everything, sample, Ctx};

/// 32 concurrent appenders: every acknowledged id is stored once, ids are unique, and
/// each appender's ids increase in the order its commits were acknowledged.
pub async fn concurrent_appenders_lose_and_duplicate_nothing(ctx: Ctx) {
    const TASKS: u64 = 32;
    const EACH: u64 = 15;
    let (at, store) = ctx.fresh().await;
    let level = ctx.durability();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for n in 0..EACH {
                    let rec = store
                        .append_with(sample(&format!("task-{t}"), n), level)
                        .await
                        .unwrap();
                    acked.push(rec);
                }
                acked
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        let acked = t.await.unwrap();
        assert!(
            acked.windows(2).all(|w| w[0].id < w[1].id),
            "one task's ids increase"
        );
        all.extend(acked);
    }
    let ids: HashSet<_> = all.iter().map(|r| r.id).collect();
    assert_eq!(ids.len() as u64, TASKS * EACH, "no duplicate ids");
    let stored = everything(&*store).await;
    assert_eq!(stored.len() as u64, TASKS * EACH, "no lost or extra records");
    all.sort_by_key(|r| r.id);
    assert_eq!(stored, all);
    ctx.done(at, store).await;
}
