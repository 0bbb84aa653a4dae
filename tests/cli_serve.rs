//! `synclog serve` refuses to start, with exit 2 and a message, rather than serve without
//! the protection asked for.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `synclog serve ARGS` with `env`; its exit code and stderr. A server that starts
/// instead of refusing is killed after 10 s and fails the test.
fn refuses(args: &[&str], env: &[(&str, &OsStr)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_synclog"));
    c.current_dir(dir.path())
        .env_remove("SYNCLOG_TOKEN")
        .env_remove("SYNCLOG_READ_TOKEN")
        .arg("serve")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return (status.code().unwrap_or(-1), err);
        }
        if start.elapsed() > Duration::from_secs(10) {
            child.kill().unwrap();
            panic!("synclog serve {args:?} started serving instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_refuses_a_network_address_without_a_token() {
    let (code, err) = refuses(&["--listen", "0.0.0.0:0"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("without a token"), "{err}");
}

#[test]
fn serve_refuses_a_token_it_cannot_use_instead_of_serving_without_one() {
    let bad = OsStr::from_bytes(b"abc\xff0123456789abcdef");
    let (code, err) = refuses(&["--listen", "127.0.0.1:0"], &[("SYNCLOG_TOKEN", bad)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("SYNCLOG_TOKEN is not UTF-8"), "{err}");
    let (code, err) = refuses(
        &["--listen", "127.0.0.1:0"],
        &[("SYNCLOG_TOKEN", OsStr::new("short"))],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("at least 16 bytes") && !err.contains("short\""),
        "{err}"
    );
}
