//! The `synclog` command's output: full and closed streams, escaped stored text, and answers
//! that say what did not happen. Runs the real binary.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use synclog::LogStoreExt;

use synclog::{Durability, NewLog, Status};

mod common;

use common::{code, stderr, stdout, Env};

impl Env {
    fn store_url(&self) -> String {
        format!("sqlite://{}", self.path("s.db"))
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.base();
        c.args(args);
        c
    }

    /// Runs with stdout (or stderr) going to /dev/full.
    fn run_full(&self, args: &[&str], stream: Stream) -> Output {
        let mut c = self.cmd(args);
        let full = File::options().write(true).open("/dev/full").unwrap();
        match stream {
            Stream::Stdout => c.stdout(full).stderr(Stdio::piped()),
            Stream::Stderr => c.stderr(full).stdout(Stdio::piped()),
        };
        c.output().unwrap()
    }

    /// Runs with stdout going to a pipe whose reading end is already closed (EPIPE).
    fn run_closed_pipe(&self, args: &[&str]) -> Output {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        self.cmd(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    }

    fn append(&self, job: &str, message: &str) {
        let out = self.run(&["append", "--job", job, "--status", "failed", "--message", message]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
}

#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// Exits with `expected`, and not by a panic.
fn assert_exit(o: &Output, expected: i32, what: &str) {
    let e = stderr(o);
    assert!(!e.contains("panicked"), "{what}: {e}");
    assert_eq!(code(o), expected, "{what}: {e}");
}

/// No control character but the line ends.
fn assert_no_controls(text: &str, what: &str) {
    assert!(
        !text.chars().any(|c| c != '\n' && c.is_control()),
        "{what}: {text:?}"
    );
}

#[test]
fn commands_writing_to_a_full_stdout_exit_5_never_101() {
    let env = Env::new();
    env.append("x", "one");
    for args in [
        &["check"][..],
        &["verify"],
        &["list"],
        &["list", "--json"],
        &["show", "1"],
        &["show", "1", "--json"],
        &["checkpoint"],
        &["--help"],
    ] {
        let out = env.run_full(args, Stream::Stdout);
        assert_exit(&out, 5, &format!("{args:?} > /dev/full"));
    }
}

#[test]
fn commands_writing_to_a_closed_pipe_exit_5_never_101() {
    let env = Env::new();
    env.append("x", "one");
    for args in [&["check"][..], &["verify"], &["list"], &["show", "1"]] {
        let out = env.run_closed_pipe(args);
        assert_exit(&out, 5, &format!("{args:?} | (closed)"));
    }
}

#[test]
fn a_command_with_problems_keeps_exit_1_when_stdout_is_full_or_closed() {
    let env = Env::new();
    env.append("x", "one");
    env.append("x", "two");
    let conn = rusqlite::Connection::open(env.path("s.db")).unwrap();
    conn.execute("DELETE FROM logs WHERE id = 2", []).unwrap();
    drop(conn);
    // --- step: check finds the log the store lost
    let out = env.run_full(&["check"], Stream::Stdout);
    assert_exit(&out, 1, "check > /dev/full");
    let out = env.run_closed_pipe(&["check"]);
    assert_exit(&out, 1, "check | (closed)");
}

#[test]
fn a_missing_log_exits_3_when_stderr_is_full() {
    let env = Env::new();
    env.append("x", "one");
    let out = env.run_full(&["show", "99999"], Stream::Stderr);
    assert_exit(&out, 3, "show 99999 2> /dev/full");
    let out = env.run_full(&["--no-backup", "show", "99999"], Stream::Stdout);
    assert_exit(&out, 3, "show 99999 > /dev/full");
}

#[test]
fn a_warning_logged_to_a_full_stderr_does_not_panic() {
    let env = Env::new();
    // --- step: the backup misses a log, so the next guarded open warns as it reconciles
    let out = env.run(&["--no-backup", "append", "--job", "x", "--status", "failed"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = env.run_full(&["list"], Stream::Stderr);
    assert_exit(&out, 0, "list 2> /dev/full");
    assert_eq!(stdout(&out).lines().count(), 2, "{}", stdout(&out));
}

#[test]
fn verify_with_stdout_closed_after_the_first_line_keeps_exit_1_never_101() {
    let env = Env::new();
    // --- step: thousands of missing ids, more lines than a pipe holds, so verify is still
    // writing when the reader goes away
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = synclog::open_url(&env.store_url()).await.unwrap();
        let batch: Vec<_> = (0..10_000)
            .map(|_| NewLog::new("bulk", Status::Succeeded))
            .collect();
        store.commit(batch, Durability::PowerLoss).await.unwrap();
        store.close().await.unwrap();
    });
    let conn = rusqlite::Connection::open(env.path("s.db")).unwrap();
    conn.execute("DELETE FROM logs WHERE id BETWEEN 2 AND 9999", [])
        .unwrap();
    drop(conn);
    // --- step: read one line, close the pipe
    let mut child = env
        .cmd(&["--no-backup", "verify"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.starts_with("verified"), "{first}");
    drop(reader);
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 1, "verify | head -1");
}

#[test]
fn append_to_a_full_stdout_exits_0_and_is_stored_once() {
    let env = Env::new();
    let out = env.run_full(&["append", "--job", "x", "--status", "succeeded"], Stream::Stdout);
    assert_exit(&out, 0, "append > /dev/full");
    assert!(stderr(&out).contains("warning"), "{}", stderr(&out));
    let out = env.run_closed_pipe(&["append", "--job", "x", "--status", "succeeded"]);
    assert_exit(&out, 0, "append | (closed)");
    let listed = env.run(&["list", "--json"]);
    assert_eq!(stdout(&listed).lines().count(), 2, "{}", stdout(&listed));
}

const HOSTILE: &str = "a\u{1b}]0;pwned\u{7}\u{1b}[2J\r\u{7f}\u{9b}31m\u{85}z";

#[test]
fn stored_text_is_shown_with_control_characters_escaped() {
    let env = Env::new();
    env.append("x", HOSTILE);
    let attr = format!("note={HOSTILE}");
    let out = env.run(&["append", "--job", "y", "--status", "failed", "--attr", &attr]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for args in [&["list"][..], &["show", "1"], &["show", "2"]] {
        let out = env.run(args);
        assert_exit(&out, 0, &format!("{args:?}"));
        assert_no_controls(&stdout(&out), &format!("{args:?}"));
    }
}

#[test]
fn json_output_is_valid_and_carries_no_raw_control_characters() {
    let env = Env::new();
    env.append("x", HOSTILE);
    for args in [&["list", "--json"][..], &["show", "1", "--json"]] {
        let out = env.run(args);
        assert_exit(&out, 0, &format!("{args:?}"));
        let text = stdout(&out);
        assert_no_controls(&text, &format!("{args:?}"));
        let value: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(value["message"], HOSTILE);
    }
}

#[test]
fn error_messages_show_control_characters_escaped() {
    let env = Env::new();
    std::fs::write(env.path("file"), "").unwrap();
    let dir = format!("{}/{HOSTILE}", env.path("file"));
    let out = env.run(&["demo", "--dir", &dir]);
    assert_exit(&out, 5, "demo --dir under a file");
    assert_no_controls(&stderr(&out), "stderr");
}

#[test]
fn a_passive_checkpoint_blocked_by_a_reader_is_incomplete_with_exit_4() {
    let env = Env::new();
    env.append("x", "one");
    // --- step: a reader holds a snapshot, then more logs are written after it
    let reader = rusqlite::Connection::open(env.path("s.db")).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let n: i64 = reader
        .query_row("SELECT count(*) FROM logs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    for _ in 0..3 {
        let out = env.run(&["--no-backup", "append", "--job", "x", "--status", "failed"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    // --- step: the passive checkpoint cannot copy the frames the reader may still need
    let out = env.run(&["--no-backup", "checkpoint"]);
    assert_exit(&out, 4, "checkpoint with a reader");
    assert!(stdout(&out).contains("INCOMPLETE"), "{}", stdout(&out));
    // --- step: once the reader is gone, it completes
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    let out = env.run(&["--no-backup", "checkpoint"]);
    assert_exit(&out, 0, "checkpoint without a reader");
}
