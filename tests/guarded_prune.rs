//! Retention through the guarded pair: a prune reaches both copies, a prune interrupted
//! between them is finished from the copy that holds its marker (never undone by a
//! restore), and `check --repair` never brings a pruned record back. Automatic retention
//! of a pair, and of a store opened alone by URL.

use std::sync::Arc;

use synclog::retention::{self, Policy, PruneOptions};
use synclog::{
    Durability, Guarded, GuardedOptions, LogId, LogStore, LogStoreExt, NewLog, Status, VerifyOptions,
};
use synclog_core::memory::MemoryStore;

fn log(n: u64) -> NewLog {
    NewLog::new(["a", "b"][(n % 2) as usize], Status::Succeeded).counts(n, n, 0)
}

fn names(test: &str) -> (String, String) {
    (format!("{test}-primary"), format!("{test}-backup"))
}

async fn open(test: &str) -> (Guarded, Arc<dyn LogStore>, Arc<dyn LogStore>) {
    let (p, b) = names(test);
    let primary: Arc<dyn LogStore> = Arc::new(MemoryStore::open_named(&p));
    let backup: Arc<dyn LogStore> = Arc::new(MemoryStore::open_named(&b));
    let guard = Guarded::open(primary.clone(), backup.clone(), GuardedOptions::default())
        .await
        .expect("open the pair");
    (guard, primary, backup)
}

async fn ids(store: &dyn LogStore) -> Vec<u64> {
    let mut out = Vec::new();
    store
        .for_each_page(1000, &mut |page| {
            out.extend(page.iter().map(|r| r.id.get()));
            Ok(())
        })
        .await
        .expect("scan");
    out
}

fn options() -> PruneOptions {
    PruneOptions {
        durability: Durability::Buffered,
        ..PruneOptions::default()
    }
}

#[tokio::test]
async fn a_prune_through_the_pair_reaches_both_copies() {
    let (guard, primary, backup) = open("both").await;
    for n in 1..=20 {
        guard
            .append_with(log(n), Durability::Buffered)
            .await
            .expect("append");
    }
    let report = retention::prune(
        &guard,
        &Policy::default().before_id(LogId::new(11).unwrap()),
        &options(),
    )
    .await
    .expect("prune");
    assert_eq!(report.deleted, 10);
    for copy in [&primary, &backup] {
        assert_eq!(ids(&**copy).await, (11..=20).collect::<Vec<_>>());
        assert_eq!(copy.prune_markers().await.expect("markers").len(), 1);
    }
    assert_eq!(guard.prune_markers().await.expect("markers").len(), 1);
    let verified = guard.verify(VerifyOptions::default()).await.expect("verify");
    assert!(verified.is_clean(), "{verified:?}");
    assert_eq!(verified.prunes.len(), 1);
    let next = guard
        .append_with(log(21), Durability::Buffered)
        .await
        .expect("append");
    assert_eq!(next.id.get(), 21);
    guard.close().await.expect("close");
}

#[tokio::test]
async fn a_prune_interrupted_between_the_copies_is_finished_not_undone() {
    let (guard, primary, backup) = open("interrupted").await;
    for n in 1..=20 {
        guard
            .append_with(log(n), Durability::Buffered)
            .await
            .expect("append");
    }
    // The prune reached the primary only (the process died before the backup).
    let plan = retention::plan_prune(&guard, &Policy::default().keep_last(3), chrono::Utc::now())
        .await
        .expect("plan");
    let marker = plan.marker(None);
    primary
        .apply_prune(&marker, Durability::Buffered)
        .await
        .expect("primary");
    assert_eq!(ids(&*backup).await.len(), 20);

    // A read-only comparison reports the difference and restores nothing.
    let verified = guard.verify(VerifyOptions::default()).await.expect("verify");
    assert!(
        verified
            .engine_problems
            .iter()
            .any(|p| p.contains("lacked the prune marker")),
        "{verified:?}"
    );
    let looked = guard.reconcile(false).await.expect("reconcile");
    assert!(
        looked.missing_in_primary.is_empty(),
        "pruned ids offered for restore: {looked:?}"
    );
    assert_eq!(looked.prunes_missing.len(), 1);
    assert!(!looked.in_sync());

    // `check --repair` applies the marker to the backup; nothing comes back.
    let repaired = guard.check(true).await.expect("check --repair");
    assert_eq!(
        (repaired.prunes_applied, repaired.restored_to_primary),
        (1, 0),
        "{repaired:?}"
    );
    assert!(repaired.in_sync(), "{repaired:?}");
    let kept = ids(&*primary).await;
    assert_eq!(kept, vec![15, 16, 17, 18, 19, 20]);
    assert_eq!(ids(&*backup).await, kept);
    assert_eq!(backup.prune_markers().await.expect("markers"), vec![marker]);
    let verified = guard.verify(VerifyOptions::default()).await.expect("verify");
    assert!(verified.is_clean(), "{verified:?}");
    guard.close().await.expect("close");
}

#[tokio::test]
async fn reopening_the_pair_applies_a_marker_only_one_copy_holds() {
    let (guard, _, backup) = open("reopen").await;
    for n in 1..=12 {
        guard
            .append_with(log(n), Durability::Buffered)
            .await
            .expect("append");
    }
    let plan = retention::plan_prune(
        &guard,
        &Policy::default().before_id(LogId::new(7).unwrap()),
        chrono::Utc::now(),
    )
    .await
    .expect("plan");
    // This time only the backup got it.
    backup
        .apply_prune(&plan.marker(None), Durability::Buffered)
        .await
        .expect("backup");
    guard.close().await.expect("close");
    let (guard, primary, backup) = open("reopen").await;
    assert_eq!(guard.open_report().prunes_applied, 1, "{:?}", guard.open_report());
    assert_eq!(
        guard.open_report().restored_to_primary + guard.open_report().copied_to_backup,
        0
    );
    assert_eq!(ids(&*primary).await, (7..=12).collect::<Vec<_>>());
    assert_eq!(ids(&*backup).await, (7..=12).collect::<Vec<_>>());
    guard.close().await.expect("close");
}

#[tokio::test]
async fn automatic_retention_prunes_a_pair_opened_with_it() {
    let (guard, _, _) = open("auto").await;
    for n in 1..=12 {
        guard
            .append_with(log(n), Durability::Buffered)
            .await
            .expect("append");
    }
    guard.close().await.expect("close");
    let (p, b) = names("auto");
    let primary: Arc<dyn LogStore> = Arc::new(MemoryStore::open_named(&p));
    let backup: Arc<dyn LogStore> = Arc::new(MemoryStore::open_named(&b));
    let auto = retention::AutoRetain {
        policy: Policy::default().keep_last(2),
        every: std::time::Duration::from_secs(3600),
    };
    let guard = Guarded::open(
        primary.clone(),
        backup.clone(),
        GuardedOptions {
            retain: Some(auto),
            ..GuardedOptions::default()
        },
    )
    .await
    .expect("open with retention");
    // The first run is due at open; appends go on meanwhile.
    let appended = guard
        .append_with(log(13), Durability::Buffered)
        .await
        .expect("append");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut watch = guard.commit_watch().await.expect("watch");
    while guard.prune_markers().await.expect("markers").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no automatic prune within 10 s"
        );
        let _ = watch.changed(std::time::Duration::from_millis(20)).await;
    }
    let markers = guard.prune_markers().await.expect("markers");
    assert_eq!(markers.len(), 1);
    assert_eq!(markers[0].policy, auto.policy);
    assert!(guard.get(appended.id).await.expect("get").is_some());
    guard.close().await.expect("close");
    for name in [&p, &b] {
        let copy = MemoryStore::open_named(name);
        assert_eq!(copy.prune_markers().await.expect("markers").len(), 1);
    }
}

#[test]
fn retention_parameters_ride_on_the_primary_url() {
    let (url, auto) = synclog::split_retain("sqlite://data/a.db?retain=90d&retain_every=6h").expect("split");
    assert_eq!(url, "sqlite://data/a.db");
    let auto = auto.expect("retention");
    assert_eq!(
        auto.policy,
        Policy::default().older_than(std::time::Duration::from_secs(90 * 86_400))
    );
    let (url, auto) = synclog::split_retain("json://b.jsonl?rotate_mb=8&retain_keep=100").expect("split");
    assert_eq!(
        (url.as_str(), auto.map(|a| a.policy.keep_last)),
        ("json://b.jsonl?rotate_mb=8", Some(Some(100)))
    );
    assert!(synclog::split_retain("sqlite://a.db?retain=soon").is_err());
}

/// `retain_keep=2` on a single store's URL (here SQLite) prunes beside the appends until the
/// handle is closed; a read-only open of the same URL prunes nothing and reads.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_opened_alone_with_retain_prunes_beside_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?retain_keep=2", dir.path().join("a.db").display());
    let plain = synclog::open_url(&url.replace("?retain_keep=2", ""))
        .await
        .expect("open");
    for n in 1..=12 {
        plain.append(log(n)).await.expect("append");
    }
    plain.close().await.expect("close");
    let reader = synclog::open_url_with(
        &url,
        &synclog::OpenOptions {
            read_only: true,
            ..synclog::OpenOptions::default()
        },
    )
    .await
    .expect("read-only open");
    let store = synclog::open_url(&url).await.expect("open with retention");
    let appended = store.append(log(13)).await.expect("append");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.prune_markers().await.expect("markers").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no automatic prune within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let markers = store.prune_markers().await.expect("markers");
    assert_eq!(markers.len(), 1);
    assert_eq!(markers[0].policy, Policy::default().keep_last(2));
    // Each job keeps its newest two (the first run may come before or after log 13):
    // what remains is exactly what the marker does not cover.
    let pruned = retention::Pruned::of(&markers);
    let left = ids(&*store).await;
    assert_eq!(
        left,
        (1..=13)
            .filter(|&i| !pruned.contains(LogId::new(i).unwrap()))
            .collect::<Vec<_>>()
    );
    assert!(markers[0].count >= 8, "{:?}", markers[0]);
    assert_eq!(appended.id.get(), 13);
    assert!([10, 11, 12, 13].iter().all(|i| left.contains(i)), "{left:?}");
    store.close().await.expect("close");
    let report = reader.verify(VerifyOptions::default()).await.expect("verify");
    assert!(report.is_clean(), "{report:?}");
    assert!(reader
        .apply_prune(&markers[0], Durability::PowerLoss)
        .await
        .is_err());
    reader.close().await.expect("close");
}

/// `retain=` on the backup's URL of a guarded pair is refused before anything is opened
/// (a policy of the backup's own would prune it apart from the primary).
#[tokio::test]
async fn retain_on_the_backup_url_is_refused_and_nothing_is_created() {
    let dir = tempfile::tempdir().expect("dir");
    let primary = format!("sqlite://{}", dir.path().join("p.db").display());
    let backup = format!("json://{}?retain=30d", dir.path().join("b.jsonl").display());
    let err = synclog::open_guarded(&primary, &backup, GuardedOptions::default())
        .await
        .expect_err("retain on the backup");
    assert_eq!(err.kind(), synclog::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("primary"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).expect("read dir").count(), 0);
}

/// A copy whose prunes wait until the test lets them go.
#[derive(Debug)]
struct HeldPrunes {
    inner: Arc<dyn LogStore>,
    release: Arc<tokio::sync::Semaphore>,
    started: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl LogStore for HeldPrunes {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn capabilities(&self) -> synclog::Capabilities {
        self.inner.capabilities()
    }
    async fn commit_valid(
        &self,
        batch: synclog::ValidBatch,
        durability: Durability,
    ) -> synclog::Result<synclog::Committed> {
        self.inner.commit_valid(batch, durability).await
    }
    async fn get(&self, id: LogId) -> synclog::Result<Option<synclog::LogRecord>> {
        self.inner.get(id).await
    }
    async fn scan(&self, scan: &synclog::Scan) -> synclog::Result<Vec<synclog::LogRecord>> {
        self.inner.scan(scan).await
    }
    async fn last_id(&self) -> synclog::Result<Option<LogId>> {
        self.inner.last_id().await
    }
    async fn high_water(&self) -> synclog::Result<Option<LogId>> {
        self.inner.high_water().await
    }
    async fn sync(&self, level: Durability) -> synclog::Result<()> {
        self.inner.sync(level).await
    }
    async fn verify(&self, options: VerifyOptions) -> synclog::Result<synclog::VerifyReport> {
        self.inner.verify(options).await
    }
    async fn import_valid(
        &self,
        records: synclog::ValidRecords,
        durability: Durability,
    ) -> synclog::Result<synclog::ImportReport> {
        self.inner.import_valid(records, durability).await
    }
    async fn prune_markers(&self) -> synclog::Result<Vec<retention::PruneMarker>> {
        self.inner.prune_markers().await
    }
    async fn apply_prune(
        &self,
        marker: &retention::PruneMarker,
        durability: Durability,
    ) -> synclog::Result<retention::Applied> {
        self.started.notify_one();
        let _permit = self.release.acquire().await.expect("semaphore");
        self.inner.apply_prune(marker, durability).await
    }
    async fn close(&self) -> synclog::Result<()> {
        self.inner.close().await
    }
}

/// Appends through the pair go on while a prune of it is under way in a copy (the prune
/// runs beside the pair's writer, not inside it), and the prune completes afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn appends_through_the_pair_go_on_while_a_copy_is_pruning() {
    let (p, b) = names("appends_beside_prune");
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let started = Arc::new(tokio::sync::Notify::new());
    let primary: Arc<dyn LogStore> = Arc::new(HeldPrunes {
        inner: Arc::new(MemoryStore::open_named(&p)),
        release: release.clone(),
        started: started.clone(),
    });
    let backup: Arc<dyn LogStore> = Arc::new(MemoryStore::open_named(&b));
    let guard = Arc::new(
        Guarded::open(primary, backup, GuardedOptions::default())
            .await
            .expect("open"),
    );
    for n in 1..=10 {
        guard
            .append_with(log(n), Durability::Buffered)
            .await
            .expect("append");
    }
    let policy = Policy::default().before_id(LogId::new(6).expect("id"));
    let pruning = {
        let guard = guard.clone();
        tokio::spawn(async move { retention::prune(&*guard, &policy, &options()).await })
    };
    started.notified().await;
    // The primary's prune is held: appends still go through both copies.
    let appended = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        guard.append_with(log(11), Durability::Buffered),
    )
    .await
    .expect("an append waited for the prune")
    .expect("append");
    assert_eq!(appended.id.get(), 11);
    release.add_permits(1);
    let report = pruning.await.expect("task").expect("prune");
    assert_eq!(report.deleted, 5);
    let ids: Vec<u64> = guard
        .scan(&synclog::Scan::all(100))
        .await
        .expect("scan")
        .iter()
        .map(|r| r.id.get())
        .collect();
    assert_eq!(ids, (6..=11).collect::<Vec<_>>());
    assert!(guard
        .verify(VerifyOptions::default())
        .await
        .expect("verify")
        .is_clean());
    guard.close().await.expect("close");
}
