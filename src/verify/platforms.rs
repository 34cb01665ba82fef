//! Multi-platform images (OCI indexes, Docker manifest lists), as a policy's `platforms`
//! says (SPEC §4): `index` — the index's own signature (the default, and what cosign signs
//! by default); `each` — every platform manifest verifies on its own, with its own
//! signature; `index-or-each` — either. A platform is never picked: no default
//! `linux/amd64`, which would break arm64-only and Windows images and leave the other
//! platforms of a mixed image unverified.
//!
//! This module is the pure half: which children an index lists ([`children`], bounded by
//! `limits.maxPlatforms`) and what their verdicts add up to ([`combine`]). Fetching and
//! verifying each child — through the verdict cache, so a second index sharing children
//! verifies only what is new — is the engine's.

use serde::Deserialize;

use crate::registry::Descriptor;
use crate::verdict::{Denial, PlatformReport, Report, VerdictCode};

/// The media types of an index.
pub(crate) const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// The media types of a platform (image) manifest.
pub(crate) const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// Whether a descriptor's media type is an index.
pub(crate) fn is_index(media_type: &str) -> bool {
    INDEX_TYPES.contains(&media_type)
}

/// One platform manifest an index lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Child {
    pub descriptor: Descriptor,
    /// `os/architecture[/variant]`, or empty.
    pub platform: String,
}

/// Why an index's children cannot be verified: a verdict about the image.
pub(crate) fn children(bytes: &[u8], max_platforms: usize) -> Result<Vec<Child>, Box<Report>> {
    #[derive(Deserialize)]
    struct Index {
        #[serde(default)]
        manifests: Vec<Entry>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Entry {
        media_type: String,
        digest: String,
        size: u64,
        platform: Option<Platform>,
    }
    #[derive(Deserialize)]
    struct Platform {
        #[serde(default)]
        os: String,
        #[serde(default)]
        architecture: String,
        #[serde(default)]
        variant: Option<String>,
    }
    let failed = |reason: String, hint: &str| {
        let mut r = Report::failed("", "", Denial::new(VerdictCode::InvalidImage, reason));
        r.hint = hint.to_string();
        Box::new(r)
    };
    let index: Index = serde_json::from_slice(bytes)
        .map_err(|e| failed(format!("the index is not an OCI index: {e}"), ""))?;
    // Attestation manifests (docker buildx `unknown/unknown`) and other artifacts are not
    // platforms: only image manifests count.
    let images: Vec<Entry> = index
        .manifests
        .into_iter()
        .filter(|m| MANIFEST_TYPES.contains(&m.media_type.as_str()))
        .filter(|m| {
            m.platform
                .as_ref()
                .is_none_or(|p| !(p.os == "unknown" && p.architecture == "unknown"))
        })
        .collect();
    if images.is_empty() {
        return Err(failed(
            "the index lists no platform manifest".to_string(),
            "",
        ));
    }
    if images.len() > max_platforms {
        return Err(failed(
            format!(
                "the index lists {} platform manifests, more than limits.maxPlatforms ({max_platforms})",
                images.len()
            ),
            "raise limits.maxPlatforms, or sign the index and use platforms: index",
        ));
    }
    Ok(images
        .into_iter()
        .map(|m| Child {
            platform: m
                .platform
                .map(|p| match p.variant {
                    Some(v) if !v.is_empty() => format!("{}/{}/{v}", p.os, p.architecture),
                    _ => format!("{}/{}", p.os, p.architecture),
                })
                .unwrap_or_default(),
            descriptor: Descriptor {
                media_type: m.media_type,
                digest: m.digest,
                size: m.size,
                artifact_type: None,
            },
        })
        .collect())
}

/// What every child's verdict adds up to under `each`: verified when all are, else the
/// first failure, naming the platform.
pub(crate) fn combine(results: &[(Child, Report)]) -> (Vec<PlatformReport>, Result<(), Denial>) {
    let reports = results
        .iter()
        .map(|(c, r)| PlatformReport {
            digest: c.descriptor.digest.clone(),
            platform: c.platform.clone(),
            verified: r.verified,
            code: r.code,
        })
        .collect();
    let verdict = match results.iter().find(|(_, r)| !r.verified) {
        None => Ok(()),
        Some((c, r)) => Err(Denial::new(
            r.code,
            format!(
                "platform {} ({}) is not verified: {}",
                if c.platform.is_empty() {
                    "?"
                } else {
                    &c.platform
                },
                c.descriptor.digest,
                r.reason
            ),
        )),
    };
    (reports, verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: &[(&str, &str)]) -> Vec<u8> {
        let manifests: Vec<_> = entries
            .iter()
            .enumerate()
            .map(|(i, (os, arch))| {
                serde_json::json!({
                    "mediaType": MANIFEST_TYPES[0],
                    "digest": format!("sha256:{:064x}", i),
                    "size": 100,
                    "platform": {"os": os, "architecture": arch},
                })
            })
            .collect();
        serde_json::json!({"schemaVersion": 2, "mediaType": INDEX_TYPES[0], "manifests": manifests})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn platforms_are_listed_and_attestation_manifests_are_not() {
        let c = children(
            &index(&[
                ("linux", "arm64"),
                ("unknown", "unknown"),
                ("windows", "amd64"),
            ]),
            8,
        )
        .expect("children");
        let platforms: Vec<&str> = c.iter().map(|c| c.platform.as_str()).collect();
        assert_eq!(platforms, ["linux/arm64", "windows/amd64"]);
    }

    #[test]
    fn too_many_platforms_is_a_verdict_with_a_hint() {
        let many: Vec<(&str, &str)> = (0..40).map(|_| ("linux", "amd64")).collect();
        let r = children(&index(&many), 32).expect_err("over the limit");
        assert_eq!(r.code, VerdictCode::InvalidImage);
        assert!(
            r.reason.contains("40") && r.reason.contains("maxPlatforms"),
            "{}",
            r.reason
        );
        assert!(r.hint.contains("maxPlatforms"));
        assert!(children(b"[1]", 32).is_err());
        assert!(children(&index(&[]), 32).is_err());
    }

    #[test]
    fn each_needs_every_platform() {
        let c = children(&index(&[("linux", "amd64"), ("linux", "arm64")]), 8).expect("children");
        let ok = Report::failed("", "", Denial::new(VerdictCode::None, ""));
        let ok = Report {
            verified: true,
            ..ok
        };
        let bad = Report::failed("", "", Denial::new(VerdictCode::Unsigned, "no signature"));
        let (reports, verdict) = combine(&[(c[0].clone(), ok.clone()), (c[1].clone(), bad)]);
        assert_eq!(reports.len(), 2);
        let d = verdict.expect_err("arm64 unsigned");
        assert_eq!(d.code, VerdictCode::Unsigned);
        assert!(d.reason.contains("linux/arm64"), "{}", d.reason);
        let (_, verdict) = combine(&[(c[0].clone(), ok.clone()), (c[1].clone(), ok)]);
        assert!(verdict.is_ok());
    }
}
