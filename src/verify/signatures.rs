//! Finding an image's signatures and settling what they say, against a
//! [`SignatureSource`] — the live registry client, or an in-memory double in the unit tests.
//!
//! [`fetch`] discovers the candidates each verifier needs: the `sha256-<hex>.sig` signature
//! image and its payloads (cosign keys, legacy keyless signatures), and among the
//! referrers, Notary Project signatures and Sigstore bundles. A candidate the registry
//! serves unusable — over a size limit, not the document expected, missing, not hashing to
//! its digest — is a failed candidate, counted, and the others are still examined: one
//! junk layer must never hide a valid signature beside it, and nothing a pusher controls
//! may end a verification with an error that fail-open would admit. Only the registry
//! being unavailable, refusing credentials or TLS, or breaking the protocol ends it
//! ([`Stop`]). Each source is read once, however many verifiers need it.
//!
//! [`judge`] is pure: each verifier checks the candidates with its trust material, and the
//! policy's `require` combines the verifiers' verdicts.

use std::collections::BTreeMap;
use std::time::SystemTime;

use tokio::time::Instant;

use super::keyless::KeylessVerifier;
use super::signature_manifest::{
    ReferrerManifest, bundle_manifest, layers_of_type, notary_manifest,
};
use super::{cosign, notation};
use crate::config::Require;
use crate::metrics::{IgnoredAttestation, Metrics, SkipReason};
use crate::registry::{Descriptor, ErrorKind, RegistryError, SignatureSource};
use crate::revocation::{Findings, Query};
use crate::verdict::{Checked, Denial, SignatureFormat, VerdictCode, signatures_verdict};

/// A policy verifier with its trust material loaded.
pub(crate) enum LoadedVerifier {
    Cosign(Vec<cosign::PublicKey>),
    Notation(notation::NotationVerifier),
    Keyless(KeylessVerifier),
}

impl LoadedVerifier {
    fn format(&self) -> SignatureFormat {
        match self {
            LoadedVerifier::Cosign(_) => SignatureFormat::Cosign,
            LoadedVerifier::Notation(_) => SignatureFormat::Notation,
            LoadedVerifier::Keyless(_) => SignatureFormat::Sigstore,
        }
    }

    /// Whether this verifier reads the `.sig` signature image.
    fn reads_signature_image(&self) -> bool {
        match self {
            LoadedVerifier::Cosign(_) => true,
            LoadedVerifier::Notation(_) => false,
            LoadedVerifier::Keyless(k) => k.format().legacy(),
        }
    }

    /// Whether this verifier reads Sigstore bundles among the referrers.
    pub(crate) fn reads_bundles(&self) -> bool {
        matches!(self, LoadedVerifier::Keyless(k) if k.format().bundles())
    }
}

/// A fetched candidate, or why it could not be used.
pub(crate) type Candidate<T> = Result<T, Checked>;

/// The tag under which cosign stores the attestations of `digest`: `sha256-<hex>.att`.
pub(crate) fn attestation_tag(digest: &str) -> String {
    format!("{}.att", digest.replacen(':', "-", 1))
}

/// One layer of the `.sig` signature image with its payload fetched and hash-checked: a
/// cosign key-based signature, or with a certificate, a legacy keyless one.
#[derive(Debug, Clone)]
pub(crate) struct SignatureLayer {
    pub cosign: cosign::Candidate,
    pub annotations: BTreeMap<String, String>,
}

/// The candidates of every source the verifiers asked for.
#[derive(Default)]
pub(crate) struct Candidates {
    /// The layers of the `.sig` signature image.
    pub signature_image: Vec<Candidate<SignatureLayer>>,
    /// A Notary Project envelope and its media type (JWS or COSE).
    pub notation: Vec<Candidate<(String, Vec<u8>)>>,
    /// Sigstore bundles (JSON) attached as referrers.
    pub bundles: Vec<Candidate<Vec<u8>>>,
}

/// The bounds of discovery (`limits.maxSignatures`, `limits.maxSignatureBytes`,
/// `limits.maxAttestationBytes`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub max_signatures: usize,
    pub max_signature_bytes: usize,
    /// Largest attestation (`.att` envelope, or a bundle when attestations are read).
    pub max_attestation_bytes: usize,
    /// Whether the policy requires attestations: bundles among the referrers may then be
    /// attestations, as large as `max_attestation_bytes`.
    pub attestations: bool,
}

impl Bounds {
    /// The largest bundle fetched.
    fn max_bundle_bytes(&self) -> usize {
        if self.attestations {
            self.max_signature_bytes.max(self.max_attestation_bytes)
        } else {
            self.max_signature_bytes
        }
    }
}

/// The attestation candidates of an image: the `.att` layers (DSSE envelopes with their
/// annotations) and the bundles among the referrers.
#[derive(Default)]
pub(crate) struct AttestationCandidates {
    pub layers: Vec<Candidate<SignatureLayer>>,
    pub bundles: Vec<Candidate<Vec<u8>>>,
}

/// The media type of cosign's attestation layers.
pub(crate) const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";

/// Why discovery stopped: a registry failure that is not the content's doing.
pub(crate) type Stop = RegistryError;

/// Fetches the candidates `verifiers` need for `subject` in `repo`.
#[cfg(test)]
pub(crate) async fn fetch(
    source: &dyn SignatureSource,
    repo: &str,
    subject: &Descriptor,
    verifiers: &[LoadedVerifier],
    bounds: Bounds,
    metrics: &Metrics,
    budget: Instant,
) -> Result<Candidates, Stop> {
    Discovery {
        source,
        repo,
        bounds,
        metrics,
        budget,
        attestations: false,
    }
    .signatures(subject, verifiers)
    .await
}

/// One image's discovery: where, within which bounds, counted where.
pub(crate) struct Discovery<'a> {
    pub source: &'a dyn SignatureSource,
    pub repo: &'a str,
    pub bounds: Bounds,
    pub metrics: &'a Metrics,
    pub budget: Instant,
    /// Fetching attestations: unusable candidates are counted as ignored attestations.
    pub attestations: bool,
}

impl Discovery<'_> {
    /// The signature candidates `verifiers` need for `subject`.
    pub(crate) async fn signatures(
        &self,
        subject: &Descriptor,
        verifiers: &[LoadedVerifier],
    ) -> Result<Candidates, Stop> {
        let discovery = self;
        let bounds = self.bounds;
        let wants = |f: SignatureFormat| verifiers.iter().any(|v| v.format() == f);
        let mut out = Candidates::default();
        if verifiers.iter().any(LoadedVerifier::reads_signature_image) {
            // Counted under cosign when a key verifier reads it, else under sigstore.
            let label = if wants(SignatureFormat::Cosign) {
                SignatureFormat::Cosign
            } else {
                SignatureFormat::Sigstore
            };
            out.signature_image = discovery
                .tagged_layers(
                    &cosign::signature_tag(&subject.digest),
                    cosign::SIMPLE_SIGNING,
                    bounds.max_signature_bytes,
                    label,
                )
                .await?;
        }
        if wants(SignatureFormat::Notation) {
            let found = discovery
                .referrers(
                    subject,
                    SignatureFormat::Notation,
                    &[notation::ARTIFACT_TYPE],
                    notary_manifest,
                )
                .await?;
            for c in found {
                out.notation
                    .push(c.map(|(layer, envelope)| (layer.media_type, envelope)));
            }
        }
        if verifiers.iter().any(LoadedVerifier::reads_bundles) {
            let found = discovery
                .referrers(
                    subject,
                    SignatureFormat::Sigstore,
                    &crate::keyless::BUNDLE_MEDIA_TYPES,
                    bundle_manifest,
                )
                .await?;
            for c in found {
                out.bundles.push(c.map(|(_, bundle)| bundle));
            }
        }
        Ok(out)
    }

    /// The attestation candidates of `subject`: the `.att` layers, and the bundles among
    /// the referrers unless `signatures` already holds them.
    pub(crate) async fn attestations(
        &self,
        subject: &Descriptor,
        signatures: &Candidates,
        have_bundles: bool,
    ) -> Result<AttestationCandidates, Stop> {
        let format = SignatureFormat::Sigstore;
        let layers = self
            .tagged_layers(
                &attestation_tag(&subject.digest),
                DSSE_ENVELOPE,
                self.bounds.max_attestation_bytes,
                format,
            )
            .await?;
        let bundles = if have_bundles {
            signatures.bundles.clone()
        } else {
            let found = self
                .referrers(
                    subject,
                    format,
                    &crate::keyless::BUNDLE_MEDIA_TYPES,
                    bundle_manifest,
                )
                .await?;
            let mut bundles = Vec::with_capacity(found.len());
            for c in found {
                bundles.push(c.map(|(_, b)| b));
            }
            bundles
        };
        Ok(AttestationCandidates { layers, bundles })
    }

    /// The layers of `media_type` of the image tagged `tag` (cosign's `.sig` or `.att`),
    /// each with its blob fetched (at most `max_bytes`) and checked against its digest. No
    /// such image → none.
    async fn tagged_layers(
        &self,
        tag: &str,
        media_type: &str,
        max_bytes: usize,
        format: SignatureFormat,
    ) -> Result<Vec<Candidate<SignatureLayer>>, Stop> {
        let manifest = match self.source.manifest(self.repo, tag, self.budget).await {
            Ok(m) => m,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Ok(vec![Err(self.unusable(format, e)?)]),
        };
        let layers = match layers_of_type(&manifest.bytes, media_type) {
            Ok(layers) => layers,
            Err(e) => {
                self.count_skipped(format, SkipReason::Malformed, 1);
                let why = format!(
                    "signature manifest {} in {}/{} is not an OCI manifest: {e}",
                    manifest.digest,
                    self.source.host(),
                    self.repo
                );
                return Ok(vec![Err(Checked::failed(
                    format,
                    "",
                    VerdictCode::InvalidSignature,
                    why,
                ))]);
            }
        };
        self.note_over_limit(format, layers.len());
        let mut out = Vec::new();
        for layer in layers.into_iter().take(self.bounds.max_signatures) {
            let payload = self
                .source
                .blob(self.repo, &layer.payload_digest, max_bytes, self.budget)
                .await;
            out.push(match payload {
                Ok(bytes) => Ok(SignatureLayer {
                    cosign: cosign::Candidate {
                        payload: bytes.to_vec(),
                        signature_b64: layer.signature_b64().map(str::to_owned),
                    },
                    annotations: layer.annotations,
                }),
                Err(e) => Err(self.unusable(format, e)?),
            });
        }
        Ok(out)
    }

    /// The artifacts among the referrers of `subject` that `classify` accepts as `format`
    /// (by artifact type, shape, and `subject` = the image, before anything else is
    /// fetched), each with its one layer's blob.
    async fn referrers(
        &self,
        subject: &Descriptor,
        format: SignatureFormat,
        artifact_types: &[&str],
        classify: fn(&[u8], &str, &str) -> ReferrerManifest,
    ) -> Result<Vec<Candidate<(Descriptor, Vec<u8>)>>, Stop> {
        let found = match self
            .source
            .referrers(self.repo, &subject.digest, artifact_types, self.budget)
            .await
        {
            Ok(found) => found,
            Err(e) => return Ok(vec![Err(self.unusable(format, e)?)]),
        };
        self.note_over_limit(format, found.len());
        let mut out = Vec::new();
        for d in found.into_iter().take(self.bounds.max_signatures) {
            let m = match self
                .source
                .manifest(self.repo, &d.digest, self.budget)
                .await
            {
                Ok(m) => m,
                Err(e) => {
                    out.push(Err(self.unusable(format, e)?));
                    continue;
                }
            };
            let layer = match classify(&m.bytes, &d.digest, &subject.digest) {
                ReferrerManifest::Other => continue,
                ReferrerManifest::Unusable(denial) => {
                    self.count_skipped(format, SkipReason::Malformed, 1);
                    out.push(Err(Checked::failed(format, "", denial.code, denial.reason)));
                    continue;
                }
                ReferrerManifest::Layer(layer) => layer,
            };
            let max = if format == SignatureFormat::Sigstore {
                self.bounds.max_bundle_bytes()
            } else {
                self.bounds.max_signature_bytes
            };
            let blob = self
                .source
                .blob(self.repo, &layer.digest, max, self.budget)
                .await;
            out.push(match blob {
                Ok(b) => Ok((layer, b.to_vec())),
                Err(e) => Err(self.unusable(format, e)?),
            });
        }
        Ok(out)
    }

    /// A registry failure met while fetching one candidate. What the registry's *content*
    /// decides (over a limit, malformed, missing, not matching its digest) makes this
    /// candidate a failed one, counted; anything else ends the discovery, because no
    /// candidate can be trusted to be complete then.
    fn unusable(&self, format: SignatureFormat, e: RegistryError) -> Result<Checked, Stop> {
        let (code, reason) = match e.kind {
            ErrorKind::DigestMismatch => (VerdictCode::DigestMismatch, SkipReason::DigestMismatch),
            ErrorKind::NotFound => (VerdictCode::InvalidSignature, SkipReason::Missing),
            ErrorKind::Content => (VerdictCode::InvalidSignature, SkipReason::Unreadable),
            _ => return Err(e),
        };
        self.count_skipped(format, reason, 1);
        Ok(Checked::failed(format, "", code, e.into_detail()))
    }

    /// Counts the candidates beyond `limits.maxSignatures`, which are not examined.
    fn note_over_limit(&self, format: SignatureFormat, found: usize) {
        let over = found.saturating_sub(self.bounds.max_signatures);
        self.count_skipped(format, SkipReason::OverLimit, over as u64);
    }

    /// `n` candidates not examined: skipped signatures, or ignored attestations. Attestation
    /// candidates that come back as failed ones are counted where they are verified
    /// (`verify::attestations`); only those never returned (over the limit) are counted here.
    fn count_skipped(&self, format: SignatureFormat, reason: SkipReason, n: u64) {
        if !self.attestations {
            self.metrics.signatures_skipped(format.as_str(), reason, n);
        } else if reason == SkipReason::OverLimit {
            self.metrics
                .attestations_ignored(IgnoredAttestation::Unreadable, n);
        }
    }
}

/// What the verifiers concluded about one image.
#[derive(Debug)]
pub(crate) struct Judgement {
    /// `Ok` when the policy's `require` is met, else the denial that explains it.
    pub verdict: Result<(), Denial>,
    /// Every candidate as each verifier saw it, in verifier order.
    pub checked: Vec<Checked>,
}

impl Judgement {
    /// When the earliest passing signature stops vouching (a certificate's notAfter, an
    /// envelope's expiry): caps how long the verdict may be cached.
    pub(crate) fn valid_until(&self) -> Option<SystemTime> {
        self.checked
            .iter()
            .filter(|c| c.failure.is_none())
            .filter_map(|c| c.valid_until)
            .min()
    }
}

/// Checks every candidate with each verifier's trust material (pure) and combines the
/// verifiers' verdicts by `require`. `target` is the image as a Notary payload names it.
pub(crate) fn judge(
    verifiers: &[LoadedVerifier],
    require: Require,
    candidates: &Candidates,
    target: &notation::Target,
    now: SystemTime,
    findings: &Findings,
) -> Judgement {
    let mut checked = Vec::new();
    let mut verdicts = Vec::new();
    for v in verifiers {
        let seen: Vec<Checked> = match v {
            LoadedVerifier::Cosign(keys) => candidates
                .signature_image
                .iter()
                .map(|c| match c {
                    Ok(layer) => cosign::check(&layer.cosign, keys, &target.digest),
                    Err(unusable) => unusable.clone(),
                })
                .collect(),
            LoadedVerifier::Keyless(k) => keyless_checks(k, candidates, &target.digest),
            LoadedVerifier::Notation(trust) if trust.skips() => vec![Checked::passed(
                SignatureFormat::Notation,
                String::new(),
                "verification level skip: signatures not checked",
            )],
            LoadedVerifier::Notation(trust) => candidates
                .notation
                .iter()
                .map(|c| match c {
                    Ok((media_type, envelope)) => {
                        notation::check(media_type, envelope, trust, target, now, findings)
                    }
                    Err(unusable) => unusable.clone(),
                })
                .collect(),
        };
        verdicts.push(signatures_verdict(v.format(), &seen));
        checked.extend(seen);
    }
    Judgement {
        verdict: combine(require, verdicts),
        checked,
    }
}

/// The revocation lookups [`judge`] will need: those of every Notary Project signature
/// whose chain leads to a verifier's trust store (pure: the engine fetches them first).
pub(crate) fn revocation_queries(
    verifiers: &[LoadedVerifier],
    candidates: &Candidates,
    target: &notation::Target,
    now: SystemTime,
) -> Vec<Query> {
    let mut out = Vec::new();
    for v in verifiers {
        if let LoadedVerifier::Notation(trust) = v {
            for (media_type, envelope) in candidates.notation.iter().flatten() {
                out.extend(notation::revocation_queries(
                    media_type, envelope, trust, target, now,
                ));
            }
        }
    }
    out
}

/// What a keyless verifier makes of the candidates its format reads: the `.sig` layers,
/// then the bundles (attestations among them are not signatures and are left out).
fn keyless_checks(k: &KeylessVerifier, candidates: &Candidates, digest: &str) -> Vec<Checked> {
    let as_sigstore = |unusable: &Checked| {
        let mut c = unusable.clone();
        c.report.format = SignatureFormat::Sigstore.as_str().to_string();
        c
    };
    let mut seen = Vec::new();
    if k.format().legacy() {
        for c in &candidates.signature_image {
            seen.push(match c {
                Ok(layer) => k.check_legacy(&layer.cosign.payload, &layer.annotations, digest),
                Err(unusable) => as_sigstore(unusable),
            });
        }
    }
    if k.format().bundles() {
        for c in &candidates.bundles {
            match c {
                Ok(bundle) => seen.extend(k.check_bundle(bundle, digest)),
                Err(unusable) => seen.push(as_sigstore(unusable)),
            }
        }
    }
    seen
}

/// `require: any` passes when one verifier passes (else the first failure); `all` when
/// every one does (else the first failure). No verifier never passes.
pub(crate) fn combine(require: Require, verdicts: Vec<Result<(), Denial>>) -> Result<(), Denial> {
    let ok = match require {
        Require::Any => verdicts.iter().any(Result::is_ok),
        Require::All => !verdicts.is_empty() && verdicts.iter().all(Result::is_ok),
    };
    if ok {
        return Ok(());
    }
    Err(verdicts
        .into_iter()
        .find_map(Result::err)
        .unwrap_or_else(|| Denial::new(VerdictCode::Unsigned, "the policy has no verifier")))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::Duration;

    use bytes::Bytes;
    use futures_util::future::BoxFuture;

    use super::*;
    use crate::digest::sha256_digest;
    use crate::registry::Manifest;

    /// A registry in memory: manifests by tag or digest, blobs by digest, referrers by
    /// subject; `fail` makes every request of a path fail with a kind. Records what was
    /// asked, so tests see what discovery fetched.
    #[derive(Default)]
    struct Memory {
        manifests: HashMap<String, Vec<u8>>,
        blobs: HashMap<String, Vec<u8>>,
        referrers: HashMap<String, Result<Vec<Descriptor>, ErrorKind>>,
        fail: HashMap<String, ErrorKind>,
        asked: Mutex<Vec<String>>,
    }

    impl Memory {
        fn error(&self, kind: ErrorKind, what: &str) -> RegistryError {
            RegistryError::new("mem.io", kind, format!("{what}: {kind:?}"))
        }

        fn put_blob(&mut self, bytes: &[u8]) -> String {
            let d = sha256_digest(bytes);
            self.blobs.insert(d.clone(), bytes.to_vec());
            d
        }
    }

    impl SignatureSource for Memory {
        fn host(&self) -> &str {
            "mem.io"
        }

        fn referrers<'a>(
            &'a self,
            _: &'a str,
            digest: &'a str,
            _: &'a [&'a str],
            _: Instant,
        ) -> BoxFuture<'a, Result<Vec<Descriptor>, RegistryError>> {
            self.asked
                .lock()
                .expect("lock")
                .push(format!("referrers {digest}"));
            let r = match self.referrers.get(digest) {
                Some(Ok(found)) => Ok(found.clone()),
                Some(Err(kind)) => Err(self.error(*kind, "referrers")),
                None => Ok(Vec::new()),
            };
            Box::pin(async move { r })
        }

        fn manifest<'a>(
            &'a self,
            _: &'a str,
            reference: &'a str,
            _: Instant,
        ) -> BoxFuture<'a, Result<Manifest, RegistryError>> {
            self.asked
                .lock()
                .expect("lock")
                .push(format!("manifest {reference}"));
            let r = match (self.fail.get(reference), self.manifests.get(reference)) {
                (Some(kind), _) => Err(self.error(*kind, reference)),
                (None, Some(bytes)) => Ok(Manifest {
                    digest: sha256_digest(bytes),
                    media_type: crate::registry::OCI_MANIFEST.into(),
                    bytes: Bytes::from(bytes.clone()),
                }),
                (None, None) => Err(self.error(ErrorKind::NotFound, reference)),
            };
            Box::pin(async move { r })
        }

        fn blob<'a>(
            &'a self,
            _: &'a str,
            digest: &'a str,
            max: usize,
            _: Instant,
        ) -> BoxFuture<'a, Result<Bytes, RegistryError>> {
            self.asked
                .lock()
                .expect("lock")
                .push(format!("blob {digest}"));
            let r = match (self.fail.get(digest), self.blobs.get(digest)) {
                (Some(kind), _) => Err(self.error(*kind, digest)),
                (None, Some(b)) if b.len() > max => Err(self.error(ErrorKind::Content, digest)),
                (None, Some(b)) => Ok(Bytes::from(b.clone())),
                (None, None) => Err(self.error(ErrorKind::NotFound, digest)),
            };
            Box::pin(async move { r })
        }
    }

    const SUBJECT: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn subject() -> Descriptor {
        Descriptor {
            media_type: crate::registry::OCI_MANIFEST.into(),
            digest: SUBJECT.into(),
            size: 100,
            artifact_type: None,
        }
    }

    /// A cosign signature image of `layers` (payload digest, signature), at the tag.
    fn cosign_image(mem: &mut Memory, layers: &[(String, &str)]) {
        let layers: Vec<_> = layers
            .iter()
            .map(|(d, sig)| {
                serde_json::json!({"mediaType": cosign::SIMPLE_SIGNING, "digest": d, "size": 1,
                    "annotations": {cosign::SIGNATURE_ANNOTATION: sig}})
            })
            .collect();
        let m = serde_json::json!({"schemaVersion": 2, "layers": layers}).to_string();
        mem.manifests
            .insert(cosign::signature_tag(SUBJECT), m.into_bytes());
    }

    fn bounds() -> Bounds {
        Bounds {
            max_signatures: 3,
            max_signature_bytes: 64,
            max_attestation_bytes: 64,
            attestations: false,
        }
    }

    async fn cosign_candidates(mem: &Memory, metrics: &Metrics) -> Result<Candidates, Stop> {
        let verifiers = [LoadedVerifier::Cosign(Vec::new())];
        let budget = Instant::now() + Duration::from_secs(1);
        fetch(
            mem,
            "acme/app",
            &subject(),
            &verifiers,
            bounds(),
            metrics,
            budget,
        )
        .await
    }

    #[tokio::test]
    async fn junk_beside_a_candidate_is_a_failed_candidate_and_the_rest_are_fetched() {
        let mut mem = Memory::default();
        let good = mem.put_blob(b"payload");
        let big = mem.put_blob(&[b'x'; 100]);
        let missing = sha256_digest(b"never pushed");
        cosign_image(
            &mut mem,
            &[(big, "AAAA"), (missing, "AAAA"), (good.clone(), "c2ln")],
        );
        let metrics = Metrics::new();
        let c = cosign_candidates(&mem, &metrics).await.expect("no stop");
        assert_eq!(c.signature_image.len(), 3);
        assert!(
            matches!(&c.signature_image[0], Err(f) if f.failure == Some(VerdictCode::InvalidSignature))
        );
        assert!(
            matches!(&c.signature_image[1], Err(f) if f.failure == Some(VerdictCode::InvalidSignature))
        );
        match &c.signature_image[2] {
            Ok(layer) => assert_eq!(layer.cosign.payload, b"payload"),
            Err(f) => panic!("the good payload was fetched: {f:?}"),
        }
        let text = metrics.encode();
        for reason in ["unreadable", "missing"] {
            assert!(
                text.contains(&format!(
                    "vouch_signature_candidates_skipped_total{{format=\"cosign\",reason=\"{reason}\"}} 1"
                )),
                "{reason}: {text}"
            );
        }
    }

    #[tokio::test]
    async fn candidates_beyond_the_limit_are_counted_and_not_fetched() {
        let mut mem = Memory::default();
        let layers: Vec<(String, &str)> = (0..5)
            .map(|i| (mem.put_blob(format!("p{i}").as_bytes()), "AAAA"))
            .collect();
        let last = layers[4].0.clone();
        cosign_image(&mut mem, &layers);
        let metrics = Metrics::new();
        let c = cosign_candidates(&mem, &metrics).await.expect("no stop");
        assert_eq!(c.signature_image.len(), 3, "limits.maxSignatures");
        let asked = mem.asked.lock().expect("lock").clone();
        assert!(!asked.contains(&format!("blob {last}")), "{asked:?}");
        assert!(metrics.encode().contains(
            "vouch_signature_candidates_skipped_total{format=\"cosign\",reason=\"over_limit\"} 2"
        ));
    }

    #[tokio::test]
    async fn an_unusable_signature_image_is_one_failed_candidate_and_none_is_unsigned() {
        let metrics = Metrics::new();
        let mut mem = Memory::default();
        let c = cosign_candidates(&mem, &metrics).await.expect("no stop");
        assert!(c.signature_image.is_empty(), "no .sig tag: no candidate");
        mem.fail
            .insert(cosign::signature_tag(SUBJECT), ErrorKind::Content);
        let c = cosign_candidates(&mem, &metrics).await.expect("no stop");
        assert_eq!(c.signature_image.len(), 1);
        assert!(c.signature_image[0].is_err());
        mem.fail
            .insert(cosign::signature_tag(SUBJECT), ErrorKind::DigestMismatch);
        let c = cosign_candidates(&mem, &metrics).await.expect("no stop");
        assert!(
            matches!(&c.signature_image[0], Err(f) if f.failure == Some(VerdictCode::DigestMismatch))
        );
    }

    #[tokio::test]
    async fn an_unavailable_or_refusing_registry_stops_discovery() {
        for kind in [
            ErrorKind::Transient,
            ErrorKind::Auth,
            ErrorKind::Tls,
            ErrorKind::Protocol,
        ] {
            let mut mem = Memory::default();
            let good = mem.put_blob(b"payload");
            cosign_image(&mut mem, &[(good.clone(), "c2ln")]);
            mem.fail.insert(good, kind);
            let stopped = cosign_candidates(&mem, &Metrics::new()).await;
            assert_eq!(stopped.err().map(|e| e.kind), Some(kind));
        }
    }

    #[tokio::test]
    async fn unreadable_referrers_are_a_failed_notation_candidate() {
        let mut mem = Memory::default();
        mem.referrers
            .insert(SUBJECT.into(), Err(ErrorKind::Content));
        let budget = Instant::now() + Duration::from_secs(1);
        let verifiers = [LoadedVerifier::Notation(notation::NotationVerifier::empty())];
        let c = fetch(
            &mem,
            "r",
            &subject(),
            &verifiers,
            bounds(),
            &Metrics::new(),
            budget,
        )
        .await
        .expect("no stop");
        assert_eq!(c.notation.len(), 1);
        assert!(c.notation[0].is_err());
        assert!(c.signature_image.is_empty(), "cosign not asked for");
        let asked = mem.asked.lock().expect("lock").clone();
        assert_eq!(asked, vec![format!("referrers {SUBJECT}")]);
    }

    async fn keyless_candidates(mem: &Memory, format: crate::config::KeylessFormat) -> Candidates {
        let verifiers = [LoadedVerifier::Keyless(KeylessVerifier::for_discovery(
            format,
        ))];
        fetch(
            mem,
            "r",
            &subject(),
            &verifiers,
            Bounds {
                max_signatures: 3,
                max_signature_bytes: 4096,
                max_attestation_bytes: 4096,
                attestations: false,
            },
            &Metrics::new(),
            Instant::now() + Duration::from_secs(1),
        )
        .await
        .expect("no stop")
    }

    /// A bundle referrer of `subject_digest` holding `bundle`.
    fn bundle_referrer(mem: &mut Memory, subject_digest: &str, bundle: &[u8]) -> Descriptor {
        const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
        let layer = mem.put_blob(bundle);
        let m = serde_json::json!({
            "schemaVersion": 2, "artifactType": BUNDLE,
            "layers": [{"mediaType": BUNDLE, "digest": layer, "size": bundle.len()}],
            "subject": {"mediaType": crate::registry::OCI_MANIFEST, "digest": subject_digest, "size": 1},
        })
        .to_string();
        let d = Descriptor {
            media_type: crate::registry::OCI_MANIFEST.into(),
            digest: sha256_digest(m.as_bytes()),
            size: m.len() as u64,
            artifact_type: Some(BUNDLE.into()),
        };
        mem.manifests.insert(d.digest.clone(), m.into_bytes());
        d
    }

    #[tokio::test]
    async fn keyless_formats_read_only_their_sources() {
        use crate::config::KeylessFormat;
        let mut mem = Memory::default();
        let payload = mem.put_blob(b"payload");
        cosign_image(&mut mem, &[(payload, "c2ln")]);
        let d = bundle_referrer(&mut mem, SUBJECT, b"{\"not\": \"a bundle\"}");
        mem.referrers.insert(SUBJECT.into(), Ok(vec![d]));

        let legacy = keyless_candidates(&mem, KeylessFormat::Legacy).await;
        assert_eq!((legacy.signature_image.len(), legacy.bundles.len()), (1, 0));
        let asked = std::mem::take(&mut *mem.asked.lock().expect("lock"));
        assert!(
            asked.iter().all(|a| !a.starts_with("referrers")),
            "{asked:?}"
        );

        let bundle = keyless_candidates(&mem, KeylessFormat::Bundle).await;
        assert_eq!((bundle.signature_image.len(), bundle.bundles.len()), (0, 1));
        let asked = std::mem::take(&mut *mem.asked.lock().expect("lock"));
        assert!(asked.iter().all(|a| !a.contains(".sig")), "{asked:?}");

        let any = keyless_candidates(&mem, KeylessFormat::Any).await;
        assert_eq!((any.signature_image.len(), any.bundles.len()), (1, 1));
    }

    #[tokio::test]
    async fn a_bundle_of_another_subject_is_a_failed_candidate_and_junk_bundles_do_not_verify() {
        use crate::config::KeylessFormat;
        let mut mem = Memory::default();
        let other = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
        let wrong = bundle_referrer(&mut mem, other, b"{}");
        let junk = bundle_referrer(&mut mem, SUBJECT, b"{\"mediaType\": \"x\"}");
        mem.referrers.insert(SUBJECT.into(), Ok(vec![wrong, junk]));
        let c = keyless_candidates(&mem, KeylessFormat::Bundle).await;
        assert!(matches!(&c.bundles[0], Err(f) if f.failure == Some(VerdictCode::DigestMismatch)));
        assert!(c.bundles[1].is_ok(), "fetched: judged by the verifier");
        let verifiers = [LoadedVerifier::Keyless(KeylessVerifier::for_discovery(
            KeylessFormat::Bundle,
        ))];
        let target = notation::Target {
            digest: SUBJECT.into(),
            media_type: crate::registry::OCI_MANIFEST.into(),
            size: 1,
        };
        let j = judge(
            &verifiers,
            Require::Any,
            &c,
            &target,
            SystemTime::now(),
            &Findings::new(),
        );
        assert_eq!(j.checked.len(), 2);
        assert!(j.checked.iter().all(|c| c.report.format == "sigstore"));
        let denial = j.verdict.expect_err("nothing verifies");
        assert_eq!(
            denial.code,
            VerdictCode::DigestMismatch,
            "the most telling failure"
        );
    }

    fn pass() -> Result<(), Denial> {
        Ok(())
    }
    fn fail(code: VerdictCode) -> Result<(), Denial> {
        Err(Denial::new(code, "x"))
    }

    #[test]
    fn require_any_and_all() {
        use Require::{All, Any};
        use VerdictCode::{Expired, UntrustedSigner};
        assert!(combine(Any, vec![fail(UntrustedSigner), pass()]).is_ok());
        assert_eq!(
            combine(Any, vec![fail(UntrustedSigner)]).map_err(|e| e.code),
            Err(UntrustedSigner)
        );
        assert!(combine(All, vec![pass(), pass()]).is_ok());
        assert_eq!(
            combine(All, vec![pass(), fail(Expired)]).map_err(|e| e.code),
            Err(Expired)
        );
        assert!(combine(All, vec![]).is_err(), "no verifier never verifies");
        assert!(combine(Any, vec![]).is_err(), "no verifier never verifies");
    }

    #[test]
    fn a_judgement_takes_each_verifiers_verdict() {
        // A cosign verifier without keys and one junk candidate: invalid-signature; a
        // Notary verifier with no candidate: unsigned; `all` explains by the first.
        let candidates = Candidates {
            signature_image: vec![Err(Checked::failed(
                SignatureFormat::Cosign,
                "",
                VerdictCode::InvalidSignature,
                "junk",
            ))],
            ..Candidates::default()
        };
        let target = notation::Target {
            digest: SUBJECT.into(),
            media_type: crate::registry::OCI_MANIFEST.into(),
            size: 100,
        };
        let verifiers = [
            LoadedVerifier::Cosign(Vec::new()),
            LoadedVerifier::Notation(notation::NotationVerifier::empty()),
        ];
        let j = judge(
            &verifiers,
            Require::All,
            &candidates,
            &target,
            SystemTime::now(),
            &Findings::new(),
        );
        assert_eq!(
            j.verdict.as_ref().map_err(|d| d.code),
            Err(VerdictCode::InvalidSignature)
        );
        assert_eq!(j.checked.len(), 1);
        assert_eq!(j.valid_until(), None);
        let j = judge(
            &verifiers[1..],
            Require::Any,
            &candidates,
            &target,
            SystemTime::now(),
            &Findings::new(),
        );
        assert_eq!(j.verdict.map_err(|d| d.code), Err(VerdictCode::Unsigned));
    }
}
