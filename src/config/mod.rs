//! Configuration: the YAML file of SPEC §4, its defaults, and its validation.
//!
//! [`Config`] is the whole file; its sections live beside it ([`sections`]: what bounds
//! the provider; [`policies`]: registries and trust policies) and each checks itself;
//! [`Config::files`] is the one list of the files a config names (path resolution,
//! `config check`, the reload watch and the trust generation all use it); `load.rs` reads
//! and validates a file.

mod dur;
mod load;
mod policies;
mod sections;

pub use dur::Dur;
pub use load::{ConfigError, Problem};
pub use policies::{
    Action, AttestationConfig, CheckAction, CosignVerifierConfig, KeylessFormat,
    KeylessVerifierConfig, NotationLevel, NotationOverride, NotationVerifierConfig, Platforms,
    PolicyConfig, PolicyCredentials, RegistryConfig, Require, Verifier, VerifierConfig,
    VerifyTimestamp,
};
pub use sections::{
    CacheConfig, ClaimStoreKind, ClaimsConfig, Limits, RedisConfig, RedisSettings,
    RevocationConfig, SentinelConfig, ServerTuning, TlsConfig,
};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The config compiled into the binary; what `vouch serve` runs without `--config`.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/default.yaml");

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
    /// The provider listener's certificate, key and client CA (`tls`).
    pub tls: TlsConfig,
    /// Bounds on what one request may carry (`limits`).
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
    /// Connection bounds of the provider listener (`server`).
    pub server: ServerTuning,
    /// Cache sizes and lifetimes (`cache`).
    pub cache: CacheConfig,
    /// The Redis shared by the verdict tier and the claims store.
    pub redis: RedisConfig,
    /// The registries vouch may contact, and how (`registries`).
    pub registries: Vec<RegistryConfig>,
    /// The trust policies, selected by scope (`policies`).
    pub policies: Vec<PolicyConfig>,
    /// The `/v1/claims` register (`claims`).
    pub claims: ClaimsConfig,
    /// Revocation fetching and caching (`revocation`).
    pub revocation: RevocationConfig,
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
            revocation: RevocationConfig::default(),
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
    /// The config path of the field naming the file.
    pub field: String,
    /// The file, absolute once the config is loaded.
    pub path: PathBuf,
    /// What the file is for (decides which reloader watches it).
    pub role: FileRole,
}

impl Config {
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
                    for (k, p) in n.tsa_store.iter_mut().enumerate() {
                        f(format!("{at}.notation.tsaStore[{k}]"), FileRole::Trust, p);
                    }
                }
                if let Some(k) = &mut v.keyless
                    && let Some(p) = &mut k.trusted_root
                {
                    f(format!("{at}.keyless.trustedRoot"), FileRole::Trust, p);
                }
            }
            if let Some(c) = &mut pol.credentials {
                for (name, p) in [
                    ("passwordFile", &mut c.password_file),
                    ("dockerConfig", &mut c.docker_config),
                ] {
                    if let Some(p) = p {
                        f(
                            format!("policies[{i}].credentials.{name}"),
                            FileRole::Access,
                            p,
                        );
                    }
                }
            }
            for (j, a) in pol.attestations.iter_mut().enumerate() {
                if let Some(p) = &mut a.policy {
                    f(
                        format!("policies[{i}].attestations[{j}].policy"),
                        FileRole::Trust,
                        p,
                    );
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
        let mut p = Problems::default();
        p.positive(
            "",
            &[
                ("deadline", self.deadline),
                ("mutateDeadline", self.mutate_deadline),
                ("registryTimeout", self.registry_timeout),
                ("registryIdleTimeout", self.registry_idle_timeout),
                ("configReloadInterval", self.config_reload_interval),
                ("verificationBudget", self.verification_budget),
            ],
        );
        self.tls.check(&mut p);
        self.limits.check(&mut p);
        self.server.check(&mut p);
        self.cache.check(&mut p);
        let redis = self.redis();
        self.redis.check(&self.cache, &redis, &mut p);
        policies::check_registries(&self.registries, &mut p);
        policies::check_policies(&self.policies, &mut p);
        self.claims.check(&redis, &mut p);
        p.0
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

/// Problems found so far, each with its path.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn bad(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Each duration of `fields` (under `at`) must be greater than zero.
    fn positive(&mut self, at: &str, fields: &[(&str, Dur)]) {
        for (name, d) in fields {
            if d.get().is_zero() {
                self.bad(join(at, name), "must be greater than zero");
            }
        }
    }

    /// Each count of `fields` (under `at`) must be greater than zero.
    fn nonzero(&mut self, at: &str, fields: &[(&str, usize)]) {
        for (name, n) in fields {
            if *n == 0 {
                self.bad(join(at, name), "must be greater than zero");
            }
        }
    }
}

/// `at.name`, or `name` at the top.
fn join(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_string()
    } else {
        format!("{at}.{name}")
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
        let c = Config::parse(include_str!("../../config/example.yaml"), "example", None)
            .expect("config/example.yaml must stay valid");
        assert_eq!(c.policies.len(), 3);
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
    fn every_type_error_is_reported_beside_the_other_problems() {
        let p = problems(
            "listen: localhost:8443\ndeadline: soon\nlimits: {maxKeys: 0, maxKeyBytes: big}\npolicies:\n- scopes: [\"r.io/a/*\"]\n  action: allow\n- name: b\n  scopes: 7\n- name: c\n  scopes: [\"nohost\"]\n  action: allow\n  colour: red\n",
        );
        let at = |prefix: &str| p.iter().filter(|s| s.starts_with(prefix)).count();
        assert_eq!(at("listen: "), 1, "{p:?}");
        assert_eq!(at("deadline: "), 1, "{p:?}");
        assert_eq!(at("limits.maxKeyBytes: invalid type"), 1, "{p:?}");
        assert_eq!(at("limits.maxKeys: must be greater than zero"), 1, "{p:?}");
        assert_eq!(at("policies[0]: missing field `name`"), 1, "{p:?}");
        assert_eq!(at("policies[1].scopes: invalid type"), 1, "{p:?}");
        // The third policy keeps its place in the file, both for the unknown field and
        // for the semantic check, although the two before it were set aside.
        assert_eq!(at("policies[2].colour: unknown field"), 1, "{p:?}");
        assert_eq!(at("policies[2].scopes[0]: \"nohost\""), 1, "{p:?}");
        // A genuine problem of a policy with a failed field is still reported; the
        // default put in place of the failed field is not blamed again.
        assert_eq!(
            at("policies[1].verifiers: a policy with action: verify"),
            1,
            "{p:?}"
        );
        assert_eq!(at("policies[1].scopes: a policy needs"), 0, "{p:?}");
        assert_eq!(p.len(), 9, "nothing blamed twice: {p:?}");
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
    fn keyless_verifiers_are_checked_field_by_field() {
        let yaml = |verifier: &str| {
            format!(
                "policies:\n- name: a\n  scopes: [\"r.io/a/*\"]\n  verifiers:\n  - keyless: {verifier}\n"
            )
        };
        let id = "{issuer: https://i, subject: s}";
        assert_eq!(
            problems(&yaml(&format!("{{identities: [{id}]}}"))),
            vec![
                "policies[0].verifiers[0].keyless.trustedRoot: a Sigstore trusted root file is required"
            ]
        );
        assert_eq!(
            problems(&yaml("{trustedRoot: r.json}")),
            vec![
                "policies[0].verifiers[0].keyless: identities: at least one trusted identity is required"
            ]
        );
        let p = problems(&yaml(
            "{trustedRoot: r.json, identities: [{issuer: https://i, subjectRegExp: '(a'}]}",
        ));
        assert!(
            p.len() == 1 && p[0].starts_with("policies[0].verifiers[0].keyless.identities[0]: subjectRegExp: invalid regular expression"),
            "{p:?}"
        );
        let p = problems(&yaml(&format!(
            "{{trustedRoot: r.json, tlog: skip, identities: [{id}]}}"
        )));
        assert!(
            p.len() == 1
                && p[0].starts_with(
                    "policies[0].verifiers[0].keyless: tlog: skip requires tsa: required"
                ),
            "{p:?}"
        );
        let p = problems(&yaml(
            "{trustedRoot: r.json, identities: [{issuer: https://i, subject: s, extensions: {githubWorkflowRepo: x}}]}",
        ));
        assert!(
            p.len() == 1 && p[0].contains("unknown Fulcio extension"),
            "{p:?}"
        );
        let p = problems(&yaml(&format!(
            "{{trustedRoot: r.json, format: oci, identities: [{id}]}}"
        )));
        assert!(p.len() == 1 && p[0].contains("format"), "{p:?}");
        assert_eq!(
            problems(&yaml(&format!(
                "{{trustedRoot: r.json, format: bundle, sct: skip, tsa: required, tlog: skip, identities: [{id}]}}"
            ))),
            Vec::<String>::new()
        );
        let c = Config::parse(
            &yaml(&format!("{{trustedRoot: r.json, identities: [{id}]}}")),
            "t",
            Some(Path::new("/etc/vouch")),
        )
        .expect("valid");
        let files = c.files();
        assert_eq!(files.len(), 1);
        assert_eq!(
            files[0].field,
            "policies[0].verifiers[0].keyless.trustedRoot"
        );
        assert_eq!(files[0].path, PathBuf::from("/etc/vouch/r.json"));
        assert_eq!(files[0].role, FileRole::Trust);
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
