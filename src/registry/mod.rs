//! OCI distribution client: one long-lived client per configured registry host.
//!
//! Built on reqwest rather than `oci-client`: admission-time verification needs things
//! `oci-client` does not expose — a byte cap enforced *while* reading a manifest or blob,
//! a hash check of everything fetched against the digest it was fetched by, a redirect
//! policy that refuses unconfigured hosts, retries that honour `Retry-After` only while the
//! verification budget allows, and errors classified into SPEC §1's outcome classes.
//!
//! Only hosts named by a policy scope get a client ([`Registries::get`] returns `None`
//! otherwise), so an image reference cannot make vouch contact an arbitrary host.

pub(crate) mod auth;
mod client;
mod fetch;
mod health;
mod referrers;
mod retry;

pub(crate) use client::RegistryClient;
pub(crate) use health::Health;
pub(crate) use referrers::{next_link, parse_index};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::time::Instant;

use crate::config::{Config, RegistryConfig};
use crate::metrics::Metrics;

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Every manifest type vouch accepts, for `Accept`.
pub(crate) const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// What kind of failure a registry operation met, sorted by who can cause it and what the
/// caller should do about it (SPEC §1's outcome classes, and docs/ARCHITECTURE.md's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Unreachable, 5xx, 429 or timeout after the retry budget (the registry's or its
    /// token service's): worth retrying soon.
    Transient,
    /// Credentials missing or rejected (401/403).
    Auth,
    /// The registry's TLS certificate is not trusted.
    Tls,
    /// The registry answered something that is not the distribution protocol (an
    /// unexpected status, a redirect to an unconfigured host, a token realm refused).
    Protocol,
    /// The registry served content vouch will not use: a manifest, blob or referrers list
    /// over its size limit, or not the document expected. Anyone who can push to the
    /// repository can cause this, so it is never an error that fail-open would admit: a
    /// signature candidate in this state is skipped, an image is a failed verdict.
    Content,
    /// The manifest or blob does not exist.
    NotFound,
    /// Content does not hash to the digest it was fetched by (or announced).
    DigestMismatch,
}

/// Why a registry operation failed: which registry, what kind of failure, and the text —
/// rendered once, where the failure was met, naming the registry (or its token service)
/// and what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct RegistryError {
    pub host: String,
    pub kind: ErrorKind,
    detail: String,
}

impl RegistryError {
    pub fn new(host: &str, kind: ErrorKind, detail: impl Into<String>) -> RegistryError {
        RegistryError {
            host: host.to_string(),
            kind,
            detail: detail.into(),
        }
    }

    /// The same failure, counted as another kind.
    pub fn with_kind(self, kind: ErrorKind) -> RegistryError {
        RegistryError { kind, ..self }
    }

    /// The text, for a report or a per-key error.
    pub fn into_detail(self) -> String {
        self.detail
    }
}

/// Sizes and times that bound every fetch.
#[derive(Debug, Clone)]
pub(crate) struct FetchLimits {
    pub max_manifest_bytes: usize,
    /// The largest blob any caller may ask for (signatures and attestations); each fetch
    /// names its own, smaller or equal, bound.
    pub max_blob_bytes: usize,
    /// One HTTP exchange, connection included.
    pub request_timeout: Duration,
    /// How long an idle pooled connection is kept (`registryIdleTimeout`).
    pub idle_timeout: Duration,
    /// After a transient failure, how long the registry is not contacted
    /// (`cache.registryBackoff`).
    pub backoff: Duration,
}

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub artifact_type: Option<String>,
}

/// A fetched manifest, hash-checked.
#[derive(Debug, Clone)]
pub(crate) struct Manifest {
    pub digest: String,
    pub media_type: String,
    pub bytes: Bytes,
}

/// The clients of every registry a policy names.
pub(crate) struct Registries {
    clients: HashMap<String, Arc<RegistryClient>>,
    /// The clients of namespaced policies with their own credentials, by (policy, host):
    /// separate connection pools and token caches, so a tenant's credentials and tokens
    /// are never used for another tenant's keys.
    tenants: HashMap<(String, String), Arc<RegistryClient>>,
}

/// Why the registry clients could not be built (bad credentials file, CA file…).
#[derive(Debug, thiserror::Error)]
#[error("registry {host}: {why}")]
pub(crate) struct BuildError {
    pub host: String,
    pub why: String,
}

impl Registries {
    /// One client per host named by a policy scope, configured by its `registries` entry
    /// (or defaults: HTTPS, anonymous).
    pub(crate) fn new(config: &Config, metrics: Arc<Metrics>) -> Result<Registries, BuildError> {
        let limits = FetchLimits {
            max_manifest_bytes: config.limits.max_manifest_bytes,
            max_blob_bytes: config
                .limits
                .max_signature_bytes
                .max(config.limits.max_attestation_bytes),
            request_timeout: config.registry_timeout.get(),
            idle_timeout: config.registry_idle_timeout.get(),
            backoff: config.cache.registry_backoff.get(),
        };
        let mut clients = HashMap::new();
        for policy in &config.policies {
            for scope in &policy.scopes {
                let Ok(scope) = scope.scope() else {
                    continue;
                };
                let host = scope.host().to_string();
                if clients.contains_key(&host) {
                    continue;
                }
                let rc = config
                    .registries
                    .iter()
                    .find(|r| r.host.eq_ignore_ascii_case(&host))
                    .cloned()
                    .unwrap_or_else(|| RegistryConfig::defaults_for(&host));
                let client = RegistryClient::new(&rc, limits.clone(), metrics.clone())?;
                clients.insert(host, Arc::new(client));
            }
        }
        let mut tenants = HashMap::new();
        for policy in &config.policies {
            let Some(creds) = &policy.credentials else {
                continue;
            };
            for scope in &policy.scopes {
                let Ok(scope) = scope.scope() else {
                    continue;
                };
                let host = scope.host().to_string();
                let key = (policy.name.clone(), host.clone());
                if tenants.contains_key(&key) {
                    continue;
                }
                let mut rc = config
                    .registries
                    .iter()
                    .find(|r| r.host.eq_ignore_ascii_case(&host))
                    .cloned()
                    .unwrap_or_else(|| RegistryConfig::defaults_for(&host));
                rc.username = creds.username.clone();
                rc.password_file = creds.password_file.clone();
                rc.docker_config = creds.docker_config.clone();
                let client =
                    RegistryClient::new(&rc, limits.clone(), metrics.clone()).map_err(|e| {
                        BuildError {
                            host: e.host,
                            why: format!("policy {:?} credentials: {}", policy.name, e.why),
                        }
                    })?;
                tenants.insert(key, Arc::new(client));
            }
        }
        Ok(Registries { clients, tenants })
    }

    /// The client for `host` when `policy` governs the key: the policy's own (its
    /// credentials) if it has one, else the registry's.
    pub(crate) fn for_policy(&self, host: &str, policy: &str) -> Option<Arc<RegistryClient>> {
        self.tenants
            .get(&(policy.to_string(), host.to_string()))
            .or_else(|| self.clients.get(host))
            .cloned()
    }
}

/// `host` or `host:port` of a URL (port only when explicit), lower case.
pub(crate) fn host_port(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

pub(crate) fn host_port_of(base: &str) -> String {
    reqwest::Url::parse(base)
        .map(|u| host_port(&u))
        .unwrap_or_default()
}

/// What verification needs from a registry — the shape of notation-go's
/// `registry.Repository` — so that signature discovery and settling can be tested against
/// an in-memory double, and the live client is one implementation among others. Resolving
/// the image itself is not part of it: that goes through the tag cache
/// (`VerifyEngine::resolve`), shared with `/v1/mutate`.
pub(crate) trait SignatureSource: Send + Sync {
    /// The registry's host, as image references name it.
    fn host(&self) -> &str;

    /// The artifacts of one of `artifact_types` (or that do not say their type) referring to
    /// `digest`.
    fn referrers<'a>(
        &'a self,
        repo: &'a str,
        digest: &'a str,
        artifact_types: &'a [&'a str],
        budget: Instant,
    ) -> BoxFuture<'a, Result<Vec<Descriptor>, RegistryError>>;

    /// A manifest (or index), bounded by `limits.maxManifestBytes` and hash-checked.
    fn manifest<'a>(
        &'a self,
        repo: &'a str,
        reference: &'a str,
        budget: Instant,
    ) -> BoxFuture<'a, Result<Manifest, RegistryError>>;

    /// A blob of at most `max` bytes, hash-checked against `digest`.
    fn blob<'a>(
        &'a self,
        repo: &'a str,
        digest: &'a str,
        max: usize,
        budget: Instant,
    ) -> BoxFuture<'a, Result<Bytes, RegistryError>>;
}

impl SignatureSource for RegistryClient {
    fn host(&self) -> &str {
        RegistryClient::host(self)
    }

    fn referrers<'a>(
        &'a self,
        repo: &'a str,
        digest: &'a str,
        artifact_types: &'a [&'a str],
        budget: Instant,
    ) -> BoxFuture<'a, Result<Vec<Descriptor>, RegistryError>> {
        Box::pin(RegistryClient::referrers(
            self,
            repo,
            digest,
            artifact_types,
            budget,
        ))
    }

    fn manifest<'a>(
        &'a self,
        repo: &'a str,
        reference: &'a str,
        budget: Instant,
    ) -> BoxFuture<'a, Result<Manifest, RegistryError>> {
        Box::pin(RegistryClient::manifest(self, repo, reference, budget))
    }

    fn blob<'a>(
        &'a self,
        repo: &'a str,
        digest: &'a str,
        max: usize,
        budget: Instant,
    ) -> BoxFuture<'a, Result<Bytes, RegistryError>> {
        Box::pin(RegistryClient::blob(self, repo, digest, max, budget))
    }
}
