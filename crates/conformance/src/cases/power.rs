//! Power cut: a child appends at `PowerLoss` on the power-cut file system
//! ([`crate::powercut`]) and reports each acknowledged id; the parent SIGKILLs it, cuts the
//! power (every write no `fsync` covered is dropped, or the last one torn), powers back on
//! and requires every reported log, intact.

use std::collections::BTreeMap;
use std::process::Command;

use synclog_core::{Checksum, LogId};

use super::crash::{assert_all_present, note_acknowledged, run_and_kill_within, CHILD_ENV};
use super::Ctx;
use crate::powercut::{self, Cut, REQUIRE_ENV};

/// Rounds per engine: 8 (alternately dropping and tearing), or `SYNCLOG_POWER_CUT_ROUNDS`.
pub fn rounds() -> usize {
    std::env::var("SYNCLOG_POWER_CUT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

/// Every log a child acknowledged at `PowerLoss` is stored, with its checksum, after a
/// simulated power cut that drops every write no `fsync` covered (even rounds) or keeps a
/// torn prefix of the last one (odd rounds); the store verifies clean after each.
pub async fn what_power_loss_acknowledged_survives_a_power_cut(ctx: Ctx) {
    if let Some(why) = powercut::available() {
        panic!("{why}; {REQUIRE_ENV} is set, so the power-cut case may not be skipped");
    }
    power_cut_rounds(ctx).await;
}

#[cfg(not(target_os = "linux"))]
async fn power_cut_rounds(_ctx: Ctx) {
    unreachable!("powercut::available() is Some off Linux");
}

#[cfg(target_os = "linux")]
async fn power_cut_rounds(ctx: Ctx) {
    let tmp = |what: &str| tempfile::tempdir().unwrap_or_else(|e| panic!("making the {what} directory: {e}"));
    let (backing, mountpoint) = (tmp("backing"), tmp("mount point"));
    let power_on = || {
        powercut::mount(backing.path(), mountpoint.path())
            .unwrap_or_else(|e| panic!("mounting the power-cut file system: {e}"))
    };
    let mut fs = power_on();
    let at = ctx
        .harness
        .create_in(mountpoint.path())
        .await
        .expect("harness.create_in on the power-cut file system");
    let exe = std::env::current_exe().expect("current_exe");
    let mut acked: BTreeMap<LogId, Checksum> = BTreeMap::new();
    let mut dropped = 0;
    let rounds = rounds();
    for round in 0..rounds {
        let how = if round % 2 == 0 {
            Cut::DropUnsynced
        } else {
            Cut::TearLast
        };
        // Opening through FUSE is slower than on a disk: the window is wider than the crash
        // case's, so most kills land mid-append.
        let lines = run_and_kill_within(Command::new(&exe).env(CHILD_ENV, &at.address), round, 50..600).await;
        note_acknowledged(&lines, &mut acked);
        let report = fs
            .cut(how)
            .unwrap_or_else(|e| panic!("round {round}: cutting the power: {e}"));
        eprintln!(
            "--- step: power cut round {round} ({how:?}): {} acknowledged so far; {report}",
            acked.len()
        );
        dropped += report.writes_dropped;
        fs = power_on();
        let store = ctx.reopen(&at).await;
        assert_all_present(
            &*store,
            &acked,
            &format!("power cut round {round} ({how:?}, {report})"),
        )
        .await;
        store.close().await.expect("close");
    }
    assert!(!acked.is_empty(), "no append was acknowledged in {rounds} rounds");
    // After the rounds (a first kill may land before the child made a file).
    let stored = std::fs::read_dir(backing.path()).map(|d| d.count()).unwrap_or(0);
    assert!(
        stored > 0,
        "nothing reached the power-cut file system: create_in must put the store inside the directory it is given"
    );
    eprintln!(
        "power cut: {rounds} cuts dropped {dropped} unsynced writes; {} acknowledged logs all present",
        acked.len()
    );
    drop(fs);
    ctx.harness.cleanup(&at).await.expect("cleanup");
}
