//! The signature manifests vouch reads from registries, parsed without I/O: which layers of a
//! cosign signature image are signatures, and whether a referrer is a usable Notary Project
//! signature or Sigstore bundle of the image. Kept pure so the unit tests and the fuzzer reach every branch
//! without a registry.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Denial, VerdictCode, cosign, notation};
use crate::registry::Descriptor;

/// One layer of a cosign signature image: the payload blob to fetch and the annotations
/// beside it — the signature, and for keyless signatures the certificate, chain, Rekor
/// bundle and RFC 3161 timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CosignLayer {
    pub payload_digest: String,
    pub annotations: BTreeMap<String, String>,
}

impl CosignLayer {
    /// The base64 signature annotation, if the layer has one.
    pub(crate) fn signature_b64(&self) -> Option<&str> {
        self.annotations
            .get(cosign::SIGNATURE_ANNOTATION)
            .map(String::as_str)
    }
}

/// The simple-signing layers of a cosign signature manifest, in order. Other layers
/// (attestations, SBOMs attached the same way) are skipped; the caller examines at most
/// `limits.maxSignatures` of them.
pub(crate) fn cosign_layers(bytes: &[u8]) -> Result<Vec<CosignLayer>, String> {
    layers_of_type(bytes, cosign::SIMPLE_SIGNING)
}

/// The layers of `media_type` of a cosign signature or attestation manifest (`.sig`:
/// simple-signing payloads; `.att`: DSSE envelopes), in order.
pub(crate) fn layers_of_type(bytes: &[u8], media_type: &str) -> Result<Vec<CosignLayer>, String> {
    #[derive(Deserialize)]
    struct SignatureManifest {
        #[serde(default)]
        layers: Vec<Layer>,
    }
    #[derive(Deserialize)]
    struct Layer {
        #[serde(rename = "mediaType")]
        media_type: String,
        digest: String,
        #[serde(default)]
        annotations: BTreeMap<String, String>,
    }
    let parsed: SignatureManifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    Ok(parsed
        .layers
        .into_iter()
        .filter(|l| l.media_type == media_type)
        .map(|l| CosignLayer {
            annotations: l.annotations,
            payload_digest: l.digest,
        })
        .collect())
}

/// What a referrer's manifest turned out to be, for the verifier that asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReferrerManifest {
    /// Some other artifact (an SBOM, another format's signature): ignored.
    Other,
    /// An artifact of the format asked for that vouch cannot use, and why.
    Unusable(Denial),
    /// A usable one: the layer to fetch (a Notary envelope, a Sigstore bundle) and its
    /// media type.
    Layer(Descriptor),
}

/// Classifies the manifest `manifest_digest` found among the referrers of `subject_digest`:
/// it must be a Notary Project signature (by artifact type or config media type), name the
/// image as its subject, and hold exactly one JWS or COSE envelope layer.
pub(crate) fn notary_manifest(
    bytes: &[u8],
    manifest_digest: &str,
    subject_digest: &str,
) -> ReferrerManifest {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct SigManifest {
        artifact_type: Option<String>,
        config: Option<Descriptor>,
        #[serde(default)]
        layers: Vec<Descriptor>,
        subject: Option<Descriptor>,
    }
    let Ok(sig) = serde_json::from_slice::<SigManifest>(bytes) else {
        return ReferrerManifest::Unusable(Denial::new(
            VerdictCode::InvalidSignature,
            format!("signature manifest {manifest_digest} is not an OCI manifest"),
        ));
    };
    let is_notary = sig.artifact_type.as_deref() == Some(notation::ARTIFACT_TYPE)
        || sig.config.as_ref().map(|c| c.media_type.as_str()) == Some(notation::ARTIFACT_TYPE);
    if !is_notary {
        return ReferrerManifest::Other;
    }
    if sig.subject.as_ref().map(|s| s.digest.as_str()) != Some(subject_digest) {
        return ReferrerManifest::Unusable(Denial::new(
            VerdictCode::DigestMismatch,
            format!("signature manifest {manifest_digest} has another subject"),
        ));
    }
    let [layer] = sig.layers.as_slice() else {
        return ReferrerManifest::Unusable(Denial::new(
            VerdictCode::InvalidSignature,
            format!("signature manifest {manifest_digest} must have exactly one layer"),
        ));
    };
    if layer.media_type != notation::JWS && layer.media_type != notation::COSE {
        return ReferrerManifest::Unusable(Denial::new(
            VerdictCode::InvalidSignature,
            format!("envelope type {:?} is not supported", layer.media_type),
        ));
    }
    ReferrerManifest::Layer(layer.clone())
}

/// Classifies the manifest `manifest_digest` found among the referrers of `subject_digest`:
/// a Sigstore bundle artifact (its `artifactType`, config or a layer media type is a bundle
/// media type) must name the image as its subject and hold exactly one bundle layer. Index
/// annotations are never consulted: the tag-schema index is writable by anyone who can
/// push, and cosign drops them there.
pub(crate) fn bundle_manifest(
    bytes: &[u8],
    manifest_digest: &str,
    subject_digest: &str,
) -> ReferrerManifest {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ArtifactManifest {
        artifact_type: Option<String>,
        config: Option<Descriptor>,
        #[serde(default)]
        layers: Vec<Descriptor>,
        subject: Option<Descriptor>,
    }
    let Ok(m) = serde_json::from_slice::<ArtifactManifest>(bytes) else {
        return ReferrerManifest::Unusable(Denial::new(
            VerdictCode::InvalidSignature,
            format!("referrer manifest {manifest_digest} is not an OCI manifest"),
        ));
    };
    let is_bundle = |t: &str| crate::keyless::BUNDLE_MEDIA_TYPES.contains(&t);
    let bundle_layers: Vec<&Descriptor> = m
        .layers
        .iter()
        .filter(|l| is_bundle(&l.media_type))
        .collect();
    let declared = m.artifact_type.as_deref().is_some_and(is_bundle)
        || m.config.as_ref().is_some_and(|c| is_bundle(&c.media_type));
    if !declared && bundle_layers.is_empty() {
        return ReferrerManifest::Other;
    }
    if m.subject.as_ref().map(|s| s.digest.as_str()) != Some(subject_digest) {
        return ReferrerManifest::Unusable(Denial::new(
            VerdictCode::DigestMismatch,
            format!("bundle manifest {manifest_digest} has another subject"),
        ));
    }
    match bundle_layers.as_slice() {
        [layer] => ReferrerManifest::Layer((*layer).clone()),
        _ => ReferrerManifest::Unusable(Denial::new(
            VerdictCode::InvalidSignature,
            format!(
                "bundle manifest {manifest_digest} must have exactly one bundle layer, not {}",
                bundle_layers.len()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBJECT: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const ENVELOPE: &str =
        "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn notary(artifact_type: &str, subject: &str, layers: &[&str]) -> Vec<u8> {
        let layers: Vec<_> = layers
            .iter()
            .map(|t| serde_json::json!({"mediaType": t, "digest": ENVELOPE, "size": 10}))
            .collect();
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": artifact_type,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": ENVELOPE, "size": 2},
            "layers": layers,
            "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": 1},
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_notary_signature_of_the_image_yields_its_envelope() {
        let m = notary(notation::ARTIFACT_TYPE, SUBJECT, &[notation::JWS]);
        match notary_manifest(&m, "m", SUBJECT) {
            ReferrerManifest::Layer(d) => {
                assert_eq!(d.digest, ENVELOPE);
                assert_eq!(d.media_type, notation::JWS);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unusable_notary_manifests_say_why() {
        let code = |m: Vec<u8>| match notary_manifest(&m, "m", SUBJECT) {
            ReferrerManifest::Unusable(d) => Some(d.code),
            _ => None,
        };
        let other = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
        assert_eq!(
            code(notary(notation::ARTIFACT_TYPE, other, &[notation::JWS])),
            Some(VerdictCode::DigestMismatch)
        );
        assert_eq!(
            code(notary(notation::ARTIFACT_TYPE, SUBJECT, &[])),
            Some(VerdictCode::InvalidSignature)
        );
        assert_eq!(
            code(notary(
                notation::ARTIFACT_TYPE,
                SUBJECT,
                &[notation::JWS, notation::COSE]
            )),
            Some(VerdictCode::InvalidSignature)
        );
        assert_eq!(
            code(notary(notation::ARTIFACT_TYPE, SUBJECT, &["text/plain"])),
            Some(VerdictCode::InvalidSignature)
        );
        assert_eq!(
            code(b"not json".to_vec()),
            Some(VerdictCode::InvalidSignature)
        );
    }

    #[test]
    fn other_artifacts_are_not_signatures() {
        let m = notary("application/spdx+json", SUBJECT, &[notation::JWS]);
        assert_eq!(notary_manifest(&m, "m", SUBJECT), ReferrerManifest::Other);
    }

    #[test]
    fn cosign_layers_keep_simple_signing_layers_in_order() {
        let layer = |t: &str, sig: Option<&str>| {
            let mut l = serde_json::json!({"mediaType": t, "digest": ENVELOPE, "size": 1});
            if let Some(s) = sig {
                l["annotations"] = serde_json::json!({ cosign::SIGNATURE_ANNOTATION: s });
            }
            l
        };
        let m = serde_json::json!({"layers": [
            layer(cosign::SIMPLE_SIGNING, Some("c2ln")),
            layer("application/vnd.in-toto+json", Some("eA==")),
            layer(cosign::SIMPLE_SIGNING, None),
            layer(cosign::SIMPLE_SIGNING, Some("eQ==")),
        ]})
        .to_string();
        let all = cosign_layers(m.as_bytes()).expect("parses");
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].signature_b64(), Some("c2ln"));
        assert_eq!(all[1].signature_b64(), None);
        assert_eq!(all[2].signature_b64(), Some("eQ=="));
        assert!(cosign_layers(b"\"a string\"").is_err());
    }

    const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

    #[test]
    fn a_bundle_referrer_of_the_image_yields_its_one_bundle_layer() {
        // As cosign v3 writes it: artifact type and layer the bundle type, empty config.
        let m = notary(BUNDLE, SUBJECT, &[BUNDLE]);
        match bundle_manifest(&m, "m", SUBJECT) {
            ReferrerManifest::Layer(d) => assert_eq!(d.media_type, BUNDLE),
            other => panic!("{other:?}"),
        }
        // Without an artifact type, the layer's media type says it (older writers).
        let m = notary(
            "",
            SUBJECT,
            &["application/vnd.dev.sigstore.bundle+json;version=0.2"],
        );
        assert!(matches!(
            bundle_manifest(&m, "m", SUBJECT),
            ReferrerManifest::Layer(_)
        ));
    }

    #[test]
    fn unusable_bundle_referrers_say_why_and_others_are_ignored() {
        let code = |m: Vec<u8>| match bundle_manifest(&m, "m", SUBJECT) {
            ReferrerManifest::Unusable(d) => Some(d.code),
            _ => None,
        };
        let other = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
        assert_eq!(
            code(notary(BUNDLE, other, &[BUNDLE])),
            Some(VerdictCode::DigestMismatch)
        );
        assert_eq!(
            code(notary(BUNDLE, SUBJECT, &[])),
            Some(VerdictCode::InvalidSignature)
        );
        assert_eq!(
            code(notary(BUNDLE, SUBJECT, &[BUNDLE, BUNDLE])),
            Some(VerdictCode::InvalidSignature)
        );
        assert_eq!(
            code(b"not json".to_vec()),
            Some(VerdictCode::InvalidSignature)
        );
        let sbom = notary("application/spdx+json", SUBJECT, &["application/spdx+json"]);
        assert_eq!(
            bundle_manifest(&sbom, "m", SUBJECT),
            ReferrerManifest::Other
        );
        let notary_sig = notary(notation::ARTIFACT_TYPE, SUBJECT, &[notation::JWS]);
        assert_eq!(
            bundle_manifest(&notary_sig, "m", SUBJECT),
            ReferrerManifest::Other
        );
    }
}
