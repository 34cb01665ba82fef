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

pub mod auth;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest::{SHA256, digest};
use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, RETRY_AFTER, WWW_AUTHENTICATE};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use self::auth::{Challenge, Credentials, TokenCache, TokenResponse};
use crate::config::{Config, RegistryConfig};
use crate::metrics::Metrics;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Every manifest type vouch accepts, for `Accept`.
pub const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Why a registry operation failed, sorted by what the caller should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Unreachable, 5xx, 429 or timeout after the retry budget: worth retrying soon.
    #[error("{0}")]
    Transient(String),
    /// Credentials missing or rejected (401/403).
    #[error("{0}")]
    Auth(String),
    /// The registry's TLS certificate is not trusted.
    #[error("{0}")]
    Tls(String),
    /// The registry answered something that is not the distribution protocol (an
    /// unexpected status, a redirect to an unconfigured host, a broken token service).
    #[error("{0}")]
    Protocol(String),
    /// The registry served content vouch will not use: a manifest, blob or referrers list
    /// over its size limit, or not the document expected. Anyone who can push to the
    /// repository can cause this, so it is never an error that fail-open would admit: a
    /// signature candidate in this state is skipped, an image is a failed verdict.
    #[error("{0}")]
    Content(String),
    /// The manifest or blob does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Content does not hash to the digest it was fetched by (or announced).
    #[error("{0}")]
    DigestMismatch(String),
}

/// Sizes and times that bound every fetch.
#[derive(Debug, Clone)]
pub struct FetchLimits {
    pub max_manifest_bytes: usize,
    pub max_blob_bytes: usize,
    /// One HTTP exchange, connection included.
    pub request_timeout: Duration,
    /// How long an idle pooled connection is kept (`registryIdleTimeout`).
    pub idle_timeout: Duration,
}

/// How long a registry's support (or not) of the referrers API is remembered.
pub const REFERRERS_MEMORY: Duration = Duration::from_secs(600);

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

/// The part of an OCI index vouch reads.
#[derive(serde::Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// The descriptors of an OCI index (a referrers page or a tag-schema index) that may be
/// artifacts of `artifact_type`.
pub fn parse_index(bytes: &[u8], artifact_type: &str) -> Result<Vec<Descriptor>, String> {
    let parsed: Index = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    Ok(filter_artifacts(parsed.manifests, artifact_type))
}

/// Keeps descriptors of `artifact_type`; descriptors that do not say their type are kept
/// too (the manifest itself is checked later).
fn filter_artifacts(all: Vec<Descriptor>, artifact_type: &str) -> Vec<Descriptor> {
    all.into_iter()
        .filter(|d| {
            d.artifact_type
                .as_deref()
                .is_none_or(|t| t == artifact_type)
        })
        .collect()
}

/// The `rel="next"` target of a `Link` header, made absolute against the registry's base
/// URL; only links to the same scheme, host and port are followed.
pub fn next_link(headers: &HeaderMap, base: &str) -> Option<String> {
    let link = headers.get(reqwest::header::LINK)?.to_str().ok()?;
    let part = link
        .split(',')
        .find(|p| p.contains("rel=\"next\"") || p.contains("rel=next"))?;
    let target = part.split_once('<')?.1.split_once('>')?.0.trim();
    let base_url = reqwest::Url::parse(base).ok()?;
    let url = base_url.join(target).ok()?;
    // Same scheme too: an `http://` link from an HTTPS registry would send the next request,
    // credentials included, in clear text.
    (url.scheme() == base_url.scheme() && host_port(&url) == host_port(&base_url))
        .then(|| url.to_string())
}

/// A fetched manifest, hash-checked.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: String,
    pub media_type: String,
    pub bytes: Bytes,
}

/// The clients of every registry a policy names.
pub struct Registries {
    clients: HashMap<String, Arc<RegistryClient>>,
}

/// Why the registry clients could not be built (bad credentials file, CA file…).
#[derive(Debug, thiserror::Error)]
#[error("registry {host}: {why}")]
pub struct BuildError {
    pub host: String,
    pub why: String,
}

impl Registries {
    /// One client per host named by a policy scope, configured by its `registries` entry
    /// (or defaults: HTTPS, anonymous).
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Result<Registries, BuildError> {
        let limits = FetchLimits {
            max_manifest_bytes: config.limits.max_manifest_bytes,
            max_blob_bytes: config.limits.max_signature_bytes,
            request_timeout: config.registry_timeout.get(),
            idle_timeout: config.registry_idle_timeout.get(),
        };
        let mut clients = HashMap::new();
        for policy in &config.policies {
            for scope in &policy.scopes {
                let Ok(scope) = crate::policy::Scope::parse(scope) else {
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
        Ok(Registries { clients })
    }

    /// The client for `host`, if a policy names it.
    pub fn get(&self, host: &str) -> Option<Arc<RegistryClient>> {
        self.clients.get(host).cloned()
    }
}

/// A long-lived client for one registry: connection pool, token cache, concurrency cap.
pub struct RegistryClient {
    /// The host as written in image references (`docker.io`, `localhost:5000`).
    host: String,
    /// Scheme and API host (`https://registry-1.docker.io`).
    base: String,
    http: reqwest::Client,
    credentials: Option<Credentials>,
    tokens: TokenCache,
    permits: Semaphore,
    limits: FetchLimits,
    /// Whether the referrers API worked, and when that was learned.
    referrers_api: std::sync::Mutex<Option<(bool, std::time::Instant)>>,
    metrics: Arc<Metrics>,
}

impl RegistryClient {
    pub fn new(
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
        Ok(RegistryClient {
            host: host.clone(),
            base: format!("{scheme}://{api_host}"),
            http,
            credentials,
            tokens: TokenCache::default(),
            permits: Semaphore::new(rc.max_concurrency.max(1)),
            limits,
            referrers_api: std::sync::Mutex::new(None),
            metrics,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Resolves a tag or digest to the manifest's digest and media type with a `HEAD`
    /// (falling back to `GET` when the registry gives no digest header).
    pub async fn resolve(
        &self,
        repo: &str,
        reference: &str,
        budget: Instant,
    ) -> Result<Descriptor, RegistryError> {
        let resp = self
            .fetch_manifest(reqwest::Method::HEAD, repo, reference, budget)
            .await?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.trim().to_string())
        };
        let media_type = header("content-type").unwrap_or_default();
        let size = header("content-length").and_then(|n| n.parse::<u64>().ok());
        match (
            header("docker-content-digest").filter(|d| is_sha256_digest(d)),
            size,
        ) {
            (Some(d), Some(size)) if !media_type.is_empty() => {
                if is_sha256_digest(reference) && d != reference {
                    return Err(RegistryError::DigestMismatch(format!(
                        "registry {} announced {d} for {repo}@{reference}",
                        self.host
                    )));
                }
                Ok(Descriptor {
                    media_type,
                    digest: d,
                    size,
                    artifact_type: None,
                })
            }
            // No usable headers: fetch the manifest and describe it ourselves.
            _ => {
                let m = self.manifest(repo, reference, budget).await?;
                Ok(Descriptor {
                    media_type: m.media_type,
                    digest: m.digest,
                    size: m.bytes.len() as u64,
                    artifact_type: None,
                })
            }
        }
    }

    /// Descriptors of the artifacts of `artifact_type` that refer to `digest`: through the
    /// OCI 1.1 referrers API (following `Link` pages, filtering client-side when the
    /// registry ignores the filter), or through the `sha256-<hex>` tag schema when the
    /// registry has no referrers API. Which one works is remembered per registry for
    /// [`REFERRERS_MEMORY`].
    pub async fn referrers(
        &self,
        repo: &str,
        digest: &str,
        artifact_type: &str,
        budget: Instant,
    ) -> Result<Vec<Descriptor>, RegistryError> {
        let known = self.referrers_api.lock().ok().and_then(|m| *m);
        let api_supported = match known {
            Some((supported, since)) if since.elapsed() < REFERRERS_MEMORY => Some(supported),
            _ => None,
        };
        if api_supported != Some(false) {
            match self
                .referrers_api_pages(repo, digest, artifact_type, budget)
                .await?
            {
                Some(found) => {
                    self.remember_referrers_api(true);
                    return Ok(found);
                }
                None => self.remember_referrers_api(false),
            }
        }
        let tag = digest.replacen(':', "-", 1);
        let index = match self.manifest(repo, &tag, budget).await {
            Ok(m) => m,
            Err(RegistryError::NotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        parse_index(&index.bytes, artifact_type).map_err(|e| {
            RegistryError::Content(format!(
                "referrers tag {tag} in {}/{repo} is not an OCI index: {e}",
                self.host
            ))
        })
    }

    fn remember_referrers_api(&self, supported: bool) {
        if let Ok(mut m) = self.referrers_api.lock() {
            *m = Some((supported, std::time::Instant::now()));
        }
    }

    /// `None` when the registry has no referrers API (404 on the endpoint).
    async fn referrers_api_pages(
        &self,
        repo: &str,
        digest: &str,
        artifact_type: &str,
        budget: Instant,
    ) -> Result<Option<Vec<Descriptor>>, RegistryError> {
        const MAX_PAGES: usize = 16;
        let mut url = format!(
            "{}/v2/{repo}/referrers/{digest}?artifactType={}",
            self.base,
            artifact_type.replace('+', "%2B")
        );
        let mut found = Vec::new();
        for _ in 0..MAX_PAGES {
            let fetched = self
                .fetch_body(
                    &url,
                    repo,
                    OCI_INDEX,
                    (self.limits.max_manifest_bytes, "referrers index"),
                    budget,
                    String::new,
                )
                .await;
            let (headers, body) = match fetched {
                Ok(page) => page,
                // No referrers API at all; a later page that vanishes is a protocol error.
                Err(RegistryError::NotFound(_)) if found.is_empty() => return Ok(None),
                Err(RegistryError::NotFound(_)) => {
                    return Err(self.unexpected(StatusCode::NOT_FOUND, &url));
                }
                Err(e) => return Err(e),
            };
            let next = next_link(&headers, &self.base);
            found.extend(parse_index(&body, artifact_type).map_err(|e| {
                RegistryError::Content(format!(
                    "referrers of {digest} in {}/{repo} are not an OCI index: {e}",
                    self.host
                ))
            })?);
            match next {
                Some(n) => url = n,
                None => return Ok(Some(found)),
            }
        }
        Err(RegistryError::Content(format!(
            "referrers of {digest} in {}/{repo} span more than {MAX_PAGES} pages",
            self.host
        )))
    }

    /// Fetches a manifest (bounded by `maxManifestBytes`) and checks its hash: against the
    /// digest when fetched by digest, against the announced `Docker-Content-Digest` when
    /// fetched by tag.
    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
        budget: Instant,
    ) -> Result<Manifest, RegistryError> {
        let url = self.manifest_url(repo, reference);
        let (headers, bytes) = self
            .fetch_body(
                &url,
                repo,
                MANIFEST_TYPES,
                (self.limits.max_manifest_bytes, "manifest"),
                budget,
                || format!("manifest {repo}:{reference} not found in {}", self.host),
            )
            .await?;
        let media_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let actual = sha256_digest(&bytes);
        let expected = if is_sha256_digest(reference) {
            Some(reference.to_string())
        } else {
            headers
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .filter(|d| is_sha256_digest(d))
                .map(str::to_string)
        };
        if let Some(e) = expected.filter(|e| *e != actual) {
            return Err(RegistryError::DigestMismatch(format!(
                "manifest {repo}:{reference} from {} hashes to {actual}, not {e}",
                self.host
            )));
        }
        Ok(Manifest {
            digest: actual,
            media_type,
            bytes,
        })
    }

    /// Fetches a blob (bounded by `max`) and checks that it hashes to `digest`.
    pub async fn blob(
        &self,
        repo: &str,
        digest_ref: &str,
        max: usize,
        budget: Instant,
    ) -> Result<Bytes, RegistryError> {
        if !is_sha256_digest(digest_ref) {
            return Err(RegistryError::Content(format!(
                "blob digest {digest_ref:?} is not a sha256 digest"
            )));
        }
        let url = format!("{}/v2/{repo}/blobs/{digest_ref}", self.base);
        let (_, bytes) = self
            .fetch_body(
                &url,
                repo,
                "*/*",
                (max.min(self.limits.max_blob_bytes), "blob"),
                budget,
                || format!("blob {digest_ref} not found in {}/{repo}", self.host),
            )
            .await?;
        let actual = sha256_digest(&bytes);
        if actual != digest_ref {
            return Err(RegistryError::DigestMismatch(format!(
                "blob {digest_ref} from {}/{repo} hashes to {actual}",
                self.host
            )));
        }
        Ok(bytes)
    }

    /// `HEAD` or `GET` of a manifest, accepting every manifest type; 404 → `NotFound`.
    async fn fetch_manifest(
        &self,
        method: reqwest::Method,
        repo: &str,
        reference: &str,
        budget: Instant,
    ) -> Result<reqwest::Response, RegistryError> {
        let url = self.manifest_url(repo, reference);
        self.fetch_ok(method, &url, repo, MANIFEST_TYPES, budget, || {
            format!("manifest {repo}:{reference} not found in {}", self.host)
        })
        .await
    }

    fn manifest_url(&self, repo: &str, reference: &str) -> String {
        format!("{}/v2/{repo}/manifests/{reference}", self.base)
    }

    /// [`Self::send`], then anything but 200 is an error: 404 → `NotFound` with
    /// `not_found`'s text, the rest → `Protocol` (redirects refused included).
    async fn fetch_ok(
        &self,
        method: reqwest::Method,
        url: &str,
        repo: &str,
        accept: &str,
        budget: Instant,
        not_found: impl Fn() -> String,
    ) -> Result<reqwest::Response, RegistryError> {
        let resp = self.send(method, url, repo, accept, budget).await?;
        match resp.status() {
            StatusCode::OK => Ok(resp),
            StatusCode::NOT_FOUND => Err(RegistryError::NotFound(not_found())),
            s => Err(self.unexpected(s, url)),
        }
    }

    /// `GET` of `url` and its body, bounded by `limit` (bytes, and what it is for errors).
    /// A body broken off mid-way (a reset, a close before `Content-Length`) is fetched again
    /// with the same backoff as a failed request, while `budget` allows: registries and
    /// their load balancers drop connections mid-response, and a retry usually succeeds.
    async fn fetch_body(
        &self,
        url: &str,
        repo: &str,
        accept: &str,
        (max, what): (usize, &str),
        budget: Instant,
        not_found: impl Fn() -> String,
    ) -> Result<(HeaderMap, Bytes), RegistryError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let resp = self
                .fetch_ok(reqwest::Method::GET, url, repo, accept, budget, &not_found)
                .await?;
            let headers = resp.headers().clone();
            match self.read_bounded(resp, max, what, budget).await {
                Ok(bytes) => return Ok((headers, bytes)),
                Err(RegistryError::Transient(why)) => {
                    if !self.backoff(attempt, None, budget).await {
                        return Err(RegistryError::Transient(why));
                    }
                    tracing::debug!(registry = %self.host, %why, "body broken off; fetching again");
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn unexpected(&self, status: StatusCode, url: &str) -> RegistryError {
        if status.is_redirection() {
            RegistryError::Protocol(format!(
                "registry {} redirected {url} to a host that is not configured",
                self.host
            ))
        } else {
            RegistryError::Protocol(format!(
                "registry {} answered {status} for {url}",
                self.host
            ))
        }
    }

    async fn read_bounded(
        &self,
        mut resp: reqwest::Response,
        max: usize,
        what: &str,
        budget: Instant,
    ) -> Result<Bytes, RegistryError> {
        if resp.content_length().is_some_and(|n| n > max as u64) {
            return Err(RegistryError::Content(format!(
                "{what} from {} is larger than the {max}-byte limit",
                self.host
            )));
        }
        let mut body = Vec::new();
        let read = async {
            while let Some(chunk) = resp.chunk().await.map_err(|e| self.classify(&e))? {
                if body.len() + chunk.len() > max {
                    return Err(RegistryError::Content(format!(
                        "{what} from {} is larger than the {max}-byte limit",
                        self.host
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(())
        };
        match tokio::time::timeout_at(budget, read).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(RegistryError::Transient(format!(
                    "registry {} did not send the {what} in time",
                    self.host
                )));
            }
        }
        Ok(Bytes::from(body))
    }

    /// One request with authentication, the concurrency cap and retries: 401 once through
    /// the token flow, 429 after `Retry-After`, 5xx and connection failures (the registry's
    /// or its token service's) with jittered backoff — each only while `budget` allows.
    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        repo: &str,
        accept: &str,
        budget: Instant,
    ) -> Result<reqwest::Response, RegistryError> {
        let scope = format!("repository:{repo}:pull");
        let mut authenticated_retry = false;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let mut req = self
                .http
                .request(method.clone(), url)
                .header(ACCEPT, accept);
            if let Some(token) = self.tokens.get(&scope) {
                req = req.header(AUTHORIZATION, format!("Bearer {token}"));
            } else if let Some(c) = &self.credentials {
                req = req.header(AUTHORIZATION, auth::basic_header(c));
            }
            let resp = match self.exchange(req, budget, "waiting for an answer").await? {
                Err(e) => {
                    let err = self.classify(&e);
                    if matches!(err, RegistryError::Transient(_))
                        && self.backoff(attempt, None, budget).await
                    {
                        continue;
                    }
                    return Err(err);
                }
                Ok(r) => r,
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !authenticated_retry {
                match self.authenticate(resp.headers(), &scope, budget).await {
                    Ok(true) => {
                        authenticated_retry = true;
                        continue;
                    }
                    Ok(false) => return Err(self.rejected(status)),
                    // The token service failed the way a registry fails (5xx, 429, a broken
                    // connection): the exchange is tried again, challenge included, within
                    // the same budget and attempts as a registry 5xx.
                    Err(RegistryError::Transient(why)) => {
                        if self.backoff(attempt, None, budget).await {
                            continue;
                        }
                        return Err(RegistryError::Transient(why));
                    }
                    Err(e) => return Err(e),
                }
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(self.rejected(status));
            }
            if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                let retry_after = retry_after(resp.headers());
                if self.backoff(attempt, retry_after, budget).await {
                    continue;
                }
                return Err(RegistryError::Transient(format!(
                    "registry {} answered {status} and the retry budget is spent",
                    self.host
                )));
            }
            return Ok(resp);
        }
    }

    /// Sends `req` holding one of the registry's connection slots (`maxConcurrency`) and
    /// counts it in the request metric. The outer error is the budget running out before a
    /// slot or an answer (`doing` says which wait); the inner result is the exchange's.
    async fn exchange(
        &self,
        req: reqwest::RequestBuilder,
        budget: Instant,
        doing: &str,
    ) -> Result<Result<reqwest::Response, reqwest::Error>, RegistryError> {
        let permit = tokio::time::timeout_at(budget, self.permits.acquire())
            .await
            .map_err(|_| self.out_of_budget("waiting for a connection slot"))?
            .map_err(|_| RegistryError::Transient("registry client closed".into()))?;
        let result = tokio::time::timeout_at(budget, req.send()).await;
        drop(permit);
        let status = match &result {
            Ok(Ok(r)) => Some(r.status().as_u16()),
            _ => None,
        };
        self.metrics.registry_request(&self.host, status);
        result.map_err(|_| self.out_of_budget(doing))
    }

    fn rejected(&self, status: StatusCode) -> RegistryError {
        let who = match &self.credentials {
            Some(c) => format!("the credentials of user {:?}", c.username),
            None => "anonymous access".to_string(),
        };
        RegistryError::Auth(format!("registry {} rejected {who} ({status})", self.host))
    }

    fn out_of_budget(&self, doing: &str) -> RegistryError {
        RegistryError::Transient(format!(
            "registry {} did not answer within the verification budget ({doing})",
            self.host
        ))
    }

    /// Handles a 401 challenge; `true` when a retry with new credentials makes sense.
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        scope: &str,
        budget: Instant,
    ) -> Result<bool, RegistryError> {
        let challenge = headers
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(auth::parse_challenge);
        match challenge {
            // Basic credentials were already sent (if any): a second try cannot help.
            Some(Challenge::Basic) | None => Ok(false),
            Some(Challenge::Bearer {
                realm,
                service,
                scope: challenge_scope,
            }) => {
                let realm_url = reqwest::Url::parse(&realm).map_err(|e| {
                    RegistryError::Protocol(format!(
                        "registry {} sent token realm {realm:?}: {e}",
                        self.host
                    ))
                })?;
                if let Err(why) = realm_allowed(&realm_url, &self.base) {
                    return Err(RegistryError::Protocol(format!(
                        "registry {} sent token realm {realm}: {why}",
                        self.host
                    )));
                }
                let mut token_url = realm_url;
                {
                    let mut q = token_url.query_pairs_mut();
                    q.append_pair(
                        "scope",
                        &challenge_scope.unwrap_or_else(|| scope.to_string()),
                    );
                    if let Some(s) = &service {
                        q.append_pair("service", s);
                    }
                }
                let mut req = self.http.get(token_url);
                if let Some(c) = &self.credentials {
                    req = req.header(AUTHORIZATION, auth::basic_header(c));
                }
                // A token request is a request on the registry's behalf: it takes one of
                // the registry's connection slots and is counted with its requests.
                let resp = self
                    .exchange(req, budget, "fetching a token")
                    .await?
                    .map_err(|e| classify(&e, &format!("token service of {}", self.host)))?;
                let status = resp.status();
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                    return Err(self.rejected(status));
                }
                if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                    return Err(RegistryError::Transient(format!(
                        "token service of {} answered {status}",
                        self.host
                    )));
                }
                if !status.is_success() {
                    return Err(RegistryError::Protocol(format!(
                        "token service of {} answered {status}",
                        self.host
                    )));
                }
                // A token service that answers 200 without a usable token (an error page, a
                // proxy's placeholder, an oversized body) is failing the way a 5xx does:
                // transient, so Gatekeeper does not cache it as a per-key error.
                let body = self
                    .read_bounded(resp, 64 * 1024, "token", budget)
                    .await
                    .map_err(|e| match e {
                        RegistryError::Content(why) => RegistryError::Transient(why),
                        other => other,
                    })?;
                let (token, expires) = serde_json::from_slice::<TokenResponse>(&body)
                    .ok()
                    .and_then(TokenResponse::into_token)
                    .ok_or_else(|| {
                        RegistryError::Transient(format!(
                            "token service of {} sent no token",
                            self.host
                        ))
                    })?;
                self.tokens.put(scope, token, expires);
                Ok(true)
            }
        }
    }

    /// Sleeps before a retry if the budget allows one; `false` when it does not.
    async fn backoff(&self, attempt: u32, retry_after: Option<Duration>, budget: Instant) -> bool {
        const MAX_ATTEMPTS: u32 = 4;
        if attempt >= MAX_ATTEMPTS {
            return false;
        }
        let wait = retry_after.unwrap_or_else(|| {
            let base = Duration::from_millis(50) * 2u32.pow(attempt - 1);
            base + jitter(base)
        });
        // Leave room for the retry itself to be answered.
        if Instant::now() + wait + Duration::from_millis(50) >= budget {
            return false;
        }
        tokio::time::sleep(wait).await;
        true
    }

    /// Sorts a reqwest error into the outcome classes.
    fn classify(&self, e: &reqwest::Error) -> RegistryError {
        classify(e, &format!("registry {}", self.host))
    }
}

/// Sorts a reqwest error into the outcome classes; `who` names the server in the message
/// (`registry H`, or `token service of H`, so an operator looks at the right one).
fn classify(e: &reqwest::Error, who: &str) -> RegistryError {
    if let Some(tls) = find_rustls_error(e) {
        return RegistryError::Tls(format!("TLS with {who} failed: {tls}"));
    }
    if e.is_timeout() {
        return RegistryError::Transient(format!("{who} timed out"));
    }
    if e.is_connect() {
        return RegistryError::Transient(format!("{who} is unreachable"));
    }
    if e.is_body() || e.is_decode() {
        return RegistryError::Transient(format!("{who} broke off the response: {e}"));
    }
    RegistryError::Transient(format!("request to {who} failed: {e}"))
}

fn find_rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        // An io::Error's `source()` skips the error it wraps; step into it instead.
        cur = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

/// `Retry-After` in seconds (the HTTP-date form is treated as "soon": one second).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().to_string();
    match v.parse::<u64>() {
        Ok(s) => Some(Duration::from_secs(s)),
        Err(_) => Some(Duration::from_secs(1)),
    }
}

/// Up to `base` of random extra delay, so replicas do not retry in lockstep.
fn jitter(base: Duration) -> Duration {
    let mut b = [0u8; 2];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        return Duration::ZERO;
    }
    base.mul_f64(f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX))
}

/// `host` or `host:port` of a URL (port only when explicit), lower case.
fn host_port(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

fn host_port_of(base: &str) -> String {
    reqwest::Url::parse(base)
        .map(|u| host_port(&u))
        .unwrap_or_default()
}

/// The token service may live on another host (auth.docker.io, ghcr.io/token), but then
/// only over HTTPS and never at a loopback, link-local or unspecified address: a registry's
/// challenge must not be a way to make vouch call into its own network.
fn realm_allowed(realm: &reqwest::Url, registry_base: &str) -> Result<(), &'static str> {
    use std::net::IpAddr;
    if host_port(realm) == host_port_of(registry_base) {
        return Ok(());
    }
    if realm.scheme() != "https" {
        return Err("plain HTTP on another host");
    }
    let host = realm.host_str().unwrap_or_default();
    if host.eq_ignore_ascii_case("localhost") {
        return Err("loopback host");
    }
    let internal = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| match ip {
            IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.is_unspecified(),
            IpAddr::V6(v6) => {
                v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80
            }
        });
    if internal {
        return Err("loopback, link-local or unspecified address");
    }
    Ok(())
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    sha256_digest_of(digest(&SHA256, bytes).as_ref())
}

/// `sha256:` and the lower-case hex of `raw`, the bytes of a SHA-256 hash.
pub fn sha256_digest_of(raw: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(7 + 2 * raw.len());
    s.push_str("sha256:");
    for b in raw {
        let _ = write!(s, "{b:02x}");
    }
    s
}

pub fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(is_sha256_digest(&sha256_digest(b"x")));
        assert!(!is_sha256_digest("sha256:ABC"));
        assert!(!is_sha256_digest("sha512:00"));
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, "3".parse().expect("header"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().expect("header"),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(1)));
    }

    #[test]
    fn link_headers() {
        let mut h = HeaderMap::new();
        let base = "http://r.io:5000";
        assert_eq!(next_link(&h, base), None);
        h.insert(
            reqwest::header::LINK,
            "</v2/a/referrers/sha256:x?n=1&last=y>; rel=\"next\""
                .parse()
                .expect("header"),
        );
        assert_eq!(
            next_link(&h, base).as_deref(),
            Some("http://r.io:5000/v2/a/referrers/sha256:x?n=1&last=y")
        );
        h.insert(
            reqwest::header::LINK,
            "<http://evil.io/x>; rel=\"next\"".parse().expect("header"),
        );
        assert_eq!(
            next_link(&h, base),
            None,
            "links to other hosts are not followed"
        );
        h.insert(
            reqwest::header::LINK,
            "<http://r.io:5000/v2/a/referrers/sha256:x?last=y>; rel=\"next\""
                .parse()
                .expect("header"),
        );
        assert_eq!(
            next_link(&h, "https://r.io:5000"),
            None,
            "no downgrade from HTTPS to HTTP on the same host"
        );
    }

    #[test]
    fn token_realms() {
        let u = |s: &str| reqwest::Url::parse(s).expect("url");
        let base = "http://127.0.0.1:5000";
        assert!(
            realm_allowed(&u("http://127.0.0.1:5000/token"), base).is_ok(),
            "same host"
        );
        assert!(realm_allowed(&u("https://auth.docker.io/token"), base).is_ok());
        assert!(realm_allowed(&u("http://auth.docker.io/token"), base).is_err());
        assert!(realm_allowed(&u("https://127.0.0.1:9999/token"), base).is_err());
        assert!(realm_allowed(&u("https://169.254.169.254/latest"), base).is_err());
        assert!(realm_allowed(&u("https://[::1]/t"), base).is_err());
        assert!(realm_allowed(&u("https://[fe80::1]/t"), base).is_err());
        assert!(realm_allowed(&u("https://localhost/t"), base).is_err());
    }

    #[test]
    fn jitter_stays_within_base() {
        for _ in 0..100 {
            assert!(jitter(Duration::from_millis(100)) <= Duration::from_millis(100));
        }
    }
}
