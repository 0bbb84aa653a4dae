//! `synclog append`: numbers in attributes are stored exactly or refused, never rounded.

use std::process::Output;

mod common;

use common::Env;

impl Env {
    fn append(&self, attrs: &[&str]) -> Output {
        let mut args = vec!["append", "--job", "j", "--status", "succeeded", "--json"];
        args.extend_from_slice(attrs);
        self.run(&args)
    }

    /// The stored logs, as JSON values.
    fn logs(&self) -> Vec<serde_json::Value> {
        common::records(&self.expect(0, &["list", "--json"]))
    }
}

#[test]
fn a_number_that_would_be_rounded_is_refused_with_exit_2_and_nothing_is_stored() {
    let env = Env::new();
    for attrs in [
        ["--attr", "n=123456789012345678901234567890"],
        ["--attr", "n=1e400"],
        ["--attr", "n=0.10000000000000000000001"],
        ["--attrs", r#"{"x":0.10000000000000000000001}"#],
        ["--attrs", r#"{"x":{"y":[18446744073709551616]}}"#],
        ["--attrs", r#"{"x":1e-400}"#],
    ] {
        let out = env.append(&attrs);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{attrs:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Nothing was written, not even the store's files: a read finds no store.
    let out = env.run(&["list", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

#[test]
fn numbers_that_fit_are_stored_with_their_exact_value() {
    let env = Env::new();
    let out = env.append(&[
        "--attr",
        "big=18446744073709551615",
        "--attr",
        "small=-9223372036854775808",
        "--attr",
        "tenth=0.1",
        "--attrs",
        r#"{"e":1e2,"half":1.50}"#,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = env.logs();
    assert_eq!(logs.len(), 1);
    let attrs = &logs[0]["attrs"];
    assert_eq!(attrs["big"].as_u64(), Some(u64::MAX));
    assert_eq!(attrs["small"].as_i64(), Some(i64::MIN));
    assert_eq!(attrs["tenth"].as_f64(), Some(0.1));
    assert_eq!(attrs["e"].as_f64(), Some(100.0));
    assert_eq!(attrs["half"].as_f64(), Some(1.5));
}

#[test]
fn a_quoted_long_number_is_kept_as_text() {
    let env = Env::new();
    let out = env.append(&[
        "--attr",
        r#"n="123456789012345678901234567890""#,
        "--attr",
        "m=1e400 apples",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = env.logs();
    assert_eq!(logs[0]["attrs"]["n"], "123456789012345678901234567890");
    assert_eq!(logs[0]["attrs"]["m"], "1e400 apples");
}

/// A key given twice in an object of the attributes (parsing would keep the last value and
/// drop the other unsaid), and a value nested past the parser's limit (it was stored as
/// text), are refused with exit 2, from the flags and from `--stdin`; nothing is stored.
#[test]
fn a_repeated_attribute_key_or_a_value_nested_too_deep_is_refused() {
    let env = Env::new();
    let deep = format!("a={}{}", "[".repeat(200), "]".repeat(200));
    for attrs in [
        vec!["--attrs", r#"{"a":1,"a":2}"#],
        vec!["--attrs", r#"{"a":{"b":1,"b":2}}"#],
        vec!["--attr", r#"x={"k":1,"k":2}"#],
        vec!["--attr", &deep],
    ] {
        let out = env.append(&attrs);
        assert_eq!(out.status.code(), Some(2), "{attrs:?}: {}", common::stderr(&out));
    }
    let mut child = env
        .base()
        .args(["append", "--stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let line = br#"{"job":"s","status":"succeeded","attrs":{"a":[{"b":1,"b":2}]}}"#;
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), line).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", common::stderr(&out));
    assert!(
        common::stderr(&out).contains("given twice"),
        "{}",
        common::stderr(&out)
    );
    assert!(env.logs().is_empty());
}
