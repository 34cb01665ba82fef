//! How a verdict is held in memory: a few dozen bytes of postcard rather than a `Report`
//! of seven small heap strings. With 100 000 verdicts cached, every byte per entry is
//! 100 kB of resident memory; reports are decoded only on the slower path (the key cache
//! answers repeated keys with the rendered JSON).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::verdict::{
    AttestationReport, Denial, PlatformReport, Report, RevocationReport, SignatureReport,
    TimestampReport, VerdictCode,
};

/// A cached verdict and how long it may be served. The report is kept as a few dozen bytes
/// of [`Compact`] (without the per-key `reference`) rather than as a `Report` of seven small
/// heap strings: with 100 000 verdicts held, every byte per entry is 100 kB of resident
/// memory. It is decoded only on the slower path (the key cache answers repeated keys).
#[derive(Debug, Clone, PartialEq)]
pub struct CachedVerdict {
    encoded: Box<[u8]>,
    /// How long the verdict may be served (see `verify::ttl_for`).
    pub ttl: Duration,
    /// When it was reached (or fetched from the shared tier).
    pub created: Instant,
}

impl CachedVerdict {
    /// Encodes `report` compactly.
    pub fn new(report: Report, ttl: Duration) -> CachedVerdict {
        let encoded = postcard::to_allocvec(&Compact::from(report)).unwrap_or_default();
        CachedVerdict {
            encoded: encoded.into_boxed_slice(),
            ttl,
            created: Instant::now(),
        }
    }

    /// The report (its `reference` empty: the caller stamps its own). Bytes that do not
    /// decode — which would be a bug — yield a failed verdict, never a verified one.
    pub fn report(&self) -> Report {
        match postcard::from_bytes::<Compact>(&self.encoded) {
            Ok(c) => c.into(),
            Err(e) => Report::failed(
                "",
                "",
                Denial::new(
                    VerdictCode::InvalidSignature,
                    format!("internal: unreadable cached verdict: {e}"),
                ),
            ),
        }
    }

    /// The size of its encoding, for the cache's weigher.
    pub fn encoded_len(&self) -> usize {
        self.encoded.len()
    }

    /// How much longer it may be served.
    pub fn remaining(&self) -> Duration {
        self.ttl.saturating_sub(self.created.elapsed())
    }
}

/// A report as the in-memory cache keeps it: postcard (field order, varint lengths, no
/// names) over the report's fields, with the digest as its 32 raw bytes when it is a
/// canonical `sha256:` digest (71 characters become 33 bytes). A typical cosign verdict
/// takes about 70 bytes, against some 200 as JSON.
#[derive(Serialize, Deserialize)]
struct Compact {
    verified: bool,
    digest: CompactDigest,
    policy: String,
    signatures: Vec<CompactSignature>,
    code: VerdictCode,
    reason: String,
    /// What most verdicts lack — attestations, platforms, a hint, timestamps and
    /// revocation findings — in one optional part: one byte when absent. (Each byte of a
    /// typical verdict counts twice over: a 72-byte encoding takes an 80-byte allocation,
    /// a 74-byte one a 96-byte allocation.)
    rare: Option<Box<Rare>>,
}

/// The parts of a report most verdicts do not have.
#[derive(Serialize, Deserialize, Default)]
struct Rare {
    /// Every field present (no serde skipping in the type), so postcard can hold it as is.
    attestations: Vec<AttestationReport>,
    platforms: Vec<PlatformReport>,
    hint: String,
    /// Per signature, in order: its timestamp and revocation findings (empty when no
    /// signature has any).
    signature_extras: Vec<(Option<TimestampReport>, Vec<CompactRevocation>)>,
}

/// A signature report with every field present: postcard is not self-describing, so the
/// JSON shape's omitted-when-empty fields (`issuer`) cannot be skipped here.
#[derive(Serialize, Deserialize)]
struct CompactSignature {
    format: String,
    verified: bool,
    signer: String,
    detail: String,
    issuer: String,
}

/// A revocation report with every field present (its JSON omits empty times).
#[derive(Serialize, Deserialize)]
struct CompactRevocation {
    certificate: String,
    method: String,
    status: String,
    this_update: String,
    next_update: String,
}

impl From<RevocationReport> for CompactRevocation {
    fn from(r: RevocationReport) -> CompactRevocation {
        CompactRevocation {
            certificate: r.certificate,
            method: r.method,
            status: r.status,
            this_update: r.this_update,
            next_update: r.next_update,
        }
    }
}

impl From<CompactRevocation> for RevocationReport {
    fn from(r: CompactRevocation) -> RevocationReport {
        RevocationReport {
            certificate: r.certificate,
            method: r.method,
            status: r.status,
            this_update: r.this_update,
            next_update: r.next_update,
        }
    }
}

impl From<SignatureReport> for CompactSignature {
    fn from(s: SignatureReport) -> CompactSignature {
        CompactSignature {
            format: s.format,
            verified: s.verified,
            signer: s.signer,
            detail: s.detail,
            issuer: s.issuer,
        }
    }
}

impl From<CompactSignature> for SignatureReport {
    fn from(s: CompactSignature) -> SignatureReport {
        SignatureReport {
            format: s.format,
            verified: s.verified,
            signer: s.signer,
            detail: s.detail,
            issuer: s.issuer,
            timestamp: None,
            revocation: Vec::new(),
        }
    }
}

#[derive(Serialize, Deserialize)]
enum CompactDigest {
    /// `sha256:` and 64 lower-case hex digits.
    Sha256([u8; 32]),
    /// Anything else (empty, another algorithm, upper-case hex), kept as it is.
    Text(String),
}

impl CompactDigest {
    fn new(digest: String) -> CompactDigest {
        if !crate::digest::is_sha256_digest(&digest) {
            return CompactDigest::Text(digest);
        }
        let hex = &digest["sha256:".len()..];
        let mut raw = [0u8; 32];
        for (i, byte) in raw.iter_mut().enumerate() {
            match u8::from_str_radix(&hex[2 * i..2 * i + 2], 16) {
                Ok(b) => *byte = b,
                Err(_) => return CompactDigest::Text(digest),
            }
        }
        CompactDigest::Sha256(raw)
    }

    fn into_string(self) -> String {
        match self {
            CompactDigest::Sha256(raw) => crate::digest::sha256_digest_of(&raw),
            CompactDigest::Text(s) => s,
        }
    }
}

impl From<Report> for Compact {
    fn from(mut r: Report) -> Compact {
        let has_extras = r
            .signatures
            .iter()
            .any(|s| s.timestamp.is_some() || !s.revocation.is_empty());
        let signature_extras = if has_extras {
            r.signatures
                .iter_mut()
                .map(|s| {
                    let revocation = std::mem::take(&mut s.revocation);
                    (
                        s.timestamp.take(),
                        revocation.into_iter().map(Into::into).collect(),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        let rare = Rare {
            attestations: r.attestations,
            platforms: r.platforms,
            hint: r.hint,
            signature_extras,
        };
        let rare_present = !rare.attestations.is_empty()
            || !rare.platforms.is_empty()
            || !rare.hint.is_empty()
            || !rare.signature_extras.is_empty();
        Compact {
            verified: r.verified,
            digest: CompactDigest::new(r.digest),
            policy: r.policy,
            signatures: r.signatures.into_iter().map(Into::into).collect(),
            code: r.code,
            reason: r.reason,
            rare: rare_present.then(|| Box::new(rare)),
        }
    }
}

impl From<Compact> for Report {
    fn from(c: Compact) -> Report {
        let rare = c.rare.map(|r| *r).unwrap_or_default();
        let mut signatures: Vec<SignatureReport> =
            c.signatures.into_iter().map(Into::into).collect();
        for (s, (timestamp, revocation)) in signatures.iter_mut().zip(rare.signature_extras) {
            s.timestamp = timestamp;
            s.revocation = revocation.into_iter().map(Into::into).collect();
        }
        Report {
            verified: c.verified,
            reference: String::new(),
            digest: c.digest.into_string(),
            policy: c.policy,
            signatures,
            code: c.code,
            reason: c.reason,
            attestations: rare.attestations,
            platforms: rare.platforms,
            hint: rare.hint,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosign_verdict(digest: &str) -> Report {
        Report {
            verified: true,
            reference: "ghcr.io/acme/api:1.0".into(),
            digest: digest.into(),
            policy: "acme".into(),
            signatures: vec![SignatureReport {
                format: "cosign".into(),
                verified: true,
                signer: "key:acme-release".into(),
                detail: String::new(),
                issuer: String::new(),
                timestamp: None,
                revocation: Vec::new(),
            }],
            code: VerdictCode::None,
            reason: String::new(),
            attestations: Vec::new(),
            platforms: Vec::new(),
            hint: String::new(),
        }
    }

    #[test]
    fn cached_reports_come_back_exactly_without_their_reference() {
        let sha = format!("sha256:{}", "0123456789abcdef".repeat(4));
        let failed = Report {
            verified: false,
            reference: "r.io/a/b:c".into(),
            digest: sha.clone(),
            policy: "p".into(),
            signatures: vec![
                SignatureReport {
                    format: "notation".into(),
                    verified: false,
                    signer: "CN=Acme, O=Acme, C=US".into(),
                    detail: "certificate expired at 2026-01-01T00:00:00Z".into(),
                    issuer: String::new(),
                    timestamp: Some(TimestampReport {
                        tsa: "CN=Acme TSA".into(),
                        time: "2026-01-01T00:00:00Z".into(),
                    }),
                    // Empty times are omitted from JSON, never from the compact form.
                    revocation: vec![
                        RevocationReport {
                            certificate: "CN=Acme".into(),
                            method: "ocsp".into(),
                            status: "unavailable".into(),
                            this_update: String::new(),
                            next_update: String::new(),
                        },
                        RevocationReport {
                            certificate: "CN=Acme CA".into(),
                            method: "crl".into(),
                            status: "good".into(),
                            this_update: "2026-01-01T00:00:00Z".into(),
                            next_update: "2026-01-02T00:00:00Z".into(),
                        },
                    ],
                },
                SignatureReport {
                    format: "cosign".into(),
                    verified: false,
                    signer: String::new(),
                    detail: "signature does not match — ünïcode".into(),
                    issuer: String::new(),
                    timestamp: None,
                    revocation: Vec::new(),
                },
                SignatureReport {
                    format: "sigstore".into(),
                    verified: false,
                    signer:
                        "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1"
                            .into(),
                    detail: "issuer does not match".into(),
                    issuer: "https://token.actions.githubusercontent.com".into(),
                    timestamp: None,
                    revocation: Vec::new(),
                },
            ],
            code: VerdictCode::Expired,
            reason: "every signature expired".into(),
            attestations: vec![AttestationReport {
                predicate_type: "https://slsa.dev/provenance/v1".into(),
                signer: "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1"
                    .into(),
                passed: false,
                messages: vec!["built from another repository".into()],
            }],
            platforms: vec![PlatformReport {
                digest: sha.clone(),
                platform: "linux/arm64/v8".into(),
                verified: false,
                code: VerdictCode::Unsigned,
            }],
            hint: "sign the arm64 manifest too".into(),
        };
        let upper = format!("sha256:{}", "ABCDEF0123456789".repeat(4));
        let short = format!("sha256:{}", "ab".repeat(31));
        let sha512 = format!("sha512:{}", "ab".repeat(64));
        let mut reports = vec![
            failed,
            Report::failed("x", "", Denial::new(VerdictCode::Unsigned, "")),
        ];
        for digest in [sha.as_str(), &upper, &short, &sha512, "", "sha256:zz"] {
            reports.push(cosign_verdict(digest));
        }
        for report in reports {
            let cached = CachedVerdict::new(report.clone(), Duration::from_secs(1));
            let mut want = report;
            want.reference.clear();
            assert_eq!(cached.report(), want);
        }
    }

    #[test]
    fn a_typical_verdict_takes_a_few_dozen_bytes() {
        let digest = format!("sha256:{}", "9f".repeat(32));
        let report = cosign_verdict(&digest);
        let json = serde_json::to_string(&report).expect("json");
        let cached = CachedVerdict::new(report, Duration::from_secs(1));
        assert!(
            cached.encoded.len() <= 72,
            "{} bytes (JSON: {})",
            cached.encoded.len(),
            json.len()
        );
    }

    #[test]
    fn undecodable_bytes_are_a_failed_verdict() {
        let mut v = CachedVerdict::new(cosign_verdict("sha256:1"), Duration::from_secs(1));
        v.encoded = vec![1u8].into_boxed_slice();
        let r = v.report();
        assert!(!r.verified);
        assert_eq!(r.code, VerdictCode::InvalidSignature);
        assert!(
            r.reason.starts_with("internal: unreadable cached verdict"),
            "{r:?}"
        );
    }
}
