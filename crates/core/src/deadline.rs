//! One deadline for a whole operation: every wait and retry inside it shares it.

use std::time::{Duration, Instant};

/// When one operation's wait ends. Engines give every lock wait and retry inside one
/// operation (an open, a commit, an import) the time left of one `Deadline`, so that a
/// wait of 2 s means 2 s for the whole operation, not 2 s per retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// `None`: further away than `Instant` can count, that is, never.
    end: Option<Instant>,
}

impl Deadline {
    /// The deadline `wait` from now (never, if `Instant` cannot count that far).
    pub fn after(wait: Duration) -> Deadline {
        Deadline {
            end: Instant::now().checked_add(wait),
        }
    }

    /// The time left: zero once passed, [`Duration::MAX`] for a deadline that never comes.
    pub fn remaining(&self) -> Duration {
        match self.end {
            Some(end) => end.saturating_duration_since(Instant::now()),
            None => Duration::MAX,
        }
    }

    /// Whether no time is left.
    pub fn has_passed(&self) -> bool {
        self.remaining().is_zero()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_shrinks_to_zero_and_a_huge_wait_never_comes() {
        let d = Deadline::after(Duration::from_secs(3600));
        assert!(d.remaining() <= Duration::from_secs(3600));
        assert!(d.remaining() > Duration::from_secs(3500));
        assert!(Deadline::after(Duration::ZERO).has_passed());
        assert_eq!(Deadline::after(Duration::MAX).remaining(), Duration::MAX);
    }
}
