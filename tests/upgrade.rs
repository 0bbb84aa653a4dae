//! A guarded store written by the release before this one (a committed fixture, see
//! `tests/fixtures/release-7d423c7/README.md`) opens with this build: readers see its
//! records as they were, a writer adds the files this release keeps (side file, watermark,
//! pair lock, high-water mark) and goes on from the next id, and the copies stay equal.

use std::path::Path;
use std::process::{Command, Output};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/release-7d423c7");

fn copy_fixture(to: &Path) {
    for f in ["synclog.db", "synclog.jsonl"] {
        std::fs::copy(Path::new(FIXTURE).join(f), to.join(f)).unwrap();
    }
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_synclog"))
        .current_dir(dir)
        .env_remove("SYNCLOG_STORE")
        .env_remove("SYNCLOG_BACKUP")
        .args([
            "--store",
            "sqlite://synclog.db",
            "--backup",
            "json://synclog.jsonl",
        ])
        .args(args)
        .output()
        .unwrap()
}

fn expect(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `(id, job, checksum)` of each JSON line.
fn keys(text: &str) -> Vec<(u64, String, String)> {
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["id"].as_u64().unwrap(),
                v["job"].as_str().unwrap().to_string(),
                v["checksum"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_store_written_by_the_previous_release_opens_reads_and_takes_appends() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    copy_fixture(dir);
    let expected = keys(&std::fs::read_to_string(Path::new(FIXTURE).join("expected.jsonl")).unwrap());
    assert_eq!(expected.len(), 5);

    // Readers: the records as that release stored them, checksums included; nothing written.
    assert_eq!(keys(&expect(dir, &["list", "--json"])), expected);
    assert!(expect(dir, &["verify"]).contains("clean"));
    assert!(!dir.join("synclog.db.guard").exists(), "a reader writes nothing");

    // A writer: the next id, and the files this release keeps appear.
    assert_eq!(
        expect(dir, &["append", "--job", "crm-1", "--status", "succeeded"]).trim(),
        "6"
    );
    for f in ["synclog.db.guard", "synclog.db.guard.lock", "synclog.jsonl.idx"] {
        assert!(dir.join(f).exists(), "{f}");
    }
    let listed = keys(&expect(dir, &["list", "--json"]));
    assert_eq!(listed[..5], expected[..]);
    assert_eq!(listed[5].0, 6);
    let checked = expect(dir, &["check"]);
    assert!(checked.contains("in both copies: 6"), "{checked}");

    // Opened again: the side file and the watermark are used, and the answers are the same.
    assert_eq!(keys(&expect(dir, &["list", "--json"])), listed);
    assert!(expect(dir, &["verify"]).contains("clean"));
}
