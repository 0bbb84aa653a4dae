//! Where the commands write: stdout and stderr, written fallibly, with stored text escaped.
//!
//! `println!` panics when stdout is full or closed (Rust ignores SIGPIPE, so a reader that
//! stops early gives EPIPE). Commands write through [`Out`] instead: the first failed write
//! is kept, later writes are skipped, and [`Out::finish`] turns the command's exit code
//! into the one to return. Stderr failures are ignored: there is nowhere left to report them.

use std::borrow::Cow;
use std::fmt::{Display, Write as _};
use std::io::{self, Write};

use super::exit;

/// Whether `c` moves a terminal rather than printing: C0 (tab and newline included), DEL, C1.
fn is_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

/// `s` with every control character (C0, DEL, C1) written as `\u{1b}`, so stored text shown
/// on a terminal cannot move the cursor, change colours or retitle the window.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_control) {
        return Cow::Borrowed(s);
    }
    let mut escaped = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_control(c) {
            escaped.extend(c.escape_unicode());
        } else {
            escaped.push(c);
        }
    }
    Cow::Owned(escaped)
}

/// JSON text from serde_json with DEL and C1 (which it leaves raw inside strings) written as
/// `\u00XX`. serde_json already escapes C0 inside strings and emits none raw outside them
/// except layout whitespace, which is kept; DEL and C1 can only occur inside strings, where
/// `\u00XX` is the same character, so the result is valid JSON with the same value.
pub fn json_safe(json: &str) -> Cow<'_, str> {
    let raw = |c: char| matches!(c, '\u{7f}'..='\u{9f}');
    if !json.chars().any(raw) {
        return Cow::Borrowed(json);
    }
    let mut escaped = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        if raw(c) {
            // Writing to a String cannot fail.
            let _ = write!(escaped, "\\u{:04x}", c as u32);
        } else {
            escaped.push(c);
        }
    }
    Cow::Owned(escaped)
}

/// `outln!(out, "format", args…)`: one line of text to `out`'s stdout (see [`Out::line`]).
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {
        $out.line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// A command's two output streams. Writes never fail from the caller's side: the first
/// stdout failure is remembered (see [`Out::finish`]), stderr failures are ignored.
pub struct Out {
    stdout: Box<dyn Write + Send>,
    stderr: Box<dyn Write + Send>,
    failed: Option<io::Error>,
    /// A failure was reported: stdout is not written or flushed again.
    gave_up: bool,
}

impl Out {
    /// The process's stdout and stderr.
    pub fn stdio() -> Out {
        Out::new(Box::new(io::stdout()), Box::new(io::stderr()))
    }

    /// Any two writers (tests capture the output with this).
    pub fn new(stdout: Box<dyn Write + Send>, stderr: Box<dyn Write + Send>) -> Out {
        Out {
            stdout,
            stderr,
            failed: None,
            gave_up: false,
        }
    }

    /// Writes one line of text to stdout, control characters escaped.
    pub fn line(&mut self, text: impl Display) {
        let text = text.to_string();
        self.raw_line(&escape_controls(&text));
    }

    /// Writes one JSON document (serde_json's output) to stdout, DEL and C1 escaped.
    pub fn json(&mut self, json: &str) {
        self.raw_line(&json_safe(json));
    }

    fn raw_line(&mut self, text: &str) {
        if self.failed.is_some() || self.gave_up {
            return;
        }
        if let Err(e) = writeln!(self.stdout, "{text}") {
            self.failed = Some(e);
        }
    }

    /// Writes `synclog: warning: TEXT` to stderr, control characters escaped.
    pub fn warn(&mut self, text: impl Display) {
        self.stderr_line("warning", text);
    }

    /// Writes `synclog: LABEL: TEXT` to stderr, control characters escaped; a failure is
    /// ignored (there is nowhere left to report it).
    pub fn stderr_line(&mut self, label: &str, text: impl Display) {
        let text = text.to_string();
        let _ = writeln!(self.stderr, "synclog: {label}: {}", escape_controls(&text));
        let _ = self.stderr.flush();
    }

    /// Flushes stdout (a follower shows each line as it lands); false once stdout has
    /// failed (the reader went away), so a command that would run on can stop.
    pub fn flush(&mut self) -> bool {
        if self.failed.is_none() && !self.gave_up {
            if let Err(e) = self.stdout.flush() {
                self.failed = Some(e);
            }
        }
        self.failed.is_none() && !self.gave_up
    }

    /// Flushes stdout; returns (and forgets) the first stdout failure, if any. A command
    /// whose result must stand whatever the output did (an acknowledged append) takes it
    /// and warns instead of letting [`Out::finish`] turn it into an error.
    pub fn take_failure(&mut self) -> Option<io::Error> {
        if self.failed.is_none() && !self.gave_up {
            if let Err(e) = self.stdout.flush() {
                self.failed = Some(e);
            }
        }
        let failure = self.failed.take();
        self.gave_up |= failure.is_some();
        failure
    }

    /// The exit code for a command that returned `code`: `code` itself, except that a
    /// command that succeeded but could not write its output exits [`exit::STORAGE`].
    /// A non-zero `code` already says what happened and is kept.
    pub fn finish(mut self, code: u8) -> u8 {
        match self.take_failure() {
            Some(e) if code == exit::OK => {
                self.stderr_line("error", format_args!("cannot write the output: {e}"));
                exit::STORAGE
            }
            _ => code,
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer whose bytes a test reads back.
    #[derive(Clone, Default)]
    pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

    impl Captured {
        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
        }
    }

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A writer that is always full.
    pub struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        }
    }

    /// An `Out` writing into two captured buffers, and the buffers.
    pub fn captured() -> (Out, Captured, Captured) {
        let (o, e) = (Captured::default(), Captured::default());
        (Out::new(Box::new(o.clone()), Box::new(e.clone())), o, e)
    }

    #[test]
    fn escape_controls_escapes_c0_del_and_c1_and_keeps_the_rest() {
        let s = "a\u{1b}[31mred\u{7}\n\t\u{7f}\u{9b}2J é ✓";
        assert_eq!(
            escape_controls(s),
            "a\\u{1b}[31mred\\u{7}\\u{a}\\u{9}\\u{7f}\\u{9b}2J é ✓"
        );
        assert!(matches!(escape_controls("plain é"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_safe_escapes_del_and_c1_and_stays_the_same_json_value() {
        let value = serde_json::json!({"m": "x\u{7f}\u{85}\u{9b}\u{1b}y", "n": 1});
        let text = serde_json::to_string(&value).unwrap();
        let safe = json_safe(&text);
        assert!(!safe.chars().any(is_control), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn a_successful_command_that_cannot_write_exits_storage() {
        let mut out = Out::new(Box::new(Full), Box::new(Full));
        out.line("x");
        out.line("y");
        assert_eq!(out.finish(exit::OK), exit::STORAGE);
    }

    #[test]
    fn a_failure_taken_by_the_command_is_not_reported_again() {
        let mut out = Out::new(Box::new(Full), Box::new(Full));
        out.line("x");
        assert!(out.take_failure().is_some());
        out.line("y");
        assert_eq!(out.finish(exit::OK), exit::OK);
    }

    #[test]
    fn a_failed_command_keeps_its_code_when_it_cannot_write() {
        let mut out = Out::new(Box::new(Full), Box::new(Full));
        out.line("x");
        assert_eq!(out.finish(exit::PROBLEMS), exit::PROBLEMS);
    }
}
