//! `synclog append --stdin` end to end: the real binary, a guarded SQLite + JSON store.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use synclog::LogRecord;

mod common;

use common::{code, no_panic, stderr, stdout, Env};

/// How long a test waits for one answer from a running writer before it fails.
const ANSWER_DEADLINE: Duration = Duration::from_secs(60);

impl Env {
    /// Runs `append --stdin` (plus `args`) with `input` on its standard input, to the end.
    fn append_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self.spawn_stdin(args);
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        // Written from a thread, so a child that answers while it reads never blocks us both.
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        out
    }

    fn spawn_stdin(&self, args: &[&str]) -> Child {
        self.base()
            .args(["append", "--stdin"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Every stored record, by `list --json`.
    fn listed(&self) -> Vec<LogRecord> {
        let out = self.run(&["list", "--limit", "100000", "--json"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// The ids a run printed, one a line.
fn ids(o: &Output) -> Vec<u64> {
    stdout(o)
        .lines()
        .map(|l| l.parse().unwrap_or_else(|_| panic!("not an id: {l:?}")))
        .collect()
}

fn good_line(i: usize) -> String {
    format!(r#"{{"job":"job-{i}","status":"succeeded","items_seen":{i},"message":"run {i}"}}"#)
}

/// The line numbers named by `synclog: error: line N: …` lines on stderr.
fn lines_named(o: &Output) -> BTreeSet<u64> {
    stderr(o)
        .lines()
        .filter_map(|l| l.strip_prefix("synclog: error: line "))
        .filter_map(|rest| rest.split(':').next()?.parse().ok())
        .collect()
}

#[test]
fn n_good_lines_print_n_dense_ids_in_input_order_and_list_shows_them_all() {
    let env = Env::new();
    let n = 300;
    let input: String = (1..=n).map(|i| good_line(i) + "\n").collect();

    // --- step: stream the lines
    let out = env.append_stdin(&[], input.as_bytes());
    no_panic(&out);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let expected: Vec<u64> = (1..=n as u64).collect();
    assert_eq!(ids(&out), expected);

    // --- step: every one is stored, each under the id printed for its line
    let listed = env.listed();
    assert_eq!(listed.len(), n);
    for (i, rec) in (1..=n).zip(&listed) {
        assert_eq!(rec.id.get(), i as u64);
        assert_eq!(rec.job, format!("job-{i}"));
        assert_eq!(rec.items_seen, i as u64);
    }
}

#[test]
fn bad_lines_in_the_middle_are_named_by_number_write_nothing_and_exit_2() {
    let env = Env::new();
    let too_long = format!(
        r#"{{"job":"long","status":"failed","message":"{}"}}"#,
        "m".repeat(1024 * 1024)
    );
    let mut input: Vec<Vec<u8>> = vec![
        good_line(1).into_bytes(),                                   // 1
        b"not json".to_vec(),                                        // 2: not JSON
        good_line(2).into_bytes(),                                   // 3
        b"[1, 2]".to_vec(),                                          // 4: not an object
        br#"{"job":"x","status":"finished"}"#.to_vec(),              // 5: no such status
        br#"{"job":"x","status":"failed","colour":"red"}"#.to_vec(), // 6: unknown key
        Vec::new(),                                                  // 7: blank, skipped
        br#"{"job":"","status":"failed"}"#.to_vec(),                 // 8: empty job
        br#"{"job":"x","status":"failed","attrs":{"n":123456789012345678901234567890}}"#.to_vec(), // 9: rounded
        b"{\"job\":\"x\xff\",\"status\":\"failed\"}".to_vec(), // 10: not UTF-8
        too_long.into_bytes(),                                 // 11: over the limit
        br#"{"job":"x","status":"failed","items_seen":-1}"#.to_vec(), // 12: negative counter
        br#"{"job":"x","status":"failed","finished_at":"yesterday"}"#.to_vec(), // 13: not RFC 3339
        br#"{"status":"failed"}"#.to_vec(),                    // 14: no job
        b"   ".to_vec(),                                       // 15: blank, skipped
        good_line(3).into_bytes(),                             // 16
    ];
    // The last line ends without a newline and still counts.
    input.push(good_line(4).into_bytes()); // 17
    let out = env.append_stdin(&[], &input.join(&b'\n'));
    no_panic(&out);

    // --- step: exit 2, every bad line named by its number, the good ones answered
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let bad: BTreeSet<u64> = [2, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14].into();
    assert_eq!(lines_named(&out), bad, "{}", stderr(&out));
    assert_eq!(ids(&out), vec![1, 2, 3, 4]);

    // --- step: only the good lines are stored
    let jobs: Vec<String> = env.listed().into_iter().map(|r| r.job).collect();
    assert_eq!(jobs, ["job-1", "job-2", "job-3", "job-4"]);
}

/// Reads the child's stdout on a thread, one line at a time, into a channel.
fn answers(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn write_burst(stdin: &mut ChildStdin, lines: std::ops::RangeInclusive<usize>) {
    let burst: String = lines.map(|i| good_line(i) + "\n").collect();
    stdin.write_all(burst.as_bytes()).unwrap();
    stdin.flush().unwrap();
}

#[test]
fn a_long_lived_writer_prints_each_id_once_durable_without_waiting_for_the_end_of_input() {
    let env = Env::new();
    let mut child = env.spawn_stdin(&[]);
    let mut stdin = child.stdin.take().unwrap();
    let rx = answers(&mut child);

    // --- step: bursts of 1, 7 and 120 lines; each burst's ids come back while stdin stays open
    let mut next = 1;
    for burst in [1, 7, 120, 1] {
        let last = next + burst - 1;
        write_burst(&mut stdin, next..=last);
        for expected in next..=last {
            let answer = rx
                .recv_timeout(ANSWER_DEADLINE)
                .unwrap_or_else(|e| panic!("no answer for line {expected} while stdin is open: {e}"));
            assert_eq!(answer, expected.to_string());
        }
        next = last + 1;
    }

    // --- step: the end of input ends the writer cleanly, with nothing more to say
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    no_panic(&out);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        rx.recv_timeout(ANSWER_DEADLINE).is_err(),
        "an answer after the last line"
    );
    assert_eq!(env.listed().len(), next - 1);
}

#[test]
fn json_answers_are_the_stored_records_with_checksums_that_verify() {
    let env = Env::new();
    let input = concat!(
        r#"{"job":"crm","status":"partial","message":"2 rejected","attrs":{"source":"hubspot","page":3,"ratio":0.5},"#,
        r#""started_at":"2026-11-24T08:30:00Z","finished_at":"2026-11-24T08:31:00.25Z","items_seen":10,"items_written":8,"items_failed":2}"#,
        "\n",
        r#"{"job":"orders","status":"failed","message":null,"attrs":null}"#,
        "\n"
    );
    let out = env.append_stdin(&["--json"], input.as_bytes());
    no_panic(&out);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // --- step: each answer is a record whose checksum matches its fields
    let records: Vec<LogRecord> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(LogRecord::is_intact));
    let ids: Vec<u64> = records.iter().map(|r| r.id.get()).collect();
    assert_eq!(ids, [1, 2]);
    let first = &records[0];
    assert_eq!(first.job, "crm");
    assert_eq!(
        (first.items_seen, first.items_written, first.items_failed),
        (10, 8, 2)
    );
    let attrs = first.attrs_value().unwrap();
    assert_eq!(
        attrs,
        serde_json::json!({"source": "hubspot", "page": 3, "ratio": 0.5})
    );
    assert!(first.finished_at.is_some());
    assert_eq!(records[1].finished_at, None);

    // --- step: they are what the store holds
    assert_eq!(env.listed(), records);
}

/// The child's peak resident memory in KiB, from /proc.
#[cfg(target_os = "linux")]
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[cfg(target_os = "linux")]
#[test]
fn a_line_far_over_the_limit_is_refused_without_being_held_in_memory() {
    const LINE_MIB: usize = 96;
    let env = Env::new();
    let mut child = env.spawn_stdin(&[]);
    let mut stdin = child.stdin.take().unwrap();
    let rx = answers(&mut child);

    // --- step: one good line, one 96 MiB line, one good line; the writer stays alive
    write_burst(&mut stdin, 1..=1);
    stdin
        .write_all(br#"{"job":"big","status":"failed","message":""#)
        .unwrap();
    let chunk = vec![b'm'; 1024 * 1024];
    for _ in 0..LINE_MIB {
        stdin.write_all(&chunk).unwrap();
    }
    stdin.write_all(b"\"}\n").unwrap();
    write_burst(&mut stdin, 2..=2);
    for expected in ["1", "2"] {
        assert_eq!(rx.recv_timeout(ANSWER_DEADLINE).unwrap(), expected);
    }

    // --- step: the long line was never held whole (the peak stays far below its size)
    let peak_mib = peak_rss_kib(child.id()) / 1024;
    assert!(
        peak_mib < 64,
        "peak RSS {peak_mib} MiB while reading a {LINE_MIB} MiB line"
    );

    // --- step: it was refused as line 2, and the run says input was bad
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    no_panic(&out);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert_eq!(lines_named(&out), [2].into());
    assert_eq!(env.listed().len(), 2);
}

#[test]
fn stdin_with_the_flags_of_one_log_is_refused_as_usage() {
    let env = Env::new();
    let out = env.run(&["append", "--stdin", "--job", "x"]);
    no_panic(&out);
    assert_eq!(code(&out), 2);
    // Nothing was created: a read finds no store.
    assert_eq!(code(&env.run(&["list"])), 3);
}

/// Lines with an idempotency key and no start time, sent again by a rerun of the same
/// input: each is a repeat of the stored record (same ids, exit 0, nothing more stored),
/// not "other content" because the second run's stamp differs. A line whose other fields
/// differ is still refused, and the lines around it are stored.
#[test]
fn a_rerun_of_keyed_lines_without_start_times_prints_the_stored_ids() {
    let env = Env::new();
    let input = concat!(
        r#"{"job":"a","status":"succeeded","idempotency_key":"k1"}"#,
        "\n",
        r#"{"job":"b","status":"failed","items_seen":2,"idempotency_key":"k2"}"#,
        "\n",
    );
    let first = env.append_stdin(&[], input.as_bytes());
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    assert_eq!(ids(&first), vec![1, 2]);
    let again = env.append_stdin(&[], input.as_bytes());
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert_eq!(ids(&again), vec![1, 2]);
    assert_eq!(env.listed().len(), 2);

    let other = concat!(
        r#"{"job":"a","status":"failed","idempotency_key":"k1"}"#,
        "\n",
        r#"{"job":"c","status":"succeeded","idempotency_key":"k3"}"#,
        "\n",
    );
    let out = env.append_stdin(&[], other.as_bytes());
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("with other content"), "{}", stderr(&out));
    assert_eq!(lines_named(&out), BTreeSet::from([1]));
    assert_eq!(env.listed().len(), 3);
    no_panic(&out);
}
