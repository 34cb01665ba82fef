//! One long-lived client per configured registry: its connection pool (with the redirect
//! policy that refuses unconfigured hosts and the registry's own CA when given), its
//! credentials and token cache, its connection slots, and the errors it names.

use std::sync::Arc;

use reqwest::StatusCode;
use tokio::sync::Semaphore;

use super::auth::{self, Credentials, TokenCache};
use super::fetch::classify;
use super::{BuildError, ErrorKind, FetchLimits, Health, RegistryError, host_port};
use crate::config::RegistryConfig;
use crate::metrics::Metrics;

/// A long-lived client for one registry: connection pool, token cache, concurrency cap.
pub(crate) struct RegistryClient {
    /// The host as written in image references (`docker.io`, `localhost:5000`).
    pub(super) host: String,
    /// Scheme and API host (`https://registry-1.docker.io`).
    pub(super) base: String,
    pub(super) http: reqwest::Client,
    pub(super) credentials: Option<Credentials>,
    pub(super) tokens: TokenCache,
    pub(super) permits: Semaphore,
    pub(super) limits: FetchLimits,
    /// Whether the referrers API worked, and when that was learned.
    pub(super) referrers_api: std::sync::Mutex<Option<(bool, std::time::Instant)>>,
    pub(super) metrics: Arc<Metrics>,
    /// The back-off after a transient failure.
    pub(super) health: Health,
}

impl RegistryClient {
    /// An error of this registry.
    pub(super) fn error(&self, kind: ErrorKind, detail: impl Into<String>) -> RegistryError {
        RegistryError::new(&self.host, kind, detail)
    }

    pub(crate) fn new(
        rc: &RegistryConfig,
        limits: FetchLimits,
        metrics: Arc<Metrics>,
    ) -> Result<RegistryClient, BuildError> {
        let host = rc.host.to_ascii_lowercase();
        let fail = |why: String| BuildError {
            host: host.clone(),
            why,
        };
        let api_host = if host == "docker.io" {
            "registry-1.docker.io".to_string()
        } else {
            host.clone()
        };
        let scheme = if rc.plain_http { "http" } else { "https" };
        let credentials = if let Some(pw) = &rc.password_file {
            Some(auth::from_password_file(&rc.username, pw).map_err(|e| fail(e.to_string()))?)
        } else if let Some(dc) = &rc.docker_config {
            auth::from_docker_config(&host, dc).map_err(|e| fail(e.to_string()))?
        } else {
            None
        };
        let allowed: Vec<String> = std::iter::once(api_host.clone())
            .chain(rc.redirect_hosts.iter().map(|h| h.to_ascii_lowercase()))
            .collect();
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 5 {
                return attempt.stop();
            }
            let target = host_port(attempt.url());
            if allowed.contains(&target) {
                attempt.follow()
            } else {
                attempt.stop()
            }
        });
        let mut builder = reqwest::Client::builder()
            .redirect(redirect)
            .connect_timeout(limits.request_timeout)
            .timeout(limits.request_timeout)
            .pool_idle_timeout(limits.idle_timeout)
            .user_agent(concat!("vouch/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &rc.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| fail(format!("cannot read {}: {e}", ca.display())))?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in
                crate::tls::parse_certs("registry CA", &pem).map_err(|e| fail(e.to_string()))?
            {
                roots
                    .add(cert)
                    .map_err(|e| fail(format!("registry CA: {e}")))?;
            }
            let tls = rustls::ClientConfig::builder_with_provider(crate::tls::crypto_provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| fail(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            builder = builder.tls_backend_preconfigured(tls);
        }
        let http = builder.build().map_err(|e| fail(e.to_string()))?;
        metrics.registry_configured(&host);
        Ok(RegistryClient {
            host: host.clone(),
            base: format!("{scheme}://{api_host}"),
            http,
            credentials,
            tokens: TokenCache::default(),
            permits: Semaphore::new(rc.max_concurrency.max(1)),
            health: Health::new(limits.backoff),
            limits,
            referrers_api: std::sync::Mutex::new(None),
            metrics,
        })
    }
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// The registry's back-off after transient failures.
    pub(crate) fn health(&self) -> &Health {
        &self.health
    }
    pub(super) fn manifest_url(&self, repo: &str, reference: &str) -> String {
        format!("{}/v2/{repo}/manifests/{reference}", self.base)
    }
    pub(super) fn unexpected(&self, status: StatusCode, url: &str) -> RegistryError {
        if status.is_redirection() {
            self.error(
                ErrorKind::Protocol,
                format!(
                    "registry {} redirected {url} to a host that is not configured",
                    self.host
                ),
            )
        } else {
            self.error(
                ErrorKind::Protocol,
                format!("registry {} answered {status} for {url}", self.host),
            )
        }
    }
    pub(super) fn rejected(&self, status: StatusCode) -> RegistryError {
        let who = match &self.credentials {
            Some(c) => format!("the credentials of user {:?}", c.username),
            None => "anonymous access".to_string(),
        };
        self.error(
            ErrorKind::Auth,
            format!("registry {} rejected {who} ({status})", self.host),
        )
    }
    pub(super) fn out_of_budget(&self, doing: &str) -> RegistryError {
        self.error(
            ErrorKind::Transient,
            format!(
                "registry {} did not answer within the verification budget ({doing})",
                self.host
            ),
        )
    }
    /// Sorts a reqwest error into the outcome classes.
    pub(super) fn classify(&self, e: &reqwest::Error) -> RegistryError {
        classify(e, &self.host, &format!("registry {}", self.host))
    }
}
