//! The API against a real server on a loopback port, over a guarded SQLite + JSON-lines
//! pair: every endpoint, auth, each error status, idempotent retries, paging, SSE resume,
//! limits and graceful shutdown.

use std::time::Duration;

use serde_json::{json, Value};
use synclog_core::LogStore;
use synclog_server::{Access, Config, Token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;
use common::{open_pair, Server};

const WRITE: &str = "write-token-0123456789";
const READ: &str = "read-token-0123456789";

fn tokens(public_read: bool) -> Config {
    Config {
        access: Access {
            write: Some(Token::new(WRITE).unwrap()),
            read: Some(Token::new(READ).unwrap()),
            public_read,
        },
        ..Config::default()
    }
}

async fn post(
    c: &reqwest::Client,
    url: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = c.post(url).json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    (status, resp.json().await.unwrap_or(Value::Null), h)
}

async fn get(c: &reqwest::Client, url: &str) -> (u16, Value, reqwest::header::HeaderMap) {
    let resp = c.get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    (status, resp.json().await.unwrap_or(Value::Null), h)
}

fn kind(v: &Value) -> &str {
    v["error"]["kind"].as_str().unwrap_or("<no error kind>")
}

#[tokio::test]
async fn an_append_answers_with_a_read_back_receipt_and_a_retry_is_a_repeat() {
    let s = Server::open().await;
    let c = reqwest::Client::new();
    let log = json!({"job": "orders", "status": "succeeded", "started_at": "2026-12-01T10:00:00Z", "items_seen": 5});
    let (st, r, _) = post(&c, &s.url("/v1/logs"), log.clone(), &[("Idempotency-Key", "k-1")]).await;
    assert_eq!(st, 201, "{r}");
    assert_eq!(r["records"][0]["id"], 1);
    assert_eq!(r["repeats"], json!([false]));
    assert_eq!(r["verified"], true);
    assert_eq!(r["durable_in"], json!({"primary": true, "backup": true}));
    // The store holds exactly what the receipt says.
    let stored = s.guarded.get(synclog_core::LogId::MIN).await.unwrap().unwrap();
    assert_eq!(r["records"][0]["checksum"], stored.checksum.to_string());

    // The retry after a lost answer: same key, same content, same id, nothing written.
    let (st, r, _) = post(&c, &s.url("/v1/logs"), log.clone(), &[("Idempotency-Key", "k-1")]).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["records"][0]["id"], 1);
    assert_eq!(r["repeats"], json!([true]));
    // Other content under the key: 409, nothing written.
    let other = json!({"job": "orders", "status": "failed", "started_at": "2026-12-01T10:00:00Z"});
    let (st, r, _) = post(&c, &s.url("/v1/logs"), other, &[("Idempotency-Key", "k-1")]).await;
    assert_eq!((st, kind(&r)), (409, "refused"), "{r}");
    assert_eq!(s.count().await, 1);

    // A batch: atomic, keys K.i, ids in order.
    let batch = json!([{"job": "a", "status": "succeeded", "started_at": "2026-12-01T10:00:00Z"},
                       {"job": "b", "status": "failed", "started_at": "2026-12-01T10:00:00Z"}]);
    let (st, r, _) = post(
        &c,
        &s.url("/v1/logs"),
        batch.clone(),
        &[("Idempotency-Key", "batch")],
    )
    .await;
    assert_eq!(st, 201, "{r}");
    assert_eq!(
        (r["records"][0]["id"].clone(), r["records"][1]["id"].clone()),
        (json!(2), json!(3))
    );
    assert_eq!(r["records"][1]["idempotency_key"], "batch.1");
    let (st, r, _) = post(&c, &s.url("/v1/logs"), batch, &[("Idempotency-Key", "batch")]).await;
    assert_eq!((st, r["repeats"].clone()), (200, json!([true, true])));
    assert_eq!(s.count().await, 3);
    s.stop().await;
}

/// A client that leaves `started_at` out (the server stamps it) and retries the same body
/// after a lost answer gets the stored records back as repeats: one log, a batch, and a
/// key in the body. Other content under the key is still a 409.
#[tokio::test]
async fn a_retry_without_a_start_time_is_a_repeat_not_a_conflict() {
    let s = Server::open().await;
    let c = reqwest::Client::new();
    let url = s.url("/v1/logs");
    let one = json!({"job": "web", "status": "succeeded", "items_seen": 3});
    let batch = json!([{"job": "web", "status": "failed"}, {"job": "web2", "status": "partial"}]);
    let in_body = json!({"job": "web", "status": "succeeded", "idempotency_key": "in-body"});
    for (body, key, ids) in [
        (one.clone(), Some("one"), json!([1])),
        (batch, Some("batch"), json!([2, 3])),
        (in_body, None, json!([4])),
    ] {
        let headers: Vec<(&str, &str)> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
        let (st, first, _) = post(&c, &url, body.clone(), &headers).await;
        assert_eq!(st, 201, "{first}");
        // Later than the first stamp, at the store's microsecond precision.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let (st, again, _) = post(&c, &url, body, &headers).await;
        assert_eq!(st, 200, "{again}");
        let id_list = |r: &Value| {
            json!(r["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].clone())
                .collect::<Vec<_>>())
        };
        assert_eq!((id_list(&first), id_list(&again)), (ids.clone(), ids), "{again}");
        assert!(
            again["repeats"].as_array().unwrap().iter().all(|r| r == true),
            "{again}"
        );
        assert_eq!(first["records"], again["records"]);
    }
    assert_eq!(s.count().await, 4);
    let other = json!({"job": "web", "status": "failed", "items_seen": 3});
    let (st, r, _) = post(&c, &url, other, &[("Idempotency-Key", "one")]).await;
    assert_eq!((st, kind(&r)), (409, "refused"), "{r}");
    assert_eq!(s.count().await, 4);
    s.stop().await;
}

#[tokio::test]
async fn bad_input_is_a_400_with_a_json_error_and_writes_nothing() {
    let s = Server::open().await;
    let c = reqwest::Client::new();
    let url = s.url("/v1/logs");
    // One bad log in a batch: nothing of the batch is written.
    let batch = json!([{"job": "a", "status": "succeeded"}, {"job": "", "status": "succeeded"}]);
    let (st, r, _) = post(&c, &url, batch, &[]).await;
    assert_eq!((st, kind(&r)), (400, "invalid_input"), "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("log #1"), "{r}");
    for bad in [
        json!([]),
        json!({"job": "a", "status": "bogus"}),
        json!({"job": "a", "status": "succeeded", "colour": "red"}),
        json!({"job": "a", "status": "succeeded", "attrs": [1, 2]}),
    ] {
        let (st, r, _) = post(&c, &url, bad.clone(), &[]).await;
        assert_eq!((st, kind(&r)), (400, "invalid_input"), "{bad} -> {r}");
    }
    let resp = c
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(kind(&resp.json::<Value>().await.unwrap()), "invalid_input");
    // A body not declared as JSON (what a cross-site form can send without a preflight).
    let resp = c
        .post(&url)
        .header("content-type", "text/plain")
        .body(r#"{"job": "a", "status": "succeeded"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    assert_eq!(
        kind(&resp.json::<Value>().await.unwrap()),
        "unsupported_media_type"
    );
    // A start retried by key must name its run and start time.
    let (st, r, _) = post(
        &c,
        &s.url("/v1/runs"),
        json!({"job": "a"}),
        &[("Idempotency-Key", "s-1")],
    )
    .await;
    assert_eq!((st, kind(&r)), (400, "invalid_input"), "{r}");
    // A run key a URL path would lose.
    for key in [".", ".."] {
        let (st, r, _) = post(&c, &s.url("/v1/runs"), json!({"job": "a", "run": key}), &[]).await;
        assert_eq!((st, kind(&r)), (400, "invalid_input"), "{key}: {r}");
        assert!(r["error"]["message"].as_str().unwrap().contains("run"), "{r}");
    }
    // A resume point that is no id.
    let resp = c
        .get(s.url("/v1/stream"))
        .header("Last-Event-ID", "18446744073709551615")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(s.count().await, 0, "nothing was written");

    // Reads: unknown parameters, bad ids, bad limits, bad times, unknown paths, methods.
    for (path, status, k) in [
        ("/v1/logs?jobb=a", 400, "invalid_input"),
        ("/v1/logs?limit=0", 400, "invalid_input"),
        ("/v1/logs?limit=5000", 400, "invalid_input"),
        ("/v1/logs?from=yesterday-ish", 400, "invalid_input"),
        ("/v1/logs?from=2026-12-02&until=2026-12-01", 400, "invalid_input"),
        ("/v1/logs/abc", 400, "invalid_input"),
        ("/v1/logs/99", 404, "not_found"),
        ("/v1/runs/nope", 404, "not_found"),
        // A path that does not decode as text: JSON like every other error.
        ("/v1/runs/%FF", 400, "invalid_input"),
        ("/v1/logs/%FF%FE", 400, "invalid_input"),
        ("/runs/%FF", 400, "invalid_input"),
        ("/v1/nothing-here", 404, "not_found"),
    ] {
        let (st, r, _) = get(&c, &s.url(path)).await;
        assert_eq!((st, kind(&r)), (status, k), "{path}: {r}");
    }
    let resp = c.delete(s.url("/v1/logs")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    s.stop().await;
}

#[tokio::test]
async fn writes_need_the_write_token_and_reads_a_token_unless_public() {
    let s = Server::start(tokens(false)).await;
    let c = reqwest::Client::new();
    let log = json!({"job": "a", "status": "succeeded"});
    let url = s.url("/v1/logs");
    let (st, r, h) = post(&c, &url, log.clone(), &[]).await;
    assert_eq!((st, kind(&r)), (401, "unauthorized"));
    assert_eq!(h["www-authenticate"], "Bearer realm=\"synclog\"");
    let (st, r, _) = post(
        &c,
        &url,
        log.clone(),
        &[("Authorization", "Bearer wrong-token-0123456789")],
    )
    .await;
    assert_eq!((st, kind(&r)), (401, "unauthorized"));
    let read = format!("Bearer {READ}");
    let (st, r, _) = post(&c, &url, log.clone(), &[("Authorization", &read)]).await;
    assert_eq!((st, kind(&r)), (403, "forbidden"));
    assert_eq!(s.count().await, 0);
    // Every write endpoint, and Basic (a browser's cached password) never writes.
    let basic = format!("Basic {}", {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("me:{WRITE}"))
    });
    for (path, body) in [
        ("/v1/runs", json!({"job": "a", "run": "r"})),
        ("/v1/runs/r/finish", json!({"status": "succeeded"})),
        ("/v1/runs/r/abandon", json!({"reason": "x"})),
        ("/v1/logs", log.clone()),
    ] {
        let (st, _, _) = post(&c, &s.url(path), body.clone(), &[]).await;
        assert_eq!(st, 401, "{path} without a token");
        let (st, _, _) = post(&c, &s.url(path), body.clone(), &[("Authorization", &read)]).await;
        assert_eq!(st, 403, "{path} with the read token");
        let (st, _, _) = post(&c, &s.url(path), body, &[("Authorization", &basic)]).await;
        assert_eq!(st, 401, "{path} with Basic");
    }
    assert_eq!(s.count().await, 0);
    let write = format!("Bearer {WRITE}");
    let (st, r, _) = post(&c, &url, log, &[("Authorization", &write)]).await;
    assert_eq!(st, 201, "{r}");
    // Reads: no token 401 (the API and the dashboard, which asks a browser for Basic).
    for path in [
        "/v1/logs",
        "/v1/runs",
        "/v1/count",
        "/v1/summary",
        "/v1/health",
        "/metrics",
        "/v1/stream",
        "/v1/openapi.json",
    ] {
        let resp = c.get(s.url(path)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{path}");
        let body = resp.text().await.unwrap();
        assert!(
            !body.contains(WRITE) && !body.contains(READ),
            "a token is never echoed"
        );
    }
    let resp = c.get(s.url("/")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Basic realm=\"synclog\"");
    let resp = c
        .get(s.url("/"))
        .basic_auth("me", Some(READ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    for token in [READ, WRITE] {
        let resp = c.get(s.url("/v1/count")).bearer_auth(token).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(resp.json::<Value>().await.unwrap()["count"], 1);
    }
    s.stop().await;

    let s = Server::start(tokens(true)).await;
    let (st, r, _) = get(&c, &s.url("/v1/count")).await;
    assert_eq!(
        (st, r["count"].clone()),
        (200, json!(0)),
        "public reads need no token"
    );
    let (st, _, _) = post(
        &c,
        &s.url("/v1/logs"),
        json!({"job": "a", "status": "succeeded"}),
        &[],
    )
    .await;
    assert_eq!(st, 401, "writes still do");
    s.stop().await;
}

#[tokio::test]
async fn without_a_token_only_loopback_host_names_are_answered() {
    let s = Server::open().await;
    let c = reqwest::Client::new();
    let resp = c
        .get(s.url("/v1/count"))
        .header("host", "rebound.example:7070")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(kind(&resp.json().await.unwrap()), "forbidden");
    let resp = c
        .get(s.url("/v1/count"))
        .header("host", "localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    s.stop().await;
}

#[test]
fn a_non_loopback_address_without_a_token_is_refused_at_start() {
    let open = Access::default();
    assert!(synclog_server::check_listen("0.0.0.0:7070".parse().unwrap(), &open).is_err());
    assert!(synclog_server::check_listen("127.0.0.1:7070".parse().unwrap(), &open).is_ok());
    assert!(synclog_server::check_listen("[::1]:7070".parse().unwrap(), &open).is_ok());
    let with = Access {
        write: Some(Token::new(WRITE).unwrap()),
        ..Access::default()
    };
    assert!(synclog_server::check_listen("0.0.0.0:7070".parse().unwrap(), &with).is_ok());
}

#[tokio::test]
async fn a_run_starts_finishes_once_and_shows_its_timeline() {
    let s = Server::open().await;
    let c = reqwest::Client::new();
    let (st, r, _) = post(
        &c,
        &s.url("/v1/runs"),
        json!({"job": "crm", "run": "r-1", "attrs": {"env": "prod"}}),
        &[],
    )
    .await;
    assert_eq!(
        (st, r["run"].clone(), r["record"]["status"].clone()),
        (201, json!("r-1"), json!("started"))
    );
    let (st, r, _) = post(&c, &s.url("/v1/runs"), json!({"job": "crm"}), &[]).await;
    assert_eq!(st, 201);
    let generated = r["run"].as_str().unwrap().to_string();
    assert!(!generated.is_empty());

    let fin = json!({"status": "partial", "items_seen": 10, "items_written": 8, "items_failed": 2, "message": "2 bad rows"});
    let (st, r, _) = post(&c, &s.url("/v1/runs/r-1/finish"), fin.clone(), &[]).await;
    assert_eq!((st, r["repeat"].clone()), (201, json!(false)), "{r}");
    let terminal = r["record"]["id"].clone();
    let (st, r, _) = post(&c, &s.url("/v1/runs/r-1/finish"), fin, &[]).await;
    assert_eq!(
        (st, r["repeat"].clone(), r["record"]["id"].clone()),
        (200, json!(true), terminal)
    );
    let (st, r, _) = post(
        &c,
        &s.url("/v1/runs/r-1/finish"),
        json!({"status": "succeeded"}),
        &[],
    )
    .await;
    assert_eq!((st, kind(&r)), (409, "refused"));
    let (st, r, _) = post(
        &c,
        &s.url("/v1/runs/r-1/finish"),
        json!({"status": "progress"}),
        &[],
    )
    .await;
    assert_eq!((st, kind(&r)), (400, "invalid_input"));
    let (st, r, _) = post(&c, &s.url("/v1/runs/none/abandon"), json!({"reason": "x"}), &[]).await;
    assert_eq!((st, kind(&r)), (404, "not_found"));
    let (st, _, _) = post(
        &c,
        &s.url(&format!("/v1/runs/{generated}/abandon")),
        json!({"reason": "worker killed"}),
        &[],
    )
    .await;
    assert_eq!(st, 201);

    let (st, r, _) = get(&c, &s.url("/v1/runs/r-1")).await;
    assert_eq!(st, 200);
    assert_eq!(r["run"]["status"], "partial");
    assert_eq!(r["run"]["items_failed"], 2);
    let statuses: Vec<&str> = r["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["started", "partial"]);

    // Stale: a run started two days ago and never finished.
    let old = (chrono::Utc::now() - chrono::Duration::hours(48)).to_rfc3339();
    post(
        &c,
        &s.url("/v1/runs"),
        json!({"job": "crm", "run": "old", "started_at": old}),
        &[],
    )
    .await;
    let (_, r, _) = get(&c, &s.url("/v1/runs?stale=true")).await;
    let keys: Vec<&str> = r["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["old"]);
    assert_eq!(r["runs"][0]["stale"], true);
    let (_, r, _) = get(&c, &s.url("/v1/runs?stale=true&older_than=72h")).await;
    assert_eq!(r["runs"], json!([]));
    let (_, r, _) = get(&c, &s.url("/v1/runs?status=abandoned")).await;
    assert_eq!(r["runs"][0]["key"], generated.as_str());
    s.stop().await;
}

#[tokio::test]
async fn pages_follow_the_next_link_to_every_match_exactly_once() {
    let s = Server::open().await;
    let c = reqwest::Client::new();
    let batch: Vec<Value> = (0..25)
        .map(|i| json!({"job": if i % 2 == 0 { "even" } else { "odd" }, "status": "succeeded", "attrs": {"i": i}}))
        .collect();
    let (st, _, _) = post(&c, &s.url("/v1/logs"), Value::Array(batch), &[]).await;
    assert_eq!(st, 201);
    for (query, want) in [
        ("limit=10", (1..=25).collect::<Vec<u64>>()),
        ("limit=10&order=desc", (1..=25).rev().collect()),
        ("limit=4&job=even", (1..=25).step_by(2).collect()),
        ("limit=3&job=odd&order=desc", (2..=24).rev().step_by(2).collect()),
    ] {
        let mut url = s.url(&format!("/v1/logs?{query}"));
        let mut seen = Vec::new();
        for _ in 0..20 {
            let (st, r, h) = get(&c, &url).await;
            assert_eq!(st, 200, "{r}");
            seen.extend(
                r["logs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l["id"].as_u64().unwrap()),
            );
            match h.get("link") {
                Some(link) => {
                    let link = link.to_str().unwrap();
                    assert!(link.ends_with("rel=\"next\""), "{link}");
                    let path = &link[1..link.find('>').unwrap()];
                    assert_eq!(Some(path.trim_start_matches("/v1/logs?")), r["next"].as_str());
                    url = s.url(path);
                }
                None => break,
            }
        }
        assert_eq!(seen, want, "{query}");
    }
    let (_, r, _) = get(&c, &s.url("/v1/count?job=even")).await;
    assert_eq!(r["count"], 13);
    // An empty value is no condition (an HTML form's "any").
    let (_, r, _) = get(&c, &s.url("/v1/count?job=even&status=&from=")).await;
    assert_eq!(r["count"], 13);
    let (_, r, _) = get(&c, &s.url("/v1/logs?attr=i=7")).await;
    assert_eq!(r["logs"][0]["id"], 8);
    let (_, r, _) = get(&c, &s.url("/v1/summary")).await;
    assert_eq!(r["jobs"][0]["job"], "even");
    assert_eq!(r["jobs"][0]["counts"]["succeeded"], 13);
    assert_eq!(r["all_last_succeeded"], true);
    s.stop().await;
}

#[tokio::test]
async fn a_count_by_status_gives_each_status_from_one_request_and_refuses_an_unknown_breakdown() {
    let s = Server::open().await;
    let c = reqwest::Client::new();
    let batch: Vec<Value> = (0..9)
        .map(|i| {
            let status = ["succeeded", "failed", "failed"][i % 3];
            json!({"job": if i < 6 { "a" } else { "b" }, "status": status})
        })
        .collect();
    let (st, _, _) = post(&c, &s.url("/v1/logs"), Value::Array(batch), &[]).await;
    assert_eq!(st, 201);
    let (st, r, _) = get(&c, &s.url("/v1/count?by=status")).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r, json!({"count": 9, "by_status": {"failed": 6, "succeeded": 3}}));
    let (_, r, _) = get(&c, &s.url("/v1/count?by=status&job=b&status=failed")).await;
    assert_eq!(r, json!({"count": 2, "by_status": {"failed": 2}}));
    let (_, r, _) = get(&c, &s.url("/v1/count?job=b")).await;
    assert_eq!(r, json!({"count": 3}), "no breakdown unless asked");
    let (st, r, _) = get(&c, &s.url("/v1/count?by=job")).await;
    assert_eq!((st, kind(&r)), (400, "invalid_input"), "{r}");
    s.stop().await;
}

/// Reads SSE events off a streaming response until `n` `log` events came: their ids.
async fn events(resp: &mut reqwest::Response, n: usize) -> Vec<u64> {
    let mut ids = Vec::new();
    let mut text = String::new();
    while ids.len() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
            .await
            .expect("an event in time")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            if event.contains("event: log") {
                let id = event.lines().find_map(|l| l.strip_prefix("id: ")).unwrap();
                let data = event.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
                let log: Value = serde_json::from_str(data).unwrap();
                assert_eq!(log["id"].as_u64().unwrap().to_string(), id);
                ids.push(id.parse().unwrap());
            }
        }
    }
    ids
}

#[tokio::test]
async fn the_stream_sends_new_matching_logs_and_resumes_after_last_event_id() {
    let s = Server::open().await;
    let c = reqwest::Client::new();
    let append = |job: &'static str| {
        let c = c.clone();
        let url = s.url("/v1/logs");
        async move {
            post(&c, &url, json!({"job": job, "status": "failed"}), &[])
                .await
                .0
        }
    };
    assert_eq!(append("orders").await, 201);
    let mut resp = c.get(s.url("/v1/stream?job=orders")).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    // From now on only: log 1 came before the stream opened.
    append("other").await;
    append("orders").await;
    append("orders").await;
    assert_eq!(events(&mut resp, 2).await, [3, 4]);
    drop(resp);
    // While disconnected.
    append("orders").await;
    append("other").await;
    append("orders").await;
    let mut resp = c
        .get(s.url("/v1/stream?job=orders"))
        .header("Last-Event-ID", "4")
        .send()
        .await
        .unwrap();
    assert_eq!(
        events(&mut resp, 2).await,
        [5, 7],
        "nothing skipped, nothing repeated"
    );
    append("orders").await;
    assert_eq!(events(&mut resp, 1).await, [8]);
    let mut all = c.get(s.url("/v1/stream?after=0")).send().await.unwrap();
    assert_eq!(events(&mut all, 8).await, (1..=8).collect::<Vec<_>>());
    drop(resp);
    drop(all);
    s.stop().await;
}

/// The dashboard's live stream starts after the newest log its page had seen, so a run
/// started while the page renders, or before the browser connects, still arrives.
#[tokio::test]
async fn the_dashboards_stream_goes_on_from_what_its_page_saw() {
    let s = Server::open().await;
    let c = reqwest::Client::new();
    let (st, _, _) = post(
        &c,
        &s.url("/v1/logs"),
        json!({"job": "orders", "status": "failed"}),
        &[],
    )
    .await;
    assert_eq!(st, 201);
    let page = c.get(s.url("/?job=orders")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    let attr = html
        .split("data-stream=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page names its stream")
        .replace("&amp;", "&");
    // Before the browser connects: a run starts, and another job logs.
    let (st, r, _) = post(
        &c,
        &s.url("/v1/runs"),
        json!({"job": "orders", "run": "late"}),
        &[],
    )
    .await;
    assert_eq!(st, 201, "{r}");
    let (st, _, _) = post(
        &c,
        &s.url("/v1/logs"),
        json!({"job": "other", "status": "failed"}),
        &[],
    )
    .await;
    assert_eq!(st, 201);
    let mut stream = c.get(s.url(&format!("/v1/stream{attr}"))).send().await.unwrap();
    assert_eq!(stream.status().as_u16(), 200, "{attr}");
    assert_eq!(events(&mut stream, 1).await, [2], "{attr}");
    drop(stream);
    s.stop().await;
}

/// Sends the head of a POST whose body never fully arrives.
async fn stuck_post(addr: std::net::SocketAddr, path: &str) -> TcpStream {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"job\":");
    conn.write_all(head.as_bytes()).await.unwrap();
    conn
}

async fn response_head(conn: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).to_string()
}

#[tokio::test]
async fn a_slow_body_times_out_without_reaching_the_writer_and_overload_is_a_503() {
    // Long enough that the requests below are refused while the stuck one holds the slot,
    // on a loaded machine too.
    let s = Server::start(Config {
        body_timeout: Duration::from_secs(2),
        max_concurrent: 1,
        ..Config::default()
    })
    .await;
    let c = reqwest::Client::new();
    let mut slow = stuck_post(s.addr, "/v1/logs").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The one slot is taken by the stuck request: the next is refused at once.
    let resp = c.get(s.url("/v1/count")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(kind(&resp.json().await.unwrap()), "overloaded");
    // A write turned away by the limit is a counted failure (nothing acknowledged).
    let (st, r, h) = post(
        &c,
        &s.url("/v1/logs"),
        json!({"job": "a", "status": "succeeded"}),
        &[],
    )
    .await;
    assert_eq!((st, kind(&r)), (503, "overloaded"), "{r}");
    assert_eq!(h["retry-after"], "1");
    let metrics = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("synclog_append_failures_total{kind=\"overloaded\"} 1\n"),
        "{metrics}"
    );
    let head = response_head(&mut slow).await;
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(head.contains("\"timeout\""), "{head}");
    // The slot is free again, and nothing was written.
    let (st, r, _) = get(&c, &s.url("/v1/count")).await;
    assert_eq!((st, r["count"].clone()), (200, json!(0)));
    s.stop().await;

    let s = Server::start(Config {
        max_body_bytes: 1024,
        ..Config::default()
    })
    .await;
    let big = json!({"job": "a", "status": "succeeded", "message": "x".repeat(2000)});
    let (st, r, _) = post(&c, &s.url("/v1/logs"), big, &[]).await;
    assert_eq!((st, kind(&r)), (413, "too_large"), "{r}");
    assert_eq!(s.count().await, 0);
    s.stop().await;
}

/// Reads until the server closes the connection (10 s at most); what it sent.
async fn read_to_close(conn: &mut TcpStream) -> String {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut got))
        .await
        .expect("the server closes the connection")
        .unwrap();
    String::from_utf8_lossy(&got).to_string()
}

#[tokio::test]
async fn a_half_sent_request_head_or_an_idle_connection_is_closed_after_the_header_timeout() {
    let s = Server::start(Config {
        header_timeout: Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    // Part of a request line and one header, then nothing (slowloris).
    let mut half = TcpStream::connect(s.addr).await.unwrap();
    half.write_all(b"POST /v1/logs HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        .await
        .unwrap();
    // Connected, never a byte.
    let mut idle = TcpStream::connect(s.addr).await.unwrap();
    let started = std::time::Instant::now();
    read_to_close(&mut half).await;
    read_to_close(&mut idle).await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    // A client that sends its request in time is served as before.
    let c = reqwest::Client::new();
    let (st, r, _) = post(
        &c,
        &s.url("/v1/logs"),
        json!({"job": "a", "status": "succeeded"}),
        &[],
    )
    .await;
    assert_eq!(st, 201, "{r}");
    assert_eq!(s.count().await, 1);
    s.stop().await;
}

#[tokio::test]
async fn a_connection_beyond_the_limit_gets_a_503_with_retry_after_and_is_closed() {
    let s = Server::start(Config {
        max_connections: 2,
        ..Config::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(s.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(s.addr).await.unwrap();
    third
        .write_all(b"GET /v1/count HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1\r\n"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(kind(&body), "overloaded");
    // A held connection closed frees its place; the refusal was counted.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let c = reqwest::Client::new();
    let (st, r, _) = get(&c, &s.url("/v1/count")).await;
    assert_eq!((st, r["count"].clone()), (200, json!(0)));
    let metrics = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("synclog_refused_connections_total 1\n"),
        "{metrics}"
    );
    drop(held);
    s.stop().await;
}

#[tokio::test]
async fn shutdown_answers_the_append_in_flight_and_ends_streams() {
    let s = Server::open().await;
    let c = reqwest::Client::new();
    let mut stream = c.get(s.url("/v1/stream")).send().await.unwrap();
    let mut conn = stuck_post(s.addr, "/v1/logs").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let Server {
        stop,
        task,
        guarded,
        _dir,
        ..
    } = s;
    let _ = stop.unwrap().send(());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!task.is_finished(), "the server waits for the request in flight");
    // The rest of the body: the append completes and is answered.
    let rest = "\"late\",\"status\":\"succeeded\"}";
    let pad = 100 - "{\"job\":".len() - rest.len();
    conn.write_all(format!("{rest}{}", " ".repeat(pad)).as_bytes())
        .await
        .unwrap();
    let head = response_head(&mut conn).await;
    assert!(head.starts_with("HTTP/1.1 201"), "{head}");
    drop(conn);
    // The stream ends rather than holding the shutdown.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
        .await
        .unwrap()
    {}
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(guarded.count(&Default::default()).await.unwrap(), 1);
    guarded.close().await.unwrap();
}

#[tokio::test]
async fn health_turns_degraded_when_the_background_verify_finds_a_damaged_copy() {
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("b.jsonl");
    let g = open_pair(dir.path()).await;
    let logs = (0..3)
        .map(|i| synclog_core::NewLog::new("a", synclog_core::Status::Succeeded).message(format!("log {i}")))
        .collect();
    g.append_batch(logs, synclog_core::Durability::PowerLoss)
        .await
        .unwrap();
    g.close().await.unwrap();
    // The backup's copy of log 2 changes under the store: its checksum no longer fits.
    let text = std::fs::read_to_string(&b).unwrap();
    assert!(text.contains("\"log 1\""));
    std::fs::write(&b, text.replace("\"log 1\"", "\"log X\"")).unwrap();

    let config = Config {
        verify_every: Some(Duration::from_secs(3600)),
        ..Config::default()
    };
    let s = Server::serve(open_pair(dir.path()).await, config).await;
    let base = s.base.clone();
    let c = reqwest::Client::new();
    let mut health = Value::Null;
    for _ in 0..200 {
        health = c
            .get(format!("{base}/v1/health"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if health["last_verify"].is_object() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(health["last_verify"]["clean"], false, "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["copies"][0]["state"], "ok", "{health}");
    assert_eq!(health["copies"][1]["state"], "damaged", "{health}");
    let text = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.lines().any(|l| l == "synclog_last_verify_ok 0"), "{text}");
    s.stop().await;
}

#[tokio::test]
async fn health_metrics_and_the_openapi_document_describe_the_store() {
    let s = Server::open().await;
    let c = reqwest::Client::new();
    post(&c, &s.url("/v1/runs"), json!({"job": "crm", "run": "r"}), &[]).await;
    post(&c, &s.url("/v1/runs/r/finish"), json!({"status": "failed"}), &[]).await;
    let (st, r, _) = get(&c, &s.url("/v1/health")).await;
    assert_eq!(st, 200);
    assert_eq!(r["status"], "ok");
    assert_eq!(r["last_id"], 2);
    assert_eq!(r["copies"][0]["copy"], "primary");
    assert_eq!(r["copies"][1]["state"], "ok");

    let text = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "synclog_appended_logs_total{outcome=\"stored\"} 2",
        "synclog_append_commit_seconds_count 2",
        "synclog_job_last_status{job=\"crm\",status=\"failed\"} 1",
        "synclog_job_consecutive_failures{job=\"crm\"} 1",
        "synclog_pair_restored_records_total 0",
        "synclog_pair_logs_total 2",
        "synclog_receipts_one_copy_total 0",
        // Each request was a group of one log: the histograms split the totals per group.
        "synclog_pair_group_logs_count 2",
        "synclog_pair_group_logs_sum 2.0",
        "synclog_pair_group_logs_bucket{le=\"1.0\"} 2",
        "synclog_pair_group_commit_seconds_count 2",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    let busy: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("synclog_pair_commit_seconds_total "))
        .unwrap_or_else(|| panic!("no pair_commit_seconds in\n{text}"))
        .parse()
        .unwrap();
    assert!(busy > 0.0 && busy < 60.0, "{busy} s committing two groups");
    let per_group: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("synclog_pair_group_commit_seconds_sum "))
        .unwrap_or_else(|| panic!("no pair_group_commit_seconds in\n{text}"))
        .parse()
        .unwrap();
    assert!(
        (per_group - busy).abs() < 1e-6,
        "{per_group} s by group, {busy} s in all"
    );
    assert!(text.ends_with("# EOF\n"));

    let (st, doc, _) = get(&c, &s.url("/v1/openapi.json")).await;
    assert_eq!(st, 200);
    for path in [
        "/v1/logs",
        "/v1/logs/{id}",
        "/v1/runs",
        "/v1/runs/{key}",
        "/v1/runs/{key}/finish",
        "/v1/runs/{key}/abandon",
        "/v1/summary",
        "/v1/count",
        "/v1/stream",
        "/v1/health",
        "/metrics",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
    let params: Vec<&str> = doc["paths"]["/v1/logs"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in synclog_server::api::params::FILTER_KEYS
        .iter()
        .chain(synclog_server::api::params::PAGE_KEYS)
    {
        assert!(
            params.contains(p),
            "the document names every parameter the code takes: {p}"
        );
    }
    assert!(doc["components"]["schemas"]["LogIn"]["properties"]["idempotency_key"].is_object());
    // Every status the layers in front of a handler answer with is documented too: auth
    // (401, 403) everywhere, the request limit (503) on what it guards, the body's checks
    // (408, 413, 415) on every write.
    let writes = ["400", "401", "403", "408", "409", "413", "415", "503"];
    let reads = ["400", "401", "403", "503"];
    let probes = ["401", "403"];
    for (path, method, want) in [
        ("/v1/logs", "post", &writes[..]),
        ("/v1/runs", "post", &writes[..]),
        (
            "/v1/runs/{key}/finish",
            "post",
            &[&writes[..], &["404"]].concat()[..],
        ),
        (
            "/v1/runs/{key}/abandon",
            "post",
            &[&writes[..], &["200", "404"]].concat()[..],
        ),
        ("/v1/logs", "get", &reads[..]),
        ("/v1/logs/{id}", "get", &[&reads[..], &["404"]].concat()[..]),
        ("/v1/runs", "get", &reads[..]),
        ("/v1/runs/{key}", "get", &[&reads[..], &["404"]].concat()[..]),
        ("/v1/summary", "get", &reads[..]),
        ("/v1/count", "get", &reads[..]),
        ("/v1/stream", "get", &reads[..]),
        ("/v1/health", "get", &probes[..]),
        ("/metrics", "get", &probes[..]),
    ] {
        let responses = &doc["paths"][path][method]["responses"];
        for status in want {
            assert!(
                responses[*status].is_object(),
                "{method} {path} documents {status}: {responses}"
            );
        }
    }

    // The verify loop's outcome shows in health and metrics.
    let app = synclog_server::App::new(
        s.guarded.clone(),
        Some(s.guarded.clone()),
        Config::default(),
        tokio::sync::watch::channel(false).1,
    );
    assert!(app.verify_now().await.clean);
    s.stop().await;
}

/// What a hunt through the API found, each refused at once and writing nothing: a query
/// string on an endpoint that takes none (it was ignored, and the append went on), a
/// number that would be stored rounded, a declared length over the limit (it waited for
/// the body timeout, then said 408), a leap second, and a stream resumed after an id the
/// store never handed out (it skipped every new log). Health and metrics answer while
/// the request limit is taken.
#[tokio::test]
async fn requests_that_would_be_misread_are_refused_at_once_and_probes_answer_when_busy() {
    let s = Server::start(Config {
        max_body_bytes: 1024,
        max_concurrent: 1,
        body_timeout: Duration::from_secs(2),
        ..Config::default()
    })
    .await;
    let c = reqwest::Client::new();
    let log = json!({"job": "a", "status": "succeeded"});
    let (st, r, _) = post(&c, &s.url("/v1/logs?dry_run=true"), log.clone(), &[]).await;
    assert_eq!((st, kind(&r)), (400, "invalid_input"), "{r}");
    let (st, r, _) = post(&c, &s.url("/v1/runs?x=1"), json!({"job": "a"}), &[]).await;
    assert_eq!((st, kind(&r)), (400, "invalid_input"), "{r}");
    let rounded = json!({"job": "a", "status": "succeeded"})
        .to_string()
        .replace('}', r#","attrs":{"n":12345678901234567890123}}"#);
    let resp = c
        .post(s.url("/v1/logs"))
        .header("content-type", "application/json")
        .body(rounded)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let r: Value = resp.json().await.unwrap();
    assert!(r["error"]["message"].as_str().unwrap().contains("quote"), "{r}");
    let twice = c
        .post(s.url("/v1/logs"))
        .header("content-type", "application/json")
        .body(r#"{"job":"a","status":"succeeded","attrs":{"k":1,"k":2}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status().as_u16(), 400);
    let r: Value = twice.json().await.unwrap();
    assert!(
        r["error"]["message"].as_str().unwrap().contains("given twice"),
        "{r}"
    );
    // A mistake in a log names its field (an untagged body said only "did not match any
    // variant").
    for (body, named) in [
        (json!({"job": "a", "status": "bogus"}), "bogus"),
        (json!({"job": "a", "status": "succeeded", "foo": 1}), "foo"),
        (
            json!([{"job": "a", "status": "succeeded", "items_seen": -1}]),
            "-1",
        ),
    ] {
        let (st, r, _) = post(&c, &s.url("/v1/logs"), body.clone(), &[]).await;
        assert_eq!((st, kind(&r)), (400, "invalid_input"), "{body}: {r}");
        let message = r["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(named) && !message.contains("variant of untagged"),
            "{body}: {message}"
        );
    }
    let leap = json!({"job": "a", "status": "succeeded", "started_at": "2016-12-31T23:59:60Z"});
    let (st, r, _) = post(&c, &s.url("/v1/logs"), leap, &[]).await;
    assert_eq!((st, kind(&r)), (400, "invalid_input"), "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("leap second"),
        "{r}"
    );
    assert_eq!(s.count().await, 0);

    // A declared length over the limit: 413 at once, without sending the body.
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    let head = "POST /v1/logs HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 999999999\r\n\r\n";
    conn.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let answer = response_head(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    drop(conn);

    // The one request slot taken by a stuck body: health and metrics still answer.
    let (st, r, _) = post(&c, &s.url("/v1/logs"), log.clone(), &[]).await;
    assert_eq!(st, 201, "{r}");
    let stuck = stuck_post(s.addr, "/v1/logs").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (st, _, _) = get(&c, &s.url("/v1/count")).await;
    assert_eq!(st, 503);
    let (st, r, _) = get(&c, &s.url("/v1/health")).await;
    assert_eq!(st, 200, "{r}");
    let metrics = c.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status().as_u16(), 200);
    // Every refused write is counted by its kind, not only the store's own failures.
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("synclog_append_failures_total{kind=\"invalid_input\"} 8"),
        "{text}"
    );
    assert!(
        text.contains("synclog_append_failures_total{kind=\"too_large\"} 1"),
        "{text}"
    );
    // A monitor's cache-buster on a probe is harmless: answered.
    let (st, r, _) = get(&c, &s.url("/v1/health?_=1733300000")).await;
    assert_eq!(st, 200, "{r}");

    // Resuming after an id never handed out (the newest is 1) is refused.
    let resp = c
        .get(s.url("/v1/stream"))
        .header("last-event-id", "99999999")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    drop(stuck);
    s.stop().await;
}

/// The `id` of each item of `page[key]` (`logs`, `records`).
fn ids_of(page: &Value, key: &str) -> Vec<u64> {
    page[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} array in {page}"))
        .iter()
        .map(|l| l["id"].as_u64().unwrap())
        .collect()
}

/// A query string with every value percent-encoded (RFC 3339 times hold `:` and may
/// hold `+`).
fn query(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[tokio::test]
async fn one_log_by_id_is_the_record_its_append_receipt_named() {
    let s = Server::open().await;
    let c = reqwest::Client::new();
    let batch = json!([
        {"job": "orders", "status": "succeeded", "started_at": "2026-12-01T10:00:00Z", "items_seen": 5, "attrs": {"env": "prod"}},
        {"job": "crm", "status": "failed", "started_at": "2026-12-01T11:00:00Z", "message": "timeout"},
        {"job": "orders", "status": "partial", "started_at": "2026-12-01T12:00:00Z", "finished_at": "2026-12-01T12:30:00Z"},
    ]);
    let (st, receipt, _) = post(&c, &s.url("/v1/logs"), batch, &[("Idempotency-Key", "by-id")]).await;
    assert_eq!(st, 201, "{receipt}");
    let records = receipt["records"].as_array().unwrap();
    assert_eq!(ids_of(&receipt, "records"), [1, 2, 3]);
    for (sent, want) in
        records
            .iter()
            .zip([("orders", "succeeded"), ("crm", "failed"), ("orders", "partial")])
    {
        let id = sent["id"].as_u64().unwrap();
        let (st, got, h) = get(&c, &s.url(&format!("/v1/logs/{id}"))).await;
        assert_eq!(st, 200, "log {id}: {got}");
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(got["id"], id);
        assert_eq!(
            (got["job"].as_str(), got["status"].as_str()),
            (Some(want.0), Some(want.1))
        );
        let checksum = got["checksum"].as_str().unwrap();
        // CRC-32C as eight lowercase hex digits.
        assert!(
            checksum.len() == 8 && checksum.chars().all(|c| c.is_ascii_hexdigit()),
            "{got}"
        );
        assert_eq!(got["checksum"], sent["checksum"], "log {id}");
        // Everything else the receipt said, field for field.
        assert_eq!(&got, sent, "log {id}");
    }
    // The store's own record agrees with what the endpoint answered.
    let stored = s
        .guarded
        .get(synclog_core::LogId::new(2).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(records[1]["checksum"], stored.checksum.to_string());
    // Past the newest id: a JSON 404, not an empty 200.
    let (st, r, _) = get(&c, &s.url("/v1/logs/4")).await;
    assert_eq!((st, kind(&r)), (404, "not_found"), "{r}");
    s.stop().await;
}

#[tokio::test]
async fn log_filters_on_finish_time_record_time_and_run_narrow_to_exactly_the_matching_ids() {
    let s = Server::open().await;
    let c = reqwest::Client::new();
    let log = |status: &str, finished: Option<&str>, run: Option<&str>| {
        let mut l = json!({"job": "sync", "status": status, "started_at": "2025-12-31T00:00:00Z"});
        if let Some(f) = finished {
            l["finished_at"] = json!(f);
        }
        if let Some(r) = run {
            l["run"] = json!(r);
        }
        l
    };
    let first = json!([
        log("started", None, Some("r1")),
        log("succeeded", Some("2026-01-01T10:00:00Z"), None),
        log("started", None, Some("r2")),
        log("failed", Some("2026-01-03T10:00:00Z"), None),
    ]);
    let (st, a, _) = post(&c, &s.url("/v1/logs"), first, &[]).await;
    assert_eq!(st, 201, "{a}");
    assert_eq!(ids_of(&a, "records"), [1, 2, 3, 4]);
    // A later commit, so that its records are recorded later than the first four.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = json!([
        log("succeeded", Some("2026-01-02T10:00:00Z"), Some("r1")),
        log("progress", None, Some("r2")),
        log("succeeded", Some("2026-01-02T12:00:00Z"), None),
    ]);
    let (st, b, _) = post(&c, &s.url("/v1/logs"), second, &[]).await;
    assert_eq!(st, 201, "{b}");
    assert_eq!(ids_of(&b, "records"), [5, 6, 7]);
    let at = |v: &Value, i: usize| {
        v["records"][i]["recorded_at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    };
    assert!(at(&a, 3) < at(&b, 0), "{a} then {b}");
    let second_at = b["records"][0]["recorded_at"].as_str().unwrap().to_string();
    let first_at = a["records"][0]["recorded_at"].as_str().unwrap().to_string();

    for (pairs, want) in [
        // `finished_from` is inclusive, `finished_until` exclusive; a log without a
        // finish time never matches a finish range.
        (vec![("finished_from", "2026-01-02T10:00:00Z")], vec![4, 5, 7]),
        (vec![("finished_until", "2026-01-02T10:00:00Z")], vec![2]),
        (
            vec![("finished_from", "2026-01-02"), ("finished_until", "2026-01-03")],
            vec![5, 7],
        ),
        (vec![("recorded_from", second_at.as_str())], vec![5, 6, 7]),
        (vec![("recorded_until", second_at.as_str())], vec![1, 2, 3, 4]),
        (
            vec![
                ("recorded_from", first_at.as_str()),
                ("recorded_until", second_at.as_str()),
            ],
            vec![1, 2, 3, 4],
        ),
        (vec![("run", "r1")], vec![1, 5]),
        (vec![("run", "r2")], vec![3, 6]),
        (vec![("run", "nope")], vec![]),
        // Conditions combine (AND).
        (vec![("run", "r1"), ("finished_from", "2026-01-02")], vec![5]),
        (
            vec![("run", "r2"), ("recorded_from", second_at.as_str())],
            vec![6],
        ),
        (
            vec![("run", "r1"), ("recorded_until", second_at.as_str())],
            vec![1],
        ),
    ] {
        let q = query(&pairs);
        let (st, r, _) = get(&c, &s.url(&format!("/v1/logs?{q}"))).await;
        assert_eq!(st, 200, "{q}: {r}");
        assert_eq!(ids_of(&r, "logs"), want, "{q}");
        // The count endpoint takes the same filters.
        let (_, n, _) = get(&c, &s.url(&format!("/v1/count?{q}"))).await;
        assert_eq!(n["count"], want.len(), "count?{q}");
    }
    // A range given backwards is refused, not read as empty.
    let q = query(&[("finished_from", "2026-01-03"), ("finished_until", "2026-01-02")]);
    let (st, r, _) = get(&c, &s.url(&format!("/v1/logs?{q}"))).await;
    assert_eq!((st, kind(&r)), (400, "invalid_input"), "{r}");
    s.stop().await;
}

#[tokio::test]
async fn run_pages_follow_the_next_link_to_every_run_once_and_the_last_page_has_none() {
    let s = Server::open().await;
    let c = reqwest::Client::new();
    // Seven runs started (ids 1..=7), then the first four finished (ids 8..=11): a run's
    // records are not contiguous, and a page's cursor is its last run's first record.
    for i in 0..7 {
        let (st, r, _) = post(
            &c,
            &s.url("/v1/runs"),
            json!({"job": "sync", "run": format!("r{i}")}),
            &[],
        )
        .await;
        assert_eq!((st, r["record"]["id"].clone()), (201, json!(i + 1)), "{r}");
    }
    for i in 0..4 {
        let (st, r, _) = post(
            &c,
            &s.url(&format!("/v1/runs/r{i}/finish")),
            json!({"status": "succeeded"}),
            &[],
        )
        .await;
        assert_eq!(st, 201, "{r}");
    }
    let all: Vec<String> = (0..7).map(|i| format!("r{i}")).collect();
    for (q, want, cursors) in [
        ("limit=3", all.clone(), ["after=3", "after=6"]),
        (
            "limit=3&order=desc",
            all.iter().rev().cloned().collect(),
            ["before=5", "before=2"],
        ),
    ] {
        let mut url = s.url(&format!("/v1/runs?{q}"));
        let mut seen: Vec<String> = Vec::new();
        let mut links = Vec::new();
        let mut pages = 0;
        loop {
            pages += 1;
            assert!(pages <= 5, "{q}: the links go round: {links:?}");
            let (st, r, h) = get(&c, &url).await;
            assert_eq!(st, 200, "{url}: {r}");
            let runs = r["runs"].as_array().unwrap();
            for run in runs {
                let key = run["key"].as_str().unwrap().to_string();
                let n: usize = key[1..].parse().unwrap();
                // Whole rows: a finished run shows its terminal status.
                let status = if n < 4 { "succeeded" } else { "started" };
                assert_eq!(run["status"], status, "{run}");
                assert_eq!(run["record_ids"][0], n + 1, "{run}");
                seen.push(key);
            }
            let Some(link) = h.get("link") else {
                assert!(r["next"].is_null(), "no link, no next: {r}");
                assert!(runs.len() < 3, "the last page is not full: {r}");
                break;
            };
            let link = link.to_str().unwrap().to_string();
            assert_eq!(runs.len(), 3, "only a full page links on: {link}");
            let target = link
                .strip_prefix('<')
                .and_then(|l| l.strip_suffix(">; rel=\"next\""))
                .unwrap_or_else(|| panic!("{link}"));
            let next_query = target
                .strip_prefix("/v1/runs?")
                .unwrap_or_else(|| panic!("{link}"));
            assert_eq!(Some(next_query), r["next"].as_str(), "{r}");
            links.push(next_query.to_string());
            url = s.url(target);
        }
        assert_eq!(seen, want, "{q}: every run exactly once, in order");
        assert_eq!(pages, 3, "{q}");
        assert_eq!(links.len(), 2);
        for (link, cursor) in links.iter().zip(cursors) {
            assert!(link.ends_with(cursor), "{link} moves the cursor to {cursor}");
            assert!(link.starts_with("limit=3"), "{link} keeps the query");
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn a_stream_beyond_the_stream_limit_gets_a_503_with_retry_after_and_a_json_error() {
    let s = Server::start(Config {
        max_streams: 2,
        ..Config::default()
    })
    .await;
    let c = reqwest::Client::new();
    let mut open = Vec::new();
    for _ in 0..2 {
        let resp = c.get(s.url("/v1/stream")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        open.push(resp);
    }
    let resp = c.get(s.url("/v1/stream?job=a")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers()["retry-after"], "5");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(kind(&body), "overloaded", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("streams"),
        "{body}"
    );
    // The stream limit is not the request limit: other requests are served meanwhile.
    let (st, r, _) = get(&c, &s.url("/v1/count")).await;
    assert_eq!((st, r["count"].clone()), (200, json!(0)));
    // The streams still open are unharmed: they get the next log.
    let (st, _, _) = post(
        &c,
        &s.url("/v1/logs"),
        json!({"job": "a", "status": "succeeded"}),
        &[],
    )
    .await;
    assert_eq!(st, 201);
    for resp in &mut open {
        assert_eq!(events(resp, 1).await, [1]);
    }
    // A stream closed frees its place (the server notices when it next writes to it).
    drop(open.pop());
    let mut freed = None;
    for _ in 0..100 {
        post(
            &c,
            &s.url("/v1/logs"),
            json!({"job": "b", "status": "succeeded"}),
            &[],
        )
        .await;
        let resp = c.get(s.url("/v1/stream")).send().await.unwrap();
        if resp.status().as_u16() == 200 {
            freed = Some(resp);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(freed.is_some(), "a closed stream's place is given back");
    drop(freed);
    drop(open);
    s.stop().await;
}

#[tokio::test]
async fn metrics_give_the_age_of_a_jobs_last_success_and_nothing_for_a_job_that_never_succeeded() {
    let s = Server::open().await;
    let c = reqwest::Client::new();
    // `good` succeeded once, then failed; `never` only failed; `running` only started.
    post(&c, &s.url("/v1/runs"), json!({"job": "good", "run": "g1"}), &[]).await;
    let (st, _, _) = post(
        &c,
        &s.url("/v1/runs/g1/finish"),
        json!({"status": "succeeded"}),
        &[],
    )
    .await;
    assert_eq!(st, 201);
    for (job, status) in [("good", "failed"), ("never", "failed"), ("never", "failed")] {
        let (st, _, _) = post(&c, &s.url("/v1/logs"), json!({"job": job, "status": status}), &[]).await;
        assert_eq!(st, 201);
    }
    post(
        &c,
        &s.url("/v1/runs"),
        json!({"job": "running", "run": "x1"}),
        &[],
    )
    .await;

    let scrape = || async {
        c.get(s.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    const AGE: &str = "synclog_job_last_success_age_seconds";
    let age_of = |text: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{AGE}{{job=\"good\"}} ")))
            .unwrap_or_else(|| panic!("no {AGE} for job good in\n{text}"))
            .parse()
            .unwrap()
    };
    let text = scrape().await;
    assert!(text.lines().any(|l| l == format!("# TYPE {AGE} gauge")), "{text}");
    let first = age_of(&text);
    assert!(
        (0.0..300.0).contains(&first),
        "{first} s since a success just now"
    );
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{AGE}{{")))
        .collect();
    assert_eq!(series.len(), 1, "one series, for `good` only: {series:?}");
    // The jobs without a success are known to the metrics, just without an age.
    for line in [
        "synclog_job_consecutive_failures{job=\"good\"} 1",
        "synclog_job_consecutive_failures{job=\"never\"} 2",
        "synclog_job_consecutive_failures{job=\"running\"} 0",
        "synclog_job_last_status{job=\"good\",status=\"failed\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    // It is an age: it grows between scrapes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let later = age_of(&scrape().await);
    assert!(later >= first + 0.15, "{first} s, then {later} s");
    s.stop().await;
}

#[tokio::test]
async fn health_reports_a_copy_behind_while_its_writes_fail_and_ok_once_it_caught_up() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let primary: Arc<dyn LogStore> =
        Arc::new(synclog_sqlite::SqliteStore::open(dir.path().join("p.db")).unwrap());
    let backup = Arc::new(synclog_conformance::fault::Unplugged::new(Arc::new(
        synclog_json::JsonStore::open(dir.path().join("b.jsonl")).unwrap(),
    )));
    let backup_store: Arc<dyn LogStore> = backup.clone();
    // No retry while idle (`retry_pending_after`), so the copy stays behind until an
    // append comes; the library's test of the idle retry is in tests/guarded.rs.
    let options = synclog_core::guarded::GuardedOptions {
        retry_pending_after: None,
        ..Default::default()
    };
    let guarded = Arc::new(
        synclog_core::guarded::Guarded::open(primary, backup_store, options)
            .await
            .unwrap(),
    );
    let s = Server::serve(guarded, Config::default()).await;
    let c = reqwest::Client::new();
    let append = |message: &'static str| {
        let (c, url) = (c.clone(), s.url("/v1/logs"));
        async move {
            post(
                &c,
                &url,
                json!({"job": "orders", "status": "succeeded", "message": message}),
                &[],
            )
            .await
        }
    };
    let (st, r, _) = append("both").await;
    assert_eq!(
        (st, r["durable_in"].clone()),
        (201, json!({"primary": true, "backup": true})),
        "{r}"
    );
    let (_, h, _) = get(&c, &s.url("/v1/health")).await;
    assert_eq!(h["status"], "ok", "{h}");

    // The backup's writes fail: the append is answered from the primary and waits for it.
    backup.set_down(true);
    let (st, r, _) = append("primary only").await;
    assert_eq!(st, 201, "{r}");
    assert_eq!(r["records"][0]["id"], 2, "{r}");
    assert_eq!(r["durable_in"], json!({"primary": true, "backup": false}), "{r}");
    let (st, h, _) = get(&c, &s.url("/v1/health")).await;
    assert_eq!(st, 200, "a copy behind does not stop the store serving: {h}");
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["last_id"], 2, "{h}");
    assert_eq!(
        (
            h["copies"][0]["copy"].as_str(),
            h["copies"][0]["state"].as_str(),
            h["copies"][0]["pending"].as_u64()
        ),
        (Some("primary"), Some("ok"), Some(0)),
        "{h}"
    );
    assert_eq!(
        (
            h["copies"][1]["copy"].as_str(),
            h["copies"][1]["state"].as_str(),
            h["copies"][1]["pending"].as_u64()
        ),
        (Some("backup"), Some("behind"), Some(1)),
        "{h}"
    );
    assert_eq!(h["copies"][1]["failures"], 1, "{h}");
    let text = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.lines().any(|l| l == "synclog_pair_pending_backup 1"),
        "{text}"
    );

    // Its disk is back: with no idle retry, nothing retries until the next append, which
    // carries the record over; then the copy is ok again and holds every record.
    backup.set_down(false);
    let (_, h, _) = get(&c, &s.url("/v1/health")).await;
    assert_eq!(h["copies"][1]["state"], "behind", "{h}");
    let (st, r, _) = append("after").await;
    assert_eq!(
        (st, r["durable_in"].clone()),
        (201, json!({"primary": true, "backup": true})),
        "{r}"
    );
    let (_, h, _) = get(&c, &s.url("/v1/health")).await;
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(
        (
            h["copies"][1]["state"].as_str(),
            h["copies"][1]["pending"].as_u64()
        ),
        (Some("ok"), Some(0)),
        "{h}"
    );
    let held: Vec<u64> = backup
        .inner()
        .scan(&Default::default())
        .await
        .unwrap()
        .iter()
        .map(|r| r.id.get())
        .collect();
    assert_eq!(held, [1, 2, 3]);
    s.stop().await;
}

/// The dashboard's job tiles say what an operator looks for, per job: the last status, its
/// age, the failures in a row (or the last success, or none yet), and a chart of today's
/// ended and failed runs; its runs table pages by the "Older runs" link, every run once.
#[tokio::test]
async fn the_dashboard_tiles_show_status_failures_and_a_chart_and_its_runs_page_by_older_runs() {
    let s = Server::open().await;
    let c = reqwest::Client::new();
    // The chart's bars are UTC days: runs seeded before midnight and drawn after it are
    // on the day before, so the two days' bars are added up.
    let first_day = chrono::Utc::now().date_naive();
    let run = |job: &str, key: &str| json!({"job": job, "run": key});
    for (job, key, end) in [
        ("good", "g1", Some("succeeded")),
        ("bad", "b1", Some("failed")),
        ("bad", "b2", Some("failed")),
        ("new", "n1", None),
        ("good", "g2", Some("succeeded")),
    ] {
        let (st, r, _) = post(&c, &s.url("/v1/runs"), run(job, key), &[]).await;
        assert_eq!(st, 201, "{r}");
        if let Some(status) = end {
            let (st, r, _) = post(
                &c,
                &s.url(&format!("/v1/runs/{key}/finish")),
                json!({"status": status}),
                &[],
            )
            .await;
            assert_eq!(st, 201, "{r}");
        }
    }
    let page = |path: String| {
        let c = c.clone();
        let url = s.url(&path);
        async move {
            let resp = c.get(url).send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 200);
            resp.text().await.unwrap()
        }
    };
    let html = page("/".into()).await;
    let tile = |job: &str| -> String {
        let start = html
            .find(&format!("<div class=\"tile\" data-job=\"{job}\">"))
            .unwrap_or_else(|| panic!("no tile for {job}"));
        let rest = &html[start..];
        let end = rest.find("</svg>").expect("a chart in the tile");
        rest[..end].to_string()
    };
    let today = chrono::Utc::now().date_naive();
    let days = if first_day == today {
        vec![today]
    } else {
        vec![first_day, today]
    };
    // Runs and failures the chart's bars of those days give.
    let ended = |tile: &str| -> (u64, u64) {
        let mut sum = (0, 0);
        for day in &days {
            let at = tile
                .find(&format!("{day}: "))
                .unwrap_or_else(|| panic!("no bar for {day}: {tile}"));
            let title = &tile[at + 12..];
            let title = &title[..title.find('<').unwrap()];
            let (runs, failed) = title.split_once(" runs, ").expect(title);
            sum.0 += runs.parse::<u64>().expect(title);
            sum.1 += failed.trim_end_matches(" failed").parse::<u64>().expect(title);
        }
        sum
    };
    let good = tile("good");
    assert!(good.contains("badge s-succeeded"), "{good}");
    assert!(good.contains("last success ") && good.contains("s ago"), "{good}");
    assert_eq!(ended(&good), (2, 0), "{good}");
    assert!(!good.contains("#d64545"), "no failure bar: {good}");
    let bad = tile("bad");
    assert!(bad.contains("badge s-failed"), "{bad}");
    assert!(bad.contains("2 failed in a row"), "{bad}");
    assert_eq!(ended(&bad), (2, 2), "{bad}");
    assert!(bad.contains("#d64545"), "a failure bar: {bad}");
    let new = tile("new");
    assert!(
        new.contains("badge s-started") && new.contains("no success yet"),
        "{new}"
    );
    assert_eq!(ended(&new), (0, 0), "{new}");
    // Fourteen days a chart, one bar (and its title) each.
    assert_eq!(good.matches("<title>").count(), 14, "{good}");

    // The runs table, two a page, newest first, by the "Older runs" link.
    let runs_of = |html: &str| -> Vec<String> {
        let table = &html[html.find("id=\"runs-body\"").unwrap()..];
        let table = &table[..table.find("</tbody>").unwrap()];
        table
            .split("data-run=\"")
            .skip(1)
            .map(|s| s[..s.find('"').unwrap()].to_string())
            .collect()
    };
    let next_of = |html: &str| -> Option<String> {
        let at = html.find("<a id=\"next\" href=\"")? + "<a id=\"next\" href=\"".len();
        Some(html[at..at + html[at..].find('"').unwrap()].replace("&amp;", "&"))
    };
    let (mut seen, mut path) = (Vec::new(), Some("/?limit=2".to_string()));
    let mut pages = 0;
    while let Some(p) = path {
        let html = page(p).await;
        let runs = runs_of(&html);
        assert!(runs.len() <= 2, "{runs:?}");
        seen.extend(runs);
        path = next_of(&html);
        pages += 1;
        assert!(pages <= 4, "the pages end");
    }
    assert_eq!(
        seen,
        ["g2", "n1", "b2", "b1", "g1"],
        "every run once, newest first"
    );
    s.stop().await;
}
