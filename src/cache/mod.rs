//! Verdict and tag caches: single-flight, outcome-aware TTLs, a per-registry back-off, and
//! an optional Redis tier shared by replicas.
//!
//! Gatekeeper asks twice about every image at the same moment (the verification and the
//! system-error templates), controllers create pods in bursts, and audit re-asks every
//! minute. moka's `or_try_insert_with` runs one initializer per key while concurrent callers
//! wait for its result, so the registry sees one verification per image. Initializers are
//! never cancelled mid-way: every key is evaluated in a task the exchange spawns and never
//! aborts, so a caller that hits its deadline leaves the verification running and its
//! result in the cache for Gatekeeper's retry.
//!
//! Only verdicts (and the answers rendered from them) are cached. Per-key errors and
//! transient failures are not: the next request tries again (the registry client's own
//! back-off keeps an outage from becoming a stampede). Verdict keys carry the trust-config
//! generation, so a verdict reached under an old config is never served after a reload.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;

mod compact;
mod shared;

pub use compact::CachedVerdict;
use shared::SharedTier;

use crate::config::CacheConfig;
use crate::engine::Outcome;
use crate::lease::LeaseTuning;
use crate::metrics::{CacheEvent, CacheKind, Metrics};
use crate::protocol::Json;
use crate::redis::Redis;
use crate::registry::{Descriptor, RegistryError};
use crate::revocation::RevocationStore;

/// What a verdict is about: the trust config, the policy, the image and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VerdictKey {
    /// The trust generation the verdict was reached under.
    pub generation: u64,
    /// The policy's name.
    pub policy: String,
    /// `registry/repository`.
    pub name: String,
    /// The image's digest (`sha256:…`).
    pub digest: String,
    /// What the verdict is about: the digest's own signatures, or (for an index) its
    /// platforms as the policy's `platforms` requires.
    pub scope: VerdictScope,
}

/// What a cached verdict covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VerdictScope {
    /// The digest's own signatures (and attestations).
    Digest,
    /// An index's platform manifests, each verified (`platforms: each|index-or-each`).
    Platforms,
}

impl VerdictScope {
    fn as_str(self) -> &'static str {
        match self {
            VerdictScope::Digest => "",
            VerdictScope::Platforms => "#platforms",
        }
    }
}

impl VerdictKey {
    /// A fixed-size identity for the in-memory cache: SHA-256 over the fields, so a cached
    /// verdict costs 32 bytes of key instead of three heap strings.
    fn id(&self) -> [u8; 32] {
        use aws_lc_rs::digest::{Context, SHA256};
        let mut ctx = Context::new(&SHA256);
        ctx.update(&self.generation.to_be_bytes());
        for part in [&self.policy, &self.name, &self.digest, self.scope.as_str()] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        let mut id = [0u8; 32];
        id.copy_from_slice(ctx.finish().as_ref());
        id
    }

    fn redis_key(&self) -> String {
        format!(
            "vouch:verdict:v2:{:016x}:{}:{}@{}{}",
            self.generation,
            self.policy,
            self.name,
            self.digest,
            self.scope.as_str()
        )
    }
}

/// A tag (or digest) resolution and when it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub descriptor: Descriptor,
    pub at: Instant,
}

/// A key's rendered verdict, as the exchange answers it without any work.
struct FrontEntry {
    generation: u64,
    value: Json,
    ttl: Duration,
}

struct FrontExpiry;

impl Expiry<String, Arc<FrontEntry>> for FrontExpiry {
    fn expire_after_create(&self, _: &String, v: &Arc<FrontEntry>, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// What a tag resolution is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TagKey {
    pub registry: String,
    pub repository: String,
    /// A tag, or a digest (resolved to learn its media type and size).
    pub reference: String,
    /// Whose credentials resolved it: empty for the registry's own, else the namespaced
    /// policy's name. A tenant's resolution is never served to another tenant.
    pub credentials: String,
}

struct VerdictExpiry;

impl Expiry<[u8; 32], CachedVerdict> for VerdictExpiry {
    fn expire_after_create(&self, _: &[u8; 32], v: &CachedVerdict, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// Rough memory weight of a verdict, in units of 256 bytes, so `maxEntries` bounds memory
/// even when some reports are large.
fn weight(_: &[u8; 32], v: &CachedVerdict) -> u32 {
    u32::try_from((128 + v.encoded_len()) / 256)
        .unwrap_or(u32::MAX)
        .max(1)
}

/// The caches of one process.
pub struct Caches {
    /// Values held inline, not behind an `Arc` of ours: moka already shares each value
    /// behind its own, and a second allocation per verdict is memory for nothing.
    verdicts: Cache<[u8; 32], CachedVerdict>,
    tags: Cache<TagKey, Resolved>,
    /// Exact key string → rendered verdict, for the hot path: no parsing, no policy lookup,
    /// no rendering. Bounded separately (`keyEntries`); entries never outlive the tag
    /// resolution or the verdict they were made from.
    front: moka::sync::Cache<String, Arc<FrontEntry>>,
    tag_ttl: Duration,
    shared: Option<SharedTier>,
    /// Local single flight for whole keys: concurrent evaluations of one key (under one
    /// generation) in this process run once. Values expire as soon as they are made; the
    /// front cache is what keeps them.
    key_flights: Cache<(u64, String), (Json, Duration)>,
    /// OCSP answers and CRLs, made on first use (its size is the first engine's
    /// `revocation.maxEntries`) and kept across reloads like the other caches.
    revocation: std::sync::OnceLock<Arc<RevocationStore>>,
    metrics: Arc<Metrics>,
}

impl Caches {
    /// Caches without a shared tier (the command line, tests).
    pub fn new(config: &CacheConfig, metrics: Arc<Metrics>) -> Arc<Caches> {
        Caches::with_redis(config, None, Duration::from_secs(10), metrics)
    }

    /// Caches with `redis` as the shared tier (when there is one); a caller waits at most
    /// `max_wait` (the verification budget) for another replica's verification.
    pub fn with_redis(
        config: &CacheConfig,
        redis: Option<Arc<Redis>>,
        max_wait: Duration,
        metrics: Arc<Metrics>,
    ) -> Arc<Caches> {
        let verdicts = Cache::builder()
            .max_capacity(config.max_entries)
            .weigher(weight)
            .expire_after(VerdictExpiry)
            .build();
        let tags = Cache::builder()
            .max_capacity(config.max_entries)
            .time_to_live(config.tag_ttl.get())
            .build();
        let front = moka::sync::Cache::builder()
            .max_capacity(config.key_entries)
            .expire_after(FrontExpiry)
            .build();
        let key_flights = Cache::builder()
            .max_capacity(config.key_entries)
            .expire_after(Instantly)
            .build();
        let shared = redis.map(|redis| SharedTier {
            redis,
            lease: LeaseTuning {
                ttl: config.lease_ttl.get(),
                poll: config.lease_poll.get(),
                max_wait,
            },
        });
        Arc::new(Caches {
            verdicts,
            tags,
            front,
            tag_ttl: config.tag_ttl.get(),
            shared,
            key_flights,
            revocation: std::sync::OnceLock::new(),
            metrics,
        })
    }

    /// The process's revocation source cache, sharing through the Redis tier if there is one.
    pub(crate) fn revocation(&self, max_entries: u64) -> Arc<RevocationStore> {
        self.revocation
            .get_or_init(|| {
                RevocationStore::new(max_entries, self.shared.as_ref().map(|s| s.redis.clone()))
            })
            .clone()
    }

    /// The rendered answer for `key` under `generation`, computed by `compute` once however
    /// many callers ask at the same time — in this process, and with a shared tier across
    /// replicas: the replica that takes the key's lease evaluates it and publishes the value,
    /// the others read it (the twin requests of Gatekeeper's two templates, whichever
    /// replicas they reach, cost one verification). `compute` returns the outcome and how
    /// long a value may be served; only values are shared, remembered in the front cache
    /// and published. Other outcomes are handed to every local waiter and not kept.
    pub async fn key_flight<F>(&self, key: &str, generation: u64, compute: F) -> Outcome
    where
        F: std::future::Future<Output = (Outcome, Duration)>,
    {
        let flight = Box::pin(async {
            let (outcome, fresh_for) = match &self.shared {
                Some(shared) => {
                    shared
                        .key_across_replicas(key, generation, compute, &self.metrics)
                        .await
                }
                None => compute.await,
            };
            match outcome {
                Outcome::Value(json) => {
                    self.front_put(key, generation, json.clone(), fresh_for);
                    Ok((json, fresh_for))
                }
                other => Err(other),
            }
        });
        match self
            .key_flights
            .entry((generation, key.to_string()))
            .or_try_insert_with(flight)
            .await
        {
            Ok(entry) => {
                let event = if entry.is_fresh() {
                    CacheEvent::Miss
                } else {
                    CacheEvent::Coalesced
                };
                self.metrics.cache_event(CacheKind::Key, event);
                Outcome::Value(entry.into_value().0)
            }
            Err(outcome) => (*outcome).clone(),
        }
    }

    /// The verdict for `key`: from L1, else from the shared tier, else computed by `init`
    /// — once, however many callers ask at the same time. `init` returns `Err` for outcomes
    /// that are not verdicts; those are handed to every waiter and not cached.
    pub async fn verdict<F>(&self, key: VerdictKey, init: F) -> Result<CachedVerdict, Arc<Outcome>>
    where
        F: std::future::Future<Output = Result<CachedVerdict, Outcome>>,
    {
        let id = key.id();
        if let Some(v) = self.verdicts.get(&id).await {
            self.metrics
                .cache_event(CacheKind::Verdict, CacheEvent::Hit);
            return Ok(v);
        }
        let shared = self.shared.as_ref();
        let entry = self
            .verdicts
            .entry(id)
            .or_try_insert_with(async {
                match shared {
                    Some(s) => s.verdict_across_replicas(&key, init, &self.metrics).await,
                    None => init.await,
                }
            })
            .await?;
        let event = if entry.is_fresh() {
            CacheEvent::Miss
        } else {
            CacheEvent::Coalesced
        };
        self.metrics.cache_event(CacheKind::Verdict, event);
        Ok(entry.into_value())
    }

    /// The verdict for `key` if one is known (L1, else the shared tier), without computing
    /// anything: how a digest reference skips its resolution.
    pub async fn known_verdict(&self, key: &VerdictKey) -> Option<CachedVerdict> {
        if let Some(v) = self.verdicts.get(&key.id()).await {
            self.metrics
                .cache_event(CacheKind::Verdict, CacheEvent::Hit);
            return Some(v);
        }
        let v = self.shared.as_ref()?.get_verdict(key).await?;
        self.metrics.cache_event(CacheKind::Shared, CacheEvent::Hit);
        self.verdicts.insert(key.id(), v.clone()).await;
        Some(v)
    }

    /// A tag (or digest) resolution, at most `tagTtl` old, computed once for concurrent
    /// callers; failures are not cached.
    pub async fn resolution<F>(&self, key: TagKey, init: F) -> Result<Resolved, Arc<RegistryError>>
    where
        F: std::future::Future<Output = Result<Descriptor, RegistryError>>,
    {
        if let Some(d) = self.tags.get(&key).await {
            self.metrics.cache_event(CacheKind::Tag, CacheEvent::Hit);
            return Ok(d);
        }
        let init = async {
            init.await.map(|descriptor| Resolved {
                descriptor,
                at: Instant::now(),
            })
        };
        let entry = self.tags.entry(key).or_try_insert_with(init).await?;
        let event = if entry.is_fresh() {
            CacheEvent::Miss
        } else {
            CacheEvent::Coalesced
        };
        self.metrics.cache_event(CacheKind::Tag, event);
        Ok(entry.into_value())
    }

    /// Entries held now by the verdict, tag and key (front) caches, for
    /// `vouch_cache_entries`. moka counts lazily: recent inserts and expiries may not show
    /// yet.
    pub fn sizes(&self) -> Vec<(CacheKind, u64)> {
        vec![
            (CacheKind::Verdict, self.verdicts.entry_count()),
            (CacheKind::Tag, self.tags.entry_count()),
            (CacheKind::Key, self.front.entry_count()),
        ]
    }

    /// How much longer a resolution made at `at` may be used.
    pub fn tag_remaining(&self, at: Instant) -> Duration {
        self.tag_ttl.saturating_sub(at.elapsed())
    }

    /// The rendered verdict of `key` under `generation`, if one is fresh.
    pub fn front_get(&self, key: &str, generation: u64) -> Option<Json> {
        let e = self.front.get(key)?;
        if e.generation != generation {
            return None;
        }
        self.metrics.cache_event(CacheKind::Key, CacheEvent::Hit);
        Some(e.value.clone())
    }

    /// Remembers `key`'s rendered verdict for `ttl`.
    pub fn front_put(&self, key: &str, generation: u64, value: Json, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let entry = FrontEntry {
            generation,
            value,
            ttl,
        };
        self.front.insert(key.to_string(), Arc::new(entry));
    }

    /// Verdicts held in L1 now (after pending maintenance).
    pub async fn verdict_count(&self) -> u64 {
        self.verdicts.run_pending_tasks().await;
        self.verdicts.entry_count()
    }
}

/// Key-flight entries are made only to be handed to the callers waiting for them.
struct Instantly;

impl Expiry<(u64, String), (Json, Duration)> for Instantly {
    fn expire_after_create(
        &self,
        _: &(u64, String),
        _: &(Json, Duration),
        _: Instant,
    ) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{Denial, Report, VerdictCode};

    fn config() -> CacheConfig {
        CacheConfig::default()
    }

    fn verdict(verified: bool, ttl: Duration) -> CachedVerdict {
        let mut report = Report::failed("r.io/a:1", "p", Denial::new(VerdictCode::Unsigned, "x"));
        report.verified = verified;
        CachedVerdict::new(report, ttl)
    }

    fn key(d: &str) -> VerdictKey {
        VerdictKey {
            generation: 1,
            policy: "p".into(),
            name: "r.io/a".into(),
            digest: d.into(),
            scope: VerdictScope::Digest,
        }
    }

    #[tokio::test]
    async fn concurrent_misses_run_one_initializer() {
        let caches = Caches::new(&config(), Arc::new(Metrics::new()));
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let caches = caches.clone();
            let runs = runs.clone();
            tasks.push(tokio::spawn(async move {
                caches
                    .verdict(key("d"), async {
                        runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(verdict(true, Duration::from_secs(60)))
                    })
                    .await
                    .map(|v| v.report().verified)
            }));
        }
        for t in tasks {
            assert_eq!(t.await.expect("join"), Ok(true));
        }
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn errors_are_shared_but_not_cached() {
        let caches = Caches::new(&config(), Arc::new(Metrics::new()));
        let r = caches
            .verdict(key("e"), async { Err(Outcome::Transient("down".into())) })
            .await;
        assert_eq!(
            r.map_err(|e| (*e).clone()),
            Err(Outcome::Transient("down".into()))
        );
        let r = caches
            .verdict(key("e"), async {
                Ok(verdict(false, Duration::from_secs(60)))
            })
            .await;
        assert!(r.is_ok(), "the next call computes again");
    }

    #[tokio::test]
    async fn verdicts_expire_after_their_ttl() {
        let caches = Caches::new(&config(), Arc::new(Metrics::new()));
        caches
            .verdict(key("t"), async {
                Ok(verdict(true, Duration::from_millis(100)))
            })
            .await
            .expect("ok");
        let again = caches
            .verdict(key("t"), async {
                Ok(verdict(false, Duration::from_secs(60)))
            })
            .await
            .expect("ok");
        assert!(
            again.report().verified,
            "served from the cache within the TTL"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let later = caches
            .verdict(key("t"), async {
                Ok(verdict(false, Duration::from_secs(60)))
            })
            .await
            .expect("ok");
        assert!(!later.report().verified, "recomputed after the TTL");
    }
}
