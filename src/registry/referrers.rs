//! Referrer discovery: the artifacts (signatures, attestations) that refer to an image
//! digest, through the OCI 1.1 referrers API (following `Link` pages, filtering
//! client-side when a registry ignores the filter) or its `sha256-<hex>` tag-schema index
//! when the registry has none. Which one works is remembered per registry for
//! [`REFERRERS_MEMORY`]. The index documents are parsed by pure functions, so the fuzzer
//! reaches them without a registry.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use tokio::time::Instant;

use super::{Descriptor, ErrorKind, OCI_INDEX, RegistryClient, RegistryError, host_port};

/// How long a registry's support (or not) of the referrers API is remembered.
pub(crate) const REFERRERS_MEMORY: Duration = Duration::from_secs(600);

/// The part of an OCI index vouch reads.
#[derive(serde::Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// The descriptors of an OCI index (a referrers page or a tag-schema index) that may be
/// artifacts of one of `artifact_types`.
pub(crate) fn parse_index(
    bytes: &[u8],
    artifact_types: &[&str],
) -> Result<Vec<Descriptor>, String> {
    let parsed: Index = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    Ok(filter_artifacts(parsed.manifests, artifact_types))
}

/// Keeps descriptors of one of `artifact_types`; descriptors that do not say their type are
/// kept too (the manifest itself is checked later).
fn filter_artifacts(all: Vec<Descriptor>, artifact_types: &[&str]) -> Vec<Descriptor> {
    all.into_iter()
        .filter(|d| {
            d.artifact_type
                .as_deref()
                .is_none_or(|t| artifact_types.contains(&t))
        })
        .collect()
}

/// The `rel="next"` target of a `Link` header, made absolute against the registry's base
/// URL; only links to the same scheme, host and port are followed.
pub(crate) fn next_link(headers: &HeaderMap, base: &str) -> Option<String> {
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

impl RegistryClient {
    /// Descriptors of the artifacts of one of `artifact_types` that refer to `digest`:
    /// through the OCI 1.1 referrers API (following `Link` pages, filtering client-side when
    /// the registry ignores the filter or several types are wanted), or through the
    /// `sha256-<hex>` tag schema when the registry has no referrers API. Which one works is remembered per registry for
    /// [`REFERRERS_MEMORY`].
    pub(crate) async fn referrers(
        &self,
        repo: &str,
        digest: &str,
        artifact_types: &[&str],
        budget: Instant,
    ) -> Result<Vec<Descriptor>, RegistryError> {
        let known = self.referrers_api.lock().ok().and_then(|m| *m);
        let api_supported = match known {
            Some((supported, since)) if since.elapsed() < REFERRERS_MEMORY => Some(supported),
            _ => None,
        };
        if api_supported != Some(false) {
            match self
                .referrers_api_pages(repo, digest, artifact_types, budget)
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
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        parse_index(&index.bytes, artifact_types).map_err(|e| {
            self.error(
                ErrorKind::Content,
                format!(
                    "referrers tag {tag} in {}/{repo} is not an OCI index: {e}",
                    self.host
                ),
            )
        })
    }
    pub(super) fn remember_referrers_api(&self, supported: bool) {
        if let Ok(mut m) = self.referrers_api.lock() {
            *m = Some((supported, std::time::Instant::now()));
        }
    }
    /// `None` when the registry has no referrers API (404 on the endpoint).
    pub(super) async fn referrers_api_pages(
        &self,
        repo: &str,
        digest: &str,
        artifact_types: &[&str],
        budget: Instant,
    ) -> Result<Option<Vec<Descriptor>>, RegistryError> {
        const MAX_PAGES: usize = 16;
        // The API filters by one type; for several, everything is listed and filtered here.
        let mut url = match artifact_types {
            [one] => format!(
                "{}/v2/{repo}/referrers/{digest}?artifactType={}",
                self.base,
                one.replace('+', "%2B")
                    .replace(';', "%3B")
                    .replace('=', "%3D")
            ),
            _ => format!("{}/v2/{repo}/referrers/{digest}", self.base),
        };
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
                Err(e) if e.kind == ErrorKind::NotFound && found.is_empty() => return Ok(None),
                Err(e) if e.kind == ErrorKind::NotFound => {
                    return Err(self.unexpected(StatusCode::NOT_FOUND, &url));
                }
                Err(e) => return Err(e),
            };
            let next = next_link(&headers, &self.base);
            found.extend(parse_index(&body, artifact_types).map_err(|e| {
                self.error(
                    ErrorKind::Content,
                    format!(
                        "referrers of {digest} in {}/{repo} are not an OCI index: {e}",
                        self.host
                    ),
                )
            })?);
            match next {
                Some(n) => url = n,
                None => return Ok(Some(found)),
            }
        }
        Err(self.error(
            ErrorKind::Content,
            format!(
                "referrers of {digest} in {}/{repo} span more than {MAX_PAGES} pages",
                self.host
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
