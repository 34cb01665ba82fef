//! How a registry request is retried: at most [`MAX_ATTEMPTS`] attempts, with jittered
//! exponential backoff from [`BACKOFF_BASE`] (or the registry's `Retry-After`), and only
//! while the verification budget leaves room for the retry to be answered. Replicas retry
//! out of step (jitter), so an outage does not become a synchronised stampede.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use tokio::time::Instant;

use super::RegistryClient;

/// Attempts of one request, the first included.
pub(super) const MAX_ATTEMPTS: u32 = 4;
/// The first backoff; it doubles with every attempt, plus up to as much again of jitter.
pub(super) const BACKOFF_BASE: Duration = Duration::from_millis(50);
/// Time a retry needs to be answered: no retry starts later than this before the budget.
pub(super) const ANSWER_ROOM: Duration = Duration::from_millis(50);

impl RegistryClient {
    /// Sleeps before a retry if the budget allows one; `false` when it does not.
    pub(super) async fn backoff(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        budget: Instant,
    ) -> bool {
        if attempt >= MAX_ATTEMPTS {
            return false;
        }
        let wait = retry_after.unwrap_or_else(|| {
            let base = BACKOFF_BASE * 2u32.pow(attempt - 1);
            base + jitter(base)
        });
        // Leave room for the retry itself to be answered.
        if Instant::now() + wait + ANSWER_ROOM >= budget {
            return false;
        }
        tokio::time::sleep(wait).await;
        true
    }
}

/// `Retry-After` in seconds (the HTTP-date form is treated as "soon": one second).
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().to_string();
    match v.parse::<u64>() {
        Ok(s) => Some(Duration::from_secs(s)),
        Err(_) => Some(Duration::from_secs(1)),
    }
}
/// Up to `base` of random extra delay, so replicas do not retry in lockstep.
fn jitter(base: Duration) -> Duration {
    let mut b = [0u8; 2];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        return Duration::ZERO;
    }
    base.mul_f64(f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, "3".parse().expect("header"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().expect("header"),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(1)));
    }

    #[test]
    fn jitter_stays_within_base() {
        for _ in 0..100 {
            assert!(jitter(Duration::from_millis(100)) <= Duration::from_millis(100));
        }
    }
}
