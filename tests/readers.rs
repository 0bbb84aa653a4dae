//! Readers never wait and never block: the read commands (`list`, `show`, `verify`,
//! `check`, `export`) and a read-only open take no writer lock, create nothing, see every
//! group acknowledged before they opened, and refuse writes.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use synclog::{
    open_guarded_with, open_url_with, Durability, ErrorKind, GuardedOptions, LogId, LogStore, LogStoreExt,
    NewLog, OpenOptions, Scan, Status,
};

fn step(name: &str) {
    eprintln!("--- step: {name}");
}

/// The names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

struct Pair {
    dir: tempfile::TempDir,
}

impl Pair {
    fn new() -> Pair {
        Pair {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn store(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("s.db").display())
    }

    fn backup(&self) -> String {
        format!("json://{}", self.dir.path().join("b.jsonl").display())
    }

    /// The binary on this pair, waiting at most 1 s for any lock.
    fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_waiting("1", args)
    }

    /// The binary on this pair, waiting at most `wait` seconds for any lock.
    fn cmd_waiting(&self, wait: &str, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_synclog"));
        c.current_dir(self.dir.path())
            .env_remove("SYNCLOG_STORE")
            .env_remove("SYNCLOG_BACKUP")
            .args([
                "--store",
                &self.store(),
                "--backup",
                &self.backup(),
                "--lock-wait",
                wait,
            ])
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The ids of `list --json` output.
fn listed_ids(o: &Output) -> Vec<u64> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["id"].as_u64().unwrap()
        })
        .collect()
}

fn log() -> NewLog {
    NewLog::new("sync", Status::Succeeded).message("beside a reader")
}

#[test]
fn read_commands_beside_an_appending_guarded_writer_exit_0_and_see_every_acknowledged_log() {
    let pair = Pair::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    step("a writer in this process holds the guarded default open");
    let guarded = rt
        .block_on(open_guarded_with(
            &pair.store(),
            &pair.backup(),
            GuardedOptions::default(),
            &OpenOptions::default(),
        ))
        .unwrap();
    let guarded = Arc::new(guarded);
    for _ in 0..20 {
        rt.block_on(guarded.append_batch(vec![log()], Durability::PowerLoss))
            .unwrap();
    }
    step("it keeps appending while the readers run");
    let acked = Arc::new(AtomicU64::new(20));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (g, acked, failures, stop) = (guarded.clone(), acked.clone(), failures.clone(), stop.clone());
        rt.spawn(async move {
            while !stop.load(Ordering::Acquire) {
                match g.append_batch(vec![log()], Durability::PowerLoss).await {
                    Ok(r) => acked.store(r.records[0].id.get(), Ordering::Release),
                    Err(e) => failures.lock().unwrap().push(e.to_string()),
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let export = pair.dir.path().join("export.jsonl");
    let export_url = format!("json://{}", export.display());
    let mut before_export = 0;
    for round in 0..3 {
        step(&format!("round {round}: list --limit 20 --desc"));
        let before = acked.load(Ordering::Acquire);
        let out = pair.run(&["list", "--limit", "20", "--desc", "--json"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let ids = listed_ids(&out);
        assert_eq!(ids.len(), 20);
        assert!(
            ids[0] >= before,
            "newest listed {} < acknowledged {before}",
            ids[0]
        );

        step(&format!("round {round}: show ID"));
        let before = acked.load(Ordering::Acquire);
        let out = pair.run(&["show", &before.to_string(), "--json"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));

        step(&format!("round {round}: verify"));
        let out = pair.run(&["verify"]);
        assert_eq!(
            code(&out),
            0,
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );

        step(&format!("round {round}: check"));
        let out = pair.run(&["check"]);
        assert_eq!(
            code(&out),
            0,
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );

        step(&format!("round {round}: export"));
        before_export = acked.load(Ordering::Acquire);
        let out = pair.run(&["export", "--to", &export_url]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    step("the writer's appends went on meanwhile");
    let during = acked.load(Ordering::Acquire);
    stop.store(true, Ordering::Release);
    rt.block_on(writer).unwrap();
    assert!(
        failures.lock().unwrap().is_empty(),
        "{:?}",
        failures.lock().unwrap()
    );
    assert!(during > 20, "the writer appended nothing beside the readers");
    rt.block_on(guarded.close()).unwrap();

    step("the export holds every log acknowledged before it started");
    let exported = rt
        .block_on(open_url_with(&export_url, &OpenOptions::default()))
        .unwrap();
    let ids: Vec<u64> = rt
        .block_on(exported.scan(&Scan {
            limit: before_export as usize,
            ..Scan::default()
        }))
        .unwrap()
        .iter()
        .map(|r| r.id.get())
        .collect();
    assert_eq!(ids, (1..=before_export).collect::<Vec<_>>());
    rt.block_on(exported.close()).unwrap();
}

/// The writer runs with `--lock-wait 0`: a reader that took a writer's lock would make it
/// fail at once with exit 4. (Opening still waits up to 250 ms for SQLite's own WAL
/// recovery, which the first connection after all were closed runs, a reader's too.)
/// Readers run with `--lock-wait 1`, which bounds only SQLite's own brief exclusive steps
/// (a writer's last connection checkpointing at close).
#[test]
fn reader_processes_beside_a_writer_process_never_wait_for_each_other() {
    let pair = Pair::new();
    step("the store exists");
    let out = pair.run(&["append", "--job", "sync", "--status", "succeeded"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let acked = Arc::new(AtomicU64::new(1));
    let done = Arc::new(AtomicBool::new(false));
    step("a child process appends, one `synclog append --lock-wait 0` after another (30 logs)");
    let writer = {
        let (acked, done) = (acked.clone(), done.clone());
        let mut commands: Vec<Command> = (0..30)
            .map(|_| pair.cmd_waiting("0", &["append", "--job", "sync", "--status", "succeeded"]))
            .collect();
        std::thread::spawn(move || {
            let mut codes = Vec::new();
            for c in &mut commands {
                let out = c.output().unwrap();
                codes.push((code(&out), stderr(&out)));
                if let Ok(id) = String::from_utf8_lossy(&out.stdout).trim().parse::<u64>() {
                    acked.store(id, Ordering::Release);
                }
            }
            done.store(true, Ordering::Release);
            codes
        })
    };
    step("readers list in a loop beside it");
    let started = Instant::now();
    let mut reads = 0;
    while !done.load(Ordering::Acquire) && reads < 200 && started.elapsed() < Duration::from_secs(120) {
        let before = acked.load(Ordering::Acquire);
        let out = pair.run(&["list", "--limit", "5", "--desc", "--json"]);
        assert_eq!(code(&out), 0, "read {reads}: {}", stderr(&out));
        let newest = listed_ids(&out).first().copied().unwrap_or(0);
        assert!(
            newest >= before,
            "read {reads}: newest {newest} < acknowledged {before}"
        );
        reads += 1;
    }
    let codes = writer.join().unwrap();
    assert!(codes.iter().all(|(c, _)| *c == 0), "writer exit codes {codes:?}");
    eprintln!("{reads} reads beside the writer");
    assert!(reads > 0);
    step("everything is there, once");
    let out = pair.run(&["list", "--limit", "100", "--json"]);
    assert_eq!(listed_ids(&out), (1..=31).collect::<Vec<_>>());
    assert_eq!(code(&pair.run(&["check"])), 0);
}

#[tokio::test]
async fn a_read_only_open_of_a_missing_store_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let read_only = OpenOptions {
        read_only: true,
        ..OpenOptions::default()
    };
    let base = dir.path().join("sub");
    for url in [
        format!("sqlite://{}/s.db", base.display()),
        format!("json://{}/b.jsonl", base.display()),
        format!("sled://{}/db", base.display()),
        format!("sqlite://{}/s.db", dir.path().display()),
        format!("json://{}/b.jsonl", dir.path().display()),
        format!("sled://{}/db", dir.path().display()),
    ] {
        let err = open_url_with(&url, &read_only).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{url}: {err}");
    }
    let err = open_guarded_with(
        &format!("sqlite://{}/s.db", dir.path().display()),
        &format!("json://{}/b.jsonl", dir.path().display()),
        GuardedOptions::default(),
        &read_only,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));

    step("the read commands on a missing default store: exit 3, nothing created");
    for args in [&["list"][..], &["show", "1"], &["verify"], &["check"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_synclog"))
            .current_dir(dir.path())
            .env_remove("SYNCLOG_STORE")
            .env_remove("SYNCLOG_BACKUP")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(code(&out), 3, "{args:?}: {}", stderr(&out));
    }
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

/// Every write through `store` fails with `Unsupported`.
async fn refuses_writes(store: &dyn LogStore, sample: &synclog::LogRecord) {
    let name = store.describe();
    let kinds = [
        store.commit(vec![log()], Durability::PowerLoss).await.map(|_| ()),
        store
            .import(vec![sample.clone()], Durability::PowerLoss)
            .await
            .map(|_| ()),
        store
            .repair(vec![sample.clone()], Durability::PowerLoss)
            .await
            .map(|_| ()),
        store.sync(Durability::PowerLoss).await,
    ];
    for (i, r) in kinds.into_iter().enumerate() {
        assert_eq!(
            r.map_err(|e| e.kind()),
            Err(ErrorKind::Unsupported),
            "{name}: write #{i}"
        );
    }
}

/// Every file in `dir` with its length and a hash of its bytes.
fn snapshot(dir: &Path) -> Vec<(String, usize, u64)> {
    use std::hash::{Hash, Hasher};
    entries(dir)
        .into_iter()
        // SQLite's shared-memory index, and the empty WAL a read-only connection opens
        // beside a database that has none: SQLite's coordination files, not data.
        .filter(|n| {
            let empty_wal = n.ends_with("-wal") && std::fs::metadata(dir.join(n)).unwrap().len() == 0;
            !(n.ends_with("-shm") || empty_wal)
        })
        .map(|n| {
            let p = dir.join(&n);
            let bytes = if p.is_file() {
                std::fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            (n, bytes.len(), h.finish())
        })
        .collect()
}

#[tokio::test]
async fn writes_through_a_read_only_handle_fail_typed_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("s.db").display());
    let backup = format!("json://{}", dir.path().join("b.jsonl").display());
    step("a guarded pair with 5 logs, closed");
    let g = open_guarded_with(
        &store,
        &backup,
        GuardedOptions::default(),
        &OpenOptions::default(),
    )
    .await
    .unwrap();
    let mut last = None;
    for _ in 0..5 {
        last = Some(g.append(log()).await.unwrap());
    }
    g.close().await.unwrap();
    let sample = last.unwrap();
    // A record under a new id, valid on its own: what an import would add.
    let other = synclog::LogRecord::seal(LogId::new(6).unwrap(), sample.recorded_at, log()).unwrap();
    let before = snapshot(dir.path());

    let read_only = OpenOptions {
        read_only: true,
        ..OpenOptions::default()
    };
    step("each copy opened read-only refuses every write");
    for url in [&store, &backup] {
        let s = open_url_with(url, &read_only).await.unwrap();
        refuses_writes(&*s, &other).await;
        assert_eq!(s.last_id().await.unwrap(), LogId::new(5));
        s.close().await.unwrap();
    }
    step("so does the pair, and a repairing check");
    let g = open_guarded_with(&store, &backup, GuardedOptions::default(), &read_only)
        .await
        .unwrap();
    refuses_writes(&g, &other).await;
    assert_eq!(
        g.append_batch(vec![log()], Durability::PowerLoss)
            .await
            .map_err(|e| e.kind())
            .err(),
        Some(ErrorKind::Unsupported)
    );
    assert_eq!(
        g.check(true).await.map_err(|e| e.kind()).err(),
        Some(ErrorKind::Unsupported)
    );
    assert_eq!(
        g.checkpoint(synclog::CheckpointMode::Passive)
            .await
            .map_err(|e| e.kind())
            .err(),
        Some(ErrorKind::Unsupported)
    );
    assert!(!g.check(false).await.unwrap().found_problems());
    g.close().await.unwrap();
    step("nothing was written");
    assert_eq!(snapshot(dir.path()), before);
}

#[tokio::test]
async fn a_read_only_pair_reports_copies_that_differ_and_repairs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("s.db").display());
    let backup = format!("json://{}", dir.path().join("b.jsonl").display());
    let g = open_guarded_with(
        &store,
        &backup,
        GuardedOptions::default(),
        &OpenOptions::default(),
    )
    .await
    .unwrap();
    for _ in 0..6 {
        g.append(log()).await.unwrap();
    }
    g.close().await.unwrap();
    step("the primary loses its newest logs (5, 6)");
    let conn = rusqlite::Connection::open(dir.path().join("s.db")).unwrap();
    conn.execute("DELETE FROM logs WHERE id IN (5, 6)", []).unwrap();
    drop(conn);
    let read_only = OpenOptions {
        read_only: true,
        ..OpenOptions::default()
    };
    let g = open_guarded_with(&store, &backup, GuardedOptions::default(), &read_only)
        .await
        .unwrap();
    assert_eq!(g.open_report().restored_to_primary, 0);
    let report = g.check(false).await.unwrap();
    let missing: Vec<u64> = report.missing_in_primary.iter().map(|i| i.get()).collect();
    assert_eq!(missing, vec![5, 6]);
    assert!(!g.verify(Default::default()).await.unwrap().is_clean());
    g.close().await.unwrap();
    step("still missing: nothing was repaired");
    let primary = open_url_with(&store, &read_only).await.unwrap();
    assert_eq!(primary.last_id().await.unwrap(), LogId::new(4));
    primary.close().await.unwrap();
}
