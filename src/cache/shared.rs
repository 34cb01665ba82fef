//! The Redis tier, shared by replicas (see [`crate::lease`] for how one replica computes
//! what the others read).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{CachedVerdict, VerdictKey};
use crate::engine::Outcome;
use crate::lease::{self, Across, LeaseTuning, across_replicas};
use crate::metrics::{CacheEvent, CacheKind, Metrics};
use crate::protocol::Json;
use crate::redis::Redis;
use crate::verdict::Report;

/// The Redis tier, shared by replicas: verdicts (`vouch:verdict:v1:…`) and rendered answers
/// of whole keys (`vouch:key:v1:…`), each with its remaining TTL, read on an L1 miss and
/// computed under a lease so one replica does the work ([`crate::lease`]). Redis being down
/// or slow never fails a request: every call is bounded by `redis.timeout` and the caller
/// carries on with L1 and the registry ([`crate::redis`] counts and logs the outage).
pub(super) struct SharedTier {
    pub(super) redis: Arc<Redis>,
    pub(super) lease: LeaseTuning,
}

/// What is stored in Redis for a verdict: the verdict and when it stops being valid.
#[derive(Serialize, Deserialize)]
struct Stored {
    report: Report,
    expires_at_ms: u64,
}

/// What is stored in Redis for a key: its rendered value and when it stops being valid.
#[derive(Serialize, Deserialize)]
struct StoredKey {
    value: Json,
    expires_at_ms: u64,
}

fn now_ms() -> u64 {
    crate::redis::unix_ms(SystemTime::now()).max(0) as u64
}

impl SharedTier {
    /// A verdict from Redis, or computed here under the lease and published.
    pub(super) async fn verdict_across_replicas<F>(
        &self,
        key: &VerdictKey,
        init: F,
        metrics: &Metrics,
    ) -> Result<CachedVerdict, Outcome>
    where
        F: std::future::Future<Output = Result<CachedVerdict, Outcome>>,
    {
        let encode = |r: &Result<CachedVerdict, Outcome>| r.as_ref().ok().and_then(stored_verdict);
        let decode = |bytes: &[u8]| decode_verdict(bytes).map(Ok);
        self.flight(
            &key.redis_key(),
            CacheKind::Shared,
            init,
            encode,
            decode,
            metrics,
        )
        .await
        .unwrap_or_else(|| {
            Err(Outcome::Transient(
                "a verdict shared by another replica could not be read".into(),
            ))
        })
    }

    /// A key's rendered answer from Redis, or computed here under the lease and published.
    pub(super) async fn key_across_replicas<F>(
        &self,
        key: &str,
        generation: u64,
        compute: F,
        metrics: &Metrics,
    ) -> (Outcome, Duration)
    where
        F: std::future::Future<Output = (Outcome, Duration)>,
    {
        let id = crate::digest::sha256_digest(key.as_bytes());
        let result_key = format!("vouch:key:v1:{generation:016x}:{}", &id[7..]);
        let encode = |(outcome, fresh_for): &(Outcome, Duration)| match outcome {
            Outcome::Value(value) if !fresh_for.is_zero() => serde_json::to_vec(&StoredKey {
                value: value.clone(),
                expires_at_ms: now_ms() + fresh_for.as_millis() as u64,
            })
            .ok()
            .map(|b| (b, *fresh_for)),
            _ => None,
        };
        let decode = |bytes: &[u8]| {
            let s = serde_json::from_slice::<StoredKey>(bytes).ok()?;
            let left = s.expires_at_ms.checked_sub(now_ms()).filter(|ms| *ms > 0)?;
            Some((Outcome::Value(s.value), Duration::from_millis(left)))
        };
        self.flight(
            &result_key,
            CacheKind::SharedKey,
            compute,
            encode,
            decode,
            metrics,
        )
        .await
        .unwrap_or_else(|| {
            (
                Outcome::Transient("an answer shared by another replica could not be read".into()),
                Duration::ZERO,
            )
        })
    }

    /// `compute` once across replicas for `result_key` (see [`crate::lease`]): the result
    /// another replica published, read back by `decode`, or what `compute` made here,
    /// published as `encode` says. `None`: a published result that could not be read (or
    /// expired as it was read) — not an answer; the next caller computes.
    async fn flight<T, F>(
        &self,
        result_key: &str,
        kind: CacheKind,
        compute: F,
        encode: impl Fn(&T) -> Option<(Vec<u8>, Duration)>,
        decode: impl Fn(&[u8]) -> Option<T>,
        metrics: &Metrics,
    ) -> Option<T>
    where
        F: std::future::Future<Output = T>,
    {
        let lease_key = format!("vouch:lease:{result_key}");
        let flight = across_replicas(
            &self.redis,
            result_key,
            &lease_key,
            lease::token(),
            self.lease,
            compute,
        );
        match flight.await {
            Across::Found(bytes) => {
                let found = decode(&bytes)?;
                metrics.cache_event(kind, CacheEvent::Hit);
                Some(found)
            }
            Across::Computed(result, held) => {
                metrics.cache_event(kind, CacheEvent::Miss);
                held.publish_and_release(result_key, encode(&result)).await;
                Some(result)
            }
            Across::Local(result) => {
                metrics.cache_event(kind, CacheEvent::Miss);
                if let Some((bytes, ttl)) = encode(&result) {
                    // A failure only costs sharing.
                    let _ = self.redis.set_px(result_key, bytes, ttl).await;
                }
                Some(result)
            }
        }
    }

    /// A verdict in Redis, if there is one that has not expired.
    pub(super) async fn get_verdict(&self, key: &VerdictKey) -> Option<CachedVerdict> {
        let result_key = key.redis_key();
        let bytes = self
            .redis
            .run("GET", |mut c| async move {
                redis::cmd("GET")
                    .arg(&result_key)
                    .query_async::<Option<Vec<u8>>>(&mut c)
                    .await
            })
            .await
            .ok()??;
        decode_verdict(&bytes)
    }
}

/// A verdict read back from Redis; `None` when unreadable or expired.
fn decode_verdict(bytes: &[u8]) -> Option<CachedVerdict> {
    let s = serde_json::from_slice::<Stored>(bytes).ok()?;
    let left = s.expires_at_ms.checked_sub(now_ms()).filter(|ms| *ms > 0)?;
    Some(CachedVerdict::new(s.report, Duration::from_millis(left)))
}

/// A verdict as stored in Redis, and its TTL.
fn stored_verdict(v: &CachedVerdict) -> Option<(Vec<u8>, Duration)> {
    let ttl = v.ttl;
    let ms = ttl.as_millis() as u64;
    if ms == 0 {
        return None;
    }
    let stored = Stored {
        report: v.report(),
        expires_at_ms: now_ms() + ms,
    };
    serde_json::to_vec(&stored).ok().map(|b| (b, ttl))
}
