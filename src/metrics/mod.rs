//! Prometheus metrics, exposed in the text format on the ops listener.
//!
//! Every label value comes from a closed enum (`labels.rs`), never from a request: no image
//! references, no error strings, so cardinality is fixed no matter what clients send.

mod families;
mod labels;

pub(crate) use labels::*;
use prometheus::{
    Encoder, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Registry, TextEncoder,
};

/// Reads the number of entries of the in-process caches when `/metrics` is scraped.
pub(crate) type CacheSizes = Box<dyn Fn() -> Vec<(CacheKind, u64)> + Send + Sync>;

/// Status classes of `vouch_registry_requests_total`: HTTP classes, or `error` when no
/// answer came (connection, TLS, timeout).
const REGISTRY_STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];

/// The signature formats, as `vouch_signature_candidates_skipped_total` labels them.
/// (`SignatureFormat::as_str` in `verdict`, not imported: `verdict` sits above this module.)
const SIGNATURE_FORMATS: [&str; 3] = ["cosign", "notation", "sigstore"];

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
