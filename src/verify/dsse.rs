//! Key-based DSSE envelopes (pure: no I/O): the in-toto attestations `cosign attest --key`
//! writes, as a `sha256-<hex>.att` layer or inside a bundle whose verification material is
//! a public key. The signature is over DSSE's pre-authentication encoding of the payload
//! type and the payload, checked with the policy's cosign keys; only then is the payload
//! read, and it counts only if the statement names the image's digest among its subjects.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;

use super::cosign::PublicKey;
use crate::attest::VerifiedStatement;

/// The payload type of an in-toto statement.
pub(crate) const IN_TOTO: &str = "application/vnd.in-toto+json";

/// A DSSE envelope as JSON carries it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload: String,
    payload_type: String,
    #[serde(default)]
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Deserialize)]
struct EnvelopeSignature {
    sig: String,
}

/// DSSE's pre-authentication encoding: `DSSEv1 <len(type)> <type> <len(body)> <body>`.
pub(crate) fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The statement of an envelope (the JSON of a layer, or a bundle's `dsseEnvelope`) that
/// one of `keys` signed and that names `digest`; `None` otherwise — an unverified envelope
/// is never read further.
pub(crate) fn verify_with_keys(
    envelope: &serde_json::Value,
    keys: &[PublicKey],
    digest: &str,
) -> Option<VerifiedStatement> {
    let env: Envelope = serde_json::from_value(envelope.clone()).ok()?;
    if env.payload_type != IN_TOTO {
        return None;
    }
    let payload = B64.decode(env.payload.as_bytes()).ok()?;
    let message = pae(&env.payload_type, &payload);
    let key = env.signatures.iter().find_map(|s| {
        let sig = B64.decode(s.sig.as_bytes()).ok()?;
        keys.iter().find(|k| k.verifies(&message, &sig))
    })?;
    let statement: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    if !names_digest(&statement, digest) {
        return None;
    }
    Some(VerifiedStatement {
        predicate_type: statement["predicateType"].as_str()?.to_string(),
        statement,
        signer: format!("key:{}", key.name),
        issuer: String::new(),
    })
}

/// Whether an in-toto statement lists `digest` (`sha256:<hex>`) among its subjects.
pub(crate) fn names_digest(statement: &serde_json::Value, digest: &str) -> bool {
    let Some(hex) = digest.strip_prefix("sha256:") else {
        return false;
    };
    statement["subject"].as_array().is_some_and(|subjects| {
        subjects
            .iter()
            .any(|s| s["digest"]["sha256"].as_str() == Some(hex))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_is_dsse_v1() {
        assert_eq!(
            pae("application/vnd.in-toto+json", b"{}"),
            b"DSSEv1 28 application/vnd.in-toto+json 2 {}".to_vec()
        );
    }

    #[test]
    fn subjects_are_matched_by_sha256() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let s =
            serde_json::json!({"subject": [{"name": "x", "digest": {"sha256": "ab".repeat(32)}}]});
        assert!(names_digest(&s, &d));
        assert!(!names_digest(&s, &format!("sha256:{}", "cd".repeat(32))));
        assert!(!names_digest(&serde_json::json!({}), &d));
    }

    #[test]
    fn an_envelope_no_key_signed_is_not_read() {
        let statement = serde_json::json!({"predicateType": "p", "subject": []});
        let env = serde_json::json!({
            "payloadType": IN_TOTO,
            "payload": B64.encode(statement.to_string()),
            "signatures": [{"sig": B64.encode([1u8; 64])}],
        });
        assert_eq!(verify_with_keys(&env, &[], "sha256:00"), None);
    }
}
