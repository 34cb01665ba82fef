//! Start-up and shutdown of a whole vouch process: listeners, TLS, engines, readiness.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::engine::Engine;
use crate::exchange::Exchange;
use crate::metrics::{Endpoint, Metrics};
use crate::ops::{self, Readiness};
use crate::reload::{ConfigReloader, EngineSlot};
use crate::server;
use crate::tls::{self, TlsSource, TlsState};
use crate::verify::VerifyEngine;

use arc_swap::ArcSwap;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::cache::Caches;
use crate::engine::Outcome;

/// Start-up choices that are not part of the config file.
#[derive(Default)]
pub struct Options {
    /// Where the development CA is written when a certificate is generated; defaults to
    /// `vouch-dev-ca.crt` in the system temporary directory.
    pub dev_ca_out: Option<PathBuf>,
    /// Replaces the verification engine (tests inject slow or scripted engines here).
    pub verify_engine: Option<Arc<dyn Engine>>,
    /// The config file to watch: re-read every `configReloadInterval` and on SIGHUP; trust
    /// policies, registries, limits of verification and caches' keys follow it without a
    /// restart.
    pub config_path: Option<PathBuf>,
}

/// A started vouch: its bound addresses and the handle that stops it.
pub struct Running {
    /// The provider listener's address (the port is the kernel's choice when configured as 0).
    pub provider_addr: SocketAddr,
    /// The ops listener's address (`/healthz`, `/readyz`, `/metrics`).
    pub ops_addr: SocketAddr,
    /// The development CA file, when a certificate was generated.
    pub dev_ca: Option<PathBuf>,
    /// The process's metric families, for tests that read them without scraping.
    pub metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Running {
    /// Cancelling this token starts a graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until every listener has stopped (after the token was cancelled).
    pub async fn wait(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Stops accepting, lets in-flight requests finish within the grace period, returns.
    pub async fn stop(&self) {
        self.shutdown.cancel();
        self.wait().await;
    }
}

/// Binds the listeners and starts serving. The ops listener comes up first, so `/readyz`
/// answers (503) while certificates are still missing; vouch does not exit for missing
/// certificate files but waits for them, as a pod waits for its secret.
pub async fn start(config: Config, options: Options) -> anyhow::Result<Running> {
    let metrics = Arc::new(Metrics::new());
    let tls_state = Arc::new(TlsState::default());
    let readiness = Arc::new(Readiness::new(tls_state.clone()));
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();

    let ops_listener = TcpListener::bind(config.ops_listen)
        .await
        .with_context(|| format!("cannot listen on opsListen {}", config.ops_listen))?;
    let ops_addr = ops_listener.local_addr()?;
    tasks.spawn(ops::serve(
        ops_listener,
        ops::router(readiness.clone(), metrics.clone()),
        shutdown.clone(),
    ));

    // One Redis for the verdict tier and the claims store, with one outage policy.
    let redis = crate::redis::Redis::new(config.redis(), metrics.clone());
    let caches = Caches::with_redis(
        &config.cache,
        redis.clone(),
        config.verification_budget.get(),
        metrics.clone(),
    );
    // Sampled at each scrape; held weakly, since the caches hold the metrics.
    let sampled = Arc::downgrade(&caches);
    metrics.sample_cache_sizes(Box::new(move || {
        sampled.upgrade().map(|c| c.sizes()).unwrap_or_default()
    }));
    let mut mutate_engine: Option<Arc<dyn Engine>> = None;
    let verify_engine: Arc<dyn Engine> = match options.verify_engine {
        Some(e) => {
            readiness.config.loaded(None);
            e
        }
        None => {
            let engine = VerifyEngine::new(&config, caches.clone(), metrics.clone())
                .context("cannot load trust material")?;
            readiness.config.loaded(Some(engine.generation()));
            metrics.config_loaded();
            let slot = Arc::new(ArcSwap::from_pointee(engine));
            if let Some(path) = options.config_path.clone() {
                let reloader = ConfigReloader::new(
                    path,
                    config.clone(),
                    slot.clone(),
                    caches.clone(),
                    metrics.clone(),
                    readiness.clone(),
                );
                tasks.spawn(reloader.run(shutdown.clone()));
            } else {
                crate::reload::ignore_hangups(&tasks, shutdown.clone());
            }
            mutate_engine = Some(Arc::new(crate::mutate::MutateEngine(slot.clone())));
            Arc::new(LiveEngine(slot))
        }
    };
    readiness.trust.store(true, Ordering::Release);

    let (source, dev_ca) = tls_source(&config, options.dev_ca_out)?;
    if !source.client_auth() {
        tracing::warn!(
            "client authentication is OFF: no tls.clientCAFile is configured, so any client can call the provider; configure the Gatekeeper CA in production"
        );
    }
    // The first load happens now, so readiness is settled when `start` returns.
    let mut reloader = tls::Reloader::new(source, tls_state.clone(), metrics.clone());
    reloader.tick().await;
    tasks.spawn(reloader.run(config.tls.reload_interval.get(), shutdown.clone()));

    metrics.set_deadline(Endpoint::Verify, config.deadline.get());
    metrics.set_deadline(Endpoint::Claims, config.deadline.get());
    metrics.set_deadline(Endpoint::Mutate, config.mutate_deadline.get());
    let verify = Arc::new(Exchange {
        endpoint: Endpoint::Verify,
        engine: verify_engine,
        deadline: config.deadline.get(),
        idempotent: true,
        limits: config.limits.clone(),
        metrics: metrics.clone(),
    });
    let mut endpoints = vec![("/v1/verify", verify)];
    if let Some(engine) = mutate_engine {
        endpoints.push((
            "/v1/mutate",
            Arc::new(Exchange {
                endpoint: Endpoint::Mutate,
                engine,
                deadline: config.mutate_deadline.get(),
                idempotent: true,
                limits: config.limits.clone(),
                metrics: metrics.clone(),
            }),
        ));
    }
    let store: Arc<dyn crate::claims::ClaimStore> = match (config.claims.store, redis) {
        (crate::config::ClaimStoreKind::Redis, Some(redis)) => {
            Arc::new(crate::claims::RedisStore::new(redis))
        }
        // Validation requires a Redis for `store: redis`.
        _ => Arc::new(crate::claims::MemoryStore::default()),
    };
    endpoints.push((
        "/v1/claims",
        Arc::new(Exchange {
            endpoint: Endpoint::Claims,
            engine: Arc::new(crate::claims::ClaimsEngine {
                store,
                ttl: config.claims.ttl.get(),
                metrics: metrics.clone(),
            }),
            deadline: config.deadline.get(),
            idempotent: false,
            limits: config.limits.clone(),
            metrics: metrics.clone(),
        }),
    ));
    let app = server::router(endpoints, metrics.clone());
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let provider_addr = listener.local_addr()?;
    tasks.spawn(server::serve(
        listener,
        tls_state,
        app,
        config.server.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    tracing::info!(%provider_addr, %ops_addr, "vouch is listening");
    Ok(Running {
        provider_addr,
        ops_addr,
        dev_ca,
        metrics,
        shutdown,
        tasks,
    })
}

/// Configured files, or a development certificate generated now.
fn tls_source(
    config: &Config,
    dev_ca_out: Option<PathBuf>,
) -> anyhow::Result<(TlsSource, Option<PathBuf>)> {
    let client_ca = config.tls.client_ca_file.clone();
    if let (Some(cert), Some(key)) = (&config.tls.cert_file, &config.tls.key_file) {
        return Ok((
            TlsSource::Files {
                cert: cert.clone(),
                key: key.clone(),
                client_ca,
            },
            None,
        ));
    }
    let pki = tls::generate_dev_pki()?;
    let path = dev_ca_out.unwrap_or_else(|| std::env::temp_dir().join("vouch-dev-ca.crt"));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&path, &pki.ca_pem)
        .with_context(|| format!("cannot write the development CA to {}", path.display()))?;
    tracing::warn!(
        ca_file = %path.display(),
        "no tls.certFile configured: serving a development certificate generated at start-up; its CA is written to ca_file"
    );
    Ok((
        TlsSource::Generated {
            cert_pem: pki.cert_pem.into_bytes().into(),
            key_pem: pki.key_pem.into_bytes().into(),
            client_ca,
        },
        Some(path),
    ))
}

/// The verification engine of the current config, from its [`EngineSlot`].
struct LiveEngine(Arc<EngineSlot>);

impl Engine for LiveEngine {
    fn evaluate<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Outcome> {
        let engine = self.0.load_full();
        async move { engine.evaluate(key).await }.boxed()
    }

    fn cached(&self, key: &str) -> Option<Outcome> {
        self.0.load().cached(key)
    }

    fn oversized(&self, key: &str, why: String) -> Outcome {
        self.0.load().oversized(key, why)
    }
}
