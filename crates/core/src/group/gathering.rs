//! Whom a group commit waits for before it starts a group: the callers it answered last
//! time ([`Gathering`], also used by the pair's leader and the PostgreSQL writer), and the
//! writer thread's record of their arrivals (`Arrivals`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// What a group commit waits for before it starts a group: the callers it answered last
/// time, which in a closed loop come straight back with their next request. Requests carry
/// their submission number (`seq`); one numbered at or after the last answer comes from a
/// returning (or new) caller. A lone caller is back as soon as it submits, so it never waits.
///
/// Used by the async writers of the guarded store and the PostgreSQL engine (which yield a
/// bounded number of times). [`GroupCommit`](super::GroupCommit)'s writer thread keeps the same count on the
/// callers' side instead, so that it can sleep until the last one is back.
#[derive(Debug, Default, Clone, Copy)]
pub struct Gathering {
    answered: usize,
    answered_at: u64,
    returned: usize,
}

impl Gathering {
    /// A group begins with the request numbered `seq`.
    pub fn start(&mut self, seq: u64) {
        self.returned = 0;
        self.join(seq);
    }

    /// The request numbered `seq` joins the group.
    pub fn join(&mut self, seq: u64) {
        self.returned += usize::from(seq >= self.answered_at);
    }

    /// Whether callers answered last time are still missing (worth waiting for).
    pub fn waiting_for_more(&self) -> bool {
        self.returned < self.answered
    }

    /// The group of `callers` is about to be answered; `submitted` requests were numbered
    /// so far. Call it before sending the replies.
    pub fn answering(&mut self, callers: usize, submitted: u64) {
        self.answered = callers;
        self.answered_at = submitted;
    }
}

/// The writer thread's wait for returning callers, without a wake-up per request: a
/// request numbered at or after `from` counts itself, and only the one that completes the
/// expected number wakes the writer. (A wake per request cost the writer one futex round
/// trip per log, and the callers a futex wake each.)
#[derive(Debug, Default)]
pub(super) struct Arrivals {
    pub(super) from: AtomicU64,
    pub(super) want: AtomicUsize,
    pub(super) returned: AtomicUsize,
    pub(super) lock: Mutex<()>,
    pub(super) all_back: Condvar,
}

impl Arrivals {
    /// The writer is about to answer `callers`; requests numbered from `from` on are theirs
    /// (or new callers'). Call before sending the replies.
    pub(super) fn expect(&self, callers: usize, from: u64) {
        self.want.store(0, Ordering::SeqCst);
        self.returned.store(0, Ordering::SeqCst);
        self.from.store(from, Ordering::SeqCst);
        self.want.store(callers, Ordering::SeqCst);
    }

    /// A request numbered `seq` was queued.
    pub(super) fn arrived(&self, seq: u64) {
        if seq < self.from.load(Ordering::SeqCst) {
            return;
        }
        let n = self.returned.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.want.load(Ordering::SeqCst) {
            let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.all_back.notify_one();
        }
    }

    /// Whether every caller answered last time is queued again (true before any answer).
    pub(super) fn all_back(&self) -> bool {
        self.returned.load(Ordering::SeqCst) >= self.want.load(Ordering::SeqCst)
    }

    /// Waits until every expected caller is back (true) or `deadline` passes (false).
    pub(super) fn wait(&self, deadline: Instant) -> bool {
        let mut guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if self.returned.load(Ordering::SeqCst) >= self.want.load(Ordering::SeqCst) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = match self.all_back.wait_timeout(guard, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}
