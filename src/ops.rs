//! The operations listener (plain HTTP, no client certificate): `/healthz`, `/readyz`,
//! `/metrics`. Kept off the provider port so probes and scrapers need no Gatekeeper
//! certificate, and so a flood on one port cannot starve the other.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::tls::TlsState;

/// What `/readyz` checks: every part must be loaded before vouch takes traffic.
pub struct Readiness {
    /// Config parsed and validated (true once the process got this far).
    pub config: AtomicBool,
    /// Trust material (keys, certificates of the policies) loaded by the engine.
    pub trust: AtomicBool,
    /// The provider listener's certificate.
    pub tls: Arc<TlsState>,
}

impl Readiness {
    pub fn new(tls: Arc<TlsState>) -> Readiness {
        Readiness {
            config: AtomicBool::new(false),
            trust: AtomicBool::new(false),
            tls,
        }
    }

    /// `Ok` when ready, otherwise every missing part.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let mut missing = Vec::new();
        if !self.config.load(Ordering::Acquire) {
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

pub fn router(readiness: Arc<Readiness>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                async move {
                    match readiness.check() {
                        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
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
                async move {
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

pub async fn serve(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "ops listener failed");
    }
}
