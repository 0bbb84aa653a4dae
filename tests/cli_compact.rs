//! `synclog compact`: the command the JSON engine's warning about repeated and corrupt
//! lines names, end to end through the binary.

use std::process::{Command, Output};

fn synclog(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_synclog"))
        .current_dir(dir)
        .env_remove("SYNCLOG_STORE")
        .env_remove("SYNCLOG_BACKUP")
        .env_remove("RUST_BACKTRACE")
        .args(["--store", "sqlite://s.db", "--backup", "json://b.jsonl"])
        .args(args)
        .output()
        .unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[test]
fn compact_cleans_repeated_and_corrupt_backup_lines_so_verify_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    // --- step: three logs in the guarded pair.
    for job in ["a", "b", "c"] {
        let out = synclog(dir.path(), &["append", "--job", job, "--status", "succeeded"]);
        assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    }
    // --- step: the backup gains an identical copy of log 2 and a corrupt line.
    let backup = dir.path().join("b.jsonl");
    let text = std::fs::read_to_string(&backup).unwrap();
    let copy = text
        .lines()
        .find(|l| l.starts_with("{\"id\":2,"))
        .unwrap()
        .to_string();
    std::fs::write(
        &backup,
        format!("{text}{copy}\n{{\"id\":\n{{\"synclog_commit\":2}}\n"),
    )
    .unwrap();
    let out = synclog(dir.path(), &["verify"]);
    assert_eq!(
        code(&out),
        1,
        "verify is not clean before: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // check agrees with verify, repairing or not: the file needs compacting.
    for check in [&["check"][..], &["check", "--repair"][..]] {
        let out = synclog(dir.path(), check);
        assert_eq!(
            code(&out),
            1,
            "{check:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    // --- step: compact, then verify is clean, and the corrupt line is kept aside.
    let out = synclog(dir.path(), &["compact"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let out = synclog(dir.path(), &["verify"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
    let out = synclog(dir.path(), &["check"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
    let rejected: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("b.jsonl.rejected-"))
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
}

#[test]
fn compact_refuses_a_store_that_is_not_json_lines_without_touching_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = synclog(dir.path(), &["--no-backup", "compact"]);
    assert_eq!(code(&out), 2, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.path().join("s.db").exists());
}
