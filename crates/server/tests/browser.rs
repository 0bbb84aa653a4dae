//! The dashboard in a real browser: Debian's Chromium, headless, driven over the DevTools
//! protocol. Seeded runs are listed, a filter narrows them, and a log appended through the
//! API appears without a reload.
//!
//! Needs Chromium (`/usr/bin/chromium`, or the path in `SYNCLOG_CHROMIUM`); `.ci/run`
//! installs it. Without it the test prints a notice and passes, except under `CI`, where
//! a missing browser is a failure. With `SYNCLOG_SCREENSHOT=PATH` it saves a screenshot
//! of the dashboard (the one in README).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::Page;
use futures::StreamExt;
use serde_json::json;
use synclog_core::{LogStore, LogStoreExt, NewLog, Status};

mod common;
use common::{open_pair, Server};

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("SYNCLOG_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run the browser test: {} is missing (.ci/run installs chromium)",
        path.display()
    );
    eprintln!(
        "notice: skipping the browser test: no Chromium at {} (apt-get install chromium)",
        path.display()
    );
    None
}

/// Evaluates `js` until it gives `want`, for at most 15 s. An evaluation that fails (the
/// page is navigating) counts as not yet.
async fn wait_for(page: &Page, js: &str, want: serde_json::Value) -> serde_json::Value {
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let got: serde_json::Value = match page.evaluate(js).await {
            Ok(v) => v.into_value().unwrap_or(serde_json::Value::Null),
            Err(e) => json!(format!("not evaluated: {e}")),
        };
        if got == want || Instant::now() > end {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_lists_runs_filters_them_and_shows_new_logs_live() {
    let Some(chrome) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let guarded = open_pair(dir.path()).await;
    let strongest = guarded.capabilities().strongest_durability();
    // Seed: runs of three jobs, some failed, one stale.
    let mut orders_runs = 0;
    for i in 0..9u64 {
        let job = ["orders", "crm-contacts", "invoices"][(i % 3) as usize];
        let key = format!("{job}-{i}");
        let started = chrono::Utc::now() - chrono::Duration::minutes(90 - i as i64 * 5);
        guarded
            .start_run(
                NewLog::new(job, Status::Started).run(&key).started(started),
                strongest,
            )
            .await
            .unwrap();
        let status = if i % 4 == 3 {
            Status::Failed
        } else {
            Status::Succeeded
        };
        let end = NewLog::new(job, status)
            .counts(100 + i, 100, i)
            .message(if status == Status::Failed {
                "API returned 503"
            } else {
                ""
            });
        guarded.finish_run(&key, end, strongest).await.unwrap();
        if job == "orders" {
            orders_runs += 1;
        }
    }
    let old = chrono::Utc::now() - chrono::Duration::hours(30);
    guarded
        .start_run(
            NewLog::new("invoices", Status::Started)
                .run("invoices-stuck")
                .started(old),
            strongest,
        )
        .await
        .unwrap();

    let server = Server::serve(guarded.clone(), synclog_server::Config::default()).await;
    let base = server.base.clone();

    let profile = tempfile::tempdir().unwrap();
    let config = BrowserConfig::builder()
        .chrome_executable(chrome)
        .no_sandbox()
        .user_data_dir(profile.path())
        .window_size(1280, 1000)
        .viewport(None)
        .args([
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .build()
        .unwrap();
    let (mut browser, mut handler) = Browser::launch(config).await.expect("Chromium starts");
    let events = tokio::spawn(async move { while let Some(Ok(_)) = handler.next().await {} });

    let page = browser.new_page(format!("{base}/")).await.unwrap();
    // Every seeded run is listed (nine finished and the stuck one), the stale one flagged.
    assert_eq!(
        wait_for(
            &page,
            "document.querySelectorAll('#runs-body tr').length",
            json!(10)
        )
        .await,
        json!(10)
    );
    assert_eq!(
        wait_for(
            &page,
            "document.querySelectorAll('#runs-body tr.stale').length",
            json!(1)
        )
        .await,
        json!(1)
    );
    assert_eq!(
        wait_for(&page, "document.querySelectorAll('.tile').length", json!(3)).await,
        json!(3)
    );
    if let Some(path) = std::env::var_os("SYNCLOG_SCREENSHOT") {
        wait_for(
            &page,
            "document.getElementById('live-state').textContent",
            json!("live"),
        )
        .await;
        page.save_screenshot(
            ScreenshotParams::builder().full_page(true).build(),
            PathBuf::from(path),
        )
        .await
        .unwrap();
    }

    // The filter form narrows the table to one job.
    page.evaluate("document.querySelector('select[name=job]').value='orders'; document.querySelector('form.filters').submit(); 1")
        .await
        .unwrap();
    let want = json!(orders_runs);
    assert_eq!(
        wait_for(
            &page,
            "location.search.includes('job=orders') && document.querySelectorAll('#runs-body tr').length",
            want.clone()
        )
        .await,
        want
    );
    let jobs: serde_json::Value = page
        .evaluate("[...document.querySelectorAll('#runs-body tr td:nth-child(2)')].every(td => td.textContent === 'orders')")
        .await
        .unwrap()
        .into_value()
        .unwrap();
    assert_eq!(jobs, json!(true));

    // Live: a log appended through the API appears without a reload.
    assert_eq!(
        wait_for(
            &page,
            "document.getElementById('live-state').textContent",
            json!("live")
        )
        .await,
        json!("live")
    );
    page.evaluate("window.__still_here = 'yes'; 1").await.unwrap();
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{base}/v1/logs"))
        .json(&json!({"job": "orders", "status": "failed", "message": "appended while watching"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let id = resp.json::<serde_json::Value>().await.unwrap()["records"][0]["id"].clone();
    let row = format!("!!document.querySelector('#live-body tr[data-id=\"{id}\"]')");
    assert_eq!(
        wait_for(&page, &row, json!(true)).await,
        json!(true),
        "the new log shows up live"
    );
    let text: serde_json::Value = page
        .evaluate(format!(
            "document.querySelector('#live-body tr[data-id=\"{id}\"]').textContent"
        ))
        .await
        .unwrap()
        .into_value()
        .unwrap();
    assert!(
        text.as_str().unwrap().contains("appended while watching"),
        "{text}"
    );
    let same: serde_json::Value = page
        .evaluate("window.__still_here")
        .await
        .unwrap()
        .into_value()
        .unwrap();
    assert_eq!(same, json!("yes"), "no reload happened");

    // A log of another job does not reach the filtered page.
    let other = client
        .post(format!("{base}/v1/logs"))
        .json(&json!({"job": "crm-contacts", "status": "succeeded"}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 201);
    let last = client
        .post(format!("{base}/v1/logs"))
        .json(&json!({"job": "orders", "status": "succeeded"}))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["records"][0]["id"]
        .clone();
    let row = format!("!!document.querySelector('#live-body tr[data-id=\"{last}\"]')");
    assert_eq!(wait_for(&page, &row, json!(true)).await, json!(true));
    let ids: serde_json::Value = page
        .evaluate("[...document.querySelectorAll('#live-body tr')].map(tr => Number(tr.dataset.id))")
        .await
        .unwrap()
        .into_value()
        .unwrap();
    assert_eq!(
        ids,
        json!([last, id]),
        "only the filtered job's logs, newest first"
    );

    // A run's link opens its timeline: its records in order.
    page.evaluate("document.querySelector('#runs-body tr[data-run=\"orders-3\"] a').click(); 1")
        .await
        .unwrap();
    let timeline = "location.pathname === '/run' && [...document.querySelectorAll('#timeline tbody tr td:nth-child(3)')].map(td => td.textContent).join(',')";
    assert_eq!(
        wait_for(&page, timeline, json!("started,failed")).await,
        json!("started,failed")
    );

    // Every key reaches its run, even `..`, which a browser resolves out of a path (no
    // run starts under it now; one an earlier release started comes in by import).
    let id = guarded.high_water().await.unwrap().unwrap().next().unwrap();
    let legacy = synclog_core::LogRecord::seal(
        id,
        chrono::Utc::now(),
        NewLog::new("orders", Status::Started).run(".."),
    )
    .unwrap();
    guarded.import(vec![legacy], strongest).await.unwrap();
    page.goto(format!("{base}/?job=orders")).await.unwrap();
    wait_for(
        &page,
        "!!document.querySelector('#runs-body tr[data-run=\"..\"] a')",
        json!(true),
    )
    .await;
    page.evaluate("document.querySelector('#runs-body tr[data-run=\"..\"] a').click(); 1")
        .await
        .unwrap();
    let heading = "location.pathname === '/run' && document.querySelector('h2').textContent";
    assert_eq!(wait_for(&page, heading, json!("Run ..")).await, json!("Run .."));

    // A run started while the page is open joins the runs table at the top, linked to
    // its timeline, without a reload.
    page.goto(format!("{base}/?job=orders")).await.unwrap();
    wait_for(
        &page,
        "document.getElementById('live-state').textContent",
        json!("live"),
    )
    .await;
    page.evaluate("window.__still_here = 'again'; 1").await.unwrap();
    let resp = client
        .post(format!("{base}/v1/runs"))
        .json(&json!({"job": "orders", "run": "orders-live"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let first = "document.querySelector('#runs-body tr').dataset.run + ' ' + document.querySelector('#runs-body tr a').getAttribute('href') + ' ' + window.__still_here";
    assert_eq!(
        wait_for(&page, first, json!("orders-live /run?key=orders-live again")).await,
        json!("orders-live /run?key=orders-live again")
    );

    browser.close().await.unwrap();
    let _ = browser.wait().await;
    events.abort();
    server.stop().await;
}
