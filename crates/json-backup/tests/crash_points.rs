//! Crash safety through a seam, not luck: the JSON engine over `SimFs`, which keeps
//! unsynced bytes apart. The power is cut after the n-th file operation, for every n of
//! the scenario, and the unsynced bytes are dropped or torn. Every acknowledged record
//! must survive, and the file must reopen and verify clean.

use std::sync::Arc;
use synclog_core::LogStoreExt;

use synclog_core::{Checksum, Durability, LogId, LogStore, NewLog, Status, VerifyOptions};
use synclog_json::sim::{SimFs, Tear};
use synclog_json::{JsonOptions, JsonStore};

const FILE: &str = "/sim/logs.jsonl";

fn log(n: u64) -> NewLog {
    NewLog::new("crm", Status::Partial)
        .counts(n, n / 2, n % 3)
        .message(format!("run {n}"))
}

fn open(fs: &SimFs) -> synclog_core::Result<JsonStore> {
    JsonStore::open_with(FILE, JsonOptions::default(), Arc::new(fs.clone()))
}

/// Rotates on its own once the active file reaches 1000 bytes (about three records).
fn open_rotating(fs: &SimFs) -> synclog_core::Result<JsonStore> {
    let options = JsonOptions {
        rotate_after_bytes: Some(1000),
        ..JsonOptions::default()
    };
    JsonStore::open_with(FILE, options, Arc::new(fs.clone()))
}

/// The scenario: appends (single and batched, some at process level) with rotations
/// between them, a sync, a compaction, an explicit rotation, more appends. Returns what was
/// acknowledged at power-loss durability before the first failure. The store is closed
/// (its writer thread joined) before returning, as a crashed process does nothing more.
async fn scenario(fs: &SimFs) -> Vec<(LogId, Checksum)> {
    let mut acked = Vec::new();
    let Ok(store) = open_rotating(fs) else {
        return acked;
    };
    let _ = steps(&store, &mut acked).await;
    let _ = store.close().await;
    acked
}

async fn steps(store: &JsonStore, acked: &mut Vec<(LogId, Checksum)>) -> synclog_core::Result<()> {
    let mut ack = |recs: Vec<synclog_core::LogRecord>| {
        for r in recs {
            acked.push((r.id, r.checksum));
        }
    };
    for n in 0..4 {
        ack(store.commit(vec![log(n)], Durability::PowerLoss).await?);
    }
    ack(store
        .commit((10..15).map(log).collect(), Durability::PowerLoss)
        .await?);
    // Process-level commits are not acknowledged as power-loss durable until the sync.
    let pending = store.commit(vec![log(20), log(21)], Durability::Process).await?;
    store.sync(Durability::PowerLoss).await?;
    ack(pending);
    store.compact().await?;
    assert!(store.rotate().await?.is_some(), "the active file holds records");
    for n in 30..33 {
        ack(store.commit(vec![log(n)], Durability::PowerLoss).await?);
    }
    Ok(())
}

async fn check_after_crash(fs: &SimFs, acked: &[(LogId, Checksum)], what: &str) {
    let store = open(fs).unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    for (id, sum) in acked {
        let rec = store
            .get(*id)
            .await
            .unwrap_or_else(|e| panic!("{what}: reading log {id}: {e}"))
            .unwrap_or_else(|| panic!("{what}: acknowledged log {id} lost"));
        assert_eq!(rec.checksum, *sum, "{what}: log {id} changed");
    }
    // The five-log batch (runs 10..15) is all there or not there at all.
    let all = synclog_conformance::cases::everything(&store).await;
    let of_batch = all.iter().filter(|r| (10..15).contains(&r.items_seen)).count();
    assert!(
        of_batch == 0 || of_batch == 5,
        "{what}: {of_batch} of the batch's 5 logs survived"
    );
    let report = store.verify(VerifyOptions::default()).await.unwrap();
    assert!(
        report.corrupt.is_empty() && report.out_of_order.is_empty(),
        "{what}: {report:?}"
    );
    assert!(
        store.open_report().corrupt_lines.is_empty(),
        "{what}: {:?}",
        store.open_report()
    );
    // The store takes new appends after recovery.
    let next = store.commit(vec![log(99)], Durability::PowerLoss).await.unwrap();
    assert!(acked.iter().all(|(id, _)| *id < next[0].id), "{what}: id reused");
    store.close().await.unwrap();
}

#[tokio::test]
async fn every_acknowledged_record_survives_a_power_cut_at_every_operation() {
    // Count the operations of a full, uninterrupted run.
    let clean = SimFs::new();
    let all = scenario(&clean).await;
    assert_eq!(
        all.len(),
        4 + 5 + 2 + 3,
        "the scenario runs through without faults"
    );
    let segments = clean
        .paths()
        .iter()
        .filter(|p| p.to_string_lossy().contains(".seg-"))
        .count();
    assert!(
        segments >= 3,
        "the scenario rotates several times: {:?}",
        clean.paths()
    );
    let mut points = 0;
    for n in 0.. {
        let mut finished = false;
        // Tears inside a line, and after one, two or four whole lines of a group.
        for tear in [
            Tear::DropUnsynced,
            Tear::KeepPrefix(1),
            Tear::KeepPrefix(57),
            Tear::KeepPrefix(500),
            Tear::KeepPrefix(700),
            Tear::KeepPrefix(1100),
            Tear::KeepPrefix(usize::MAX),
        ] {
            let fs = SimFs::new();
            fs.cut_power_after(n);
            let acked = scenario(&fs).await;
            finished = !fs.power_is_out();
            fs.crash(tear);
            check_after_crash(&fs, &acked, &format!("power cut after op {n}, {tear:?}")).await;
            points += 1;
        }
        if finished {
            break;
        }
    }
    assert!(points > 40, "only {points} crash points were visited");
}

#[tokio::test]
async fn a_failed_fsync_is_not_acknowledged_and_its_bytes_are_cut_before_the_next_write() {
    let fs = SimFs::new();
    let store = open(&fs).unwrap();
    let first = store.commit(vec![log(1)], Durability::PowerLoss).await.unwrap();
    fs.fail_next_syncs(1);
    let err = store
        .commit(vec![log(2)], Durability::PowerLoss)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), synclog_core::ErrorKind::Io);
    let after = store.commit(vec![log(3)], Durability::PowerLoss).await.unwrap();
    assert_eq!(after[0].id.get(), 2, "the failed commit spent no id");
    store.close().await.unwrap();
    fs.crash(Tear::DropUnsynced);
    let store = open(&fs).unwrap();
    let all = synclog_conformance::cases::everything(&store).await;
    let ids: Vec<_> = all.iter().map(|r| (r.id.get(), r.items_seen)).collect();
    assert_eq!(
        ids,
        vec![(1, 1), (2, 3)],
        "the unacknowledged record is gone, not duplicated"
    );
    assert_eq!(all[0].checksum, first[0].checksum);
}
