//! The verification engine behind `/v1/verify` and `vouch verify`.
//!
//! [`decide`] is the pure front half: parse the reference, pick the policy, and settle
//! every key that needs no registry (`invalid-reference`, `no-policy`, `action: allow`).
//! Keys whose policy asks for signatures go to `VerifyEngine::verify_image`: resolve the
//! digest, fetch the signatures, check them with the policy's verifiers ([`cosign`]), and
//! combine the verifiers' results by the policy's `require`.

pub mod cosign;
pub mod notation;
mod report;
pub mod signature_manifest;

pub use report::{
    Checked, Report, SignatureFormat, SignatureReport, VerdictCode, signatures_verdict,
};

use std::collections::HashMap;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::time::Instant;

use crate::config::{Action, Config, FileRole, Require, Verifier};
use crate::engine::{Engine, ErrorCode, KeyError, Outcome};
use crate::mutate;
use crate::policy::{Policy, PolicySet};
use crate::reference::ImageRef;
use std::sync::Arc;

use crate::cache::{CachedVerdict, Caches, Resolved, TagKey, VerdictKey, ttl_for};
use crate::config::CacheConfig;
use crate::metrics::{Metrics, SkipReason, VerificationOutcome};
use crate::registry::{Descriptor, Registries, RegistryClient, RegistryError};
use signature_manifest::{NotaryManifest, cosign_layers, notary_manifest};

/// What [`decide`] concluded without any I/O.
#[derive(Debug)]
pub enum Decision<'p> {
    /// A verdict reached from the key and the policies alone.
    Verdict(Report),
    /// The image must be verified against this policy's verifiers.
    Verify { image: ImageRef, policy: &'p Policy },
}

/// Settles what can be settled without a registry.
pub fn decide<'p>(key: &str, policies: &'p PolicySet) -> Decision<'p> {
    let image = match ImageRef::parse(key) {
        Ok(i) => i,
        Err(e) => {
            return Decision::Verdict(Report::failed(
                key,
                "",
                VerdictCode::InvalidReference,
                e.to_string(),
            ));
        }
    };
    let Some(policy) = policies.select(&image) else {
        let reason = format!("no trust policy scope covers {}", image.name());
        return Decision::Verdict(Report::failed(
            &image.to_string(),
            "",
            VerdictCode::NoPolicy,
            reason,
        ));
    };
    match policy.action {
        Action::Allow => Decision::Verdict(Report::allowed(&image, &policy.name)),
        Action::Verify => Decision::Verify { image, policy },
    }
}

/// A fetched signature, or why it could not be used.
type Fetched<T> = Result<T, Checked>;

/// A policy verifier with its trust material loaded.
enum LoadedVerifier {
    Cosign(Vec<cosign::PublicKey>),
    Notation(notation::NotationVerifier),
}

/// What one verifier concluded about one image.
enum VerifierResult {
    Pass,
    Fail(VerdictCode, String),
}

/// Why the engine could not be built from a config.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("policies[{policy}]: {source}")]
    Key {
        policy: String,
        source: cosign::KeyError,
    },
    #[error("policies[{policy}]: {source}")]
    Trust {
        policy: String,
        source: notation::TrustError,
    },
    #[error(transparent)]
    Registry(#[from] crate::registry::BuildError),
}

/// Verifies image references against the configured trust policies.
pub struct VerifyEngine {
    policies: PolicySet,
    verifiers: HashMap<String, Vec<LoadedVerifier>>,
    registries: Registries,
    /// Budget of one verification, retries included.
    budget: Duration,
    max_signatures: usize,
    max_signature_bytes: usize,
    caches: Arc<Caches>,
    cache_config: CacheConfig,
    /// Fingerprint of the trust config (policies, registries, key and certificate bytes):
    /// part of every verdict key, so verdicts never outlive the config that made them, and
    /// replicas with the same config share verdicts through Redis.
    generation: u64,
    metrics: Arc<Metrics>,
}

impl VerifyEngine {
    /// An engine with its own caches and metrics (the command line, tests).
    pub fn standalone(config: &Config) -> Result<VerifyEngine, EngineError> {
        let metrics = Arc::new(Metrics::new());
        let caches = Caches::new(&config.cache, metrics.clone());
        VerifyEngine::new(config, caches, metrics)
    }

    /// Loads every policy's trust material and builds the registry clients. `caches` may be
    /// shared with the engine this one replaces on a reload.
    pub fn new(
        config: &Config,
        caches: Arc<Caches>,
        metrics: Arc<Metrics>,
    ) -> Result<VerifyEngine, EngineError> {
        let mut verifiers = HashMap::new();
        for p in &config.policies {
            let mut loaded = Vec::new();
            for v in &p.verifiers {
                match v.kind() {
                    Some(Verifier::Cosign(c)) => {
                        let keys = c
                            .public_keys
                            .iter()
                            .map(|k| cosign::PublicKey::load(k))
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(|source| EngineError::Key {
                                policy: p.name.clone(),
                                source,
                            })?;
                        loaded.push(LoadedVerifier::Cosign(keys));
                    }
                    Some(Verifier::Notation(n)) => {
                        let v = notation::NotationVerifier::load(n).map_err(|source| {
                            EngineError::Trust {
                                policy: p.name.clone(),
                                source,
                            }
                        })?;
                        loaded.push(LoadedVerifier::Notation(v));
                    }
                    None => {}
                }
            }
            verifiers.insert(p.name.clone(), loaded);
        }
        Ok(VerifyEngine {
            policies: PolicySet::new(&config.policies),
            verifiers,
            registries: Registries::new(config, metrics.clone())?,
            budget: config.verification_budget.get(),
            max_signatures: config.limits.max_signatures,
            max_signature_bytes: config.limits.max_signature_bytes,
            caches,
            cache_config: config.cache.clone(),
            generation: generation(config),
            metrics,
        })
    }

    /// The trust-config fingerprint verdict keys carry.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    async fn verify(&self, key: &str) -> Outcome {
        match decide(key, &self.policies) {
            // Reached from the key and the config alone: as valid as the config.
            Decision::Verdict(report) => {
                let json = report.to_json();
                let fresh_for = self.cache_config.verified_ttl.get();
                self.caches
                    .front_put(key, self.generation, json.clone(), fresh_for);
                Outcome::Value(json)
            }
            // Once per key however many callers, in this process and across replicas.
            Decision::Verify { image, policy } => {
                // Boxed: the verification's state machine is large, and the flights wrap it
                // twice more.
                let compute = Box::pin(self.verify_image(&image, policy));
                self.caches.key_flight(key, self.generation, compute).await
            }
        }
    }

    /// The outcome for one image, and how long it may be answered again without asking
    /// (never longer than its tag resolution or its verdict are valid).
    async fn verify_image(&self, image: &ImageRef, policy: &Policy) -> (Outcome, Duration) {
        let not_cached = |o: Outcome| (o, Duration::ZERO);
        let budget = Instant::now() + self.budget;
        let reference = image.to_string();
        // A digest reference (what /v1/mutate pins every pod to) needs no resolution when
        // its verdict is known: answered without any registry request.
        if let Some(digest) = image.digest() {
            let key = VerdictKey {
                generation: self.generation,
                policy: policy.name.clone(),
                name: image.name(),
                digest: digest.to_string(),
            };
            if let Some(v) = self.caches.known_verdict(&key).await {
                let mut report = v.report();
                report.reference = reference;
                return (Outcome::Value(report.to_json()), v.remaining());
            }
        }
        let client = match self.client_for(image) {
            Ok(c) => c,
            Err(o) => return not_cached(o),
        };
        let resolved = match self.resolve(&client, image, budget).await {
            Ok(r) => r,
            Err(e) => return not_cached(registry_outcome(e, &reference, &policy.name)),
        };
        let subject = &resolved.descriptor;
        let key = VerdictKey {
            generation: self.generation,
            policy: policy.name.clone(),
            name: image.name(),
            digest: subject.digest.clone(),
        };
        let verdict = self
            .caches
            .verdict(
                key,
                self.verify_digest(&client, image, policy, subject, budget),
            )
            .await;
        match verdict {
            Ok(v) => {
                let mut report = v.report();
                report.reference = reference;
                let fresh_for = v.remaining().min(self.caches.tag_remaining(resolved.at));
                (Outcome::Value(report.to_json()), fresh_for)
            }
            Err(outcome) => not_cached((*outcome).clone()),
        }
    }

    /// `/v1/mutate`'s answer for one key: the key pinned to its digest (see
    /// [`crate::mutate`]).
    pub async fn pin(&self, key: &str) -> Outcome {
        let image = match mutate::plan(key, &self.policies) {
            mutate::Pin::Done(outcome) => return outcome,
            mutate::Pin::Resolve(image) => image,
        };
        let client = match self.client_for(&image) {
            Ok(c) => c,
            Err(o) => return o,
        };
        let budget = Instant::now() + self.budget;
        match self.resolve(&client, &image, budget).await {
            Ok(r) => mutate::pinned(key, &r.descriptor.digest),
            // Mutation values must be strings, so what verification answers as a verdict
            // is a per-key error here.
            Err(e) => match classify(e) {
                Failure::Verdict(VerdictCode::NotFound, why) => {
                    Outcome::Error(KeyError::new(ErrorCode::NotFound, why))
                }
                Failure::Verdict(VerdictCode::InvalidImage, why) => {
                    Outcome::Error(KeyError::new(ErrorCode::InvalidImage, why))
                }
                Failure::Verdict(_, why) => {
                    Outcome::Error(KeyError::new(ErrorCode::RegistryProtocol, why))
                }
                Failure::Other(outcome) => outcome,
            },
        }
    }

    /// The client of the image's registry, unless that registry is backing off after a
    /// transient failure.
    fn client_for(&self, image: &ImageRef) -> Result<Arc<RegistryClient>, Outcome> {
        let host = image.registry();
        let Some(client) = self.registries.get(host) else {
            // Scopes always name their host, so this is a wiring error, not an input error.
            return Err(Outcome::Transient(format!("no registry client for {host}")));
        };
        if let Some(left) = self.caches.backing_off(host) {
            return Err(Outcome::Transient(format!(
                "registry {host} failed moments ago; not contacted for another {} ms",
                left.as_millis()
            )));
        }
        Ok(client)
    }

    /// The image's tag (or digest) resolved through the tag cache; a transient failure
    /// starts the registry's back-off.
    async fn resolve(
        &self,
        client: &RegistryClient,
        image: &ImageRef,
        budget: Instant,
    ) -> Result<Resolved, RegistryError> {
        let key = TagKey {
            registry: image.registry().to_string(),
            repository: image.repository().to_string(),
            reference: image
                .digest()
                .or(image.tag())
                .unwrap_or("latest")
                .to_string(),
        };
        let resolved = self
            .caches
            .resolution(key.clone(), async {
                client
                    .resolve(&key.repository, &key.reference, budget)
                    .await
            })
            .await
            .map_err(|e| (*e).clone());
        if let Err(RegistryError::Transient(_)) = &resolved {
            self.caches.note_transient(image.registry());
        }
        resolved
    }

    /// Runs the policy's verifiers on one digest: a verdict to cache, or an outcome that is
    /// not one (per-key error, transient failure).
    async fn verify_digest(
        &self,
        client: &RegistryClient,
        image: &ImageRef,
        policy: &Policy,
        subject: &Descriptor,
        budget: Instant,
    ) -> Result<CachedVerdict, Outcome> {
        let reference = image.to_string();
        let digest = subject.digest.clone();
        let verifiers = self
            .verifiers
            .get(&policy.name)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let fetched = self
            .fetch_signatures(client, image.repository(), subject, verifiers, budget)
            .await;
        let (cosign_sigs, notation_sigs) = match fetched {
            Ok(f) => f,
            Err(e) => return self.settle(image, &policy.name, &digest, e),
        };
        let now = std::time::SystemTime::now();
        let target = notation::Target {
            digest: subject.digest.clone(),
            media_type: subject.media_type.clone(),
            size: subject.size,
        };
        let mut checked_all: Vec<Checked> = Vec::new();
        let mut results = Vec::new();
        for v in verifiers {
            let (format, checked): (SignatureFormat, Vec<Checked>) = match v {
                LoadedVerifier::Cosign(keys) => (
                    SignatureFormat::Cosign,
                    cosign_sigs
                        .iter()
                        .map(|c| match c {
                            Ok(c) => cosign::check(c, keys, &digest),
                            Err(unusable) => unusable.clone(),
                        })
                        .collect(),
                ),
                LoadedVerifier::Notation(trust) => (
                    SignatureFormat::Notation,
                    notation_sigs
                        .iter()
                        .map(|c| match c {
                            Ok((media_type, envelope)) => {
                                notation::check(media_type, envelope, trust, &target, now)
                            }
                            Err(unusable) => unusable.clone(),
                        })
                        .collect(),
                ),
            };
            results.push(match signatures_verdict(format.as_str(), &checked) {
                Ok(()) => VerifierResult::Pass,
                Err((code, reason)) => VerifierResult::Fail(code, reason),
            });
            checked_all.extend(checked);
        }
        let mut report = Report::failed(
            &reference,
            &policy.name,
            VerdictCode::Unsigned,
            String::new(),
        );
        report.digest = digest;
        report.signatures = checked_all.iter().map(|c| c.report.clone()).collect();
        let valid_until = checked_all
            .iter()
            .filter(|c| c.failure.is_none())
            .filter_map(|c| c.valid_until)
            .min();
        match combine(policy.require, results) {
            Ok(()) => {
                report.verified = true;
                report.code = VerdictCode::None;
            }
            Err((code, reason)) => {
                report.code = code;
                report.reason = reason;
            }
        }
        self.metrics.verification(if report.verified {
            VerificationOutcome::Verified
        } else {
            VerificationOutcome::Failed
        });
        let ttl = ttl_for(report.verified, valid_until, now, &self.cache_config);
        Ok(CachedVerdict::new(report, ttl))
    }

    /// Sorts a registry failure met while fetching signatures: a verdict is cached like
    /// any other failed verdict, anything else is handed back uncached.
    fn settle(
        &self,
        image: &ImageRef,
        policy: &str,
        digest: &str,
        e: RegistryError,
    ) -> Result<CachedVerdict, Outcome> {
        match classify(e) {
            Failure::Verdict(code, reason) => {
                self.metrics.verification(VerificationOutcome::Failed);
                let mut report = Report::failed(&image.to_string(), policy, code, reason);
                report.digest = digest.to_string();
                let ttl = ttl_for(
                    false,
                    None,
                    std::time::SystemTime::now(),
                    &self.cache_config,
                );
                Ok(CachedVerdict::new(report, ttl))
            }
            Failure::Other(Outcome::Transient(why)) => {
                self.metrics.verification(VerificationOutcome::Transient);
                self.caches.note_transient(image.registry());
                Err(Outcome::Transient(why))
            }
            Failure::Other(other) => {
                self.metrics.verification(VerificationOutcome::Error);
                Err(other)
            }
        }
    }

    /// Fetches the signatures the policy's verifiers need: cosign signature layers and
    /// Notary Project envelopes.
    async fn fetch_signatures(
        &self,
        client: &RegistryClient,
        repo: &str,
        subject: &Descriptor,
        verifiers: &[LoadedVerifier],
        budget: Instant,
    ) -> Result<
        (
            Vec<Fetched<cosign::Candidate>>,
            Vec<Fetched<(String, Vec<u8>)>>,
        ),
        RegistryError,
    > {
        let wants = |f: fn(&LoadedVerifier) -> bool| verifiers.iter().any(f);
        let cosign = if wants(|v| matches!(v, LoadedVerifier::Cosign(_))) {
            self.cosign_candidates(client, repo, &subject.digest, budget)
                .await?
        } else {
            Vec::new()
        };
        let notation = if wants(|v| matches!(v, LoadedVerifier::Notation(_))) {
            self.notation_envelopes(client, repo, subject, budget)
                .await?
        } else {
            Vec::new()
        };
        Ok((cosign, notation))
    }

    /// The Notary Project envelopes that refer to `subject`, found through the referrers
    /// API or its tag schema; each signature manifest is checked for shape (one envelope
    /// layer, `subject` = the image) before its envelope is fetched. A referrers list, a
    /// manifest or an envelope the registry serves unusable (over a limit, malformed,
    /// missing, altered) is a failed candidate, never the end of the verification: one
    /// junk referrer must not hide a valid signature beside it.
    async fn notation_envelopes(
        &self,
        client: &RegistryClient,
        repo: &str,
        subject: &Descriptor,
        budget: Instant,
    ) -> Result<Vec<Fetched<(String, Vec<u8>)>>, RegistryError> {
        const FORMAT: SignatureFormat = SignatureFormat::Notation;
        let found = match client
            .referrers(repo, &subject.digest, notation::ARTIFACT_TYPE, budget)
            .await
        {
            Ok(found) => found,
            Err(e) => return Ok(vec![Err(self.unusable_candidate(FORMAT, e)?)]),
        };
        self.note_over_limit(FORMAT, found.len());
        let mut out = Vec::new();
        for d in found.into_iter().take(self.max_signatures) {
            let m = match client.manifest(repo, &d.digest, budget).await {
                Ok(m) => m,
                Err(e) => {
                    out.push(Err(self.unusable_candidate(FORMAT, e)?));
                    continue;
                }
            };
            let layer = match notary_manifest(&m.bytes, &d.digest, &subject.digest) {
                NotaryManifest::NotNotary => continue,
                NotaryManifest::Unusable(why, code) => {
                    self.metrics
                        .signatures_skipped(FORMAT.as_str(), SkipReason::Malformed, 1);
                    out.push(Err(Checked::failed(FORMAT.as_str(), "", code, why)));
                    continue;
                }
                NotaryManifest::Envelope(layer) => layer,
            };
            match client
                .blob(repo, &layer.digest, self.max_signature_bytes, budget)
                .await
            {
                Ok(b) => out.push(Ok((layer.media_type.clone(), b.to_vec()))),
                Err(e) => out.push(Err(self.unusable_candidate(FORMAT, e)?)),
            }
        }
        Ok(out)
    }

    /// The cosign signature layers of `digest`, each with its payload fetched and checked
    /// against its digest (`Err` holds the per-signature failure). No signature image →
    /// empty. A signature image or payload the registry serves unusable is a failed
    /// candidate, as for Notary Project signatures.
    async fn cosign_candidates(
        &self,
        client: &RegistryClient,
        repo: &str,
        digest: &str,
        budget: Instant,
    ) -> Result<Vec<Fetched<cosign::Candidate>>, RegistryError> {
        const FORMAT: SignatureFormat = SignatureFormat::Cosign;
        let manifest = match client
            .manifest(repo, &cosign::signature_tag(digest), budget)
            .await
        {
            Ok(m) => m,
            Err(RegistryError::NotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Ok(vec![Err(self.unusable_candidate(FORMAT, e)?)]),
        };
        let layers = match cosign_layers(&manifest.bytes) {
            Ok(layers) => layers,
            Err(e) => {
                self.metrics
                    .signatures_skipped(FORMAT.as_str(), SkipReason::Malformed, 1);
                let why = format!(
                    "signature manifest {} in {}/{repo} is not an OCI manifest: {e}",
                    manifest.digest,
                    client.host()
                );
                return Ok(vec![Err(Checked::failed(
                    FORMAT.as_str(),
                    "",
                    VerdictCode::InvalidSignature,
                    why,
                ))]);
            }
        };
        self.note_over_limit(FORMAT, layers.len());
        let mut out = Vec::new();
        for layer in layers.into_iter().take(self.max_signatures) {
            let payload = client
                .blob(
                    repo,
                    &layer.payload_digest,
                    self.max_signature_bytes,
                    budget,
                )
                .await;
            out.push(match payload {
                Ok(bytes) => Ok(cosign::Candidate {
                    payload: bytes.to_vec(),
                    signature_b64: layer.signature_b64,
                }),
                Err(e) => Err(self.unusable_candidate(FORMAT, e)?),
            });
        }
        Ok(out)
    }

    /// A registry failure met while fetching one signature candidate. What the registry's
    /// *content* decides (over a limit, malformed, missing, not matching its digest) makes
    /// this candidate a failed one, counted; anything else (unavailable, credentials, TLS,
    /// protocol) ends the verification, because no candidate can be trusted to be
    /// complete then.
    fn unusable_candidate(
        &self,
        format: SignatureFormat,
        e: RegistryError,
    ) -> Result<Checked, RegistryError> {
        let (code, reason, why) = match e {
            RegistryError::DigestMismatch(why) => {
                (VerdictCode::DigestMismatch, SkipReason::DigestMismatch, why)
            }
            RegistryError::NotFound(why) => {
                (VerdictCode::InvalidSignature, SkipReason::Missing, why)
            }
            RegistryError::Content(why) => {
                (VerdictCode::InvalidSignature, SkipReason::Unreadable, why)
            }
            other => return Err(other),
        };
        self.metrics.signatures_skipped(format.as_str(), reason, 1);
        Ok(Checked::failed(format.as_str(), "", code, why))
    }

    /// Counts the candidates beyond `limits.maxSignatures`, which are not examined.
    fn note_over_limit(&self, format: SignatureFormat, found: usize) {
        let over = found.saturating_sub(self.max_signatures);
        self.metrics
            .signatures_skipped(format.as_str(), SkipReason::OverLimit, over as u64);
    }
}

/// A fingerprint of everything a verdict depends on besides the image: policies,
/// registries, limits, and the bytes of every key and certificate file.
fn generation(config: &Config) -> u64 {
    use aws_lc_rs::digest::{Context, SHA256};
    let mut ctx = Context::new(&SHA256);
    let parts = serde_json::json!({
        "policies": config.policies,
        "registries": config.registries,
        "limits": config.limits,
    });
    ctx.update(parts.to_string().as_bytes());
    // Trust material only: registry credentials are how vouch reaches a registry, not
    // whom it trusts, and never go into a value that is shared (Redis keys).
    for f in config.files() {
        if f.role == FileRole::Trust {
            let bytes = std::fs::read(&f.path).unwrap_or_default();
            ctx.update(&(bytes.len() as u64).to_be_bytes());
            ctx.update(&bytes);
        }
    }
    let d = ctx.finish();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_ref()[..8]);
    u64::from_be_bytes(b)
}

/// `require: any` passes when one verifier passes (else the first failure); `all` when
/// every one does (else the first failure). No verifier never passes.
fn combine(require: Require, results: Vec<VerifierResult>) -> Result<(), (VerdictCode, String)> {
    let passed = |r: &VerifierResult| matches!(r, VerifierResult::Pass);
    let ok = match require {
        Require::Any => results.iter().any(passed),
        Require::All => !results.is_empty() && results.iter().all(passed),
    };
    if ok {
        return Ok(());
    }
    Err(results
        .into_iter()
        .find_map(|r| match r {
            VerifierResult::Fail(code, reason) => Some((code, reason)),
            VerifierResult::Pass => None,
        })
        .unwrap_or((VerdictCode::Unsigned, "the policy has no verifier".into())))
}

/// A registry failure sorted into SPEC §1's classes.
enum Failure {
    /// The registry's answer settles the key: a failed verdict with this code and reason.
    Verdict(VerdictCode, String),
    /// A per-key error or a transient failure.
    Other(Outcome),
}

fn classify(e: RegistryError) -> Failure {
    let error = |code, why| Failure::Other(Outcome::Error(KeyError::new(code, why)));
    match e {
        RegistryError::NotFound(why) => Failure::Verdict(VerdictCode::NotFound, why),
        RegistryError::DigestMismatch(why) => Failure::Verdict(VerdictCode::DigestMismatch, why),
        RegistryError::Auth(why) => error(ErrorCode::Auth, why),
        RegistryError::Protocol(why) => error(ErrorCode::RegistryProtocol, why),
        // The image's own manifest as served cannot be used: the pusher's doing.
        RegistryError::Content(why) => Failure::Verdict(VerdictCode::InvalidImage, why),
        RegistryError::Tls(why) => error(ErrorCode::RegistryTls, why),
        RegistryError::Transient(why) => Failure::Other(Outcome::Transient(why)),
    }
}

/// A registry failure as the answer for `reference`.
fn registry_outcome(e: RegistryError, reference: &str, policy: &str) -> Outcome {
    match classify(e) {
        Failure::Verdict(code, reason) => {
            Outcome::Value(Report::failed(reference, policy, code, reason).to_json())
        }
        Failure::Other(outcome) => outcome,
    }
}

impl Engine for VerifyEngine {
    fn evaluate<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Outcome> {
        self.verify(key).boxed()
    }

    fn cached(&self, key: &str) -> Option<Outcome> {
        self.caches
            .front_get(key, self.generation)
            .map(Outcome::Value)
    }

    /// A key over `limits.maxKeyBytes` is not an image reference vouch will look at: a
    /// failed verdict, which the verification template denies in both modes.
    fn oversized(&self, key: &str, why: String) -> Outcome {
        let preview: String = key.chars().take(64).collect();
        Outcome::Value(
            Report::failed(
                &format!("{preview}…"),
                "",
                VerdictCode::InvalidReference,
                why,
            )
            .to_json(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies() -> PolicySet {
        let config = Config::parse(
            "policies:\n- name: library\n  scopes: [\"docker.io/library/*\"]\n  action: allow\n- name: acme\n  scopes: [\"ghcr.io/acme/*\"]\n  verifiers:\n  - cosign: {publicKeys: [k.pub]}\n",
            "t",
            None,
        )
        .expect("valid");
        PolicySet::new(&config.policies)
    }

    fn verdict(key: &str) -> Report {
        match decide(key, &policies()) {
            Decision::Verdict(r) => r,
            other => panic!("expected a verdict for {key:?}, got {other:?}"),
        }
    }

    #[test]
    fn allow_policy_is_a_verified_verdict_without_signatures() {
        let r = verdict("nginx:1.27");
        assert!(r.verified);
        assert_eq!(r.policy, "library");
        assert_eq!(r.reference, "docker.io/library/nginx:1.27");
        assert!(r.signatures.is_empty());
        assert_eq!(r.code, VerdictCode::None);
    }

    #[test]
    fn allow_policy_reports_a_digest_the_key_carries() {
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let r = verdict(&format!("nginx@{d}"));
        assert_eq!(r.digest, d);
    }

    #[test]
    fn unknown_registry_is_no_policy() {
        let r = verdict("quay.io/x/y:1");
        assert!(!r.verified);
        assert_eq!(r.code, VerdictCode::NoPolicy);
        assert!(r.reason.contains("quay.io/x/y"), "{}", r.reason);
    }

    #[test]
    fn garbage_is_invalid_reference() {
        let r = verdict("not a reference");
        assert!(!r.verified);
        assert_eq!(r.code, VerdictCode::InvalidReference);
        assert_eq!(r.reference, "not a reference");
    }

    #[test]
    fn verify_policy_goes_to_the_verifiers() {
        let set = policies();
        match decide("ghcr.io/acme/api:1", &set) {
            Decision::Verify { image, policy } => {
                assert_eq!(policy.name, "acme");
                assert_eq!(image.to_string(), "ghcr.io/acme/api:1");
            }
            other => panic!("expected verification, got {other:?}"),
        }
    }

    /// Who controls a registry failure decides its class: content (a pusher's doing) is a
    /// verdict, availability is transient, the rest is a per-key error; none is admitted
    /// by fail-open except the transient one.
    #[test]
    fn registry_failures_sort_into_the_outcome_classes() {
        let class = |e: RegistryError| match classify(e) {
            Failure::Verdict(code, _) => format!("verdict {}", serde_json::json!(code)),
            Failure::Other(Outcome::Error(e)) => format!("error {}", e.code.as_str()),
            Failure::Other(Outcome::Transient(_)) => "transient".to_string(),
            Failure::Other(Outcome::Value(_)) => "value".to_string(),
        };
        let why = || "x".to_string();
        assert_eq!(
            class(RegistryError::NotFound(why())),
            "verdict \"not-found\""
        );
        assert_eq!(
            class(RegistryError::DigestMismatch(why())),
            "verdict \"digest-mismatch\""
        );
        assert_eq!(
            class(RegistryError::Content(why())),
            "verdict \"invalid-image\""
        );
        assert_eq!(class(RegistryError::Auth(why())), "error auth");
        assert_eq!(class(RegistryError::Tls(why())), "error registry-tls");
        assert_eq!(
            class(RegistryError::Protocol(why())),
            "error registry-protocol"
        );
        assert_eq!(class(RegistryError::Transient(why())), "transient");
    }

    fn pass() -> VerifierResult {
        VerifierResult::Pass
    }
    fn fail(code: VerdictCode) -> VerifierResult {
        VerifierResult::Fail(code, "x".into())
    }

    #[test]
    fn require_any_and_all() {
        use Require::{All, Any};
        use VerdictCode::{Expired, UntrustedSigner};
        assert!(combine(Any, vec![fail(UntrustedSigner), pass()]).is_ok());
        assert_eq!(
            combine(Any, vec![fail(UntrustedSigner)]).map_err(|e| e.0),
            Err(UntrustedSigner)
        );
        assert!(combine(All, vec![pass(), pass()]).is_ok());
        assert_eq!(
            combine(All, vec![pass(), fail(Expired)]).map_err(|e| e.0),
            Err(Expired)
        );
        assert!(combine(All, vec![]).is_err(), "no verifier never verifies");
        assert!(combine(Any, vec![]).is_err(), "no verifier never verifies");
    }
}
