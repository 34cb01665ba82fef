//! cosign key-based signatures (pure: no I/O).
//!
//! cosign stores signatures of image `sha256:<hex>` as an OCI image tagged
//! `sha256-<hex>.sig` in the image's repository. Each layer of media type
//! [`SIMPLE_SIGNING`] is a "simple signing" JSON payload; its annotation
//! [`SIGNATURE_ANNOTATION`] holds the base64 signature over the payload bytes. A signature
//! vouches for the image only if it verifies with a trusted key **and** the payload names
//! the image's digest under `critical.image.docker-manifest-digest`.
//!
//! Verification uses aws-lc-rs (the crypto library rustls already links) rather than the
//! `sigstore` crate, whose `cosign` feature pulls the whole Fulcio/Rekor/OIDC stack into
//! the admission hot path for what is, key-based, one signature check and one JSON field.

use std::path::Path;

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;

use super::{Checked, SignatureFormat, VerdictCode};

pub(crate) const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub(crate) const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
pub(crate) const PAYLOAD_TYPE: &str = "cosign container image signature";

/// The cosign signature tag of an image digest: `sha256:ab…` → `sha256-ab….sig`.
pub(crate) fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyAlg {
    EcdsaP256,
    EcdsaP384,
    Rsa,
    Ed25519,
}

/// A trusted cosign public key.
#[derive(Debug, Clone)]
pub struct PublicKey {
    /// Shown as `key:<name>` in reports; the key file's stem.
    pub name: String,
    alg: KeyAlg,
    /// The key in the form aws-lc-rs verifies with (EC point, PKCS#1 RSA key, raw Ed25519).
    bytes: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: not a PEM public key (expected \"-----BEGIN PUBLIC KEY-----\")")]
    NotPem(String),
    #[error("{0}: unsupported public key type (supported: ECDSA P-256/P-384, RSA, Ed25519)")]
    Unsupported(String),
}

const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_ED25519: &str = "1.3.101.112";

impl PublicKey {
    /// `sha256:` and the first 16 hex digits of the key's digest: how hints tell keys apart.
    pub fn fingerprint(&self) -> String {
        let d = crate::digest::sha256_digest(&self.bytes);
        d[..("sha256:".len() + 16).min(d.len())].to_string()
    }

    /// Loads a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) file.
    pub fn load(path: &Path) -> Result<PublicKey, KeyError> {
        let pem = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        PublicKey::from_pem(&name, &pem).map_err(|e| match e {
            KeyError::NotPem(_) => KeyError::NotPem(path.display().to_string()),
            KeyError::Unsupported(_) => KeyError::Unsupported(path.display().to_string()),
            other => other,
        })
    }

    /// A trusted key from PEM (ECDSA P-256/P-384, RSA or Ed25519 SubjectPublicKeyInfo); `name` identifies it in reports.
    pub fn from_pem(name: &str, pem: &[u8]) -> Result<PublicKey, KeyError> {
        use rustls::pki_types::SubjectPublicKeyInfoDer;
        use rustls::pki_types::pem::PemObject;
        use x509_parser::prelude::FromDer;
        let der = SubjectPublicKeyInfoDer::from_pem_slice(pem)
            .map_err(|_| KeyError::NotPem(name.to_string()))?;
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(der.as_ref())
            .map_err(|_| KeyError::NotPem(name.to_string()))?;
        let alg_oid = spki.algorithm.algorithm.to_id_string();
        let param_oid = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|o| o.to_id_string());
        let alg = match (alg_oid.as_str(), param_oid.as_deref()) {
            (OID_EC, Some(OID_P256)) => KeyAlg::EcdsaP256,
            (OID_EC, Some(OID_P384)) => KeyAlg::EcdsaP384,
            (OID_RSA, _) => KeyAlg::Rsa,
            (OID_ED25519, _) => KeyAlg::Ed25519,
            _ => return Err(KeyError::Unsupported(name.to_string())),
        };
        Ok(PublicKey {
            name: name.to_string(),
            alg,
            bytes: spki.subject_public_key.data.to_vec(),
        })
    }

    /// Whether `sig` is a valid signature over `msg` by this key.
    pub fn verifies(&self, msg: &[u8], sig: &[u8]) -> bool {
        let algs: &[&'static dyn VerificationAlgorithm] = match self.alg {
            KeyAlg::EcdsaP256 => &[&signature::ECDSA_P256_SHA256_ASN1],
            KeyAlg::EcdsaP384 => &[&signature::ECDSA_P384_SHA384_ASN1],
            KeyAlg::Rsa => &[
                &signature::RSA_PKCS1_2048_8192_SHA256,
                &signature::RSA_PSS_2048_8192_SHA256,
            ],
            KeyAlg::Ed25519 => &[&signature::ED25519],
        };
        algs.iter().any(|alg| {
            UnparsedPublicKey::new(*alg, &self.bytes)
                .verify(msg, sig)
                .is_ok()
        })
    }
}

/// A signature layer with its payload already fetched and hash-checked.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The simple-signing payload blob, hash-checked against its layer descriptor.
    pub payload: Vec<u8>,
    /// The `dev.cosignproject.cosign/signature` annotation, if the layer had one.
    pub signature_b64: Option<String>,
}

fn fail(signer: &str, code: VerdictCode, detail: impl Into<String>) -> Checked {
    Checked::failed(SignatureFormat::Cosign, signer, code, detail)
}

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    image: PayloadImage,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct PayloadImage {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// Checks one signature against `keys` for the image `image_digest`.
pub fn check(c: &Candidate, keys: &[PublicKey], image_digest: &str) -> Checked {
    let Some(b64) = c.signature_b64.as_deref() else {
        return fail(
            "",
            VerdictCode::InvalidSignature,
            format!("signature layer has no {SIGNATURE_ANNOTATION} annotation"),
        );
    };
    let compact: String = b64.chars().filter(|ch| !ch.is_ascii_whitespace()).collect();
    let Ok(sig) = B64.decode(compact) else {
        return fail("", VerdictCode::InvalidSignature, "signature is not base64");
    };
    let Some(key) = keys.iter().find(|k| k.verifies(&c.payload, &sig)) else {
        return if plausible_signature(&sig) {
            fail(
                "",
                VerdictCode::UntrustedSigner,
                "signature does not verify with any trusted key",
            )
        } else {
            fail("", VerdictCode::InvalidSignature, "signature is malformed")
        };
    };
    let signer = format!("key:{}", key.name);
    let payload: Payload = match serde_json::from_slice(&c.payload) {
        Ok(p) => p,
        Err(e) => {
            return fail(
                &signer,
                VerdictCode::InvalidSignature,
                format!("signed payload is not a cosign simple-signing document: {e}"),
            );
        }
    };
    if payload.critical.kind != PAYLOAD_TYPE {
        return fail(
            &signer,
            VerdictCode::InvalidSignature,
            format!(
                "signed payload has type {:?}, not {PAYLOAD_TYPE:?}",
                payload.critical.kind
            ),
        );
    }
    let named = payload.critical.image.docker_manifest_digest;
    if named != image_digest {
        return fail(
            &signer,
            VerdictCode::DigestMismatch,
            format!("signature is for {named}, not {image_digest}"),
        );
    }
    Checked::passed(SignatureFormat::Cosign, signer, "")
}

/// Whether bytes have the shape of some signature (DER ECDSA, raw Ed25519, RSA). A
/// well-formed signature no trusted key verifies cannot be attributed → untrusted signer;
/// bytes that are no signature at all → invalid signature.
fn plausible_signature(sig: &[u8]) -> bool {
    is_der_ecdsa(sig) || sig.len() == 64 || matches!(sig.len(), 256 | 384 | 512)
}

/// `SEQUENCE { INTEGER r, INTEGER s }` with short-form lengths, consuming every byte.
fn is_der_ecdsa(sig: &[u8]) -> bool {
    fn int(b: &[u8]) -> Option<&[u8]> {
        let (&tag, rest) = b.split_first()?;
        let (&len, rest) = rest.split_first()?;
        let len = usize::from(len);
        (tag == 0x02 && (1..=0x7f).contains(&len) && rest.len() >= len).then(|| &rest[len..])
    }
    let Some((&0x30, rest)) = sig.split_first() else {
        return false;
    };
    let Some((&len, body)) = rest.split_first() else {
        return false;
    };
    if usize::from(len) != body.len() || len > 0x7f {
        return false;
    }
    int(body).and_then(int).is_some_and(<[u8]>::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verdict over every cosign signature checked.
    fn verdict(checked: &[Checked]) -> Result<(), crate::verdict::Denial> {
        crate::verdict::signatures_verdict(SignatureFormat::Cosign, checked)
    }
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/cosign/containers-image")
    }

    /// A containers/image fixture: `\0sigstore-json\n{payload, annotations}`.
    fn fixture_candidate(dir: &str, file: &str) -> Candidate {
        let raw = std::fs::read(fixtures().join(dir).join(file)).expect("fixture");
        let json = raw
            .strip_prefix(b"\x00sigstore-json\n".as_slice())
            .expect("sigstore-json prefix");
        let v: serde_json::Value = serde_json::from_slice(json).expect("fixture JSON");
        Candidate {
            payload: B64
                .decode(v["payload"].as_str().expect("payload"))
                .expect("payload base64"),
            signature_b64: v["annotations"][SIGNATURE_ANNOTATION]
                .as_str()
                .map(str::to_string),
        }
    }

    fn fixture_digest(dir: &str) -> String {
        let m = std::fs::read(fixtures().join(dir).join("manifest.json")).expect("manifest");
        crate::digest::sha256_digest(&m)
    }

    fn key(file: &str) -> PublicKey {
        PublicKey::load(&fixtures().join(file)).expect("fixture key")
    }

    #[test]
    fn published_valid_signature_verifies_with_its_key_only() {
        let c = fixture_candidate("dir-img-cosign-valid", "signature-1");
        let d = fixture_digest("dir-img-cosign-valid");
        let ok = check(&c, &[key("cosign.pub")], &d);
        assert_eq!(ok.failure, None, "{ok:?}");
        assert_eq!(ok.report.signer, "key:cosign");
        let other = check(&c, &[key("cosign2.pub")], &d);
        assert_eq!(other.failure, Some(VerdictCode::UntrustedSigner));
        let either = check(&c, &[key("cosign2.pub"), key("cosign.pub")], &d);
        assert_eq!(either.failure, None, "any trusted key may verify");
    }

    #[test]
    fn published_negative_cases() {
        let k = [key("cosign.pub")];
        // A signature by a key nobody trusts.
        let raw = std::fs::read(fixtures().join("unknown-cosign-key.signature")).expect("fixture");
        let v: serde_json::Value = serde_json::from_slice(
            raw.strip_prefix(b"\x00sigstore-json\n".as_slice())
                .expect("prefix"),
        )
        .expect("json");
        let c = Candidate {
            payload: B64
                .decode(v["payload"].as_str().expect("payload"))
                .expect("b64"),
            signature_b64: v["annotations"][SIGNATURE_ANNOTATION]
                .as_str()
                .map(str::to_string),
        };
        let d = fixture_digest("dir-img-cosign-valid");
        assert_eq!(
            check(&c, &k, &d).failure,
            Some(VerdictCode::UntrustedSigner)
        );
        // The manifest was modified after signing: the signature names the old digest.
        let c = fixture_candidate("dir-img-cosign-modified-manifest", "signature-1");
        let d = fixture_digest("dir-img-cosign-modified-manifest");
        assert_eq!(check(&c, &k, &d).failure, Some(VerdictCode::DigestMismatch));
        // The payload names a digest that is not the manifest's.
        let c = fixture_candidate("dir-img-cosign-manifest-digest-error", "signature-1");
        let d = fixture_digest("dir-img-cosign-manifest-digest-error");
        assert_eq!(check(&c, &k, &d).failure, Some(VerdictCode::DigestMismatch));
    }

    #[test]
    fn mixed_signatures_pass_when_one_is_valid() {
        let k = [key("cosign.pub")];
        let d = fixture_digest("dir-img-cosign-mixed");
        let checked: Vec<Checked> = ["signature-1", "signature-2"]
            .iter()
            .map(|f| check(&fixture_candidate("dir-img-cosign-mixed", f), &k, &d))
            .collect();
        assert_eq!(
            checked.iter().filter(|c| c.failure.is_none()).count(),
            1,
            "{checked:?}"
        );
        assert_eq!(verdict(&checked), Ok(()));
    }

    #[test]
    fn tampering_is_never_verified() {
        let k = [key("cosign.pub")];
        let good = fixture_candidate("dir-img-cosign-valid", "signature-1");
        let d = fixture_digest("dir-img-cosign-valid");
        // Payload changed after signing.
        let mut c = good.clone();
        c.payload.push(b' ');
        assert_eq!(
            check(&c, &k, &d).failure,
            Some(VerdictCode::UntrustedSigner)
        );
        // Signature bytes truncated: no longer a signature at all.
        let mut sig = B64
            .decode(good.signature_b64.as_deref().expect("sig"))
            .expect("b64");
        sig.truncate(sig.len() - 5);
        let c = Candidate {
            signature_b64: Some(B64.encode(&sig)),
            ..good.clone()
        };
        assert_eq!(
            check(&c, &k, &d).failure,
            Some(VerdictCode::InvalidSignature)
        );
        // Not base64, or absent.
        let c = Candidate {
            signature_b64: Some("!!".to_string()),
            ..good.clone()
        };
        assert_eq!(
            check(&c, &k, &d).failure,
            Some(VerdictCode::InvalidSignature)
        );
        let c = Candidate {
            signature_b64: None,
            ..good
        };
        assert_eq!(
            check(&c, &k, &d).failure,
            Some(VerdictCode::InvalidSignature)
        );
    }

    #[test]
    fn verdict_ranks_failures() {
        assert_eq!(verdict(&[]).map_err(|e| e.code), Err(VerdictCode::Unsigned));
        let f = |code| fail("", code, "");
        let all = [
            f(VerdictCode::UntrustedSigner),
            f(VerdictCode::DigestMismatch),
            f(VerdictCode::InvalidSignature),
        ];
        assert_eq!(
            verdict(&all).map_err(|e| e.code),
            Err(VerdictCode::DigestMismatch)
        );
        assert_eq!(
            verdict(&all[..1]).map_err(|e| e.code),
            Err(VerdictCode::UntrustedSigner)
        );
    }

    #[test]
    fn keys_of_other_types_are_refused_clearly() {
        let cert = std::fs::read(fixtures().join("fulcio_v1.crt.pem")).expect("fixture");
        assert!(matches!(
            PublicKey::from_pem("x", &cert),
            Err(KeyError::NotPem(_))
        ));
        assert!(matches!(
            PublicKey::from_pem("x", b"garbage"),
            Err(KeyError::NotPem(_))
        ));
    }

    #[test]
    fn der_shape() {
        assert!(is_der_ecdsa(&[
            0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01
        ]));
        assert!(!is_der_ecdsa(&[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01]));
        assert!(!is_der_ecdsa(&[0x31, 0x00]));
        assert_eq!(signature_tag("sha256:abc"), "sha256-abc.sig");
    }
}
