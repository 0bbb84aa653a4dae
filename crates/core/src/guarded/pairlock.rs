//! The pair's lock: what lets guards in several processes share one pair of copies.
//!
//! A guard takes it (an exclusive `flock` on a small file, so it follows the file, not the
//! path string, and is released by the kernel when a process dies) around everything it
//! writes: each group (assigning ids, writing both copies, reading back), imports,
//! repairs, and repairing comparisons. The file also holds the next id to hand out, so a
//! guard learns what the other processes assigned without asking either copy, and the ids
//! of a group being written: `synclog-pair next=<n>[ writing=<a>-<b>] <crc32c hex>\n`,
//! rewritten in place under the lock (not synced: a crash of the machine ends every
//! process, and each open recomputes the next id from the copies; a state that does not
//! check out is ignored and the copies are asked). A holder that finds `writing` set
//! took the lock from a process that died mid-group: it completes that group in the copy
//! that lacks it (or, if neither copy has it, hands its ids out again: they were never
//! acknowledged nor stored), so the ids stay dense and none is handed out twice.
//!
//! Waiting is a blocking `flock` on a thread of the blocking pool, so waiters are woken
//! by the kernel as the holder lets go, not by polling; a wait that outlasts the deadline
//! is answered with [`Error::Locked`], and the thread, when it finally gets the lock,
//! gives it back at once.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};

/// The pair's lock file.
#[derive(Debug, Clone)]
pub(crate) struct PairLock {
    path: PathBuf,
    wait: Duration,
}

/// The lock, held until dropped.
#[derive(Debug)]
pub(crate) struct Held {
    file: File,
}

/// The file a writing guard holds a shared lock on for its whole life, next to the pair's
/// lock (`<lock>` with `.lock` replaced by `.writers`), so that a reader can tell a writer
/// has the pair open: a non-blocking exclusive lock on it is refused.
pub fn presence_path(lock: &std::path::Path) -> PathBuf {
    let text = lock.as_os_str().to_owned().into_string();
    match text {
        Ok(s) if s.ends_with(".lock") => PathBuf::from(format!("{}.writers", &s[..s.len() - 5])),
        _ => {
            let mut p = lock.as_os_str().to_owned();
            p.push(".writers");
            PathBuf::from(p)
        }
    }
}

/// Holds the shared lock of [`presence_path`] while the guard lives. Best effort: a
/// reader that cannot tell compares the copies as if no writer were there.
pub(crate) fn announce_presence(lock: &std::path::Path) -> Option<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(presence_path(lock))
        .ok()?;
    // A reader tests for writers by taking an exclusive lock for an instant: try again
    // for a moment if one is doing so right now.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        match file.try_lock_shared() {
            Ok(()) => return Some(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(_) => return None,
        }
    }
}

impl PairLock {
    pub(crate) fn new(path: PathBuf, wait: Duration) -> PairLock {
        PairLock { path, wait }
    }

    /// Takes the lock, waiting up to the deadline given at construction.
    pub(crate) async fn take(&self) -> Result<Held> {
        let path = self.path.clone();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(format!("opening the pair's lock {}", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => return Ok(Held { file }),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io(format!("locking {}", path.display()), e));
            }
        }
        let abandoned = Arc::new(AtomicBool::new(false));
        let gave_up = abandoned.clone();
        let waiting = tokio::task::spawn_blocking(move || {
            let locked = file.lock();
            match locked {
                // The waiter has gone: let go at once (closing the file unlocks it).
                Ok(()) if gave_up.load(Ordering::Acquire) => Err(None),
                Ok(()) => Ok(file),
                Err(e) => Err(Some(e)),
            }
        });
        match tokio::time::timeout(self.wait, waiting).await {
            Ok(Ok(Ok(file))) => Ok(Held { file }),
            Ok(Ok(Err(Some(e)))) => Err(Error::io(format!("locking {}", self.path.display()), e)),
            Ok(Ok(Err(None))) | Ok(Err(_)) => Err(self.held_elsewhere()),
            Err(_) => {
                abandoned.store(true, Ordering::Release);
                Err(self.held_elsewhere())
            }
        }
    }

    fn held_elsewhere(&self) -> Error {
        Error::Locked {
            resource: self.path.display().to_string(),
            detail: format!(
                "another process's guard held the pair for the whole {:?} wait (a long repair or import?)",
                self.wait
            ),
            source: None,
        }
    }
}

/// What the lock file says: the next id to hand out, and the ids of a group its last
/// holder had started to write and did not finish (it died holding the lock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct State {
    pub next: u64,
    pub writing: Option<(u64, u64)>,
}

/// The state the lock file at `path` holds, read without taking the lock (a reader's
/// look): `None` when there is no file, or what it holds does not check out (a writer may
/// be rewriting it at that moment).
pub(crate) fn peek_state(path: &std::path::Path) -> Option<State> {
    let mut text = String::new();
    File::open(path).ok()?.take(128).read_to_string(&mut text).ok()?;
    parse_state(&text)
}

impl Held {
    /// The state the file holds, if it checks out.
    pub(crate) fn state(&mut self) -> Option<State> {
        let mut text = String::new();
        self.file.seek(SeekFrom::Start(0)).ok()?;
        (&self.file).take(128).read_to_string(&mut text).ok()?;
        parse_state(&text)
    }
}

fn parse_state(text: &str) -> Option<State> {
    let line = text.strip_suffix('\n')?.strip_prefix("synclog-pair ")?;
    let (payload, crc) = line.rsplit_once(' ')?;
    let crc = u32::from_str_radix(crc, 16).ok()?;
    if crc32c::crc32c(payload.as_bytes()) != crc {
        return None;
    }
    let mut state = State {
        next: 0,
        writing: None,
    };
    for item in payload.split(' ') {
        match item.split_once('=')? {
            ("next", n) => state.next = n.parse().ok()?,
            ("writing", range) => {
                let (a, b) = range.split_once('-')?;
                state.writing = Some((a.parse().ok()?, b.parse().ok()?));
            }
            _ => return None,
        }
    }
    (state.next > 0).then_some(state)
}

impl Held {
    /// Records `state` (best effort: a failure only makes the next guard ask the copies;
    /// not synced: see the module docs).
    pub(crate) fn set_state(&mut self, state: State) {
        let mut payload = format!("next={}", state.next);
        if let Some((a, b)) = state.writing {
            payload.push_str(&format!(" writing={a}-{b}"));
        }
        let line = format!(
            "synclog-pair {payload} {:08x}\n",
            crc32c::crc32c(payload.as_bytes())
        );
        let written = self
            .file
            .seek(SeekFrom::Start(0))
            .and_then(|_| self.file.write_all(line.as_bytes()))
            .and_then(|_| self.file.set_len(line.len() as u64));
        if let Err(e) = written {
            tracing::debug!(target: super::TARGET, error = %e, "the pair's lock file did not take its state");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_taker_waits_for_the_first_and_times_out_with_locked() {
        let dir = std::env::temp_dir().join(format!("synclog-pairlock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lock = PairLock::new(dir.join("l"), Duration::from_millis(200));
        let mut held = lock.take().await.unwrap();
        assert_eq!(held.state(), None);
        let writing = State {
            next: 12_345,
            writing: Some((12_345, 12_400)),
        };
        held.set_state(writing);
        assert_eq!(held.state(), Some(writing));
        // A reader sees it without taking the lock (it is held now).
        assert_eq!(peek_state(&dir.join("l")), Some(writing));
        assert_eq!(peek_state(&dir.join("none")), None);
        let done = State {
            next: 7,
            writing: None,
        };
        held.set_state(done);
        assert_eq!(held.state(), Some(done), "a shorter state replaces a longer one");

        let err = lock.take().await.unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::Locked);

        // Released by drop: the next taker gets it, and the id it left.
        let other = PairLock::new(dir.join("l"), Duration::from_secs(5));
        let waiter = tokio::spawn(async move { other.take().await.map(|mut h| h.state()) });
        tokio::task::yield_now().await;
        drop(held);
        assert_eq!(waiter.await.unwrap().unwrap(), Some(done));

        // A state that does not check out is ignored.
        std::fs::write(dir.join("l"), "synclog-pair next=99 00000000\n").unwrap();
        let mut held = lock.take().await.unwrap();
        assert_eq!(held.state(), None);
        assert_eq!(peek_state(&dir.join("l")), None);
        drop(held);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
