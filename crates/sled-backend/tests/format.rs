//! The database's format version: an older database is marked with this build's version
//! when a writer opens it; a newer one is refused and left as it was.

use synclog_core::{ErrorKind, LogStore, LogStoreExt, NewLog, Status};
use synclog_sled::FORMAT_VERSION;

const FORMAT: &[u8] = b"\x00format";

fn stored_format(path: &std::path::Path) -> Option<u64> {
    let db = sled::open(path).unwrap();
    let v = db
        .get(FORMAT)
        .unwrap()
        .map(|v| u64::from_be_bytes(v.as_ref().try_into().unwrap()));
    drop(db);
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn a_writer_marks_an_unmarked_database_and_a_newer_one_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sled");
    {
        // A database as the release before runs left it: records, no format key.
        let db = sled::open(&path).unwrap();
        db.flush().unwrap();
    }
    assert_eq!(stored_format(&path), None);
    let store = synclog_sled::open(&path).unwrap();
    let rec = store
        .append_with(
            NewLog::new("j", Status::Succeeded),
            synclog_core::Durability::PowerLoss,
        )
        .await
        .unwrap();
    store.close().await.unwrap();
    drop(store);
    assert_eq!(stored_format(&path), Some(FORMAT_VERSION));
    {
        let db = sled::open(&path).unwrap();
        db.insert(FORMAT, &(FORMAT_VERSION + 1).to_be_bytes()[..])
            .unwrap();
        db.flush().unwrap();
    }
    let err = synclog_sled::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("format version {}", FORMAT_VERSION + 1)),
        "{err}"
    );
    let err = synclog_sled::open_read_only(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert_eq!(stored_format(&path), Some(FORMAT_VERSION + 1), "left as it was");
    let db = sled::open(&path).unwrap();
    assert_eq!(
        db.scan_prefix([1u8]).count(),
        1,
        "the record is still there (id {})",
        rec.id
    );
}
