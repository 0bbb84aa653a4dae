//! Stores written by the release before runs (committed fixtures, see
//! `tests/fixtures/release-9f44466/README.md`) open with this build: read-only commands
//! read them as they are, the first writer upgrades them in place, every record reads back
//! as it was (same id, fields and checksum), `verify` is clean, and runs and idempotency
//! keys work on them. A SIGKILL during the upgrade leaves a store that opens, old or new.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/release-9f44466");

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A fresh copy of fixture `name` (a folder of the fixtures) in a temporary directory.
fn fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path().join(name);
    copy_dir(&Path::new(FIXTURES).join(name), &at);
    (dir, at)
}

fn synclog(dir: &Path, store: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_synclog"))
        .current_dir(dir)
        .env_remove("SYNCLOG_STORE")
        .env_remove("SYNCLOG_BACKUP")
        .args(["--no-backup", "--store", store])
        .args(args)
        .output()
        .unwrap()
}

fn ok(dir: &Path, store: &str, args: &[&str]) -> String {
    let out = synclog(dir, store, args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn records(text: &str) -> Vec<serde_json::Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Reads, upgrades and uses the fixture store `store` in `dir` (see the module docs).
fn upgrades_in_place(dir: &Path, store: &str, expected: &Path) {
    let expected = records(&std::fs::read_to_string(expected).unwrap());
    let list = ["list", "--json", "--limit", "100000"];
    assert_eq!(records(&ok(dir, store, &list)), expected, "read as it is");
    // The first writer upgrades the store; a run and an idempotency key work on it.
    let run = ok(dir, store, &["start", "--job", "upgrade"]).trim().to_string();
    let finish = ["finish", run.as_str(), "--status", "succeeded", "--seen", "3"];
    let end = ok(dir, store, &finish);
    assert_eq!(
        ok(dir, store, &finish),
        end,
        "a repeated finish is the same record"
    );
    let key = [
        "append",
        "--job",
        "upgrade",
        "--status",
        "skipped",
        "--idempotency-key",
        "k",
    ];
    let keyed = ok(dir, store, &key);
    assert_eq!(ok(dir, store, &key), keyed, "a repeated key is the same record");
    let after = records(&ok(dir, store, &list));
    assert_eq!(
        &after[..expected.len()],
        &expected[..],
        "every old record as it was"
    );
    assert_eq!(after.len(), expected.len() + 3);
    let last_old = expected.last().unwrap()["id"].as_u64().unwrap();
    assert_eq!(
        after[expected.len()]["id"].as_u64(),
        Some(last_old + 1),
        "ids go on"
    );
    let runs = ok(dir, store, &["runs", "--json"]);
    let runs = records(&runs);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["key"], run.as_str());
    assert_eq!(runs[0]["status"], "succeeded");
    ok(dir, store, &["verify"]);
}

#[cfg(feature = "sqlite")]
#[test]
fn a_sqlite_store_of_the_previous_release_is_upgraded_in_place() {
    let (_tmp, at) = fixture("sqlite");
    let version = |p: &Path| -> i64 {
        let conn = rusqlite::Connection::open(p).unwrap();
        conn.pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    };
    assert_eq!(version(&at.join("synclog.db")), 1);
    upgrades_in_place(&at, "sqlite://synclog.db", &at.join("expected.jsonl"));
    assert_eq!(version(&at.join("synclog.db")), synclog::sqlite::SCHEMA_VERSION);
}

#[cfg(feature = "sled")]
#[test]
fn a_sled_store_of_the_previous_release_is_upgraded_in_place() {
    let (_tmp, at) = fixture("sled");
    upgrades_in_place(&at, "sled://synclog.sled", &at.join("expected.jsonl"));
}

/// Opens a copy of a fixture in a writer that is SIGKILLed at a random moment (often
/// during the upgrade), over several rounds: afterwards the store opens, reads every old
/// record as it was and verifies clean.
#[cfg(feature = "sqlite")]
#[test]
fn a_sigkill_during_the_upgrade_leaves_a_store_that_opens_old_or_new() {
    let expected_text = std::fs::read_to_string(Path::new(FIXTURES).join("sqlite/expected.jsonl")).unwrap();
    let expected = records(&expected_text);
    let mut versions = std::collections::BTreeSet::new();
    for round in 0..12u64 {
        let (_tmp, at) = fixture("sqlite");
        let mut child = Command::new(env!("CARGO_BIN_EXE_synclog"))
            .current_dir(&at)
            .env_remove("SYNCLOG_STORE")
            .env_remove("SYNCLOG_BACKUP")
            .args(["--no-backup", "--store", "sqlite://synclog.db"])
            .args(["start", "--job", "killed"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(fastrand_like(round) % 30_000));
        let _ = child.kill();
        child.wait().unwrap();
        let conn = rusqlite::Connection::open(at.join("synclog.db")).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        drop(conn);
        versions.insert(v);
        let list = ok(&at, "sqlite://synclog.db", &["list", "--json", "--limit", "1000"]);
        let got = records(&list);
        assert_eq!(
            &got[..expected.len()],
            &expected[..],
            "round {round} (version {v})"
        );
        ok(&at, "sqlite://synclog.db", &["verify"]);
        ok(&at, "sqlite://synclog.db", &["start", "--job", "after"]);
    }
    eprintln!("schema versions seen after the kills: {versions:?}");
}

/// A spread of delays without a random-number dependency.
fn fastrand_like(round: u64) -> u64 {
    round.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ (round * 2_654_435_761)
}
