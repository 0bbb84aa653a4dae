//! What the command-line tests share: a temporary directory with a guarded pair in it,
//! and the binary run on it.
#![allow(dead_code)] // each test file uses a part

pub mod pair;

use std::process::{Command, Output};

/// A temporary directory; the store is `s.db` and the backup `b.jsonl` in it.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The absolute path of `name` in the directory, as text.
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// The binary on this directory's pair, with nothing from the environment.
    pub fn base(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_synclog"));
        c.current_dir(self.dir.path())
            .env_remove("SYNCLOG_STORE")
            .env_remove("SYNCLOG_BACKUP")
            .env_remove("SYNCLOG_LOG")
            .env_remove("RUST_BACKTRACE")
            .args(["--store", "sqlite://s.db", "--backup", "json://b.jsonl"]);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.base().args(args).output().unwrap()
    }

    /// Runs and expects `code`, showing both streams otherwise; returns stdout.
    pub fn expect(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs on the store `url` alone (no backup) and expects exit 0; returns stdout.
    pub fn alone(&self, url: &str, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_synclog"))
            .current_dir(self.dir.path())
            .env_remove("SYNCLOG_STORE")
            .env_remove("SYNCLOG_BACKUP")
            .args(["--no-backup", "--store", url])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Appends logs 1..=n (messages `run N synced`) through the guarded pair.
    pub fn append_logs(&self, n: u64) {
        for i in 1..=n {
            let message = format!("run {i} synced");
            self.expect(
                0,
                &[
                    "append",
                    "--job",
                    "crm",
                    "--status",
                    "succeeded",
                    "--message",
                    &message,
                ],
            );
        }
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The exit code (-1 for a signal).
pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// The process did not end in a panic.
pub fn no_panic(o: &Output) {
    let e = stderr(o);
    assert!(!e.contains("panicked") && !e.contains("RUST_BACKTRACE"), "{e}");
}

/// The records of `--json` output, one per line.
pub fn records(stdout: &str) -> Vec<serde_json::Value> {
    stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}
