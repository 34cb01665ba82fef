//! Every metric family, registered once with its help text and, where its label values
//! are known in advance, created at zero: the construction half of [`Metrics`], apart from
//! the recording methods.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use super::*;

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
                    .with_label_values(&[format, reason.as_str()]);
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
}
