//! Notary Project signatures (pure: no I/O).
//!
//! A signature is an OCI artifact (`artifactType`/`config.mediaType`
//! [`ARTIFACT_TYPE`]) whose `subject` is the image and whose single layer is an envelope:
//! flattened JWS JSON ([`JWS`]) or COSE_Sign1 ([`COSE`]). The envelope signs a payload
//! `{"targetArtifact": <descriptor of the image>}` with the leaf of an X.509 chain carried in
//! the envelope (`x5c` / `x5chain`). Verification, in the order of the Notary Project
//! trust policy:
//!
//! 1. **Integrity**: the envelope parses, its protected headers are understood (`cty`,
//!    `io.cncf.notary.signingScheme` = `notary.x509`, every `crit` entry known), and the
//!    signature verifies with the leaf's key → else `invalid-signature`.
//! 2. **Authenticity**: the chain leads to a certificate of the policy's trust store (or the
//!    leaf *is* one), the leaf is a code-signing certificate, and its subject is a trusted
//!    identity → else `untrusted-signer`.
//! 3. **Expiry**: the chain was valid at the signing time and `io.cncf.notary.expiry`, if
//!    present, has not passed → else `expired`.
//! 4. **Target**: the payload's `targetArtifact` digest, size and media type are the
//!    image's → else `digest-mismatch`.
//!
//! Revocation (OCSP/CRL) and RFC 3161 timestamps are not checked; a verified signature's
//! report says so in its `detail`.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use serde::Deserialize;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{Checked, SignatureFormat, VerdictCode};
use crate::config::NotationVerifierConfig;

pub(crate) const ARTIFACT_TYPE: &str = "application/vnd.cncf.notary.signature";
pub(crate) const JWS: &str = "application/jose+json";
pub(crate) const COSE: &str = "application/cose";
pub(crate) const PAYLOAD_CTY: &str = "application/vnd.cncf.notary.payload.v1+json";
const SCHEME: &str = "io.cncf.notary.signingScheme";
const SIGNING_TIME: &str = "io.cncf.notary.signingTime";
const EXPIRY: &str = "io.cncf.notary.expiry";
/// `crit` entries this verifier understands.
const KNOWN_CRITICAL: &[&str] = &[SCHEME, EXPIRY];
const CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
const NOT_CHECKED: &str = "revocation and RFC 3161 timestamps not checked";

/// What a signature must be about: the image's descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
}

/// A trusted identity: a subject DN (as a set of attribute/value pairs) or anyone.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Identity {
    Any,
    Subject(BTreeSet<(String, String)>),
}

/// A `notation` verifier with its trust store loaded.
#[derive(Debug, Clone)]
pub(crate) struct NotationVerifier {
    trust_store: Vec<CertificateDer<'static>>,
    identities: Vec<Identity>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum TrustError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: no PEM certificate")]
    NoCertificate(String),
    #[error("trusted identity {0:?}: expected \"*\" or \"x509.subject: <DN>\"")]
    Identity(String),
}

impl NotationVerifier {
    /// A verifier that trusts nothing (tests of discovery and combining).
    #[cfg(test)]
    pub(crate) fn empty() -> NotationVerifier {
        NotationVerifier {
            trust_store: Vec::new(),
            identities: Vec::new(),
        }
    }

    pub(crate) fn load(config: &NotationVerifierConfig) -> Result<NotationVerifier, TrustError> {
        let mut trust_store = Vec::new();
        for path in &config.trust_store {
            let pem = std::fs::read(path).map_err(|source| TrustError::Read {
                path: path.display().to_string(),
                source,
            })?;
            let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
                .filter_map(Result::ok)
                .collect();
            if certs.is_empty() {
                return Err(TrustError::NoCertificate(path.display().to_string()));
            }
            trust_store.extend(certs);
        }
        let identities = config
            .trusted_identities
            .iter()
            .map(|s| parse_identity(s).ok_or_else(|| TrustError::Identity(s.clone())))
            .collect::<Result<_, _>>()?;
        Ok(NotationVerifier {
            trust_store,
            identities,
        })
    }

    /// A verifier trusting exactly these certificates, any identity (tests and fixtures).
    pub(crate) fn trusting(certs: Vec<CertificateDer<'static>>) -> NotationVerifier {
        NotationVerifier {
            trust_store: certs,
            identities: vec![Identity::Any],
        }
    }
}

fn parse_identity(s: &str) -> Option<Identity> {
    let s = s.trim();
    if s == "*" {
        return Some(Identity::Any);
    }
    let dn = s.strip_prefix("x509.subject:")?;
    parse_dn(dn).map(Identity::Subject)
}

/// `C=US, ST=WA, CN=e2e` → {(C, US), (CN, e2e), (ST, WA)}; escaped commas (`\,`) allowed.
fn parse_dn(dn: &str) -> Option<BTreeSet<(String, String)>> {
    let mut out = BTreeSet::new();
    let mut part = String::new();
    let mut parts = Vec::new();
    let mut chars = dn.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => part.extend(chars.next()),
            ',' | '+' => parts.push(std::mem::take(&mut part)),
            c => part.push(c),
        }
    }
    parts.push(part);
    for p in parts {
        let (k, v) = p.split_once('=')?;
        let (k, v) = (k.trim().to_ascii_uppercase(), v.trim().to_string());
        if k.is_empty() {
            return None;
        }
        out.insert((normalize_attr(&k), v));
    }
    (!out.is_empty()).then_some(out)
}

fn normalize_attr(k: &str) -> String {
    match k {
        "EMAILADDRESS" | "E" => "E".into(),
        "S" => "ST".into(),
        other => other.into(),
    }
}

/// A certificate's subject as attribute/value pairs (RFC 4514 short names).
fn subject_set(cert: &X509Certificate<'_>) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for rdn in cert.subject().iter() {
        for attr in rdn.iter() {
            let name = match attr.attr_type().to_id_string().as_str() {
                "2.5.4.3" => "CN",
                "2.5.4.6" => "C",
                "2.5.4.7" => "L",
                "2.5.4.8" => "ST",
                "2.5.4.10" => "O",
                "2.5.4.11" => "OU",
                "2.5.4.5" => "SERIALNUMBER",
                "1.2.840.113549.1.9.1" => "E",
                other => other,
            }
            .to_string();
            let value = attr.as_str().map(str::to_string).unwrap_or_default();
            out.insert((name, value));
        }
    }
    out
}

/// JWS / COSE signature algorithms Notary Project allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    Es512,
}

impl Alg {
    fn from_jws(s: &str) -> Option<Alg> {
        Some(match s {
            "PS256" => Alg::Ps256,
            "PS384" => Alg::Ps384,
            "PS512" => Alg::Ps512,
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            "ES512" => Alg::Es512,
            _ => return None,
        })
    }

    fn from_cose(i: i64) -> Option<Alg> {
        Some(match i {
            -37 => Alg::Ps256,
            -38 => Alg::Ps384,
            -39 => Alg::Ps512,
            -7 => Alg::Es256,
            -35 => Alg::Es384,
            -36 => Alg::Es512,
            _ => return None,
        })
    }

    /// ECDSA signatures are raw `r‖s` in both JWS and COSE.
    fn verification(self) -> &'static dyn VerificationAlgorithm {
        match self {
            Alg::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
            Alg::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
            Alg::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
            Alg::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
            Alg::Es384 => &signature::ECDSA_P384_SHA384_FIXED,
            Alg::Es512 => &signature::ECDSA_P521_SHA512_FIXED,
        }
    }
}

/// An envelope reduced to what verification needs.
struct Envelope {
    alg: Alg,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
    payload: Vec<u8>,
    chain: Vec<Vec<u8>>,
    signing_time: SystemTime,
    expiry: Option<SystemTime>,
}

/// Why an envelope is malformed; becomes an `invalid-signature` detail.
type Malformed = String;

fn rfc3339(s: &str) -> Result<SystemTime, Malformed> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(SystemTime::from)
        .map_err(|e| format!("time {s:?} is not RFC 3339: {e}"))
}

fn check_scheme_and_crit(
    scheme: Option<&str>,
    cty_ok: bool,
    crit: &[String],
) -> Result<(), Malformed> {
    if !cty_ok {
        return Err(format!("content type is not {PAYLOAD_CTY}"));
    }
    match scheme {
        Some("notary.x509") => {}
        Some(other) => return Err(format!("signing scheme {other:?} is not supported")),
        None => return Err(format!("protected header {SCHEME} is missing")),
    }
    if let Some(unknown) = crit.iter().find(|c| !KNOWN_CRITICAL.contains(&c.as_str())) {
        return Err(format!("critical header {unknown:?} is not understood"));
    }
    Ok(())
}

fn parse_jws(bytes: &[u8]) -> Result<Envelope, Malformed> {
    #[derive(Deserialize)]
    struct Jws {
        protected: String,
        payload: String,
        signature: String,
        #[serde(default)]
        header: JwsHeader,
    }
    #[derive(Deserialize, Default)]
    struct JwsHeader {
        #[serde(default)]
        x5c: Vec<String>,
    }
    #[derive(Deserialize)]
    struct Protected {
        alg: String,
        #[serde(default)]
        crit: Vec<String>,
        #[serde(default)]
        cty: String,
        #[serde(rename = "io.cncf.notary.signingScheme")]
        scheme: Option<String>,
        #[serde(rename = "io.cncf.notary.signingTime")]
        signing_time: Option<String>,
        #[serde(rename = "io.cncf.notary.expiry")]
        expiry: Option<String>,
    }
    let jws: Jws = serde_json::from_slice(bytes).map_err(|e| format!("JWS envelope: {e}"))?;
    let b64url = |what: &str, s: &str| {
        URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .map_err(|_| format!("JWS {what} is not base64url"))
    };
    let protected: Protected = serde_json::from_slice(&b64url("protected header", &jws.protected)?)
        .map_err(|e| format!("JWS protected header: {e}"))?;
    let alg = Alg::from_jws(&protected.alg)
        .ok_or_else(|| format!("JWS algorithm {:?} is not allowed", protected.alg))?;
    check_scheme_and_crit(
        protected.scheme.as_deref(),
        protected.cty == PAYLOAD_CTY,
        &protected.crit,
    )?;
    let signing_time = rfc3339(
        protected
            .signing_time
            .as_deref()
            .ok_or_else(|| format!("protected header {SIGNING_TIME} is missing"))?,
    )?;
    let expiry = protected.expiry.as_deref().map(rfc3339).transpose()?;
    let chain = jws
        .header
        .x5c
        .iter()
        .map(|c| {
            STANDARD
                .decode(c)
                .map_err(|_| "x5c entry is not base64".to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Envelope {
        alg,
        signing_input: format!("{}.{}", jws.protected, jws.payload).into_bytes(),
        signature: b64url("signature", &jws.signature)?,
        payload: b64url("payload", &jws.payload)?,
        chain,
        signing_time,
        expiry,
    })
}

fn parse_cose(bytes: &[u8]) -> Result<Envelope, Malformed> {
    use coset::cbor::value::Value;
    use coset::{
        CoseSign1, Label, RegisteredLabel, RegisteredLabelWithPrivate, TaggedCborSerializable,
    };
    let sign1 = CoseSign1::from_tagged_slice(bytes).map_err(|e| format!("COSE_Sign1: {e}"))?;
    let header = &sign1.protected.header;
    let alg = match &header.alg {
        Some(RegisteredLabelWithPrivate::Assigned(a)) => Alg::from_cose(*a as i64),
        Some(RegisteredLabelWithPrivate::PrivateUse(i)) => Alg::from_cose(*i),
        _ => None,
    }
    .ok_or_else(|| "COSE algorithm is missing or not allowed".to_string())?;
    let cty_ok = matches!(&header.content_type, Some(RegisteredLabel::Text(t)) if t == PAYLOAD_CTY);
    let crit: Vec<String> = header
        .crit
        .iter()
        .map(|c| match c {
            RegisteredLabelWithPrivate::Text(t) => t.clone(),
            other => format!("{other:?}"),
        })
        .filter(|c| c != "Assigned(Alg)" && c != "Assigned(Crit)")
        .collect();
    let text = |name: &str| {
        header.rest.iter().find_map(|(l, v)| match (l, v) {
            (Label::Text(t), v) if t == name => Some(v.clone()),
            _ => None,
        })
    };
    let scheme = text(SCHEME).and_then(|v| v.into_text().ok());
    check_scheme_and_crit(scheme.as_deref(), cty_ok, &crit)?;
    let epoch = |v: Value| -> Result<SystemTime, Malformed> {
        let inner = match v {
            Value::Tag(1, inner) => *inner,
            other => other,
        };
        let secs: i128 = inner
            .as_integer()
            .map(i128::from)
            .ok_or_else(|| "COSE time is not an epoch integer".to_string())?;
        u64::try_from(secs)
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
            .map_err(|_| "COSE time is before 1970".to_string())
    };
    let signing_time = epoch(
        text(SIGNING_TIME).ok_or_else(|| format!("protected header {SIGNING_TIME} is missing"))?,
    )?;
    let expiry = text(EXPIRY).map(epoch).transpose()?;
    let chain = sign1
        .unprotected
        .rest
        .iter()
        .find_map(|(l, v)| (*l == Label::Int(33)).then(|| v.clone()))
        .map(|v| match v {
            Value::Bytes(b) => Ok(vec![b]),
            Value::Array(items) => items
                .into_iter()
                .map(|i| {
                    i.into_bytes()
                        .map_err(|_| "x5chain entry is not bytes".to_string())
                })
                .collect(),
            _ => Err("x5chain is neither bytes nor an array".to_string()),
        })
        .transpose()?
        .unwrap_or_default();
    let payload = sign1
        .payload
        .clone()
        .ok_or_else(|| "COSE payload is detached".to_string())?;
    Ok(Envelope {
        alg,
        // Sig_structure over the original protected bytes (coset keeps them).
        signing_input: sign1.tbs_data(b""),
        signature: sign1.signature.clone(),
        payload,
        chain,
        signing_time,
        expiry,
    })
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "targetArtifact")]
    target: PayloadTarget,
}

#[derive(Deserialize)]
struct PayloadTarget {
    digest: String,
    #[serde(rename = "mediaType")]
    media_type: String,
    size: u64,
}

fn fail(signer: &str, code: VerdictCode, detail: impl Into<String>) -> Checked {
    Checked::failed(SignatureFormat::Notation, signer, code, detail)
}

/// Checks one envelope for `target` against `verifier`, at time `now`.
pub(crate) fn check(
    media_type: &str,
    envelope: &[u8],
    verifier: &NotationVerifier,
    target: &Target,
    now: SystemTime,
) -> Checked {
    let parsed = match media_type {
        JWS => parse_jws(envelope),
        COSE => parse_cose(envelope),
        other => Err(format!("envelope media type {other:?} is not supported")),
    };
    let env = match parsed {
        Ok(e) => e,
        Err(why) => return fail("", VerdictCode::InvalidSignature, why),
    };
    let Some(leaf_der) = env.chain.first() else {
        return fail(
            "",
            VerdictCode::InvalidSignature,
            "envelope carries no certificate",
        );
    };
    let Ok((_, leaf)) = X509Certificate::from_der(leaf_der) else {
        return fail(
            "",
            VerdictCode::InvalidSignature,
            "signing certificate does not parse",
        );
    };
    let signer = leaf.subject().to_string();

    // 1. Integrity.
    let key = &leaf.public_key().subject_public_key.data;
    if UnparsedPublicKey::new(env.alg.verification(), key)
        .verify(&env.signing_input, &env.signature)
        .is_err()
    {
        return fail(
            &signer,
            VerdictCode::InvalidSignature,
            "signature does not verify with the signing certificate's key",
        );
    }

    // 2. Authenticity.
    if let Err(why) = trusted_chain(verifier, &env, leaf_der) {
        return fail(&signer, VerdictCode::UntrustedSigner, why);
    }
    if !is_code_signing(&leaf) {
        return fail(
            &signer,
            VerdictCode::UntrustedSigner,
            "signing certificate lacks digitalSignature key usage or codeSigning extended key usage",
        );
    }
    let subject = subject_set(&leaf);
    let identity_ok = verifier.identities.iter().any(|i| match i {
        Identity::Any => true,
        Identity::Subject(s) => *s == subject,
    });
    if !identity_ok {
        return fail(
            &signer,
            VerdictCode::UntrustedSigner,
            format!("signer {signer} is not a trusted identity"),
        );
    }

    // 3. Expiry.
    let validity = leaf.validity();
    let at = |t: x509_parser::time::ASN1Time| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(t.timestamp().max(0) as u64)
    };
    if env.signing_time < at(validity.not_before) || env.signing_time > at(validity.not_after) {
        return fail(
            &signer,
            VerdictCode::Expired,
            "signing certificate was not valid at the signing time",
        );
    }
    if env.expiry.is_some_and(|e| e <= now) {
        return fail(&signer, VerdictCode::Expired, "signature has expired");
    }

    // 4. Target.
    let payload: Payload = match serde_json::from_slice(&env.payload) {
        Ok(p) => p,
        Err(e) => {
            return fail(
                &signer,
                VerdictCode::InvalidSignature,
                format!("payload: {e}"),
            );
        }
    };
    let t = payload.target;
    if t.digest != target.digest || t.size != target.size || t.media_type != target.media_type {
        return fail(
            &signer,
            VerdictCode::DigestMismatch,
            format!(
                "signature is for {} ({}, {} bytes), not {} ({}, {} bytes)",
                t.digest, t.media_type, t.size, target.digest, target.media_type, target.size
            ),
        );
    }
    let leaf_expiry = at(validity.not_after);
    let valid_until = env.expiry.map_or(leaf_expiry, |e| e.min(leaf_expiry));
    Checked::passed(SignatureFormat::Notation, signer, NOT_CHECKED).until(Some(valid_until))
}

/// The chain leads to the trust store: the leaf is a trusted certificate itself (a
/// self-signed signing certificate — rustls-webpki does not handle that case), or webpki
/// builds a path from it to a trusted certificate with codeSigning usage at signing time.
fn trusted_chain(
    verifier: &NotationVerifier,
    env: &Envelope,
    leaf_der: &[u8],
) -> Result<(), String> {
    if verifier.trust_store.iter().any(|c| c.as_ref() == leaf_der) {
        return Ok(());
    }
    let anchors: Vec<_> = verifier
        .trust_store
        .iter()
        .filter_map(|c| webpki::anchor_from_trusted_cert(c).ok())
        .collect();
    let leaf = CertificateDer::from(leaf_der);
    let ee =
        webpki::EndEntityCert::try_from(&leaf).map_err(|e| format!("signing certificate: {e}"))?;
    let intermediates: Vec<CertificateDer<'_>> = env.chain[1..]
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let secs = env
        .signing_time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let algs = crate::tls::crypto_provider()
        .signature_verification_algorithms
        .all;
    ee.verify_for_usage(
        algs,
        &anchors,
        &intermediates,
        UnixTime::since_unix_epoch(Duration::from_secs(secs)),
        webpki::KeyUsage::required(CODE_SIGNING),
        None,
        None,
    )
    .map(|_| ())
    .map_err(|e| format!("certificate chain does not lead to the trust store: {e}"))
}

fn is_code_signing(cert: &X509Certificate<'_>) -> bool {
    let ku = cert
        .key_usage()
        .ok()
        .flatten()
        .is_none_or(|k| k.value.digital_signature());
    let eku = cert
        .extended_key_usage()
        .ok()
        .flatten()
        .is_some_and(|e| e.value.code_signing);
    ku && eku
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/notation")
    }

    /// notation-go's test envelopes sign the image manifest its `oci-layout/` index names,
    /// with a self-signed certificate embedded in the envelope.
    fn notation_go(file: &str) -> (Vec<u8>, Target, NotationVerifier) {
        let dir = fixtures().join("notation-go");
        let envelope = std::fs::read(dir.join(file)).expect("fixture");
        let index: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join("oci-layout/index.json")).expect("index"),
        )
        .expect("json");
        let desc = &index["manifests"][0];
        let digest = desc["digest"].as_str().expect("digest").to_string();
        let manifest = std::fs::read(dir.join("oci-layout/blobs/sha256").join(&digest[7..]))
            .expect("manifest");
        // The layout's bytes really are what the index says.
        assert_eq!(crate::digest::sha256_digest(&manifest), digest);
        let target = Target {
            digest,
            media_type: desc["mediaType"].as_str().expect("mediaType").to_string(),
            size: manifest.len() as u64,
        };
        let media = if file.contains("cose") { COSE } else { JWS };
        let chain = match media {
            JWS => parse_jws(&envelope).expect("jws").chain,
            _ => parse_cose(&envelope).expect("cose").chain,
        };
        let trust = NotationVerifier::trusting(vec![CertificateDer::from(chain[0].clone())]);
        (envelope, target, trust)
    }

    fn run(file: &str, envelope: &[u8], target: &Target, v: &NotationVerifier) -> Checked {
        let media = if file.contains("cose") { COSE } else { JWS };
        check(media, envelope, v, target, SystemTime::now())
    }

    #[test]
    fn notation_go_envelopes_verify() {
        for file in ["jws_signature.sig", "cose_signature.sig"] {
            let (env, target, trust) = notation_go(file);
            let c = run(file, &env, &target, &trust);
            assert_eq!(c.failure, None, "{file}: {c:?}");
            assert!(c.report.signer.contains("CN="), "{c:?}");
            assert_eq!(c.report.detail, NOT_CHECKED);
        }
    }

    #[test]
    fn a_verified_signature_is_valid_until_its_certificate_expires() {
        let (env, target, trust) = notation_go("jws_signature.sig");
        let c = run("jws", &env, &target, &trust);
        let chain = parse_jws(&env).expect("jws").chain;
        let (_, leaf) = X509Certificate::from_der(&chain[0]).expect("cert");
        let not_after = SystemTime::UNIX_EPOCH
            + Duration::from_secs(leaf.validity().not_after.timestamp() as u64);
        assert_eq!(c.valid_until, Some(not_after));
    }

    #[test]
    fn notation_go_envelopes_fail_when_a_byte_flips() {
        // JWS: flip a character inside the base64url payload, protected header, signature.
        let (env, target, trust) = notation_go("jws_signature.sig");
        let v: serde_json::Value = serde_json::from_slice(&env).expect("json");
        for field in ["payload", "protected", "signature"] {
            let mut m = v.clone();
            let s = m[field].as_str().expect("field").to_string();
            let mut bytes = s.into_bytes();
            let i = bytes.len() / 2;
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            m[field] = serde_json::Value::String(String::from_utf8(bytes).expect("ascii"));
            let c = run(
                "jws",
                &serde_json::to_vec(&m).expect("json"),
                &target,
                &trust,
            );
            assert!(
                c.failure.is_some(),
                "JWS with a flipped {field} byte verified"
            );
        }
        // COSE: flip bytes at several offsets across the structure.
        let (env, target, trust) = notation_go("cose_signature.sig");
        for offset in [env.len() / 4, env.len() / 2, env.len() - 10] {
            let mut e = env.clone();
            e[offset] ^= 0x01;
            let c = run("cose", &e, &target, &trust);
            assert!(
                c.failure.is_some(),
                "COSE with byte {offset} flipped verified"
            );
        }
    }

    #[test]
    fn another_trust_store_is_an_untrusted_signer() {
        let (env, target, _) = notation_go("jws_signature.sig");
        let e2e = std::fs::read(fixtures().join("notation-e2e/localkeys/e2e.crt")).expect("crt");
        let other = NotationVerifier::trusting(
            CertificateDer::pem_slice_iter(&e2e)
                .filter_map(Result::ok)
                .collect(),
        );
        let c = run("jws", &env, &target, &other);
        assert_eq!(c.failure, Some(VerdictCode::UntrustedSigner), "{c:?}");
    }

    #[test]
    fn a_target_mismatch_is_a_digest_mismatch() {
        let (env, mut target, trust) = notation_go("cose_signature.sig");
        target.size += 1;
        let c = run("cose", &env, &target, &trust);
        assert_eq!(c.failure, Some(VerdictCode::DigestMismatch), "{c:?}");
    }

    #[test]
    fn identities_compare_as_rdn_sets() {
        assert_eq!(
            parse_identity("x509.subject: C=US, ST=WA, L=Seattle, O=Notary, CN=e2e"),
            parse_identity("x509.subject:CN=e2e,O=Notary,L=Seattle,ST=WA,C=US")
        );
        assert_ne!(
            parse_identity("x509.subject: CN=e2e, O=Notary"),
            parse_identity("x509.subject: CN=e2e")
        );
        assert_eq!(parse_identity("*"), Some(Identity::Any));
        assert_eq!(
            parse_identity("CN=e2e"),
            None,
            "the x509.subject: prefix is required"
        );
        let pem = std::fs::read(fixtures().join("notation-e2e/localkeys/e2e.crt")).expect("crt");
        let der = CertificateDer::from_pem_slice(&pem).expect("pem");
        let (_, cert) = X509Certificate::from_der(der.as_ref()).expect("cert");
        assert_eq!(
            Some(Identity::Subject(subject_set(&cert))),
            parse_identity("x509.subject: C=US, ST=WA, L=Seattle, O=Notary, CN=e2e")
        );
    }

    #[test]
    fn unknown_critical_headers_and_schemes_are_invalid() {
        assert!(check_scheme_and_crit(Some("notary.x509"), true, &[SCHEME.into()]).is_ok());
        assert!(check_scheme_and_crit(Some("notary.x509"), true, &["x.unknown".into()]).is_err());
        assert!(check_scheme_and_crit(Some("notary.x509.signingAuthority"), true, &[]).is_err());
        assert!(check_scheme_and_crit(Some("notary.x509"), false, &[]).is_err());
        assert!(check_scheme_and_crit(None, true, &[]).is_err());
    }
}
