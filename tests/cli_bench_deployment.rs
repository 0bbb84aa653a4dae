//! `synclog bench --only deployment`: the harness of the deployment-scale figures, run at a
//! tiny size. It checks which figures come out and that their values are sane, never how
//! fast anything was.

use std::process::Command;

use serde_json::Value;

mod common;

use common::{code, stderr, stdout, Env};

fn bench(env: &Env) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_synclog"))
        .current_dir(env.dir.path())
        .env_remove("SYNCLOG_STORE")
        .env_remove("SYNCLOG_BACKUP")
        .args([
            "bench",
            "--only",
            "deployment",
            "--json",
            "--dir",
            "b",
            "--open-dir",
            "o",
        ])
        .args(["--open-records", "2000", "--open-runs", "2", "--reader-runs", "4"])
        .args(["--worker-each", "20", "--child-timeout", "60"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

fn figure<'a>(report: &'a Value, name: &str) -> &'a Value {
    let figures = report["figures"].as_array().unwrap();
    figures
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("{name} missing from {report:#}"))
}

fn positive(f: &Value) -> f64 {
    let v = f["value"].as_f64().unwrap_or_else(|| panic!("no value: {f}"));
    assert!(v > 0.0 && v.is_finite(), "{f}");
    v
}

/// The deployment figures come out alone, with positive values next to their baselines,
/// the multi-process one marked as not measured while a second writer is refused, and a
/// second run reuses the pair the first one built.
#[test]
fn bench_deployment_reports_its_figures_and_reuses_the_pair() {
    let env = Env::new();
    eprintln!("--- step: first run builds the pair");
    let first = bench(&env);
    assert_eq!(first["deployment"]["built_with"], 2000, "{first:#}");
    assert_eq!(first["deployment"]["reused"], false);
    assert!(first["deployment"]["build_seconds"].as_f64().unwrap() > 0.0);
    let names: Vec<&str> = first["figures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"sqlite, 1 appender"), "{names:?}");

    eprintln!("--- step: open + newest 20, against SQLite alone");
    let list = "guarded open + newest 20 of 2000 (`list --limit 20 --desc`)";
    let guarded = figure(&first, list);
    positive(guarded);
    assert_eq!(guarded["unit"], "ms");
    assert_eq!(guarded["baseline"], "SQLite copy alone: open + newest 20 of 2000");
    assert!(guarded["ratio"].as_f64().unwrap() > 0.0);
    assert_eq!(guarded["target"], "<= 50 ms");
    positive(figure(&first, "SQLite copy alone: open + newest 20 of 2000"));
    assert!(figure(&first, &format!("{list} vs SQLite alone"))["met"].is_boolean());
    let rss = figure(&first, &format!("{list}, peak RSS"));
    assert_eq!(rss["unit"], "MiB");
    assert!(positive(rss) < 4096.0, "{rss}");
    positive(figure(&first, "guarded open + append, 2000 records"));

    eprintln!("--- step: a reader beside 64 appenders");
    let beside = "`list --limit 20` beside 64 appenders (4 runs)";
    positive(figure(&first, &format!("{beside}, p50")));
    positive(figure(&first, &format!("{beside}, p99")));
    let failed = figure(&first, &format!("{beside}, runs that failed"));
    assert_eq!(failed["value"], 0.0, "{failed}");
    positive(figure(&first, "64 appenders while the readers ran, guarded"));

    eprintln!("--- step: 4 writer processes against 1");
    positive(figure(&first, "1 process x 64 appenders, one guarded pair"));
    let four = figure(&first, "4 processes x 16 appenders, one guarded pair");
    match four["value"].as_f64() {
        // Several writer processes on one pair work: a figure like any other.
        Some(v) => assert!(v > 0.0 && four["ratio"].as_f64().unwrap() > 0.0, "{four}"),
        // Refused (or run one after another): not measured, and said why.
        None => {
            assert_eq!(four["met"], false, "{four}");
            assert!(!four["error"].as_str().unwrap().is_empty(), "{four}");
        }
    }

    eprintln!("--- step: a second run, and bench-fill, reuse the pair");
    let second = bench(&env);
    assert_eq!(second["deployment"]["reused"], true, "{second:#}");
    assert!(second["deployment"]["holds"].as_u64().unwrap() > 2000);
    let fill = Command::new(env!("CARGO_BIN_EXE_synclog"))
        .current_dir(env.dir.path())
        .args(["bench-fill", "--records", "2000", "--dir", "o"])
        .output()
        .unwrap();
    assert_eq!(code(&fill), 0, "{}", stderr(&fill));
    assert!(stdout(&fill).contains("reused"), "{}", stdout(&fill));
}
