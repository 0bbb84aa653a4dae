//! Queries from the command line, on the guarded default: list with every filter flag,
//! count, summary and tail (-f across processes), and bad filters refused with exit 2.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{code, no_panic, records, stderr, Env};

/// Six logs over three jobs: (job, status, started, attrs).
fn fill(env: &Env) {
    let logs: [(&str, &str, &str, &[&str]); 6] = [
        (
            "orders",
            "succeeded",
            "2026-11-20T10:00:00Z",
            &["env=prod", "shard=1"],
        ),
        (
            "orders",
            "failed",
            "2026-11-21T10:00:00Z",
            &["env=prod", "shard=2"],
        ),
        (
            "orders",
            "failed",
            "2026-11-22T10:00:00Z",
            &["env=dev", "shard=1"],
        ),
        (
            "crm",
            "succeeded",
            "2026-11-22T11:00:00Z",
            &["env=prod", "shard=\"1\""],
        ),
        ("crm", "partial", "2026-11-23T10:00:00Z", &["env=prod"]),
        ("billing", "succeeded", "2026-11-23T12:00:00Z", &[]),
    ];
    for (job, status, started, attrs) in logs {
        let mut args = vec![
            "append",
            "--job",
            job,
            "--status",
            status,
            "--started",
            started,
            "--seen",
            "4",
            "--written",
            "3",
            "--failed",
            "1",
        ];
        for a in attrs {
            args.extend(["--attr", a]);
        }
        env.expect(0, &args);
    }
}

fn ids(stdout: &str) -> Vec<u64> {
    records(stdout)
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect()
}

/// `list` takes repeated jobs and statuses, start-time ranges (RFC 3339, dates), attribute
/// conditions compared exactly (`shard=1` is not `shard="1"`), newest-first order, recorded
/// and finished ranges, and a run key.
#[test]
fn list_filters_by_jobs_statuses_times_and_attributes() {
    let env = Env::new();
    fill(&env);
    let list = |extra: &[&str]| {
        let mut args = vec!["list", "--json"];
        args.extend(extra);
        ids(&env.expect(0, &args))
    };
    assert_eq!(list(&["--job", "orders", "--job", "billing"]), [1, 2, 3, 6]);
    assert_eq!(
        list(&["--status", "failed", "--status", "partial", "--desc"]),
        [5, 3, 2]
    );
    assert_eq!(
        list(&["--from", "2026-11-22", "--until", "2026-11-23T11:00:00Z"]),
        [3, 4, 5]
    );
    assert_eq!(list(&["--attr", "env=prod", "--attr", "shard=1"]), [1]);
    assert_eq!(list(&["--attr", "shard=\"1\""]), [4]);
    assert_eq!(
        list(&["--job", "orders", "--attr", "env=prod", "--status", "failed"]),
        [2]
    );
    assert_eq!(list(&["--recorded-from", "1h"]), [1, 2, 3, 4, 5, 6]);
    assert!(list(&["--recorded-until", "1h"]).is_empty());
    assert!(
        list(&["--finished-from", "2026-01-01"]).is_empty(),
        "none has finished_at"
    );
    // A run's records, and the finish time its terminal record carries.
    env.expect(0, &["start", "--job", "crm", "--run", "r1"]);
    env.expect(
        0,
        &["append", "--job", "crm", "--status", "progress", "--run", "r1"],
    );
    env.expect(0, &["append", "--job", "crm", "--status", "succeeded"]);
    env.expect(0, &["finish", "r1", "--status", "succeeded"]);
    assert_eq!(list(&["--run", "r1"]), [7, 8, 10]);
    assert_eq!(list(&["--run", "r1", "--status", "progress"]), [8]);
    assert!(list(&["--run", "r2"]).is_empty());
    assert_eq!(list(&["--finished-from", "1h"]), [10]);
    assert_eq!(env.expect(0, &["count", "--run", "r1"]).trim(), "3");
}

/// `count` prints the number of matching logs (`--by status`: of each status, then the
/// total); `summary` one row per job with its last status and failures since the last
/// success, and `--json` the same as objects.
#[test]
fn count_and_summary_answer_over_a_filter() {
    let env = Env::new();
    fill(&env);
    assert_eq!(env.expect(0, &["count"]).trim(), "6");
    assert_eq!(
        env.expect(0, &["count", "--status", "failed", "--json"]).trim(),
        r#"{"count":2}"#
    );
    assert_eq!(
        env.expect(0, &["count", "--attr", "env=prod", "--from", "2026-11-21"])
            .trim(),
        "3"
    );
    assert_eq!(
        env.expect(0, &["count", "--by", "status", "--job", "orders", "--job", "crm"]),
        "succeeded  2\nfailed     2\npartial    1\ntotal      5\n"
    );
    assert_eq!(
        env.expect(0, &["count", "--by", "status", "--json", "--status", "failed"])
            .trim(),
        r#"{"by_status":{"failed":2},"count":2}"#
    );
    let rows = records(&env.expect(0, &["summary", "--json"]));
    let jobs: Vec<&str> = rows.iter().map(|r| r["job"].as_str().unwrap()).collect();
    assert_eq!(jobs, ["billing", "crm", "orders"]);
    let orders = &rows[2];
    assert_eq!(orders["consecutive_failures"], 2);
    assert_eq!(orders["latest_success"]["id"], 1);
    assert_eq!(orders["counts"]["failed"], 2);
    assert_eq!(orders["items_seen"], 12);
    let table = env.expect(0, &["summary", "--job", "crm"]);
    assert!(table.contains("crm") && table.contains("partial"), "{table}");
    assert!(!table.contains("orders"), "{table}");
}

/// Bad filters exit 2 naming the flag and read nothing: an unknown status, an unparsable
/// time, --from after --until, an attribute without `=`, a limit out of range.
#[test]
fn bad_filters_exit_2_naming_the_flag() {
    let env = Env::new();
    fill(&env);
    let cases: [(&[&str], &str); 6] = [
        (&["list", "--status", "exploded"], "--status"),
        (&["count", "--from", "yesterday"], "--from"),
        (
            &["list", "--from", "2026-11-23", "--until", "2026-11-22"],
            "--from/--until",
        ),
        (&["summary", "--attr", "env"], "--attr"),
        (&["tail", "--recorded-until", "soon"], "--recorded-until"),
        (&["list", "--limit", "100001"], "limit"),
    ];
    for (args, flag) in cases {
        let out = env.run(args);
        no_panic(&out);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(flag),
            "{args:?} names {flag}: {}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty(), "{args:?} printed nothing");
    }
}

/// `tail -n 2` prints the two newest matching logs oldest first; `tail -f --json` prints
/// what other processes append afterwards, once each and in order.
#[test]
fn tail_follows_what_other_processes_append() {
    let env = Env::new();
    fill(&env);
    assert_eq!(
        ids(&env.expect(0, &["tail", "-n", "2", "--json", "--job", "orders"])),
        [2, 3]
    );
    let mut child = env
        .base()
        .args(["tail", "-f", "-n", "0", "--json", "--status", "failed"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Appends from other processes: two failures between successes.
    for status in ["succeeded", "failed", "succeeded", "failed"] {
        env.expect(0, &["append", "--job", "orders", "--status", status]);
    }
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(30);
    while got.len() < 2 && Instant::now() < end {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            got.push(line);
        }
    }
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    no_panic(&out);
    let got: Vec<u64> = got
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(got, [8, 10], "the two new failures, in order");
}
