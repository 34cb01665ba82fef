//! The legacy cosign keyless form (cosign ≤ v2): one layer of the `sha256-<hex>.sig` image
//! per signature, its simple-signing payload as the blob, and the evidence as layer
//! annotations.
//!
//! Such a layer is exactly a message-signature bundle in other clothes, so it is verified
//! as the bundle it is equivalent to: `messageSignature` over the payload (digest =
//! SHA-256 of the payload bytes), the leaf and the untrusted chain as
//! `x509CertificateChain` (never an anchor: only the trusted root's CAs are), the Rekor
//! bundle annotation as a log entry whose `inclusionPromise` is the SET (the SET signs the
//! canonical JSON of `{body, integratedTime, logIndex, logID}`, which the verifier rebuilds
//! from the entry), and the RFC 3161 annotation as a timestamp over the signature bytes.
//! With a log entry that is a v0.1 bundle (SET, no inclusion proof); without one, a v0.2
//! bundle (a v0.1 bundle must have a SET), which only `tlog: skip` with a timestamp
//! accepts. Then the payload must name the expected image digest.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;
use serde_json::json;

use super::bundle::{Verified, parse_digest, verify_parsed};
use super::error::KeylessError;
use super::policy::KeylessPolicy;
use super::trusted_root::TrustedRoot;

/// The layer annotation holding the base64 signature over the payload.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The layer annotation holding the PEM Fulcio leaf certificate.
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// The layer annotation holding the PEM chain above the leaf.
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
/// The layer annotation holding the Rekor bundle: the log entry and its signed entry timestamp.
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
/// The layer annotation holding an RFC 3161 timestamp over the signature.
pub const RFC3161_TIMESTAMP_ANNOTATION: &str = "dev.sigstore.cosign/rfc3161timestamp";

/// The simple-signing payload type cosign signs images with.
const PAYLOAD_TYPE: &str = "cosign container image signature";

/// One legacy keyless signature layer: its payload blob (already hash-checked against the
/// layer descriptor) and its annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegacySignature {
    /// The simple-signing payload blob the signature covers.
    pub payload: Vec<u8>,
    /// [`SIGNATURE_ANNOTATION`]: base64 signature over the payload.
    pub signature_b64: Option<String>,
    /// [`CERTIFICATE_ANNOTATION`]: PEM leaf.
    pub certificate_pem: Option<String>,
    /// [`CHAIN_ANNOTATION`]: PEM intermediates (untrusted; may include the root, which
    /// then counts for nothing).
    pub chain_pem: Option<String>,
    /// [`BUNDLE_ANNOTATION`]: `{"SignedEntryTimestamp", "Payload": {body, integratedTime,
    /// logIndex, logID}}`.
    pub rekor_bundle: Option<String>,
    /// [`RFC3161_TIMESTAMP_ANNOTATION`]: `{"SignedRFC3161Timestamp": base64 DER}`.
    pub rfc3161_timestamp: Option<String>,
}

impl LegacySignature {
    /// Picks the annotations this form uses out of a layer's annotations.
    pub fn from_annotations<K, V>(
        payload: Vec<u8>,
        annotations: impl IntoIterator<Item = (K, V)>,
    ) -> LegacySignature
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut sig = LegacySignature {
            payload,
            ..LegacySignature::default()
        };
        for (k, v) in annotations {
            let slot = match k.as_ref() {
                SIGNATURE_ANNOTATION => &mut sig.signature_b64,
                CERTIFICATE_ANNOTATION => &mut sig.certificate_pem,
                CHAIN_ANNOTATION => &mut sig.chain_pem,
                BUNDLE_ANNOTATION => &mut sig.rekor_bundle,
                RFC3161_TIMESTAMP_ANNOTATION => &mut sig.rfc3161_timestamp,
                _ => continue,
            };
            *slot = Some(v.as_ref().to_string());
        }
        sig
    }

    /// The Sigstore bundle (JSON) this layer is equivalent to.
    pub fn to_bundle_json(&self) -> Result<String, KeylessError> {
        let malformed = |what: String| KeylessError::Malformed(what);
        let sig_b64: String = self
            .signature_b64
            .as_deref()
            .ok_or_else(|| malformed(format!("no {SIGNATURE_ANNOTATION} annotation")))?
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let signature = B64
            .decode(&sig_b64)
            .map_err(|_| malformed(format!("{SIGNATURE_ANNOTATION} is not base64")))?;
        let (media_type, material) = self.verification_material()?;
        let payload_digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.payload);
        let bundle = json!({
            "mediaType": media_type,
            "verificationMaterial": material,
            "messageSignature": {
                "messageDigest": {"algorithm": "SHA2_256", "digest": B64.encode(payload_digest.as_ref())},
                "signature": B64.encode(signature),
            },
        });
        Ok(bundle.to_string())
    }

    /// The Sigstore bundle (JSON) a legacy attestation layer (`sha256-<hex>.att`: the
    /// payload is a DSSE envelope, the evidence in the same annotations) is equivalent to.
    pub fn to_dsse_bundle_json(&self) -> Result<String, KeylessError> {
        #[derive(Deserialize, serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Envelope {
            payload: String,
            payload_type: String,
            signatures: Vec<EnvelopeSignature>,
        }
        #[derive(Deserialize, serde::Serialize)]
        struct EnvelopeSignature {
            sig: String,
            #[serde(default)]
            keyid: String,
        }
        let envelope: Envelope = serde_json::from_slice(&self.payload).map_err(|e| {
            KeylessError::Malformed(format!("attestation layer is not a DSSE envelope: {e}"))
        })?;
        let (media_type, material) = self.verification_material()?;
        let bundle = json!({
            "mediaType": media_type,
            "verificationMaterial": material,
            "dsseEnvelope": envelope,
        });
        Ok(bundle.to_string())
    }

    /// The bundle media type and `verificationMaterial` of the annotations: the leaf and
    /// untrusted chain, the log entry, the timestamp.
    fn verification_material(&self) -> Result<(&'static str, serde_json::Value), KeylessError> {
        let malformed = |what: String| KeylessError::Malformed(what);
        let leaf_pem = self.certificate_pem.as_deref().ok_or_else(|| {
            malformed(format!(
                "no {CERTIFICATE_ANNOTATION} annotation: not a keyless signature"
            ))
        })?;
        let leaf = CertificateDer::from_pem_slice(leaf_pem.as_bytes())
            .map_err(|_| malformed(format!("{CERTIFICATE_ANNOTATION} is not a PEM certificate")))?;
        let mut chain = vec![json!({"rawBytes": B64.encode(leaf.as_ref())})];
        if let Some(pem) = self.chain_pem.as_deref() {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|_| {
                    malformed(format!(
                        "{CHAIN_ANNOTATION} is not a list of PEM certificates"
                    ))
                })?;
                chain.push(json!({"rawBytes": B64.encode(cert.as_ref())}));
            }
        }
        let mut material = json!({"x509CertificateChain": {"certificates": chain}});
        let media_type = match self.rekor_bundle.as_deref() {
            Some(text) => {
                material["tlogEntries"] = json!([rekor_entry(text)?]);
                "application/vnd.dev.sigstore.bundle+json;version=0.1"
            }
            None => "application/vnd.dev.sigstore.bundle+json;version=0.2",
        };
        if let Some(text) = self.rfc3161_timestamp.as_deref() {
            #[derive(Deserialize)]
            struct Rfc3161 {
                #[serde(rename = "SignedRFC3161Timestamp")]
                signed: String,
            }
            let ts: Rfc3161 = serde_json::from_str(text).map_err(|e| {
                malformed(format!(
                    "{RFC3161_TIMESTAMP_ANNOTATION} is not cosign's JSON: {e}"
                ))
            })?;
            B64.decode(&ts.signed).map_err(|_| {
                malformed(format!(
                    "{RFC3161_TIMESTAMP_ANNOTATION} holds no base64 token"
                ))
            })?;
            material["timestampVerificationData"] =
                json!({"rfc3161Timestamps": [{"signedTimestamp": ts.signed}]});
        }
        Ok((media_type, material))
    }
}

/// The bundle's log entry for cosign's Rekor bundle annotation.
fn rekor_entry(text: &str) -> Result<serde_json::Value, KeylessError> {
    #[derive(Deserialize)]
    struct RekorBundle {
        #[serde(rename = "SignedEntryTimestamp")]
        set: String,
        #[serde(rename = "Payload")]
        payload: RekorPayload,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct RekorPayload {
        body: String,
        integrated_time: i64,
        log_index: i64,
        #[serde(rename = "logID")]
        log_id: String,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Body {
        kind: String,
        api_version: String,
    }
    let malformed = |what: String| KeylessError::Malformed(what);
    let b: RekorBundle = serde_json::from_str(text).map_err(|e| {
        malformed(format!(
            "{BUNDLE_ANNOTATION} is not cosign's Rekor bundle: {e}"
        ))
    })?;
    let body = B64
        .decode(&b.payload.body)
        .map_err(|_| malformed(format!("{BUNDLE_ANNOTATION}: Payload.body is not base64")))?;
    let kind: Body = serde_json::from_slice(&body).map_err(|e| {
        malformed(format!(
            "{BUNDLE_ANNOTATION}: Payload.body is not a Rekor entry: {e}"
        ))
    })?;
    let log_id = hex_decode(&b.payload.log_id)
        .ok_or_else(|| malformed(format!("{BUNDLE_ANNOTATION}: Payload.logID is not hex")))?;
    if b.payload.integrated_time < 0 || b.payload.log_index < 0 {
        return Err(malformed(format!(
            "{BUNDLE_ANNOTATION}: negative integratedTime or logIndex"
        )));
    }
    Ok(json!({
        "logIndex": b.payload.log_index.to_string(),
        "logId": {"keyId": B64.encode(log_id)},
        "kindVersion": {"kind": kind.kind, "version": kind.api_version},
        "integratedTime": b.payload.integrated_time.to_string(),
        "inclusionPromise": {"signedEntryTimestamp": b.set},
        "canonicalizedBody": b.payload.body,
    }))
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// Verifies one legacy keyless attestation layer (`sha256-<hex>.att`, a DSSE envelope with
/// the keyless annotations) whose in-toto statement must name the image `digest`.
pub fn verify_legacy_attestation(
    att: &LegacySignature,
    digest: &str,
    root: &TrustedRoot,
    policy: &KeylessPolicy,
) -> Result<Verified, KeylessError> {
    let expected = parse_digest(digest)?;
    let bundle = super::bundle::parse_bundle(att.to_dsse_bundle_json()?.as_bytes())?;
    verify_parsed(&bundle, &expected, root, policy)
}

/// Verifies one legacy keyless signature layer as a signature of the image `digest`: the
/// equivalent bundle verifies over the payload, and the payload is a cosign
/// simple-signing document naming `digest`.
pub fn verify_legacy(
    sig: &LegacySignature,
    digest: &str,
    root: &TrustedRoot,
    policy: &KeylessPolicy,
) -> Result<Verified, KeylessError> {
    let expected = parse_digest(digest)?;
    let bundle = super::bundle::parse_bundle(sig.to_bundle_json()?.as_bytes())?;
    let payload_digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &sig.payload);
    let payload_digest = sigstore_verify::types::Sha256Hash::try_from(payload_digest.as_ref())
        .map_err(|e| KeylessError::Malformed(e.to_string()))?;
    let verified = verify_parsed(&bundle, &payload_digest, root, policy)?;

    #[derive(Deserialize)]
    struct Payload {
        critical: Critical,
    }
    #[derive(Deserialize)]
    struct Critical {
        image: Image,
        #[serde(rename = "type")]
        kind: String,
    }
    #[derive(Deserialize)]
    struct Image {
        #[serde(rename = "docker-manifest-digest")]
        digest: String,
    }
    let payload: Payload = serde_json::from_slice(&sig.payload).map_err(|e| {
        KeylessError::Malformed(format!(
            "signed payload is not a cosign simple-signing document: {e}"
        ))
    })?;
    if payload.critical.kind != PAYLOAD_TYPE {
        return Err(KeylessError::Malformed(format!(
            "signed payload has type {:?}, not {PAYLOAD_TYPE:?}",
            payload.critical.kind
        )));
    }
    let named = payload.critical.image.digest;
    if parse_digest(&named).ok().as_ref() != Some(&expected) {
        return Err(KeylessError::DigestMismatch(format!(
            "signature by {} is for {named}, not {digest}",
            verified.identity
        )));
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_are_picked_by_name() {
        let sig = LegacySignature::from_annotations(
            b"p".to_vec(),
            [
                (SIGNATURE_ANNOTATION, "c2ln"),
                (CERTIFICATE_ANNOTATION, "cert"),
                ("org.opencontainers.image.created", "x"),
                (BUNDLE_ANNOTATION, "{}"),
            ],
        );
        assert_eq!(sig.signature_b64.as_deref(), Some("c2ln"));
        assert_eq!(sig.certificate_pem.as_deref(), Some("cert"));
        assert_eq!(sig.rekor_bundle.as_deref(), Some("{}"));
        assert_eq!(sig.chain_pem, None);
        assert_eq!(sig.rfc3161_timestamp, None);
    }

    #[test]
    fn malformed_annotations_are_invalid_signatures() {
        let base = LegacySignature {
            payload: b"{}".to_vec(),
            signature_b64: Some("c2ln".to_string()),
            certificate_pem: Some(
                "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n".to_string(),
            ),
            ..LegacySignature::default()
        };
        let cases = [
            LegacySignature { signature_b64: None, ..base.clone() },
            LegacySignature { signature_b64: Some("!!".into()), ..base.clone() },
            LegacySignature { certificate_pem: None, ..base.clone() },
            LegacySignature { certificate_pem: Some("garbage".into()), ..base.clone() },
            LegacySignature { chain_pem: Some("-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n".into()), ..base.clone() },
            LegacySignature { rekor_bundle: Some("{".into()), ..base.clone() },
            LegacySignature { rekor_bundle: Some(r#"{"SignedEntryTimestamp":"","Payload":{"body":"!","integratedTime":1,"logIndex":1,"logID":"00"}}"#.into()), ..base.clone() },
            LegacySignature { rekor_bundle: Some(r#"{"SignedEntryTimestamp":"","Payload":{"body":"e30=","integratedTime":1,"logIndex":1,"logID":"00"}}"#.into()), ..base.clone() },
            LegacySignature { rekor_bundle: Some(r#"{"SignedEntryTimestamp":"","Payload":{"body":"eyJraW5kIjoiaGFzaGVkcmVrb3JkIiwiYXBpVmVyc2lvbiI6IjAuMC4xIn0=","integratedTime":1,"logIndex":1,"logID":"0g"}}"#.into()), ..base.clone() },
            LegacySignature { rekor_bundle: Some(r#"{"SignedEntryTimestamp":"","Payload":{"body":"eyJraW5kIjoiaGFzaGVkcmVrb3JkIiwiYXBpVmVyc2lvbiI6IjAuMC4xIn0=","integratedTime":-1,"logIndex":1,"logID":"00"}}"#.into()), ..base.clone() },
            LegacySignature { rfc3161_timestamp: Some("{}".into()), ..base.clone() },
            LegacySignature { rfc3161_timestamp: Some(r#"{"SignedRFC3161Timestamp":"!"}"#.into()), ..base.clone() },
        ];
        for c in cases {
            let e = c.to_bundle_json().expect_err("malformed");
            assert_eq!(
                e.code(),
                crate::verdict::VerdictCode::InvalidSignature,
                "{e}"
            );
        }
        assert_eq!(hex_decode("0aFf"), Some(vec![0x0a, 0xff]));
        assert_eq!(hex_decode("0"), None);
        assert_eq!(hex_decode("é0"), None);
    }
}
