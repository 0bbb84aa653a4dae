//! `/v1/health` when a copy's file system fills up: the copy is `full`, the append that
//! could not reach it is still answered (from the other copy) and pending, and once room
//! comes back the copy catches up and health is `ok` again.
//!
//! The full file system is a 4 MiB tmpfs, which only root can mount: elsewhere the test
//! prints a notice and passes without running, unless `SYNCLOG_REQUIRE_FULL_DISK` is set
//! (CI sets it).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};
use synclog_core::guarded::{Guarded, GuardedOptions};
use synclog_core::LogStore;
use synclog_server::Config;

mod common;
use common::Server;

const REQUIRE_ENV: &str = "SYNCLOG_REQUIRE_FULL_DISK";

/// A tmpfs of `bytes` mounted at a new directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(bytes: u64) -> Result<Tmpfs, String> {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let target = std::ffi::CString::new(dir.path().as_os_str().as_bytes()).map_err(|e| e.to_string())?;
        let options = std::ffi::CString::new(format!("size={bytes}")).map_err(|e| e.to_string())?;
        // SAFETY: valid NUL-terminated strings; `options` is the tmpfs option string.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        match rc {
            0 => Ok(Tmpfs { dir }),
            _ => Err(format!(
                "mounting a tmpfs needs root: {}",
                std::io::Error::last_os_error()
            )),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        use std::os::unix::ffi::OsStrExt;
        if let Ok(target) = std::ffi::CString::new(self.dir.path().as_os_str().as_bytes()) {
            // SAFETY: a valid NUL-terminated path.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Writes zeros to `path` until the file system refuses more.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    let _ = f.sync_all();
}

async fn health(c: &reqwest::Client, s: &Server) -> Value {
    c.get(s.url("/v1/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn append(c: &reqwest::Client, s: &Server, message: &str) -> (u16, Value) {
    let log = json!({"job": "orders", "status": "succeeded", "started_at": "2026-12-01T10:00:00Z", "message": message});
    let resp = c.post(s.url("/v1/logs")).json(&log).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_backup_is_reported_full_its_appends_wait_and_it_catches_up_when_room_returns() {
    let tmpfs = match Tmpfs::mount(4 << 20) {
        Ok(t) => t,
        Err(why) => {
            assert!(
                std::env::var_os(REQUIRE_ENV).is_none(),
                "{why}; {REQUIRE_ENV} is set"
            );
            eprintln!("skipped: {why}");
            return;
        }
    };
    let disk = tempfile::tempdir().unwrap();
    let primary: Arc<dyn LogStore> =
        Arc::new(synclog_sqlite::SqliteStore::open(disk.path().join("p.db")).unwrap());
    let backup: Arc<dyn LogStore> =
        Arc::new(synclog_json::JsonStore::open(tmpfs.path().join("b.jsonl")).unwrap());
    let guarded = Arc::new(
        Guarded::open(primary, backup, GuardedOptions::default())
            .await
            .unwrap(),
    );
    let s = Server::serve(guarded, Config::default()).await;
    let c = reqwest::Client::new();

    let (code, _) = append(&c, &s, "before").await;
    assert_eq!(code, 201);
    let h = health(&c, &s).await;
    assert_eq!(h["status"], "ok", "{h}");

    let filler = tmpfs.path().join("filler");
    fill(&filler);
    let h = health(&c, &s).await;
    assert_eq!(h["copies"][1]["state"], "full", "{h}");
    assert_eq!(h["copies"][0]["state"], "ok", "{h}");
    assert_eq!(h["status"], "degraded", "{h}");

    // The backup cannot take it; the primary can: answered, and pending for the backup.
    let (code, body) = append(&c, &s, "x".repeat(8000).as_str()).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["records"][0]["id"], 2, "{body}");
    assert_eq!(
        body["durable_in"],
        json!({"primary": true, "backup": false}),
        "{body}"
    );
    let h = health(&c, &s).await;
    assert_eq!(h["copies"][1]["state"], "full", "{h}");
    assert_eq!(h["copies"][1]["pending"], 1, "{h}");
    assert!(h["copies"][1]["failures"].as_u64().unwrap() >= 1, "{h}");

    // Room again: the next append carries the pending record to the backup.
    std::fs::remove_file(&filler).unwrap();
    let (code, body) = append(&c, &s, "after").await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["records"][0]["id"], 3, "{body}");
    let h = health(&c, &s).await;
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["copies"][1]["pending"], 0, "{h}");
    let backup_ids: Vec<u64> = s
        .guarded
        .backup()
        .scan(&Default::default())
        .await
        .unwrap()
        .iter()
        .map(|r| r.id.get())
        .collect();
    assert_eq!(backup_ids, [1, 2, 3]);
    s.stop().await;
}
