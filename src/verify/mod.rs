//! The verification engine behind `/v1/verify` and `vouch verify`.
//!
//! A key's walk: [`decide`] is the pure front half — parse the reference, pick the policy,
//! and settle every key that needs no registry (`invalid-reference`, `no-policy`,
//! `action: allow`). Keys whose policy asks for signatures go, once per key however many
//! callers and replicas ask (`Caches::key_flight`), to `VerifyEngine::verify_image`:
//! answer a digest reference with a known verdict at once, else resolve the tag
//! ([`VerifyEngine::resolve`], through the tag cache), then ask the verdict cache, whose
//! miss runs `verify_digest`: [`signatures::fetch`] the candidates from the registry (a
//! [`SignatureSource`]), [`signatures::judge`] them with the policy's verifiers
//! ([`cosign`], [`notation`], [`keyless`], pure), and cache the verdict for as long as [`ttl_for`] says.

pub(crate) mod attestations;
mod build;
pub(crate) mod cosign;
pub(crate) mod dsse;
mod index;
pub(crate) mod keyless;
pub(crate) mod notation;
mod outcome;
pub(crate) mod platforms;
pub(crate) mod signature_manifest;
pub(crate) mod signatures;

pub(crate) use crate::verdict::{Checked, Denial, Report, SignatureFormat, VerdictCode};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::time::Instant;

use crate::attest::{self, RequiredAttestation};
use crate::cache::{CachedVerdict, Caches, Resolved, TagKey, VerdictKey, VerdictScope};
use crate::config::{Action, CacheConfig, Config, FileRole, Platforms, Verifier};
use crate::engine::{Engine, ErrorCode, KeyError, Outcome};
use crate::metrics::{Metrics, VerificationOutcome};
use crate::policy::{Policy, PolicySet};
use crate::reference::ImageRef;
use crate::registry::{
    Descriptor, ErrorKind, Registries, RegistryClient, RegistryError, SignatureSource,
};
use crate::revocation::Revocation;
use signatures::{Bounds, Discovery, LoadedVerifier};

use outcome::registry_outcome;
pub(crate) use outcome::{Failure, Resolution, classify, ttl_for};

/// What [`decide`] concluded without any I/O.
#[derive(Debug)]
pub(crate) enum Decision<'p> {
    /// A verdict reached from the key and the policies alone.
    Verdict(Report),
    /// The image must be verified against this policy's verifiers.
    Verify { image: ImageRef, policy: &'p Policy },
}

/// Settles what can be settled without a registry. The key may carry the admitted
/// object's namespace (`[team-a]ghcr.io/acme/app:1`), which decides the policies that apply.
pub(crate) fn decide<'p>(key: &str, policies: &'p PolicySet) -> Decision<'p> {
    let invalid = |why: String| {
        let denial = Denial::new(VerdictCode::InvalidReference, why);
        Decision::Verdict(Report::failed(key, "", denial))
    };
    let key = match crate::namespace::split(key) {
        Ok(k) => k,
        Err(e) => return invalid(format!("namespace prefix: {e}")),
    };
    let image = match ImageRef::parse(key.reference) {
        Ok(i) => i,
        Err(e) => return invalid(e.to_string()),
    };
    let Some(policy) = policies.select(&image, key.namespace) else {
        let reason = match key.namespace {
            Some(ns) => format!(
                "no trust policy scope covers {} in namespace {ns}",
                image.name()
            ),
            None => format!("no cluster-wide trust policy scope covers {}", image.name()),
        };
        let denial = Denial::new(VerdictCode::NoPolicy, reason);
        return Decision::Verdict(Report::failed(&image.to_string(), "", denial));
    };
    match policy.action {
        Action::Allow => Decision::Verdict(Report::allowed(&image, &policy.name)),
        Action::Verify => Decision::Verify { image, policy },
    }
}

/// Verifies image references against the configured trust policies.
pub(crate) struct VerifyEngine {
    policies: PolicySet,
    verifiers: HashMap<String, Vec<LoadedVerifier>>,
    /// Each policy's required attestations, their Rego compiled once per engine.
    required: HashMap<String, Arc<Vec<RequiredAttestation>>>,
    registries: Registries,
    /// Budget of one verification, retries included.
    budget: Duration,
    bounds: Bounds,
    /// `limits.maxPlatforms`: platform manifests of an index verified at most.
    max_platforms: usize,
    caches: Arc<Caches>,
    cache_config: CacheConfig,
    /// Fingerprint of the trust config (policies, registries, key and certificate bytes):
    /// part of every verdict key, so verdicts never outlive the config that made them, and
    /// replicas with the same config share verdicts through Redis.
    generation: u64,
    /// OCSP and CRL fetching for Notary Project chains (only hosts verifiers allow).
    revocation: Revocation,
    /// What each policy trusts, in one line, for the hints of not-verified reports.
    trusts: HashMap<String, String>,
    metrics: Arc<Metrics>,
    /// Whether each verdict reached is logged (`info`, one line): on in `vouch serve`,
    /// off on the command line, which prints its verdicts itself.
    log_verdicts: bool,
}

impl VerifyEngine {
    /// The trust-config fingerprint verdict keys carry.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The policies, for the front halves that need no engine (`mutate::plan`).
    pub(crate) fn policies(&self) -> &PolicySet {
        &self.policies
    }

    /// The report as the key's value; a not-verified one gets its `hint` here, where the
    /// policy's trust is known (cached reports do not keep it).
    fn render(&self, mut report: Report) -> crate::protocol::Json {
        if !report.verified {
            let trusts = self
                .trusts
                .get(&report.policy)
                .map(String::as_str)
                .unwrap_or("");
            report.hint = crate::hint::hint(&report, trusts);
        }
        report.to_json()
    }

    async fn verify(&self, key: &str) -> Outcome {
        match decide(key, &self.policies) {
            // Reached from the key and the config alone: as valid as the config.
            Decision::Verdict(report) => {
                self.verdict_reached(&report);
                let json = self.render(report);
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
        let reference = image.to_string();
        // A digest reference (what /v1/mutate pins every pod to) needs no resolution when
        // its verdict is known: answered without any registry request.
        if let Some(digest) = image.digest() {
            let scope = if policy.platforms == Platforms::Index {
                VerdictScope::Digest
            } else {
                // An index's verdict under `each` is kept apart from its own signature's;
                // a platform manifest's key finds nothing there and resolves.
                VerdictScope::Platforms
            };
            let key = self.verdict_key(image, policy, digest, scope);
            if let Some(v) = self.caches.known_verdict(&key).await {
                let mut report = v.report();
                report.reference = reference;
                return (Outcome::Value(self.render(report)), v.remaining());
            }
        }
        let budget = Instant::now() + self.budget;
        let resolved = match self.resolve(image, policy, budget).await {
            Ok(r) => r,
            Err(e) => {
                let outcome = match registry_outcome(e, &reference, &policy.name) {
                    Ok(report) => {
                        self.verdict_reached(&report);
                        Outcome::Value(self.render(report))
                    }
                    Err(outcome) => outcome,
                };
                return not_cached(outcome);
            }
        };
        let subject = &resolved.descriptor;
        let client = match self.client_for(image, policy) {
            Ok(c) => c,
            Err(o) => return not_cached(o),
        };
        let by_platform =
            policy.platforms != Platforms::Index && platforms::is_index(&subject.media_type);
        let verdict = if by_platform {
            let key = self.verdict_key(image, policy, &subject.digest, VerdictScope::Platforms);
            let verify = self.verify_platforms(client.as_ref(), image, policy, subject, budget);
            self.caches.verdict(key, Box::pin(verify)).await
        } else {
            self.digest_verdict(client.as_ref(), image, policy, subject, budget)
                .await
        };
        match verdict {
            Ok(v) => {
                let mut report = v.report();
                report.reference = reference;
                let fresh_for = v.remaining().min(self.caches.tag_remaining(resolved.at));
                (Outcome::Value(self.render(report)), fresh_for)
            }
            Err(outcome) => not_cached((*outcome).clone()),
        }
    }

    fn verdict_key(
        &self,
        image: &ImageRef,
        policy: &Policy,
        digest: &str,
        scope: VerdictScope,
    ) -> VerdictKey {
        VerdictKey {
            generation: self.generation,
            policy: policy.name.clone(),
            name: image.name(),
            digest: digest.to_string(),
            scope,
        }
    }

    /// The verdict on `subject`'s own signatures (and attestations), through the verdict
    /// cache: once per (policy, digest) however many keys and indexes name it.
    async fn digest_verdict(
        &self,
        client: &RegistryClient,
        image: &ImageRef,
        policy: &Policy,
        subject: &Descriptor,
        budget: Instant,
    ) -> Result<CachedVerdict, Arc<Outcome>> {
        let key = self.verdict_key(image, policy, &subject.digest, VerdictScope::Digest);
        let verify = self.verify_digest(client, image, policy, subject, budget);
        self.caches.verdict(key, verify).await
    }

    /// The client for the image's registry under `policy` (a namespaced policy's own, with
    /// its credentials, when it has one), unless that registry is backing off after a
    /// transient failure.
    fn client_for(
        &self,
        image: &ImageRef,
        policy: &Policy,
    ) -> Result<Arc<RegistryClient>, Outcome> {
        let host = image.registry();
        let Some(client) = self.registries.for_policy(host, &policy.name) else {
            // Scopes always name their host, so this is a wiring error, not an input error.
            return Err(Outcome::Transient(format!("no registry client for {host}")));
        };
        if let Some(left) = client.health().backing_off() {
            return Err(Outcome::Transient(format!(
                "registry {host} failed moments ago; not contacted for another {} ms",
                left.as_millis()
            )));
        }
        Ok(client)
    }

    /// The image's tag (or digest) resolved through the tag cache, as `/v1/mutate` pins it
    /// and verification verifies it; a transient failure starts the registry's back-off.
    /// `Err` holds the outcome when there is no resolution: the registry backing off, or
    /// its failure.
    pub(crate) async fn resolve(
        &self,
        image: &ImageRef,
        policy: &Policy,
        budget: Instant,
    ) -> Result<Resolved, Resolution> {
        let client = self
            .client_for(image, policy)
            .map_err(Resolution::Unavailable)?;
        let key = TagKey {
            credentials: if policy.has_credentials {
                policy.name.clone()
            } else {
                String::new()
            },
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
        if let Err(e) = &resolved
            && e.kind == ErrorKind::Transient
        {
            client.health().note_transient();
        }
        resolved.map_err(Resolution::Failed)
    }

    /// The verification budget, from now.
    pub(crate) fn budget(&self) -> Instant {
        Instant::now() + self.budget
    }

    /// Logs a verdict where it was reached (never when a cache answers): one `info` line
    /// per outcome, so an admitted or denied image leaves a trace however many requests
    /// name it. Only what the report says publicly: no credentials, no signatures.
    fn verdict_reached(&self, report: &Report) {
        if !self.log_verdicts {
            return;
        }
        let code = serde_json::to_value(report.code)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        tracing::info!(
            image = %report.reference,
            digest = %report.digest,
            policy = %report.policy,
            verified = report.verified,
            code = %code,
            "verdict"
        );
    }

    /// Runs the policy's verifiers on one digest: a verdict to cache, or an outcome that is
    /// not one (per-key error, transient failure).
    async fn verify_digest(
        &self,
        source: &dyn SignatureSource,
        image: &ImageRef,
        policy: &Policy,
        subject: &Descriptor,
        budget: Instant,
    ) -> Result<CachedVerdict, Outcome> {
        let started = Instant::now();
        let verifiers = self
            .verifiers
            .get(&policy.name)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let required = self.required.get(&policy.name).cloned().unwrap_or_default();
        let mut discovery = Discovery {
            source,
            repo: image.repository(),
            bounds: Bounds {
                attestations: !required.is_empty(),
                ..self.bounds
            },
            metrics: &self.metrics,
            budget,
            attestations: false,
        };
        let candidates = match discovery.signatures(subject, verifiers).await {
            Ok(c) => c,
            Err(stop) => return self.settle(image, policy, &subject.digest, stop, started),
        };
        let now = SystemTime::now();
        let target = notation::Target {
            digest: subject.digest.clone(),
            media_type: subject.media_type.clone(),
            size: subject.size,
        };
        let queries = signatures::revocation_queries(verifiers, &candidates, &target, now);
        let findings = if queries.is_empty() {
            Default::default()
        } else {
            self.revocation.resolve(queries, budget).await
        };
        let judged = signatures::judge(
            verifiers,
            policy.require,
            &candidates,
            &target,
            now,
            &findings,
        );
        if judged.verdict.is_err()
            && let Some(why) = judged.checked.iter().find_map(|c| c.transient.clone())
        {
            // A signature that may verify once its revocation source answers: no verdict.
            self.metrics.verification(
                VerificationOutcome::Transient,
                started.elapsed().as_secs_f64(),
            );
            return Err(Outcome::Transient(format!(
                "{image}: {why} (revocation is enforced)"
            )));
        }
        let valid_until = judged.valid_until();
        let mut report = match judged.verdict {
            Ok(()) => Report::allowed(image, &policy.name),
            Err(denial) => Report::failed(&image.to_string(), &policy.name, denial),
        };
        report.digest = subject.digest.clone();
        report.signatures = judged.checked.into_iter().map(|c| c.report).collect();
        if report.verified && !required.is_empty() {
            discovery.attestations = true;
            let have_bundles = verifiers.iter().any(LoadedVerifier::reads_bundles);
            let found = match discovery
                .attestations(subject, &candidates, have_bundles)
                .await
            {
                Ok(c) => attestations::verify(verifiers, &c, &subject.digest, &self.metrics),
                Err(stop) => return self.settle(image, policy, &subject.digest, stop, started),
            };
            let evaluation =
                evaluate_off_the_workers(required, found, image, &subject.digest).await;
            report.attestations = evaluation.reports;
            if let Err(denial) = evaluation.verdict {
                report.verified = false;
                report.code = denial.code;
                report.reason = denial.reason;
            }
        }
        let outcome = if report.verified {
            VerificationOutcome::Verified
        } else {
            VerificationOutcome::Failed
        };
        self.metrics
            .verification(outcome, started.elapsed().as_secs_f64());
        self.verdict_reached(&report);
        let ttl = ttl_for(report.verified, valid_until, now, &self.cache_config);
        Ok(CachedVerdict::new(report, ttl))
    }

    /// Sorts a registry failure that stopped signature discovery: a verdict is cached like
    /// any other failed verdict, anything else is handed back uncached.
    fn settle(
        &self,
        image: &ImageRef,
        policy: &Policy,
        digest: &str,
        e: RegistryError,
        started: Instant,
    ) -> Result<CachedVerdict, Outcome> {
        let took = started.elapsed().as_secs_f64();
        if e.kind == ErrorKind::Transient
            && let Some(client) = self.registries.for_policy(image.registry(), &policy.name)
        {
            client.health().note_transient();
        }
        match classify(e) {
            Failure::Verdict(denial) => {
                self.metrics.verification(VerificationOutcome::Failed, took);
                let mut report = Report::failed(&image.to_string(), &policy.name, denial);
                report.digest = digest.to_string();
                self.verdict_reached(&report);
                let ttl = ttl_for(false, None, SystemTime::now(), &self.cache_config);
                Ok(CachedVerdict::new(report, ttl))
            }
            Failure::Other(outcome) => {
                let class = match outcome {
                    Outcome::Transient(_) => VerificationOutcome::Transient,
                    _ => VerificationOutcome::Error,
                };
                self.metrics.verification(class, took);
                Err(outcome)
            }
        }
    }
}

/// Runs the Rego of the required attestations on a blocking thread (it is CPU work of
/// unbounded-looking size, bounded by `limits.regoTimeout` per statement); a panic there is
/// the input's doing, so it denies.
async fn evaluate_off_the_workers(
    required: Arc<Vec<RequiredAttestation>>,
    found: attestations::Found,
    image: &ImageRef,
    digest: &str,
) -> attest::Evaluation {
    let reference = image.to_string();
    let digest = digest.to_string();
    let joined = tokio::task::spawn_blocking(move || {
        attest::evaluate(
            &required,
            &found.statements,
            found.unverified,
            attest::Subject {
                reference: &reference,
                digest: &digest,
            },
        )
    })
    .await;
    joined.unwrap_or_else(|e| attest::Evaluation {
        reports: Vec::new(),
        verdict: Err(Denial::new(
            VerdictCode::AttestationDenied,
            format!("attestation evaluation failed: {e}"),
        )),
    })
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
        let denial = Denial::new(VerdictCode::InvalidReference, why);
        Outcome::Value(self.render(Report::failed(&format!("{preview}…"), "", denial)))
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
        let class = |kind| match classify(RegistryError::new("r.io", kind, "x")) {
            Failure::Verdict(d) => format!("verdict {}", serde_json::json!(d.code)),
            Failure::Other(Outcome::Error(e)) => format!("error {}", e.code.as_str()),
            Failure::Other(Outcome::Transient(_)) => "transient".to_string(),
            Failure::Other(Outcome::Value(_)) => "value".to_string(),
        };
        assert_eq!(class(ErrorKind::NotFound), "verdict \"not-found\"");
        assert_eq!(
            class(ErrorKind::DigestMismatch),
            "verdict \"digest-mismatch\""
        );
        assert_eq!(class(ErrorKind::Content), "verdict \"invalid-image\"");
        assert_eq!(class(ErrorKind::Auth), "error auth");
        assert_eq!(class(ErrorKind::Tls), "error registry-tls");
        assert_eq!(class(ErrorKind::Protocol), "error registry-protocol");
        assert_eq!(class(ErrorKind::Transient), "transient");
    }

    #[test]
    fn verified_verdicts_live_no_longer_than_what_made_them_valid() {
        let c = CacheConfig::default();
        let now = SystemTime::now();
        assert_eq!(ttl_for(false, None, now, &c), c.failed_ttl.get());
        assert_eq!(ttl_for(true, None, now, &c), c.verified_ttl.get());
        let soon = now + Duration::from_secs(5);
        assert_eq!(ttl_for(true, Some(soon), now, &c), Duration::from_secs(5));
        let past = now - Duration::from_secs(5);
        assert_eq!(ttl_for(true, Some(past), now, &c), Duration::ZERO);
    }
}
