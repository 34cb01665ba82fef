//! Sorting what happened into SPEC §1's outcome classes, and how long a verdict may be
//! served: registry failures into verdicts, per-key errors and transient failures (by who
//! can cause them), and the verdict TTL rule.

use super::*;

/// How long a verdict may be served: verified verdicts for `verifiedTtl`, but never past
/// the earliest expiry of what made them valid (a certificate, a signature's expiry);
/// failed verdicts for `failedTtl`.
pub(crate) fn ttl_for(
    verified: bool,
    valid_until: Option<SystemTime>,
    now: SystemTime,
    config: &CacheConfig,
) -> Duration {
    if !verified {
        return config.failed_ttl.get();
    }
    let cap = valid_until.map_or(Duration::MAX, |u| {
        u.duration_since(now).unwrap_or(Duration::ZERO)
    });
    config.verified_ttl.get().min(cap)
}

/// Why there is no resolution for an image.
#[derive(Debug, Clone)]
pub(crate) enum Resolution {
    /// The registry is not to be asked now (backing off; no client): this outcome.
    Unavailable(Outcome),
    /// The registry's answer.
    Failed(RegistryError),
}

/// A registry failure sorted into SPEC §1's classes.
pub(crate) enum Failure {
    /// The registry's answer settles the key: a failed verdict.
    Verdict(Denial),
    /// A per-key error or a transient failure.
    Other(Outcome),
}

/// Sorts a registry failure by who can cause it (docs/ARCHITECTURE.md): content is a
/// verdict, availability is transient, the rest (credentials, TLS, protocol) a per-key
/// error.
pub(crate) fn classify(e: RegistryError) -> Failure {
    let error = |code, why| Failure::Other(Outcome::Error(KeyError::new(code, why)));
    match e.kind {
        ErrorKind::NotFound => {
            Failure::Verdict(Denial::new(VerdictCode::NotFound, e.into_detail()))
        }
        ErrorKind::DigestMismatch => {
            Failure::Verdict(Denial::new(VerdictCode::DigestMismatch, e.into_detail()))
        }
        // The image's own manifest as served cannot be used: the pusher's doing.
        ErrorKind::Content => {
            Failure::Verdict(Denial::new(VerdictCode::InvalidImage, e.into_detail()))
        }
        ErrorKind::Auth => error(ErrorCode::Auth, e.into_detail()),
        ErrorKind::Protocol => error(ErrorCode::RegistryProtocol, e.into_detail()),
        ErrorKind::Tls => error(ErrorCode::RegistryTls, e.into_detail()),
        ErrorKind::Transient => Failure::Other(Outcome::Transient(e.into_detail())),
    }
}

/// No resolution for `reference`, as the answer.
pub(super) fn registry_outcome(
    e: Resolution,
    reference: &str,
    policy: &str,
) -> Result<Report, Outcome> {
    let e = match e {
        Resolution::Unavailable(outcome) => return Err(outcome),
        Resolution::Failed(e) => e,
    };
    match classify(e) {
        Failure::Verdict(denial) => Ok(Report::failed(reference, policy, denial)),
        Failure::Other(outcome) => Err(outcome),
    }
}
