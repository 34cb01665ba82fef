//! One computation per key across replicas: a short lease in Redis.
//!
//! Gatekeeper's two templates ask about the same images at the same moment over two
//! connections, and the Service spreads connections over the replicas; each replica
//! coalesces its own callers (moka), but without more every replica would verify the image
//! once. [`across_replicas`] makes one of them do it: a caller first looks for the published
//! result, then tries to take the lease (`SET NX PX`), both in one script; the holder
//! computes while renewing the lease every third of its life, publishes the result and
//! releases the lease; the others poll every `leasePoll` until the result appears, or until
//! the lease is free again (its holder finished without a result to share, or died — then
//! at most one lease period passes) and one of them takes over.
//!
//! Redis is an optimisation here, never a dependency: any failed or slow Redis call
//! (bounded by `redis.timeout`) makes the caller compute locally at once, and a caller
//! never waits longer than `verificationBudget` for another replica. The worst case is the
//! old one: every replica verifies on its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::redis::Redis;

/// The lease's timings (`cache.leaseTtl`, `cache.leasePoll`) and how long a caller waits
/// for another replica at most.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeaseTuning {
    pub ttl: Duration,
    pub poll: Duration,
    pub max_wait: Duration,
}

/// How a flight ended for this caller.
pub(crate) enum Across<T> {
    /// Another replica published the result: its bytes.
    Found(Vec<u8>),
    /// This caller held the lease and computed; publish what should be shared, then release.
    Computed(T, Held),
    /// Computed here without the lease (Redis unavailable, or waited too long).
    Local(T),
}

/// A lease this replica holds.
pub(crate) struct Held {
    redis: Arc<Redis>,
    key: String,
    token: String,
}

/// Result there → `{1, result}`; lease taken → `{2, ''}`; someone else holds it → `{0, ''}`.
const LOOK_OR_TAKE: &str = r#"
local found = redis.call('GET', KEYS[1])
if found then return {1, found} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2, ''} end
return {0, ''}
"#;

/// Extends or deletes the lease, only while it is still ours.
const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Runs `compute` here, or waits for another replica's published result under
/// `result_key`; `lease_key` is the lease, `token` says who holds it (unique per caller).
pub(crate) async fn across_replicas<F>(
    redis: &Arc<Redis>,
    result_key: &str,
    lease_key: &str,
    token: String,
    tuning: LeaseTuning,
    compute: F,
) -> Across<F::Output>
where
    F: std::future::Future,
{
    let script = redis::Script::new(LOOK_OR_TAKE);
    let ttl_ms = tuning.ttl.as_millis().max(1) as u64;
    let started = Instant::now();
    loop {
        let mut invocation = script.key(result_key);
        invocation.key(lease_key).arg(&token).arg(ttl_ms);
        let looked = redis
            .run("lease", |mut c| async move {
                invocation.invoke_async::<(i64, Vec<u8>)>(&mut c).await
            })
            .await;
        match looked {
            Ok((1, bytes)) => return Across::Found(bytes),
            Ok((2, _)) => {
                let held = Held {
                    redis: redis.clone(),
                    key: lease_key.to_string(),
                    token,
                };
                let value = held.renewing(tuning, compute).await;
                return Across::Computed(value, held);
            }
            Ok(_) if started.elapsed() + tuning.poll < tuning.max_wait => {
                tokio::time::sleep(tuning.poll).await;
            }
            // Waited long enough, or Redis is not answering: compute here.
            _ => return Across::Local(compute.await),
        }
    }
}

impl Held {
    /// Awaits `compute`, extending the lease every third of its life meanwhile.
    async fn renewing<F: std::future::Future>(&self, tuning: LeaseTuning, compute: F) -> F::Output {
        let every = (tuning.ttl / 3).max(Duration::from_millis(1));
        let ttl_ms = tuning.ttl.as_millis().max(1) as u64;
        let mut compute = std::pin::pin!(compute);
        loop {
            tokio::select! {
                out = &mut compute => return out,
                _ = tokio::time::sleep(every) => {
                    let script = redis::Script::new(RENEW);
                    let mut invocation = script.key(&self.key);
                    invocation.arg(&self.token).arg(ttl_ms);
                    // A failed renewal only risks a second verification elsewhere.
                    let _ = self
                        .redis
                        .run("lease renewal", |mut c| async move {
                            invocation.invoke_async::<i64>(&mut c).await
                        })
                        .await;
                }
            }
        }
    }

    /// Stores `bytes` under `result_key` for `ttl` (nothing when `ttl` is zero), then
    /// releases the lease. Publishing first means a waiter never sees the lease free
    /// without the result.
    pub(crate) async fn publish_and_release(
        self,
        result_key: &str,
        bytes: Option<(Vec<u8>, Duration)>,
    ) {
        if let Some((bytes, ttl)) = bytes {
            let _ = self.redis.set_px(result_key, bytes, ttl).await;
        }
        let script = redis::Script::new(RELEASE);
        let mut invocation = script.key(&self.key);
        invocation.arg(&self.token);
        let _ = self
            .redis
            .run("lease release", |mut c| async move {
                invocation.invoke_async::<i64>(&mut c).await
            })
            .await;
    }
}

/// A token no other caller (in this process or another) uses: the process's random id and a
/// counter.
pub(crate) fn token() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PROCESS: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let process = PROCESS.get_or_init(|| {
        let mut b = [0u8; 8];
        let _ = aws_lc_rs::rand::fill(&mut b);
        format!("{:016x}", u64::from_le_bytes(b))
    });
    format!("{process}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}
