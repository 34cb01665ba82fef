//! The operations listener (plain HTTP, no client certificate): `/healthz`, `/readyz`,
//! `/metrics`. Kept off the provider port so probes and scrapers need no Gatekeeper
//! certificate, and so a flood on one port cannot starve the other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::tls::TlsState;

/// The running config as `/readyz` reports it: loaded or not, which trust generation
/// serves since when, and the last reload that failed (the running config stays when one
/// does, so vouch stays ready, but an operator must see that a rotation did not apply).
#[derive(Default)]
pub(crate) struct ConfigState {
    inner: Mutex<Option<ConfigReport>>,
}

struct ConfigReport {
    /// `None` when the engine was injected rather than built from the config.
    generation: Option<u64>,
    since: SystemTime,
    failure: Option<(SystemTime, String)>,
}

impl ConfigState {
    /// A config (and its trust material) now serves.
    pub(crate) fn loaded(&self, generation: Option<u64>) {
        if let Ok(mut g) = self.inner.lock() {
            *g = Some(ConfigReport {
                generation,
                since: SystemTime::now(),
                failure: None,
            });
        }
    }

    /// A reload failed; what runs keeps running.
    pub(crate) fn reload_failed(&self, why: String) {
        if let Ok(mut g) = self.inner.lock()
            && let Some(report) = g.as_mut()
        {
            report.failure = Some((SystemTime::now(), why));
        }
    }

    pub(crate) fn is_loaded(&self) -> bool {
        self.inner.lock().is_ok_and(|g| g.is_some())
    }

    /// One line for `/readyz`, when loaded.
    fn describe(&self) -> Option<String> {
        let g = self.inner.lock().ok()?;
        let r = g.as_ref()?;
        let at = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
        let generation = r
            .generation
            .map(|g| format!(" (trust generation {g:016x})"))
            .unwrap_or_default();
        let mut line = format!("config: loaded{generation} at {}", at(r.since));
        if let Some((when, why)) = &r.failure {
            line.push_str(&format!(
                "; last reload failed at {}: {why}; the loaded config keeps serving",
                at(*when)
            ));
        }
        Some(line)
    }
}

/// What `/readyz` checks: every part must be loaded before vouch takes traffic.
pub(crate) struct Readiness {
    /// The config: parsed, validated, and its state since.
    pub config: ConfigState,
    /// Trust material (keys, certificates of the policies) loaded by the engine.
    pub trust: AtomicBool,
    /// The provider listener's certificate.
    pub tls: Arc<TlsState>,
}

impl Readiness {
    pub(crate) fn new(tls: Arc<TlsState>) -> Readiness {
        Readiness {
            config: ConfigState::default(),
            trust: AtomicBool::new(false),
            tls,
        }
    }

    /// `Ok` when ready, otherwise every missing part.
    pub(crate) fn check(&self) -> Result<(), Vec<String>> {
        let mut missing = Vec::new();
        if !self.config.is_loaded() {
            missing.push("config: not loaded".to_string());
        }
        if !self.trust.load(Ordering::Acquire) {
            missing.push("trust material: not loaded".to_string());
        }
        if let Err(why) = self.tls.status() {
            missing.push(format!("tls: {why}"));
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing)
        }
    }
}

pub(crate) fn router(readiness: Arc<Readiness>, metrics: Arc<Metrics>) -> Router {
    let scraped = readiness.clone();
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                async move {
                    match readiness.check() {
                        Ok(()) => {
                            let detail = readiness.config.describe().unwrap_or_default();
                            (StatusCode::OK, format!("ready\n{detail}\n"))
                        }
                        Err(missing) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready:\n{}\n", missing.join("\n")),
                        ),
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                let readiness = scraped.clone();
                async move {
                    // What /readyz would answer now, for alerts on a replica that stays
                    // unready (its pod is then out of the Service, but still scraped).
                    metrics.set_ready(readiness.check().is_ok());
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        metrics.encode(),
                    )
                        .into_response()
                }
            }),
        )
}

pub(crate) async fn serve(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "ops listener failed");
    }
}
