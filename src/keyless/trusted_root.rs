//! The trust material of a Sigstore instance: Sigstore TrustedRoot JSON (media types v0.1
//! and v0.2) with its certificate authorities, transparency logs, CT logs and timestamp
//! authorities, each with the `validFor` window in which it may be used.

use std::sync::Arc;
use std::time::SystemTime;

use sigstore_verify::Verifier;
use sigstore_verify::crypto::VerificationKey;
use sigstore_verify::trust_root::TrustedRoot as SigstoreRoot;

/// The TrustedRoot media types accepted.
pub(super) const TRUSTED_ROOT_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
    "application/vnd.dev.sigstore.trustedroot.v0.2+json",
];

/// Why a trusted root cannot be used. A configuration error, not a verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustRootError {
    /// The document is not TrustedRoot JSON.
    #[error("not a Sigstore trusted root: {0}")]
    Json(String),
    #[error("trusted root media type {0:?} is not supported (expected {v01:?} or {v02:?})",
        v01 = TRUSTED_ROOT_MEDIA_TYPES[0], v02 = TRUSTED_ROOT_MEDIA_TYPES[1])]
    /// A media type this version does not read.
    MediaType(String),
    #[error(
        "{0}: publicKey.validFor.start is missing; a log key without the start of its validity cannot be placed in time"
    )]
    /// A transparency log key without `validFor.start`.
    MissingValidityStart(String),
    /// No Fulcio certificate authority at all.
    #[error("trusted root has no certificate authority: keyless certificates could never chain")]
    NoCertificateAuthority,
    /// Anything else that makes the root unusable (a key or certificate that does not parse).
    #[error("trusted root is unusable: {0}")]
    Invalid(String),
}

/// One transparency log of the root, as the log checks need it.
pub(crate) struct Tlog {
    /// `logId.keyId`: the SHA-256 of the log's public key (Rekor v1) or its checkpoint key
    /// ID (Rekor v2); its first four bytes are the checkpoint key hint.
    pub log_id: Vec<u8>,
    pub base_url: String,
    /// `None` when the key's algorithm is not one this build verifies.
    pub key: Option<VerificationKey>,
    /// Inclusive bounds, seconds since the Unix epoch.
    pub valid_from: i64,
    pub valid_until: Option<i64>,
}

impl Tlog {
    /// Whether the key may be used for material of time `t` (inclusive ends).
    pub(crate) fn valid_at(&self, t: i64) -> bool {
        t >= self.valid_from && self.valid_until.is_none_or(|end| t <= end)
    }

    pub(crate) fn window(&self) -> String {
        match self.valid_until {
            Some(end) => format!("from {} to {}", rfc3339(self.valid_from), rfc3339(end)),
            None => format!("from {}", rfc3339(self.valid_from)),
        }
    }
}

struct Inner {
    media_type: String,
    verifier: Verifier,
    tlogs: Vec<Tlog>,
}

/// A loaded, checked trusted root, ready to verify with (cheap to clone).
#[derive(Clone)]
pub struct TrustedRoot {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TrustedRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedRoot")
            .field("media_type", &self.inner.media_type)
            .field(
                "tlogs",
                &self
                    .inner
                    .tlogs
                    .iter()
                    .map(|t| t.base_url.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl TrustedRoot {
    /// Parses and checks Sigstore TrustedRoot JSON: a known media type, at least one
    /// certificate authority, every transparency-log and CT-log key with a
    /// `validFor.start`, well-formed certificates and keys, no duplicate log IDs and no
    /// window that ends before it starts.
    pub fn from_json(json: &[u8]) -> Result<TrustedRoot, TrustRootError> {
        let value: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| TrustRootError::Json(e.to_string()))?;
        let media_type = value
            .get("mediaType")
            .and_then(|m| m.as_str())
            .ok_or_else(|| TrustRootError::Json("mediaType is missing".to_string()))?;
        if !TRUSTED_ROOT_MEDIA_TYPES.contains(&media_type) {
            return Err(TrustRootError::MediaType(media_type.to_string()));
        }
        for list in ["tlogs", "ctlogs"] {
            let Some(logs) = value.get(list).and_then(|l| l.as_array()) else {
                continue;
            };
            for (i, log) in logs.iter().enumerate() {
                let start = log
                    .pointer("/publicKey/validFor/start")
                    .and_then(|s| s.as_str());
                if start.is_none_or(str::is_empty) {
                    let url = log.get("baseUrl").and_then(|u| u.as_str()).unwrap_or("");
                    return Err(TrustRootError::MissingValidityStart(format!(
                        "{list}[{i}] ({url})"
                    )));
                }
            }
        }
        let text = std::str::from_utf8(json).map_err(|e| TrustRootError::Json(e.to_string()))?;
        let root =
            SigstoreRoot::from_json(text).map_err(|e| TrustRootError::Json(e.to_string()))?;
        if root.certificate_authorities.is_empty() {
            return Err(TrustRootError::NoCertificateAuthority);
        }
        let verifier = Verifier::new(&root).map_err(|e| TrustRootError::Invalid(e.to_string()))?;
        let tlogs = root
            .tlogs
            .iter()
            .map(|t| {
                let window = t.public_key.valid_for;
                Tlog {
                    log_id: t.log_id.key_id.as_bytes().to_vec(),
                    base_url: t.base_url.clone(),
                    key: VerificationKey::from_spki(&t.public_key.raw_bytes).ok(),
                    valid_from: window.map_or(i64::MIN, |w| w.start.as_second()),
                    valid_until: window.and_then(|w| w.end).map(|e| e.as_second()),
                }
            })
            .collect();
        Ok(TrustedRoot {
            inner: Arc::new(Inner {
                media_type: media_type.to_string(),
                verifier,
                tlogs,
            }),
        })
    }

    /// The root's media type.
    pub fn media_type(&self) -> &str {
        &self.inner.media_type
    }

    pub(crate) fn verifier(&self) -> &Verifier {
        &self.inner.verifier
    }

    /// The transparency log whose `logId.keyId` is `log_id`.
    pub(crate) fn tlog(&self, log_id: &[u8]) -> Option<&Tlog> {
        self.inner.tlogs.iter().find(|t| t.log_id == log_id)
    }
}

/// Seconds since the Unix epoch as RFC 3339 (UTC), for details.
pub(crate) fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{secs} s after the Unix epoch"))
}

/// Seconds since the Unix epoch of a `SystemTime` (negative before 1970).
pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRODUCTION: &str = sigstore_trust_root::SIGSTORE_PRODUCTION_TRUSTED_ROOT;

    fn edited(f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_str(PRODUCTION).expect("production root");
        f(&mut v);
        serde_json::to_vec(&v).expect("json")
    }

    #[test]
    fn production_root_loads() {
        let root = TrustedRoot::from_json(PRODUCTION.as_bytes()).expect("loads");
        assert_eq!(root.media_type(), TRUSTED_ROOT_MEDIA_TYPES[0]);
        assert!(!root.inner.tlogs.is_empty());
    }

    #[test]
    fn both_media_types_and_no_other() {
        let v02 = edited(|v| v["mediaType"] = TRUSTED_ROOT_MEDIA_TYPES[1].into());
        assert!(TrustedRoot::from_json(&v02).is_ok());
        let other = edited(|v| v["mediaType"] = "application/json".into());
        assert!(matches!(
            TrustedRoot::from_json(&other),
            Err(TrustRootError::MediaType(_))
        ));
    }

    #[test]
    fn log_keys_without_validity_start_are_refused() {
        for (list, edit) in [
            ("tlogs", "/tlogs/0/publicKey/validFor"),
            ("ctlogs", "/ctlogs/1/publicKey/validFor"),
        ] {
            // No start in the window, or no window at all.
            let no_start = edited(|v| {
                if let Some(w) = v.pointer_mut(edit).and_then(|w| w.as_object_mut()) {
                    w.remove("start");
                }
            });
            let err = TrustedRoot::from_json(&no_start).expect_err("refused");
            assert!(
                matches!(&err, TrustRootError::MissingValidityStart(s) if s.starts_with(list)),
                "{err}"
            );
            let no_window = edited(|v| {
                let key = edit.trim_end_matches("/validFor");
                if let Some(k) = v.pointer_mut(key).and_then(|k| k.as_object_mut()) {
                    k.remove("validFor");
                }
            });
            assert!(matches!(
                TrustedRoot::from_json(&no_window),
                Err(TrustRootError::MissingValidityStart(_))
            ));
        }
    }

    #[test]
    fn garbage_and_empty_roots_are_refused() {
        assert!(TrustedRoot::from_json(b"").is_err());
        assert!(TrustedRoot::from_json(b"[]").is_err());
        assert!(TrustedRoot::from_json(b"{\"mediaType\": 1}").is_err());
        let no_ca = edited(|v| v["certificateAuthorities"] = serde_json::json!([]));
        assert_eq!(
            TrustedRoot::from_json(&no_ca).err(),
            Some(TrustRootError::NoCertificateAuthority)
        );
        let bad_key = edited(|v| v["tlogs"][0]["publicKey"]["rawBytes"] = "AAAA".into());
        assert!(TrustedRoot::from_json(&bad_key).is_err());
        let reversed = edited(|v| {
            v["tlogs"][0]["publicKey"]["validFor"]["end"] = "2000-01-01T00:00:00Z".into()
        });
        assert!(matches!(
            TrustedRoot::from_json(&reversed),
            Err(TrustRootError::Invalid(_))
        ));
    }

    #[test]
    fn windows_are_inclusive() {
        let t = Tlog {
            log_id: vec![],
            base_url: String::new(),
            key: None,
            valid_from: 10,
            valid_until: Some(20),
        };
        assert!(!t.valid_at(9));
        assert!(t.valid_at(10));
        assert!(t.valid_at(20));
        assert!(!t.valid_at(21));
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn roots_can_be_shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<TrustedRoot>();
    }
}
