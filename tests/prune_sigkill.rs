//! `synclog prune` SIGKILLed at moments spread over its run, on every engine and on the
//! guarded default: early (open, plan, archive), and, where a reader can watch the store
//! beside the prune, right after its marker is stored (deleting, giving space back).
//! After each kill the store opens and verifies clean, every record is either present or
//! covered by a stored marker (never gone unmarked, never both), no id is handed out
//! again, and the same prune run again completes it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use synclog::{Durability, LogStore, LogStoreExt, NewLog, OpenOptions, Scan, Status, VerifyOptions};

/// Records in each store; the prune takes those below `CUT`.
const RECORDS: u64 = 30_000;
const CUT: u64 = 22_501;

/// Kills by time from the process's start (its open, plan and archive).
const EARLY_MS: [u64; 2] = [30, 300];
/// Kills this long after the marker is seen stored (deleting, giving space back).
const AFTER_MARKER_MS: [u64; 4] = [0, 5, 20, 80];

/// Where kills land in a store no reader can watch beside the prune: these fractions of
/// the time a whole prune took.
const LATE_FRACTIONS: [f64; 4] = [0.5, 0.75, 0.9, 0.97];

/// How the store is named to the binary and opened by the test.
struct Target {
    name: &'static str,
    /// `--store`/`--backup` arguments (`--no-backup` for a store alone).
    args: Vec<String>,
    /// The primary's URL (the store's, alone).
    primary: String,
    backup: Option<String>,
    /// A URL a read-only open can watch beside the prune (sled cannot be opened beside
    /// its writer).
    watch: Option<String>,
    dir: tempfile::TempDir,
}

impl Target {
    async fn open(&self) -> std::sync::Arc<dyn LogStore> {
        match &self.backup {
            Some(backup) => std::sync::Arc::new(
                synclog::open_guarded(&self.primary, backup, synclog::GuardedOptions::default())
                    .await
                    .unwrap_or_else(|e| panic!("{}: opening the pair: {e}", self.name)),
            ),
            None => synclog::open_url(&self.primary)
                .await
                .unwrap_or_else(|e| panic!("{}: opening: {e}", self.name)),
        }
    }

    fn prune(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_synclog"));
        c.current_dir(self.dir.path())
            .env_remove("SYNCLOG_STORE")
            .env_remove("SYNCLOG_BACKUP")
            .env_remove("SYNCLOG_LOG")
            .args(&self.args)
            .args(["prune", "--before-id", &CUT.to_string(), "--archive"])
            .arg(format!(
                "json://{}",
                self.dir.path().join("archive.jsonl").display()
            ))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    async fn fill(&self) {
        let store = self.open().await;
        for _ in 0..RECORDS / 1000 {
            let batch = (0..1000)
                .map(|i| NewLog::new(["a", "b"][i % 2], Status::Succeeded).counts(i as u64, 0, 0))
                .collect();
            store.commit(batch, Durability::PowerLoss).await.unwrap();
        }
        store.close().await.unwrap();
    }
}

/// Every record present or covered, never both; returns how many below `CUT` are covered.
async fn check_whole(target: &Target, store: &dyn LogStore, top: u64, after: &str) -> u64 {
    let report = store.verify(VerifyOptions::default()).await.unwrap();
    assert!(report.is_clean(), "{} {after}: {report:?}", target.name);
    let markers = store.prune_markers().await.unwrap();
    let covered = |id: u64| {
        markers
            .iter()
            .any(|m| m.ranges.iter().any(|r| r.first.get() <= id && id <= r.last.get()))
    };
    let mut present = vec![false; top as usize + 1];
    let mut scan = Scan::all(10_000);
    loop {
        let page = store.scan(&scan).await.unwrap();
        let Some(last) = page.last() else { break };
        for r in &page {
            present[r.id.get() as usize] = true;
        }
        scan.after = Some(last.id);
    }
    let mut gone = 0;
    for id in 1..=top {
        let (p, c) = (present[id as usize], covered(id));
        assert!(
            p != c,
            "{} {after}: log {id} present {p}, covered by a marker {c}",
            target.name
        );
        assert!(
            p || id < CUT,
            "{} {after}: log {id} above the cut is covered",
            target.name
        );
        gone += u64::from(c);
    }
    gone
}

/// Waits until `watch` shows a stored marker or `child` ends (then `false`).
async fn marker_seen(watch: &str, child: &mut std::process::Child) -> bool {
    let read_only = OpenOptions {
        read_only: true,
        ..OpenOptions::default()
    };
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if let Ok(view) = synclog::open_url_with(watch, &read_only).await {
            let marked = view.prune_markers().await.is_ok_and(|m| !m.is_empty());
            let _ = view.close().await;
            if marked {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// One kill on the fresh store `target`, then the checks and the rerun. Returns where
/// the kill landed.
async fn one_kill(target: Target, early: Option<u64>, after_marker: u64) -> &'static str {
    target.fill().await;
    let started = Instant::now();
    let mut child = target.prune().spawn().unwrap();
    match (early, &target.watch) {
        (None, Some(watch)) => {
            marker_seen(watch, &mut child).await;
            tokio::time::sleep(Duration::from_millis(after_marker)).await;
        }
        _ => tokio::time::sleep(Duration::from_millis(early.unwrap_or(after_marker))).await,
    }
    let running = child.try_wait().unwrap().is_none();
    child.kill().unwrap_or(()); // SIGKILL
    let status = child.wait().unwrap();
    let after = format!(
        "after a SIGKILL ({early:?}, {after_marker} ms after the marker; running {running}, {:?})",
        started.elapsed()
    );
    if !running {
        assert!(status.success(), "{} {after}: {status:?}", target.name);
    }
    let store = target.open().await;
    let gone = check_whole(&target, &*store, RECORDS, &after).await;
    let next = store.append(NewLog::new("a", Status::Failed)).await.unwrap();
    assert!(
        next.id.get() > RECORDS,
        "{} {after}: id {} handed out again",
        target.name,
        next.id
    );
    store.close().await.unwrap();

    let out = target.prune().output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        target.name,
        String::from_utf8_lossy(&out.stderr)
    );
    let store = target.open().await;
    let gone_now = check_whole(&target, &*store, RECORDS + 1, "after the rerun").await;
    assert_eq!(
        gone_now,
        CUT - 1,
        "{}: the rerun completed the prune",
        target.name
    );
    store.close().await.unwrap();
    match (running, gone > 0) {
        (false, _) => "done",
        (true, false) => "before the marker",
        (true, true) => "after the marker",
    }
}

/// Every kill of the schedule, each on a fresh store from `make`.
async fn prune_killed_at_any_moment(make: impl Fn() -> Target) {
    let mut seen = Vec::new();
    let mut name = "";
    for ms in EARLY_MS {
        let target = make();
        name = target.name;
        seen.push(one_kill(target, Some(ms), 0).await);
    }
    let probe = make();
    let watched = probe.watch.is_some();
    let delays: Vec<(Option<u64>, u64)> = if watched {
        drop(probe);
        AFTER_MARKER_MS.iter().map(|&ms| (None, ms)).collect()
    } else {
        // No watcher: how long a whole prune takes, and kills late in it.
        probe.fill().await;
        let started = Instant::now();
        assert!(probe.prune().output().unwrap().status.success());
        let whole = started.elapsed().as_millis() as f64;
        LATE_FRACTIONS
            .iter()
            .map(|f| (Some((whole * f) as u64), 0))
            .collect()
    };
    for (early, after_marker) in delays {
        seen.push(one_kill(make(), early, after_marker).await);
    }
    eprintln!("{name}: kills landed {seen:?}");
    assert_eq!(
        seen[0], "before the marker",
        "{name}: a kill 30 ms in lands before the marker"
    );
    if watched {
        assert!(
            seen.contains(&"after the marker"),
            "{name}: no kill landed after the marker: {seen:?}"
        );
    }
}

fn alone(name: &'static str, file: &str, url: impl Fn(&std::path::Path) -> String, watch: bool) -> Target {
    let dir = tempfile::tempdir().unwrap();
    let url = url(&dir.path().join(file));
    Target {
        name,
        args: vec!["--no-backup".into(), "--store".into(), url.clone()],
        primary: url.clone(),
        backup: None,
        watch: watch.then_some(url),
        dir,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sqlite_prune_killed_at_any_moment_leaves_a_whole_store_and_a_rerun_completes_it() {
    prune_killed_at_any_moment(|| alone("sqlite", "s.db", |p| format!("sqlite://{}", p.display()), true))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_prune_killed_at_any_moment_leaves_a_whole_store_and_a_rerun_completes_it() {
    prune_killed_at_any_moment(|| {
        alone(
            "json",
            "s.jsonl",
            |p| format!("json://{}?rotate_mb=1", p.display()),
            true,
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sled_prune_killed_at_any_moment_leaves_a_whole_store_and_a_rerun_completes_it() {
    // Without a watcher the late kills are by the time a whole prune takes. sled stores
    // the marker and deletes up to 50k ids in one atomic batch at the very end, so these
    // land before it (or after it): it has no state in between to leave.
    prune_killed_at_any_moment(|| alone("sled", "s.sled", |p| format!("sled://{}", p.display()), false))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_prune_killed_at_any_moment_leaves_a_whole_store_and_a_rerun_completes_it() {
    let Some(url) = std::env::var("SYNCLOG_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!("notice: SYNCLOG_TEST_POSTGRES_URL is not set; skipping this PostgreSQL test");
        return;
    };
    let schemas = std::sync::Mutex::new(Vec::new());
    prune_killed_at_any_moment(|| {
        let schema = format!("synclog_prune_kill_{}_{}", std::process::id(), fastrand::u32(..));
        schemas.lock().unwrap().push(schema.clone());
        let sep = if url.contains('?') { '&' } else { '?' };
        let store = format!("{url}{sep}synclog_schema={schema}");
        alone("postgres", "", |_| store.clone(), true)
    })
    .await;
    for schema in schemas.into_inner().unwrap() {
        synclog::bench::drop_postgres_schema(&url, &schema).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guarded_prune_killed_at_any_moment_leaves_a_whole_pair_and_a_rerun_completes_it() {
    prune_killed_at_any_moment(|| {
        let dir = tempfile::tempdir().unwrap();
        let primary = format!("sqlite://{}", dir.path().join("s.db").display());
        let backup = format!("json://{}", dir.path().join("b.jsonl").display());
        Target {
            name: "guarded",
            args: vec![
                "--store".into(),
                primary.clone(),
                "--backup".into(),
                backup.clone(),
            ],
            primary: primary.clone(),
            backup: Some(backup),
            // The primary is pruned first: its marker is the first stored.
            watch: Some(primary),
            dir,
        }
    })
    .await;
}
