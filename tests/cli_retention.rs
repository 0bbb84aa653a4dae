//! `synclog prune` on the guarded default: a dry run, an archive that holds exactly what
//! went, verify/show/check naming the prune, and bad policies refused with exit 2.

mod common;

use common::{code, no_panic, records, stdout, Env};

/// Ten logs: jobs a (odd ids) and b (even ids).
fn fill(env: &Env) {
    for i in 1..=10 {
        let job = if i % 2 == 1 { "a" } else { "b" };
        env.expect(
            0,
            &[
                "append",
                "--job",
                job,
                "--status",
                "succeeded",
                "--message",
                &format!("log {i}"),
            ],
        );
    }
}

fn ids(out: &str) -> Vec<u64> {
    records(out).iter().map(|r| r["id"].as_u64().unwrap()).collect()
}

#[test]
fn a_dry_run_prints_the_plan_and_changes_nothing() {
    let env = Env::new();
    fill(&env);
    let out = env.expect(0, &["prune", "--keep-last", "2", "--dry-run"]);
    assert!(
        out.contains("would prune 6 logs (keeping the newest 2 per job)"),
        "{out}"
    );
    assert!(out.contains("job a: 3 logs, ids 1..=5"), "{out}");
    assert!(out.contains("job b: 3 logs, ids 2..=6"), "{out}");
    assert!(out.contains("id ranges (1): 1..=6"), "{out}");
    assert!(out.contains("dry run: nothing was changed"), "{out}");
    assert_eq!(
        ids(&env.expect(0, &["list", "--json"])),
        (1..=10).collect::<Vec<_>>()
    );
}

#[test]
fn a_prune_with_an_archive_is_proven_by_verify_show_and_check() {
    let env = Env::new();
    fill(&env);
    let archive = format!("json://{}", env.path("archive.jsonl"));
    let out = env.expect(0, &["prune", "--keep-last", "2", "--archive", &archive]);
    assert!(out.contains("pruned 6 logs"), "{out}");
    assert!(out.contains("synced and read back: digest matches"), "{out}");
    assert_eq!(
        ids(&env.expect(0, &["list", "--json"])),
        (7..=10).collect::<Vec<_>>()
    );
    assert_eq!(
        ids(&env.alone(&archive, &["list", "--json"])),
        (1..=6).collect::<Vec<_>>()
    );

    // The archive restored into the store it was pruned from: nothing comes back, and
    // the summary says why.
    let restored = env.expect(0, &["restore", "--from", &archive]);
    assert!(
        restored
            .contains(": 6 logs, 0 inserted, 0 already present, 0 conflicts, 6 skipped: pruned by policy"),
        "{restored}"
    );
    let verified = env.expect(0, &["verify"]);
    assert!(verified.contains("pruned by policy: 6 logs at"), "{verified}");
    assert!(verified.contains("ids 1..=6"), "{verified}");
    assert!(verified.contains("clean"), "{verified}");
    let shown = env.run(&["show", "3"]);
    assert_eq!(code(&shown), 3);
    assert!(
        stdout(&shown).contains("log 3 was pruned at")
            && stdout(&shown).contains("keeping the newest 2 per job"),
        "{}",
        stdout(&shown)
    );
    let checked = env.expect(0, &["check"]);
    assert!(checked.contains("missing from the store (0)"), "{checked}");
    for out in [&checked, &verified] {
        assert!(
            out.contains("pruned by policy: 6 logs at")
                && out.contains("(\"keeping the newest 2 per job\"), ids 1..=6, archived in"),
            "{out}"
        );
    }
    let repaired = env.expect(0, &["check", "--repair"]);
    assert!(repaired.contains("missing from the backup (0)"), "{repaired}");
    assert!(repaired.contains("pruned by policy: 6 logs at"), "{repaired}");
    assert_eq!(
        ids(&env.expect(0, &["list", "--json"])),
        (7..=10).collect::<Vec<_>>()
    );
    // New ids continue above every pruned and kept one.
    let id = env.expect(0, &["append", "--job", "a", "--status", "succeeded"]);
    assert_eq!(id.trim(), "11");
    // The JSON report carries the marker.
    let again = env.expect(0, &["prune", "--before-id", "9", "--json"]);
    let report: serde_json::Value = serde_json::from_str(again.trim()).unwrap();
    assert_eq!(report["deleted"], 2);
    assert_eq!(report["marker"]["count"], 2);
}

#[test]
fn nothing_to_prune_says_so_and_exits_zero() {
    let env = Env::new();
    fill(&env);
    let out = env.expect(0, &["prune", "--older-than", "30d"]);
    assert!(out.starts_with("nothing to prune (older than 30d)"), "{out}");
    let verified = env.expect(0, &["verify"]);
    assert!(!verified.contains("pruned by policy"), "{verified}");
}

#[test]
fn bad_policies_exit_2_and_change_nothing() {
    let env = Env::new();
    fill(&env);
    let own = format!("json://{}", env.path("b.jsonl"));
    let store = "sqlite://s.db".to_string();
    for args in [
        vec!["prune"],
        vec!["prune", "--keep-last", "0"],
        vec!["prune", "--older-than", "0d"],
        vec!["prune", "--older-than", "-3d"],
        vec!["prune", "--older-than", "soon"],
        vec!["prune", "--keep-last", "1", "--archive", &own],
        vec!["prune", "--keep-last", "1", "--archive", &store],
    ] {
        let out = env.run(&args);
        no_panic(&out);
        assert_eq!(code(&out), 2, "{args:?}: {}", common::stderr(&out));
    }
    assert_eq!(
        ids(&env.expect(0, &["list", "--json"])),
        (1..=10).collect::<Vec<_>>()
    );
    assert!(!env.expect(0, &["verify"]).contains("pruned by policy"));
}
