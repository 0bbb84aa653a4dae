//! `synclog::blocking` from plain threads and from inside runtimes, and the async API
//! called outside a runtime: a typed error, never a panic.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use synclog::blocking;
use synclog::prelude::*;

fn urls(dir: &std::path::Path) -> (String, String) {
    (
        format!("sqlite://{}", dir.join("logs.db").display()),
        format!("json://{}", dir.join("logs.jsonl").display()),
    )
}

/// Appends, reads, runs and checks through the blocking API; returns the ids appended.
fn use_the_pair(dir: &std::path::Path) -> Vec<u64> {
    let (p, b) = urls(dir);
    let store = blocking::open_guarded(&p, &b, GuardedOptions::default()).unwrap();
    let a = store
        .append(NewLog::new("crm", Status::Succeeded).counts(3, 3, 0))
        .unwrap();
    let run = store.start_run(NewLog::new("erp", Status::Started)).unwrap();
    let key = run.record.run.clone().unwrap();
    let done = store
        .finish_run(&key, NewLog::new("erp", Status::Failed))
        .unwrap();
    assert_eq!(store.get(a.id).unwrap(), Some(a.clone()));
    assert_eq!(store.last_id().unwrap(), Some(done.record.id));
    assert_eq!(store.count(&Filter::default()).unwrap(), 3);
    let by_status = store.count_by_status(&Filter::default()).unwrap();
    assert_eq!(
        by_status.into_iter().collect::<Vec<_>>(),
        [(Status::Started, 1), (Status::Succeeded, 1), (Status::Failed, 1)]
    );
    let run = store.run_of(&key).unwrap().unwrap();
    assert_eq!(
        (run.status, run.finished, run.record_ids.len()),
        (Status::Failed, true, 2)
    );
    let report = store.check(false).unwrap();
    assert!(report.in_sync(), "{report:?}");
    let ids: Vec<u64> = store
        .scan(&Scan::default())
        .unwrap()
        .iter()
        .map(|r| r.id.get())
        .collect();
    store.close().unwrap();
    // Closed means released: the pair opens again at once, holding what was appended.
    let again = blocking::open_guarded(&p, &b, GuardedOptions::default()).unwrap();
    assert_eq!(again.last_id().unwrap(), Some(done.record.id));
    drop(again);
    ids
}

#[test]
fn the_blocking_api_works_from_a_plain_thread() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(use_the_pair(dir.path()), vec![1, 2, 3]);
}

#[tokio::test(flavor = "current_thread")]
async fn the_blocking_api_works_inside_a_current_thread_runtime() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(use_the_pair(dir.path()), vec![1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blocking_api_works_inside_a_multi_thread_runtime() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(use_the_pair(dir.path()), vec![1, 2, 3]);
}

#[test]
fn a_store_opened_by_url_refuses_check_with_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let store = blocking::open_url(&urls(dir.path()).0).unwrap();
    assert_eq!(store.check(false).unwrap_err().kind(), ErrorKind::Unsupported);
}

#[test]
fn a_bad_url_is_a_typed_error_through_the_blocking_api() {
    let err = blocking::open_url("nosuch://x").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

/// Polls `future` to completion on this thread, with no tokio runtime anywhere in reach:
/// what an app's own executor (or `futures::executor::block_on`) does.
fn poll_outside_tokio<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

#[test]
fn opening_outside_a_runtime_is_a_typed_error_that_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (p, b) = urls(dir.path());
    for url in [&p, &b] {
        let err = poll_outside_tokio(synclog::open_url(url)).unwrap_err();
        assert!(matches!(err, Error::NoRuntime { .. }), "{err:?}");
        assert_eq!(err.kind(), ErrorKind::Unsupported);
    }
    let err = poll_outside_tokio(synclog::open_guarded(&p, &b, GuardedOptions::default())).unwrap_err();
    assert!(matches!(err, Error::NoRuntime { .. }), "{err:?}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing was created"
    );
}

#[test]
fn reading_a_store_outside_its_runtime_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut urls = vec![
        format!("sqlite://{}", dir.path().join("a.db").display()),
        format!("json://{}", dir.path().join("a.jsonl").display()),
    ];
    if cfg!(feature = "sled") {
        urls.push(format!("sled://{}", dir.path().join("a.sled").display()));
    }
    for url in urls {
        let store = runtime.block_on(async {
            let store = synclog::open_url(&url).await.unwrap();
            store.append(NewLog::new("crm", Status::Succeeded)).await.unwrap();
            store
        });
        // The same store, polled from a thread outside any runtime.
        let err = poll_outside_tokio(store.get(LogId::MIN)).unwrap_err();
        assert!(matches!(err, Error::NoRuntime { .. }), "{url}: {err:?}");
        let err = poll_outside_tokio(store.scan(&Scan::default())).unwrap_err();
        assert!(matches!(err, Error::NoRuntime { .. }), "{url}: {err:?}");
        // Close refused outside too, and still works inside afterwards.
        let err = poll_outside_tokio(store.close()).unwrap_err();
        assert!(matches!(err, Error::NoRuntime { .. }), "{url}: {err:?}");
        runtime.block_on(async {
            assert_eq!(store.get(LogId::MIN).await.unwrap().unwrap().job, "crm");
            store.close().await.unwrap();
        });
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_failed_open_inside_a_runtime_is_a_typed_error_not_a_panic() {
    let err = blocking::open_url("nosuch://x").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = urls(dir.path());
    let err = blocking::open_guarded(&p, &p, GuardedOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

#[test]
fn appends_commit_at_the_strongest_level_the_store_offers() {
    // The memory engine offers only Buffered: an append at PowerLoss would be refused.
    let store = blocking::open_url(&format!("memory://blocking-{}", std::process::id())).unwrap();
    assert_eq!(store.strongest(), Durability::Buffered);
    let run = store.start_run(NewLog::new("crm", Status::Started)).unwrap();
    let key = run.record.run.clone().unwrap();
    store
        .finish_run(&key, NewLog::new("crm", Status::Succeeded))
        .unwrap();
    assert_eq!(
        store
            .append(NewLog::new("crm", Status::Skipped))
            .unwrap()
            .id
            .get(),
        3
    );
    store.close().unwrap();
}
