//! Several writer processes on one guarded pair: each runs `synclog append --stdin`, a
//! reader lists in a loop beside them, and writers are SIGKILLed and replaced. Every
//! acknowledged log is kept under the id it was acknowledged with, no id is handed out
//! twice, ids are dense, both copies are equal after `check --repair`, and the reader
//! never waits out a lock.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The pair: a SQLite primary and `backup` (a URL relative to the directory). Writers
/// alternate between the pair's own URLs and `aliases` (other paths to the same files).
struct Pair {
    dir: tempfile::TempDir,
    backup: &'static str,
    aliases: Vec<(String, String)>,
}

impl Pair {
    fn new(backup: &'static str) -> Pair {
        Pair {
            dir: tempfile::tempdir().unwrap(),
            backup,
            aliases: Vec::new(),
        }
    }

    fn command(&self) -> Command {
        self.command_via(0)
    }

    /// The command on the pair through its `n`-th spelling (0: its own URLs).
    fn command_via(&self, n: usize) -> Command {
        let (store, backup) = match n % (self.aliases.len() + 1) {
            0 => ("sqlite://s.db".to_string(), self.backup.to_string()),
            i => self.aliases[i - 1].clone(),
        };
        let mut c = Command::new(env!("CARGO_BIN_EXE_synclog"));
        c.current_dir(self.dir.path())
            .env_remove("SYNCLOG_STORE")
            .env_remove("SYNCLOG_BACKUP")
            .env_remove("SYNCLOG_LOG")
            .args(["--store", &store, "--backup", &backup, "--lock-wait", "30"]);
        c
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.command().args(args).output().unwrap()
    }
}

/// One `append --stdin --json` process, and the acknowledgements it printed: id → the
/// `(writer, n)` tag of the line it answered.
struct Writer {
    child: Child,
    stdin: Option<ChildStdin>,
    reader: Option<JoinHandle<()>>,
}

type Acks = Arc<Mutex<Vec<(u64, (u64, u64))>>>;

impl Writer {
    fn spawn(pair: &Pair, via: usize, acks: &Acks) -> Writer {
        let mut child = pair
            .command_via(via)
            .args(["append", "--stdin", "--json"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let acks = acks.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                let tag = (
                    v["attrs"]["w"].as_u64().unwrap(),
                    v["attrs"]["n"].as_u64().unwrap(),
                );
                acks.lock().unwrap().push((v["id"].as_u64().unwrap(), tag));
            }
        });
        Writer {
            stdin: child.stdin.take(),
            child,
            reader: Some(reader),
        }
    }

    /// Sends logs tagged `(w, n)` for `ns`.
    fn send(&mut self, w: u64, ns: std::ops::Range<u64>) {
        let stdin = self.stdin.as_mut().unwrap();
        let mut text = String::new();
        for n in ns {
            text.push_str(&format!(
                "{{\"job\":\"w{w}\",\"status\":\"succeeded\",\"items_seen\":{n},\"attrs\":{{\"w\":{w},\"n\":{n}}}}}\n"
            ));
        }
        // A writer being killed may have closed its end: what it never read was never acknowledged.
        let _ = stdin.write_all(text.as_bytes());
        let _ = stdin.flush();
    }

    /// Ends input and waits: exit 0 after answering every line.
    fn finish(mut self) -> i32 {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        self.reader.take().unwrap().join().unwrap();
        status.code().unwrap_or(-1)
    }

    /// SIGKILL, mid-stream.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        drop(self.stdin.take());
        self.reader.take().unwrap().join().unwrap();
    }
}

fn writers_and_a_reader_lose_nothing_and_never_share_an_id(pair: Pair) {
    let acks: Acks = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));

    let reader = {
        let stop = stop.clone();
        let cmd = pair
            .command()
            .get_args()
            .map(|a| a.to_owned())
            .collect::<Vec<_>>();
        let dir = pair.dir.path().to_owned();
        std::thread::spawn(move || {
            let mut runs = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let out = Command::new(env!("CARGO_BIN_EXE_synclog"))
                    .current_dir(&dir)
                    .env_remove("SYNCLOG_STORE")
                    .env_remove("SYNCLOG_BACKUP")
                    .args(&cmd)
                    .args(["list", "--limit", "20", "--desc"])
                    .output()
                    .unwrap();
                runs.push((
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                ));
            }
            runs
        })
    };

    const WRITERS: u64 = 4;
    let mut writers: Vec<Writer> = (0..WRITERS as usize)
        .map(|w| Writer::spawn(&pair, w, &acks))
        .collect();
    let mut next_n = vec![0u64; WRITERS as usize];
    let mut killed = 0;
    for round in 0..3 {
        for (w, writer) in writers.iter_mut().enumerate() {
            let n = next_n[w];
            writer.send(w as u64, n..n + 40);
            next_n[w] += 40;
        }
        // Let some of it be acknowledged, then kill one writer mid-stream and replace it.
        let want = acks.lock().unwrap().len() + 60;
        while acks.lock().unwrap().len() < want {
            std::thread::yield_now();
        }
        let victim = round % WRITERS as usize;
        let dead = std::mem::replace(&mut writers[victim], Writer::spawn(&pair, victim, &acks));
        dead.kill();
        killed += 1;
    }
    for (w, writer) in writers.iter_mut().enumerate() {
        let n = next_n[w];
        writer.send(w as u64, n..n + 40);
    }
    for writer in writers {
        assert_eq!(writer.finish(), 0);
    }
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().unwrap();
    assert_eq!(killed, 3);

    // The reader never waited out a lock, nor failed.
    assert!(!reads.is_empty());
    for (code, stderr) in &reads {
        assert_eq!(*code, Some(0), "a reader failed beside the writers: {stderr}");
    }

    let acks = acks.lock().unwrap().clone();
    let ids: HashSet<u64> = acks.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), acks.len(), "an id was acknowledged twice");

    let repaired = pair.run(&["check", "--repair"]);
    assert_eq!(
        repaired.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&repaired.stdout)
    );
    let checked = pair.run(&["check"]);
    assert_eq!(
        checked.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&checked.stdout)
    );

    let out = pair.run(&["list", "--json", "--limit", "100000"]);
    assert_eq!(out.status.code(), Some(0));
    let stored: BTreeMap<u64, serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["id"].as_u64().unwrap(), v)
        })
        .collect();
    for (id, (w, n)) in &acks {
        let rec = stored
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged log {id} lost"));
        assert_eq!(
            (rec["attrs"]["w"].as_u64(), rec["attrs"]["n"].as_u64()),
            (Some(*w), Some(*n))
        );
    }
    // Dense: a group a killed writer had started is completed by the next holder of the
    // pair's lock, or (stored nowhere, never acknowledged) its ids are handed out again.
    let ids: Vec<u64> = stored.keys().copied().collect();
    assert_eq!(
        ids,
        (1..=ids.len() as u64).collect::<Vec<_>>(),
        "ids are not dense"
    );
}

/// A pair with its first log appended (so the reader has a store to read).
fn created(backup: &'static str) -> Pair {
    let pair = Pair::new(backup);
    let out = pair.run(&["append", "--job", "setup", "--status", "started"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pair
}

#[test]
fn four_writer_processes_on_a_sqlite_pair_with_a_reader_and_sigkills() {
    writers_and_a_reader_lose_nothing_and_never_share_an_id(created("sqlite://b.db"));
}

#[test]
fn four_writer_processes_on_the_guarded_default_with_a_reader_and_sigkills() {
    writers_and_a_reader_lose_nothing_and_never_share_an_id(created("json://b.jsonl"));
}

#[test]
fn writers_through_symlinks_and_the_real_paths_share_one_guarded_default() {
    let mut pair = created("json://b.jsonl");
    let dir = pair.dir.path().to_owned();
    std::fs::create_dir(dir.join("elsewhere")).unwrap();
    std::os::unix::fs::symlink("../s.db", dir.join("elsewhere/s.db")).unwrap();
    std::os::unix::fs::symlink("../b.jsonl", dir.join("elsewhere/b.jsonl")).unwrap();
    pair.aliases.push((
        "sqlite://elsewhere/s.db".into(),
        "json://elsewhere/b.jsonl".into(),
    ));
    writers_and_a_reader_lose_nothing_and_never_share_an_id(pair);
}

#[test]
fn writers_through_a_hard_linked_backup_and_the_real_path_share_one_guarded_default() {
    let mut pair = created("json://b.jsonl");
    let dir = pair.dir.path().to_owned();
    std::fs::hard_link(dir.join("b.jsonl"), dir.join("hard.jsonl")).unwrap();
    // The primary through `..` segments (SQLite's own locks follow its file).
    std::fs::create_dir(dir.join("sub")).unwrap();
    pair.aliases
        .push(("sqlite://sub/../s.db".into(), "json://hard.jsonl".into()));
    writers_and_a_reader_lose_nothing_and_never_share_an_id(pair);
}
