//! Prometheus metrics, exposed in the text format on the ops listener.
//!
//! Every label value comes from a closed enum in this file, never from a request: no image
//! references, no error strings, so cardinality is fixed no matter what clients send.

use crate::verdict::SignatureFormat;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

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
    const ALL: [Endpoint; 4] = [
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
    const ALL: [RequestOutcome; 3] = [
        RequestOutcome::Ok,
        RequestOutcome::SystemError,
        RequestOutcome::Rejected,
    ];

    fn as_str(self) -> &'static str {
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
    const ALL: [KeyOutcome; 4] = [
        KeyOutcome::Verdict,
        KeyOutcome::Error,
        KeyOutcome::Transient,
        KeyOutcome::Deadline,
    ];

    fn as_str(self) -> &'static str {
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
    const ALL: [HandshakeFailure; 6] = [
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
    const ALL: [ShedPhase; 3] = [ShedPhase::Handshake, ShedPhase::NoRequest, ShedPhase::Idle];

    fn as_str(self) -> &'static str {
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
    const ALL: [CacheKind; 5] = [
        CacheKind::Verdict,
        CacheKind::Tag,
        CacheKind::Key,
        CacheKind::Shared,
        CacheKind::SharedKey,
    ];

    fn as_str(self) -> &'static str {
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
    const ALL: [VerificationOutcome; 4] = [
        VerificationOutcome::Verified,
        VerificationOutcome::Failed,
        VerificationOutcome::Error,
        VerificationOutcome::Transient,
    ];

    fn as_str(self) -> &'static str {
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
    const ALL: [SkipReason; 5] = [
        SkipReason::Unreadable,
        SkipReason::Missing,
        SkipReason::DigestMismatch,
        SkipReason::Malformed,
        SkipReason::OverLimit,
    ];

    fn as_str(self) -> &'static str {
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
    const ALL: [IgnoredAttestation; 2] = [
        IgnoredAttestation::Unverified,
        IgnoredAttestation::Unreadable,
    ];

    fn as_str(self) -> &'static str {
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
    fn as_str(self) -> &'static str {
        match self {
            RevocationMethod::Ocsp => "ocsp",
            RevocationMethod::Crl => "crl",
        }
    }
}

/// Which certificate an expiry timestamp is about, as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Certificate {
    /// The provider's serving certificate (its leaf).
    Serving,
    /// The CA that signs Gatekeeper's client certificates (the earliest expiry in the
    /// bundle).
    ClientCa,
}

impl Certificate {
    fn as_str(self) -> &'static str {
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
    fn as_str(self) -> &'static str {
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
    const ALL: [ClaimOutcome; 2] = [ClaimOutcome::Granted, ClaimOutcome::Refused];

    fn as_str(self) -> &'static str {
        match self {
            ClaimOutcome::Granted => "granted",
            ClaimOutcome::Refused => "refused",
        }
    }
}

/// Reads the number of entries of the in-process caches when `/metrics` is scraped.
pub(crate) type CacheSizes = Box<dyn Fn() -> Vec<(CacheKind, u64)> + Send + Sync>;

/// Status classes of `vouch_registry_requests_total`: HTTP classes, or `error` when no
/// answer came (connection, TLS, timeout).
const REGISTRY_STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];

/// The signature formats, as `vouch_signature_candidates_skipped_total` labels them.
const SIGNATURE_FORMATS: [SignatureFormat; 3] = [
    SignatureFormat::Cosign,
    SignatureFormat::Notation,
    SignatureFormat::Sigstore,
];

/// Buckets of the request, registry request and verification histograms, in seconds: from
/// a warm connection's round trip to past the default deadline (2.5 s).
/// Finer near the default deadlines (900 ms, 2.5 s), where the alert on latency close to
/// the deadline interpolates.
const LATENCY_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0,
];

/// All metric families of the process.
pub struct Metrics {
    revocation_fetches: IntCounterVec,
    revocation_cache: IntCounterVec,
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGaugeVec,
    keys: IntCounterVec,
    handshake_failures: IntCounterVec,
    tls_reloads: IntCounterVec,
    connections_open: IntGauge,
    connections_shed: IntCounterVec,
    cache_hits: IntCounterVec,
    cache_misses: IntCounterVec,
    cache_coalesced: IntCounterVec,
    verifications: IntCounterVec,
    signatures_skipped: IntCounterVec,
    attestations_ignored: IntCounterVec,
    registry_requests: IntCounterVec,
    redis_errors: prometheus::IntCounter,
    config_reloads: IntCounterVec,
    config_last_reload_ok: IntGauge,
    config_last_reload_time: prometheus::Gauge,
    runtime_tasks: IntGauge,
    tls_last_reload_ok: IntGauge,
    certificate_expiry: prometheus::GaugeVec,
    registry_duration: HistogramVec,
    verification_duration: HistogramVec,
    claims: IntCounterVec,
    cache_entries: IntGaugeVec,
    cache_sizes: std::sync::Mutex<Option<CacheSizes>>,
    ready: IntGauge,
    deadline: prometheus::GaugeVec,
}

impl Metrics {
    /// Every family registered, at zero.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        // The names and label sets below are constants: registration cannot fail on them
        // except by a programming error, which the unit test catches.
        let requests = IntCounterVec::new(
            Opts::new(
                "vouch_requests_total",
                "Provider requests by endpoint and outcome.",
            ),
            &["endpoint", "outcome"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "vouch_request_duration_seconds",
                "Time from request arrival to response, by endpoint.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["endpoint"],
        )
        .expect("valid metric");
        let in_flight = IntGaugeVec::new(
            Opts::new(
                "vouch_requests_in_flight",
                "Provider requests being answered now.",
            ),
            &["endpoint"],
        )
        .expect("valid metric");
        let keys = IntCounterVec::new(
            Opts::new(
                "vouch_keys_total",
                "Keys answered, by endpoint and outcome class.",
            ),
            &["endpoint", "outcome"],
        )
        .expect("valid metric");
        let handshake_failures = IntCounterVec::new(
            Opts::new(
                "vouch_tls_handshake_failures_total",
                "TLS handshakes on the provider port that failed, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let tls_reloads = IntCounterVec::new(
            Opts::new(
                "vouch_tls_reloads_total",
                "Loads of certificate, key and client CA, by result.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let connections_open =
            IntGauge::new("vouch_connections_open", "Provider connections open now.")
                .expect("valid metric");
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let connections_shed = counter(
            "vouch_connections_shed_total",
            "Connections closed at the connection cap to make room for a new client, by what \
             they were doing.",
            &["phase"],
        );
        let cache_hits = counter(
            "vouch_cache_hits_total",
            "Cache lookups answered from the cache.",
            &["cache"],
        );
        let cache_misses = counter(
            "vouch_cache_misses_total",
            "Cache lookups that computed the value.",
            &["cache"],
        );
        let cache_coalesced = counter(
            "vouch_cache_coalesced_total",
            "Cache lookups that waited for another caller's computation of the same key.",
            &["cache"],
        );
        let verifications = counter(
            "vouch_verifications_total",
            "Signature verifications run (one per digest and trust config), by outcome.",
            &["outcome"],
        );
        let signatures_skipped = counter(
            "vouch_signature_candidates_skipped_total",
            "Signature candidates not counted as signatures because the registry served them \
             unusable (or beyond limits.maxSignatures), by format and reason.",
            &["format", "reason"],
        );
        let attestations_ignored = counter(
            "vouch_attestations_ignored_total",
            "Attestations found for an image but not evaluated: unverified (no verifier of the \
             policy vouches for them, or another subject) or unreadable, by reason.",
            &["reason"],
        );
        let registry_requests = counter(
            "vouch_registry_requests_total",
            "HTTP requests to registries, by configured registry host and status class.",
            &["registry", "status"],
        );
        let revocation_fetches = counter(
            "vouch_revocation_fetches_total",
            "OCSP and CRL fetches, by method and outcome (foreground and background refreshes).",
            &["method", "outcome"],
        );
        let revocation_cache = counter(
            "vouch_revocation_cache_total",
            "Revocation lookups answered from a cached OCSP answer or CRL (hit) or needing a \
             fetch (miss), by method.",
            &["method", "result"],
        );
        for m in [RevocationMethod::Ocsp, RevocationMethod::Crl] {
            for o in [
                RevocationFetch::Ok,
                RevocationFetch::Unavailable,
                RevocationFetch::Invalid,
            ] {
                revocation_fetches.with_label_values(&[m.as_str(), o.as_str()]);
            }
            for r in ["hit", "miss"] {
                revocation_cache.with_label_values(&[m.as_str(), r]);
            }
        }
        let config_reloads = counter(
            "vouch_config_reloads_total",
            "Config reloads, by result.",
            &["result"],
        );
        let config_last_reload_ok = IntGauge::new(
            "vouch_config_last_reload_successful",
            "1 when the last load of the config and the files it names succeeded, 0 when it \
             failed and the previous config keeps serving.",
        )
        .expect("valid metric");
        let config_last_reload_time = prometheus::Gauge::new(
            "vouch_config_last_reload_success_timestamp_seconds",
            "When the running config (and the files it names) was loaded, in Unix seconds.",
        )
        .expect("valid metric");
        let redis_errors = prometheus::IntCounter::new(
            "vouch_redis_errors_total",
            "Failed or timed-out calls to the shared Redis tier.",
        )
        .expect("valid metric");
        let runtime_tasks = IntGauge::new(
            "vouch_runtime_alive_tasks",
            "Tasks alive in the async runtime (connections, requests, background verifications); \
             back to its idle level when the load stops, or tasks are leaking.",
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "vouch_build_info",
                "Always 1; the version of the running binary is its label.",
            ),
            &["version"],
        )
        .expect("valid metric");
        let tls_last_reload_ok = IntGauge::new(
            "vouch_tls_last_reload_successful",
            "1 when the last change of certificate, key or client CA files built a serving \
             config, 0 when it did not (the previous certificate keeps serving) or none has \
             loaded yet.",
        )
        .expect("valid metric");
        let certificate_expiry = prometheus::GaugeVec::new(
            Opts::new(
                "vouch_tls_certificate_expiry_timestamp_seconds",
                "When the serving certificate (certificate=\"serving\", its leaf) and the client \
                 CA (certificate=\"client_ca\", the earliest in the bundle) in use expire, in \
                 Unix seconds; absent until loaded, and client_ca without client \
                 authentication.",
            ),
            &["certificate"],
        )
        .expect("valid metric");
        let registry_duration = HistogramVec::new(
            HistogramOpts::new(
                "vouch_registry_request_duration_seconds",
                "Time from sending an HTTP request to a registry to its response headers (or \
                 its failure), by configured registry host.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["registry"],
        )
        .expect("valid metric");
        let verification_duration = HistogramVec::new(
            HistogramOpts::new(
                "vouch_verification_duration_seconds",
                "Time one verification (the verifiers run on one digest, signature discovery \
                 included) took, by outcome; cache answers are not verifications.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["outcome"],
        )
        .expect("valid metric");
        let claims = counter(
            "vouch_claims_total",
            "Claims (mode claim) decided by the claims store: granted (first claim or \
             renewal) or refused (another owner holds the value).",
            &["outcome"],
        );
        let cache_entries = IntGaugeVec::new(
            Opts::new(
                "vouch_cache_entries",
                "Entries in the in-process caches (verdict, tag, key) when scraped; moka's \
                 count, which may lag recent inserts and expiries by a moment.",
            ),
            &["cache"],
        )
        .expect("valid metric");
        let ready = IntGauge::new(
            "vouch_ready",
            "1 when /readyz answers 200 (config, trust material and a serving certificate \
             loaded), 0 otherwise; read at each scrape.",
        )
        .expect("valid metric");
        let deadline = prometheus::GaugeVec::new(
            Opts::new(
                "vouch_deadline_seconds",
                "The configured answer deadline of each provider endpoint (deadline, \
                 mutateDeadline): what request latency is compared with.",
            ),
            &["endpoint"],
        )
        .expect("valid metric");
        // Open file descriptors, resident memory, threads and CPU of this process, from
        // /proc: with the task gauge, what a soak or fault campaign watches for leaks.
        let process = prometheus::process_collector::ProcessCollector::for_self();
        for c in [
            Box::new(process) as Box<dyn prometheus::core::Collector>,
            Box::new(runtime_tasks.clone()),
            Box::new(connections_shed.clone()),
            Box::new(cache_hits.clone()),
            Box::new(cache_misses.clone()),
            Box::new(cache_coalesced.clone()),
            Box::new(verifications.clone()),
            Box::new(signatures_skipped.clone()),
            Box::new(attestations_ignored.clone()),
            Box::new(registry_requests.clone()),
            Box::new(revocation_fetches.clone()),
            Box::new(revocation_cache.clone()),
            Box::new(redis_errors.clone()),
            Box::new(config_reloads.clone()),
            Box::new(config_last_reload_ok.clone()),
            Box::new(config_last_reload_time.clone()),
            Box::new(requests.clone()),
            Box::new(duration.clone()),
            Box::new(in_flight.clone()),
            Box::new(keys.clone()),
            Box::new(handshake_failures.clone()),
            Box::new(tls_reloads.clone()),
            Box::new(connections_open.clone()),
            Box::new(build_info.clone()),
            Box::new(tls_last_reload_ok.clone()),
            Box::new(certificate_expiry.clone()),
            Box::new(registry_duration.clone()),
            Box::new(verification_duration.clone()),
            Box::new(claims.clone()),
            Box::new(cache_entries.clone()),
            Box::new(ready.clone()),
            Box::new(deadline.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let metrics = Metrics {
            revocation_fetches,
            revocation_cache,
            registry,
            requests,
            duration,
            in_flight,
            keys,
            handshake_failures,
            tls_reloads,
            connections_open,
            connections_shed,
            cache_hits,
            cache_misses,
            cache_coalesced,
            verifications,
            signatures_skipped,
            attestations_ignored,
            registry_requests,
            redis_errors,
            config_reloads,
            config_last_reload_ok,
            config_last_reload_time,
            runtime_tasks,
            tls_last_reload_ok,
            certificate_expiry,
            registry_duration,
            verification_duration,
            claims,
            cache_entries,
            cache_sizes: std::sync::Mutex::new(None),
            ready,
            deadline,
        };
        metrics.initialise();
        metrics
    }

    /// Creates every series whose label values are known in advance (all of them but the
    /// registry hosts, see [`Metrics::registry_configured`]) at zero, so a scrape of a fresh
    /// process lists them: `rate()` and `increase()` then see the first increment, and
    /// dashboards and alerts have series to show before anything happened.
    fn initialise(&self) {
        for endpoint in Endpoint::ALL {
            let e = endpoint.as_str();
            for outcome in RequestOutcome::ALL {
                self.requests.with_label_values(&[e, outcome.as_str()]);
            }
            self.duration.with_label_values(&[e]);
            self.in_flight.with_label_values(&[e]);
            if endpoint != Endpoint::Other {
                for outcome in KeyOutcome::ALL {
                    self.keys.with_label_values(&[e, outcome.as_str()]);
                }
            }
        }
        for why in HandshakeFailure::ALL {
            self.handshake_failures.with_label_values(&[why.as_str()]);
        }
        for result in ["success", "failure"] {
            self.tls_reloads.with_label_values(&[result]);
            self.config_reloads.with_label_values(&[result]);
        }
        for phase in ShedPhase::ALL {
            self.connections_shed.with_label_values(&[phase.as_str()]);
        }
        for cache in CacheKind::ALL {
            let c = cache.as_str();
            self.cache_hits.with_label_values(&[c]);
            self.cache_misses.with_label_values(&[c]);
            self.cache_coalesced.with_label_values(&[c]);
        }
        for cache in CacheKind::IN_PROCESS {
            self.cache_entries.with_label_values(&[cache.as_str()]);
        }
        for outcome in VerificationOutcome::ALL {
            self.verifications.with_label_values(&[outcome.as_str()]);
            self.verification_duration
                .with_label_values(&[outcome.as_str()]);
        }
        for format in SIGNATURE_FORMATS {
            for reason in SkipReason::ALL {
                self.signatures_skipped
                    .with_label_values(&[format.as_str(), reason.as_str()]);
            }
        }
        for reason in IgnoredAttestation::ALL {
            self.attestations_ignored
                .with_label_values(&[reason.as_str()]);
        }
        for outcome in ClaimOutcome::ALL {
            self.claims.with_label_values(&[outcome.as_str()]);
        }
    }

    /// A registry host vouch has a client for: its request series start at zero. Hosts come
    /// from the config only (a policy scope's host), so the label set stays bounded.
    pub fn registry_configured(&self, registry: &str) {
        for class in REGISTRY_STATUS_CLASSES {
            self.registry_requests.with_label_values(&[registry, class]);
        }
        self.registry_duration.with_label_values(&[registry]);
    }

    /// How `/metrics` learns the caches' sizes (sampled at each scrape). The closure should
    /// hold the caches weakly: they hold these metrics.
    pub(crate) fn sample_cache_sizes(&self, sizes: CacheSizes) {
        if let Ok(mut s) = self.cache_sizes.lock() {
            *s = Some(sizes);
        }
    }

    /// Whether the process is ready, as `/readyz` would answer now.
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// The answer deadline of a provider endpoint (fixed for the life of the process).
    pub fn set_deadline(&self, endpoint: Endpoint, deadline: std::time::Duration) {
        self.deadline
            .with_label_values(&[endpoint.as_str()])
            .set(deadline.as_secs_f64());
    }

    /// A claim decided by the store (`check`s are not counted: they grant nothing).
    pub fn claim(&self, outcome: ClaimOutcome) {
        self.claims.with_label_values(&[outcome.as_str()]).inc();
    }

    /// The certificates a TLS load put into service: their expiry timestamps (Unix
    /// seconds). `client_ca` is `None` without client authentication, and its series is
    /// then removed.
    pub fn certificates_loaded(&self, serving: Option<f64>, client_ca: Option<f64>) {
        for (which, at) in [
            (Certificate::Serving, serving),
            (Certificate::ClientCa, client_ca),
        ] {
            match at {
                Some(t) => self
                    .certificate_expiry
                    .with_label_values(&[which.as_str()])
                    .set(t),
                None => {
                    // Absent is the truth; a stale or zero timestamp would mislead alerts.
                    let _ = self
                        .certificate_expiry
                        .remove_label_values(&[which.as_str()]);
                }
            }
        }
    }

    /// A lookup or fill of one of the caches.
    pub fn cache_event(&self, cache: CacheKind, event: CacheEvent) {
        let family = match event {
            CacheEvent::Hit => &self.cache_hits,
            CacheEvent::Coalesced => &self.cache_coalesced,
            CacheEvent::Miss => &self.cache_misses,
        };
        family.with_label_values(&[cache.as_str()]).inc();
    }

    /// One finished verification, by outcome, and how long it took.
    pub fn verification(&self, outcome: VerificationOutcome, seconds: f64) {
        self.verifications
            .with_label_values(&[outcome.as_str()])
            .inc();
        self.verification_duration
            .with_label_values(&[outcome.as_str()])
            .observe(seconds);
    }

    /// `n` attestations not evaluated, and why.
    pub fn attestations_ignored(&self, reason: IgnoredAttestation, n: u64) {
        if n > 0 {
            self.attestations_ignored
                .with_label_values(&[reason.as_str()])
                .inc_by(n);
        }
    }

    /// `format` is the name of a signature format (`cosign`, `notation`).
    pub fn signatures_skipped(&self, format: &'static str, reason: SkipReason, n: u64) {
        if n > 0 {
            self.signatures_skipped
                .with_label_values(&[format, reason.as_str()])
                .inc_by(n);
        }
    }

    /// `registry` is a configured host (only those get clients), so the label set is bounded;
    /// `seconds` is the time to the response headers or the failure.
    pub fn registry_request(&self, registry: &str, status: Option<u16>, seconds: f64) {
        let class = match status {
            Some(s @ 100..=599) => REGISTRY_STATUS_CLASSES[usize::from(s / 100) - 1],
            _ => "error",
        };
        self.registry_requests
            .with_label_values(&[registry, class])
            .inc();
        self.registry_duration
            .with_label_values(&[registry])
            .observe(seconds);
    }

    /// One OCSP or CRL fetch, by how it ended.
    pub fn revocation_fetch(&self, method: RevocationMethod, outcome: RevocationFetch) {
        self.revocation_fetches
            .with_label_values(&[method.as_str(), outcome.as_str()])
            .inc();
    }

    /// A revocation lookup: answered from the cache, or not.
    pub fn revocation_lookup(&self, method: RevocationMethod, hit: bool) {
        self.revocation_cache
            .with_label_values(&[method.as_str(), if hit { "hit" } else { "miss" }])
            .inc();
    }

    /// A failed Redis call (counted; the caller decides what the failure means).
    pub fn redis_error(&self) {
        self.redis_errors.inc();
    }

    /// A reload attempt: counted, and the last-reload gauges set.
    pub fn config_reloaded(&self, ok: bool) {
        self.config_reloads
            .with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
        if ok {
            self.config_loaded();
        } else {
            self.config_last_reload_ok.set(0);
        }
    }

    /// The config serving now was loaded successfully (at start-up or by a reload).
    pub fn config_loaded(&self) {
        self.config_last_reload_ok.set(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        self.config_last_reload_time.set(now);
    }

    /// A finished provider request: counted by outcome, its duration observed.
    pub fn request_done(&self, endpoint: Endpoint, outcome: RequestOutcome, seconds: f64) {
        self.requests
            .with_label_values(&[endpoint.as_str(), outcome.as_str()])
            .inc();
        self.duration
            .with_label_values(&[endpoint.as_str()])
            .observe(seconds);
    }

    /// `n` keys of one request, by outcome.
    pub fn key_done(&self, endpoint: Endpoint, outcome: KeyOutcome, n: u64) {
        if n > 0 {
            self.keys
                .with_label_values(&[endpoint.as_str(), outcome.as_str()])
                .inc_by(n);
        }
    }

    /// Counts a request as in flight until the guard drops.
    pub fn in_flight(&self, endpoint: Endpoint) -> GaugeGuard {
        let g = self.in_flight.with_label_values(&[endpoint.as_str()]);
        g.inc();
        GaugeGuard(g)
    }

    /// Counts an open connection until the guard drops.
    pub fn connection_open(&self) -> GaugeGuard {
        self.connections_open.inc();
        GaugeGuard(self.connections_open.clone())
    }

    /// A connection closed to make room at `server.maxConnections`, by the phase it was in.
    pub fn connection_shed(&self, phase: ShedPhase) {
        self.connections_shed
            .with_label_values(&[phase.as_str()])
            .inc();
    }

    /// A failed TLS handshake, by reason.
    pub fn handshake_failed(&self, why: HandshakeFailure) {
        self.handshake_failures
            .with_label_values(&[why.as_str()])
            .inc();
    }

    /// A TLS reload attempt (`ok` when a new config was built and swapped in): counted, and
    /// the last-reload gauge set.
    pub fn tls_reloaded(&self, ok: bool) {
        self.tls_reloads
            .with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
        self.tls_last_reload_ok.set(i64::from(ok));
    }

    /// The text exposition format (`text/plain; version=0.0.4`).
    pub fn encode(&self) -> String {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            self.runtime_tasks
                .set(i64::try_from(rt.metrics().num_alive_tasks()).unwrap_or(i64::MAX));
        }
        if let Ok(sizes) = self.cache_sizes.lock()
            && let Some(sizes) = sizes.as_ref()
        {
            for (cache, n) in sizes() {
                self.cache_entries
                    .with_label_values(&[cache.as_str()])
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on invalid metric families, which we never build.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Decrements a gauge when dropped, so early returns and panics cannot leak a count.
pub struct GaugeGuard(IntGauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_register_and_encode() {
        let m = Metrics::new();
        m.request_done(Endpoint::Verify, RequestOutcome::Ok, 0.002);
        m.key_done(Endpoint::Verify, KeyOutcome::Verdict, 3);
        m.handshake_failed(HandshakeFailure::NoClientCert);
        {
            let _g = m.in_flight(Endpoint::Verify);
            assert!(
                m.encode()
                    .contains("vouch_requests_in_flight{endpoint=\"verify\"} 1")
            );
        }
        let text = m.encode();
        assert!(
            text.contains("vouch_requests_in_flight{endpoint=\"verify\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("vouch_requests_total{endpoint=\"verify\",outcome=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("vouch_keys_total{endpoint=\"verify\",outcome=\"verdict\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("vouch_tls_handshake_failures_total{reason=\"no_client_cert\"} 1"),
            "{text}"
        );
        assert!(text.contains("process_open_fds "), "{text}");
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
    }

    #[test]
    fn labelled_series_exist_at_zero_before_their_first_increment() {
        let m = Metrics::new();
        m.registry_configured("registry.example:5000");
        let text = m.encode();
        for line in [
            "vouch_build_info{version=\"".to_string() + env!("CARGO_PKG_VERSION") + "\"} 1",
            "vouch_claims_total{outcome=\"granted\"} 0".into(),
            "vouch_claims_total{outcome=\"refused\"} 0".into(),
            "vouch_requests_total{endpoint=\"verify\",outcome=\"system_error\"} 0".into(),
            "vouch_keys_total{endpoint=\"claims\",outcome=\"deadline\"} 0".into(),
            "vouch_verifications_total{outcome=\"transient\"} 0".into(),
            "vouch_verification_duration_seconds_count{outcome=\"failed\"} 0".into(),
            "vouch_cache_hits_total{cache=\"shared_key\"} 0".into(),
            "vouch_cache_entries{cache=\"tag\"} 0".into(),
            "vouch_config_reloads_total{result=\"failure\"} 0".into(),
            "vouch_tls_handshake_failures_total{reason=\"not_ready\"} 0".into(),
            "vouch_signature_candidates_skipped_total{format=\"sigstore\",reason=\"over_limit\"} 0"
                .into(),
            "vouch_registry_requests_total{registry=\"registry.example:5000\",status=\"error\"} 0"
                .into(),
            "vouch_registry_request_duration_seconds_count{registry=\"registry.example:5000\"} 0"
                .into(),
        ] {
            assert!(text.contains(&line), "{line} missing:\n{text}");
        }
        // No keys on non-provider paths; no expiry until certificates are loaded.
        assert!(
            !text.contains("vouch_keys_total{endpoint=\"other\""),
            "{text}"
        );
        assert!(
            !text.contains("vouch_tls_certificate_expiry_timestamp_seconds{"),
            "{text}"
        );
    }

    #[test]
    fn certificate_expiry_follows_the_loaded_material() {
        let m = Metrics::new();
        m.certificates_loaded(Some(2.0e9), Some(1.9e9));
        let text = m.encode();
        assert!(
            text.contains(
                "vouch_tls_certificate_expiry_timestamp_seconds{certificate=\"client_ca\"} 1900000000"
            ),
            "{text}"
        );
        // Client authentication turned off: the client CA's series goes, not to zero.
        m.certificates_loaded(Some(2.1e9), None);
        let text = m.encode();
        assert!(
            text.contains(
                "vouch_tls_certificate_expiry_timestamp_seconds{certificate=\"serving\"} 2100000000"
            ),
            "{text}"
        );
        assert!(
            !text.contains(
                "vouch_tls_certificate_expiry_timestamp_seconds{certificate=\"client_ca\"}"
            ),
            "{text}"
        );
    }

    #[test]
    fn cache_sizes_are_sampled_at_each_scrape() {
        let m = Metrics::new();
        let n = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(3));
        let seen = n.clone();
        m.sample_cache_sizes(Box::new(move || {
            vec![(
                CacheKind::Verdict,
                seen.load(std::sync::atomic::Ordering::SeqCst),
            )]
        }));
        assert!(
            m.encode()
                .contains("vouch_cache_entries{cache=\"verdict\"} 3")
        );
        n.store(5, std::sync::atomic::Ordering::SeqCst);
        assert!(
            m.encode()
                .contains("vouch_cache_entries{cache=\"verdict\"} 5")
        );
    }

    #[tokio::test]
    async fn runtime_tasks_are_counted() {
        let m = Metrics::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let before = tasks(&m.encode());
        let task = tokio::spawn(async move {
            let _ = rx.await;
        });
        assert_eq!(tasks(&m.encode()), before + 1.0);
        let _ = tx.send(());
        let _ = task.await;
        assert_eq!(tasks(&m.encode()), before);
    }

    fn tasks(text: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix("vouch_runtime_alive_tasks "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN)
    }
}
