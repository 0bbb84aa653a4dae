//! Run and idempotency keys across store handles (as separate processes would have: own
//! pools, own writer connections), and the indexed lookups against the answers of the
//! default implementation. A server is needed: `SYNCLOG_TEST_POSTGRES_URL`; without it each
//! test prints a notice and returns.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use synclog_core::memory::MemoryStore;
use synclog_core::run::select_runs;
use synclog_core::{
    Durability, Error, LogId, LogRecord, LogStore, LogStoreExt, NewLog, RunScan, Scan, Status, Timestamp,
};
use synclog_postgres::{PgOptions, PgStore};

mod common;

use common::{drop_schema, raw_client, schema, server};

fn opts(schema: &str) -> PgOptions {
    PgOptions {
        schema: schema.to_string(),
        pool_size: 2,
        ..PgOptions::default()
    }
}

/// Two handles on one new schema.
async fn two(url: &str, s: &str) -> (Arc<PgStore>, Arc<PgStore>) {
    let a = PgStore::connect(url, opts(s)).await.unwrap();
    let b = PgStore::connect(url, opts(s)).await.unwrap();
    (Arc::new(a), Arc::new(b))
}

const D: Durability = Durability::PowerLoss;

fn at(minute: i64) -> Timestamp {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::minutes(minute)
}

async fn everything(store: &dyn LogStore) -> Vec<LogRecord> {
    store.scan(&Scan::all(Scan::MAX_LIMIT)).await.unwrap()
}

/// A key committed through one handle is a repeat through the other (same record, nothing
/// written), and a conflict there with other content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_committed_through_one_store_is_a_repeat_through_another() {
    let Some(url) = server() else { return };
    let s = schema("keys");
    let (a, b) = two(&url, &s).await;
    let log = NewLog::new("crm", Status::Succeeded)
        .counts(3, 3, 0)
        .idempotency_key("k-1");
    let first = a.append_report(log.clone(), D).await.unwrap();
    assert!(!first.repeat);
    // b writes once (so its idea of the next id is its own), then meets a's key.
    b.append(NewLog::new("other", Status::Skipped)).await.unwrap();
    let again = b
        .commit_report(vec![NewLog::new("x", Status::Failed), log.clone()], D)
        .await
        .unwrap();
    assert_eq!(again.repeats, vec![false, true]);
    assert_eq!(again.records[1], first.record);
    let err = b
        .append(NewLog::new("crm", Status::Failed).idempotency_key("k-1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::IdempotencyConflict { key, stored } if key == "k-1" && *stored == first.record.id),
        "{err:?}"
    );
    assert_eq!(
        b.find_idempotent("k-1").await.unwrap(),
        Some(first.record.clone())
    );
    // And back: a key b wrote is a repeat through a.
    let from_b = b
        .append_report(log.clone().idempotency_key("k-2"), D)
        .await
        .unwrap();
    let at_a = a.append_report(log.idempotency_key("k-2"), D).await.unwrap();
    assert_eq!((at_a.repeat, at_a.record), (true, from_b.record));
    assert_eq!(everything(&*a).await.len(), 4, "k-1, other, x, k-2");
    drop_schema(&url, &s).await;
}

/// A run started through one handle takes records through the other; once finished
/// through one, the other refuses records for it (and answers the same finish as a
/// repeat).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_finished_through_one_store_refuses_records_through_another() {
    let Some(url) = server() else { return };
    let s = schema("keys");
    let (a, b) = two(&url, &s).await;
    let start = a
        .start_run(NewLog::new("crm", Status::Started).run("r").started(at(0)), D)
        .await
        .unwrap();
    b.append(NewLog::new("crm", Status::Progress).run("r").started(at(0)))
        .await
        .unwrap();
    let again = b
        .append(NewLog::new("crm", Status::Started).run("r"))
        .await
        .unwrap_err();
    assert!(
        matches!(&again, Error::InvalidInput { field: "run", .. }),
        "{again:?}"
    );
    let other_job = b
        .append(NewLog::new("erp", Status::Progress).run("r"))
        .await
        .unwrap_err();
    assert!(
        matches!(&other_job, Error::InvalidInput { field: "job", .. }),
        "{other_job:?}"
    );
    let finish = NewLog::new("", Status::Failed).message("gave up");
    let end = a.finish_run("r", finish.clone(), D).await.unwrap();
    assert!(!end.repeat);
    let late = b.append(NewLog::new("crm", Status::Progress).run("r")).await;
    match late {
        Err(Error::RunFinished { run, status, id }) => {
            assert_eq!((run.as_str(), status, id), ("r", Status::Failed, end.record.id))
        }
        other => panic!("expected RunFinished, got {other:?}"),
    }
    let repeat = b.finish_run("r", finish, D).await.unwrap();
    assert_eq!((repeat.repeat, repeat.record), (true, end.record.clone()));
    let run = b.run("r").await.unwrap().unwrap();
    assert_eq!(run.record_ids.len(), 3);
    assert_eq!(run.record_ids[0], start.record.id);
    assert_eq!((run.status, run.finished), (Status::Failed, true));
    drop_schema(&url, &s).await;
}

/// Three handles, each with several callers, append one key and finish one run at the
/// same moment, round after round: each key is stored once and each run ends once; every
/// caller gets the stored record (or, for another finish, `RunFinished`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handles_racing_on_one_key_and_one_finish_agree() {
    const HANDLES: usize = 3;
    const CALLERS: usize = 6;
    const ROUNDS: usize = 12;
    let Some(url) = server() else { return };
    let s = schema("keys");
    let mut stores = Vec::new();
    for _ in 0..HANDLES {
        stores.push(Arc::new(PgStore::connect(&url, opts(&s)).await.unwrap()));
    }
    for round in 0..ROUNDS {
        let run = format!("race-{round}");
        stores[round % HANDLES]
            .append(NewLog::new("crm", Status::Started).run(&run))
            .await
            .unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(HANDLES * CALLERS));
        let mut tasks = Vec::new();
        for (h, store) in stores.iter().enumerate() {
            for c in 0..CALLERS {
                let (store, barrier, run) = (store.clone(), barrier.clone(), run.clone());
                tasks.push(tokio::spawn(async move {
                    barrier.wait().await;
                    let keyed = NewLog::new("crm", Status::Succeeded)
                        .started(at(0))
                        .counts(1, 1, 0)
                        .idempotency_key(format!("once-{round}"));
                    let key = store.append_report(keyed, D).await;
                    // Half of the callers finish the run as succeeded, the others as failed.
                    let status = if (h + c) % 2 == 0 {
                        Status::Succeeded
                    } else {
                        Status::Failed
                    };
                    let finish = store.append_report(NewLog::new("crm", status).run(run), D).await;
                    (key, status, finish)
                }));
            }
        }
        let (mut keyed, mut finishes) = (Vec::new(), Vec::new());
        for t in tasks {
            let (key, status, finish) = t.await.unwrap();
            keyed.push(key.unwrap());
            finishes.push((status, finish));
        }
        assert_eq!(
            keyed.iter().filter(|k| !k.repeat).count(),
            1,
            "one caller wrote the key"
        );
        assert!(keyed.iter().all(|k| k.record == keyed[0].record));
        let ended: Vec<_> = finishes
            .iter()
            .filter_map(|(_, f)| f.as_ref().ok().filter(|a| !a.repeat))
            .collect();
        assert_eq!(ended.len(), 1, "one caller ended the run");
        let end = ended[0].record.clone();
        for (status, finish) in &finishes {
            match finish {
                Ok(a) => assert_eq!((a.record.clone(), *status), (end.clone(), end.status)),
                Err(Error::RunFinished { id, .. }) => {
                    assert_eq!(*id, end.id);
                    assert_ne!(*status, end.status);
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    let all = everything(&*stores[1]).await;
    assert_eq!(all.len(), ROUNDS * 3, "per round: the start, the key, the end");
    drop_schema(&url, &s).await;
}

/// Records offered for import whose idempotency key the store holds under another id are
/// refused (`IdempotencyConflict`, nothing of the import written); one key given to two
/// ids in one import is invalid input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_of_a_key_held_by_another_id_is_refused_and_writes_nothing() {
    let Some(url) = server() else { return };
    let s = schema("keys");
    let store = PgStore::connect(&url, opts(&s)).await.unwrap();
    let mem = MemoryStore::new();
    let b = Durability::Buffered;
    let offered = mem
        .commit(
            vec![
                NewLog::new("a", Status::Succeeded),
                NewLog::new("a", Status::Succeeded).idempotency_key("k"),
            ],
            b,
        )
        .await
        .unwrap();
    // The store holds "k" as log 1; the offer has it as log 2.
    store
        .append(NewLog::new("a", Status::Failed).idempotency_key("k"))
        .await
        .unwrap();
    let before = everything(&store).await;
    let err = store.import(offered.clone(), D).await.unwrap_err();
    assert!(
        matches!(&err, Error::IdempotencyConflict { key, stored } if key == "k" && stored.get() == 1),
        "{err:?}"
    );
    let err = store.repair(offered.clone(), D).await.unwrap_err();
    assert!(matches!(&err, Error::IdempotencyConflict { .. }), "{err:?}");
    assert_eq!(everything(&store).await, before);
    let mut twice = offered[1].clone();
    twice.id = LogId::new(7).unwrap();
    twice.checksum = twice.compute_checksum();
    let err = store
        .import(vec![offered[1].clone(), twice], D)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::InvalidInput {
                field: "idempotency_key",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(everything(&store).await, before);
    // The same record under the same id is already present, as before keys.
    let same = store.import(before.clone(), D).await.unwrap();
    assert_eq!(same.already_present, 1);
    drop_schema(&url, &s).await;
}

/// What the default implementation of `LogStore::runs` answers: every record (`all`, in
/// id order) grouped by run.
fn runs_by_scanning(all: &[LogRecord], scan: &RunScan) -> Vec<synclog_core::Run> {
    let mut by_run: HashMap<String, Vec<LogRecord>> = HashMap::new();
    for r in all {
        if let Some(k) = r.run.clone() {
            by_run.entry(k).or_default().push(r.clone());
        }
    }
    let limit = Scan {
        limit: scan.limit,
        ..Scan::default()
    }
    .effective_limit()
    .unwrap();
    select_runs(by_run, scan, limit)
}

/// Every combination of the filters of `RunScan` around `mid` (an id) and `cutoff`.
fn scans(mid: LogId, cutoff: Timestamp) -> Vec<RunScan> {
    let mut out = Vec::new();
    for after in [None, Some(mid)] {
        for before in [None, Some(LogId::new(mid.get() + 12).unwrap())] {
            for job in [None, Some("a".to_string())] {
                for status in [
                    None,
                    Some(Status::Started),
                    Some(Status::Progress),
                    Some(Status::Succeeded),
                    Some(Status::Abandoned),
                ] {
                    for unfinished in [false, true] {
                        for started_before in [None, Some(cutoff)] {
                            for (limit, descending) in [(0, false), (0, true), (2, false), (3, true)] {
                                out.push(RunScan {
                                    after,
                                    before,
                                    filter: synclog_core::query::Filter {
                                        jobs: job.iter().cloned().collect(),
                                        statuses: status.into_iter().collect(),
                                        ..Default::default()
                                    },
                                    unfinished,
                                    started_before,
                                    limit,
                                    descending,
                                });
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

async fn same_answers(store: &PgStore, what: &str) {
    let all = everything(store).await;
    let mid = all[all.len() / 3].id;
    for scan in scans(mid, at(30)) {
        assert_eq!(
            store.runs(&scan).await.unwrap(),
            runs_by_scanning(&all, &scan),
            "{what}: {scan:?}"
        );
    }
    let mut keys: Vec<String> = all.iter().filter_map(|r| r.run.clone()).collect();
    keys.dedup();
    keys.push("unknown".into());
    for k in keys {
        let records: Vec<LogRecord> = all
            .iter()
            .filter(|r| r.run.as_deref() == Some(&k))
            .cloned()
            .collect();
        assert_eq!(store.run_records(&k).await.unwrap(), records, "{what}: {k}");
    }
    for r in all.iter().filter(|r| r.idempotency_key.is_some()) {
        let key = r.idempotency_key.as_deref().unwrap();
        assert_eq!(
            store.find_idempotent(key).await.unwrap().as_ref(),
            Some(r),
            "{what}"
        );
    }
}

/// The indexed `runs`, `run_records` and `find_idempotent` answer what reading every record
/// answers, for every combination of filters: after commits, after an import that brings
/// runs out of id order, after records are deleted and changed behind the store's back,
/// and after a repair puts them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_lookups_answer_as_reading_every_record() {
    let Some(url) = server() else { return };
    let s = schema("keys");
    let store = PgStore::connect(&url, opts(&s)).await.unwrap();
    // Made elsewhere (ids 1..), imported newest page first: runs arrive out of id order.
    let mem = MemoryStore::new();
    let b = Durability::Buffered;
    let mut made = Vec::new();
    for i in 0..6i64 {
        let job = if i % 2 == 0 { "a" } else { "b" };
        let run = format!("i{i}");
        made.extend(
            mem.commit(
                vec![
                    NewLog::new(job, Status::Started).run(&run).started(at(i * 10)),
                    NewLog::new(job, Status::Succeeded).idempotency_key(format!("ik{i}")),
                ],
                b,
            )
            .await
            .unwrap(),
        );
    }
    for i in 0..6i64 {
        let job = if i % 2 == 0 { "a" } else { "b" };
        let status = [Status::Progress, Status::Succeeded, Status::Abandoned][i as usize % 3];
        made.extend(
            mem.commit(
                vec![NewLog::new(job, status).run(format!("i{i}")).started(at(i * 10))],
                b,
            )
            .await
            .unwrap(),
        );
    }
    let (early, late) = made.split_at(made.len() / 2);
    let mut late = late.to_vec();
    late.reverse();
    assert_eq!(store.import(late, D).await.unwrap().inserted, 9);
    assert_eq!(store.import(early.to_vec(), D).await.unwrap().inserted, 9);
    same_answers(&store, "after the import").await;

    // Committed here: new runs, and the imported ones that are still running go on.
    for i in 0..6i64 {
        let job = if i % 3 == 0 { "b" } else { "a" };
        store
            .append(
                NewLog::new(job, Status::Started)
                    .run(format!("c{i}"))
                    .started(at(i * 7)),
            )
            .await
            .unwrap();
        if i % 2 == 1 {
            store
                .append(
                    NewLog::new(job, Status::Progress)
                        .run(format!("c{i}"))
                        .started(at(i * 7)),
                )
                .await
                .unwrap();
        }
        if i % 3 == 2 {
            store
                .append(
                    NewLog::new(job, Status::Succeeded)
                        .run(format!("c{i}"))
                        .started(at(i * 7)),
                )
                .await
                .unwrap();
        }
    }
    for run in ["i0", "i3"] {
        store
            .finish_run(run, NewLog::new("", Status::Abandoned), D)
            .await
            .unwrap();
    }
    same_answers(&store, "after commits").await;

    // Behind the store's back: the terminal record of a run deleted, the first record of
    // another deleted, a record moved to another run, a status changed.
    let all = everything(&store).await;
    let find = |run: &str, pick: fn(&[&LogRecord]) -> LogId| {
        let recs: Vec<&LogRecord> = all.iter().filter(|r| r.run.as_deref() == Some(run)).collect();
        pick(&recs)
    };
    let i1_end = find("i1", |r| r[r.len() - 1].id);
    let c2_start = find("c2", |r| r[0].id);
    let c5_last = find("c5", |r| r[r.len() - 1].id);
    let c1_last = find("c1", |r| r[r.len() - 1].id);
    let admin = raw_client(&url).await;
    admin
        .batch_execute(&format!(
            "DELETE FROM {s}.logs WHERE id IN ({i1_end}, {c2_start});
             UPDATE {s}.logs SET run_key = 'moved' WHERE id = {c5_last};
             UPDATE {s}.logs SET status = 'failed' WHERE id = {c1_last};"
        ))
        .await
        .unwrap();
    same_answers(&store, "after changes behind its back").await;
    let report = store
        .repair(
            all.iter()
                .filter(|r| [i1_end, c2_start, c5_last, c1_last].contains(&r.id))
                .cloned()
                .collect(),
            D,
        )
        .await
        .unwrap();
    assert_eq!((report.inserted, report.replaced), (2, 2), "{report:?}");
    assert_eq!(everything(&store).await, all);
    same_answers(&store, "after the repair").await;
    drop_schema(&url, &s).await;
}

/// Callers of one handle share transactions (group commit): a batch the rules refuse gets
/// its error and spends no id, and the batches grouped with it are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_batch_does_not_stop_the_batches_grouped_with_it() {
    const CALLERS: usize = 48;
    let Some(url) = server() else { return };
    let s = schema("keys");
    let store = Arc::new(PgStore::connect(&url, opts(&s)).await.unwrap());
    store
        .append(NewLog::new("crm", Status::Started).run("done"))
        .await
        .unwrap();
    let end = store
        .append(NewLog::new("crm", Status::Failed).run("done"))
        .await
        .unwrap();
    let held = store
        .append(
            NewLog::new("crm", Status::Skipped)
                .started(at(0))
                .idempotency_key("held"),
        )
        .await
        .unwrap();
    let (groups_before, _, _) = store.stats();
    let barrier = Arc::new(tokio::sync::Barrier::new(CALLERS));
    let tasks: Vec<_> = (0..CALLERS)
        .map(|i| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let log = match i % 3 {
                    0 => NewLog::new("crm", Status::Progress).run("done"),
                    1 => NewLog::new("crm", Status::Failed)
                        .started(at(0))
                        .idempotency_key("held"),
                    _ => NewLog::new("crm", Status::Succeeded).counts(i as u64, 0, 0),
                };
                (
                    i,
                    store
                        .commit_report(vec![NewLog::new("crm", Status::Succeeded), log], D)
                        .await,
                )
            })
        })
        .collect();
    let mut written = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (i, Ok(done)) => {
                assert_eq!(i % 3, 2, "{done:?}");
                assert_eq!(done.repeats, vec![false, false]);
                written.extend(done.records.iter().map(|r| r.id.get()));
            }
            (i, Err(Error::RunFinished { id, .. })) => assert_eq!((i % 3, id), (0, end.id)),
            (i, Err(Error::IdempotencyConflict { stored, .. })) => assert_eq!((i % 3, stored), (1, held.id)),
            (_, Err(e)) => panic!("{e}"),
        }
    }
    let (groups_after, _, _) = store.stats();
    assert!(
        groups_after - groups_before < CALLERS as u64,
        "callers shared transactions ({} groups for {CALLERS} commits)",
        groups_after - groups_before
    );
    written.sort_unstable();
    let first = held.id.get() + 1;
    assert_eq!(
        written,
        (first..first + written.len() as u64).collect::<Vec<_>>(),
        "no id spent"
    );
    assert_eq!(written.len(), 2 * CALLERS / 3);
    assert_eq!(everything(&*store).await.len(), 3 + written.len());
    drop_schema(&url, &s).await;
}
