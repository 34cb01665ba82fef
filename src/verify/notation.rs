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
//!    `io.cncf.notary.signingScheme` = `notary.x509`, every `crit` entry known), the
//!    signature verifies with the leaf's key, and the payload's `targetArtifact` is the
//!    image (digest, size, media type) → else `invalid-signature` / `digest-mismatch`.
//!    Always enforced.
//! 2. **Authentic timestamp**: an RFC 3161 countersignature over the signature value (JWS:
//!    the unprotected header `io.cncf.notary.timestampSignature`; COSE: the unprotected
//!    header of the same name) from a TSA of the verifier's `tsaStore` gives the signing
//!    time, when `verifyTimestamp` asks for it (`always`, or `afterCertExpiry` once a
//!    certificate of the chain has expired). Without one, certificates are checked at the
//!    verification time: the envelope's `signingTime` is the signer's claim and is never
//!    used. A token over other bytes → `invalid-signature`; an untrusted TSA →
//!    `untrusted-signer`.
//! 3. **Authenticity**: a path from the leaf (codeSigning) through the envelope's
//!    intermediates (any extended key usage, or none) to the trust store, and the leaf's
//!    subject is a trusted identity → else `untrusted-signer`.
//! 4. **Expiry**: the path is valid at that time, and `io.cncf.notary.expiry`, if present,
//!    has not passed → else `expired`.
//! 5. **Revocation**: each certificate of the path but the anchor is not revoked, by OCSP or
//!    CRL from the hosts of `revocationHosts` (fetched by the engine beforehand:
//!    [`revocation_queries`] plans, [`crate::revocation`] fetches) → else `revoked`; a status
//!    nobody can give is `untrusted-signer`, an unreachable source a transient failure.
//!
//! The verifier's `level` (and `override`) decides which of checks 2–5 are enforced,
//! logged (reported in `detail` beside a passing signature) or skipped, as notation's trust
//! policy does.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{Checked, SignatureFormat, VerdictCode};
use crate::config::{
    CheckAction, NotationLevel, NotationOverride, NotationVerifierConfig, VerifyTimestamp,
};
use crate::metrics::RevocationMethod;
use crate::pkix::{self, PathError, Role, rfc3161};
use crate::revocation::{Finding, Findings, Query, Status as RevocationStatus};
use crate::verdict::{RevocationReport, TimestampReport};

pub(crate) const ARTIFACT_TYPE: &str = "application/vnd.cncf.notary.signature";
pub(crate) const JWS: &str = "application/jose+json";
pub(crate) const COSE: &str = "application/cose";
pub(crate) const PAYLOAD_CTY: &str = "application/vnd.cncf.notary.payload.v1+json";
const SCHEME: &str = "io.cncf.notary.signingScheme";
const SIGNING_TIME: &str = "io.cncf.notary.signingTime";
const EXPIRY: &str = "io.cncf.notary.expiry";
/// `crit` entries this verifier understands.
const KNOWN_CRITICAL: &[&str] = &[SCHEME, EXPIRY];
const TIMESTAMP: &str = "io.cncf.notary.timestampSignature";

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

/// A `notation` verifier with its trust stores loaded.
#[derive(Debug, Clone)]
pub(crate) struct NotationVerifier {
    trust_store: Vec<CertificateDer<'static>>,
    identities: Vec<Identity>,
    tsa_store: Vec<CertificateDer<'static>>,
    /// `None`: level `skip`.
    actions: Option<Actions>,
    verify_timestamp: VerifyTimestamp,
    revocation_hosts: std::sync::Arc<[String]>,
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
        NotationVerifier::trusting(Vec::new())
    }

    pub(crate) fn load(config: &NotationVerifierConfig) -> Result<NotationVerifier, TrustError> {
        let identities = config
            .trusted_identities
            .iter()
            .map(|s| parse_identity(s).ok_or_else(|| TrustError::Identity(s.clone())))
            .collect::<Result<_, _>>()?;
        Ok(NotationVerifier {
            trust_store: read_certificates(&config.trust_store)?,
            identities,
            tsa_store: read_certificates(&config.tsa_store)?,
            actions: Actions::of(config.level, &config.r#override),
            verify_timestamp: config.verify_timestamp,
            revocation_hosts: config.revocation_hosts.clone().into(),
        })
    }

    /// Whether this verifier checks nothing (level `skip`).
    pub(crate) fn skips(&self) -> bool {
        self.actions.is_none()
    }

    /// Whether signatures' chains are checked for revocation: some host is allowed and the
    /// level does not skip the check.
    fn checks_revocation(&self) -> bool {
        !self.revocation_hosts.is_empty()
            && self
                .actions
                .is_some_and(|a| a.revocation != CheckAction::Skip)
    }

    /// A verifier trusting exactly these certificates, any identity (tests and fixtures).
    pub(crate) fn trusting(certs: Vec<CertificateDer<'static>>) -> NotationVerifier {
        NotationVerifier {
            trust_store: certs,
            identities: vec![Identity::Any],
            tsa_store: Vec::new(),
            actions: Actions::of(NotationLevel::Strict, &NotationOverride::default()),
            verify_timestamp: VerifyTimestamp::AfterCertExpiry,
            revocation_hosts: Vec::new().into(),
        }
    }
}

/// Every PEM certificate of `paths`; a file without one is an error.
fn read_certificates(
    paths: &[std::path::PathBuf],
) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let mut out = Vec::new();
    for path in paths {
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
        out.extend(certs);
    }
    Ok(out)
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
    /// Parsed and required, but never used as a time: the signer asserts it.
    #[allow(dead_code)]
    signing_time: SystemTime,
    expiry: Option<SystemTime>,
    /// The RFC 3161 countersignature (DER), if any.
    timestamp: Option<Vec<u8>>,
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
        #[serde(default, rename = "io.cncf.notary.timestampSignature")]
        timestamp: Option<String>,
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
    let timestamp = jws
        .header
        .timestamp
        .as_deref()
        .map(|t| {
            STANDARD
                .decode(t)
                .map_err(|_| format!("{TIMESTAMP} is not base64"))
        })
        .transpose()?;
    Ok(Envelope {
        timestamp,
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
    let timestamp = sign1
        .unprotected
        .rest
        .iter()
        .find_map(|(l, v)| match l {
            Label::Text(t) if t == TIMESTAMP => Some(v.clone()),
            _ => None,
        })
        .map(|v| {
            v.into_bytes()
                .map_err(|_| format!("{TIMESTAMP} is not a byte string"))
        })
        .transpose()?;
    Ok(Envelope {
        timestamp,
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

/// What one check does when it fails, under the verifier's level and overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Actions {
    authenticity: CheckAction,
    authentic_timestamp: CheckAction,
    expiry: CheckAction,
    revocation: CheckAction,
}

impl Actions {
    /// notation's table of levels: integrity is always enforced; `strict` enforces the
    /// rest, `permissive` enforces authenticity and logs the rest, `audit` logs all four.
    /// `None` for `skip`: nothing is checked.
    fn of(level: NotationLevel, o: &NotationOverride) -> Option<Actions> {
        use CheckAction::{Enforce, Log};
        let base = match level {
            NotationLevel::Strict => [Enforce, Enforce, Enforce, Enforce],
            NotationLevel::Permissive => [Enforce, Log, Log, Log],
            NotationLevel::Audit => [Log, Log, Log, Log],
            NotationLevel::Skip => return None,
        };
        Some(Actions {
            authenticity: o.authenticity.unwrap_or(base[0]),
            authentic_timestamp: o.authentic_timestamp.unwrap_or(base[1]),
            expiry: o.expiry.unwrap_or(base[2]),
            revocation: o.revocation.unwrap_or(base[3]),
        })
    }
}

/// The checks one envelope went through: failures of logged checks are collected, and the
/// first enforced failure ends the evaluation.
struct Run<'a> {
    signer: String,
    logged: Vec<String>,
    timestamp: Option<TimestampReport>,
    revocation: Vec<RevocationReport>,
    queries: Vec<Query>,
    findings: Option<&'a Findings>,
}

impl Run<'_> {
    /// A failed check: `Err` (the signature fails) when enforced, noted when logged.
    fn failed(
        &mut self,
        action: CheckAction,
        code: VerdictCode,
        why: impl Into<String>,
    ) -> Result<(), Box<Checked>> {
        let why = why.into();
        match action {
            CheckAction::Enforce => Err(Box::new(self.finish(fail(&self.signer, code, why)))),
            CheckAction::Log => {
                self.logged.push(why);
                Ok(())
            }
            CheckAction::Skip => Ok(()),
        }
    }

    fn finish(&mut self, mut c: Checked) -> Checked {
        c.report.timestamp = self.timestamp.take();
        c.report.revocation = std::mem::take(&mut self.revocation);
        c
    }
}

fn rfc3339_of(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Checks one envelope for `target` against `verifier`, at time `now`, with the revocation
/// `findings` the engine fetched for the queries [`revocation_queries`] planned.
pub(crate) fn check(
    media_type: &str,
    envelope: &[u8],
    verifier: &NotationVerifier,
    target: &Target,
    now: SystemTime,
    findings: &Findings,
) -> Checked {
    evaluate(media_type, envelope, verifier, target, now, Some(findings)).0
}

/// The certificates whose revocation status [`check`] will need: every certificate of a
/// trusted path but the anchor, paired with its issuer. Pure: the engine fetches them.
pub(crate) fn revocation_queries(
    media_type: &str,
    envelope: &[u8],
    verifier: &NotationVerifier,
    target: &Target,
    now: SystemTime,
) -> Vec<Query> {
    // Planning runs the checks once more; not for a verifier that would plan nothing.
    if !verifier.checks_revocation() {
        return Vec::new();
    }
    evaluate(media_type, envelope, verifier, target, now, None).1
}

fn evaluate(
    media_type: &str,
    envelope: &[u8],
    verifier: &NotationVerifier,
    target: &Target,
    now: SystemTime,
    findings: Option<&Findings>,
) -> (Checked, Vec<Query>) {
    let mut run = Run {
        signer: String::new(),
        logged: Vec::new(),
        timestamp: None,
        revocation: Vec::new(),
        queries: Vec::new(),
        findings,
    };
    let checked = match checks(&mut run, media_type, envelope, verifier, target, now) {
        Ok(c) => c,
        Err(c) => *c,
    };
    (checked, run.queries)
}

/// Integrity, authenticity, authentic timestamp, expiry, revocation: notation's order.
fn checks(
    run: &mut Run<'_>,
    media_type: &str,
    envelope: &[u8],
    verifier: &NotationVerifier,
    target: &Target,
    now: SystemTime,
) -> Result<Checked, Box<Checked>> {
    let Some(actions) = verifier.actions else {
        return Ok(Checked::passed(
            SignatureFormat::Notation,
            String::new(),
            "verification level skip: not checked",
        ));
    };
    let parsed = match media_type {
        JWS => parse_jws(envelope),
        COSE => parse_cose(envelope),
        other => Err(format!("envelope media type {other:?} is not supported")),
    };
    let env = parsed.map_err(|why| fail("", VerdictCode::InvalidSignature, why))?;
    let leaf_der = env.chain.first().ok_or_else(|| {
        fail(
            "",
            VerdictCode::InvalidSignature,
            "envelope carries no certificate",
        )
    })?;
    let (_, leaf) = X509Certificate::from_der(leaf_der).map_err(|_| {
        fail(
            "",
            VerdictCode::InvalidSignature,
            "signing certificate does not parse",
        )
    })?;
    run.signer = leaf.subject().to_string();

    // 1. Integrity (always enforced), and the payload is about this image.
    let key = &leaf.public_key().subject_public_key.data;
    if UnparsedPublicKey::new(env.alg.verification(), key)
        .verify(&env.signing_input, &env.signature)
        .is_err()
    {
        return Err(fail(
            &run.signer,
            VerdictCode::InvalidSignature,
            "signature does not verify with the signing certificate's key",
        )
        .into());
    }
    let payload: Payload = serde_json::from_slice(&env.payload).map_err(|e| {
        fail(
            &run.signer,
            VerdictCode::InvalidSignature,
            format!("payload: {e}"),
        )
    })?;
    let t = payload.target;
    if t.digest != target.digest || t.size != target.size || t.media_type != target.media_type {
        return Err(fail(
            &run.signer,
            VerdictCode::DigestMismatch,
            format!(
                "signature is for {} ({}, {} bytes), not {} ({}, {} bytes)",
                t.digest, t.media_type, t.size, target.digest, target.media_type, target.size
            ),
        )
        .into());
    }

    // 2. The time certificates must be valid at: the verification time, unless an
    // authentic timestamp gives the signing time (never the signer-asserted signingTime).
    let chain_expired = env.chain.iter().any(|c| {
        X509Certificate::from_der(c).is_ok_and(|(_, c)| {
            let v = c.validity();
            pkix::system_time(v.not_after.timestamp()) < now
                || pkix::system_time(v.not_before.timestamp()) > now
        })
    });
    let wants_timestamp = match verifier.verify_timestamp {
        VerifyTimestamp::Always => true,
        VerifyTimestamp::AfterCertExpiry => chain_expired,
    };
    let mut at = (now, now);
    let mut authentic_time = false;
    if wants_timestamp
        && actions.authentic_timestamp != CheckAction::Skip
        && let Some(token) = &env.timestamp
    {
        let verified = if verifier.tsa_store.is_empty() {
            Err(rfc3161::TimestampError::Untrusted(
                "the verifier has no tsaStore".into(),
            ))
        } else {
            rfc3161::verify(token, &env.signature, &verifier.tsa_store)
        };
        match verified {
            Ok(ts) => {
                at = ts.range();
                authentic_time = true;
                run.timestamp = Some(TimestampReport {
                    tsa: ts.tsa.clone(),
                    time: rfc3339_of(ts.time),
                });
            }
            Err(e) => {
                let code = match e {
                    rfc3161::TimestampError::Untrusted(_) => VerdictCode::UntrustedSigner,
                    _ => VerdictCode::InvalidSignature,
                };
                run.failed(actions.authentic_timestamp, code, e.to_string())?;
            }
        }
    }

    // 3. Authenticity and expiry: a path to the trust store, valid at that time.
    let intermediates = &env.chain[1..];
    let path_at = |t: SystemTime| {
        pkix::build_path(
            leaf_der,
            intermediates,
            &verifier.trust_store,
            t,
            Role::CodeSigning,
        )
    };
    let (mut path, expiry_problem) = match path_at(at.0).and_then(|p| path_at(at.1).map(|_| p)) {
        Ok(p) => (Some(p), None),
        Err(PathError::NotValidAt(when)) => {
            let why = if authentic_time {
                format!("a certificate of the chain was not valid at the timestamp's time {when}")
            } else if env.timestamp.is_some() {
                format!(
                    "a certificate of the chain is not valid at the verification time {when}, and the signature's timestamp was not verified"
                )
            } else {
                format!(
                    "a certificate of the chain is not valid at the verification time {when} and no authentic timestamp says when it signed"
                )
            };
            // Authenticity comes first: judged at a moment the leaf itself was valid.
            let v = leaf.validity();
            let mid = (v.not_before.timestamp() + v.not_after.timestamp()) / 2;
            match path_at(pkix::system_time(mid)) {
                Ok(p) => (Some(p), Some(why)),
                // No moment when the whole chain was valid: an expiry matter still.
                Err(PathError::NotValidAt(_)) => (None, Some(why)),
                Err(e) => {
                    run.failed(
                        actions.authenticity,
                        VerdictCode::UntrustedSigner,
                        e.to_string(),
                    )?;
                    (None, Some(why))
                }
            }
        }
        Err(e) => {
            run.failed(
                actions.authenticity,
                VerdictCode::UntrustedSigner,
                e.to_string(),
            )?;
            (None, None)
        }
    };
    let subject = subject_set(&leaf);
    let identity_ok = verifier.identities.iter().any(|i| match i {
        Identity::Any => true,
        Identity::Subject(s) => *s == subject,
    });
    if !identity_ok {
        let why = format!("signer {} is not a trusted identity", run.signer);
        run.failed(actions.authenticity, VerdictCode::UntrustedSigner, why)?;
        path = None;
    }
    if let Some(why) = expiry_problem {
        run.failed(actions.expiry, VerdictCode::Expired, why)?;
    }
    if env.expiry.is_some_and(|e| e <= now) {
        run.failed(
            actions.expiry,
            VerdictCode::Expired,
            "signature has expired",
        )?;
    }

    // 4. Revocation of every certificate of the path but the anchor.
    let mut valid_until = env.expiry;
    if !authentic_time && let Some(p) = &path {
        for c in &p.certs {
            if let Ok((_, c)) = X509Certificate::from_der(c) {
                let end = pkix::system_time(c.validity().not_after.timestamp());
                valid_until = Some(valid_until.map_or(end, |u| u.min(end)));
            }
        }
    }
    if verifier.checks_revocation()
        && let Some(p) = &path
    {
        for pair in p.certs.windows(2) {
            let query = Query {
                cert: pair[0].clone(),
                issuer: pair[1].clone(),
                hosts: verifier.revocation_hosts.clone(),
            };
            let Some(findings) = run.findings else {
                run.queries.push(query);
                continue;
            };
            let subject = X509Certificate::from_der(&pair[0])
                .map(|(_, c)| c.subject().to_string())
                .unwrap_or_default();
            let finding = findings.get(&query.key()).cloned().unwrap_or(Finding {
                method: None,
                status: RevocationStatus::Unavailable("not looked up".into()),
                this_update: None,
                next_update: None,
            });
            if let Some(n) = finding.next_update {
                valid_until = Some(valid_until.map_or(n, |u| u.min(n)));
            }
            run.revocation.push(RevocationReport {
                certificate: subject.clone(),
                method: finding
                    .method
                    .map_or("none", |m| match m {
                        RevocationMethod::Ocsp => "ocsp",
                        RevocationMethod::Crl => "crl",
                    })
                    .to_string(),
                status: finding.status.as_str().to_string(),
                this_update: finding.this_update.map(rfc3339_of).unwrap_or_default(),
                next_update: finding.next_update.map(rfc3339_of).unwrap_or_default(),
            });
            match &finding.status {
                RevocationStatus::Good | RevocationStatus::NotRevocable => {}
                RevocationStatus::Revoked => run.failed(
                    actions.revocation,
                    VerdictCode::Revoked,
                    format!("certificate {subject} is revoked"),
                )?,
                RevocationStatus::Unknown(why) => run.failed(
                    actions.revocation,
                    VerdictCode::UntrustedSigner,
                    format!("revocation status of {subject} is unknown: {why}"),
                )?,
                RevocationStatus::Unavailable(why) => {
                    let why = format!("revocation status of {subject} is unavailable: {why}");
                    if actions.revocation == CheckAction::Enforce {
                        let mut c = fail(&run.signer, VerdictCode::UntrustedSigner, why.clone());
                        c.transient = Some(why);
                        return Err(Box::new(run.finish(c)));
                    }
                    run.failed(actions.revocation, VerdictCode::UntrustedSigner, why)?;
                }
            }
        }
    }

    let mut detail = Vec::new();
    if !verifier.checks_revocation() {
        detail.push("revocation not checked".to_string());
    }
    if !run.logged.is_empty() {
        detail.push(format!("logged: {}", run.logged.join("; ")));
    }
    let signer = run.signer.clone();
    let passed =
        Checked::passed(SignatureFormat::Notation, signer, detail.join("; ")).until(valid_until);
    Ok(run.finish(passed))
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
        check(
            media,
            envelope,
            v,
            target,
            SystemTime::now(),
            &Findings::new(),
        )
    }

    #[test]
    fn notation_go_envelopes_verify() {
        for file in ["jws_signature.sig", "cose_signature.sig"] {
            let (env, target, trust) = notation_go(file);
            let c = run(file, &env, &target, &trust);
            assert_eq!(c.failure, None, "{file}: {c:?}");
            assert!(c.report.signer.contains("CN="), "{c:?}");
            assert_eq!(c.report.detail, "revocation not checked");
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
