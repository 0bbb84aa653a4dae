//! Runs and idempotency keys across handles, processes and files: two handles on one file
//! (as two processes would have) see each other's keys, processes racing on the same keys
//! store each once, and a rotated store answers keys across its segments.

use std::path::Path;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use synclog_core::{
    Durability, Error, ErrorKind, LogId, LogRecord, LogStore, LogStoreExt, NewLog, RunScan, Scan, Status,
    Timestamp, VerifyOptions,
};
use synclog_json::fs::RealFs;
use synclog_json::JsonStore;

fn at(minute: i64) -> Timestamp {
    Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap() + chrono::Duration::minutes(minute)
}

/// A log with fixed times, so that every caller gives the same content.
fn keyed(key: &str, n: u64) -> NewLog {
    NewLog::new("crm", Status::Succeeded)
        .started(at(0))
        .counts(n, n, 0)
        .message(format!("page {n}"))
        .attr("n", n)
        .idempotency_key(key)
}

fn start(run: &str) -> NewLog {
    NewLog::new("crm", Status::Started).run(run).started(at(0))
}

fn step(run: &str, status: Status) -> NewLog {
    let log = NewLog::new("crm", status)
        .run(run)
        .started(at(0))
        .counts(10, 9, 1)
        .message(format!("{run} {status}"));
    match status.is_terminal() {
        true => log.finished(at(5)),
        false => log,
    }
}

async fn everything(store: &dyn LogStore) -> Vec<LogRecord> {
    store.scan(&Scan::all(100_000)).await.unwrap()
}

fn open(path: &Path) -> JsonStore {
    JsonStore::open(path).unwrap()
}

/// Two handles on one file, each with its own writer and its own key book, as two
/// processes would have. Each builds its book before the other writes, so what it learns
/// afterwards comes through its catch-up (and, after the other's compaction, through a
/// rebuild), not through a first build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_on_one_file_see_each_others_keys_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.jsonl");
    let a = open(&path);
    let b = open(&path);
    let d = Durability::PowerLoss;
    // Both books built, empty.
    assert_eq!(a.find_idempotent("k1").await.unwrap(), None);
    assert_eq!(b.find_idempotent("k1").await.unwrap(), None);

    // An idempotency key committed through one is a repeat through the other.
    let first = a
        .append_report(keyed("k1", 1), Durability::PowerLoss)
        .await
        .unwrap();
    assert!(!first.repeat);
    let again = b
        .append_report(keyed("k1", 1), Durability::PowerLoss)
        .await
        .unwrap();
    assert!(again.repeat, "b saw a's key");
    assert_eq!(again.record, first.record);
    assert_eq!(b.find_idempotent("k1").await.unwrap(), Some(first.record.clone()));
    let conflict = b.append(keyed("k1", 2)).await.unwrap_err();
    assert!(
        matches!(&conflict, Error::IdempotencyConflict { stored, .. } if *stored == first.record.id),
        "{conflict:?}"
    );
    // And the other way round.
    let from_b = b
        .append_report(keyed("k2", 2), Durability::PowerLoss)
        .await
        .unwrap();
    let seen_by_a = a
        .append_report(keyed("k2", 2), Durability::PowerLoss)
        .await
        .unwrap();
    assert!(seen_by_a.repeat && seen_by_a.record == from_b.record);

    // A run started through a takes progress through b; finished through a, it refuses
    // records through b, and b's finish the same way is a repeat.
    let started = a.append(start("r1")).await.unwrap();
    let progress = b.append(step("r1", Status::Progress)).await.unwrap();
    let end = a.append(step("r1", Status::Failed)).await.unwrap();
    let late = b.append(step("r1", Status::Progress)).await.unwrap_err();
    assert!(
        matches!(&late, Error::RunFinished { id, status: Status::Failed, .. } if *id == end.id),
        "{late:?}"
    );
    assert_eq!(late.kind(), ErrorKind::Refused);
    let finish_again = b
        .append_report(step("r1", Status::Failed), Durability::PowerLoss)
        .await
        .unwrap();
    assert!(finish_again.repeat && finish_again.record == end);
    let run = b.run("r1").await.unwrap().expect("b knows the run");
    assert_eq!(run.record_ids, vec![started.id, progress.id, end.id]);
    assert_eq!((run.status, run.finished), (Status::Failed, true));
    // A run started through b cannot be started again through a.
    b.append(start("r2")).await.unwrap();
    let twice = a.append(start("r2")).await.unwrap_err();
    assert!(
        matches!(&twice, Error::InvalidInput { field: "run", .. }),
        "{twice:?}"
    );
    let runs = a.runs(&RunScan::default()).await.unwrap();
    assert_eq!(
        runs.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        ["r1", "r2"]
    );

    // Imported records count too, for the importer (whose book is built) and the other.
    let seal = |id: u64, log: NewLog| LogRecord::seal(LogId::new(id).unwrap(), Utc::now(), log).unwrap();
    let mut imported: Vec<LogRecord> = (0..20)
        .map(|i| seal(1000 + i, NewLog::new("filler", Status::Skipped)))
        .collect();
    imported.push(seal(1020, keyed("k-imported", 3)));
    let report = a.import(imported.clone(), d).await.unwrap();
    assert_eq!(report.inserted, 21);
    let want = imported.last().cloned();
    assert_eq!(a.find_idempotent("k-imported").await.unwrap(), want);
    assert_eq!(b.find_idempotent("k-imported").await.unwrap(), want);

    // Another process's compaction replaces the file, after a key b has not caught up
    // with: b loads the files afresh, and builds its book again.
    let compacted = a.append(keyed("k-compacted", 4)).await.unwrap();
    a.compact().await.unwrap();
    assert_eq!(b.find_idempotent("k-compacted").await.unwrap(), Some(compacted));
    let after = b
        .append_report(keyed("k1", 1), Durability::PowerLoss)
        .await
        .unwrap();
    assert!(after.repeat && after.record == first.record);
    let k3 = a.append(keyed("k3", 3)).await.unwrap();
    assert_eq!(b.find_idempotent("k3").await.unwrap(), Some(k3));

    // Each key is stored once.
    let all = everything(&b).await;
    for key in ["k1", "k2", "k3", "k-imported", "k-compacted"] {
        let n = all
            .iter()
            .filter(|r| r.idempotency_key.as_deref() == Some(key))
            .count();
        assert_eq!(n, 1, "{key}");
    }
    for s in [&a, &b] {
        // Clean but for the gap below the imported ids.
        let report = s.verify(VerifyOptions::default()).await.unwrap();
        assert!(
            report.corrupt.is_empty() && report.engine_problems.is_empty(),
            "{report:?}"
        );
        assert_eq!(report.checked, all.len() as u64);
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
}

const ROUNDS: u64 = 25;
const CHILDREN: usize = 4;

/// The child of `processes_racing_on_the_same_keys_store_each_once`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process entry point of processes_racing_on_the_same_keys_store_each_once"]
async fn child_races_on_keys() {
    let Ok(path) = std::env::var("SYNCLOG_CHILD_KEYS") else {
        return;
    };
    let store = JsonStore::open(&path).unwrap();
    // Each builds its key book, then waits for the others: the race is on the catch-ups.
    assert_eq!(store.find_idempotent("key-0").await.unwrap(), None);
    std::fs::write(format!("{path}.ready-{}", std::process::id()), b"").unwrap();
    let dir = Path::new(&path).parent().unwrap().to_path_buf();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".ready-")
        })
        .count()
        < CHILDREN
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    for i in 0..ROUNDS {
        let got = store
            .append_report(keyed(&format!("key-{i}"), i), Durability::PowerLoss)
            .await
            .unwrap();
        assert_eq!(
            got.record.idempotency_key.as_deref(),
            Some(format!("key-{i}").as_str())
        );
        let run = format!("run-{i}");
        match store.append(start(&run)).await {
            Ok(_) | Err(Error::InvalidInput { field: "run", .. }) | Err(Error::RunFinished { .. }) => {}
            Err(e) => panic!("starting {run}: {e}"),
        }
        store
            .append_report(step(&run, Status::Succeeded), Durability::PowerLoss)
            .await
            .unwrap();
    }
    store.close().await.unwrap();
}

/// Processes appending the same keys and starting and finishing the same runs at the same
/// time: each key is stored once, each run has one start and one finish.
#[tokio::test]
async fn processes_racing_on_the_same_keys_store_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.jsonl");
    synclog_conformance::child::run_children("child_races_on_keys", CHILDREN, "SYNCLOG_CHILD_KEYS", &path);
    let store = open(&path);
    let all = everything(&store).await;
    assert_eq!(all.len() as u64, 3 * ROUNDS, "one record per key, two per run");
    for i in 0..ROUNDS {
        let key = format!("key-{i}");
        assert_eq!(
            all.iter()
                .filter(|r| r.idempotency_key.as_deref() == Some(key.as_str()))
                .count(),
            1
        );
        let run = store.run(&format!("run-{i}")).await.unwrap().unwrap();
        assert_eq!((run.record_ids.len(), run.status), (2, Status::Succeeded));
    }
    assert!(store.verify(VerifyOptions::default()).await.unwrap().is_clean());
}

/// Keys and runs spread over sealed segments and the active file are answered from all of
/// them: by the handle that rotated, by another handle (whose book is built again after
/// the rotation replaced the file), and after a reopen (a book built from every file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_store_answers_keys_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.jsonl");
    let a = open(&path);
    let b = open(&path);
    assert_eq!(b.find_idempotent("seg1").await.unwrap(), None);
    let k1 = a.append(keyed("seg1", 1)).await.unwrap();
    let started = a.append(start("long")).await.unwrap();
    a.rotate().await.unwrap().expect("sealed segment 1");
    let progress = a.append(step("long", Status::Progress)).await.unwrap();
    let k2 = a.append(keyed("seg2", 2)).await.unwrap();
    a.rotate().await.unwrap().expect("sealed segment 2");
    let end = a.append(step("long", Status::Partial)).await.unwrap();
    a.append(NewLog::new("other", Status::Succeeded)).await.unwrap();
    assert_eq!(a.files().len(), 3);

    let check = |store: JsonStore| {
        let (k1, k2) = (k1.clone(), k2.clone());
        let ids = vec![started.id, progress.id, end.id];
        async move {
            assert_eq!(store.find_idempotent("seg1").await.unwrap(), Some(k1.clone()));
            assert_eq!(store.find_idempotent("seg2").await.unwrap(), Some(k2));
            let records = store.run_records("long").await.unwrap();
            assert_eq!(records.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
            let runs = store.runs(&RunScan::default()).await.unwrap();
            assert_eq!(runs.len(), 1);
            assert_eq!((runs[0].status, runs[0].finished), (Status::Partial, true));
            let again = store
                .append_report(keyed("seg1", 1), Durability::PowerLoss)
                .await
                .unwrap();
            assert!(again.repeat && again.record == k1);
            let late = store.append(step("long", Status::Progress)).await.unwrap_err();
            assert!(matches!(late, Error::RunFinished { .. }), "{late:?}");
            store
        }
    };
    let a = check(a).await;
    let b = check(b).await;
    a.close().await.unwrap();
    b.close().await.unwrap();
    drop((a, b));
    let c = check(open(&path)).await;
    assert_eq!(c.open_report().segments, 2);
    c.close().await.unwrap();
    let d = JsonStore::open_read_only(&path, Arc::new(RealFs)).unwrap();
    assert_eq!(
        d.find_idempotent("seg2").await.unwrap().map(|r| r.id),
        Some(k2.id)
    );
    assert_eq!(d.run("long").await.unwrap().map(|r| r.record_ids.len()), Some(3));
}
