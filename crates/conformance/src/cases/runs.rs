//! Runs and exactly-once appends: run timelines, the rules that refuse a record, scans of
//! runs, stale runs (against a clock the case sets, no sleeps), idempotency keys.

use std::collections::HashSet;

use chrono::{Duration, TimeZone, Utc};
use synclog_core::validate::MAX_KEY_BYTES;
use synclog_core::{
    Error, Filter, LogRecord, LogStore, LogStoreExt, NewLog, Run, RunScan, Status, Timestamp,
};

use super::{everything, sample, Ctx};

fn at(minute: i64) -> Timestamp {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::minutes(minute)
}

fn start(job: &str, run: &str, minute: i64) -> NewLog {
    NewLog::new(job, Status::Started).run(run).started(at(minute))
}

fn step(job: &str, run: &str, status: Status, minute: i64) -> NewLog {
    let log = NewLog::new(job, status)
        .run(run)
        .started(at(minute))
        .counts(10, 8, 2)
        .message(format!("{run} {status}"));
    match status.is_terminal() {
        true => log.finished(at(minute + 5)),
        false => log,
    }
}

async fn last_id(store: &dyn LogStore) -> Option<u64> {
    store.last_id().await.unwrap().map(|i| i.get())
}

fn field_of(err: &Error) -> &'static str {
    match err {
        Error::InvalidInput { field, .. } => field,
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

/// A run started, reported on and finished reads back as one row: its status, times,
/// counters of the terminal record and every record id, in order.
pub async fn a_run_is_started_progressed_and_finished(ctx: Ctx) {
    let (loc, store) = ctx.fresh().await;
    let d = ctx.durability();
    let first = store.append_with(start("crm", "r1", 0), d).await.unwrap();
    assert_eq!(first.run.as_deref(), Some("r1"));
    let progress = store
        .append_with(step("crm", "r1", Status::Progress, 0), d)
        .await
        .unwrap();
    let running = store.run("r1").await.unwrap().expect("the run");
    assert_eq!((running.status, running.finished), (Status::Progress, false));
    assert_eq!(running.finished_at, None);
    let end = store
        .append_with(step("crm", "r1", Status::Succeeded, 0), d)
        .await
        .unwrap();
    let run = store.run("r1").await.unwrap().expect("the run");
    assert_eq!(run.key, "r1");
    assert_eq!(run.job, "crm");
    assert_eq!((run.status, run.finished), (Status::Succeeded, true));
    assert_eq!(run.started_at, at(0));
    assert_eq!(run.finished_at, Some(at(5)));
    assert_eq!(run.duration_ms, Some(5 * 60 * 1000));
    assert_eq!((run.items_seen, run.items_written, run.items_failed), (10, 8, 2));
    assert_eq!(run.record_ids, vec![first.id, progress.id, end.id]);
    let records = store.run_records("r1").await.unwrap();
    assert_eq!(records, vec![first, progress, end]);
    assert!(records.iter().all(LogRecord::is_intact));
    assert_eq!(store.run("nope").await.unwrap(), None);
    ctx.done(loc, store).await;
}

/// After a run's terminal record, another record for that run is refused with
/// `RunFinished` naming the terminal record, and nothing is written.
pub async fn a_record_after_the_terminal_one_is_refused_and_writes_nothing(ctx: Ctx) {
    let (loc, store) = ctx.fresh().await;
    ctx.commit(
        &*store,
        vec![start("crm", "r1", 0), step("crm", "r1", Status::Failed, 1)],
    )
    .await;
    let before = everything(&*store).await;
    for status in [Status::Progress, Status::Succeeded, Status::Started] {
        let err = store
            .commit(
                vec![sample("other", 1), step("crm", "r1", status, 2)],
                ctx.durability(),
            )
            .await
            .unwrap_err();
        match &err {
            Error::RunFinished { run, status, id } => {
                assert_eq!(
                    (run.as_str(), *status, id.get()),
                    ("r1", Status::Failed, 2),
                    "{err}"
                )
            }
            other => panic!("expected RunFinished after {status}, got {other:?}"),
        }
        assert_eq!(err.kind(), synclog_core::ErrorKind::Refused);
    }
    assert_eq!(everything(&*store).await, before, "nothing was written");
    ctx.done(loc, store).await;
}

/// A finish retried the same way (status, counters, message, attributes; its times may
/// differ) returns the stored terminal record as a repeat; another status is refused.
pub async fn a_finish_retried_the_same_way_is_a_repeat(ctx: Ctx) {
    let (loc, store) = ctx.fresh().await;
    let d = ctx.durability();
    store.append_with(start("crm", "r1", 0), d).await.unwrap();
    let end = store
        .append_report(step("crm", "r1", Status::Partial, 3), d)
        .await
        .unwrap();
    assert!(!end.repeat);
    let again = store
        .append_report(step("crm", "r1", Status::Partial, 9), d)
        .await
        .unwrap();
    assert!(again.repeat, "a retried finish is a repeat");
    assert_eq!(again.record, end.record);
    let other = store
        .append_report(step("crm", "r1", Status::Succeeded, 9), d)
        .await;
    assert!(matches!(other, Err(Error::RunFinished { .. })), "{other:?}");
    assert_eq!(last_id(&*store).await, Some(end.record.id.get()));
    ctx.done(loc, store).await;
}

/// A record for an unknown run, a second start of a running run, a record of another
/// job, and progress without a run are refused as invalid input naming the field, as are a
/// `start_run` with another status than started and a `finish_run` with a status that does
/// not end a run or for an unknown run; nothing is written and no id is spent.
pub async fn run_rules_refuse_bad_timelines_naming_the_field(ctx: Ctx) {
    let (loc, store) = ctx.fresh().await;
    let d = ctx.durability();
    let kept = ctx.commit(&*store, vec![start("crm", "r1", 0)]).await;
    let cases = [
        (step("crm", "unknown", Status::Succeeded, 0), "run"),
        (step("crm", "unknown", Status::Progress, 0), "run"),
        (start("crm", "r1", 1), "run"),
        (step("erp", "r1", Status::Progress, 1), "job"),
        (NewLog::new("crm", Status::Progress), "run"),
        (NewLog::new("crm", Status::Abandoned), "run"),
        (NewLog::new("crm", Status::Started).run(""), "run"),
        (
            NewLog::new("crm", Status::Started).run("x".repeat(MAX_KEY_BYTES + 1)),
            "run",
        ),
        (NewLog::new("crm", Status::Started).run("a\nb"), "run"),
        (sample("crm", 1).idempotency_key(""), "idempotency_key"),
        (
            sample("crm", 1).idempotency_key("k".repeat(MAX_KEY_BYTES + 1)),
            "idempotency_key",
        ),
    ];
    for (bad, field) in cases {
        let err = store
            .commit(vec![sample("good", 1), bad.clone()], d)
            .await
            .unwrap_err();
        assert_eq!(field_of(&err), field, "{bad:?}: {err}");
    }
    // The run helpers refuse a start that is not `started`, and a finish that does not end
    // the run or names no run, before anything is written.
    for status in [Status::Failed, Status::Succeeded, Status::Progress] {
        let err = store
            .start_run(NewLog::new("crm", status).run("r2"), d)
            .await
            .unwrap_err();
        assert_eq!(field_of(&err), "status", "start as {status}: {err}");
    }
    let err = store
        .finish_run("r1", NewLog::new("crm", Status::Progress), d)
        .await
        .unwrap_err();
    assert_eq!(field_of(&err), "status", "{err}");
    let err = store
        .finish_run("unknown", NewLog::new("crm", Status::Succeeded), d)
        .await
        .unwrap_err();
    assert_eq!(field_of(&err), "run", "{err}");
    assert_eq!(everything(&*store).await, kept, "nothing was written");
    let next = ctx.commit(&*store, vec![sample("after", 1)]).await;
    assert_eq!(next[0].id.get(), kept[0].id.get() + 1, "no id was spent");
    ctx.done(loc, store).await;
}

/// One batch may start and finish a run; a record after the finish in the same batch, or
/// one idempotency key given twice in a batch, refuses the whole batch.
pub async fn a_batch_holds_a_whole_timeline_and_refuses_what_follows_its_end(ctx: Ctx) {
    let (loc, store) = ctx.fresh().await;
    let d = ctx.durability();
    let recs = ctx
        .commit(
            &*store,
            vec![
                start("crm", "r1", 0),
                step("crm", "r1", Status::Progress, 0),
                step("crm", "r1", Status::Succeeded, 0),
            ],
        )
        .await;
    assert_eq!(recs.len(), 3);
    let err = store
        .commit(
            vec![
                start("crm", "r2", 0),
                step("crm", "r2", Status::Skipped, 0),
                step("crm", "r2", Status::Progress, 0),
            ],
            d,
        )
        .await
        .unwrap_err();
    assert_eq!(field_of(&err), "run", "{err}");
    let twice = vec![
        sample("a", 1).idempotency_key("k"),
        sample("a", 1).idempotency_key("k"),
    ];
    let err = store.commit(twice, d).await.unwrap_err();
    assert_eq!(field_of(&err), "idempotency_key", "{err}");
    assert_eq!(everything(&*store).await, recs);
    assert_eq!(store.run("r2").await.unwrap(), None);
    ctx.done(loc, store).await;
}

/// Runs scan one row per run, ordered and paged by their first record's id in both
/// directions, filtered by job, latest status and unfinished.
pub async fn runs_scan_pages_and_filters(ctx: Ctx) {
    let (loc, store) = ctx.fresh().await;
    // r0..r6 over two jobs; even ones finish (succeeded or failed), odd ones keep running.
    for i in 0..7 {
        let job = if i % 3 == 0 { "erp" } else { "crm" };
        let run = format!("r{i}");
        ctx.commit(&*store, vec![start(job, &run, i), sample("noise", i as u64)])
            .await;
    }
    for i in (0..7).step_by(2) {
        let job = if i % 3 == 0 { "erp" } else { "crm" };
        let status = if i % 4 == 0 {
            Status::Succeeded
        } else {
            Status::Failed
        };
        ctx.commit(&*store, vec![step(job, &format!("r{i}"), status, i)])
            .await;
    }
    let keys = |runs: &[Run]| runs.iter().map(|r| r.key.clone()).collect::<Vec<_>>();
    let all_runs = store.runs(&RunScan::default()).await.unwrap();
    assert_eq!(keys(&all_runs), ["r0", "r1", "r2", "r3", "r4", "r5", "r6"]);
    for (run, want) in all_runs.iter().zip(0..) {
        assert_eq!(Some(run), store.run(&format!("r{want}")).await.unwrap().as_ref());
    }
    // Paging, ascending and descending, by the first record's id.
    for descending in [false, true] {
        let mut scan = RunScan {
            limit: 2,
            descending,
            ..RunScan::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = store.runs(&scan).await.unwrap();
            assert!(page.len() <= 2);
            let Some(last) = page.last() else { break };
            let bound = if descending { scan.before } else { scan.after };
            super::assert_pages_advance(bound, last.first_id(), descending);
            match descending {
                false => scan.after = Some(last.first_id()),
                true => scan.before = Some(last.first_id()),
            }
            seen.extend(keys(&page));
        }
        let mut want = keys(&all_runs);
        if descending {
            want.reverse();
        }
        assert_eq!(seen, want, "descending {descending}");
    }
    let crm = RunScan {
        filter: Filter::job("crm"),
        ..RunScan::default()
    };
    assert_eq!(keys(&store.runs(&crm).await.unwrap()), ["r1", "r2", "r4", "r5"]);
    let failed = RunScan {
        filter: Filter::status(Status::Failed),
        ..RunScan::default()
    };
    assert_eq!(keys(&store.runs(&failed).await.unwrap()), ["r2", "r6"]);
    let running = RunScan {
        unfinished: true,
        ..RunScan::default()
    };
    assert_eq!(keys(&store.runs(&running).await.unwrap()), ["r1", "r3", "r5"]);
    let crm_running_desc = RunScan {
        unfinished: true,
        descending: true,
        limit: 1,
        ..crm.clone()
    };
    assert_eq!(keys(&store.runs(&crm_running_desc).await.unwrap()), ["r5"]);
    ctx.done(loc, store).await;
}

/// Stale runs are those not finished and started before the cutoff the caller gives (its
/// clock); finishing or abandoning a run takes it off the list.
pub async fn stale_runs_are_unfinished_runs_started_before_the_cutoff(ctx: Ctx) {
    let (loc, store) = ctx.fresh().await;
    let d = ctx.durability();
    for (run, minute) in [("old", 0), ("older", -60), ("new", 100), ("done", -10)] {
        store.append_with(start("crm", run, minute), d).await.unwrap();
    }
    store
        .append_with(step("crm", "done", Status::Succeeded, -10), d)
        .await
        .unwrap();
    store
        .append_with(step("crm", "old", Status::Progress, 1), d)
        .await
        .unwrap();
    assert_eq!(
        stale(&*store, at(50)).await,
        HashSet::from(["old".to_string(), "older".to_string()])
    );
    assert_eq!(
        stale(&*store, at(-30)).await,
        HashSet::from(["older".to_string()])
    );
    assert_eq!(stale(&*store, at(-100)).await, HashSet::new());
    let abandoned = store
        .finish_run(
            "older",
            NewLog::new("ignored", Status::Abandoned).message("killed"),
            d,
        )
        .await
        .unwrap();
    assert_eq!(abandoned.record.job, "crm", "a finish takes the run's job");
    assert_eq!(abandoned.record.started_at, at(-60), "and its start time");
    assert_eq!(stale(&*store, at(50)).await, HashSet::from(["old".to_string()]));
    let run = store.run("older").await.unwrap().unwrap();
    assert_eq!((run.status, run.finished), (Status::Abandoned, true));
    ctx.done(loc, store).await;
}

async fn stale(store: &dyn LogStore, cutoff: Timestamp) -> HashSet<String> {
    let runs = store.runs(&RunScan::stale(cutoff)).await.unwrap();
    runs.into_iter().map(|r| r.key).collect()
}

/// A second append with a stored idempotency key and the same content returns the first
/// record, marked as a repeat, and writes nothing.
pub async fn an_idempotency_key_seen_again_returns_the_first_record(ctx: Ctx) {
    let (loc, store) = ctx.fresh().await;
    let d = ctx.durability();
    let log = sample("crm", 4).idempotency_key("sync-42");
    let first = store.append_report(log.clone(), d).await.unwrap();
    assert!(!first.repeat);
    assert_eq!(first.record.idempotency_key.as_deref(), Some("sync-42"));
    let other = ctx.commit(&*store, vec![sample("crm", 5)]).await;
    let again = store
        .commit_report(vec![sample("x", 1), log.clone()], d)
        .await
        .unwrap();
    assert_eq!(again.repeats, vec![false, true]);
    assert_eq!(again.records[1], first.record);
    assert_eq!(again.records[0].id.get(), other[0].id.get() + 1);
    assert_eq!(
        store.find_idempotent("sync-42").await.unwrap(),
        Some(first.record.clone())
    );
    assert_eq!(store.find_idempotent("nope").await.unwrap(), None);
    let stored: Vec<_> = everything(&*store)
        .await
        .into_iter()
        .filter(|r| r.idempotency_key.is_some())
        .collect();
    assert_eq!(stored, vec![first.record], "the key is stored once");
    ctx.done(loc, store).await;
}

/// Many keys asked at once (`find_idempotent_many`, how a guarded pair looks up a group)
/// answer what asking each key alone answers: every stored key's record once (a key listed
/// twice included), nothing for keys never stored, whatever characters a key holds.
pub async fn many_keys_at_once_answer_as_each_key_alone(ctx: Ctx) {
    let (loc, store) = ctx.fresh().await;
    let d = ctx.durability();
    let odd = [
        "plain",
        "with \"quotes\"",
        "back\\slash",
        "\"]",
        "ünï 💾",
        "comma,and,[brackets]",
    ];
    let mut stored = Vec::new();
    for (n, key) in odd.iter().enumerate() {
        ctx.commit(&*store, vec![sample("filler", n as u64)]).await;
        let rec = store
            .append_with(sample("crm", n as u64).idempotency_key(*key), d)
            .await
            .unwrap();
        stored.push(rec);
    }
    let mut distinct: Vec<String> = odd.iter().map(|k| k.to_string()).collect();
    distinct.extend(["never stored".to_string(), "plain ".to_string(), String::new()]);
    let mut alone = Vec::new();
    for key in &distinct {
        alone.extend(store.find_idempotent(key).await.unwrap());
    }
    // A key listed twice is answered once.
    let mut asked = distinct.clone();
    asked.extend([odd[0].to_string(), odd[3].to_string()]);
    let mut many = store.find_idempotent_many(&asked).await.unwrap();
    many.sort_by_key(|r| r.id);
    alone.sort_by_key(|r| r.id);
    assert_eq!(many, alone, "asked at once as asked alone");
    assert_eq!(many, stored, "every stored key, once, and nothing else");
    let some = vec![odd[4].to_string(), "never stored".to_string()];
    assert_eq!(
        store.find_idempotent_many(&some).await.unwrap(),
        vec![stored[4].clone()]
    );
    assert_eq!(
        store.find_idempotent_many(&[]).await.unwrap(),
        Vec::<LogRecord>::new()
    );
    ctx.done(loc, store).await;
}

/// The same idempotency key with other content is refused with `IdempotencyConflict`
/// naming the stored id; nothing of its batch is written.
pub async fn an_idempotency_key_with_other_content_is_a_conflict(ctx: Ctx) {
    let (loc, store) = ctx.fresh().await;
    let d = ctx.durability();
    let first = store
        .append_with(sample("crm", 4).idempotency_key("k1"), d)
        .await
        .unwrap();
    let before = everything(&*store).await;
    let err = store
        .commit(vec![sample("y", 1), sample("crm", 5).idempotency_key("k1")], d)
        .await
        .unwrap_err();
    match &err {
        Error::IdempotencyConflict { key, stored } => assert_eq!((key.as_str(), *stored), ("k1", first.id)),
        other => panic!("expected IdempotencyConflict, got {other:?}"),
    }
    assert_eq!(everything(&*store).await, before);
    ctx.done(loc, store).await;
}

/// Keys and runs outlive the handle: after a reopen a key still returns its record and a
/// finished run still refuses records.
pub async fn keys_and_runs_survive_a_reopen(ctx: Ctx) {
    let (loc, store) = ctx.fresh().await;
    let d = ctx.durability();
    let log = sample("crm", 1).idempotency_key("k");
    let keyed = store.append_with(log.clone(), d).await.unwrap();
    store.append_with(start("crm", "done", 0), d).await.unwrap();
    store
        .append_with(step("crm", "done", Status::Succeeded, 0), d)
        .await
        .unwrap();
    store.append_with(start("crm", "open", 0), d).await.unwrap();
    store.close().await.unwrap();
    drop(store);
    let store = ctx.reopen(&loc).await;
    let again = store.append_report(log, d).await.unwrap();
    assert!(again.repeat);
    assert_eq!(again.record, keyed);
    let late = store
        .append_with(step("crm", "done", Status::Progress, 1), d)
        .await;
    assert!(matches!(late, Err(Error::RunFinished { .. })), "{late:?}");
    store
        .append_with(step("crm", "open", Status::Succeeded, 1), d)
        .await
        .unwrap();
    let runs = store.runs(&RunScan::default()).await.unwrap();
    assert_eq!(runs.iter().filter(|r| r.finished).count(), 2);
    ctx.done(loc, store).await;
}

/// Imported records keep their run and idempotency keys, and the store answers for them
/// as for committed ones (lookups, run rows, the rules).
pub async fn imported_records_count_for_keys_and_runs(ctx: Ctx) {
    let (src_at, src) = ctx.fresh().await;
    let d = ctx.durability();
    let keyed = sample("crm", 2).idempotency_key("k");
    let recs = ctx
        .commit(
            &*src,
            vec![
                start("crm", "r1", 0),
                keyed.clone(),
                step("crm", "r1", Status::Succeeded, 0),
            ],
        )
        .await;
    ctx.done(src_at, src).await;
    let (loc, store) = ctx.fresh().await;
    store.import(recs.clone(), d).await.unwrap();
    assert_eq!(store.find_idempotent("k").await.unwrap(), Some(recs[1].clone()));
    let run = store.run("r1").await.unwrap().unwrap();
    assert_eq!(run.record_ids, vec![recs[0].id, recs[2].id]);
    assert_eq!(store.runs(&RunScan::default()).await.unwrap(), vec![run]);
    let again = store.append_report(keyed, d).await.unwrap();
    assert_eq!((again.repeat, again.record.id), (true, recs[1].id));
    let late = store.append_with(step("crm", "r1", Status::Progress, 0), d).await;
    assert!(matches!(late, Err(Error::RunFinished { .. })), "{late:?}");
    ctx.done(loc, store).await;
}

/// Concurrent appends of one idempotency key with one content store it once: every caller
/// gets the same record, exactly one of them as new.
pub async fn concurrent_appends_of_one_key_store_it_once(ctx: Ctx) {
    const TASKS: usize = 16;
    let (loc, store) = ctx.fresh().await;
    let d = ctx.durability();
    let log = sample("crm", 9).idempotency_key("once");
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (store, log) = (store.clone(), log.clone());
            tokio::spawn(async move { store.append_report(log, d).await.unwrap() })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    assert_eq!(
        answers.iter().filter(|a| !a.repeat).count(),
        1,
        "one caller wrote it"
    );
    assert!(answers.iter().all(|a| a.record == answers[0].record));
    assert_eq!(everything(&*store).await, vec![answers[0].record.clone()]);
    ctx.done(loc, store).await;
}

/// An import refused as a conflict leaves no trace: its idempotency key and its run are
/// not known afterwards (lookups, the rules and run rows all say so).
pub async fn a_conflicting_import_leaves_no_key_and_no_run(ctx: Ctx) {
    let (loc, store) = ctx.fresh().await;
    let d = ctx.durability();
    let kept = ctx.commit(&*store, vec![start("crm", "a", 0)]).await;
    // A lookup first, so that engines that keep keys in memory have them loaded.
    assert_eq!(store.find_idempotent("K").await.unwrap(), None);
    let mut other = step("crm", "ghost", Status::Succeeded, 0).idempotency_key("K");
    other.started_at = at(1);
    let offered = LogRecord::seal(kept[0].id, kept[0].recorded_at, other).unwrap();
    // With a record that is taken, in the same import.
    let fresh = LogRecord::seal(kept[0].id.next().unwrap(), kept[0].recorded_at, sample("crm", 3)).unwrap();
    let report = store.import(vec![offered, fresh], d).await.unwrap();
    assert_eq!((report.conflicts.len(), report.inserted), (1, 1), "{report:?}");
    assert_eq!(store.find_idempotent("K").await.unwrap(), None);
    assert_eq!(store.run("ghost").await.unwrap(), None);
    let ghost = store
        .append_with(step("crm", "ghost", Status::Succeeded, 2), d)
        .await;
    assert!(
        matches!(ghost, Err(Error::InvalidInput { field: "run", .. })),
        "{ghost:?}"
    );
    let keyed = store
        .append_report(sample("crm", 1).idempotency_key("K"), d)
        .await
        .unwrap();
    assert!(!keyed.repeat);
    assert_eq!(
        store.runs(&RunScan::default()).await.unwrap().len(),
        1,
        "only run a"
    );
    ctx.done(loc, store).await;
}
