//! What the server does when a handler panics, with an append in flight at shutdown, and
//! when its store cannot be reached, over a store whose calls the test controls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use synclog_core::memory::MemoryStore;
use synclog_core::{
    Capabilities, Committed, Durability, Error, ImportReport, LogId, LogRecord, LogStore, Result, Scan,
    ValidBatch, ValidRecords, VerifyOptions, VerifyReport,
};
use synclog_server::Config;
use tokio::sync::{oneshot, Mutex, Notify};

/// The text of the panic a `get` raises: it must never reach a client.
const PANIC_TEXT: &str = "secret-panic-detail 0xdeadbeef";

/// A memory store whose `get` panics, whose commits can be held at a gate, and whose
/// commits and scans fail with an I/O error while it is `down` (a disk gone away).
#[derive(Debug)]
struct Hooked {
    inner: MemoryStore,
    /// Notified when a commit arrives at the gate.
    arrived: Arc<Notify>,
    /// While set, the next commit waits for this to be sent (or dropped).
    gate: Mutex<Option<oneshot::Receiver<()>>>,
    /// While set, commits and scans fail before the inner store sees them.
    down: AtomicBool,
}

impl Hooked {
    fn reachable(&self, what: &str) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::io(
                format!("{what}: the disk is gone (test)"),
                std::io::Error::other("injected: disk gone"),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl LogStore for Hooked {
    fn describe(&self) -> String {
        format!("hooked {}", self.inner.describe())
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn commit_valid(&self, batch: ValidBatch, durability: Durability) -> Result<Committed> {
        self.reachable("committing")?;
        let gate = self.gate.lock().await.take();
        if let Some(gate) = gate {
            self.arrived.notify_one();
            let _ = gate.await;
        }
        self.inner.commit_valid(batch, durability).await
    }
    async fn get(&self, id: LogId) -> Result<Option<LogRecord>> {
        panic!("{PANIC_TEXT}: get({id})");
    }
    async fn scan(&self, scan: &Scan) -> Result<Vec<LogRecord>> {
        self.reachable("scanning")?;
        self.inner.scan(scan).await
    }
    async fn last_id(&self) -> Result<Option<LogId>> {
        self.inner.last_id().await
    }
    async fn high_water(&self) -> Result<Option<LogId>> {
        self.inner.high_water().await
    }
    async fn sync(&self, level: Durability) -> Result<()> {
        self.inner.sync(level).await
    }
    async fn verify(&self, options: VerifyOptions) -> Result<VerifyReport> {
        self.inner.verify(options).await
    }
    async fn import_valid(&self, records: ValidRecords, durability: Durability) -> Result<ImportReport> {
        self.inner.import_valid(records, durability).await
    }
    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

struct Running {
    base: String,
    store: Arc<Hooked>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn serve(gate: Option<oneshot::Receiver<()>>) -> Running {
    let store = Arc::new(Hooked {
        inner: MemoryStore::new(),
        arrived: Arc::new(Notify::new()),
        gate: Mutex::new(gate),
        down: AtomicBool::new(false),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let dyn_store: Arc<dyn LogStore> = store.clone();
    let task = tokio::spawn(synclog_server::serve(
        listener,
        dyn_store,
        None,
        Config::default(),
        async {
            let _ = stopped.await;
        },
    ));
    Running {
        base,
        store,
        stop,
        task,
    }
}

fn one_log() -> Value {
    json!({"job": "crm-sync", "status": "succeeded", "started_at": "2026-12-01T10:00:00Z", "items_seen": 3})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_answers_500_internal_without_the_panic_text_and_the_server_goes_on() {
    let server = serve(None).await;
    let c = reqwest::Client::new();
    let resp = c.get(format!("{}/v1/logs/1", server.base)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 500);
    let body = resp.text().await.unwrap();
    assert!(
        !body.contains("secret-panic-detail"),
        "the panic text leaked: {body}"
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["kind"], "internal", "{v}");
    // The server goes on: an append (no panic there) is answered and stored.
    let resp = c
        .post(format!("{}/v1/logs", server.base))
        .json(&one_log())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    assert_eq!(server.store.inner.last_id().await.unwrap(), LogId::new(1));
    let _ = server.stop.send(());
    server.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_in_flight_at_shutdown_is_answered_and_stored() {
    let (release, gate) = oneshot::channel::<()>();
    let server = serve(Some(gate)).await;
    let arrived = server.store.arrived.clone();
    let url = format!("{}/v1/logs", server.base);
    let append = tokio::spawn(async move { reqwest::Client::new().post(url).json(&one_log()).send().await });
    // The append is inside the store when the shutdown begins.
    tokio::time::timeout(Duration::from_secs(10), arrived.notified())
        .await
        .expect("the append reached the store");
    let _ = server.stop.send(());
    // The server is draining: it has not ended, and the append is not answered yet.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !server.task.is_finished(),
        "the server ended with an append in flight"
    );
    release.send(()).unwrap();
    let resp = append.await.unwrap().expect("the append in flight is answered");
    assert_eq!(resp.status().as_u16(), 201);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["records"][0]["id"], 1, "{v}");
    tokio::time::timeout(Duration::from_secs(10), server.task)
        .await
        .expect("the server ends once the append is answered")
        .unwrap()
        .unwrap();
    assert_eq!(server.store.inner.last_id().await.unwrap(), LogId::new(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_be_reached_is_a_503_unavailable_with_retry_after_and_writes_nothing() {
    let server = serve(None).await;
    let c = reqwest::Client::new();
    let append = || c.post(format!("{}/v1/logs", server.base)).json(&one_log()).send();
    server.store.down.store(true, Ordering::SeqCst);
    let resp = append().await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(
        resp.headers().get("retry-after").map(|v| v.to_str().unwrap()),
        Some("5")
    );
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["kind"], "unavailable", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("disk is gone"),
        "{v}"
    );
    // A read that needs the store is refused the same way.
    let resp = c.get(format!("{}/v1/logs", server.base)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["kind"], "unavailable", "{v}");
    assert_eq!(server.store.inner.last_id().await.unwrap(), None);
    // Once the store is back, the same append is stored under the first id.
    server.store.down.store(false, Ordering::SeqCst);
    let resp = append().await.unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["records"][0]["id"], 1, "{v}");
    let _ = server.stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server.task)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}
