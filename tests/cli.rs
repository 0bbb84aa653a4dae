//! The `synclog` command end to end, bad input included.

use std::path::Path;
use std::process::Command;

mod common;

use common::{code, no_panic, stderr, stdout, Env};

#[test]
fn append_prints_the_new_id_and_show_reads_it_back() {
    let env = Env::new();
    let out = env.run(&[
        "append",
        "--job",
        "crm",
        "--status",
        "partial",
        "--seen",
        "10",
        "--written",
        "8",
        "--failed",
        "2",
        "--attr",
        "source=hubspot",
        "--attr",
        "page=3",
        "--message",
        "2 rejected",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "1");
    let shown = env.run(&["show", "1", "--json"]);
    assert_eq!(code(&shown), 0);
    let v: serde_json::Value = serde_json::from_str(stdout(&shown).trim()).unwrap();
    assert_eq!(v["job"], "crm");
    assert_eq!(v["status"], "partial");
    assert_eq!(v["items_failed"], 2);
    assert_eq!(v["attrs"], serde_json::json!({"page": 3, "source": "hubspot"}));
    let text = env.run(&["show", "1"]);
    assert!(stdout(&text).contains("(intact)"), "{}", stdout(&text));
}

#[test]
fn list_filters_and_prints_json_lines() {
    let env = Env::new();
    for (job, status) in [
        ("a", "succeeded"),
        ("b", "failed"),
        ("a", "failed"),
        ("a", "succeeded"),
    ] {
        assert_eq!(code(&env.run(&["append", "--job", job, "--status", status])), 0);
    }
    let out = env.run(&["list", "--job", "a", "--status", "succeeded", "--json"]);
    assert_eq!(code(&out), 0);
    let ids: Vec<u64> = stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, vec![1, 4]);
    let since = env.run(&["list", "--since", "2", "--json"]);
    assert_eq!(stdout(&since).lines().count(), 2);
    let table = env.run(&["list", "--desc", "--limit", "2"]);
    let text = stdout(&table);
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 3, "header and two rows");
    assert!(rows[1].trim_start().starts_with('4'));
}

#[test]
fn bad_input_is_a_one_line_error_with_exit_code_2_and_writes_nothing() {
    let env = Env::new();
    let cases: &[&[&str]] = &[
        &["append", "--job", "x", "--status", "exploded"],
        &["append", "--job", "x", "--status", "failed", "--attrs", "[1,2]"],
        &[
            "append",
            "--job",
            "x",
            "--status",
            "failed",
            "--attrs",
            "{not json",
        ],
        &["append", "--job", "", "--status", "failed"],
        &[
            "append",
            "--job",
            "x",
            "--status",
            "failed",
            "--started",
            "yesterday",
        ],
        &["append", "--job", "x", "--status", "failed", "--attr", "novalue"],
        &["--store", "mysql://h/db", "list"],
        &["--store", "nothing-here", "list"],
        &["show", "0"],
        &["show", "abc"],
        &["list", "--limit", "1000000"],
        &["checkpoint", "--mode", "sideways"],
    ];
    for args in cases {
        let out = env.run(args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        no_panic(&out);
        assert!(stderr(&out).contains("error"), "{args:?}: {}", stderr(&out));
    }
    assert!(
        !Path::new(&env.path("s.db")).exists() || {
            let out = env.run(&["list", "--json"]);
            stdout(&out).is_empty()
        }
    );
}

#[test]
fn show_of_a_missing_id_exits_3() {
    let env = Env::new();
    env.run(&["append", "--job", "x", "--status", "failed"]);
    let out = env.run(&["show", "99"]);
    assert_eq!(code(&out), 3);
    assert!(stderr(&out).contains("log 99 not found"), "{}", stderr(&out));
    no_panic(&out);
}

#[test]
fn verify_exits_0_when_clean_and_1_listing_a_corrupt_record() {
    let env = Env::new();
    for _ in 0..3 {
        env.run(&["append", "--job", "x", "--status", "succeeded"]);
    }
    let clean = env.run(&["verify", "--deep"]);
    assert_eq!(code(&clean), 0, "{}", stdout(&clean));
    assert!(stdout(&clean).contains("clean"));
    let conn = rusqlite::Connection::open(env.path("s.db")).unwrap();
    conn.execute("UPDATE logs SET job = 'y' WHERE id = 2", [])
        .unwrap();
    drop(conn);
    let dirty = env.run(&["verify", "--no-backup"]);
    assert_eq!(code(&dirty), 1);
    assert!(stdout(&dirty).contains("corrupt: log 2"), "{}", stdout(&dirty));
}

#[test]
fn check_lists_what_the_store_lost_and_repair_restores_it() {
    let env = Env::new();
    for _ in 0..4 {
        env.run(&["append", "--job", "x", "--status", "succeeded"]);
    }
    let conn = rusqlite::Connection::open(env.path("s.db")).unwrap();
    conn.execute("DELETE FROM logs WHERE id IN (3, 4)", []).unwrap();
    drop(conn);
    let check = env.run(&["check"]);
    assert_eq!(code(&check), 1, "{}", stdout(&check));
    assert!(
        stdout(&check).contains("missing from the store (2): 3, 4"),
        "{}",
        stdout(&check)
    );
    let repair = env.run(&["check", "--repair"]);
    assert_eq!(code(&repair), 0, "{}", stdout(&repair));
    let again = env.run(&["check"]);
    assert_eq!(code(&again), 0, "{}", stdout(&again));
    let out = env.run(&["--no-backup", "list", "--json"]);
    assert_eq!(stdout(&out).lines().count(), 4);
}

#[test]
fn export_and_restore_copy_between_engines_idempotently() {
    let env = Env::new();
    for _ in 0..5 {
        env.run(&["append", "--job", "x", "--status", "succeeded"]);
    }
    let to = format!("json://{}", env.path("export.jsonl"));
    let out = env.run(&["export", "--to", &to]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("5 inserted"), "{}", stdout(&out));
    let again = env.run(&["export", "--to", &to]);
    assert!(
        stdout(&again).contains("0 inserted, 5 already present"),
        "{}",
        stdout(&again)
    );
    let into = format!("sqlite://{}", env.path("restored.db"));
    let restored = env.run(&["restore", "--from", &to, "--into", &into]);
    assert_eq!(code(&restored), 0, "{}", stderr(&restored));
    assert!(stdout(&restored).contains("5 inserted"));
    let listed = Command::new(env!("CARGO_BIN_EXE_synclog"))
        .args(["--store", &into, "--no-backup", "verify"])
        .output()
        .unwrap();
    assert_eq!(code(&listed), 0, "{}", stdout(&listed));
    assert!(stdout(&listed).contains("5 logs checked"));
}

#[test]
fn checkpoint_reports_the_wal_frames() {
    let env = Env::new();
    env.run(&["append", "--job", "x", "--status", "succeeded"]);
    let out = env.run(&["checkpoint", "--mode", "truncate"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("checkpoint (truncate): complete"),
        "{}",
        stdout(&out)
    );
}

/// Writers take the backup's lock per group; one held for longer than the lock wait (a
/// process stuck in a write) makes a writer wait, then exit 4. Readers take none (see
/// `tests/readers.rs`), and writers in several processes take turns (`tests/multi_writer.rs`).
#[test]
fn a_backup_lock_held_too_long_makes_a_writer_wait_then_exit_4() {
    let env = Env::new();
    env.run(&["append", "--job", "x", "--status", "succeeded"]);
    let holder = std::fs::File::open(env.path("b.jsonl.lock")).unwrap();
    holder.lock().unwrap();
    let started = std::time::Instant::now();
    let out = env.run(&[
        "--lock-wait",
        "0.3",
        "append",
        "--job",
        "x",
        "--status",
        "succeeded",
    ]);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let e = stderr(&out);
    assert!(e.contains("b.jsonl is locked") && e.contains("hint"), "{e}");
    no_panic(&out);
    drop(holder);
    assert_eq!(code(&env.run(&["list"])), 0);
}

#[test]
fn concurrent_processes_take_turns() {
    let env = Env::new();
    let children: Vec<_> = (0..4)
        .map(|i| {
            env.base()
                .args(["append", "--job", &format!("p{i}"), "--status", "succeeded"])
                .output()
        })
        .collect();
    for c in children {
        assert_eq!(code(&c.unwrap()), 0);
    }
    let spawned: Vec<_> = (0..4)
        .map(|i| {
            env.base()
                .args(["append", "--job", &format!("q{i}"), "--status", "succeeded"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in spawned {
        let out = c.wait_with_output().unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let out = env.run(&["verify"]);
    assert!(stdout(&out).contains("8 logs checked"), "{}", stdout(&out));
}

#[test]
fn demo_finishes_clean_on_a_small_workload() {
    let env = Env::new();
    let out = Command::new(env!("CARGO_BIN_EXE_synclog"))
        .current_dir(env.dir.path())
        .args(["demo", "--jobs", "4", "--runs", "30", "--dir", "demo"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("restored 24 logs into the primary"), "{text}");
    assert!(
        text.contains("CLEAN") && text.contains("no acknowledged log was lost"),
        "{text}"
    );
}

#[test]
fn help_shows_examples_and_exit_codes() {
    let out = Command::new(env!("CARGO_BIN_EXE_synclog"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(stdout(&out).contains("Exit codes"));
    let out = Command::new(env!("CARGO_BIN_EXE_synclog"))
        .args(["append", "--help"])
        .output()
        .unwrap();
    assert!(stdout(&out).contains("Examples"));
}

#[test]
fn a_password_in_a_store_url_is_never_printed() {
    let url = "postgres://alice:hunter2secret@127.0.0.1:1/nodb";
    let help = Command::new(env!("CARGO_BIN_EXE_synclog"))
        .env("SYNCLOG_STORE", url)
        .arg("--help")
        .output()
        .unwrap();
    assert!(!stdout(&help).contains("hunter2secret"), "{}", stdout(&help));
    let out = Command::new(env!("CARGO_BIN_EXE_synclog"))
        .args(["--store", url, "--no-backup", "--lock-wait", "1", "list"])
        .output()
        .unwrap();
    assert_ne!(code(&out), 0);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!all.contains("hunter2secret"), "{all}");
    assert!(all.contains("alice:***@"), "{all}");
    no_panic(&out);
}

/// A quick `synclog bench --json` reports every figure, PostgreSQL's when a server is set.
#[test]
fn bench_json_reports_each_figure_with_its_baseline() {
    let env = Env::new();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_synclog"));
    cmd.current_dir(env.dir.path()).args([
        "bench",
        "--json",
        "--n",
        "20",
        "--each",
        "2",
        "--records",
        "500",
        "--dir",
        "b",
    ]);
    let pg = std::env::var("SYNCLOG_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty());
    match &pg {
        Some(url) => {
            cmd.args(["--postgres", url]);
        }
        None => eprintln!("notice: SYNCLOG_TEST_POSTGRES_URL is not set; bench runs without PostgreSQL"),
    }
    let out = cmd.output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let names: Vec<&str> = v["figures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for expected in [
        "raw fdatasync loop, 1 writer",
        "sqlite, 1 appender",
        "guarded sqlite+json, 64 appenders, verified",
    ] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    let one = v["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "sqlite, 1 appender")
        .unwrap();
    assert_eq!(one["baseline"], "raw fdatasync loop, 1 writer");
    assert!(one["ratio"].as_f64().unwrap() > 0.0 && one["value"].as_f64().unwrap() > 0.0);
    if pg.is_some() {
        assert!(names.contains(&"postgres, 64 appenders"), "{names:?}");
    }
}

#[test]
fn a_torn_backup_tail_is_moved_aside_and_the_operator_is_told() {
    let env = Env::new();
    let out = env.run(&["append", "--job", "crm", "--status", "succeeded"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // A crash in the middle of a backup write: half a line, never acknowledged.
    let backup = env.path("b.jsonl");
    let mut bytes = std::fs::read(&backup).unwrap();
    bytes.extend_from_slice(br#"{"id":2,"recorded_at":"2026-11-2"#);
    std::fs::write(&backup, &bytes).unwrap();

    // A reader leaves it where it is; the next writer moves it aside.
    let read = env.run(&["list"]);
    assert_eq!(code(&read), 0, "{}", stderr(&read));
    let listed = env.run(&["append", "--job", "crm", "--status", "succeeded"]);
    no_panic(&listed);
    assert_eq!(code(&listed), 0, "{}", stderr(&listed));
    let err = stderr(&listed);
    assert!(
        err.contains("moved aside") && err.contains("b.jsonl.torn-"),
        "stderr says what was moved and where: {err}"
    );
    assert!(
        !err.contains('\u{1b}'),
        "no terminal colours when stderr is not a terminal: {err:?}"
    );
    let aside: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("b.jsonl.torn-"))
        .collect();
    assert_eq!(aside.len(), 1, "the torn bytes are kept");
}

#[test]
fn a_corrupt_backup_line_is_skipped_and_the_operator_is_told() {
    let env = Env::new();
    for job in ["crm", "erp"] {
        let out = env.run(&["append", "--job", job, "--status", "succeeded"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    // Damage the first record's line in the backup (its checksum no longer matches).
    let backup = env.path("b.jsonl");
    let text = std::fs::read_to_string(&backup).unwrap();
    let damaged = text.replacen("\"job\":\"crm\"", "\"job\":\"CRM\"", 1);
    assert_ne!(damaged, text);
    std::fs::write(&backup, damaged).unwrap();

    let listed = env.run(&["list"]);
    no_panic(&listed);
    let err = stderr(&listed);
    assert!(
        err.contains("skipped") && err.contains("line 2"),
        "stderr names the skipped line: {err}"
    );
}

/// `--lock-wait` is one deadline for the append, not one per retry inside it.
#[test]
fn append_under_a_held_sqlite_write_lock_exits_4_within_the_lock_wait() {
    let env = Env::new();
    let out = env.run(&["--no-backup", "append", "--job", "crm", "--status", "succeeded"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let holder = rusqlite::Connection::open(env.path("s.db")).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = std::time::Instant::now();
    let out = env.run(&[
        "--no-backup",
        "--lock-wait",
        "1",
        "append",
        "--job",
        "crm",
        "--status",
        "succeeded",
    ]);
    let elapsed = started.elapsed();
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(
        elapsed < std::time::Duration::from_secs(2),
        "exited after {elapsed:?}"
    );
    no_panic(&out);
}

/// A server that accepts the connection and never answers is named, as an I/O error
/// (exit 5), not blamed on another synclog process (exit 4).
#[test]
fn a_postgres_server_that_never_answers_exits_5_naming_it() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let keeper = std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().take(2).collect();
        std::thread::sleep(std::time::Duration::from_secs(10));
        drop(held);
    });
    let url = format!("postgres://alice:hunter2secret@127.0.0.1:{port}/db");
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_synclog"))
        .args(["--store", &url, "--no-backup", "--lock-wait", "1", "list"])
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("another synclog process"), "{err}");
    assert!(!err.contains("hunter2secret"), "{err}");
    assert!(
        elapsed < std::time::Duration::from_secs(4),
        "exited after {elapsed:?}"
    );
    no_panic(&out);
    drop(keeper);
}
