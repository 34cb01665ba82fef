//! Fuzz entry points: each takes arbitrary bytes, drives one parser or verifier that sees
//! untrusted input, and panics only if an invariant breaks. The coverage-guided targets in
//! `fuzz/` and the corpus replay in `tests/fuzz_replay.rs` both call these, so CI replays
//! exactly what the fuzzer ran.
//!
//! Invariants: parsing never panics; a signature check over input that is not the known-good
//! signature never yields "verified".

use crate::config::{Config, Limits};
use crate::verify::{VerdictCode, cosign, notation};

/// `ProviderRequest` bodies: never panics, whatever it accepts respects the limits, and
/// every refusal names its class first (`request-invalid: …` for anything a body decides).
pub fn provider_request(data: &[u8]) {
    let limits = Limits {
        max_body_bytes: 64 * 1024,
        max_keys: 16,
        max_key_bytes: 256,
        ..Limits::default()
    };
    match crate::protocol::parse_request(data, &limits.request()) {
        Ok(req) => {
            assert!(req.keys.len() <= limits.max_keys);
            let mut seen = std::collections::HashSet::new();
            assert!(req.keys.iter().all(|k| seen.insert(k)), "keys are distinct");
        }
        Err(e) => {
            use crate::protocol::SystemErrorClass;
            assert_eq!(e.class(), SystemErrorClass::RequestInvalid, "{e}");
            assert!(e.to_string().starts_with("request-invalid: "), "{e}");
        }
    }
}

/// Image references: never panics; an accepted reference prints as one that parses to
/// itself.
pub fn image_reference(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = crate::reference::ImageRef::parse(s) {
        let again =
            crate::reference::ImageRef::parse(&r.to_string()).expect("normalized form parses");
        assert_eq!(again, r, "normalization is a fixed point");
    }
}

/// Claim keys: never panics.
pub fn claim_key(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = crate::claims::ClaimKey::parse(s);
    }
}

/// Config files: never panics.
pub fn config(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Config::parse(s, "fuzz", None);
    }
}

/// Documents a registry serves (referrer indexes, cosign and Notary signature manifests,
/// Sigstore bundle manifests,
/// `Link` headers of referrers pages): never panics, and what is accepted keeps the rules
/// the verifiers rely on. The first byte chooses the parser.
pub fn registry_document(data: &[u8]) {
    use crate::verify::signature_manifest::{
        ReferrerManifest, bundle_manifest, cosign_layers, notary_manifest,
    };
    const SUBJECT: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    let (choice, rest) = data.split_first().unwrap_or((&0, &[]));
    match choice % 5 {
        0 => {
            if let Ok(found) = crate::registry::parse_index(rest, &[notation::ARTIFACT_TYPE]) {
                assert!(found.iter().all(|d| {
                    d.artifact_type
                        .as_deref()
                        .is_none_or(|t| t == notation::ARTIFACT_TYPE)
                }));
            }
        }
        1 => {
            if let Ok(layers) = cosign_layers(rest) {
                // Only simple-signing layers: each needs its media type written out in the
                // input (escapes only lengthen it), so there cannot be more of them than that.
                assert!(layers.len() * cosign::SIMPLE_SIGNING.len() <= rest.len());
            }
        }
        2 => {
            if let ReferrerManifest::Layer(layer) = notary_manifest(rest, "fuzz", SUBJECT) {
                assert!(layer.media_type == notation::JWS || layer.media_type == notation::COSE);
                assert_subject_is(rest, SUBJECT);
            }
        }
        4 => {
            if let ReferrerManifest::Layer(layer) = bundle_manifest(rest, "fuzz", SUBJECT) {
                assert!(
                    crate::keyless::BUNDLE_MEDIA_TYPES.contains(&layer.media_type.as_str()),
                    "accepted a non-bundle layer"
                );
                assert_subject_is(rest, SUBJECT);
            }
        }
        _ => {
            let Ok(value) = reqwest::header::HeaderValue::from_bytes(rest) else {
                return;
            };
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(reqwest::header::LINK, value);
            let base = "https://registry.example:5000";
            if let Some(next) = crate::registry::next_link(&headers, base) {
                let url = reqwest::Url::parse(&next).expect("a followed link is a URL");
                assert_eq!(url.scheme(), "https", "{next}");
                assert_eq!(url.host_str(), Some("registry.example"), "{next}");
                assert_eq!(url.port_or_known_default(), Some(5000), "{next}");
            }
        }
    }
}

/// The published valid cosign signature (containers/image fixtures), compiled in so the
/// target needs no files.
const COSIGN_PUB: &[u8] = include_bytes!("../fuzz/fixtures/cosign.pub");
const COSIGN_PAYLOAD: &[u8] = include_bytes!("../fuzz/fixtures/cosign-payload.json");
const COSIGN_SIGNATURE: &str = include_str!("../fuzz/fixtures/cosign-signature.b64");
const COSIGN_DIGEST: &str = include_str!("../fuzz/fixtures/cosign-digest.txt");

/// cosign checks over a mutated payload or signature: "verified" only for the exact
/// known-good pair. The first byte chooses what the rest replaces.
pub fn cosign_signature(data: &[u8]) {
    let Ok(key) = cosign::PublicKey::from_pem("fuzz", COSIGN_PUB) else {
        return;
    };
    let (choice, rest) = data.split_first().unwrap_or((&0, &[]));
    let mut candidate = cosign::Candidate {
        payload: COSIGN_PAYLOAD.to_vec(),
        signature_b64: Some(COSIGN_SIGNATURE.trim().to_string()),
    };
    match choice % 3 {
        0 => candidate.payload = rest.to_vec(),
        1 => candidate.signature_b64 = Some(String::from_utf8_lossy(rest).into_owned()),
        _ => {
            candidate.payload = rest.to_vec();
            candidate.signature_b64 = None;
        }
    }
    // Whitespace inside the base64 annotation is ignored (as cosign does), so a signature
    // that differs only in whitespace is the same signature.
    let compact = |s: &str| {
        s.chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect::<String>()
    };
    let known_good = candidate.payload == COSIGN_PAYLOAD
        && candidate.signature_b64.as_deref().map(compact) == Some(compact(COSIGN_SIGNATURE));
    let checked = cosign::check(&candidate, &[key], COSIGN_DIGEST.trim());
    if checked.failure.is_none() {
        assert!(known_good, "a mutated cosign signature verified");
    }
}

/// Notary Project envelopes (JWS and COSE) against a trust store holding one certificate:
/// never panics, and never "verified" (no fuzzer can sign with the fixture's key).
pub fn notation_envelope(data: &[u8]) {
    let (choice, envelope) = data.split_first().unwrap_or((&0, &[]));
    let media_type = if choice % 2 == 0 {
        notation::JWS
    } else {
        notation::COSE
    };
    let cert = rustls::pki_types::CertificateDer::from(
        include_bytes!("../fuzz/fixtures/notation-e2e.der").to_vec(),
    );
    let verifier = notation::NotationVerifier::trusting(vec![cert]);
    let target = notation::Target {
        digest: format!("sha256:{}", "0".repeat(64)),
        media_type: crate::registry::OCI_MANIFEST.to_string(),
        size: 1,
    };
    let checked = notation::check(
        media_type,
        envelope,
        &verifier,
        &target,
        std::time::SystemTime::now(),
        &crate::revocation::Findings::new(),
    );
    assert_ne!(
        checked.failure, None::<VerdictCode>,
        "a fuzzed envelope verified"
    );
}

/// A digest no real signature covers: nothing fuzzed may verify against it.
const NO_SUCH_DIGEST: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// The keyless verification inputs the fuzzers use: Sigstore's public-good trusted root
/// (compiled into `sigstore-trust-root`) and a policy that trusts any identity, so the
/// fuzzer reaches every check past the identity match.
fn keyless_inputs() -> Option<&'static (crate::keyless::TrustedRoot, crate::keyless::KeylessPolicy)>
{
    use crate::keyless::{IdentityRule, KeylessPolicy, Matcher, TrustedRoot};
    static INPUTS: std::sync::OnceLock<Option<(TrustedRoot, KeylessPolicy)>> =
        std::sync::OnceLock::new();
    INPUTS
        .get_or_init(|| {
            let root = TrustedRoot::from_json(
                sigstore_trust_root::SIGSTORE_PRODUCTION_TRUSTED_ROOT.as_bytes(),
            )
            .ok()?;
            let any = Matcher::regex(".*").ok()?;
            let policy = KeylessPolicy::new(vec![IdentityRule::new(any.clone(), any)]).ok()?;
            Some((root, policy))
        })
        .as_ref()
}

/// Sigstore bundles (JSON, any version): never panics, never "verified" for a digest no
/// signature covers, and the predicate-type peek never panics either.
pub fn sigstore_bundle(data: &[u8]) {
    let _ = crate::keyless::bundle_predicate_type(data);
    let Some((root, policy)) = keyless_inputs() else {
        return;
    };
    let result = crate::keyless::verify_bundle(data, NO_SUCH_DIGEST, root, policy);
    assert!(
        result.is_err(),
        "a fuzzed bundle verified for a digest nobody signed"
    );
}

/// The annotation set of a legacy keyless `.sig` layer: the input is split at NUL bytes
/// into payload, signature, certificate, chain, Rekor bundle and RFC 3161 timestamp.
/// Converting it to a bundle and verifying it never panics and never verifies for a digest
/// no signature covers.
pub fn keyless_annotations(data: &[u8]) {
    use crate::keyless::{
        BUNDLE_ANNOTATION, CERTIFICATE_ANNOTATION, CHAIN_ANNOTATION, LegacySignature,
        RFC3161_TIMESTAMP_ANNOTATION, SIGNATURE_ANNOTATION,
    };
    let mut parts = data.split(|b| *b == 0);
    let payload = parts.next().unwrap_or_default().to_vec();
    let names = [
        SIGNATURE_ANNOTATION,
        CERTIFICATE_ANNOTATION,
        CHAIN_ANNOTATION,
        BUNDLE_ANNOTATION,
        RFC3161_TIMESTAMP_ANNOTATION,
    ];
    let annotations: Vec<(&str, String)> = names
        .into_iter()
        .zip(parts)
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k, String::from_utf8_lossy(v).into_owned()))
        .collect();
    let sig = LegacySignature::from_annotations(payload, annotations);
    let _ = sig.to_bundle_json();
    let Some((root, policy)) = keyless_inputs() else {
        return;
    };
    let result = crate::keyless::verify_legacy(&sig, NO_SUCH_DIGEST, root, policy);
    assert!(
        result.is_err(),
        "a fuzzed legacy signature verified for a digest nobody signed"
    );
}

/// `/v1/verify` keys with a namespace prefix (`[team-a]image`): never panics; an accepted
/// prefix is a Kubernetes namespace name and the key is exactly `[ns]` + the reference; a
/// key starting with `[` is never taken as a cluster-wide key; a refused prefix is an
/// `invalid-reference` verdict.
pub fn namespaced_key(data: &[u8]) {
    let key = String::from_utf8_lossy(data);
    match crate::namespace::split(&key) {
        Ok(k) => match k.namespace {
            Some(ns) => {
                assert!(crate::namespace::is_namespace_name(ns), "{key:?}");
                assert_eq!(format!("[{ns}]{}", k.reference), key);
                assert!(!k.reference.is_empty());
            }
            None => {
                assert!(!key.starts_with('['), "{key:?}");
                assert_eq!(k.reference, key);
            }
        },
        Err(_) => {
            assert!(key.starts_with('['), "{key:?}");
            let set = crate::policy::PolicySet::default();
            match crate::verify::decide(&key, &set) {
                crate::verify::Decision::Verdict(r) => {
                    assert_eq!(r.code, VerdictCode::InvalidReference, "{key:?}")
                }
                crate::verify::Decision::Verify { .. } => {
                    panic!("refused prefix verified: {key:?}")
                }
            }
        }
    }
}

/// An accepted referrer manifest names `subject`, read back the way serde reads manifests
/// (ignored fields are skipped, not validated, so a generic JSON parse may refuse what was
/// accepted).
fn assert_subject_is(manifest: &[u8], subject: &str) {
    #[derive(serde::Deserialize)]
    struct Subject {
        digest: String,
    }
    #[derive(serde::Deserialize)]
    struct WithSubject {
        subject: Subject,
    }
    let w: WithSubject =
        serde_json::from_slice(manifest).expect("an accepted manifest has a subject");
    assert_eq!(w.subject.digest, subject, "accepted with another subject");
}
