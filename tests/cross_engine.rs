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
    let schema = format!("synclog_cross_{}", std::process::id());
    match std::env::var("SYNCLOG_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => {
            let sep = if url.contains('?') { '&' } else { '?' };
            stores.push(
                synclog::open_url(&format!("{url}{sep}synclog_schema={schema}"))
                    .await
                    .unwrap(),
            );
        }
        _ => eprintln!("notice: SYNCLOG_TEST_POSTGRES_URL is not set; PostgreSQL is left out of this check"),
    }
    synclog_conformance::cross::check_cross_restore(&stores).await;
    if let Ok(url) = std::env::var("SYNCLOG_TEST_POSTGRES_URL") {
        if !url.is_empty() {
            synclog::bench::drop_postgres_schema(&url, &schema).await.unwrap();
        }
    }
}
