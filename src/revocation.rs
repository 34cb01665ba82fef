//! Revocation status of signing certificates, fetched at the edge: OCSP answers and CRLs,
//! from the hosts a verifier allows and nowhere else, cached until the source says it
//! is stale and refreshed in the background before that.
//!
//! Per certificate, as notation does: OCSP when the certificate names a responder, CRLs
//! from its distribution points otherwise or when OCSP gives no answer. Only `http` and
//! `https` URLs whose host is in the verifier's `revocationHosts` are fetched (certificates
//! come from envelopes anyone can push; their URLs must not steer vouch anywhere else), with
//! no redirects, a size cap per kind (`revocation.maxCrlBytes`, `maxOcspBytes`) and a
//! timeout that also respects the verification budget.
//!
//! Sources are cached in memory (and in Redis when configured, so replicas share them)
//! until their `nextUpdate` (or `revocation.answerTtl` when they state none); a lookup
//! within `revocation.refreshBefore` of that moment is answered from the cache and starts
//! one background fetch. What the bytes say is checked by [`crate::pkix`] on every use: a
//! cached source is only ever bytes, never a verdict.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::time::Instant;

use crate::config::RevocationConfig;
use crate::metrics::{Metrics, RevocationFetch, RevocationMethod};
use crate::pkix::{self, ocsp};
use crate::redis::Redis;

/// One certificate whose status is wanted, with its issuer and the hosts it may be
/// fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Query {
    pub cert: Vec<u8>,
    pub issuer: Vec<u8>,
    pub hosts: Arc<[String]>,
}

impl Query {
    /// The key of the query's finding: the certificate and the allowed hosts.
    pub(crate) fn key(&self) -> String {
        format!(
            "{}|{}",
            crate::digest::sha256_digest(&self.cert),
            self.hosts.join(",")
        )
    }
}

/// What was found about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Status {
    /// A current source says it is not revoked.
    Good,
    /// A current source says it is revoked.
    Revoked,
    /// The certificate names no OCSP responder and no CRL (notation: not revocable).
    NotRevocable,
    /// No usable answer, for a reason retrying soon will not fix: every source is on a
    /// host not allowed, the responder does not know the certificate, or what was fetched
    /// is malformed, badly signed, stale or over its size cap.
    Unknown(String),
    /// Every allowed source was unreachable, timed out or answered with a server error.
    Unavailable(String),
}

impl Status {
    /// The status's name in reports.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Status::Good => "good",
            Status::Revoked => "revoked",
            Status::NotRevocable => "not-revocable",
            Status::Unknown(_) => "unknown",
            Status::Unavailable(_) => "unavailable",
        }
    }
}

/// A status and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    pub method: Option<RevocationMethod>,
    pub status: Status,
    pub this_update: Option<SystemTime>,
    pub next_update: Option<SystemTime>,
}

impl Finding {
    fn bare(status: Status) -> Finding {
        Finding {
            method: None,
            status,
            this_update: None,
            next_update: None,
        }
    }
}

/// Findings by [`Query::key`].
pub(crate) type Findings = HashMap<String, Finding>;

/// Fetched source bytes and their lifetime.
#[derive(Debug, Clone)]
struct Source {
    bytes: Bytes,
    expires: SystemTime,
    refresh_at: SystemTime,
}

/// The process's cache of sources: shared by every engine (it survives reloads).
pub(crate) struct RevocationStore {
    sources: moka::future::Cache<String, Source>,
    redis: Option<Arc<Redis>>,
    refreshing: Mutex<HashSet<String>>,
}

impl RevocationStore {
    /// A store of at most `max_entries` sources, sharing them through `redis` if given.
    pub(crate) fn new(max_entries: u64, redis: Option<Arc<Redis>>) -> Arc<RevocationStore> {
        Arc::new(RevocationStore {
            sources: moka::future::Cache::builder()
                .max_capacity(max_entries)
                .expire_after(SourceExpiry)
                .build(),
            redis,
            refreshing: Mutex::new(HashSet::new()),
        })
    }
}

struct SourceExpiry;

impl moka::Expiry<String, Source> for SourceExpiry {
    fn expire_after_create(
        &self,
        _: &String,
        v: &Source,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(
            v.expires
                .duration_since(SystemTime::now())
                .unwrap_or_default(),
        )
    }
}

/// Why a fetch gave nothing usable.
#[derive(Debug, Clone)]
enum FetchError {
    /// Transient: unreachable, timeout, 5xx, 429.
    Unavailable(String),
    /// Not transient: 4xx, over the cap, invalid content.
    Invalid(String),
}

/// Fetches and caches revocation sources under one config generation's settings.
#[derive(Clone)]
pub(crate) struct Revocation {
    client: reqwest::Client,
    store: Arc<RevocationStore>,
    settings: RevocationConfig,
    metrics: Arc<Metrics>,
}

impl Revocation {
    /// A fetcher with `settings`, caching in `store`.
    pub(crate) fn new(
        settings: &RevocationConfig,
        store: Arc<RevocationStore>,
        metrics: Arc<Metrics>,
    ) -> Result<Revocation, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout.get())
            .build()
            .map_err(|e| format!("revocation HTTP client: {e}"))?;
        Ok(Revocation {
            client,
            store,
            settings: settings.clone(),
            metrics,
        })
    }

    /// Resolves every query (concurrently), each bounded by `deadline`.
    pub(crate) async fn resolve(&self, queries: Vec<Query>, deadline: Instant) -> Findings {
        let mut unique: HashMap<String, Query> = HashMap::new();
        for q in queries {
            unique.entry(q.key()).or_insert(q);
        }
        let lookups = unique.into_iter().map(|(key, q)| async move {
            let finding = self.check(&q, deadline).await;
            (key, finding)
        });
        futures_util::future::join_all(lookups)
            .await
            .into_iter()
            .collect()
    }

    /// The status of one certificate.
    async fn check(&self, q: &Query, deadline: Instant) -> Finding {
        let (Some(cert), Some(issuer)) = (
            pkix::parse_certificate(&q.cert),
            pkix::parse_certificate(&q.issuer),
        ) else {
            return Finding::bare(Status::Unknown("certificate does not parse".into()));
        };
        let (ocsp_urls, crl_urls) = pkix::revocation_urls(&q.cert);
        if ocsp_urls.is_empty() && crl_urls.is_empty() {
            return Finding::bare(Status::NotRevocable);
        }
        let allowed = |u: &String| allowed_url(u, &q.hosts);
        let ocsp_urls: Vec<&String> = ocsp_urls.iter().filter(|u| allowed(u)).collect();
        let crl_urls: Vec<&String> = crl_urls.iter().filter(|u| allowed(u)).collect();
        if ocsp_urls.is_empty() && crl_urls.is_empty() {
            return Finding::bare(Status::Unknown(
                "no OCSP responder or CRL of the certificate is on a host of revocationHosts"
                    .into(),
            ));
        }
        let mut last = Finding::bare(Status::Unknown("no source answered".into()));
        if !ocsp_urls.is_empty() {
            match ocsp::cert_id(&cert, &issuer).and_then(|id| Ok((ocsp::request(&id)?, id))) {
                Ok((body, id)) => {
                    for url in ocsp_urls {
                        let key = format!("ocsp|{url}|{}", crate::digest::sha256_digest(&body));
                        let issuer_c = issuer.clone();
                        let id_c = id.clone();
                        let got = self
                            .source(
                                RevocationMethod::Ocsp,
                                key,
                                url,
                                Some(body.clone()),
                                deadline,
                                move |bytes, now| {
                                    ocsp::check(bytes, &id_c, &issuer_c, now)
                                        .map(|a| a.next_update)
                                        .map_err(|e| e.to_string())
                                },
                            )
                            .await;
                        let finding = match got {
                            Ok(bytes) => {
                                match ocsp::check(&bytes, &id, &issuer, SystemTime::now()) {
                                    Ok(a) => Finding {
                                        method: Some(RevocationMethod::Ocsp),
                                        status: match a.status {
                                            ocsp::Status::Good => Status::Good,
                                            ocsp::Status::Revoked => Status::Revoked,
                                            ocsp::Status::Unknown => Status::Unknown(
                                                "the OCSP responder does not know the certificate"
                                                    .into(),
                                            ),
                                        },
                                        this_update: Some(a.this_update),
                                        next_update: a.next_update,
                                    },
                                    Err(e) => ocsp_finding(Status::Unknown(e.to_string())),
                                }
                            }
                            Err(FetchError::Unavailable(e)) => ocsp_finding(Status::Unavailable(e)),
                            Err(FetchError::Invalid(e)) => ocsp_finding(Status::Unknown(e)),
                        };
                        if matches!(finding.status, Status::Good | Status::Revoked) {
                            return finding;
                        }
                        last = finding;
                    }
                }
                Err(e) => last = ocsp_finding(Status::Unknown(e.to_string())),
            }
        }
        for url in crl_urls {
            let key = format!("crl|{url}");
            let (cert_c, issuer_c) = (cert.clone(), issuer.clone());
            let got = self
                .source(
                    RevocationMethod::Crl,
                    key,
                    url,
                    None,
                    deadline,
                    move |bytes, now| {
                        pkix::crl::check(bytes, &cert_c, &issuer_c, now)
                            .map(|a| a.next_update)
                            .map_err(|e| e.to_string())
                    },
                )
                .await;
            let finding = match got {
                Ok(bytes) => match pkix::crl::check(&bytes, &cert, &issuer, SystemTime::now()) {
                    Ok(a) => Finding {
                        method: Some(RevocationMethod::Crl),
                        status: match a.status {
                            ocsp::Status::Revoked => Status::Revoked,
                            _ => Status::Good,
                        },
                        this_update: Some(a.this_update),
                        next_update: a.next_update,
                    },
                    Err(e) => crl_finding(Status::Unknown(e.to_string())),
                },
                Err(FetchError::Unavailable(e)) => crl_finding(Status::Unavailable(e)),
                Err(FetchError::Invalid(e)) => crl_finding(Status::Unknown(e)),
            };
            if matches!(finding.status, Status::Good | Status::Revoked) {
                return finding;
            }
            // An unavailable source outranks an unknown one: it may answer on a retry.
            if !matches!(last.status, Status::Unavailable(_))
                || matches!(finding.status, Status::Unavailable(_))
            {
                last = finding;
            }
        }
        last
    }

    /// The bytes of one source: from memory, from Redis, or fetched (and validated by
    /// `validate`, which returns the source's `nextUpdate`, before they are cached).
    async fn source<V>(
        &self,
        method: RevocationMethod,
        key: String,
        url: &str,
        body: Option<Vec<u8>>,
        deadline: Instant,
        validate: V,
    ) -> Result<Bytes, FetchError>
    where
        V: Fn(&[u8], SystemTime) -> Result<Option<SystemTime>, String> + Send + Sync + 'static,
    {
        let now = SystemTime::now();
        if let Some(s) = self.store.sources.get(&key).await
            && s.expires > now
        {
            self.metrics.revocation_lookup(method, true);
            if now >= s.refresh_at {
                self.refresh_in_background(method, key, url.to_string(), body, validate);
            }
            return Ok(s.bytes);
        }
        if let Some(bytes) = self.shared_copy(&key).await
            && let Ok(next) = validate(&bytes, now)
        {
            self.metrics.revocation_lookup(method, true);
            let source = self.lifetime(bytes.clone(), next, now);
            self.store.sources.insert(key, source).await;
            return Ok(bytes);
        }
        self.metrics.revocation_lookup(method, false);
        let left = deadline.saturating_duration_since(Instant::now());
        let source = self
            .fetch_and_keep(method, &key, url, body, left, &validate)
            .await?;
        Ok(source.bytes)
    }

    fn lifetime(&self, bytes: Bytes, next: Option<SystemTime>, now: SystemTime) -> Source {
        let expires = next.unwrap_or(now + self.settings.answer_ttl.get());
        let refresh_at = expires
            .checked_sub(self.settings.refresh_before.get())
            .unwrap_or(now)
            .max(now);
        Source {
            bytes,
            expires,
            refresh_at,
        }
    }

    async fn fetch_and_keep<V>(
        &self,
        method: RevocationMethod,
        key: &str,
        url: &str,
        body: Option<Vec<u8>>,
        left: Duration,
        validate: &V,
    ) -> Result<Source, FetchError>
    where
        V: Fn(&[u8], SystemTime) -> Result<Option<SystemTime>, String>,
    {
        let fetched = self.fetch(method, url, body, left).await;
        let outcome = match &fetched {
            Ok(_) => RevocationFetch::Ok,
            Err(FetchError::Unavailable(_)) => RevocationFetch::Unavailable,
            Err(FetchError::Invalid(_)) => RevocationFetch::Invalid,
        };
        let bytes = match fetched {
            Ok(b) => b,
            Err(e) => {
                self.metrics.revocation_fetch(method, outcome);
                return Err(e);
            }
        };
        let now = SystemTime::now();
        let next = match validate(&bytes, now) {
            Ok(n) => n,
            Err(why) => {
                self.metrics
                    .revocation_fetch(method, RevocationFetch::Invalid);
                return Err(FetchError::Invalid(why));
            }
        };
        self.metrics.revocation_fetch(method, RevocationFetch::Ok);
        let source = self.lifetime(bytes, next, now);
        self.store
            .sources
            .insert(key.to_string(), source.clone())
            .await;
        if let Some(redis) = &self.store.redis {
            let ttl = source.expires.duration_since(now).unwrap_or_default();
            let _ = redis
                .set_px(&redis_key(key), source.bytes.to_vec(), ttl)
                .await;
        }
        Ok(source)
    }

    async fn shared_copy(&self, key: &str) -> Option<Bytes> {
        let redis = self.store.redis.as_ref()?;
        let k = redis_key(key);
        redis
            .run("GET", |mut c| async move {
                redis::cmd("GET")
                    .arg(&k)
                    .query_async::<Option<Vec<u8>>>(&mut c)
                    .await
            })
            .await
            .ok()
            .flatten()
            .map(Bytes::from)
    }

    /// One background fetch per source at a time; it replaces the cached bytes when the
    /// new ones validate, and leaves the old ones (until their expiry) otherwise.
    fn refresh_in_background<V>(
        &self,
        method: RevocationMethod,
        key: String,
        url: String,
        body: Option<Vec<u8>>,
        validate: V,
    ) where
        V: Fn(&[u8], SystemTime) -> Result<Option<SystemTime>, String> + Send + Sync + 'static,
    {
        {
            let Ok(mut running) = self.store.refreshing.lock() else {
                return;
            };
            if !running.insert(key.clone()) {
                return;
            }
        }
        let this = self.clone();
        tokio::spawn(async move {
            let timeout = this.settings.timeout.get();
            let _ = this
                .fetch_and_keep(method, &key, &url, body, timeout, &validate)
                .await;
            if let Ok(mut running) = this.store.refreshing.lock() {
                running.remove(&key);
            }
        });
    }

    /// One HTTP exchange: POST for OCSP, GET for CRLs; the body read up to the cap.
    async fn fetch(
        &self,
        method: RevocationMethod,
        url: &str,
        body: Option<Vec<u8>>,
        left: Duration,
    ) -> Result<Bytes, FetchError> {
        let (cap, cap_name) = match method {
            RevocationMethod::Ocsp => (self.settings.max_ocsp_bytes, "revocation.maxOcspBytes"),
            RevocationMethod::Crl => (self.settings.max_crl_bytes, "revocation.maxCrlBytes"),
        };
        let timeout = self.settings.timeout.get().min(left);
        if timeout.is_zero() {
            return Err(FetchError::Unavailable(format!(
                "{url}: no time left in the verification budget"
            )));
        }
        let request = match body {
            Some(b) => self
                .client
                .post(url)
                .header("content-type", "application/ocsp-request")
                .body(b),
            None => self.client.get(url),
        };
        let exchange = async {
            let mut response = request
                .send()
                .await
                .map_err(|e| FetchError::Unavailable(format!("{url}: {e}")))?;
            let status = response.status();
            if status.is_server_error() || status.as_u16() == 429 {
                return Err(FetchError::Unavailable(format!("{url} answered {status}")));
            }
            if !status.is_success() {
                return Err(FetchError::Invalid(format!("{url} answered {status}")));
            }
            if response.content_length().is_some_and(|n| n > cap as u64) {
                return Err(FetchError::Invalid(format!(
                    "{url} is larger than the {cap}-byte limit ({cap_name})"
                )));
            }
            let mut out = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| FetchError::Unavailable(format!("{url}: {e}")))?
            {
                if out.len() + chunk.len() > cap {
                    return Err(FetchError::Invalid(format!(
                        "{url} is larger than the {cap}-byte limit ({cap_name})"
                    )));
                }
                out.extend_from_slice(&chunk);
            }
            Ok(Bytes::from(out))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Unavailable(format!(
                "{url}: no answer within {} ms",
                timeout.as_millis()
            ))),
        }
    }
}

fn ocsp_finding(status: Status) -> Finding {
    Finding {
        method: Some(RevocationMethod::Ocsp),
        ..Finding::bare(status)
    }
}

fn crl_finding(status: Status) -> Finding {
    Finding {
        method: Some(RevocationMethod::Crl),
        ..Finding::bare(status)
    }
}

fn redis_key(key: &str) -> String {
    format!(
        "vouch:v1:revocation:{}",
        crate::digest::sha256_digest(key.as_bytes())
    )
}

/// Whether `url` may be fetched: `http` or `https`, and its host one of `hosts` (any port).
pub(crate) fn allowed_url(url: &str, hosts: &[String]) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    matches!(u.scheme(), "http" | "https")
        && u.username().is_empty()
        && u.password().is_none()
        && u.host_str()
            .is_some_and(|h| hosts.iter().any(|a| a.eq_ignore_ascii_case(h)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_on_allowed_hosts_are_fetched() {
        let hosts = vec!["crl.acme.example".to_string(), "127.0.0.1".to_string()];
        assert!(allowed_url("http://crl.acme.example/ca.crl", &hosts));
        assert!(allowed_url("https://CRL.acme.example:8443/ca.crl", &hosts));
        assert!(allowed_url("http://127.0.0.1:9999/ocsp", &hosts));
        assert!(!allowed_url("ldap://crl.acme.example/cn=ca", &hosts));
        assert!(!allowed_url("file:///etc/passwd", &hosts));
        assert!(!allowed_url(
            "http://crl.acme.example.evil.example/x",
            &hosts
        ));
        assert!(!allowed_url("http://user@crl.acme.example/x", &hosts));
        assert!(!allowed_url("http://169.254.169.254/latest", &hosts));
        assert!(!allowed_url("http://crl.acme.example/x", &[]));
    }
}
