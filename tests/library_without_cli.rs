//! The library as an app uses it, built the way an app depends on it:
//! `synclog = { default-features = false, features = ["sqlite", "json"] }`. CI runs this
//! file with exactly those features (`.ci/run`), so it proves the library works without
//! the CLI's dependencies; it runs with the default features too.

use synclog::prelude::*;

#[tokio::test]
async fn an_app_opens_appends_queries_and_closes_the_guarded_default_without_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let primary = format!("sqlite://{}", dir.path().join("logs.db").display());
    let backup = format!("json://{}", dir.path().join("logs.jsonl").display());
    let store = open_guarded(&primary, &backup, GuardedOptions::default())
        .await
        .unwrap();
    let first = store
        .append(NewLog::new("crm", Status::Succeeded).counts(5, 5, 0))
        .await
        .unwrap();
    let second = store
        .append(NewLog::new("erp", Status::Failed).message("timeout"))
        .await
        .unwrap();
    let erp = Filter {
        jobs: vec!["erp".into()],
        ..Filter::default()
    };
    assert_eq!(store.count(&erp).await.unwrap(), 1);
    assert_eq!(store.scan(&Scan::default()).await.unwrap(), vec![first, second]);
    assert!(store.check(false).await.unwrap().in_sync());
    store.close().await.unwrap();
}

/// The crates the library pulls in with only the SQLite and JSON-lines engines, one line
/// each (`name vX.Y.Z`), as `cargo tree -e normal` lists them.
fn library_tree() -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let tree = |offline: bool| {
        let mut cmd = std::process::Command::new(&cargo);
        cmd.args(["tree", "--manifest-path", manifest, "-p", "synclog"])
            .args([
                "-e",
                "normal",
                "--no-default-features",
                "--features",
                "sqlite,json",
            ])
            .args(["--prefix", "none", "--format", "{p}"]);
        if offline {
            cmd.arg("--offline");
        }
        cmd.output().unwrap()
    };
    // Offline first (the build has fetched every crate); online if something is missing.
    let mut out = tree(true);
    if !out.status.success() {
        out = tree(false);
    }
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut crates: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            // `name vX.Y.Z (path or "proc-macro") (*)` → `name vX.Y.Z`
            l.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
        })
        .filter(|l| !l.is_empty())
        .collect();
    crates.sort();
    crates.dedup();
    crates
}

#[test]
fn the_library_with_sqlite_and_json_pulls_no_cli_crate_and_at_most_45_crates() {
    let crates = library_tree();
    let names: Vec<&str> = crates.iter().map(|c| c.split(' ').next().unwrap()).collect();
    // What only the command needs: argument parsing, progress bars, the tracing subscriber
    // and what they bring.
    let cli_only = [
        "clap",
        "clap_builder",
        "clap_derive",
        "indicatif",
        "console",
        "tracing-subscriber",
        "anstream",
        "nu-ansi-term",
        "regex-automata",
        "signal-hook-registry",
    ];
    for name in cli_only {
        assert!(
            !names.contains(&name),
            "{name} is in the library's tree: {crates:#?}"
        );
    }
    assert!(
        names.contains(&"synclog-sqlite") && names.contains(&"rusqlite"),
        "{crates:#?}"
    );
    // Every crate counted, the workspace's own (synclog, -core, -sqlite, -json) included.
    assert!(crates.len() <= 45, "{} crates: {crates:#?}", crates.len());
}
