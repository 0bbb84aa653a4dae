//! A JSON-lines prune against a failing disk and a power cut, at every file operation
//! it makes (over `SimFs`), and against another process's marker that was stored by a
//! prune which died before deleting anything.

use std::path::Path;
use std::sync::Arc;

use chrono::Utc;
use synclog_core::retention::{Policy, PruneMarker};
use synclog_core::{Durability, IdRange, LogId, LogStore, LogStoreExt, NewLog, Scan, Status, VerifyOptions};
use synclog_json::fs::RealFs;
use synclog_json::sim::{SimFs, Tear};
use synclog_json::{JsonOptions, JsonStore};

const FILE: &str = "/sim/logs.jsonl";

fn id(n: u64) -> LogId {
    LogId::new(n).unwrap()
}

fn marker(first: u64, last: u64) -> PruneMarker {
    PruneMarker::new(
        Utc::now(),
        Policy::default().before_id(id(last + 1)),
        vec![IdRange::new(id(first), id(last)).unwrap()],
        "0".repeat(64),
        None,
    )
}

/// Rotates once the active file passes 1000 bytes (a few records): the prune below
/// empties sealed segments (removed), cuts into one (rewritten) and rewrites the active file.
fn open(fs: &SimFs) -> synclog_core::Result<JsonStore> {
    let options = JsonOptions {
        rotate_after_bytes: Some(1000),
        ..JsonOptions::default()
    };
    JsonStore::open_with(FILE, options, Arc::new(fs.clone()))
}

async fn ids(store: &JsonStore) -> Vec<u64> {
    let all = store.scan(&Scan::all(1000)).await.unwrap();
    all.iter().map(|r| r.id.get()).collect()
}

/// A store of 30 records in several segments.
async fn filled() -> SimFs {
    let fs = SimFs::new();
    let store = open(&fs).unwrap();
    for i in 0..10 {
        let batch = (0..3)
            .map(|j| {
                NewLog::new("j", Status::Succeeded).message(format!("record {i}.{j} {}", "x".repeat(100)))
            })
            .collect();
        store.commit(batch, Durability::PowerLoss).await.unwrap();
    }
    store.close().await.unwrap();
    fs
}

/// Each file operation of a prune in turn fails once: the same handle then reads exactly
/// the records outside a stored marker (all of them if the marker was not stored), hands
/// out the next id above everything, and the prune made again completes; both the handle
/// and a fresh open verify clean.
#[tokio::test(flavor = "multi_thread")]
async fn a_prune_failing_at_any_step_leaves_the_handle_whole_and_a_rerun_completes() {
    let (mut failed, mut ok_in_a_row) = (0, 0);
    // Past the prune's last operation, every try succeeds (a failure a prune shrugs
    // off, such as one of a side file, is one success in a row, not ten).
    for n in 0..1000 {
        if ok_in_a_row == 10 {
            break;
        }
        let fs = filled().await;
        let store = open(&fs).unwrap();
        fs.fail_once_after(n);
        let first = store.apply_prune(&marker(1, 20), Durability::PowerLoss).await;
        match first.is_ok() {
            true => ok_in_a_row += 1,
            false => (failed, ok_in_a_row) = (failed + 1, 0),
        }
        fs.fail_once_after(u64::MAX / 2);
        let marked = !store.prune_markers().await.unwrap().is_empty();
        let expected: Vec<u64> = if marked {
            (21..=30).collect()
        } else {
            (1..=30).collect()
        };
        assert_eq!(ids(&store).await, expected, "failure at operation {n}: {first:?}");
        let next = store.append(NewLog::new("j", Status::Failed)).await.unwrap();
        assert_eq!(next.id.get(), 31, "failure at operation {n}");
        store
            .apply_prune(&marker(1, 20), Durability::PowerLoss)
            .await
            .unwrap_or_else(|e| panic!("rerun after a failure at operation {n}: {e}"));
        assert_eq!(
            ids(&store).await,
            (21..=31).collect::<Vec<_>>(),
            "failure at operation {n}"
        );
        let report = store.verify(VerifyOptions::default()).await.unwrap();
        assert!(
            report.is_clean() && report.pruned_present == 0,
            "failure at operation {n}: {report:?}"
        );
        store.close().await.unwrap();
        let store = open(&fs).unwrap();
        assert_eq!(
            ids(&store).await,
            (21..=31).collect::<Vec<_>>(),
            "failure at operation {n}"
        );
        assert!(store.verify(VerifyOptions::default()).await.unwrap().is_clean());
        store.close().await.unwrap();
    }
    assert_eq!(ok_in_a_row, 10, "the prune's operations were all visited");
    assert!(
        failed > 10,
        "the prune's operations were visited ({failed} failures)"
    );
}

/// The power is cut at each file operation of a prune in turn: the store reopens and
/// verifies clean, every record is either present or covered by the marker (never gone
/// unmarked), and the same prune made again completes.
#[tokio::test(flavor = "multi_thread")]
async fn a_power_cut_at_any_step_of_a_prune_leaves_a_store_that_verifies_and_a_rerun_completes() {
    for tear in [Tear::DropUnsynced, Tear::KeepPrefix(7)] {
        let mut cut = 0;
        for n in 0.. {
            let fs = filled().await;
            let store = open(&fs).unwrap();
            fs.cut_power_after(n);
            let result = store.apply_prune(&marker(1, 20), Durability::PowerLoss).await;
            let out = fs.power_is_out();
            let _ = store.close().await;
            if !out {
                result.unwrap();
                break;
            }
            cut += 1;
            fs.crash(tear);
            let store = open(&fs).unwrap_or_else(|e| panic!("open after a cut at operation {n}: {e}"));
            let marked = !store.prune_markers().await.unwrap().is_empty();
            let expected: Vec<u64> = if marked {
                (21..=30).collect()
            } else {
                (1..=30).collect()
            };
            assert_eq!(ids(&store).await, expected, "cut at operation {n}, {tear:?}");
            let report = store.verify(VerifyOptions::default()).await.unwrap();
            assert!(report.is_clean(), "cut at operation {n}, {tear:?}: {report:?}");
            store
                .apply_prune(&marker(1, 20), Durability::PowerLoss)
                .await
                .unwrap_or_else(|e| panic!("rerun after a cut at operation {n}: {e}"));
            assert_eq!(ids(&store).await, (21..=30).collect::<Vec<_>>());
            assert_eq!(
                store
                    .append(NewLog::new("j", Status::Failed))
                    .await
                    .unwrap()
                    .id
                    .get(),
                31
            );
            store.close().await.unwrap();
        }
        assert!(cut > 10, "the prune's operations were visited ({cut} cuts)");
    }
}

/// Copies every file of the directory `from` into `to`.
fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Another process stored a marker and died before deleting anything (the active file
/// was never replaced): a writer that had the store open before keeps that marker when it
/// stores its own, and neither prune's records come back.
#[tokio::test(flavor = "multi_thread")]
async fn a_prune_keeps_the_marker_another_process_stored_before_dying() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    let b = JsonStore::open(&path).unwrap();
    let batch = (0..10)
        .map(|i| NewLog::new("j", Status::Succeeded).message(format!("r{i}")))
        .collect();
    b.commit(batch, Durability::PowerLoss).await.unwrap();
    assert_eq!(ids(&b).await.len(), 10);

    // The other process's prune, up to its marker: made on a copy, its markers and
    // format marker put in place here.
    let other = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), other.path());
    let elsewhere = other.path().join("s.jsonl");
    let a = JsonStore::open(&elsewhere).unwrap();
    a.apply_prune(&marker(1, 3), Durability::PowerLoss).await.unwrap();
    a.close().await.unwrap();
    for suffix in [".prunes", ".format"] {
        let from = format!("{}{suffix}", elsewhere.display());
        std::fs::copy(from, format!("{}{suffix}", path.display())).unwrap();
    }

    b.apply_prune(&marker(4, 5), Durability::PowerLoss).await.unwrap();
    assert_eq!(b.prune_markers().await.unwrap().len(), 2);
    assert_eq!(ids(&b).await, (6..=10).collect::<Vec<_>>());
    b.close().await.unwrap();
    let c = JsonStore::open_with(&path, JsonOptions::default(), Arc::new(RealFs)).unwrap();
    assert_eq!(c.prune_markers().await.unwrap().len(), 2);
    assert_eq!(ids(&c).await, (6..=10).collect::<Vec<_>>());
    let report = c.verify(VerifyOptions::default()).await.unwrap();
    assert!(report.is_clean() && report.pruned_present == 0, "{report:?}");
    c.close().await.unwrap();
}

/// The real file system, except that the first opens of a sealed segment find it gone,
/// as when a writer's prune removes it between a reader listing the files and reading them.
#[derive(Debug, Default)]
struct SegmentGoneAtFirst {
    opens: std::sync::atomic::AtomicU32,
}

/// How many opens of a segment fail.
const GONE_OPENS: u32 = 3;

impl SegmentGoneAtFirst {
    fn check(&self, path: &Path) -> std::io::Result<()> {
        let segment = path.to_string_lossy().contains(".seg-");
        if segment && self.opens.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < GONE_OPENS {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "removed by a prune",
            ));
        }
        Ok(())
    }
}

impl synclog_json::fs::FileSystem for SegmentGoneAtFirst {
    fn len(&self, path: &Path) -> std::io::Result<Option<u64>> {
        RealFs.len(path)
    }
    fn open_append(&self, path: &Path) -> std::io::Result<Box<dyn synclog_json::fs::AppendFile>> {
        RealFs.open_append(path)
    }
    fn open_read_at(&self, path: &Path) -> std::io::Result<Box<dyn synclog_json::fs::ReadAt>> {
        self.check(path)?;
        RealFs.open_read_at(path)
    }
    fn open_stream(&self, path: &Path) -> std::io::Result<Box<dyn std::io::BufRead + Send>> {
        self.check(path)?;
        RealFs.open_stream(path)
    }
    fn open_stream_at(&self, path: &Path, offset: u64) -> std::io::Result<Box<dyn std::io::BufRead + Send>> {
        self.check(path)?;
        RealFs.open_stream_at(path, offset)
    }
    fn truncate(&self, path: &Path, len: u64) -> std::io::Result<()> {
        RealFs.truncate(path, len)
    }
    fn create_new(&self, path: &Path) -> std::io::Result<Box<dyn synclog_json::fs::AppendFile>> {
        RealFs.create_new(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        RealFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        RealFs.remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        RealFs.sync_dir(path)
    }
    fn siblings(&self, path: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
        RealFs.siblings(path)
    }
    fn lock(
        &self,
        path: &Path,
        wait: std::time::Duration,
    ) -> Result<Box<dyn synclog_json::fs::LockGuard>, synclog_json::fs::LockError> {
        RealFs.lock(path, wait)
    }
    fn lock_file(
        &self,
        path: &Path,
        wait: std::time::Duration,
    ) -> Result<(Box<dyn synclog_json::fs::LockGuard>, synclog_json::fs::FileId), synclog_json::fs::LockError>
    {
        RealFs.lock_file(path, wait)
    }
    fn file_id(&self, path: &Path) -> std::io::Result<Option<synclog_json::fs::FileId>> {
        RealFs.file_id(path)
    }
    fn stat(&self, path: &Path) -> std::io::Result<Option<(synclog_json::fs::FileId, u64)>> {
        RealFs.stat(path)
    }
    fn resolve(&self, path: &Path) -> std::io::Result<std::path::PathBuf> {
        RealFs.resolve(path)
    }
}

/// A reader (no locks) whose open meets a segment a writer's prune removed meanwhile reads
/// the store again instead of failing, and sees every record.
#[tokio::test(flavor = "multi_thread")]
async fn a_reader_whose_segment_vanishes_during_its_open_reads_the_store_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    let store = JsonStore::open(&path).unwrap();
    let batch = (0..5)
        .map(|i| NewLog::new("j", Status::Succeeded).message(format!("r{i}")))
        .collect();
    store.commit(batch, Durability::PowerLoss).await.unwrap();
    store.rotate().await.unwrap().expect("sealed");
    store.append(NewLog::new("j", Status::Failed)).await.unwrap();
    store.close().await.unwrap();
    let reader = JsonStore::open_read_only(&path, Arc::new(SegmentGoneAtFirst::default()))
        .unwrap_or_else(|e| panic!("the reader's open: {e}"));
    assert_eq!(ids(&reader).await, (1..=6).collect::<Vec<_>>());
    reader.close().await.unwrap();
}
