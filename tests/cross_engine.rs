//! Records exported from any engine import into any other and verify clean there.

use std::sync::Arc;

use synclog::LogStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_engine_restores_every_other_engines_export() {
    let dir = tempfile::tempdir().unwrap();
    let mut stores: Vec<Arc<dyn LogStore>> = Vec::new();
    stores.push(
        synclog::open_url(&format!("sqlite://{}/a.db", dir.path().display()))
            .await
            .unwrap(),
    );
    stores.push(
        synclog::open_url(&format!("json://{}/b.jsonl", dir.path().display()))
            .await
            .unwrap(),
    );
    stores.push(
        synclog::open_url(&format!("memory://cross-{}", std::process::id()))
            .await
            .unwrap(),
    );
    synclog_conformance::cross::check_cross_restore(&stores).await;
}
