//! `synclog serve` SIGKILLed while 16 clients append: every append that got a 2xx answer
//! (the clients' ledger) is in the store afterwards, with the id and checksum the answer
//! gave; no id was handed out twice; both copies of the pair agree.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use synclog::{LogId, LogStore};

/// Appends acknowledged before the kill (the ledger's size is at least this).
const ACKED_BEFORE_KILL: usize = 400;
const CLIENTS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_server_loses_no_acknowledged_append() {
    let dir = tempfile::tempdir().unwrap();
    let primary = format!("sqlite://{}", dir.path().join("p.db").display());
    let backup = format!("json://{}", dir.path().join("b.jsonl").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_synclog"))
        .current_dir(dir.path())
        .env_remove("SYNCLOG_TOKEN")
        .env_remove("SYNCLOG_READ_TOKEN")
        .args([
            "--store",
            &primary,
            "--backup",
            &backup,
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // The address it bound, from its "serving ... on http://ADDR" line.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let base = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the server exited before serving"
        );
        if let Some(at) = line.find("on http://") {
            let rest = &line[at + 3..];
            break rest[..rest.find(' ').unwrap()].to_string();
        }
    };
    let ledger: Arc<Mutex<BTreeMap<String, (u64, String)>>> = Arc::default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (client, ledger, url) = (client.clone(), ledger.clone(), format!("{base}/v1/logs"));
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let key = format!("c{c}-{i}");
                let body = json!({"job": format!("job-{}", c % 4), "status": "succeeded", "items_seen": i});
                let Ok(resp) = client
                    .post(&url)
                    .header("Idempotency-Key", &key)
                    .json(&body)
                    .send()
                    .await
                else {
                    return; // the server is gone
                };
                if !resp.status().is_success() {
                    continue;
                }
                let Ok(r) = resp.json::<Value>().await else { return };
                let rec = &r["records"][0];
                ledger.lock().unwrap().insert(
                    key,
                    (
                        rec["id"].as_u64().unwrap(),
                        rec["checksum"].as_str().unwrap().to_string(),
                    ),
                );
            }
        }));
    }
    let start = Instant::now();
    while ledger.lock().unwrap().len() < ACKED_BEFORE_KILL {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the server acknowledged too few appends"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL, mid-load
    child.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let ledger = ledger.lock().unwrap().clone();
    assert!(ledger.len() >= ACKED_BEFORE_KILL);

    let pair = synclog::open_guarded(&primary, &backup, synclog::GuardedOptions::default())
        .await
        .unwrap();
    let mut ids = HashSet::new();
    for (key, (id, checksum)) in &ledger {
        assert!(ids.insert(*id), "id {id} was acknowledged twice");
        let rec = pair
            .get(LogId::new(*id).unwrap())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged log {id} ({key}) is lost"));
        assert_eq!(rec.idempotency_key.as_deref(), Some(key.as_str()));
        assert_eq!(&rec.checksum.to_string(), checksum);
    }
    let report = pair.check(false).await.unwrap();
    assert!(report.in_sync(), "the copies differ after reopening: {report:?}");
    pair.close().await.unwrap();
}
