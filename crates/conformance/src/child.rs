//! Running this test binary again as child processes, for multi-process tests.

use std::ffi::OsStr;
use std::process::{Command, Stdio};

/// Runs the test `name` of the current test binary (an `#[ignore]`d entry point) in
/// `count` child processes at once, with the environment variable `var` set to `value`,
/// waits for all of them, and panics with their output if any failed.
pub fn run_children(name: &str, count: usize, var: &str, value: impl AsRef<OsStr>) {
    let exe = std::env::current_exe().expect("the current test binary");
    let children: Vec<_> = (0..count)
        .map(|_| {
            Command::new(&exe)
                .args([name, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
                .env(var, value.as_ref())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawning a child test process")
        })
        .collect();
    for child in children {
        let out = child
            .wait_with_output()
            .expect("waiting for a child test process");
        assert!(
            out.status.success(),
            "a child process failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
