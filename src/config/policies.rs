//! The trust side of the config: registries (how to reach them) and policies (what they
//! must prove). Each list checks itself ([`Problems`] collects what is wrong, with its
//! path).

use std::collections::HashSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Problems, check_host};
use crate::keyless::{IdentityRule, IdentitySpec, KeylessPolicy, SctMode, TlogMode, TsaMode};
use crate::scope::ScopeEntry;

/// Per-registry settings. A registry is contacted only if a policy scope names it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryConfig {
    /// `host` or `host:port`, as it appears in image references.
    pub host: String,
    /// Speak HTTP rather than HTTPS (a registry on a loopback address in tests or a sidecar).
    #[serde(default)]
    pub plain_http: bool,
    /// Basic-auth user name (with `passwordFile`).
    #[serde(default)]
    pub username: String,
    /// File holding the password; read again at every reload.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// A docker `config.json` whose `auths` entry for this host supplies the credentials.
    #[serde(default)]
    pub docker_config: Option<PathBuf>,
    /// Concurrent requests to this registry at most.
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

/// How a policy combines its verifiers.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Require {
    /// One verifier passing is enough.
    #[default]
    Any,
    /// Every verifier must pass.
    All,
}

/// What a policy does with the images it governs.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Verify signatures with the policy's verifiers.
    #[default]
    Verify,
    /// Admit without verification (verdict `verified: true`, no signatures).
    Allow,
}

/// One trust policy: the images it governs and how they are verified.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyConfig {
    /// The name reports and cache keys use.
    pub name: String,
    /// Parsed once, when the config is read; errors are reported by validation.
    #[serde(default)]
    pub scopes: Vec<ScopeEntry>,
    /// The namespaces the policy applies to (names, or globs with `*`); empty: cluster-wide.
    /// A namespaced policy applies only to keys carrying one of these namespaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Registry credentials used instead of the registry's own for keys this policy is
    /// selected for (namespaced policies only: a tenant's credentials for its images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<PolicyCredentials>,
    /// What must be signed when the image's digest is an index.
    #[serde(default)]
    pub platforms: Platforms,
    /// `any` (default) or `all` of the verifiers.
    #[serde(default)]
    pub require: Require,
    /// `verify` (default) or `allow`.
    #[serde(default)]
    pub action: Action,
    /// The verifiers, when `action: verify`.
    #[serde(default)]
    pub verifiers: Vec<VerifierConfig>,
    /// In-toto attestations the image must also carry, verified by the verifiers above
    /// before they are read, each judged by a Rego policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<AttestationConfig>,
}

/// A namespaced policy's own registry credentials.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyCredentials {
    /// Basic-auth user name (with `passwordFile`).
    #[serde(default)]
    pub username: String,
    /// File holding the password; read again at every reload.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// A docker `config.json` whose `auths` entries supply the credentials.
    #[serde(default)]
    pub docker_config: Option<PathBuf>,
}

/// What must be signed when an image's digest is an index (a multi-platform image).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Platforms {
    /// A signature on the index itself.
    #[default]
    Index,
    /// Every platform manifest of the index, each with its own signature.
    Each,
    /// The index's signature, or else every platform's.
    IndexOrEach,
}

/// A required attestation (SPEC §4 `attestations`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestationConfig {
    /// The in-toto predicate type, compared exactly.
    #[serde(default)]
    pub predicate_type: String,
    /// A Rego v1 module; vouch evaluates `data.<its package>.deny`, a set of messages.
    #[serde(default)]
    pub policy: Option<PathBuf>,
    /// `any`: one verified attestation of the type passing suffices; `all`: every one
    /// must pass.
    #[serde(default)]
    pub require: Require,
    /// Parameters handed to the module as `input.params` (the shipped policies read their
    /// settings there), so one module serves several policies.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub params: serde_json::Value,
}

/// One verifier of a policy, written as a single-key map: `- cosign: {...}` or
/// `- notation: {...}`. Parsed as a struct of optional fields (YAML libraries disagree on
/// how externally tagged enums are spelled) and turned into [`Verifier`] by [`Self::kind`].
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifierConfig {
    /// `cosign: {publicKeys: […]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cosign: Option<CosignVerifierConfig>,
    /// `notation: {trustStore: […], trustedIdentities: […]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notation: Option<NotationVerifierConfig>,
    /// `keyless: {trustedRoot: …, identities: […]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyless: Option<KeylessVerifierConfig>,
}

/// A verifier, once exactly one kind was given.
#[derive(Clone, Copy, Debug)]
pub enum Verifier<'a> {
    /// A cosign key-based verifier.
    Cosign(&'a CosignVerifierConfig),
    /// A Notary Project verifier.
    Notation(&'a NotationVerifierConfig),
    /// A Sigstore keyless verifier.
    Keyless(&'a KeylessVerifierConfig),
}

impl VerifierConfig {
    /// A cosign verifier entry.
    pub fn cosign(c: CosignVerifierConfig) -> Self {
        VerifierConfig {
            cosign: Some(c),
            ..VerifierConfig::default()
        }
    }

    /// The verifier's kind; `None` unless exactly one kind is set (validation reports it).
    pub fn kind(&self) -> Option<Verifier<'_>> {
        match (&self.cosign, &self.notation, &self.keyless) {
            (Some(c), None, None) => Some(Verifier::Cosign(c)),
            (None, Some(n), None) => Some(Verifier::Notation(n)),
            (None, None, Some(k)) => Some(Verifier::Keyless(k)),
            _ => None,
        }
    }
}

/// A cosign verifier: signatures must verify with one of these public keys.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CosignVerifierConfig {
    /// PEM public keys (ECDSA P-256/P-384, RSA, Ed25519).
    #[serde(default)]
    pub public_keys: Vec<PathBuf>,
}

/// A Notary Project verifier: a trust store and the identities trusted within it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotationVerifierConfig {
    /// PEM CA or signing certificates a signing chain must end in.
    #[serde(default)]
    pub trust_store: Vec<PathBuf>,
    /// Trusted subjects as RFC 4514 distinguished names, or `*`.
    #[serde(default)]
    pub trusted_identities: Vec<String>,
    /// PEM certificates of the RFC 3161 timestamp authorities whose timestamps count
    /// (notation's trust store of type `tsa`).
    #[serde(default)]
    pub tsa_store: Vec<PathBuf>,
    /// Which checks are enforced, logged or skipped (notation's `level`).
    #[serde(default)]
    pub level: NotationLevel,
    /// Per-check changes to the level's defaults.
    #[serde(default)]
    pub r#override: NotationOverride,
    /// When a signature's timestamp must be verified.
    #[serde(default)]
    pub verify_timestamp: VerifyTimestamp,
    /// The only hosts OCSP responders and CRL distribution points may be fetched from
    /// (host names, any port); empty: revocation is not checked.
    #[serde(default)]
    pub revocation_hosts: Vec<String>,
}

/// A Notary Project verification level (notation's trust policy `level`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum NotationLevel {
    /// Every check enforced.
    #[default]
    Strict,
    /// Integrity and authenticity enforced; expiry, revocation and the timestamp logged.
    Permissive,
    /// Integrity enforced; the rest logged.
    Audit,
    /// Nothing checked: any image the policy covers passes this verifier, signed or not.
    Skip,
}

/// What happens when one check fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CheckAction {
    /// The signature fails.
    Enforce,
    /// The failure is reported beside a passing signature.
    Log,
    /// The check is not made.
    Skip,
}

/// Per-check overrides (`override: {revocation: log}`); integrity cannot be overridden.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotationOverride {
    /// The chain leads to the trust store and the signer is a trusted identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authenticity: Option<CheckAction>,
    /// Certificates valid at the (authentic) signing time, signature not expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<CheckAction>,
    /// No certificate of the chain revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<CheckAction>,
    /// A timestamp, where one is needed, is authentic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentic_timestamp: Option<CheckAction>,
    /// Not overridable; present so that the attempt gets a clear error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<CheckAction>,
}

/// When a Notary Project timestamp is verified (notation's `verifyTimestamp`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum VerifyTimestamp {
    /// Whenever the signature carries one.
    Always,
    /// Only once the signing certificate has expired (until then, verification time).
    #[default]
    AfterCertExpiry,
}

/// A Sigstore keyless verifier (SPEC §4 `keyless`): Fulcio identities, proven by a log
/// entry or a timestamp, checked offline against a trusted root the operator supplies.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeylessVerifierConfig {
    /// Sigstore TrustedRoot JSON (v0.1 or v0.2): CAs, logs, CT logs, TSAs. Required.
    #[serde(default)]
    pub trusted_root: Option<PathBuf>,
    /// Where signatures are looked for: the legacy `.sig` tag, bundle referrers, or both.
    #[serde(default)]
    pub format: KeylessFormat,
    /// Whether a transparency-log entry is required.
    #[serde(default)]
    pub tlog: TlogMode,
    /// Whether a signed certificate timestamp is required.
    #[serde(default)]
    pub sct: SctMode,
    /// Whether an RFC 3161 timestamp is required.
    #[serde(default)]
    pub tsa: TsaMode,
    /// The trusted identities, any one of which suffices. Required.
    #[serde(default)]
    pub identities: Vec<IdentitySpec>,
}

impl KeylessVerifierConfig {
    /// The identity rules and evidence requirements, compiled; the error names the field
    /// relative to the verifier (empty when the message names it).
    pub fn policy(&self) -> Result<KeylessPolicy, (String, String)> {
        let mut rules = Vec::with_capacity(self.identities.len());
        for (i, spec) in self.identities.iter().enumerate() {
            rules.push(
                IdentityRule::from_spec(spec)
                    .map_err(|e| (format!("identities[{i}]"), e.to_string()))?,
            );
        }
        KeylessPolicy::with_modes(self.tlog, self.sct, self.tsa, rules)
            .map_err(|e| (String::new(), e.to_string()))
    }
}

/// Where a keyless verifier looks for signatures.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeylessFormat {
    /// The `sha256-<hex>.sig` tag's layers with certificate annotations (cosign ≤ v2).
    Legacy,
    /// Sigstore bundles attached as OCI referrers (cosign v3, GitHub artifact attestations).
    Bundle,
    /// Both.
    #[default]
    Any,
}

impl KeylessFormat {
    /// Whether the `.sig` tag is read.
    pub fn legacy(self) -> bool {
        matches!(self, KeylessFormat::Legacy | KeylessFormat::Any)
    }

    /// Whether bundle referrers are read.
    pub fn bundles(self) -> bool {
        matches!(self, KeylessFormat::Bundle | KeylessFormat::Any)
    }
}

/// Checks the `registries` list: hosts, no host twice, credentials given one way.
pub(super) fn check_registries(registries: &[RegistryConfig], p: &mut Problems) {
    let mut hosts = HashSet::new();
    for (i, r) in registries.iter().enumerate() {
        let at = format!("registries[{i}]");
        if let Err(why) = check_host(&r.host) {
            p.bad(format!("{at}.host"), why);
        } else if !hosts.insert(r.host.to_ascii_lowercase()) {
            p.bad(
                format!("{at}.host"),
                format!("registry {:?} is configured twice", r.host),
            );
        }
        p.nonzero(&at, &[("maxConcurrency", r.max_concurrency)]);
        if !r.username.is_empty() && r.password_file.is_none() {
            p.bad(
                format!("{at}.passwordFile"),
                "required when username is set",
            );
        }
        if !r.username.is_empty() && r.docker_config.is_some() {
            p.bad(
                format!("{at}.dockerConfig"),
                "give either username/passwordFile or dockerConfig, not both",
            );
        }
    }
}

/// Checks the `policies` list: names, scopes (parsed when the config was read; a scope
/// belongs to one policy), and verifiers that fit the action.
pub(super) fn check_policies(policies: &[PolicyConfig], p: &mut Problems) {
    let mut names = HashSet::new();
    let mut scopes = HashSet::new();
    for (i, pol) in policies.iter().enumerate() {
        let at = format!("policies[{i}]");
        if pol.name.trim().is_empty() {
            p.bad(format!("{at}.name"), "must not be empty");
        } else if !names.insert(pol.name.as_str()) {
            p.bad(
                format!("{at}.name"),
                format!("policy name {:?} is used twice", pol.name),
            );
        }
        if pol.scopes.is_empty() {
            p.bad(format!("{at}.scopes"), "a policy needs at least one scope");
        }
        // Policies may share a scope when they apply to different namespaces; the same
        // scope for the same namespaces (or cluster-wide) twice would be a coin toss.
        let mut applies_to: Vec<&str> = pol.namespaces.iter().map(String::as_str).collect();
        applies_to.sort_unstable();
        for (j, s) in pol.scopes.iter().enumerate() {
            match s.scope() {
                Err(why) => p.bad(format!("{at}.scopes[{j}]"), why.to_string()),
                Ok(_) if !scopes.insert((s.text(), applies_to.join(","))) => p.bad(
                    format!("{at}.scopes[{j}]"),
                    format!(
                        "scope {:?} belongs to more than one policy for the same namespaces",
                        s.text()
                    ),
                ),
                Ok(_) => {}
            }
        }
        match pol.action {
            Action::Allow if !pol.verifiers.is_empty() => p.bad(
                format!("{at}.verifiers"),
                "a policy with action: allow takes no verifiers",
            ),
            Action::Verify if pol.verifiers.is_empty() => p.bad(
                format!("{at}.verifiers"),
                "a policy with action: verify needs at least one verifier",
            ),
            _ => {}
        }
        for (j, ns) in pol.namespaces.iter().enumerate() {
            if !crate::namespace::is_pattern(ns) {
                p.bad(
                    format!("{at}.namespaces[{j}]"),
                    format!(
                        "{ns:?} is not a namespace name or a glob of one (a-z, 0-9, \"-\", \"*\")"
                    ),
                );
            }
        }
        if let Some(c) = &pol.credentials {
            if pol.namespaces.is_empty() {
                p.bad(
                    format!("{at}.credentials"),
                    "only a namespaced policy has its own credentials (cluster-wide ones belong in registries)",
                );
            }
            match (c.username.is_empty(), &c.password_file, &c.docker_config) {
                (false, Some(_), None) | (true, None, Some(_)) => {}
                (false, None, _) => p.bad(
                    format!("{at}.credentials.passwordFile"),
                    "required when username is set",
                ),
                _ => p.bad(
                    format!("{at}.credentials"),
                    "give either username/passwordFile or dockerConfig",
                ),
            }
        }
        if pol.action == Action::Allow && !pol.attestations.is_empty() {
            p.bad(
                format!("{at}.attestations"),
                "a policy with action: allow reads no attestations",
            );
        }
        for (j, a) in pol.attestations.iter().enumerate() {
            let aat = format!("{at}.attestations[{j}]");
            if a.predicate_type.trim().is_empty() {
                p.bad(format!("{aat}.predicateType"), "required (an exact URI)");
            }
            if a.policy.is_none() {
                p.bad(format!("{aat}.policy"), "a Rego module file is required");
            }
            if !(a.params.is_null() || a.params.is_object()) {
                p.bad(format!("{aat}.params"), "must be a map");
            }
        }
        for (j, v) in pol.verifiers.iter().enumerate() {
            let vat = format!("{at}.verifiers[{j}]");
            match v.kind() {
                None => p.bad(vat, "give exactly one of `cosign`, `notation` or `keyless`"),
                Some(Verifier::Keyless(k)) => {
                    if k.trusted_root.is_none() {
                        p.bad(
                            format!("{vat}.keyless.trustedRoot"),
                            "a Sigstore trusted root file is required",
                        );
                    }
                    match k.policy() {
                        Err((field, why)) if field.is_empty() => {
                            p.bad(format!("{vat}.keyless"), why)
                        }
                        Err((field, why)) => p.bad(format!("{vat}.keyless.{field}"), why),
                        Ok(_) => {}
                    }
                }
                Some(Verifier::Cosign(c)) if c.public_keys.is_empty() => p.bad(
                    format!("{vat}.cosign.publicKeys"),
                    "at least one public key is required",
                ),
                Some(Verifier::Notation(n)) => {
                    if n.trust_store.is_empty() {
                        p.bad(
                            format!("{vat}.notation.trustStore"),
                            "at least one certificate file is required",
                        );
                    }
                    if n.trusted_identities.is_empty() {
                        p.bad(
                            format!("{vat}.notation.trustedIdentities"),
                            "at least one identity (or \"*\") is required",
                        );
                    }
                    if n.r#override.integrity.is_some() {
                        p.bad(
                            format!("{vat}.notation.override.integrity"),
                            "integrity is always enforced and cannot be overridden",
                        );
                    }
                    if n.level == NotationLevel::Skip && n.r#override != NotationOverride::default()
                    {
                        p.bad(
                            format!("{vat}.notation.override"),
                            "level skip checks nothing; overrides need another level",
                        );
                    }
                    for (k, h) in n.revocation_hosts.iter().enumerate() {
                        if h.is_empty() || h.contains(['/', ':', '@', ' ']) {
                            p.bad(
                                format!("{vat}.notation.revocationHosts[{k}]"),
                                "a host name (no scheme, port or path)",
                            );
                        }
                    }
                }
                _ => {}
            }
        }
    }
}
