//! Damage the other copy can repair, end to end: a flipped byte in a row, a damaged
//! SQLite page, a damaged store exported alone, a locked primary.

mod common;

use common::{records, Env};

/// Deletes the record lines whose id `gone` picks from the JSON-lines backup, behind the
/// store's back (header and commit lines stay).
fn drop_backup_records(env: &Env, gone: impl Fn(u64) -> bool) {
    let backup = env.path("b.jsonl");
    let kept: String = std::fs::read_to_string(&backup)
        .unwrap()
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["id"].as_u64())
                .is_none_or(|id| !gone(id))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&backup, kept).unwrap();
}

/// The message of row `id` changed in the SQLite file, its stored checksum left as it was.
fn flip_message(env: &Env, id: i64) {
    let conn = rusqlite::Connection::open(env.path("s.db")).unwrap();
    let n = conn
        .execute(
            "UPDATE logs SET message = 'X' || substr(message, 2) WHERE id = ?1",
            [id],
        )
        .unwrap();
    assert_eq!(n, 1);
}

fn message_of(json: &serde_json::Value) -> &str {
    json["message"].as_str().unwrap()
}

#[test]
fn a_flipped_byte_in_a_primary_row_is_served_intact_found_by_check_and_repaired() {
    let env = Env::new();
    env.append_logs(5);
    flip_message(&env, 3);
    // --- step: reads serve the backup's intact record
    let shown = records(&env.expect(0, &["show", "3", "--json"]));
    assert_eq!(message_of(&shown[0]), "run 3 synced");
    let listed = records(&env.expect(0, &["list", "--json"]));
    assert_eq!(listed.len(), 5);
    assert_eq!(message_of(&listed[2]), "run 3 synced");
    // --- step: check recomputes the checksums and finds it; export still copies all
    env.expect(1, &["check"]);
    env.expect(0, &["export", "--to", "json://exported.jsonl"]);
    let exported = records(&env.alone("json://exported.jsonl", &["list", "--json"]));
    assert_eq!(exported, listed);
    // --- step: check --repair replaces the damaged row from the backup
    env.expect(0, &["check", "--repair"]);
    env.expect(0, &["check"]);
    env.expect(0, &["verify"]);
    let alone = records(&env.expect(0, &["--no-backup", "show", "3", "--json"]));
    assert_eq!(message_of(&alone[0]), "run 3 synced");
}

#[test]
fn export_of_a_store_alone_with_a_damaged_record_copies_the_intact_ones_and_exits_1() {
    let env = Env::new();
    env.append_logs(4);
    flip_message(&env, 2);
    env.expect(1, &["--no-backup", "export", "--to", "json://exported.jsonl"]);
    let exported = records(&env.alone("json://exported.jsonl", &["list", "--json"]));
    let ids: Vec<u64> = exported.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![1, 3, 4]);
}

#[test]
fn a_damaged_sqlite_page_does_not_stop_the_pair_and_check_repair_rebuilds_it() {
    let env = Env::new();
    env.append_logs(12);
    env.expect(0, &["--no-backup", "checkpoint", "--mode", "truncate"]);
    // --- step: garbage over the second page (the logs table) of the primary
    let db = env.path("s.db");
    let mut bytes = std::fs::read(&db).unwrap();
    assert!(bytes.len() >= 3 * 4096, "{} bytes", bytes.len());
    bytes[4096..8192].fill(0x5A);
    std::fs::write(&db, &bytes).unwrap();
    // --- step: reads and appends go on through the backup
    assert_eq!(records(&env.expect(0, &["list", "--json"])).len(), 12);
    env.expect(
        0,
        &[
            "append",
            "--job",
            "crm",
            "--status",
            "failed",
            "--message",
            "after the damage",
        ],
    );
    assert_eq!(records(&env.expect(0, &["list", "--json"])).len(), 13);
    // --- step: verify lists the damage instead of failing
    env.expect(1, &["verify", "--deep"]);
    env.expect(1, &["check"]);
    // --- step: check --repair sets the damaged file aside and rebuilds the primary
    env.expect(0, &["check", "--repair"]);
    let aside: Vec<String> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("s.db.damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    env.expect(0, &["verify", "--deep"]);
    let alone = records(&env.expect(0, &["--no-backup", "list", "--json"]));
    assert_eq!(alone.len(), 13);
    assert_eq!(message_of(&alone[12]), "after the damage");
}

#[test]
fn an_append_with_the_primary_locked_is_acknowledged_by_the_backup_within_one_lock_wait() {
    let env = Env::new();
    env.append_logs(2);
    let holder = rusqlite::Connection::open(env.path("s.db")).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = std::time::Instant::now();
    let id = env.expect(
        0,
        &[
            "--lock-wait",
            "1",
            "append",
            "--job",
            "crm",
            "--status",
            "succeeded",
        ],
    );
    let elapsed = started.elapsed();
    assert_eq!(id.trim(), "3");
    // One lock wait (1 s), not one per attempt: the busy copy is not retried at once.
    assert!(
        elapsed < std::time::Duration::from_millis(1900),
        "took {elapsed:?}"
    );
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    env.expect(0, &["check", "--repair"]);
    assert_eq!(
        records(&env.expect(0, &["--no-backup", "list", "--json"])).len(),
        3
    );
}

#[test]
fn a_damaged_backup_header_does_not_stop_the_pair_and_check_repair_rebuilds_the_backup() {
    let env = Env::new();
    env.append_logs(3);
    let backup = env.path("b.jsonl");
    let text = std::fs::read_to_string(&backup).unwrap();
    std::fs::write(&backup, text.replacen("\"synclog\"", "\"synclXg\"", 1)).unwrap();
    // --- step: every command goes on through the primary
    assert_eq!(records(&env.expect(0, &["list", "--json"])).len(), 3);
    env.expect(0, &["append", "--job", "crm", "--status", "succeeded"]);
    env.expect(1, &["verify"]);
    env.expect(1, &["check"]);
    // --- step: check --repair keeps the damaged file aside and rebuilds the backup
    env.expect(0, &["check", "--repair"]);
    let aside = std::fs::read_dir(env.dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("b.jsonl.damaged-")
        })
        .count();
    assert_eq!(aside, 1);
    env.expect(0, &["verify"]);
    assert_eq!(
        records(&env.alone("json://b.jsonl", &["list", "--json"])).len(),
        4
    );
}

#[test]
fn a_record_damaged_in_both_copies_is_shown_flagged_and_never_passed_off_as_intact() {
    let env = Env::new();
    env.append_logs(3);
    flip_message(&env, 2);
    let backup = env.path("b.jsonl");
    let text = std::fs::read_to_string(&backup).unwrap();
    std::fs::write(&backup, text.replace("run 2 synced", "XXX 2 synced")).unwrap();
    let shown = records(&env.expect(0, &["show", "2", "--json"]));
    assert_eq!(shown[0]["intact"], serde_json::Value::Bool(false));
    let listed = records(&env.expect(0, &["list", "--json"]));
    let flags: Vec<bool> = listed.iter().map(|r| r.get("intact").is_none()).collect();
    assert_eq!(flags, vec![true, false, true]);
    // Nothing intact is left to repair it from: reported, never overwritten.
    env.expect(1, &["check", "--repair"]);
}

#[test]
fn verify_of_ids_a_trillion_apart_reports_one_missing_range() {
    // A corrupted high-water mark makes the next id 1099511627780 (ids 4..=1099511627779
    // were never handed out): verify used to list each of them and run out of memory.
    let env = Env::new();
    env.append_logs(3);
    let conn = rusqlite::Connection::open(env.path("s.db")).unwrap();
    conn.execute(
        "UPDATE meta SET value = 1099511627779 WHERE key = 'high_water'",
        [],
    )
    .unwrap();
    drop(conn);
    let id = env.expect(
        0,
        &["--no-backup", "append", "--job", "crm", "--status", "succeeded"],
    );
    assert_eq!(id.trim(), "1099511627780");
    let out = env.expect(1, &["--no-backup", "verify"]);
    let missing: Vec<&str> = out.lines().filter(|l| l.starts_with("missing:")).collect();
    assert_eq!(missing, vec!["missing: log 4..=1099511627779"]);
}

/// The newest records deleted from both copies behind the pair's back, and the pair's
/// lock file (which carries the next id) lost with them: the ids stay spent. Each copy
/// keeps its own high-water mark (SQLite's `meta`, the JSON store's `.hwm`), and the pair
/// starts above both, so the next append gets 6, never 4 again.
#[test]
fn ids_deleted_from_both_copies_with_the_lock_file_lost_are_not_handed_out_again() {
    let env = Env::new();
    env.append_logs(5);
    let conn = rusqlite::Connection::open(env.path("s.db")).unwrap();
    assert_eq!(conn.execute("DELETE FROM logs WHERE id >= 4", []).unwrap(), 2);
    drop(conn);
    drop_backup_records(&env, |id| id >= 4);
    std::fs::remove_file(env.path("s.db.guard.lock")).unwrap();

    let id = env.expect(0, &["append", "--job", "crm", "--status", "succeeded"]);
    assert_eq!(id.trim(), "6", "an id handed out before was given again");
    let listed: Vec<u64> = records(&env.expect(0, &["list", "--json"]))
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, vec![1, 2, 3, 6]);
}

/// Appends logs 1..=n (messages `run N synced`) from one process, as an app would: the
/// backup's index side file then covers every line.
fn append_in_one_process(env: &Env, n: u64) {
    let lines: String = (1..=n)
        .map(|i| format!("{{\"job\":\"crm\",\"status\":\"succeeded\",\"message\":\"run {i} synced\"}}\n"))
        .collect();
    let mut child = env
        .base()
        .args(["append", "--stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), lines.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(std::path::Path::new(&env.path("b.jsonl.idx")).exists());
}

/// A byte of a record changed in the middle of the JSON-lines backup, with its index side
/// file in place (so the open reads no line): `check --repair` must really write the
/// intact record into the backup, so that the backup alone holds it intact afterwards
/// (the primary deleted, the pair rebuilt from the backup: nothing is lost).
#[test]
fn a_damaged_backup_line_behind_its_index_is_repaired_for_real() {
    let env = Env::new();
    append_in_one_process(&env, 40);
    let backup = env.path("b.jsonl");
    let text = std::fs::read_to_string(&backup).unwrap();
    assert_eq!(text.matches("\"run 20 synced\"").count(), 1);
    // Same length, so every offset the side file holds stays right.
    std::fs::write(&backup, text.replace("\"run 20 synced\"", "\"run 20 syncXd\"")).unwrap();

    let found = env.expect(1, &["check"]);
    assert!(found.contains("20"), "{found}");
    // Repaired, then compacted (the damaged line goes aside) and compared again: clean.
    let repaired = env.expect(0, &["check", "--repair"]);
    assert!(repaired.contains("1 corrupt line(s) saved aside"), "{repaired}");

    // The backup alone (through its side file, as every open reads it) serves the intact
    // record.
    let alone = format!("json://{backup}");
    let shown = records(&env.alone(&alone, &["show", "20", "--json"]));
    assert_eq!(message_of(&shown[0]), "run 20 synced");
    assert_ne!(shown[0]["intact"], serde_json::Value::Bool(false), "{shown:?}");
    // The primary lost: the pair rebuilt from the backup holds all five, intact.
    std::fs::remove_file(env.path("s.db")).unwrap();
    let _ = std::fs::remove_file(env.path("s.db-wal"));
    let _ = std::fs::remove_file(env.path("s.db-shm"));
    let rebuilt = env.run(&["check", "--repair"]);
    assert!(!common::stderr(&rebuilt).contains("panicked"));
    let listed = records(&env.expect(0, &["list", "--limit", "100", "--json"]));
    assert_eq!(listed.len(), 40);
    assert_eq!(message_of(&listed[19]), "run 20 synced");
    // Nothing is left for compaction; all is clean.
    assert!(env.expect(0, &["compact"]).contains("nothing to clean"));
    let after = env.expect(0, &["check"]);
    assert!(after.contains("in both copies: 40"), "{after}");
    env.expect(0, &["verify"]);
}

/// A log the backup alone acknowledged (the primary was locked) is seen by every read-only
/// command before any writer repairs the primary: the reader finds the copies ending at
/// different ids with no group in flight, and reads both.
#[test]
fn a_log_acknowledged_by_the_backup_alone_is_seen_by_every_reader() {
    let env = Env::new();
    env.append_logs(2);
    let holder = rusqlite::Connection::open(env.path("s.db")).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let id = env.expect(
        0,
        &[
            "--lock-wait",
            "1",
            "append",
            "--job",
            "lk",
            "--status",
            "succeeded",
        ],
    );
    assert_eq!(id.trim(), "3");
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    // The primary still lacks it: nothing has repaired it yet.
    assert_eq!(
        records(&env.expect(0, &["--no-backup", "list", "--json"])).len(),
        2
    );

    assert_eq!(env.expect(0, &["count", "--job", "lk"]).trim(), "1");
    assert_eq!(env.expect(0, &["count"]).trim(), "3");
    let newest = records(&env.expect(0, &["list", "--desc", "--limit", "1", "--json"]));
    assert_eq!(newest[0]["id"], 3);
    let summary = env.expect(0, &["summary", "--job", "lk"]);
    assert!(summary.contains("lk"), "{summary}");
    // A follower's first page reaches it too (it starts from what the pair can read).
    let tailed = env.expect(0, &["tail", "-n", "10", "--json"]);
    assert_eq!(tailed.lines().count(), 3, "{tailed}");

    // Were a writer announcing log 3 as its group in flight (in the pair's lock file),
    // the difference would be that group, not yet acknowledged: not read.
    let lock = env.path("s.db.guard.lock");
    let saved = std::fs::read(&lock).unwrap();
    let payload = "next=4 writing=3-3";
    let line = format!(
        "synclog-pair {payload} {:08x}\n",
        crc32c::crc32c(payload.as_bytes())
    );
    std::fs::write(&lock, line).unwrap();
    assert_eq!(env.expect(0, &["count"]).trim(), "2");
    std::fs::write(&lock, saved).unwrap();
    assert_eq!(env.expect(0, &["count"]).trim(), "3");
    // Still reported, not repaired, by the readers.
    env.expect(1, &["verify"]);
    assert_eq!(
        records(&env.expect(0, &["--no-backup", "list", "--json"])).len(),
        2
    );
}

/// Records deleted from both copies leave nothing to compare, but they are lost: `check`
/// says so and exits 1, as `verify` does (it exited 0 before), with or without `--repair`.
#[test]
fn ids_missing_from_both_copies_make_check_exit_1_like_verify() {
    let env = Env::new();
    env.append_logs(6);
    let conn = rusqlite::Connection::open(env.path("s.db")).unwrap();
    assert_eq!(
        conn.execute("DELETE FROM logs WHERE id IN (3, 4)", []).unwrap(),
        2
    );
    drop(conn);
    drop_backup_records(&env, |id| matches!(id, 3 | 4));

    env.expect(1, &["verify"]);
    for args in [&["check"][..], &["check", "--repair"]] {
        let out = env.expect(1, args);
        assert!(out.contains("MISSING FROM BOTH COPIES"), "{args:?}: {out}");
        assert!(out.contains("(2)"), "{out}");
    }
}

/// The backup missed the newest logs, and one primary row no longer decodes, so the
/// primary cannot be listed and `check --repair` rebuilds it from the backup. The logs
/// only the primary held are salvaged into the backup first: nothing acknowledged is lost.
#[test]
fn rebuilding_an_unlistable_primary_keeps_the_logs_only_it_held() {
    let env = Env::new();
    env.append_logs(6);
    drop_backup_records(&env, |id| id >= 5);
    let conn = rusqlite::Connection::open(env.path("s.db")).unwrap();
    assert_eq!(
        conn.execute("UPDATE logs SET checksum = 'abc' WHERE id = 2", [])
            .unwrap(),
        1
    );
    drop(conn);

    let repaired = env.run(&["check", "--repair"]);
    assert!(!common::stderr(&repaired).contains("panicked"));
    let text = common::stdout(&repaired);
    assert!(text.contains("salvaged 2 intact logs"), "{text}");
    for copy in ["sqlite://s.db", "json://b.jsonl"] {
        let ids: Vec<u64> = records(&env.alone(copy, &["list", "--json"]))
            .iter()
            .map(|r| r["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids, (1..=6).collect::<Vec<_>>(), "{copy}");
    }
}

/// Two record lines of the JSON-lines backup swapped behind the store's back (same
/// length, so its index still points at each line): asked for one id, the backup never
/// answers with the other record. Alone it says the data is corrupt (exit 6); the pair
/// serves the record from the primary.
#[test]
fn swapped_backup_lines_never_serve_one_record_under_another_id() {
    let env = Env::new();
    append_in_one_process(&env, 300);
    let backup = env.path("b.jsonl");
    let text = std::fs::read_to_string(&backup).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let at = |id: u64| {
        lines
            .iter()
            .position(|l| l.starts_with(&format!("{{\"id\":{id},")))
            .unwrap()
    };
    let (a, b) = (at(130), at(133));
    assert_eq!(lines[a].len(), lines[b].len());
    lines.swap(a, b);
    std::fs::write(&backup, lines.join("\n") + "\n").unwrap();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_synclog"))
        .current_dir(env.dir.path())
        .env_remove("SYNCLOG_STORE")
        .env_remove("SYNCLOG_BACKUP")
        .args([
            "--no-backup",
            "--store",
            "json://b.jsonl",
            "show",
            "130",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(common::code(&out), 6, "{}", common::stdout(&out));
    assert!(
        !common::stdout(&out).contains("\"id\":133"),
        "{}",
        common::stdout(&out)
    );
    let shown = records(&env.expect(0, &["show", "130", "--json"]));
    assert_eq!(shown[0]["id"], 130);
    assert_eq!(message_of(&shown[0]), "run 130 synced");
}

/// The primary holds another record under an id than the backup (written to it alone),
/// and that record is damaged too. It is a conflict: reported, never overwritten by the
/// backup's record (which is another record, not an intact copy of this one).
#[test]
fn a_damaged_record_in_conflict_is_reported_and_never_overwritten() {
    let env = Env::new();
    env.append_logs(3);
    let conn = rusqlite::Connection::open(env.path("s.db")).unwrap();
    conn.execute_batch("DELETE FROM logs WHERE id = 3; UPDATE meta SET value = 2 WHERE key = 'high_water'")
        .unwrap();
    drop(conn);
    let id = env.alone(
        "sqlite://s.db",
        &[
            "append",
            "--job",
            "other",
            "--status",
            "failed",
            "--message",
            "theirs",
        ],
    );
    assert_eq!(id.trim(), "3");
    let conn = rusqlite::Connection::open(env.path("s.db")).unwrap();
    conn.execute("UPDATE logs SET message = 'theirS' WHERE id = 3", [])
        .unwrap();
    drop(conn);

    let out = env.expect(1, &["check", "--repair"]);
    assert!(out.contains("conflict"), "{out}");
    let conn = rusqlite::Connection::open(env.path("s.db")).unwrap();
    let (job, message): (String, String) = conn
        .query_row("SELECT job, message FROM logs WHERE id = 3", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((job.as_str(), message.as_str()), ("other", "theirS"));
}

/// Damage in a stored checksum itself (the row's fields intact) makes the copies' listed
/// checksums differ, like a conflict; but the damaged row's fields give the other copy's
/// checksum, so it is the same record, and `check --repair` mends it.
#[test]
fn a_damaged_stored_checksum_is_repaired_not_kept_as_a_conflict() {
    let env = Env::new();
    env.append_logs(3);
    let conn = rusqlite::Connection::open(env.path("s.db")).unwrap();
    assert_eq!(
        conn.execute("UPDATE logs SET checksum = '00000000' WHERE id = 2", [])
            .unwrap(),
        1
    );
    drop(conn);
    let repaired = env.expect(0, &["check", "--repair"]);
    assert!(repaired.contains("1 damaged replaced in the store"), "{repaired}");
    assert!(!repaired.contains("conflict"), "{repaired}");
    let after = env.expect(0, &["check"]);
    assert!(after.contains("in both copies: 3"), "{after}");
    env.expect(0, &["verify"]);
}

/// A BLOB where SQLite keeps a log's text is damaged data: `check` finds it, and
/// `check --repair` replaces the row from the backup (it failed on every run with
/// "Invalid column type Blob").
#[test]
fn a_blob_in_a_text_column_is_repaired_from_the_backup() {
    let env = Env::new();
    env.append_logs(3);
    let conn = rusqlite::Connection::open(env.path("s.db")).unwrap();
    assert_eq!(
        conn.execute("UPDATE logs SET message = x'ff' WHERE id = 2", [])
            .unwrap(),
        1
    );
    drop(conn);
    env.expect(1, &["check"]);
    env.expect(0, &["check", "--repair"]);
    let alone = records(&env.alone("sqlite://s.db", &["show", "2", "--json"]));
    assert_eq!(message_of(&alone[0]), "run 2 synced");
    env.expect(0, &["verify"]);
}

/// A damaged prune-marker file of the JSON-lines backup: `check --repair` sets it aside
/// with the backup's other files and rebuilds the backup from the primary, markers
/// included (it set the records aside and left the damaged markers, and the rebuild then
/// failed at every run).
#[test]
fn a_damaged_prune_marker_file_of_the_backup_is_rebuilt_with_it() {
    let env = Env::new();
    env.append_logs(6);
    env.expect(0, &["prune", "--before-id", "4"]);
    let markers = env.path("b.jsonl.prunes");
    let text = std::fs::read_to_string(&markers).unwrap();
    let damaged = text.replacen("\"count\":", "\"count\":9", 1);
    assert_ne!(damaged, text);
    std::fs::write(&markers, damaged).unwrap();
    let repaired = env.run(&["check", "--repair"]);
    assert!(!common::stderr(&repaired).contains("panicked"));
    let after = env.expect(0, &["check"]);
    // The prune is named once, from the rebuilt copy's markers; no copy lacks one.
    assert_eq!(after.matches("prune").count(), 1, "{after}");
    assert!(after.contains("pruned by policy: 3 logs at"), "{after}");
    assert!(after.contains("(\"below id 4\"), ids 1..=3"), "{after}");
    env.expect(0, &["verify"]);
    let ids: Vec<u64> = records(&env.alone("json://b.jsonl", &["list", "--json"]))
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![4, 5, 6]);
}
