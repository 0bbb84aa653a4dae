//! Stores written by the release before runs (committed fixtures, see
//! `tests/fixtures/release-9f44466/README.md`) open with this build: read-only commands
//! read them as they are, the first writer upgrades them in place, every record reads back
//! as it was (same id, fields and checksum), `verify` is clean, and runs and idempotency
//! keys work on them. A SIGKILL during the upgrade leaves a store that opens, old or new.

use std::path::Path;
use std::process::{Command, Stdio};

mod common;

use common::Env;
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

/// A temporary directory holding a fresh copy of fixture `name` (a folder of the fixtures).
fn fixture(name: &str) -> Env {
    let env = Env::new();
    copy_dir(&Path::new(FIXTURES).join(name), env.dir.path());
    env
}

fn records(text: &str) -> Vec<serde_json::Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Reads, upgrades and uses the fixture store `store` in `env` (see the module docs).
fn upgrades_in_place(env: &Env, store: &str) {
    let ok = |args: &[&str]| env.alone(store, args);
    let expected = env.dir.path().join("expected.jsonl");
    let expected = records(&std::fs::read_to_string(expected).unwrap());
    let list = ["list", "--json", "--limit", "100000"];
    assert_eq!(records(&ok(&list)), expected, "read as it is");
    // The first writer upgrades the store; a run and an idempotency key work on it.
    let run = ok(&["start", "--job", "upgrade"]).trim().to_string();
    let finish = ["finish", run.as_str(), "--status", "succeeded", "--seen", "3"];
    let end = ok(&finish);
    assert_eq!(ok(&finish), end, "a repeated finish is the same record");
    let key = [
        "append",
        "--job",
        "upgrade",
        "--status",
        "skipped",
        "--idempotency-key",
        "k",
    ];
    let keyed = ok(&key);
    assert_eq!(ok(&key), keyed, "a repeated key is the same record");
    let after = records(&ok(&list));
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
    let runs = ok(&["runs", "--json"]);
    let runs = records(&runs);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["key"], run.as_str());
    assert_eq!(runs[0]["status"], "succeeded");
    ok(&["verify"]);
}

#[cfg(feature = "sqlite")]
#[test]
fn a_sqlite_store_of_the_previous_release_is_upgraded_in_place() {
    let env = fixture("sqlite");
    let version = |p: &Path| -> i64 {
        let conn = rusqlite::Connection::open(p).unwrap();
        conn.pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    };
    let db = env.dir.path().join("synclog.db");
    assert_eq!(version(&db), 1);
    upgrades_in_place(&env, "sqlite://synclog.db");
    assert_eq!(version(&db), synclog::sqlite::SCHEMA_VERSION);
}

#[cfg(feature = "sled")]
#[test]
fn a_sled_store_of_the_previous_release_is_upgraded_in_place() {
    upgrades_in_place(&fixture("sled"), "sled://synclog.sled");
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
        let env = fixture("sqlite");
        let at = env.dir.path();
        let mut child = Command::new(env!("CARGO_BIN_EXE_synclog"))
            .current_dir(at)
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
        let list = env.alone("sqlite://synclog.db", &["list", "--json", "--limit", "1000"]);
        let got = records(&list);
        assert_eq!(
            &got[..expected.len()],
            &expected[..],
            "round {round} (version {v})"
        );
        env.alone("sqlite://synclog.db", &["verify"]);
        env.alone("sqlite://synclog.db", &["start", "--job", "after"]);
    }
    eprintln!("schema versions seen after the kills: {versions:?}");
}

/// A spread of delays without a random-number dependency.
fn fastrand_like(round: u64) -> u64 {
    round.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ (round * 2_654_435_761)
}
