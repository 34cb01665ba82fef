//! A registry's health as vouch sees it: after a transient failure (unreachable, 5xx, 429
//! after the retry budget), the registry is not contacted for `cache.registryBackoff`, so
//! an outage costs each admission one fast `systemError` instead of a stampede of
//! connection attempts and timeouts. Kept per registry client: one registry's outage never
//! slows another.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The back-off state of one registry.
#[derive(Debug)]
pub(crate) struct Health {
    backoff: Duration,
    until: Mutex<Option<Instant>>,
}

impl Health {
    /// A healthy registry that backs off for `backoff` after a transient failure (zero:
    /// never).
    pub(crate) fn new(backoff: Duration) -> Health {
        Health {
            backoff,
            until: Mutex::new(None),
        }
    }

    /// How much longer the registry is backed off, if it is.
    pub(crate) fn backing_off(&self) -> Option<Duration> {
        let until = (*self.until.lock().ok()?)?;
        until.checked_duration_since(Instant::now())
    }

    /// Records a transient failure: the registry is not contacted for the back-off.
    pub(crate) fn note_transient(&self) {
        if self.backoff.is_zero() {
            return;
        }
        if let Ok(mut until) = self.until.lock() {
            *until = Some(Instant::now() + self.backoff);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transient_failure_backs_off_for_the_configured_time() {
        let h = Health::new(Duration::from_secs(60));
        assert_eq!(h.backing_off(), None);
        h.note_transient();
        let left = h.backing_off().expect("backing off");
        assert!(left <= Duration::from_secs(60) && left > Duration::from_secs(59));
        let never = Health::new(Duration::ZERO);
        never.note_transient();
        assert_eq!(never.backing_off(), None, "zero disables the back-off");
    }
}
