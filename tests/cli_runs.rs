//! Runs and idempotency keys from the command line, on the guarded default: start, finish,
//! abandon, runs (--stale), append --run / --idempotency-key, and the stale section of
//! check, with their exit codes.

mod common;

use common::{records, stderr, Env};

/// `start` prints a run key; progress and `finish` join it; a repeated finish prints the
/// same id (a note on stderr, exit 0); another status after it is refused with exit 7 and
/// writes nothing; `runs --json` shows one row with every record id.
#[test]
fn a_run_is_started_finished_and_listed_and_a_late_record_is_refused() {
    let env = Env::new();
    let run = env.expect(0, &["start", "--job", "crm"]).trim().to_string();
    assert!(!run.is_empty());
    let progress = env.expect(
        0,
        &[
            "append", "--job", "crm", "--status", "progress", "--run", &run, "--seen", "5",
        ],
    );
    let finish = [
        "finish",
        &run,
        "--status",
        "partial",
        "--seen",
        "10",
        "--written",
        "8",
        "--failed",
        "2",
    ];
    let end = env.expect(0, &finish);
    let again = env.run(&finish);
    assert_eq!(common::code(&again), 0, "{}", stderr(&again));
    assert_eq!(common::stdout(&again), end, "the same record");
    assert!(stderr(&again).contains("stored before"), "{}", stderr(&again));
    let late = env.run(&["finish", &run, "--status", "succeeded"]);
    assert_eq!(common::code(&late), 7, "{}", stderr(&late));
    assert!(stderr(&late).contains("has finished"), "{}", stderr(&late));
    let rows = records(&env.expect(0, &["runs", "--json"]));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["key"], run.as_str());
    assert_eq!(rows[0]["status"], "partial");
    assert_eq!(rows[0]["items_written"], 8);
    let ids: Vec<u64> = rows[0]["record_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            1,
            progress.trim().parse().unwrap(),
            end.trim().parse::<u64>().unwrap()
        ]
    );
    assert_eq!(
        records(&env.expect(0, &["list", "--json"])).len(),
        3,
        "nothing else was written"
    );
    env.expect(0, &["check"]);
}

/// Bad run input is refused with exit 2 and writes nothing (a finish of an unknown run
/// with exit 3): a second start of a running key, a status that does not end a run, an empty key, a key
/// over 200 bytes or with a line break.
#[test]
fn bad_run_input_exits_2_and_writes_nothing() {
    let env = Env::new();
    env.expect(0, &["start", "--job", "crm", "--run", "r1"]);
    let long = "k".repeat(synclog::validate::MAX_KEY_BYTES + 1);
    for args in [
        vec!["start", "--job", "crm", "--run", &long],
        vec!["start", "--job", "crm", "--run", "a\nb"],
        vec!["finish", &long, "--status", "failed"],
        vec![
            "append",
            "--job",
            "crm",
            "--status",
            "succeeded",
            "--idempotency-key",
            &long,
        ],
        vec![
            "append",
            "--job",
            "crm",
            "--status",
            "succeeded",
            "--idempotency-key",
            "a\nb",
        ],
        vec!["start", "--job", "crm", "--run", "r1"],
        vec!["finish", "r1", "--status", "progress"],
        vec!["start", "--job", "crm", "--run", ""],
        vec!["append", "--job", "crm", "--status", "progress"],
        vec![
            "append",
            "--job",
            "crm",
            "--status",
            "succeeded",
            "--idempotency-key",
            "",
        ],
        vec!["runs", "--stale", "--older-than", "soon"],
    ] {
        let out = env.run(&args);
        assert_eq!(common::code(&out), 2, "{args:?}: {}", stderr(&out));
        common::no_panic(&out);
    }
    // A run the store does not hold is not found, as over HTTP (404).
    for args in [
        vec!["finish", "nope", "--status", "failed"],
        vec!["abandon", "nope", "--reason", "x"],
    ] {
        let out = env.run(&args);
        assert_eq!(common::code(&out), 3, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("no run \"nope\""), "{}", stderr(&out));
        common::no_panic(&out);
    }
    assert_eq!(
        records(&env.expect(0, &["list", "--json"])).len(),
        1,
        "only the start"
    );
}

/// The same `append --idempotency-key` run twice stores one log (the retry takes the
/// stored start time, prints the same id and notes the repeat); other content under the
/// key is refused with exit 7.
#[test]
fn a_retried_append_with_an_idempotency_key_is_stored_once() {
    let env = Env::new();
    let args = [
        "append",
        "--job",
        "orders",
        "--status",
        "succeeded",
        "--seen",
        "3",
        "--idempotency-key",
        "sync-7",
    ];
    let first = env.expect(0, &args);
    let retry = env.run(&args);
    assert_eq!(common::code(&retry), 0, "{}", stderr(&retry));
    assert_eq!(common::stdout(&retry), first);
    assert!(
        stderr(&retry).contains("idempotency key \"sync-7\""),
        "{}",
        stderr(&retry)
    );
    let other = env.run(&[
        "append",
        "--job",
        "orders",
        "--status",
        "failed",
        "--idempotency-key",
        "sync-7",
    ]);
    assert_eq!(common::code(&other), 7, "{}", stderr(&other));
    let all = records(&env.expect(0, &["list", "--json"]));
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["idempotency_key"], "sync-7");
}

/// `runs --stale` lists runs unfinished past --older-than; `check` reports them as a
/// problem (exit 1) until they are abandoned.
#[test]
fn stale_runs_are_listed_reported_by_check_and_cleared_by_abandon() {
    let env = Env::new();
    env.expect(
        0,
        &[
            "start",
            "--job",
            "crm",
            "--run",
            "old",
            "--started",
            "2026-01-01T00:00:00Z",
        ],
    );
    env.expect(0, &["start", "--job", "crm", "--run", "fresh"]);
    let stale = records(&env.expect(0, &["runs", "--stale", "--json"]));
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0]["key"], "old");
    assert_eq!(
        records(&env.expect(0, &["runs", "--stale", "--older-than", "1000w", "--json"])).len(),
        0
    );
    let report = env.expect(1, &["check"]);
    assert!(
        report.contains("stale runs") && report.contains("old"),
        "{report}"
    );
    assert!(!report.contains("fresh"), "{report}");
    env.expect(0, &["abandon", "old", "--reason", "the worker was killed"]);
    let report = env.expect(0, &["check"]);
    assert!(
        report.contains("stale runs (unfinished after 1d): none"),
        "{report}"
    );
    let old = records(&env.expect(0, &["runs", "--json", "--status", "abandoned"]));
    assert_eq!(old.len(), 1);
    assert_eq!(old[0]["message"], "the worker was killed");
}
