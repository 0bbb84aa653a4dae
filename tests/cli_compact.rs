//! `synclog compact`: the command the JSON engine's warning about repeated and corrupt
//! lines names, end to end through the binary.

mod common;

use common::{code, Env};

#[test]
fn compact_cleans_repeated_and_corrupt_backup_lines_so_verify_is_clean() {
    let env = Env::new();
    // --- step: three logs in the guarded pair.
    for job in ["a", "b", "c"] {
        let out = env.run(&["append", "--job", job, "--status", "succeeded"]);
        assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    }
    // --- step: the backup gains an identical copy of log 2 and a corrupt line.
    let backup = env.dir.path().join("b.jsonl");
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
    let out = env.run(&["verify"]);
    assert_eq!(
        code(&out),
        1,
        "verify is not clean before: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // check agrees with verify, repairing or not: the file needs compacting.
    for check in [&["check"][..], &["check", "--repair"][..]] {
        let out = env.run(check);
        assert_eq!(
            code(&out),
            1,
            "{check:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    // --- step: compact, then verify is clean, and the corrupt line is kept aside.
    let out = env.run(&["compact"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let out = env.run(&["verify"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
    let out = env.run(&["check"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
    let rejected: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("b.jsonl.rejected-"))
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
}

#[test]
fn compact_refuses_a_store_that_is_not_json_lines_without_touching_it() {
    let env = Env::new();
    let out = env.run(&["--no-backup", "compact"]);
    assert_eq!(code(&out), 2, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!env.dir.path().join("s.db").exists());
}
