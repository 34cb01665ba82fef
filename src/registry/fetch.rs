//! Bounded, hash-checked fetches and the request loop under them.
//!
//! Every manifest and blob is read through a byte cap enforced while reading and checked
//! against the digest it was fetched by (or the one the registry announced); every
//! request takes one of the registry's connection slots (`maxConcurrency`), is counted,
//! authenticates through the token flow on a 401, and is retried (see [`super::retry`])
//! only while the verification budget allows. reqwest's errors are sorted into the
//! outcome classes here.

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap};
use tokio::time::Instant;

use super::retry::retry_after;
use super::{Descriptor, ErrorKind, MANIFEST_TYPES, Manifest, RegistryClient, RegistryError, auth};
use crate::digest::{is_sha256_digest, sha256_digest};

impl RegistryClient {
    /// Resolves a tag or digest to the manifest's digest and media type with a `HEAD`
    /// (falling back to `GET` when the registry gives no digest header).
    pub(crate) async fn resolve(
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
                    return Err(self.error(
                        ErrorKind::DigestMismatch,
                        format!(
                            "registry {} announced {d} for {repo}@{reference}",
                            self.host
                        ),
                    ));
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

    /// Fetches a manifest (bounded by `maxManifestBytes`) and checks its hash: against the
    /// digest when fetched by digest, against the announced `Docker-Content-Digest` when
    /// fetched by tag.
    pub(crate) async fn manifest(
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
            return Err(self.error(
                ErrorKind::DigestMismatch,
                format!(
                    "manifest {repo}:{reference} from {} hashes to {actual}, not {e}",
                    self.host
                ),
            ));
        }
        Ok(Manifest {
            digest: actual,
            media_type,
            bytes,
        })
    }

    /// Fetches a blob (bounded by `max`) and checks that it hashes to `digest`.
    pub(crate) async fn blob(
        &self,
        repo: &str,
        digest_ref: &str,
        max: usize,
        budget: Instant,
    ) -> Result<Bytes, RegistryError> {
        if !is_sha256_digest(digest_ref) {
            return Err(self.error(
                ErrorKind::Content,
                format!("blob digest {digest_ref:?} is not a sha256 digest"),
            ));
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
            return Err(self.error(
                ErrorKind::DigestMismatch,
                format!(
                    "blob {digest_ref} from {}/{repo} hashes to {actual}",
                    self.host
                ),
            ));
        }
        Ok(bytes)
    }

    /// `HEAD` or `GET` of a manifest, accepting every manifest type; 404 → `NotFound`.
    pub(super) async fn fetch_manifest(
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

    /// [`Self::send`], then anything but 200 is an error: 404 → `NotFound` with
    /// `not_found`'s text, the rest → `Protocol` (redirects refused included).
    pub(super) async fn fetch_ok(
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
            StatusCode::NOT_FOUND => Err(self.error(ErrorKind::NotFound, not_found())),
            s => Err(self.unexpected(s, url)),
        }
    }

    /// `GET` of `url` and its body, bounded by `limit` (bytes, and what it is for errors).
    /// A body broken off mid-way (a reset, a close before `Content-Length`) is fetched again
    /// with the same backoff as a failed request, while `budget` allows: registries and
    /// their load balancers drop connections mid-response, and a retry usually succeeds.
    pub(super) async fn fetch_body(
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
                Err(e) if e.kind == ErrorKind::Transient => {
                    if !self.backoff(attempt, None, budget).await {
                        return Err(e);
                    }
                    tracing::debug!(registry = %self.host, why = %e, "body broken off; fetching again");
                }
                Err(e) => return Err(e),
            }
        }
    }
    pub(super) async fn read_bounded(
        &self,
        mut resp: reqwest::Response,
        max: usize,
        what: &str,
        budget: Instant,
    ) -> Result<Bytes, RegistryError> {
        if resp.content_length().is_some_and(|n| n > max as u64) {
            return Err(self.error(
                ErrorKind::Content,
                format!(
                    "{what} from {} is larger than the {max}-byte limit",
                    self.host
                ),
            ));
        }
        let mut body = Vec::new();
        let read = async {
            while let Some(chunk) = resp.chunk().await.map_err(|e| self.classify(&e))? {
                if body.len() + chunk.len() > max {
                    return Err(self.error(
                        ErrorKind::Content,
                        format!(
                            "{what} from {} is larger than the {max}-byte limit",
                            self.host
                        ),
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(())
        };
        match tokio::time::timeout_at(budget, read).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(self.error(
                    ErrorKind::Transient,
                    format!("registry {} did not send the {what} in time", self.host),
                ));
            }
        }
        Ok(Bytes::from(body))
    }

    /// One request with authentication, the concurrency cap and retries: 401 once through
    /// the token flow, 429 after `Retry-After`, 5xx and connection failures (the registry's
    /// or its token service's) with jittered backoff — each only while `budget` allows.
    pub(super) async fn send(
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
                    if err.kind == ErrorKind::Transient && self.backoff(attempt, None, budget).await
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
                    Err(e) if e.kind == ErrorKind::Transient => {
                        if self.backoff(attempt, None, budget).await {
                            continue;
                        }
                        return Err(e);
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
                return Err(self.error(
                    ErrorKind::Transient,
                    format!(
                        "registry {} answered {status} and the retry budget is spent",
                        self.host
                    ),
                ));
            }
            return Ok(resp);
        }
    }

    /// Sends `req` holding one of the registry's connection slots (`maxConcurrency`) and
    /// counts it in the request metric. The outer error is the budget running out before a
    /// slot or an answer (`doing` says which wait); the inner result is the exchange's.
    pub(super) async fn exchange(
        &self,
        req: reqwest::RequestBuilder,
        budget: Instant,
        doing: &str,
    ) -> Result<Result<reqwest::Response, reqwest::Error>, RegistryError> {
        let permit = tokio::time::timeout_at(budget, self.permits.acquire())
            .await
            .map_err(|_| self.out_of_budget("waiting for a connection slot"))?
            .map_err(|_| self.error(ErrorKind::Transient, "registry client closed"))?;
        let sent = Instant::now();
        let result = tokio::time::timeout_at(budget, req.send()).await;
        drop(permit);
        let status = match &result {
            Ok(Ok(r)) => Some(r.status().as_u16()),
            _ => None,
        };
        self.metrics
            .registry_request(&self.host, status, sent.elapsed().as_secs_f64());
        result.map_err(|_| self.out_of_budget(doing))
    }
}

/// Sorts a reqwest error into the outcome classes; `who` names the server in the message
/// (`registry H`, or `token service of H`, so an operator looks at the right one).
pub(super) fn classify(e: &reqwest::Error, host: &str, who: &str) -> RegistryError {
    let error = |kind, detail| RegistryError::new(host, kind, detail);
    if let Some(tls) = find_rustls_error(e) {
        return error(ErrorKind::Tls, format!("TLS with {who} failed: {tls}"));
    }
    if e.is_timeout() {
        return error(ErrorKind::Transient, format!("{who} timed out"));
    }
    if e.is_connect() {
        return error(ErrorKind::Transient, format!("{who} is unreachable"));
    }
    if e.is_body() || e.is_decode() {
        return error(
            ErrorKind::Transient,
            format!("{who} broke off the response: {e}"),
        );
    }
    error(
        ErrorKind::Transient,
        format!("request to {who} failed: {e}"),
    )
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
