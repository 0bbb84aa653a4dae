//! Pruning in the sled engine, beyond the conformance cases: the key book forgets pruned
//! records, a damaged marker is reported and stops imports, a read-only handle reads the
//! markers and refuses to prune, and an older database is marked with this format.

use chrono::Utc;
use synclog_core::retention::{Policy, PruneMarker};
use synclog_core::{
    Durability, ErrorKind, Filter, IdRange, LogId, LogStore, LogStoreExt, NewLog, RunScan, Status,
    VerifyOptions,
};
use synclog_sled::FORMAT_VERSION;

fn id(n: u64) -> LogId {
    LogId::new(n).unwrap()
}

fn log(job: &str) -> NewLog {
    NewLog::new(job, Status::Succeeded)
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

/// An idempotency key whose record was pruned is free again: appended anew it makes a new
/// record, and the key then finds that one (a book that still named the pruned id would
/// keep answering with nothing).
#[tokio::test(flavor = "multi_thread")]
async fn a_pruned_idempotency_key_finds_its_new_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = synclog_sled::open(dir.path().join("db")).unwrap();
    let first = store.append(log("j").idempotency_key("nightly-1")).await.unwrap();
    store.append(log("j")).await.unwrap();
    let run = store
        .start_run(NewLog::new("r", Status::Started), Durability::PowerLoss)
        .await
        .unwrap();
    // The book is filled now, with the key and the run.
    assert_eq!(
        store.find_idempotent("nightly-1").await.unwrap().unwrap().id,
        first.id
    );
    assert_eq!(store.runs(&RunScan::default()).await.unwrap().len(), 1);
    let applied = store
        .apply_prune(
            &marker(first.id.get(), run.record.id.get()),
            Durability::PowerLoss,
        )
        .await
        .unwrap();
    assert_eq!((applied.deleted, applied.already_marked), (3, false));
    assert!(store.find_idempotent("nightly-1").await.unwrap().is_none());
    assert!(store.runs(&RunScan::default()).await.unwrap().is_empty());
    let keyed = log("j").idempotency_key("nightly-1");
    let again = store
        .append_report(keyed.clone(), Durability::PowerLoss)
        .await
        .unwrap();
    assert!(!again.repeat, "the pruned record is not a repeat");
    assert!(again.record.id > run.record.id);
    assert_eq!(
        store.find_idempotent("nightly-1").await.unwrap().map(|r| r.id),
        Some(again.record.id)
    );
    let repeat = store.append_report(keyed, Durability::PowerLoss).await.unwrap();
    assert!(repeat.repeat && repeat.record.id == again.record.id, "{repeat:?}");
    assert_eq!(store.count(&Filter::default()).await.unwrap(), 1);
    store.close().await.unwrap();
}

/// A marker damaged behind the store's back: `prune_markers` says so, `verify` lists it as
/// corrupt, and an import refuses to run rather than bring back what it covered.
#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_marker_is_reported_and_stops_imports() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = synclog_sled::open(&path).unwrap();
    let recs = store
        .commit((0..4).map(|_| log("j")).collect(), Durability::PowerLoss)
        .await
        .unwrap();
    // The newest two: only the marker (and the high-water mark) keeps their ids taken.
    store
        .apply_prune(&marker(3, 4), Durability::PowerLoss)
        .await
        .unwrap();
    store.close().await.unwrap();
    drop(store);
    {
        let db = sled::open(&path).unwrap();
        let (k, v) = db.scan_prefix([2u8]).next().unwrap().unwrap();
        let text = String::from_utf8(v.to_vec())
            .unwrap()
            .replace("\"count\":2", "\"count\":3");
        db.insert(k, text.as_bytes()).unwrap();
        db.flush().unwrap();
    }
    let store = synclog_sled::open(&path).unwrap();
    let err = store.prune_markers().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    let report = store.verify(VerifyOptions::default()).await.unwrap();
    assert_eq!(report.corrupt.len(), 1, "{report:?}");
    assert!(report.corrupt[0].id.is_none());
    let err = store
        .import(recs[2..].to_vec(), Durability::PowerLoss)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(store.get(id(3)).await.unwrap().is_none());
    // The next id stays above the (damaged) marker's and the records' ids.
    let next = store.append(log("j")).await.unwrap();
    assert_eq!(next.id, id(5));
    store.close().await.unwrap();
}

/// A store of the format before prunes is marked with this one by a writer; a read-only
/// handle reads the markers and verifies, and refuses to prune.
#[tokio::test(flavor = "multi_thread")]
async fn an_older_store_is_marked_and_a_read_only_handle_reads_markers_but_does_not_prune() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = synclog_sled::open(&path).unwrap();
    store
        .commit((0..5).map(|_| log("j")).collect(), Durability::PowerLoss)
        .await
        .unwrap();
    store.close().await.unwrap();
    drop(store);
    {
        let db = sled::open(&path).unwrap();
        db.insert(b"\x00format", &2u64.to_be_bytes()[..]).unwrap();
        db.flush().unwrap();
    }
    let store = synclog_sled::open(&path).unwrap();
    let m = marker(1, 3);
    store.apply_prune(&m, Durability::PowerLoss).await.unwrap();
    store.close().await.unwrap();
    drop(store);
    {
        let db = sled::open(&path).unwrap();
        let v = db.get(b"\x00format").unwrap().unwrap();
        assert_eq!(u64::from_be_bytes(v.as_ref().try_into().unwrap()), FORMAT_VERSION);
        assert_eq!(FORMAT_VERSION, 3);
    }
    let reader = synclog_sled::open_read_only(&path).unwrap();
    assert_eq!(reader.prune_markers().await.unwrap(), vec![m.clone()]);
    let report = reader.verify(VerifyOptions::default()).await.unwrap();
    assert!(report.is_clean() && report.checked == 2, "{report:?}");
    let err = reader
        .apply_prune(&marker(4, 4), Durability::PowerLoss)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert_eq!(reader.prune_markers().await.unwrap().len(), 1);
    assert!(reader.get(id(4)).await.unwrap().is_some());
    reader.close().await.unwrap();
}

/// A prune cut off after its first batch (the marker stored, records it covers still
/// there: made here by storing a marker by hand) is finished by the next writer's open.
#[tokio::test(flavor = "multi_thread")]
async fn a_prune_cut_off_between_batches_is_finished_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = synclog_sled::open(&path).unwrap();
    store
        .commit((0..10).map(|_| log("j")).collect(), Durability::PowerLoss)
        .await
        .unwrap();
    store.close().await.unwrap();
    drop(store);
    let m = marker(1, 6);
    {
        let db = sled::open(&path).unwrap();
        let mut k = vec![2u8];
        k.extend_from_slice(&1u64.to_be_bytes());
        db.insert(k, m.encode().as_bytes()).unwrap();
        db.flush().unwrap();
    }
    let store = synclog_sled::open(&path).unwrap();
    let left: Vec<u64> = store
        .scan(&synclog_core::Scan::all(100))
        .await
        .unwrap()
        .iter()
        .map(|r| r.id.get())
        .collect();
    assert_eq!(left, (7..=10).collect::<Vec<_>>());
    let report = store.verify(VerifyOptions::default()).await.unwrap();
    assert!(report.is_clean() && report.pruned_present == 0, "{report:?}");
    let again = store.apply_prune(&m, Durability::PowerLoss).await.unwrap();
    assert!(again.already_marked && again.deleted == 0, "{again:?}");
    store.close().await.unwrap();
}
