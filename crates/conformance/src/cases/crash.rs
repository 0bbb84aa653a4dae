//! Crash: a child process appends without pause at the strongest durability and reports
//! each acknowledged id; the parent kills it with SIGKILL at random moments, reopens the
//! store and checks that every acknowledged id is there with its checksum.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use synclog_core::{Checksum, LogId, LogStoreExt, VerifyOptions};

use super::{sample, Ctx};
use crate::harness::{Harness, Location};

/// The environment variable that puts the test binary in crash-child mode.
pub const CHILD_ENV: &str = "SYNCLOG_CRASH_CHILD";

/// With [`CHILD_ENV`]: the child appends [`keyed`] logs from this number on, and prints
/// `id checksum n` after each acknowledgement.
pub const KEYED_ENV: &str = "SYNCLOG_CRASH_KEYED_FROM";

/// The `n`th log of the idempotency crash case: the same content every time it is built,
/// under idempotency key `crash-n`.
pub fn keyed(n: u64) -> synclog_core::NewLog {
    let at = chrono::DateTime::from_timestamp(1_767_225_600 + n as i64, 0).unwrap_or_default();
    synclog_core::NewLog::new("crash-keyed", synclog_core::Status::Succeeded)
        .started(at)
        .counts(n, n, 0)
        .message(format!("keyed {n}"))
        .idempotency_key(format!("crash-{n}"))
}

/// With [`CHILD_ENV`]: the child commits each log at the weakest level the engine takes,
/// then calls `sync` at the level that survives a process crash, and only then reports it.
pub const SYNC_ENV: &str = "SYNCLOG_CRASH_SYNC";

/// The weakest commit level an engine takes, and the level whose `sync` must make what
/// was committed survive a killed process (`Process`, or the strongest the engine has
/// when it has nothing in between).
fn sync_levels(caps: &synclog_core::Capabilities) -> (synclog_core::Durability, synclog_core::Durability) {
    use synclog_core::Durability;
    let weakest = caps
        .durability
        .iter()
        .copied()
        .min()
        .unwrap_or(Durability::Buffered);
    let hook = if caps.durability.contains(&Durability::Process) {
        Durability::Process
    } else {
        caps.strongest_durability()
    };
    (weakest, hook)
}

/// Rounds per engine: 25, or `SYNCLOG_CRASH_ROUNDS`.
pub fn rounds() -> usize {
    std::env::var("SYNCLOG_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25)
}

/// The child's side: open the store at `address`, append forever, print `id checksum`
/// after each acknowledgement.
pub async fn child_main(harness: &dyn Harness, address: &str) -> ! {
    let at = Location::at(address);
    let store = match harness.open(&at).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("crash child: cannot open {address}: {e}");
            std::process::exit(3)
        }
    };
    if std::env::var_os(super::retention::PRUNE_ENV).is_some() {
        super::retention::prune_child_main(store).await;
    }
    let level = store.capabilities().strongest_durability();
    let mut out = std::io::stdout().lock();
    // One loop for the three kinds of child: plain appends at the strongest level, keyed
    // appends (`n` reported too), or appends at the weakest level each followed by `sync`.
    let synced = std::env::var_os(SYNC_ENV)
        .is_some()
        .then(|| sync_levels(&store.capabilities()));
    let keyed_from = std::env::var(KEYED_ENV).ok().and_then(|v| v.parse::<u64>().ok());
    let mut n = keyed_from.unwrap_or(1);
    loop {
        let (log, tail) = match (keyed_from, synced) {
            (Some(_), _) => (keyed(n), format!(" {n}")),
            (None, Some(_)) => (sample("crash-sync", n), String::new()),
            (None, None) => (sample("crash", n), String::new()),
        };
        let acked = async {
            let rec = store
                .append_with(log, synced.map_or(level, |(weakest, _)| weakest))
                .await?;
            if let Some((_, hook)) = synced {
                store.sync(hook).await?;
            }
            Ok::<_, synclog_core::Error>(rec)
        };
        match acked.await {
            Ok(rec) => {
                if writeln!(out, "{} {}{tail}", rec.id, rec.checksum)
                    .and_then(|_| out.flush())
                    .is_err()
                {
                    std::process::exit(0);
                }
            }
            Err(e) => {
                eprintln!("crash child: append failed: {e}");
                std::process::exit(4)
            }
        }
        n += 1;
    }
}

/// Starts the crash child `command`, SIGKILLs it at a random moment (sometimes while it
/// is still opening, mostly mid-append) and returns the lines it printed before. A child
/// that exited by itself fails the case.
async fn run_and_kill(command: &mut Command, round: usize) -> Vec<String> {
    run_and_kill_within(command, round, 5..200).await
}

/// [`run_and_kill`] with the kill at a random moment `within` milliseconds of the start.
pub(crate) async fn run_and_kill_within(
    command: &mut Command,
    round: usize,
    within: std::ops::Range<u64>,
) -> Vec<String> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn crash child");
    let stdout = child.stdout.take().expect("child stdout");
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(|l| l.ok())
            .collect::<Vec<_>>()
    });
    tokio::time::sleep(Duration::from_millis(fastrand::u64(within))).await;
    if let Some(status) = child.try_wait().expect("try_wait") {
        panic!("round {round}: crash child exited by itself ({status}); see its stderr above");
    }
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    reader.join().expect("reader thread")
}

/// Every id a SIGKILLed child acknowledged is stored with the same checksum after a
/// reopen, and the store verifies clean, over many random kill moments.
pub async fn acknowledged_appends_survive_sigkill(ctx: Ctx) {
    reported_appends_survive_sigkill(ctx, false).await;
}

/// A child commits each log at the engine's weakest level, calls `sync` at the level that
/// survives a killed process, and only then reports the log; SIGKILLed at random moments,
/// every log it reported is stored after a reopen. (An engine whose `sync` does not flush
/// what the weakest level keeps in its own buffers loses them here.)
pub async fn what_sync_covered_survives_sigkill(ctx: Ctx) {
    reported_appends_survive_sigkill(ctx, true).await;
}

async fn reported_appends_survive_sigkill(ctx: Ctx, through_sync: bool) {
    let at = ctx.harness.create().await.expect("create");
    let exe = std::env::current_exe().expect("current_exe");
    let mut acked: BTreeMap<LogId, Checksum> = BTreeMap::new();
    let rounds = rounds();
    let mut kills = 0;
    for round in 0..rounds {
        eprintln!(
            "--- step: crash round {round}{}",
            if through_sync { " (through sync)" } else { "" }
        );
        let mut child = Command::new(&exe);
        child.env(CHILD_ENV, &at.address);
        if through_sync {
            child.env(SYNC_ENV, "1");
        }
        let lines = run_and_kill(&mut child, round).await;
        kills += 1;
        note_acknowledged(&lines, &mut acked);
        let store = ctx.reopen(&at).await;
        assert_all_present(&*store, &acked, &format!("round {round}")).await;
        store.close().await.expect("close");
    }
    assert_eq!(kills, rounds);
    assert!(!acked.is_empty(), "no append was acknowledged in {rounds} rounds");
    eprintln!(
        "crash: {kills} kills, {} acknowledged logs all present",
        acked.len()
    );
    ctx.harness.cleanup(&at).await.expect("cleanup");
}

/// Adds the `id checksum` lines a child printed to `acked`. Only whole lines count: a torn
/// last line was never fully reported.
pub(crate) fn note_acknowledged(lines: &[String], acked: &mut BTreeMap<LogId, Checksum>) {
    for line in lines {
        let mut parts = line.split(' ');
        let (Some(id), Some(sum), None) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let (Ok(id), Ok(sum)) = (id.parse::<LogId>(), sum.parse::<Checksum>()) else {
            continue;
        };
        acked.insert(id, sum);
    }
}

/// Every log of `acked` is in `store`, intact, with its checksum, and the store verifies
/// clean with nothing missing (`when` names the moment, for messages).
pub(crate) async fn assert_all_present(
    store: &dyn synclog_core::LogStore,
    acked: &BTreeMap<LogId, Checksum>,
    when: &str,
) {
    for (id, sum) in acked {
        let rec = store
            .get(*id)
            .await
            .expect("get after crash")
            .unwrap_or_else(|| panic!("{when}: acknowledged log {id} is gone"));
        assert_eq!(rec.checksum, *sum, "{when}: log {id} changed");
        assert!(rec.is_intact(), "{when}: log {id} is damaged");
    }
    let report = store.verify(VerifyOptions::default()).await.expect("verify");
    assert!(
        report.corrupt.is_empty() && report.out_of_order.is_empty(),
        "{when}: {report:?}"
    );
    // The last id may belong to an append the child never reported; nothing may be missing
    // below the acknowledged ones.
    assert!(report.missing.is_empty(), "{when}: {report:?}");
}

/// A child that is SIGKILLed and reaped when dropped: a case cut short (its deadline)
/// leaves no process behind.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How long a child takes from its start to its first acknowledged append on a fresh
/// location: the window in which its first open (the store's creation) runs.
async fn time_to_first_append(ctx: &Ctx, exe: &std::path::Path) -> Duration {
    let at = ctx.harness.create().await.expect("create");
    let began = std::time::Instant::now();
    let mut child = KillOnDrop(
        Command::new(exe)
            .env(CHILD_ENV, &at.address)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn crash child"),
    );
    let stdout = child.0.stdout.take().expect("child stdout");
    let first = tokio::task::spawn_blocking(move || BufReader::new(stdout).lines().next())
        .await
        .expect("reader");
    let took = began.elapsed();
    drop(child);
    assert!(
        matches!(first, Some(Ok(_))),
        "the crash child acknowledged nothing on a fresh location; see its stderr above"
    );
    ctx.harness.cleanup(&at).await.expect("cleanup");
    took
}

/// A store whose very first open (its creation) a SIGKILL cut at any moment opens clean
/// afterwards, verifies clean and takes appends: over many rounds, each on a fresh
/// location, each kill at a random moment of the window from the child's start to its
/// first acknowledged append.
pub async fn a_kill_during_the_first_create_leaves_a_store_that_opens(ctx: Ctx) {
    let exe = std::env::current_exe().expect("current_exe");
    let window = time_to_first_append(&ctx, &exe).await;
    let window_ms = (window.as_millis() as u64).max(2);
    let rounds = rounds();
    for round in 0..rounds {
        eprintln!("--- step: first-create kill round {round} (window {window_ms} ms)");
        let at = ctx.harness.create().await.expect("create");
        let child = KillOnDrop(
            Command::new(&exe)
                .env(CHILD_ENV, &at.address)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn crash child"),
        );
        let delay = Duration::from_millis(fastrand::u64(0..=window_ms));
        tokio::time::sleep(delay).await;
        drop(child); // SIGKILLed and reaped
        let store = ctx.harness.open(&at).await.unwrap_or_else(|e| {
            panic!("round {round}: the store whose creation was killed after {delay:?} does not open: {e}")
        });
        let report = store.verify(VerifyOptions::default()).await.expect("verify");
        assert!(
            report.corrupt.is_empty() && report.out_of_order.is_empty() && report.missing.is_empty(),
            "round {round} (killed after {delay:?}): {report:?}"
        );
        let before = store.last_id().await.expect("last_id");
        let rec = store
            .append_with(sample("after-create-kill", 1), ctx.durability())
            .await
            .unwrap_or_else(|e| panic!("round {round} (killed after {delay:?}): append: {e}"));
        assert!(
            before.is_none_or(|b| rec.id > b),
            "round {round}: id {} not above {before:?}",
            rec.id
        );
        ctx.done(at, store).await;
    }
}

/// A child appends logs with idempotency keys and is SIGKILLed at random moments; the
/// parent retries every key whose acknowledgement it did not see (the one in flight).
/// Afterwards every key is stored exactly once, every acknowledged record is there, and a
/// retry of an acknowledged key is a repeat with the same id.
pub async fn idempotent_appends_retried_after_sigkill_are_stored_once(ctx: Ctx) {
    let at = ctx.harness.create().await.expect("create");
    let exe = std::env::current_exe().expect("current_exe");
    let mut acked: BTreeMap<u64, (LogId, Checksum)> = BTreeMap::new();
    let rounds = rounds().div_ceil(2);
    let mut next = 1u64;
    let mut retried_repeats = 0;
    for round in 0..rounds {
        eprintln!("--- step: keyed crash round {round}");
        let mut child = Command::new(&exe);
        child.env(CHILD_ENV, &at.address).env(KEYED_ENV, next.to_string());
        let lines = run_and_kill(&mut child, round).await;
        let mut last = next - 1;
        for line in lines {
            let parts: Vec<&str> = line.split(' ').collect();
            let [id, sum, n] = parts.as_slice() else { continue };
            let (Ok(id), Ok(sum), Ok(n)) = (id.parse::<LogId>(), sum.parse::<Checksum>(), n.parse::<u64>())
            else {
                continue;
            };
            acked.insert(n, (id, sum));
            last = last.max(n);
        }
        // The child appends one log at a time: only `last + 1` can be in flight. Retry it
        // as the app would, and one acknowledged key too (it must come back as a repeat).
        let store = ctx.reopen(&at).await;
        let level = ctx.durability();
        let retry = store.append_report(keyed(last + 1), level).await.expect("retry");
        assert_eq!(
            retry.record.idempotency_key.as_deref(),
            Some(format!("crash-{}", last + 1).as_str())
        );
        retried_repeats += usize::from(retry.repeat);
        acked.insert(last + 1, (retry.record.id, retry.record.checksum));
        if last >= 1 {
            let again = store.append_report(keyed(last), level).await.expect("repeat");
            assert!(
                again.repeat,
                "round {round}: an acknowledged key came back as new"
            );
            assert_eq!(
                (again.record.id, again.record.checksum),
                acked[&last],
                "round {round}"
            );
        }
        next = last + 2;
        let all = super::everything(&*store).await;
        let mut per_key = BTreeMap::new();
        for rec in &all {
            if let Some(k) = &rec.idempotency_key {
                *per_key.entry(k.clone()).or_insert(0) += 1;
            }
        }
        assert!(
            per_key.values().all(|c| *c == 1),
            "round {round}: a key stored twice: {per_key:?}"
        );
        for (n, (id, sum)) in &acked {
            let rec = store
                .get(*id)
                .await
                .expect("get")
                .unwrap_or_else(|| panic!("round {round}: log {id} (key {n}) is gone"));
            assert_eq!(rec.checksum, *sum, "round {round}: log {id} changed");
        }
        assert_eq!(
            per_key.len(),
            acked.len(),
            "round {round}: every key once, nothing else"
        );
        store.close().await.expect("close");
    }
    eprintln!(
        "keyed crash: {rounds} kills, {} keys stored once each, {retried_repeats} retries were repeats",
        acked.len()
    );
    ctx.harness.cleanup(&at).await.expect("cleanup");
}
