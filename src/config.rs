//! Configuration: the YAML file of SPEC §4, its defaults, and its validation.
//!
//! Loading is two-staged so that `vouch config check` can report *every* problem with its
//! path, not just the first: structural problems (unknown fields, wrong types) come from
//! deserialization — unknown fields are collected with `serde_ignored` instead of failing
//! fast — and semantic problems (an empty scope list, a duplicate host, a missing key file)
//! come from [`Config::validate`], which walks the whole tree.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The config compiled into the binary; what `vouch serve` runs without `--config`.
pub const EMBEDDED_DEFAULT: &str = include_str!("../config/default.yaml");

/// A duration written the human way (`2500ms`, `10m`, `1h30m`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn ms(ms: u64) -> Self {
        Dur(Duration::from_millis(ms))
    }
    pub const fn secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim())
            .map(Dur)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The whole configuration. Every field has a default (SPEC §4).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Config {
    /// Provider listener (HTTPS).
    pub listen: SocketAddr,
    /// Operations listener (plain HTTP: health, readiness, metrics).
    pub ops_listen: SocketAddr,
    /// Answer budget of `/v1/verify` and `/v1/claims`; below Gatekeeper's 3 s webhook timeout.
    pub deadline: Dur,
    /// Answer budget of `/v1/mutate`; below Gatekeeper's 1 s mutating webhook timeout.
    pub mutate_deadline: Dur,
    pub tls: TlsConfig,
    pub limits: Limits,
    /// Budget of one registry HTTP exchange (connection included); retries stay within
    /// `deadline` as a whole.
    pub registry_timeout: Dur,
    /// How long an idle kept-alive registry connection is kept for reuse. Each one holds a
    /// socket and a task; a short value trades reconnections for a smaller idle footprint.
    pub registry_idle_timeout: Dur,
    /// How often the config file is re-read (it is also re-read on SIGHUP).
    pub config_reload_interval: Dur,
    /// Time one verification may take, registry retries included. Longer than `deadline`
    /// on purpose: a verification still running when its request is answered continues in
    /// the background, so Gatekeeper's retry finds the verdict in the cache.
    pub verification_budget: Dur,
    pub server: ServerTuning,
    pub cache: CacheConfig,
    /// The Redis shared by the verdict tier and the claims store.
    pub redis: RedisConfig,
    pub registries: Vec<RegistryConfig>,
    pub policies: Vec<PolicyConfig>,
    pub claims: ClaimsConfig,
    /// A config file without any policy denies every image (`no-policy`); it is refused
    /// unless this says it is meant (a botched or half-written file must not take every
    /// policy away at once).
    pub allow_no_policies: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            ops_listen: SocketAddr::from(([0, 0, 0, 0], 9090)),
            deadline: Dur::ms(2500),
            mutate_deadline: Dur::ms(900),
            tls: TlsConfig::default(),
            limits: Limits::default(),
            registry_timeout: Dur::secs(2),
            registry_idle_timeout: Dur::secs(90),
            config_reload_interval: Dur::secs(2),
            verification_budget: Dur::secs(10),
            server: ServerTuning::default(),
            cache: CacheConfig::default(),
            redis: RedisConfig::default(),
            registries: Vec::new(),
            policies: Vec::new(),
            claims: ClaimsConfig::default(),
            allow_no_policies: false,
        }
    }
}

impl Config {
    /// The Redis settings in effect (aliases resolved).
    pub fn redis(&self) -> RedisSettings {
        let r = &self.redis;
        RedisSettings {
            url: if r.url.is_empty() {
                self.cache.redis_url.clone()
            } else {
                r.url.clone()
            },
            ca_file: r.ca_file.clone(),
            username: r.username.clone(),
            password_file: r.password_file.clone(),
            sentinel: r.sentinel.clone(),
            timeout: r.timeout.unwrap_or(self.cache.redis_timeout).get(),
        }
    }
}

/// What a file named by the config holds, which decides who re-reads it: TLS files are
/// watched by [`crate::tls::Reloader`], the others by the config reloader, and trust
/// material is part of the verdicts' generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileRole {
    /// Serving certificate, key, client CA.
    Tls,
    /// Registry and Redis credentials and CAs: how vouch reaches a server, not whom it
    /// trusts. Never hashed into anything shared.
    Access,
    /// Keys and certificates that verify signatures.
    Trust,
}

/// A file the config names: the field that names it (`policies[0].verifiers[1].cosign.publicKeys[0]`),
/// its path and its role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedFile {
    pub field: String,
    pub path: PathBuf,
    pub role: FileRole,
}

/// Serving certificate and the client CA that authenticates Gatekeeper.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TlsConfig {
    /// PEM certificate chain. Absent together with `keyFile`: a development certificate is
    /// generated at start-up.
    pub cert_file: Option<PathBuf>,
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
    pub max_body_bytes: usize,
    /// A body over `maxBodyBytes` is still read, and discarded, up to this many bytes so
    /// the client receives the refusal rather than a reset mid-upload (a transport failure,
    /// which fail-open would admit). Above everything the API server can send (3 MiB).
    pub max_drain_bytes: usize,
    pub max_keys: usize,
    pub max_key_bytes: usize,
    /// Largest manifest (image, index or signature manifest) fetched from a registry.
    pub max_manifest_bytes: usize,
    /// Largest signature blob (cosign simple-signing payload, Notary envelope) fetched.
    pub max_signature_bytes: usize,
    /// Signature artifacts examined per image at most, so a registry cannot make us loop.
    pub max_signatures: usize,
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
    /// Largest request head (request line plus headers) accepted.
    pub max_header_bytes: usize,
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
            shutdown_grace: Dur::ms(2500),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CacheConfig {
    /// Verdicts held at most (large reports count as several entries).
    pub max_entries: u64,
    /// Exact keys whose rendered verdicts are kept for the hot path.
    pub key_entries: u64,
    pub verified_ttl: Dur,
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
    pub master_name: String,
    pub addresses: Vec<String>,
}

/// The Redis settings in effect: `redis`, with `cache.redisUrl` and `cache.redisTimeout`
/// standing in for `redis.url` and `redis.timeout` when those are not set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisSettings {
    pub url: String,
    pub ca_file: Option<PathBuf>,
    pub username: String,
    pub password_file: Option<PathBuf>,
    pub sentinel: SentinelConfig,
    pub timeout: Duration,
}

impl RedisSettings {
    /// Whether any Redis is configured.
    pub fn enabled(&self) -> bool {
        !self.url.is_empty() || !self.sentinel.addresses.is_empty()
    }
}

/// Per-registry settings. A registry is contacted only if a policy scope names it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryConfig {
    /// `host` or `host:port`, as it appears in image references.
    pub host: String,
    #[serde(default)]
    pub plain_http: bool,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub docker_config: Option<PathBuf>,
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// PEM CA bundle that replaces the system roots for this registry (private registries).
    #[serde(default, rename = "caFile")]
    pub ca_file: Option<PathBuf>,
    /// Other hosts this registry may redirect to (blob storage such as
    /// `pkg-containers.githubusercontent.com`); redirects anywhere else are refused.
    #[serde(default)]
    pub redirect_hosts: Vec<String>,
}

fn default_max_concurrency() -> usize {
    16
}

impl RegistryConfig {
    /// Settings of a registry a policy names without a `registries` entry.
    pub fn defaults_for(host: &str) -> RegistryConfig {
        RegistryConfig {
            host: host.to_string(),
            plain_http: false,
            username: String::new(),
            password_file: None,
            docker_config: None,
            max_concurrency: default_max_concurrency(),
            ca_file: None,
            redirect_hosts: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Require {
    #[default]
    Any,
    All,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Verify signatures with the policy's verifiers.
    #[default]
    Verify,
    /// Admit without verification (verdict `verified: true`, no signatures).
    Allow,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyConfig {
    pub name: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub require: Require,
    #[serde(default)]
    pub action: Action,
    #[serde(default)]
    pub verifiers: Vec<VerifierConfig>,
}

/// One verifier of a policy, written as a single-key map: `- cosign: {...}` or
/// `- notation: {...}`. Parsed as a struct of optional fields (YAML libraries disagree on
/// how externally tagged enums are spelled) and turned into [`Verifier`] by [`Self::kind`].
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifierConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cosign: Option<CosignVerifierConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notation: Option<NotationVerifierConfig>,
}

/// A verifier, once exactly one kind was given.
#[derive(Clone, Copy, Debug)]
pub enum Verifier<'a> {
    Cosign(&'a CosignVerifierConfig),
    Notation(&'a NotationVerifierConfig),
}

impl VerifierConfig {
    pub fn cosign(c: CosignVerifierConfig) -> Self {
        VerifierConfig {
            cosign: Some(c),
            notation: None,
        }
    }

    /// The verifier's kind; `None` unless exactly one kind is set (validation reports it).
    pub fn kind(&self) -> Option<Verifier<'_>> {
        match (&self.cosign, &self.notation) {
            (Some(c), None) => Some(Verifier::Cosign(c)),
            (None, Some(n)) => Some(Verifier::Notation(n)),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CosignVerifierConfig {
    #[serde(default)]
    pub public_keys: Vec<PathBuf>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotationVerifierConfig {
    #[serde(default)]
    pub trust_store: Vec<PathBuf>,
    #[serde(default)]
    pub trusted_identities: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClaimStoreKind {
    #[default]
    Memory,
    Redis,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClaimsConfig {
    pub ttl: Dur,
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

/// One thing wrong with a config, located by its path (`policies[0].scopes[1]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} problem(s) in {origin}:\n{}", problems.len(), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        origin: String,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

impl Config {
    /// The embedded default config (`config/default.yaml`).
    pub fn embedded() -> Result<Config, ConfigError> {
        Config::parse(EMBEDDED_DEFAULT, "the embedded default config", None)
    }

    /// Reads, parses and validates a config file; relative paths in it resolve against the
    /// file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_inner(path, false)
    }

    /// Like [`Config::load`], and also checks that every file the config names can be read
    /// (what `vouch config check` runs).
    pub fn load_checked(path: &Path) -> Result<Config, ConfigError> {
        Config::load_inner(path, true)
    }

    fn load_inner(path: &Path, files: bool) -> Result<Config, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_file_bytes(&bytes, path, files)
    }

    /// A config file's bytes as [`Config::load`] reads them: relative paths resolve against
    /// the file's directory, and a file that would deny every image — empty, or without a
    /// policy unless `allowNoPolicies: true` — is refused (at start-up, on reload and by
    /// `vouch config check` alike).
    pub fn from_file_bytes(bytes: &[u8], path: &Path, files: bool) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::str::from_utf8(bytes).map_err(|e| ConfigError::Invalid {
            origin: origin.clone(),
            problems: vec![Problem {
                path: String::new(),
                message: format!("not UTF-8 text: {e}"),
            }],
        })?;
        if text.trim().is_empty() {
            return Err(ConfigError::Invalid {
                origin,
                problems: vec![Problem {
                    path: String::new(),
                    message: "the file is empty: it would leave no trust policy, so every \
                              image would be denied; refusing it"
                        .into(),
                }],
            });
        }
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let result = Config::parse_inner(text, &origin, Some(&base), files);
        let no_policy = |c: &Config| c.policies.is_empty() && !c.allow_no_policies;
        match result {
            Ok(c) if no_policy(&c) => Err(ConfigError::Invalid {
                origin,
                problems: vec![Config::no_policy_problem()],
            }),
            other => other,
        }
    }

    fn no_policy_problem() -> Problem {
        Problem {
            path: "policies".into(),
            message: "no trust policy: every image would be denied; add a policy, or set \
                      allowNoPolicies: true if that is meant"
                .into(),
        }
    }

    /// Parses and validates config text. `base`, when given, is the directory relative file
    /// paths resolve against.
    pub fn parse(text: &str, origin: &str, base: Option<&Path>) -> Result<Config, ConfigError> {
        Config::parse_inner(text, origin, base, false)
    }

    fn parse_inner(
        text: &str,
        origin: &str,
        base: Option<&Path>,
        files: bool,
    ) -> Result<Config, ConfigError> {
        let invalid = |problems| ConfigError::Invalid {
            origin: origin.to_string(),
            problems,
        };
        let mut problems = Vec::new();
        let mut unknown = Vec::new();
        // An empty file is an empty mapping: all defaults.
        let text = if text.trim().is_empty() { "{}" } else { text };
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let mut note_unknown = |path: serde_ignored::Path| unknown.push(render_ignored_path(&path));
        let ignored = serde_ignored::Deserializer::new(de, &mut note_unknown);
        let parsed: Result<Config, _> = serde_path_to_error::deserialize(ignored);
        for path in unknown {
            let (parent, field) = match path.rsplit_once('.') {
                Some((p, f)) => (p.to_string(), f.to_string()),
                None => (String::new(), path.clone()),
            };
            problems.push(Problem {
                path,
                message: format!(
                    "unknown field `{field}`{}",
                    if parent.is_empty() {
                        String::new()
                    } else {
                        format!(" in `{parent}`")
                    }
                ),
            });
        }
        let mut config = match parsed {
            Ok(c) => c,
            Err(e) => {
                let path = render_error_path(e.path());
                let message = e.inner().to_string();
                // The YAML error may already start with the path; say it once.
                let message = message
                    .strip_prefix(&format!("{path}: "))
                    .map(str::to_string)
                    .unwrap_or(message);
                problems.push(Problem { path, message });
                return Err(invalid(problems));
            }
        };
        if let Some(base) = base {
            config.resolve_paths(base);
        }
        problems.extend(config.validate());
        if files {
            problems.extend(config.check_files());
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(invalid(problems))
        }
    }

    /// Makes every relative file path absolute against `base`.
    fn resolve_paths(&mut self, base: &Path) {
        self.visit_files(&mut |_, _, p| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        });
    }

    /// Calls `f` with every file path the config names, its field and its role. The one
    /// list of file-bearing fields: path resolution, `config check`, the reload watch and
    /// the trust generation all go through it.
    fn visit_files(&mut self, f: &mut dyn FnMut(String, FileRole, &mut PathBuf)) {
        let tls = &mut self.tls;
        for (name, p) in [
            ("tls.certFile", &mut tls.cert_file),
            ("tls.keyFile", &mut tls.key_file),
            ("tls.clientCAFile", &mut tls.client_ca_file),
        ] {
            if let Some(p) = p {
                f(name.to_string(), FileRole::Tls, p);
            }
        }
        let redis = &mut self.redis;
        for (name, p) in [
            ("redis.caFile", &mut redis.ca_file),
            ("redis.passwordFile", &mut redis.password_file),
        ] {
            if let Some(p) = p {
                f(name.to_string(), FileRole::Access, p);
            }
        }
        for (i, r) in self.registries.iter_mut().enumerate() {
            for (name, p) in [
                ("passwordFile", &mut r.password_file),
                ("dockerConfig", &mut r.docker_config),
                ("caFile", &mut r.ca_file),
            ] {
                if let Some(p) = p {
                    f(format!("registries[{i}].{name}"), FileRole::Access, p);
                }
            }
        }
        for (i, pol) in self.policies.iter_mut().enumerate() {
            for (j, v) in pol.verifiers.iter_mut().enumerate() {
                let at = format!("policies[{i}].verifiers[{j}]");
                if let Some(c) = &mut v.cosign {
                    for (k, p) in c.public_keys.iter_mut().enumerate() {
                        f(format!("{at}.cosign.publicKeys[{k}]"), FileRole::Trust, p);
                    }
                }
                if let Some(n) = &mut v.notation {
                    for (k, p) in n.trust_store.iter_mut().enumerate() {
                        f(format!("{at}.notation.trustStore[{k}]"), FileRole::Trust, p);
                    }
                }
            }
        }
    }

    /// Every file the config names, in config order.
    pub fn files(&self) -> Vec<NamedFile> {
        let mut out = Vec::new();
        self.clone().visit_files(&mut |field, role, path| {
            out.push(NamedFile {
                field,
                path: path.clone(),
                role,
            })
        });
        out
    }

    /// Semantic checks over the whole tree; returns every problem found.
    pub fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |path: String, message: String| out.push(Problem { path, message });

        for (name, d) in [
            ("deadline", self.deadline),
            ("mutateDeadline", self.mutate_deadline),
            ("tls.reloadInterval", self.tls.reload_interval),
            ("registryTimeout", self.registry_timeout),
            ("registryIdleTimeout", self.registry_idle_timeout),
            ("configReloadInterval", self.config_reload_interval),
            ("verificationBudget", self.verification_budget),
            ("cache.redisTimeout", self.cache.redis_timeout),
            ("cache.leaseTtl", self.cache.lease_ttl),
            ("cache.leasePoll", self.cache.lease_poll),
            ("server.handshakeTimeout", self.server.handshake_timeout),
            ("server.headerReadTimeout", self.server.header_read_timeout),
            ("server.idleTimeout", self.server.idle_timeout),
            ("claims.ttl", self.claims.ttl),
        ] {
            if d.get().is_zero() {
                bad(name.into(), "must be greater than zero".into());
            }
        }
        for (name, n) in [
            ("limits.maxBodyBytes", self.limits.max_body_bytes),
            ("limits.maxDrainBytes", self.limits.max_drain_bytes),
            ("limits.maxKeys", self.limits.max_keys),
            ("limits.maxKeyBytes", self.limits.max_key_bytes),
            ("limits.maxManifestBytes", self.limits.max_manifest_bytes),
            ("limits.maxSignatureBytes", self.limits.max_signature_bytes),
            ("limits.maxSignatures", self.limits.max_signatures),
            ("server.maxConnections", self.server.max_connections),
        ] {
            if n == 0 {
                bad(name.into(), "must be greater than zero".into());
            }
        }
        if self.server.max_header_bytes < 8192 {
            bad(
                "server.maxHeaderBytes".into(),
                "must be at least 8192".into(),
            );
        }
        match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(_), None) => bad(
                "tls.keyFile".into(),
                "required when tls.certFile is set".into(),
            ),
            (None, Some(_)) => bad(
                "tls.certFile".into(),
                "required when tls.keyFile is set".into(),
            ),
            _ => {}
        }

        let mut hosts = HashSet::new();
        for (i, r) in self.registries.iter().enumerate() {
            let at = format!("registries[{i}]");
            if let Err(why) = check_host(&r.host) {
                bad(format!("{at}.host"), why);
            } else if !hosts.insert(r.host.to_ascii_lowercase()) {
                bad(
                    format!("{at}.host"),
                    format!("registry {:?} is configured twice", r.host),
                );
            }
            if r.max_concurrency == 0 {
                bad(
                    format!("{at}.maxConcurrency"),
                    "must be greater than zero".into(),
                );
            }
            if !r.username.is_empty() && r.password_file.is_none() {
                bad(
                    format!("{at}.passwordFile"),
                    "required when username is set".into(),
                );
            }
            if !r.username.is_empty() && r.docker_config.is_some() {
                bad(
                    format!("{at}.dockerConfig"),
                    "give either username/passwordFile or dockerConfig, not both".into(),
                );
            }
        }

        let mut names = HashSet::new();
        let mut scopes = HashSet::new();
        for (i, p) in self.policies.iter().enumerate() {
            let at = format!("policies[{i}]");
            if p.name.trim().is_empty() {
                bad(format!("{at}.name"), "must not be empty".into());
            } else if !names.insert(p.name.as_str()) {
                bad(
                    format!("{at}.name"),
                    format!("policy name {:?} is used twice", p.name),
                );
            }
            if p.scopes.is_empty() {
                bad(
                    format!("{at}.scopes"),
                    "a policy needs at least one scope".into(),
                );
            }
            for (j, s) in p.scopes.iter().enumerate() {
                if let Err(why) = crate::policy::Scope::parse(s) {
                    bad(format!("{at}.scopes[{j}]"), why);
                } else if !scopes.insert(s.as_str()) {
                    bad(
                        format!("{at}.scopes[{j}]"),
                        format!("scope {s:?} belongs to more than one policy"),
                    );
                }
            }
            match p.action {
                Action::Allow if !p.verifiers.is_empty() => bad(
                    format!("{at}.verifiers"),
                    "a policy with action: allow takes no verifiers".into(),
                ),
                Action::Verify if p.verifiers.is_empty() => bad(
                    format!("{at}.verifiers"),
                    "a policy with action: verify needs at least one verifier".into(),
                ),
                _ => {}
            }
            for (j, v) in p.verifiers.iter().enumerate() {
                let vat = format!("{at}.verifiers[{j}]");
                match v.kind() {
                    None => bad(vat, "give exactly one of `cosign` or `notation`".into()),
                    Some(Verifier::Cosign(c)) if c.public_keys.is_empty() => bad(
                        format!("{vat}.cosign.publicKeys"),
                        "at least one public key is required".into(),
                    ),
                    Some(Verifier::Notation(n)) => {
                        if n.trust_store.is_empty() {
                            bad(
                                format!("{vat}.notation.trustStore"),
                                "at least one certificate file is required".into(),
                            );
                        }
                        if n.trusted_identities.is_empty() {
                            bad(
                                format!("{vat}.notation.trustedIdentities"),
                                "at least one identity (or \"*\") is required".into(),
                            );
                        }
                    }
                    _ => {}
                }
            }
        }
        for (path, message) in self.redis_problems() {
            bad(path, message);
        }
        if self.claims.store == ClaimStoreKind::Redis && !self.redis().enabled() {
            bad(
                "claims.store".into(),
                "redis needs redis.url (or redis.sentinel)".into(),
            );
        }
        out
    }

    /// Problems of the `redis` section (and its `cache` aliases).
    fn redis_problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let r = &self.redis;
        if !r.url.is_empty() && !self.cache.redis_url.is_empty() && r.url != self.cache.redis_url {
            out.push((
                "cache.redisUrl".into(),
                "redis.url is set too; give one of them".into(),
            ));
        }
        if r.timeout.is_some_and(|t| t.get().is_zero()) {
            out.push(("redis.timeout".into(), "must be greater than zero".into()));
        }
        let settings = self.redis();
        let url_field = if r.url.is_empty() {
            "cache.redisUrl"
        } else {
            "redis.url"
        };
        let tls = settings.url.starts_with("rediss://");
        if !settings.url.is_empty() && !settings.url.starts_with("redis://") && !tls {
            out.push((
                url_field.into(),
                "must start with redis:// or rediss:// (TLS)".into(),
            ));
        }
        if r.ca_file.is_some() && !tls {
            out.push((
                "redis.caFile".into(),
                "only used with a rediss:// URL".into(),
            ));
        }
        if !r.username.is_empty() && r.password_file.is_none() {
            out.push((
                "redis.passwordFile".into(),
                "required when username is set".into(),
            ));
        }
        let s = &r.sentinel;
        if s.addresses.is_empty() != s.master_name.is_empty() {
            out.push((
                "redis.sentinel".into(),
                "give both masterName and addresses".into(),
            ));
        }
        for (i, a) in s.addresses.iter().enumerate() {
            if let Err(why) = check_host(a) {
                out.push((format!("redis.sentinel.addresses[{i}]"), why));
            }
        }
        out
    }

    /// Checks that every file the config names exists and can be read. `config check`
    /// reports these; `serve` instead waits for TLS files to appear (readiness stays 503).
    pub fn check_files(&self) -> Vec<Problem> {
        self.files()
            .into_iter()
            .filter_map(|f| {
                std::fs::File::open(&f.path).err().map(|e| Problem {
                    path: f.field,
                    message: format!("cannot read {}: {e}", f.path.display()),
                })
            })
            .collect()
    }
}

/// `host` or `host:port`: no scheme, no path, no user info.
fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("must not be empty".into());
    }
    if host.contains("://") {
        return Err(format!("{host:?}: give the host without a scheme"));
    }
    if host.contains('/') || host.contains('@') || host.chars().any(char::is_whitespace) {
        return Err(format!(
            "{host:?} is not a registry host (expected host or host:port)"
        ));
    }
    Ok(())
}

/// `serde_path_to_error` path → `policies[0].scopes` style.
fn render_error_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

fn render_ignored_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path as P;
    fn walk(p: &P, out: &mut String) {
        match p {
            P::Root => {}
            P::Seq { parent, index } => {
                walk(parent, out);
                out.push_str(&format!("[{index}]"));
            }
            P::Map { parent, key } => {
                walk(parent, out);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
                walk(parent, out)
            }
        }
    }
    let mut out = String::new();
    walk(path, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        match Config::parse(yaml, "test", None) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems().iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded().expect("embedded default config must be valid");
        assert_eq!(c.deadline, Dur::ms(2500));
        assert_eq!(c.mutate_deadline, Dur::ms(900));
        assert!(
            c.tls.cert_file.is_none(),
            "dev mode generates its certificate"
        );
    }

    #[test]
    fn shipped_example_is_valid() {
        let c = Config::parse(include_str!("../config/example.yaml"), "example", None)
            .expect("config/example.yaml must stay valid");
        assert_eq!(c.policies.len(), 2);
        assert_eq!(c.server.idle_timeout, Dur::secs(120));
        assert_eq!(c.registry_idle_timeout, Dur::secs(90));
    }

    #[test]
    fn registry_idle_timeout_is_configurable_and_not_zero() {
        let c = Config::parse("registryIdleTimeout: 1s", "t", None).expect("ok");
        assert_eq!(c.registry_idle_timeout, Dur::secs(1));
        let p = problems("registryIdleTimeout: 0s");
        assert_eq!(p, vec!["registryIdleTimeout: must be greater than zero"]);
    }

    fn load_text(text: &str) -> Result<Config, ConfigError> {
        Config::from_file_bytes(text.as_bytes(), Path::new("/etc/vouch/vouch.yaml"), false)
    }

    #[test]
    fn a_file_that_would_deny_everything_is_refused() {
        for text in ["", "  \n", "policies: []\n", "deadline: 2s\n"] {
            let e = load_text(text).expect_err("refused");
            let problems: Vec<String> = e.problems().iter().map(ToString::to_string).collect();
            assert_eq!(problems.len(), 1, "{text:?}: {problems:?}");
            assert!(
                problems[0].contains("empty")
                    || problems[0].starts_with("policies: no trust policy"),
                "{text:?}: {problems:?}"
            );
        }
        let c = load_text("allowNoPolicies: true\n").expect("said so explicitly");
        assert!(c.policies.is_empty());
        let c = load_text(
            "policies:\n- name: lib\n  scopes: [\"docker.io/library/*\"]\n  action: allow\n",
        )
        .expect("one policy");
        assert_eq!(c.policies.len(), 1);
    }

    #[test]
    fn every_named_file_is_listed_once_with_its_role() {
        let c = load_text(
            "tls: {certFile: tls.crt, keyFile: tls.key}\nregistries:\n- host: r.io\n  username: u\n  passwordFile: pw\n  caFile: ca.pem\npolicies:\n- name: a\n  scopes: [\"r.io/a/*\"]\n  verifiers:\n  - cosign: {publicKeys: [a.pub, b.pub]}\n  - notation: {trustStore: [root.pem], trustedIdentities: [\"*\"]}\n",
        )
        .expect("valid");
        let files: Vec<(String, String, FileRole)> = c
            .files()
            .into_iter()
            .map(|f| (f.field, f.path.display().to_string(), f.role))
            .collect();
        let want = [
            ("tls.certFile", "/etc/vouch/tls.crt", FileRole::Tls),
            ("tls.keyFile", "/etc/vouch/tls.key", FileRole::Tls),
            (
                "registries[0].passwordFile",
                "/etc/vouch/pw",
                FileRole::Access,
            ),
            (
                "registries[0].caFile",
                "/etc/vouch/ca.pem",
                FileRole::Access,
            ),
            (
                "policies[0].verifiers[0].cosign.publicKeys[0]",
                "/etc/vouch/a.pub",
                FileRole::Trust,
            ),
            (
                "policies[0].verifiers[0].cosign.publicKeys[1]",
                "/etc/vouch/b.pub",
                FileRole::Trust,
            ),
            (
                "policies[0].verifiers[1].notation.trustStore[0]",
                "/etc/vouch/root.pem",
                FileRole::Trust,
            ),
        ];
        let want: Vec<(String, String, FileRole)> = want
            .iter()
            .map(|(f, p, r)| (f.to_string(), p.to_string(), *r))
            .collect();
        assert_eq!(files, want);
    }

    #[test]
    fn the_redis_section_and_its_aliases() {
        let c = Config::parse(
            "cache: {redisUrl: \"redis://r:6379/0\", redisTimeout: 50ms}",
            "t",
            None,
        )
        .expect("alias");
        let r = c.redis();
        assert_eq!(r.url, "redis://r:6379/0");
        assert_eq!(r.timeout, Duration::from_millis(50));
        let c = Config::parse(
            "redis: {url: \"rediss://r:6380/1\", caFile: ca.pem, username: vouch, passwordFile: pw, timeout: 200ms}",
            "t",
            None,
        )
        .expect("full section");
        let r = c.redis();
        assert_eq!(
            (r.url.as_str(), r.timeout),
            ("rediss://r:6380/1", Duration::from_millis(200))
        );
        let c = Config::parse(
            "redis: {sentinel: {masterName: vouch, addresses: [\"s1:26379\", \"s2:26379\"]}}\nclaims: {store: redis}",
            "t",
            None,
        )
        .expect("sentinels alone");
        assert!(c.redis().enabled());
        let p = problems(
            "redis: {url: \"http://r\", caFile: ca.pem, username: u, sentinel: {masterName: m}, timeout: 0s}\ncache: {redisUrl: \"redis://other\"}",
        );
        for want in [
            "cache.redisUrl: redis.url is set too",
            "redis.timeout: must be greater than zero",
            "redis.url: must start with redis://",
            "redis.caFile: only used with a rediss:// URL",
            "redis.passwordFile: required when username is set",
            "redis.sentinel: give both masterName and addresses",
        ] {
            assert!(
                p.iter().any(|s| s.starts_with(want)),
                "missing {want:?} in {p:?}"
            );
        }
    }

    #[test]
    fn empty_file_means_defaults() {
        let c = Config::parse("", "t", None).expect("empty config");
        assert_eq!(c.limits.max_keys, 512);
        assert_eq!(c.limits.max_body_bytes, 1 << 20);
        assert_eq!(c.cache.verified_ttl, Dur::secs(600));
    }

    #[test]
    fn durations_parse_the_human_way() {
        let c = Config::parse("deadline: 1s500ms\ncache: {tagTtl: 2m}", "t", None).expect("ok");
        assert_eq!(c.deadline.get(), Duration::from_millis(1500));
        assert_eq!(c.cache.tag_ttl.get(), Duration::from_secs(120));
        let p = problems("deadline: soon");
        assert_eq!(p.len(), 1);
        assert!(p[0].starts_with("deadline: invalid duration"), "{p:?}");
    }

    #[test]
    fn every_unknown_field_is_reported_with_its_path() {
        let p = problems(
            "listn: 1\ntls: {certFiel: x}\npolicies:\n- name: a\n  scopes: [\"r.io/a/*\"]\n  action: allow\n  colour: red\n",
        );
        assert!(
            p.contains(&"listn: unknown field `listn`".to_string()),
            "{p:?}"
        );
        assert!(
            p.contains(&"tls.certFiel: unknown field `certFiel` in `tls`".to_string()),
            "{p:?}"
        );
        assert!(
            p.iter().any(|s| s.starts_with("policies[0].colour:")),
            "{p:?}"
        );
    }

    #[test]
    fn type_errors_name_their_path() {
        let p = problems("limits: {maxKeys: many}");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("limits.maxKeys: invalid type"), "{p:?}");
        let p = problems("policies:\n- scopes: [a]\n");
        assert!(
            p[0].starts_with("policies[0]: missing field `name`"),
            "{p:?}"
        );
    }

    #[test]
    fn semantic_problems_are_all_reported() {
        let p = problems(
            "limits: {maxKeys: 0}\ntls: {certFile: a.crt}\nregistries:\n- host: https://r.io\n- host: r.io\n- host: r.io\npolicies:\n- name: a\n  scopes: []\n- name: a\n  scopes: [\"nohost\"]\n  verifiers: []\n",
        );
        let want = [
            "limits.maxKeys: must be greater than zero",
            "tls.keyFile: required when tls.certFile is set",
            "registries[0].host:",
            "registries[2].host: registry \"r.io\" is configured twice",
            "policies[0].scopes: a policy needs at least one scope",
            "policies[1].name: policy name \"a\" is used twice",
            "policies[1].scopes[0]:",
            "policies[1].verifiers: a policy with action: verify needs at least one verifier",
        ];
        for w in want {
            assert!(p.iter().any(|s| s.starts_with(w)), "missing {w:?} in {p:?}");
        }
    }

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        let c = Config::parse(
            "tls: {certFile: tls.crt, keyFile: /abs/tls.key}\npolicies:\n- name: a\n  scopes: [\"r.io/a/*\"]\n  verifiers:\n  - cosign: {publicKeys: [keys/a.pub]}\n",
            "t",
            Some(Path::new("/etc/vouch")),
        )
        .expect("valid");
        assert_eq!(c.tls.cert_file, Some(PathBuf::from("/etc/vouch/tls.crt")));
        assert_eq!(c.tls.key_file, Some(PathBuf::from("/abs/tls.key")));
        match c.policies[0].verifiers[0].kind() {
            Some(Verifier::Cosign(k)) => {
                assert_eq!(k.public_keys[0], PathBuf::from("/etc/vouch/keys/a.pub"))
            }
            other => panic!("unexpected verifier {other:?}"),
        }
    }

    #[test]
    fn redis_claims_need_a_redis_url() {
        let p = problems("claims: {store: redis}");
        assert_eq!(
            p,
            vec!["claims.store: redis needs redis.url (or redis.sentinel)"]
        );
    }
}
