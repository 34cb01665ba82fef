//! The sections of the config that bound the provider itself: TLS, request limits, the
//! listener, the caches, Redis, the claims. Each checks itself ([`Problems`] collects what
//! is wrong, with its path).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Dur, Problems, check_host};

/// Serving certificate and the client CA that authenticates Gatekeeper.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TlsConfig {
    /// PEM certificate chain. Absent together with `keyFile`: a development certificate is
    /// generated at start-up.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `certFile`.
    pub key_file: Option<PathBuf>,
    /// PEM CA bundle; when set, every client must present a certificate it issued (mTLS).
    #[serde(rename = "clientCAFile")]
    pub client_ca_file: Option<PathBuf>,
    /// How often the three files are re-read to pick up rotations.
    pub reload_interval: Dur,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            reload_interval: Dur::secs(2),
        }
    }
}

/// Bounds on one ExternalData request (SPEC §1).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Limits {
    /// Request bodies over this are refused (`request-invalid:`).
    pub max_body_bytes: usize,
    /// A body over `maxBodyBytes` is still read, and discarded, up to this many bytes so
    /// the client receives the refusal rather than a reset mid-upload (a transport failure,
    /// which fail-open would admit). Above everything the API server can send (3 MiB).
    pub max_drain_bytes: usize,
    /// Keys per request at most.
    pub max_keys: usize,
    /// Bytes per key at most; a longer key is answered on its own, as a failed verdict.
    pub max_key_bytes: usize,
    /// Largest manifest (image, index or signature manifest) fetched from a registry.
    pub max_manifest_bytes: usize,
    /// Largest signature blob (cosign simple-signing payload, Notary envelope) fetched.
    pub max_signature_bytes: usize,
    /// Signature artifacts examined per image at most, so a registry cannot make us loop.
    pub max_signatures: usize,
    /// Largest attestation fetched (a bundle or DSSE envelope holding an in-toto
    /// statement: SBOMs run to megabytes); larger ones are not read.
    pub max_attestation_bytes: usize,
    /// Time one Rego evaluation of an attestation may take; past it the attestation is
    /// denied (its input is the pusher's, so running out is a verdict, not an outage).
    pub rego_timeout: Dur,
    /// Platform manifests of an index verified at most (`platforms: each`); a larger index
    /// is not verified.
    pub max_platforms: usize,
}

impl Limits {
    /// The bounds the request parser checks.
    pub(crate) fn request(&self) -> crate::protocol::RequestLimits {
        crate::protocol::RequestLimits {
            max_body_bytes: self.max_body_bytes,
            max_keys: self.max_keys,
            max_key_bytes: self.max_key_bytes,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1024 * 1024,
            max_drain_bytes: 8 * 1024 * 1024,
            max_keys: 512,
            max_key_bytes: 2048,
            max_manifest_bytes: 4 * 1024 * 1024,
            max_signature_bytes: 256 * 1024,
            max_signatures: 16,
            max_attestation_bytes: 4 * 1024 * 1024,
            rego_timeout: Dur::ms(250),
            max_platforms: 32,
        }
    }
}

/// Connection-level bounds of the provider listener.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServerTuning {
    /// Open connections at most; further clients wait in the accept backlog.
    pub max_connections: usize,
    /// Time a client has to complete the TLS handshake.
    pub handshake_timeout: Dur,
    /// Time a client has to send a complete request head, counted from the end of the
    /// handshake or from its first byte after the previous response.
    pub header_read_timeout: Dur,
    /// A keep-alive connection with no request for this long is closed. Longer than
    /// Gatekeeper's own 90 s idle timeout, so the client closes first and never sends a
    /// request into a connection the server is closing.
    pub idle_timeout: Dur,
    /// Largest request head accepted: every byte up to and including the blank line that
    /// ends it (request line, header lines, line ends). A larger head is answered 431 and
    /// the connection closed, whatever its size and however it arrives.
    pub max_header_bytes: usize,
    /// Most header lines a request head may carry; more is answered 431 like an oversized
    /// head. Each allowed header costs parser memory on every request, so this stays a
    /// separate, small bound.
    pub max_headers: usize,
    /// On SIGTERM, how long in-flight requests get to finish.
    pub shutdown_grace: Dur,
}

impl Default for ServerTuning {
    fn default() -> Self {
        ServerTuning {
            max_connections: 1024,
            handshake_timeout: Dur::secs(5),
            header_read_timeout: Dur::secs(5),
            idle_timeout: Dur::secs(120),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            shutdown_grace: Dur::ms(2500),
        }
    }
}

/// Fetching and caching of revocation sources (`revocation`): OCSP answers and CRLs of
/// Notary Project signing chains. Which hosts may be contacted is each verifier's
/// `revocationHosts`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RevocationConfig {
    /// Budget of one OCSP or CRL fetch (it also counts against the verification budget).
    pub timeout: Dur,
    /// Largest CRL read; a larger one is refused (CRLs of big CAs run to tens of MiB).
    pub max_crl_bytes: usize,
    /// Largest OCSP answer read.
    pub max_ocsp_bytes: usize,
    /// OCSP answers and CRLs kept in memory at most.
    pub max_entries: u64,
    /// A cached source this close to its `nextUpdate` is fetched again in the background,
    /// so admissions do not wait for the refresh.
    pub refresh_before: Dur,
    /// How long a source that states no `nextUpdate` is reused.
    pub answer_ttl: Dur,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        RevocationConfig {
            timeout: Dur::ms(1500),
            max_crl_bytes: 32 * 1024 * 1024,
            max_ocsp_bytes: 64 * 1024,
            max_entries: 10_000,
            refresh_before: Dur::secs(300),
            answer_ttl: Dur::secs(3600),
        }
    }
}

/// Cache sizes and lifetimes (`cache`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CacheConfig {
    /// Verdicts held at most (large reports count as several entries).
    pub max_entries: u64,
    /// Exact keys whose rendered verdicts are kept for the hot path.
    pub key_entries: u64,
    /// How long a verified verdict may be served, at most (capped by what made it valid).
    pub verified_ttl: Dur,
    /// How long a failed verdict may be served.
    pub failed_ttl: Dur,
    /// How old a tag → digest resolution may be.
    pub tag_ttl: Dur,
    /// Shared tier for replicas (`redis://host:port/db`); empty: local cache only.
    pub redis_url: String,
    /// Budget of one Redis call; a slower Redis is skipped, never waited for.
    pub redis_timeout: Dur,
    /// After a transient failure, a registry is not contacted for this long.
    pub registry_backoff: Dur,
    /// With Redis: the lease one replica holds while it verifies what others wait for;
    /// renewed every third of it. A replica that dies verifying delays the others by at
    /// most this.
    pub lease_ttl: Dur,
    /// With Redis: how often a replica waiting for another's verification looks for it.
    pub lease_poll: Dur,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: 100_000,
            key_entries: 10_000,
            verified_ttl: Dur::secs(600),
            failed_ttl: Dur::secs(30),
            tag_ttl: Dur::secs(30),
            redis_url: String::new(),
            redis_timeout: Dur::ms(100),
            registry_backoff: Dur::secs(2),
            lease_ttl: Dur::secs(2),
            lease_poll: Dur::ms(20),
        }
    }
}

/// The Redis of the verdict tier and the claims store (SPEC §4 `redis`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct RedisConfig {
    /// `redis://[user@]host:port/db` or `rediss://…` (TLS). Empty, without sentinels: no
    /// Redis. `cache.redisUrl` is an accepted alias.
    pub url: String,
    /// PEM CA bundle trusted for `rediss://` instead of the system roots.
    #[serde(rename = "caFile")]
    pub ca_file: Option<PathBuf>,
    /// ACL user (Redis 6+); empty: the default user.
    pub username: String,
    /// File holding the password (a mounted Secret); read when connecting, never logged.
    pub password_file: Option<PathBuf>,
    /// Ask these sentinels for the master instead of connecting to the URL's host.
    pub sentinel: SentinelConfig,
    /// Budget of one Redis call (connecting: twice that); past it vouch carries on
    /// without Redis. Default: `cache.redisTimeout` (100ms).
    pub timeout: Option<Dur>,
}

/// Redis Sentinel: the master's name and the sentinels' `host:port`s.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct SentinelConfig {
    /// The name the sentinels know the master by.
    pub master_name: String,
    /// The sentinels' `host:port`s.
    pub addresses: Vec<String>,
}

/// The Redis settings in effect: `redis`, with `cache.redisUrl` and `cache.redisTimeout`
/// standing in for `redis.url` and `redis.timeout` when those are not set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://` or `rediss://` URL; empty when Sentinel or nothing is configured.
    pub url: String,
    /// The only root trusted for `rediss://`.
    pub ca_file: Option<PathBuf>,
    /// ACL user.
    pub username: String,
    /// File holding the password, read at every connection.
    pub password_file: Option<PathBuf>,
    /// Sentinel, instead of a fixed URL.
    pub sentinel: SentinelConfig,
    /// Every Redis call's bound.
    pub timeout: Duration,
}

impl RedisSettings {
    /// Whether any Redis is configured.
    pub fn enabled(&self) -> bool {
        !self.url.is_empty() || !self.sentinel.addresses.is_empty()
    }
}

/// Where claims are kept.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClaimStoreKind {
    /// In this process: one replica only.
    #[default]
    Memory,
    /// In Redis: atomic across replicas.
    Redis,
}

/// The `/v1/claims` register (`claims`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClaimsConfig {
    /// How long a granted claim holds without renewal.
    pub ttl: Dur,
    /// `memory` or `redis`.
    pub store: ClaimStoreKind,
}

impl Default for ClaimsConfig {
    fn default() -> Self {
        ClaimsConfig {
            ttl: Dur::secs(60),
            store: ClaimStoreKind::Memory,
        }
    }
}

impl TlsConfig {
    pub(super) fn check(&self, p: &mut Problems) {
        p.positive("tls", &[("reloadInterval", self.reload_interval)]);
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => p.bad("tls.keyFile", "required when tls.certFile is set"),
            (None, Some(_)) => p.bad("tls.certFile", "required when tls.keyFile is set"),
            _ => {}
        }
    }
}

impl Limits {
    pub(super) fn check(&self, p: &mut Problems) {
        p.nonzero(
            "limits",
            &[
                ("maxBodyBytes", self.max_body_bytes),
                ("maxDrainBytes", self.max_drain_bytes),
                ("maxKeys", self.max_keys),
                ("maxKeyBytes", self.max_key_bytes),
                ("maxManifestBytes", self.max_manifest_bytes),
                ("maxSignatureBytes", self.max_signature_bytes),
                ("maxSignatures", self.max_signatures),
                ("maxAttestationBytes", self.max_attestation_bytes),
                ("maxPlatforms", self.max_platforms),
            ],
        );
        p.positive("limits", &[("regoTimeout", self.rego_timeout)]);
    }
}

impl ServerTuning {
    pub(super) fn check(&self, p: &mut Problems) {
        p.positive(
            "server",
            &[
                ("handshakeTimeout", self.handshake_timeout),
                ("headerReadTimeout", self.header_read_timeout),
                ("idleTimeout", self.idle_timeout),
            ],
        );
        p.nonzero(
            "server",
            &[
                ("maxConnections", self.max_connections),
                ("maxHeaders", self.max_headers),
            ],
        );
        if self.max_header_bytes < 8192 {
            p.bad("server.maxHeaderBytes", "must be at least 8192");
        }
    }
}

impl CacheConfig {
    pub(super) fn check(&self, p: &mut Problems) {
        p.positive(
            "cache",
            &[
                ("redisTimeout", self.redis_timeout),
                ("leaseTtl", self.lease_ttl),
                ("leasePoll", self.lease_poll),
            ],
        );
    }
}

impl RedisConfig {
    /// The section with its `cache` aliases (`cache.redisUrl`).
    pub(super) fn check(&self, cache: &CacheConfig, settings: &RedisSettings, p: &mut Problems) {
        if !self.url.is_empty() && !cache.redis_url.is_empty() && self.url != cache.redis_url {
            p.bad("cache.redisUrl", "redis.url is set too; give one of them");
        }
        if self.timeout.is_some_and(|t| t.get().is_zero()) {
            p.bad("redis.timeout", "must be greater than zero");
        }
        let url_field = if self.url.is_empty() {
            "cache.redisUrl"
        } else {
            "redis.url"
        };
        let tls = settings.url.starts_with("rediss://");
        if !settings.url.is_empty() && !settings.url.starts_with("redis://") && !tls {
            p.bad(url_field, "must start with redis:// or rediss:// (TLS)");
        }
        if self.ca_file.is_some() && !tls {
            p.bad("redis.caFile", "only used with a rediss:// URL");
        }
        if !self.username.is_empty() && self.password_file.is_none() {
            p.bad("redis.passwordFile", "required when username is set");
        }
        let s = &self.sentinel;
        if s.addresses.is_empty() != s.master_name.is_empty() {
            p.bad("redis.sentinel", "give both masterName and addresses");
        }
        for (i, a) in s.addresses.iter().enumerate() {
            if let Err(why) = check_host(a) {
                p.bad(format!("redis.sentinel.addresses[{i}]"), why);
            }
        }
    }
}

impl ClaimsConfig {
    pub(super) fn check(&self, redis: &RedisSettings, p: &mut Problems) {
        p.positive("claims", &[("ttl", self.ttl)]);
        if self.store == ClaimStoreKind::Redis && !redis.enabled() {
            p.bad("claims.store", "redis needs redis.url (or redis.sentinel)");
        }
    }
}
