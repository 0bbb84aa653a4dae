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
    let level = store.capabilities().strongest_durability();
    let mut out = std::io::stdout().lock();
    let mut n = 0u64;
    loop {
        n += 1;
        match store.append_with(sample("crash", n), level).await {
            Ok(rec) => {
                if writeln!(out, "{} {}", rec.id, rec.checksum)
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
    }
}

/// Every id a SIGKILLed child acknowledged is stored with the same checksum after a
/// reopen, and the store verifies clean, over many random kill moments.
pub async fn acknowledged_appends_survive_sigkill(ctx: Ctx) {
    let at = ctx.harness.create().await.expect("create");
    let exe = std::env::current_exe().expect("current_exe");
    let mut acked: BTreeMap<LogId, Checksum> = BTreeMap::new();
    let rounds = rounds();
    let mut kills = 0;
    for round in 0..rounds {
        eprintln!("--- step: crash round {round}");
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, &at.address)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn crash child");
        let stdout = child.stdout.take().expect("child stdout");
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => lines.push(l),
                    Err(_) => break,
                }
            }
            lines
        });
        // Random kill moment: sometimes while it is still opening, mostly mid-append.
        let delay = Duration::from_millis(fastrand::u64(5..200));
        tokio::time::sleep(delay).await;
        let status = child.try_wait().expect("try_wait");
        if let Some(status) = status {
            panic!("round {round}: crash child exited by itself ({status}); see its stderr above");
        }
        child.kill().expect("SIGKILL the child");
        child.wait().expect("reap the child");
        kills += 1;
        let lines = reader.join().expect("reader thread");
        for line in lines {
            // Only whole lines count: a torn last line was never fully reported.
            let mut parts = line.split(' ');
            let (Some(id), Some(sum), None) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let (Ok(id), Ok(sum)) = (id.parse::<LogId>(), sum.parse::<Checksum>()) else {
                continue;
            };
            acked.insert(id, sum);
        }
        let store = ctx.reopen(&at).await;
        for (id, sum) in &acked {
            let rec = store
                .get(*id)
                .await
                .expect("get after crash")
                .unwrap_or_else(|| panic!("round {round}: acknowledged log {id} is gone"));
            assert_eq!(rec.checksum, *sum, "round {round}: log {id} changed");
            assert!(rec.is_intact(), "round {round}: log {id} is damaged");
        }
        let report = store.verify(VerifyOptions::default()).await.expect("verify");
        assert!(
            report.corrupt.is_empty() && report.out_of_order.is_empty(),
            "round {round}: {report:?}"
        );
        // The last id may belong to an append the child never reported; nothing may be missing
        // below the acknowledged ones.
        assert!(report.missing.is_empty(), "round {round}: {report:?}");
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
