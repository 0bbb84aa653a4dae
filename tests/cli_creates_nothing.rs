//! Commands that change a store which must already exist, or that only read one, create
//! nothing when it is missing or when they refuse their input: exit 3 (no such store) or
//! 2 (bad input), and the directory stays as it was.

mod common;

use common::{code, stderr, Env};

/// The names in the test's directory, sorted.
fn entries(env: &Env) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn commands_on_a_missing_store_exit_3_and_create_nothing() {
    let env = Env::new();
    for args in [
        &["finish", "r-1", "--status", "failed"][..],
        &["abandon", "r-1", "--reason", "gone"],
        &["prune", "--older-than", "1d", "--dry-run"],
        &["prune", "--keep-last", "1"],
        &["checkpoint"],
    ] {
        let out = env.run(args);
        assert_eq!(code(&out), 3, "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("does not exist"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert_eq!(entries(&env), Vec::<String>::new(), "{args:?}");
    }
}

#[test]
fn restore_from_a_source_that_does_not_exist_exits_3_and_creates_nothing() {
    let env = Env::new();
    for from in [
        format!("json://{}", env.path("typo.jsonl")),
        format!("sqlite://{}", env.path("missing/typo.db")),
        format!("sled://{}", env.path("typo-sled")),
    ] {
        let out = env.run(&["restore", "--from", &from]);
        assert_eq!(code(&out), 3, "{from}: {}", stderr(&out));
        assert_eq!(entries(&env), Vec::<String>::new(), "{from}");
    }
}

#[test]
fn a_memory_copy_of_the_pair_is_refused_before_anything_is_written() {
    let env = Env::new();
    for (store, backup, flag) in [
        ("sqlite://s.db", "memory://m", "--backup"),
        ("memory://m", "json://b.jsonl", "--store"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_synclog"))
            .current_dir(env.dir.path())
            .env_remove("SYNCLOG_STORE")
            .env_remove("SYNCLOG_BACKUP")
            .args([
                "--store",
                store,
                "--backup",
                backup,
                "append",
                "--job",
                "j",
                "--status",
                "succeeded",
            ])
            .output()
            .unwrap();
        assert_eq!(code(&out), 2, "{store} {backup}: {}", stderr(&out));
        assert!(stderr(&out).contains(flag), "{}", stderr(&out));
        assert_eq!(entries(&env), Vec::<String>::new(), "{store} {backup}");
    }
}

#[test]
fn an_archive_that_is_a_hard_link_to_the_store_is_refused() {
    let env = Env::new();
    env.append_logs(3);
    std::fs::hard_link(env.path("s.db"), env.path("linked.db")).unwrap();
    std::fs::hard_link(env.path("b.jsonl"), env.path("linked.jsonl")).unwrap();
    let before = entries(&env);
    for archive in ["sqlite://linked.db", "json://linked.jsonl"] {
        for dry in [false, true] {
            let mut args = vec!["prune", "--before-id", "3", "--archive", archive];
            if dry {
                args.push("--dry-run");
            }
            let out = env.run(&args);
            assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
            assert!(stderr(&out).contains("--archive"), "{}", stderr(&out));
        }
    }
    assert_eq!(entries(&env), before);
    let listed = env.expect(0, &["list", "--json"]);
    assert_eq!(listed.lines().count(), 3, "{listed}");
}

/// Too few records for the bench to find runs to measure is bad input (it was reported
/// as corrupt data, exit 6).
#[test]
fn a_bench_of_too_few_records_is_bad_input() {
    let env = Env::new();
    let out = env.run(&["bench", "--records", "100", "--only", "runs", "--dir", "b"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("--records"), "{}", stderr(&out));
    assert_eq!(entries(&env), Vec::<String>::new());
}

/// `--limit 0` was taken as "the library's default page" (every record of a small store);
/// it is bad input for `list` and `runs`.
#[test]
fn a_limit_of_zero_is_bad_input() {
    let env = Env::new();
    env.append_logs(1);
    for args in [&["list", "--limit", "0"][..], &["runs", "--limit", "0"]] {
        let out = env.run(args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("--limit"), "{}", stderr(&out));
    }
    env.expect(0, &["list", "--limit", "1"]);
}
