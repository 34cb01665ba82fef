//! The label values of vouch's metrics: each a closed enum, so no label value ever comes
//! from a request (no image references, no error strings) and cardinality is fixed.

/// Provider endpoints, as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Verify,
    Mutate,
    Claims,
    Other,
}

impl Endpoint {
    /// Every value, for initialising the labelled series at zero.
    pub(super) const ALL: [Endpoint; 4] = [
        Endpoint::Verify,
        Endpoint::Mutate,
        Endpoint::Claims,
        Endpoint::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Verify => "verify",
            Endpoint::Mutate => "mutate",
            Endpoint::Claims => "claims",
            Endpoint::Other => "other",
        }
    }
}

/// How a request as a whole ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Answered with no `systemError`.
    Ok,
    /// Answered with a `systemError`.
    SystemError,
    /// Not a POST, or not a provider path.
    Rejected,
}

impl RequestOutcome {
    /// Every value, for initialising the labelled series at zero.
    pub(super) const ALL: [RequestOutcome; 3] = [
        RequestOutcome::Ok,
        RequestOutcome::SystemError,
        RequestOutcome::Rejected,
    ];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Ok => "ok",
            RequestOutcome::SystemError => "system_error",
            RequestOutcome::Rejected => "rejected",
        }
    }
}

/// How one key ended (the three classes of SPEC §1, plus "no outcome by the deadline").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOutcome {
    Verdict,
    Error,
    Transient,
    Deadline,
}

impl KeyOutcome {
    /// Every value, for initialising the labelled series at zero.
    pub(super) const ALL: [KeyOutcome; 4] = [
        KeyOutcome::Verdict,
        KeyOutcome::Error,
        KeyOutcome::Transient,
        KeyOutcome::Deadline,
    ];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            KeyOutcome::Verdict => "verdict",
            KeyOutcome::Error => "error",
            KeyOutcome::Transient => "transient",
            KeyOutcome::Deadline => "deadline",
        }
    }
}

/// Why a TLS handshake on the provider port failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    Timeout,
    NoClientCert,
    BadClientCert,
    Protocol,
    NotReady,
    Other,
}

impl HandshakeFailure {
    /// Every value, for initialising the labelled series at zero.
    pub(super) const ALL: [HandshakeFailure; 6] = [
        HandshakeFailure::Timeout,
        HandshakeFailure::NoClientCert,
        HandshakeFailure::BadClientCert,
        HandshakeFailure::Protocol,
        HandshakeFailure::NotReady,
        HandshakeFailure::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::NoClientCert => "no_client_cert",
            HandshakeFailure::BadClientCert => "bad_client_cert",
            HandshakeFailure::Protocol => "protocol",
            HandshakeFailure::NotReady => "not_ready",
            HandshakeFailure::Other => "other",
        }
    }
}

/// What a connection closed to make room for a newcomer at the cap was doing, as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShedPhase {
    Handshake,
    NoRequest,
    Idle,
}

impl ShedPhase {
    /// Every value, for initialising the labelled series at zero.
    pub(super) const ALL: [ShedPhase; 3] =
        [ShedPhase::Handshake, ShedPhase::NoRequest, ShedPhase::Idle];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            ShedPhase::Handshake => "handshake",
            ShedPhase::NoRequest => "no_request",
            ShedPhase::Idle => "idle",
        }
    }
}

/// Which cache an event is about, as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKind {
    Verdict,
    Tag,
    /// Exact key → rendered verdict.
    Key,
    /// The Redis tier's verdicts.
    Shared,
    /// The Redis tier's rendered answers of whole keys (cross-replica single flight).
    SharedKey,
}

impl CacheKind {
    /// The caches held in this process, whose entries `vouch_cache_entries` counts.
    pub(crate) const IN_PROCESS: [CacheKind; 3] =
        [CacheKind::Verdict, CacheKind::Tag, CacheKind::Key];
    /// Every value, for initialising the labelled series at zero.
    pub(super) const ALL: [CacheKind; 5] = [
        CacheKind::Verdict,
        CacheKind::Tag,
        CacheKind::Key,
        CacheKind::Shared,
        CacheKind::SharedKey,
    ];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            CacheKind::Verdict => "verdict",
            CacheKind::Tag => "tag",
            CacheKind::Key => "key",
            CacheKind::Shared => "shared",
            CacheKind::SharedKey => "shared_key",
        }
    }
}

/// What a cache lookup came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheEvent {
    /// Answered from the cache.
    Hit,
    /// Computed (by this caller).
    Miss,
    /// Waited for another caller's computation of the same key.
    Coalesced,
}

/// How a verification (one run of the verifiers for one digest) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerificationOutcome {
    Verified,
    Failed,
    Error,
    Transient,
}

impl VerificationOutcome {
    /// Every value, for initialising the labelled series at zero.
    pub(super) const ALL: [VerificationOutcome; 4] = [
        VerificationOutcome::Verified,
        VerificationOutcome::Failed,
        VerificationOutcome::Error,
        VerificationOutcome::Transient,
    ];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            VerificationOutcome::Verified => "verified",
            VerificationOutcome::Failed => "failed",
            VerificationOutcome::Error => "error",
            VerificationOutcome::Transient => "transient",
        }
    }
}

/// Why a signature candidate was skipped instead of checked, as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Over a size limit, or not the document expected.
    Unreadable,
    /// Named by a manifest or a referrers list, absent from the registry.
    Missing,
    /// Did not hash to its digest.
    DigestMismatch,
    /// A signature manifest of the wrong shape.
    Malformed,
    /// Beyond `limits.maxSignatures`: not examined.
    OverLimit,
}

impl SkipReason {
    /// Every value, for initialising the labelled series at zero.
    pub(super) const ALL: [SkipReason; 5] = [
        SkipReason::Unreadable,
        SkipReason::Missing,
        SkipReason::DigestMismatch,
        SkipReason::Malformed,
        SkipReason::OverLimit,
    ];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            SkipReason::Unreadable => "unreadable",
            SkipReason::Missing => "missing",
            SkipReason::DigestMismatch => "digest_mismatch",
            SkipReason::Malformed => "malformed",
            SkipReason::OverLimit => "over_limit",
        }
    }
}

/// Why an attestation was not evaluated, as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoredAttestation {
    /// No verifier of the policy vouches for its envelope (or its subject is another image):
    /// never read.
    Unverified,
    /// The registry served it unusable: over `limits.maxAttestationBytes`, missing, not a
    /// bundle or envelope.
    Unreadable,
}

impl IgnoredAttestation {
    /// Every value, for initialising the labelled series at zero.
    pub(super) const ALL: [IgnoredAttestation; 2] = [
        IgnoredAttestation::Unverified,
        IgnoredAttestation::Unreadable,
    ];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            IgnoredAttestation::Unverified => "unverified",
            IgnoredAttestation::Unreadable => "unreadable",
        }
    }
}

/// A revocation source, as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationMethod {
    Ocsp,
    Crl,
}

impl RevocationMethod {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            RevocationMethod::Ocsp => "ocsp",
            RevocationMethod::Crl => "crl",
        }
    }
}

/// Which certificate an expiry timestamp is about, as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Certificate {
    /// The provider's serving certificate (its leaf).
    Serving,
    /// The CA that signs Gatekeeper's client certificates (the earliest expiry in the
    /// bundle).
    ClientCa,
}

impl Certificate {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Certificate::Serving => "serving",
            Certificate::ClientCa => "client_ca",
        }
    }
}

/// How a revocation fetch ended, as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationFetch {
    /// Fetched and valid.
    Ok,
    /// Unreachable, timed out, or answered with an HTTP error.
    Unavailable,
    /// Fetched but unusable: over its size cap, malformed, badly signed, stale.
    Invalid,
}

impl RevocationFetch {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            RevocationFetch::Ok => "ok",
            RevocationFetch::Unavailable => "unavailable",
            RevocationFetch::Invalid => "invalid",
        }
    }
}

/// What a `/v1/claims` claim came to, as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The owner holds the value now (a first claim or a renewal).
    Granted,
    /// Another owner holds it.
    Refused,
}

impl ClaimOutcome {
    /// Every value, for initialising the labelled series at zero.
    pub(super) const ALL: [ClaimOutcome; 2] = [ClaimOutcome::Granted, ClaimOutcome::Refused];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            ClaimOutcome::Granted => "granted",
            ClaimOutcome::Refused => "refused",
        }
    }
}
