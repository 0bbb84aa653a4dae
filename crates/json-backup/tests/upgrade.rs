//! Stores written by the previous release (fixtures made by commit 9f44466, see
//! `tests/fixtures/release-9f44466/make.sh` at the workspace root) are upgraded in place
//! to format 2 when a writer opens them; a store of a later format is refused untouched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use synclog_core::{
    Durability, Error, ErrorKind, LogRecord, LogStore, LogStoreExt, NewLog, RunScan, Scan, Status,
    VerifyOptions,
};
use synclog_json::fs::RealFs;
use synclog_json::{JsonStore, STORE_FORMAT};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/release-9f44466"
);

/// A copy of fixture `name` in a temporary directory, and the path of its store.
fn copy_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let from = Path::new(FIXTURES).join(name);
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let path = dir.path().join("synclog.jsonl");
    (dir, path)
}

/// The records the previous release listed (`expected.jsonl`).
fn expected(name: &str) -> Vec<LogRecord> {
    let text = std::fs::read_to_string(Path::new(FIXTURES).join(name).join("expected.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Every file of the directory: name → length and CRC-32C of its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, (usize, u32)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let bytes = std::fs::read(e.path()).unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                (bytes.len(), crc32c::crc32c(&bytes)),
            )
        })
        .collect()
}

/// The version the first line of `file` names.
fn header_version(file: &Path) -> u64 {
    let text = std::fs::read_to_string(file).unwrap();
    let header: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["synclog"], "jsonl");
    header["version"].as_u64().unwrap()
}

fn marker(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.format", path.display()))
}

async fn everything(store: &JsonStore) -> Vec<LogRecord> {
    store.scan(&Scan::all(100_000)).await.unwrap()
}

async fn upgrades_in_place(name: &str, segments: u64) {
    let (dir, path) = copy_fixture(name);
    let want = expected(name);
    let before = snapshot(dir.path());
    assert!(!marker(&path).exists(), "the previous release writes no marker");
    assert_eq!(header_version(&path), 1);

    let store = JsonStore::open(&path).unwrap();
    let report = store.open_report().clone();
    assert_eq!(report.format_upgraded, Some(1), "{report:?}");
    assert_eq!((report.records, report.segments), (want.len() as u64, segments));
    assert!(
        report.corrupt_lines.is_empty() && report.torn_tails.is_empty(),
        "{report:?}"
    );
    assert_eq!(everything(&store).await, want);
    let verified = store.verify(VerifyOptions::default()).await.unwrap();
    assert!(verified.is_clean(), "{verified:?}");
    assert_eq!(verified.checked, want.len() as u64);
    // The active file's header says 2 (its lines are the same bytes); sealed segments are
    // left as they were; the marker is written.
    assert_eq!(header_version(&path), 2);
    let after = snapshot(dir.path());
    let active = std::fs::read_to_string(&path).unwrap();
    let old_active = std::fs::read_to_string(Path::new(FIXTURES).join(name).join("synclog.jsonl")).unwrap();
    assert_eq!(
        active.split_once('\n').unwrap().1,
        old_active.split_once('\n').unwrap().1,
        "the active file's lines are the same bytes"
    );
    for (file, bytes) in &before {
        if file.contains(".seg-") {
            assert_eq!(&after[file], bytes, "{file} changed");
        }
    }
    let marker_text = std::fs::read_to_string(marker(&path)).unwrap();
    assert!(
        marker_text.starts_with("{\"synclog\":\"jsonl\",\"format\":2,"),
        "{marker_text}"
    );

    // Keyed appends and runs.
    let d = Durability::PowerLoss;
    let key = NewLog::new("orders", Status::Succeeded)
        .started(Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap())
        .counts(3, 3, 0)
        .idempotency_key("orders-2026-02-01");
    let keyed = store.append_report(key.clone(), d).await.unwrap();
    assert!(!keyed.repeat);
    assert_eq!(keyed.record.id.get(), want.len() as u64 + 1);
    let run = store
        .start_run(NewLog::new("inventory", Status::Started).run("upgrade-run"), d)
        .await
        .unwrap();
    store
        .append(
            NewLog::new("inventory", Status::Progress)
                .run("upgrade-run")
                .counts(5, 4, 1),
        )
        .await
        .unwrap();
    let end = store
        .finish_run(
            "upgrade-run",
            NewLog::new("", Status::Succeeded).counts(9, 9, 0),
            d,
        )
        .await
        .unwrap();
    assert_eq!(end.record.started_at, run.record.started_at);
    let again = store.append_report(key.clone(), d).await.unwrap();
    assert!(again.repeat && again.record == keyed.record);
    let late = store
        .append(NewLog::new("inventory", Status::Progress).run("upgrade-run"))
        .await
        .unwrap_err();
    assert!(matches!(late, Error::RunFinished { .. }), "{late:?}");
    store.close().await.unwrap();
    drop(store);

    // Reopened: nothing to upgrade; old and new records read back; keys still answer.
    let store = JsonStore::open(&path).unwrap();
    assert_eq!(store.open_report().format_upgraded, None);
    let all = everything(&store).await;
    assert_eq!(&all[..want.len()], &want[..]);
    assert_eq!(all.len(), want.len() + 4);
    assert!(all.iter().all(LogRecord::is_intact));
    assert_eq!(
        store.find_idempotent("orders-2026-02-01").await.unwrap(),
        Some(keyed.record)
    );
    let runs = store.runs(&RunScan::default()).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].status, runs[0].record_ids.len()), (Status::Succeeded, 3));
    let verified = store.verify(VerifyOptions::default()).await.unwrap();
    assert!(verified.is_clean(), "{verified:?}");
    store.close().await.unwrap();
    // The side file is of a version the previous release does not use (it uses those of
    // version 2): so it reads the active file's header, and refuses the store (see
    // `the_previous_release_refuses_an_upgraded_store_untouched`).
    let idx = std::fs::read(format!("{}.idx", path.display())).unwrap();
    let footer = &idx[idx.len() - 32..];
    assert_eq!(&footer[..8], b"SLJSNIDX");
    assert_ne!(u32::from_le_bytes(footer[8..12].try_into().unwrap()), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_store_of_the_previous_release_is_upgraded_in_place() {
    upgrades_in_place("json-plain", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_store_of_the_previous_release_is_upgraded_in_place() {
    upgrades_in_place("json-rotated", 2).await;
}

/// A read-only open reads a store of the previous release as it is, and upgrades nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_open_reads_the_previous_release_and_upgrades_nothing() {
    let (dir, path) = copy_fixture("json-rotated");
    let before = snapshot(dir.path());
    let store = JsonStore::open_read_only(&path, Arc::new(RealFs)).unwrap();
    assert_eq!(everything(&store).await, expected("json-rotated"));
    assert_eq!(store.open_report().format_upgraded, None);
    assert_eq!(store.find_idempotent("none").await.unwrap(), None);
    drop(store);
    assert_eq!(snapshot(dir.path()), before);
}

fn assert_refused_untouched(dir: &Path, path: &Path, kind: ErrorKind, words: &[&str]) {
    let before = snapshot(dir);
    let errors = [
        JsonStore::open(path).unwrap_err(),
        JsonStore::open_read_only(path, Arc::new(RealFs)).unwrap_err(),
        synclog_json::inspect(path).unwrap_err(),
    ];
    for err in errors {
        assert_eq!(err.kind(), kind, "{err}");
        let text = err.to_string();
        for w in words {
            assert!(text.contains(w), "{text:?} does not say {w:?}");
        }
    }
    assert_eq!(snapshot(dir), before, "nothing was written");
}

/// A store whose marker names a later format (or, without a marker, whose active file's
/// header does) is refused, by a writer's open, a read-only open and `inspect`, with an
/// error naming both versions, and nothing is written (not even a lock file). A damaged
/// marker is refused the same way, as corrupt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_a_later_format_is_refused_untouched() {
    assert_eq!(STORE_FORMAT, 3);
    let (dir, path) = copy_fixture("json-plain");
    let store = JsonStore::open(&path).unwrap();
    store
        .append(NewLog::new("crm", Status::Succeeded).idempotency_key("k"))
        .await
        .unwrap();
    store.close().await.unwrap();
    drop(store);
    let ours = std::fs::read(marker(&path)).unwrap();
    // With no lock file left by the open above, a refused open must not create one.
    std::fs::remove_file(format!("{}.lock", path.display())).unwrap();

    std::fs::write(
        marker(&path),
        "{\"synclog\":\"jsonl\",\"format\":4,\"checksum\":\"whatever\"}\n",
    )
    .unwrap();
    assert_refused_untouched(
        dir.path(),
        &path,
        ErrorKind::Unsupported,
        &["format version 4", "up to 3"],
    );

    // No marker, but the active file's header says 3.
    std::fs::remove_file(marker(&path)).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("\"version\":2", "\"version\":3", 1)).unwrap();
    assert_refused_untouched(
        dir.path(),
        &path,
        ErrorKind::Unsupported,
        &["version 3", "reads 2"],
    );
    std::fs::write(&path, &text).unwrap();

    // A damaged marker: refused as corrupt, untouched.
    let damaged = String::from_utf8(ours.clone())
        .unwrap()
        .replace("\"format\":2", "\"format\":1");
    std::fs::write(marker(&path), damaged).unwrap();
    assert_refused_untouched(
        dir.path(),
        &path,
        ErrorKind::Corrupt,
        &["format marker", "damaged"],
    );

    // With this release's marker back, it opens.
    std::fs::write(marker(&path), ours).unwrap();
    let store = JsonStore::open(&path).unwrap();
    assert_eq!(
        store.find_idempotent("k").await.unwrap().map(|r| r.id.get()),
        Some(13)
    );
    store.close().await.unwrap();
}

/// The previous release itself refuses a store this release wrote, and writes nothing to
/// it. Needs its `synclog` binary (built from commit 9f44466, as `make.sh` says):
///
/// ```text
/// SYNCLOG_PREVIOUS_RELEASE_BIN=/path/to/synclog cargo test -p synclog-json --test upgrade -- --ignored
/// ```
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the previous release's binary in SYNCLOG_PREVIOUS_RELEASE_BIN"]
async fn the_previous_release_refuses_an_upgraded_store_untouched() {
    let bin = std::env::var("SYNCLOG_PREVIOUS_RELEASE_BIN").expect("SYNCLOG_PREVIOUS_RELEASE_BIN");
    for name in ["json-plain", "json-rotated"] {
        let (dir, path) = copy_fixture(name);
        let store = JsonStore::open(&path).unwrap();
        store
            .append(NewLog::new("crm", Status::Succeeded).idempotency_key("k"))
            .await
            .unwrap();
        store.close().await.unwrap();
        drop(store);
        // Its side file too: a later open writes one when enough changed; here, the open's.
        assert!(Path::new(&format!("{}.idx", path.display())).exists());
        let before = snapshot(dir.path());
        let url = format!("json://{}", path.display());
        for args in [
            vec!["list", "--json"],
            vec!["verify"],
            vec!["append", "--job", "old", "--status", "succeeded"],
        ] {
            let out = std::process::Command::new(&bin)
                .args(["--store", &url, "--no-backup"])
                .args(&args)
                .env_remove("SYNCLOG_STORE")
                .env_remove("SYNCLOG_BACKUP")
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{name}: {args:?} succeeded: {stderr}");
            assert!(stderr.contains("format version 2"), "{name}: {args:?}: {stderr}");
            let mut now = snapshot(dir.path());
            let mut then = before.clone();
            // The lock file holds the last opener's pid: not the store's data.
            now.remove("synclog.jsonl.lock");
            then.remove("synclog.jsonl.lock");
            assert_eq!(now, then, "{name}: {args:?} wrote to the store");
        }
    }
}

/// The upgrade is crash-safe: with the power cut after every file operation of the first
/// open (and the unsynced bytes dropped or kept), the store reopens with every record of
/// the previous release, verifies clean and ends upgraded; and whenever the marker made
/// it to disk, the active file's header did too (the marker is written last).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_at_any_step_of_the_upgrade_leaves_a_store_that_opens() {
    use synclog_json::sim::{SimFs, Tear};
    let name = "json-rotated";
    let want = expected(name);
    let sim = |file: &str| PathBuf::from(format!("/sim/{file}"));
    let fixture = |fs: &SimFs| {
        for entry in std::fs::read_dir(Path::new(FIXTURES).join(name)).unwrap() {
            let entry = entry.unwrap();
            let file = entry.file_name().to_string_lossy().into_owned();
            fs.set_contents(&sim(&file), std::fs::read(entry.path()).unwrap());
        }
    };
    let path = sim("synclog.jsonl");
    let header_of = |fs: &SimFs| {
        let bytes = fs.contents(&path).expect("the active file");
        let first = bytes.split(|&b| b == b'\n').next().unwrap().to_vec();
        serde_json::from_slice::<serde_json::Value>(&first).unwrap()["version"]
            .as_u64()
            .unwrap()
    };
    let mut points = 0;
    for n in 0.. {
        let mut finished = false;
        for tear in [Tear::DropUnsynced, Tear::KeepPrefix(usize::MAX)] {
            let fs = SimFs::new();
            fixture(&fs);
            fs.cut_power_after(n);
            if let Ok(store) = JsonStore::open_with(&path, Default::default(), Arc::new(fs.clone())) {
                let _ = store.close().await;
            }
            finished = !fs.power_is_out();
            fs.crash(tear);
            let what = format!("power cut after op {n}, {tear:?}");
            if fs.contents(&marker(&path)).is_some() {
                assert_eq!(header_of(&fs), 2, "{what}: a marker before the header");
            }
            let store = JsonStore::open_with(&path, Default::default(), Arc::new(fs.clone()))
                .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
            assert_eq!(everything(&store).await, want, "{what}");
            let verified = store.verify(VerifyOptions::default()).await.unwrap();
            assert!(verified.is_clean(), "{what}: {verified:?}");
            assert!(store.open_report().corrupt_lines.is_empty(), "{what}");
            store.close().await.unwrap();
            assert_eq!(header_of(&fs), 2, "{what}");
            assert!(fs.contents(&marker(&path)).is_some(), "{what}");
            points += 1;
        }
        if finished {
            break;
        }
    }
    assert!(points > 10, "only {points} crash points were visited");
}
