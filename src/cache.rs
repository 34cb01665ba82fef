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
//! Only verdicts are cached. Per-key errors and transient failures are not (the next request
//! tries again); a transient registry failure instead starts a short per-registry back-off
//! so an outage does not become a stampede. Verdict keys carry the trust-config generation,
//! so a verdict reached under an old config is never served after a reload.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use moka::Expiry;
use moka::future::Cache;
use serde::{Deserialize, Serialize};

use crate::config::CacheConfig;
use crate::engine::Outcome;
use crate::lease::{self, Across, LeaseTuning, across_replicas};
use crate::metrics::{CacheKind, Metrics};
use crate::protocol::Json;
use crate::redis::Redis;
use crate::registry::{Descriptor, RegistryError};
use crate::verify::{Report, SignatureReport, VerdictCode};

/// What a verdict is about: the trust config, the policy, the image and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VerdictKey {
    pub generation: u64,
    pub policy: String,
    /// `registry/repository`.
    pub name: String,
    pub digest: String,
}

impl VerdictKey {
    /// A fixed-size identity for the in-memory cache: SHA-256 over the fields, so a cached
    /// verdict costs 32 bytes of key instead of three heap strings.
    fn id(&self) -> [u8; 32] {
        use aws_lc_rs::digest::{Context, SHA256};
        let mut ctx = Context::new(&SHA256);
        ctx.update(&self.generation.to_be_bytes());
        for part in [&self.policy, &self.name, &self.digest] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        let mut id = [0u8; 32];
        id.copy_from_slice(ctx.finish().as_ref());
        id
    }

    fn redis_key(&self) -> String {
        format!(
            "vouch:verdict:v1:{:016x}:{}:{}@{}",
            self.generation, self.policy, self.name, self.digest
        )
    }
}

/// A cached verdict and how long it may be served. The report is kept as a few dozen bytes
/// of [`Compact`] (without the per-key `reference`) rather than as a `Report` of seven small
/// heap strings: with 100 000 verdicts held, every byte per entry is 100 kB of resident
/// memory. It is decoded only on the slower path (the key cache answers repeated keys).
#[derive(Debug, Clone, PartialEq)]
pub struct CachedVerdict {
    encoded: Box<[u8]>,
    pub ttl: Duration,
    /// When it was reached (or fetched from the shared tier).
    pub created: Instant,
}

impl CachedVerdict {
    pub fn new(report: Report, ttl: Duration) -> CachedVerdict {
        let encoded = postcard::to_allocvec(&Compact::from(report)).unwrap_or_default();
        CachedVerdict {
            encoded: encoded.into_boxed_slice(),
            ttl,
            created: Instant::now(),
        }
    }

    /// The report (its `reference` empty: the caller stamps its own). Bytes that do not
    /// decode — which would be a bug — yield a failed verdict, never a verified one.
    pub fn report(&self) -> Report {
        match postcard::from_bytes::<Compact>(&self.encoded) {
            Ok(c) => c.into(),
            Err(e) => Report::failed(
                "",
                "",
                VerdictCode::InvalidSignature,
                format!("internal: unreadable cached verdict: {e}"),
            ),
        }
    }

    /// How much longer it may be served.
    pub fn remaining(&self) -> Duration {
        self.ttl.saturating_sub(self.created.elapsed())
    }
}

/// A report as the in-memory cache keeps it: postcard (field order, varint lengths, no
/// names) over the report's fields, with the digest as its 32 raw bytes when it is a
/// canonical `sha256:` digest (71 characters become 33 bytes). A typical cosign verdict
/// takes about 70 bytes, against some 200 as JSON.
#[derive(Serialize, Deserialize)]
struct Compact {
    verified: bool,
    digest: CompactDigest,
    policy: String,
    signatures: Vec<SignatureReport>,
    code: VerdictCode,
    reason: String,
}

#[derive(Serialize, Deserialize)]
enum CompactDigest {
    /// `sha256:` and 64 lower-case hex digits.
    Sha256([u8; 32]),
    /// Anything else (empty, another algorithm, upper-case hex), kept as it is.
    Text(String),
}

impl CompactDigest {
    fn new(digest: String) -> CompactDigest {
        if !crate::registry::is_sha256_digest(&digest) {
            return CompactDigest::Text(digest);
        }
        let hex = &digest["sha256:".len()..];
        let mut raw = [0u8; 32];
        for (i, byte) in raw.iter_mut().enumerate() {
            match u8::from_str_radix(&hex[2 * i..2 * i + 2], 16) {
                Ok(b) => *byte = b,
                Err(_) => return CompactDigest::Text(digest),
            }
        }
        CompactDigest::Sha256(raw)
    }

    fn into_string(self) -> String {
        match self {
            CompactDigest::Sha256(raw) => crate::registry::sha256_digest_of(&raw),
            CompactDigest::Text(s) => s,
        }
    }
}

impl From<Report> for Compact {
    fn from(r: Report) -> Compact {
        Compact {
            verified: r.verified,
            digest: CompactDigest::new(r.digest),
            policy: r.policy,
            signatures: r.signatures,
            code: r.code,
            reason: r.reason,
        }
    }
}

impl From<Compact> for Report {
    fn from(c: Compact) -> Report {
        Report {
            verified: c.verified,
            reference: String::new(),
            digest: c.digest.into_string(),
            policy: c.policy,
            signatures: c.signatures,
            code: c.code,
            reason: c.reason,
        }
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
}

/// How long a verdict may be served: verified verdicts for `verifiedTtl`, but never past
/// the earliest expiry of what made them valid (a certificate, a signature's expiry);
/// failed verdicts for `failedTtl`.
pub fn ttl_for(
    verified: bool,
    valid_until: Option<SystemTime>,
    now: SystemTime,
    config: &CacheConfig,
) -> Duration {
    if !verified {
        return config.failed_ttl.get();
    }
    let cap = valid_until.map_or(Duration::MAX, |u| {
        u.duration_since(now).unwrap_or(Duration::ZERO)
    });
    config.verified_ttl.get().min(cap)
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
    u32::try_from((128 + v.encoded.len()) / 256)
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
    backoff: Mutex<HashMap<String, Instant>>,
    backoff_for: Duration,
    shared: Option<SharedTier>,
    /// Local single flight for whole keys: concurrent evaluations of one key (under one
    /// generation) in this process run once. Values expire as soon as they are made; the
    /// front cache is what keeps them.
    key_flights: Cache<(u64, String), (Json, Duration)>,
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
            backoff: Mutex::new(HashMap::new()),
            backoff_for: config.registry_backoff.get(),
            shared,
            key_flights,
            metrics,
        })
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
                if !entry.is_fresh() {
                    self.metrics.cache_event(CacheKind::Key, "coalesced");
                }
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
            self.metrics.cache_event(CacheKind::Verdict, "hit");
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
            "miss"
        } else {
            "coalesced"
        };
        self.metrics.cache_event(CacheKind::Verdict, event);
        Ok(entry.into_value())
    }

    /// The verdict for `key` if one is known (L1, else the shared tier), without computing
    /// anything: how a digest reference skips its resolution.
    pub async fn known_verdict(&self, key: &VerdictKey) -> Option<CachedVerdict> {
        if let Some(v) = self.verdicts.get(&key.id()).await {
            self.metrics.cache_event(CacheKind::Verdict, "hit");
            return Some(v);
        }
        let v = self.shared.as_ref()?.get_verdict(key).await?;
        self.metrics.cache_event(CacheKind::Shared, "hit");
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
            self.metrics.cache_event(CacheKind::Tag, "hit");
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
            "miss"
        } else {
            "coalesced"
        };
        self.metrics.cache_event(CacheKind::Tag, event);
        Ok(entry.into_value())
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
        self.metrics.cache_event(CacheKind::Key, "hit");
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

    /// How much longer `host` is backed off after a transient failure, if it is.
    pub fn backing_off(&self, host: &str) -> Option<Duration> {
        let map = self.backoff.lock().ok()?;
        let until = *map.get(host)?;
        until.checked_duration_since(Instant::now())
    }

    /// Records a transient failure of `host`: it is not contacted for `registryBackoff`.
    pub fn note_transient(&self, host: &str) {
        if self.backoff_for.is_zero() {
            return;
        }
        if let Ok(mut map) = self.backoff.lock() {
            map.insert(host.to_string(), Instant::now() + self.backoff_for);
        }
    }

    /// Verdicts held in L1 now (after pending maintenance).
    pub async fn verdict_count(&self) -> u64 {
        self.verdicts.run_pending_tasks().await;
        self.verdicts.entry_count()
    }
}

/// The Redis tier, shared by replicas: verdicts (`vouch:verdict:v1:…`) and rendered answers
/// of whole keys (`vouch:key:v1:…`), each with its remaining TTL, read on an L1 miss and
/// computed under a lease so one replica does the work ([`crate::lease`]). Redis being down
/// or slow never fails a request: every call is bounded by `redis.timeout` and the caller
/// carries on with L1 and the registry ([`crate::redis`] counts and logs the outage).
struct SharedTier {
    redis: Arc<Redis>,
    lease: LeaseTuning,
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
    async fn verdict_across_replicas<F>(
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
    async fn key_across_replicas<F>(
        &self,
        key: &str,
        generation: u64,
        compute: F,
        metrics: &Metrics,
    ) -> (Outcome, Duration)
    where
        F: std::future::Future<Output = (Outcome, Duration)>,
    {
        let id = crate::registry::sha256_digest(key.as_bytes());
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
                metrics.cache_event(kind, "hit");
                Some(found)
            }
            Across::Computed(result, held) => {
                metrics.cache_event(kind, "miss");
                held.publish_and_release(result_key, encode(&result)).await;
                Some(result)
            }
            Across::Local(result) => {
                metrics.cache_event(kind, "miss");
                if let Some((bytes, ttl)) = encode(&result) {
                    // A failure only costs sharing.
                    let _ = self.redis.set_px(result_key, bytes, ttl).await;
                }
                Some(result)
            }
        }
    }

    /// A verdict in Redis, if there is one that has not expired.
    async fn get_verdict(&self, key: &VerdictKey) -> Option<CachedVerdict> {
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

    fn cosign_verdict(digest: &str) -> Report {
        Report {
            verified: true,
            reference: "ghcr.io/acme/api:1.0".into(),
            digest: digest.into(),
            policy: "acme".into(),
            signatures: vec![SignatureReport {
                format: "cosign".into(),
                verified: true,
                signer: "key:acme-release".into(),
                detail: String::new(),
            }],
            code: VerdictCode::None,
            reason: String::new(),
        }
    }

    #[test]
    fn cached_reports_come_back_exactly_without_their_reference() {
        let sha = format!("sha256:{}", "0123456789abcdef".repeat(4));
        let failed = Report {
            verified: false,
            reference: "r.io/a/b:c".into(),
            digest: sha.clone(),
            policy: "p".into(),
            signatures: vec![
                SignatureReport {
                    format: "notation".into(),
                    verified: false,
                    signer: "CN=Acme, O=Acme, C=US".into(),
                    detail: "certificate expired at 2026-01-01T00:00:00Z".into(),
                },
                SignatureReport {
                    format: "cosign".into(),
                    verified: false,
                    signer: String::new(),
                    detail: "signature does not match — ünïcode".into(),
                },
            ],
            code: VerdictCode::Expired,
            reason: "every signature expired".into(),
        };
        let upper = format!("sha256:{}", "ABCDEF0123456789".repeat(4));
        let short = format!("sha256:{}", "ab".repeat(31));
        let sha512 = format!("sha512:{}", "ab".repeat(64));
        let mut reports = vec![
            failed,
            Report::failed("x", "", VerdictCode::Unsigned, "".into()),
        ];
        for digest in [sha.as_str(), &upper, &short, &sha512, "", "sha256:zz"] {
            reports.push(cosign_verdict(digest));
        }
        for report in reports {
            let cached = CachedVerdict::new(report.clone(), Duration::from_secs(1));
            let mut want = report;
            want.reference.clear();
            assert_eq!(cached.report(), want);
        }
    }

    #[test]
    fn a_typical_verdict_takes_a_few_dozen_bytes() {
        let digest = format!("sha256:{}", "9f".repeat(32));
        let report = cosign_verdict(&digest);
        let json = serde_json::to_string(&report).expect("json");
        let cached = CachedVerdict::new(report, Duration::from_secs(1));
        assert!(
            cached.encoded.len() <= 72,
            "{} bytes (JSON: {})",
            cached.encoded.len(),
            json.len()
        );
    }

    #[test]
    fn undecodable_bytes_are_a_failed_verdict() {
        let mut v = CachedVerdict::new(cosign_verdict("sha256:1"), Duration::from_secs(1));
        v.encoded = vec![1u8].into_boxed_slice();
        let r = v.report();
        assert!(!r.verified);
        assert_eq!(r.code, VerdictCode::InvalidSignature);
        assert!(
            r.reason.starts_with("internal: unreadable cached verdict"),
            "{r:?}"
        );
    }

    fn config() -> CacheConfig {
        CacheConfig::default()
    }

    #[test]
    fn ttl_depends_on_the_outcome_and_is_capped_by_expiry() {
        let now = SystemTime::now();
        let c = config();
        assert_eq!(ttl_for(true, None, now, &c), c.verified_ttl.get());
        assert_eq!(ttl_for(false, None, now, &c), c.failed_ttl.get());
        let soon = now + Duration::from_secs(42);
        assert_eq!(ttl_for(true, Some(soon), now, &c), Duration::from_secs(42));
        let later = now + Duration::from_secs(86_400);
        assert_eq!(ttl_for(true, Some(later), now, &c), c.verified_ttl.get());
        assert_eq!(
            ttl_for(true, Some(now - Duration::from_secs(1)), now, &c),
            Duration::ZERO
        );
        assert_eq!(
            ttl_for(false, Some(soon), now, &c),
            c.failed_ttl.get(),
            "failed verdicts ignore expiry"
        );
    }

    fn verdict(verified: bool, ttl: Duration) -> CachedVerdict {
        let mut report = Report::failed("r.io/a:1", "p", VerdictCode::Unsigned, "x".into());
        report.verified = verified;
        CachedVerdict::new(report, ttl)
    }

    fn key(d: &str) -> VerdictKey {
        VerdictKey {
            generation: 1,
            policy: "p".into(),
            name: "r.io/a".into(),
            digest: d.into(),
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

    #[test]
    fn backoff_is_per_registry() {
        let mut c = config();
        c.registry_backoff = crate::config::Dur::secs(5);
        let caches = Caches::new(&c, Arc::new(Metrics::new()));
        assert_eq!(caches.backing_off("a.io"), None);
        caches.note_transient("a.io");
        assert!(caches.backing_off("a.io").is_some());
        assert_eq!(caches.backing_off("b.io"), None);
    }
}
