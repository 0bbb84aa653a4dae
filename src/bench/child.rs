//! One child process, timed: its wall time, exit code and peak memory, bounded by a
//! timeout after which it is killed, so that no measurement can hang.
//!
//! Peak memory: a `synclog` child reports its own (`VmHWM`) when [`PEAK_RSS_ENV`] is
//! set, which [`run_timed`] does. Otherwise it is the child's `ru_maxrss` from `wait4`,
//! which on Linux is at least the spawner's own peak: the child shares (vfork) or copies
//! (fork) the spawner's memory until its exec, and the kernel keeps that high-water mark.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// The environment variable that makes a `synclog` process print its peak memory.
pub const PEAK_RSS_ENV: &str = "SYNCLOG_REPORT_PEAK_RSS";

/// The start of that stderr line; the peak in KiB follows after a space.
pub const PEAK_RSS_LINE: &str = "synclog-peak-rss-kib";

/// What one child process did.
#[derive(Debug, Clone)]
pub struct ChildRun {
    /// From just before the spawn until the child was reaped.
    pub elapsed: Duration,
    /// Its exit code; `None` if a signal ended it (the timeout's kill included).
    pub code: Option<i32>,
    /// It was still running at the timeout and was killed.
    pub timed_out: bool,
    /// Its peak resident memory in bytes: as the child reported it, else `wait4`'s (see
    /// the module's doc), if the platform reports either.
    pub peak_rss: Option<u64>,
    /// What it printed.
    pub stdout: Vec<u8>,
    /// What it printed on stderr (without the peak-memory line).
    pub stderr: Vec<u8>,
}

impl ChildRun {
    /// It exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Why it failed, in one line for a report: the exit code (or the timeout) and what
    /// it printed on stderr (its first 500 bytes, lines joined).
    pub fn failure(&self) -> String {
        let err = String::from_utf8_lossy(&self.stderr);
        let mut said = err.split_whitespace().collect::<Vec<_>>().join(" ");
        if let Some((cut, _)) = said.char_indices().nth(500) {
            said.truncate(cut);
            said.push('…');
        }
        let how = match (self.timed_out, self.code) {
            (true, _) => format!("killed after the {:.0} s timeout", self.elapsed.as_secs_f64()),
            (false, Some(c)) => format!("exit {c}"),
            (false, None) => "ended by a signal".to_string(),
        };
        if said.is_empty() {
            how
        } else {
            format!("{how}: {said}")
        }
    }
}

/// Runs `cmd` (stdin closed, stdout and stderr captured) and waits for it, killing it at
/// `timeout`. Errors only if it could not be started or waited for.
pub fn run_timed(cmd: &mut Command, timeout: Duration) -> Result<ChildRun> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io("starting a child process", e))?;
    let pid = child.id() as libc::pid_t;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                // What it printed is for the report; a read error leaves it shorter.
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    // Until it is reaped below, `pid` stays this child's (a zombie's pid is not reused),
    // so the kill cannot reach another process.
    let timed_out = !exits_by(pid, start + timeout);
    if timed_out {
        // SAFETY: plain syscall on our own unreaped child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let (status, usage) = reap(pid)?;
    let elapsed = start.elapsed();
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let (stderr, reported) = split_peak(err.join().unwrap_or_default());
    let waited = (usage.ru_maxrss > 0).then(|| usage.ru_maxrss as u64 * 1024);
    Ok(ChildRun {
        elapsed,
        code,
        timed_out,
        peak_rss: reported.map(|kib| kib * 1024).or(waited),
        stdout: out.join().unwrap_or_default(),
        stderr,
    })
}

/// Takes the peak-memory line (KiB) out of a child's stderr.
fn split_peak(stderr: Vec<u8>) -> (Vec<u8>, Option<u64>) {
    let text = String::from_utf8_lossy(&stderr);
    let mut peak = None;
    let mut rest = String::new();
    for line in text.lines() {
        match line.strip_prefix(PEAK_RSS_LINE) {
            Some(v) => peak = v.trim().parse().ok(),
            None => {
                rest.push_str(line);
                rest.push('\n');
            }
        }
    }
    (rest.into_bytes(), peak)
}

/// Waits (without reaping) until child `pid` exits or `deadline` passes; `true` if it
/// exited. Linux: a pidfd, polled; elsewhere, or if pidfds are refused, `waitid` with
/// `WNOWAIT` every millisecond.
fn exits_by(pid: libc::pid_t, deadline: Instant) -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as libc::c_int;
        if fd >= 0 {
            let exited = loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let mut p = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                let ms = left.as_millis().min(i32::MAX as u128) as libc::c_int;
                // SAFETY: one valid pollfd.
                let rc = unsafe { libc::poll(&mut p, 1, ms) };
                if rc > 0 {
                    break true;
                }
                if rc == 0 && Instant::now() >= deadline {
                    break false;
                }
            };
            // SAFETY: closing the descriptor opened above.
            unsafe { libc::close(fd) };
            return exited;
        }
    }
    loop {
        // SAFETY: waitid writes into the zeroed siginfo; WNOWAIT leaves the child unreaped.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: si_pid is set when waitid found an exited child, zero otherwise.
        if rc == 0 && unsafe { info.si_pid() } != 0 {
            return true;
        }
        if rc != 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return true; // nothing to wait for: reap() will say why
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Reaps child `pid`: its wait status and resource usage.
fn reap(pid: libc::pid_t) -> Result<(libc::c_int, libc::rusage)> {
    loop {
        let mut status = 0;
        // SAFETY: wait4 writes into the status and the zeroed rusage we pass.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == pid {
            return Ok((status, usage));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(Error::io("waiting for a child process", e));
        }
    }
}
