//! `synclog compact`: the command the JSON engine's warning about repeated and corrupt
//! lines names, end to end through the binary.

mod common;

use common::{code, Env};

/// A guarded pair holding logs of jobs a, b and c (ids 1 to 3), and its backup's path.
fn three_logs() -> (Env, std::path::PathBuf) {
    let env = Env::new();
    for job in ["a", "b", "c"] {
        let out = env.run(&["append", "--job", job, "--status", "succeeded"]);
        assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    }
    let backup = env.dir.path().join("b.jsonl");
    (env, backup)
}

#[test]
fn compact_cleans_repeated_and_corrupt_backup_lines_so_verify_is_clean() {
    let (env, backup) = three_logs();
    // --- step: the backup gains an identical copy of log 2 and a corrupt line.
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
    // check agrees with verify: the file needs compacting.
    let out = env.run(&["check"]);
    assert_eq!(code(&out), 1, "{}", String::from_utf8_lossy(&out.stdout));

    // --- step: compact, then verify is clean, and the corrupt line is kept aside.
    let out = env.run(&["compact"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let out = env.run(&["verify"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
    let out = env.run(&["check"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(rejected(&env).len(), 1);
}

/// The names of the backup's `.rejected-` files.
fn rejected(env: &Env) -> Vec<String> {
    std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("b.jsonl.rejected-"))
        .collect()
}

/// A line of the backup damaged in place: `check --repair` appends the intact record from
/// the store, then compacts the backup (the damaged line goes aside), compares again and
/// exits 0; verify is clean after it, with nothing left for `compact` to do.
#[test]
fn check_repair_of_a_damaged_backup_line_ends_with_both_copies_clean() {
    let (env, backup) = three_logs();
    let text = std::fs::read_to_string(&backup).unwrap();
    assert_eq!(text.matches("\"job\":\"b\"").count(), 1);
    std::fs::write(&backup, text.replace("\"job\":\"b\"", "\"job\":\"x\"")).unwrap();
    assert_eq!(code(&env.run(&["verify"])), 1);

    let out = env.run(&["check", "--repair"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(code(&out), 0, "{said}");
    assert!(
        said.contains("damaged in the backup, intact in the store (1): 2"),
        "{said}"
    );
    assert!(said.contains("1 corrupt line(s) saved aside"), "{said}");
    assert_eq!(rejected(&env).len(), 1);
    let out = env.run(&["verify"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
    let out = env.run(&["compact"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to clean"));
    let listed = String::from_utf8_lossy(&env.run(&["list", "--json"]).stdout).into_owned();
    assert_eq!(listed.lines().count(), 3);
    assert!(
        listed.contains("\"job\":\"b\"") && !listed.contains("\"job\":\"x\""),
        "{listed}"
    );
}

#[test]
fn compact_refuses_a_store_that_is_not_json_lines_without_touching_it() {
    let env = Env::new();
    let out = env.run(&["--no-backup", "compact"]);
    assert_eq!(code(&out), 2, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!env.dir.path().join("s.db").exists());
}
