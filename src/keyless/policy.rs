//! What a keyless verifier requires: which evidence (log entry, SCT, timestamp) and which
//! signer identities it trusts.
//!
//! An identity rule names the OIDC issuer (`issuer`, or `issuerRegExp`), the certificate
//! subject (`subject`, or `subjectRegExp`, tried against every email and URI SAN of the
//! leaf) and optionally exact values of Fulcio certificate extensions by camelCase name.
//! Any one rule suffices. Regular expressions are **anchored**: they must match the whole
//! value, so `https://github\.com/acme/.*` does not accept
//! `https://evil.example/?https://github.com/acme/x` (cosign's are unanchored).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::certificate::Leaf;
use super::error::KeylessError;

/// Whether a transparency log entry is required (`tlog: required|skip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlogMode {
    /// A log entry with a valid signed entry timestamp or inclusion proof must be present.
    #[default]
    Required,
    /// No log entry needed (GitHub's private instance has none): then an RFC 3161
    /// timestamp must be ([`TsaMode::Required`]). Entries present are still checked.
    Skip,
}

/// Whether a signed certificate timestamp is required (`sct: required|skip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SctMode {
    /// The leaf must embed an SCT from a CT log of the trusted root.
    #[default]
    Required,
    /// No SCT needed (private Fulcio instances without a CT log).
    Skip,
}

/// Whether an RFC 3161 timestamp is required (`tsa: optional|required`). Timestamps present
/// are verified either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TsaMode {
    /// A timestamp is checked when present, not required.
    #[default]
    Optional,
    /// At least one RFC 3161 timestamp from a TSA of the trusted root must be present.
    Required,
}

/// A problem with a keyless policy as configured. The text names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// Fulcio certificate extensions an identity rule can require, by the camelCase name the
/// configuration uses (Fulcio's `docs/oid-info.md`; OID `1.3.6.1.4.1.57264.1.<arc>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FulcioExtension {
    /// `githubWorkflowTrigger` (arc 2): the event that started the workflow.
    GithubWorkflowTrigger,
    /// `githubWorkflowSha` (arc 3): the commit the workflow ran at.
    GithubWorkflowSha,
    /// `githubWorkflowName` (arc 4).
    GithubWorkflowName,
    /// `githubWorkflowRepository` (arc 5).
    GithubWorkflowRepository,
    /// `githubWorkflowRef` (arc 6).
    GithubWorkflowRef,
    /// `buildSignerURI` (arc 9): the build definition that signed, e.g. a workflow file at a ref.
    BuildSignerUri,
    /// `buildSignerDigest` (arc 10).
    BuildSignerDigest,
    /// `runnerEnvironment` (arc 11): `github-hosted` or `self-hosted`.
    RunnerEnvironment,
    /// `sourceRepositoryURI` (arc 12).
    SourceRepositoryUri,
    /// `sourceRepositoryDigest` (arc 13).
    SourceRepositoryDigest,
    /// `sourceRepositoryRef` (arc 14).
    SourceRepositoryRef,
    /// `sourceRepositoryIdentifier` (arc 15).
    SourceRepositoryIdentifier,
    /// `sourceRepositoryOwnerURI` (arc 16).
    SourceRepositoryOwnerUri,
    /// `sourceRepositoryOwnerIdentifier` (arc 17).
    SourceRepositoryOwnerIdentifier,
    /// `buildConfigURI` (arc 18).
    BuildConfigUri,
    /// `buildConfigDigest` (arc 19).
    BuildConfigDigest,
    /// `buildTrigger` (arc 20).
    BuildTrigger,
    /// `runInvocationURI` (arc 21): the run that signed.
    RunInvocationUri,
    /// `sourceRepositoryVisibilityAtSigning` (arc 22): `public` or `private`.
    SourceRepositoryVisibilityAtSigning,
}

impl FulcioExtension {
    /// Every extension, in OID order.
    pub const ALL: [FulcioExtension; 19] = [
        FulcioExtension::GithubWorkflowTrigger,
        FulcioExtension::GithubWorkflowSha,
        FulcioExtension::GithubWorkflowName,
        FulcioExtension::GithubWorkflowRepository,
        FulcioExtension::GithubWorkflowRef,
        FulcioExtension::BuildSignerUri,
        FulcioExtension::BuildSignerDigest,
        FulcioExtension::RunnerEnvironment,
        FulcioExtension::SourceRepositoryUri,
        FulcioExtension::SourceRepositoryDigest,
        FulcioExtension::SourceRepositoryRef,
        FulcioExtension::SourceRepositoryIdentifier,
        FulcioExtension::SourceRepositoryOwnerUri,
        FulcioExtension::SourceRepositoryOwnerIdentifier,
        FulcioExtension::BuildConfigUri,
        FulcioExtension::BuildConfigDigest,
        FulcioExtension::BuildTrigger,
        FulcioExtension::RunInvocationUri,
        FulcioExtension::SourceRepositoryVisibilityAtSigning,
    ];

    /// The last arc of the extension's OID.
    pub fn arc(self) -> u32 {
        match self {
            FulcioExtension::GithubWorkflowTrigger => 2,
            FulcioExtension::GithubWorkflowSha => 3,
            FulcioExtension::GithubWorkflowName => 4,
            FulcioExtension::GithubWorkflowRepository => 5,
            FulcioExtension::GithubWorkflowRef => 6,
            FulcioExtension::BuildSignerUri => 9,
            FulcioExtension::BuildSignerDigest => 10,
            FulcioExtension::RunnerEnvironment => 11,
            FulcioExtension::SourceRepositoryUri => 12,
            FulcioExtension::SourceRepositoryDigest => 13,
            FulcioExtension::SourceRepositoryRef => 14,
            FulcioExtension::SourceRepositoryIdentifier => 15,
            FulcioExtension::SourceRepositoryOwnerUri => 16,
            FulcioExtension::SourceRepositoryOwnerIdentifier => 17,
            FulcioExtension::BuildConfigUri => 18,
            FulcioExtension::BuildConfigDigest => 19,
            FulcioExtension::BuildTrigger => 20,
            FulcioExtension::RunInvocationUri => 21,
            FulcioExtension::SourceRepositoryVisibilityAtSigning => 22,
        }
    }

    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            FulcioExtension::GithubWorkflowTrigger => "githubWorkflowTrigger",
            FulcioExtension::GithubWorkflowSha => "githubWorkflowSha",
            FulcioExtension::GithubWorkflowName => "githubWorkflowName",
            FulcioExtension::GithubWorkflowRepository => "githubWorkflowRepository",
            FulcioExtension::GithubWorkflowRef => "githubWorkflowRef",
            FulcioExtension::BuildSignerUri => "buildSignerURI",
            FulcioExtension::BuildSignerDigest => "buildSignerDigest",
            FulcioExtension::RunnerEnvironment => "runnerEnvironment",
            FulcioExtension::SourceRepositoryUri => "sourceRepositoryURI",
            FulcioExtension::SourceRepositoryDigest => "sourceRepositoryDigest",
            FulcioExtension::SourceRepositoryRef => "sourceRepositoryRef",
            FulcioExtension::SourceRepositoryIdentifier => "sourceRepositoryIdentifier",
            FulcioExtension::SourceRepositoryOwnerUri => "sourceRepositoryOwnerURI",
            FulcioExtension::SourceRepositoryOwnerIdentifier => "sourceRepositoryOwnerIdentifier",
            FulcioExtension::BuildConfigUri => "buildConfigURI",
            FulcioExtension::BuildConfigDigest => "buildConfigDigest",
            FulcioExtension::BuildTrigger => "buildTrigger",
            FulcioExtension::RunInvocationUri => "runInvocationURI",
            FulcioExtension::SourceRepositoryVisibilityAtSigning => {
                "sourceRepositoryVisibilityAtSigning"
            }
        }
    }

    /// The extension a configuration name denotes (see [`FulcioExtension::name`]).
    pub fn from_name(name: &str) -> Option<FulcioExtension> {
        FulcioExtension::ALL.into_iter().find(|e| e.name() == name)
    }
}

/// An exact string or an anchored regular expression.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// The value must equal this string.
    Exact(String),
    /// Matches only the whole value; [`Matcher::regex`] builds it.
    Regex {
        /// The pattern as configured (for display and comparison).
        source: String,
        /// The pattern anchored at both ends.
        regex: regex::Regex,
    },
}

impl Matcher {
    /// An anchored regular expression: `pattern` must match the whole value. The pattern is
    /// first compiled on its own, so it cannot close the anchoring group early
    /// (`a)|(b` is refused rather than becoming `\A(?:a)|(b)\z`).
    pub fn regex(pattern: &str) -> Result<Matcher, regex::Error> {
        regex::Regex::new(pattern)?;
        let regex = regex::Regex::new(&format!(r"\A(?:{pattern})\z"))?;
        Ok(Matcher::Regex {
            source: pattern.to_string(),
            regex,
        })
    }

    /// Whether `value` matches (wholly, for a regular expression).
    pub fn is_match(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(s) => s == value,
            Matcher::Regex { regex, .. } => regex.is_match(value),
        }
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Matcher) -> bool {
        match (self, other) {
            (Matcher::Exact(a), Matcher::Exact(b)) => a == b,
            (Matcher::Regex { source: a, .. }, Matcher::Regex { source: b, .. }) => a == b,
            _ => false,
        }
    }
}

impl Eq for Matcher {}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Matcher::Exact(s) => write!(f, "{s:?}"),
            Matcher::Regex { source, .. } => write!(f, "/{source}/"),
        }
    }
}

/// One `identities[]` entry as written in the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentitySpec {
    /// The OIDC issuer, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The OIDC issuer, as an anchored regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_reg_exp: Option<String>,
    /// The certificate subject (any SAN), exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The certificate subject (any SAN), as an anchored regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_reg_exp: Option<String>,
    /// Fulcio extensions by configuration name, each with the exact value required.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extensions: BTreeMap<String, String>,
}

/// A trusted signer identity: issuer, subject and required extension values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRule {
    /// Matches the certificate's OIDC issuer extension.
    pub issuer: Matcher,
    /// Matches any of the certificate's SANs.
    pub subject: Matcher,
    /// Extension values required exactly, all of them.
    pub extensions: BTreeMap<FulcioExtension, String>,
}

impl IdentityRule {
    /// A rule on issuer and subject alone.
    pub fn new(issuer: Matcher, subject: Matcher) -> IdentityRule {
        IdentityRule {
            issuer,
            subject,
            extensions: BTreeMap::new(),
        }
    }

    /// Also require extension `ext` to equal `value`.
    pub fn with_extension(mut self, ext: FulcioExtension, value: impl Into<String>) -> Self {
        self.extensions.insert(ext, value.into());
        self
    }

    /// Compiles a configured identity. Exactly one of `issuer`/`issuerRegExp` and one of
    /// `subject`/`subjectRegExp`; extension names must be known; the error names the field.
    pub fn from_spec(spec: &IdentitySpec) -> Result<IdentityRule, PolicyError> {
        fn one(
            exact: &Option<String>,
            pattern: &Option<String>,
            name: &str,
        ) -> Result<Matcher, PolicyError> {
            match (exact, pattern) {
                (Some(_), Some(_)) => Err(PolicyError(format!(
                    "{name} and {name}RegExp are exclusive: give one"
                ))),
                (None, None) => Err(PolicyError(format!("{name} or {name}RegExp is required"))),
                (Some(s), None) if s.is_empty() => {
                    Err(PolicyError(format!("{name}: must not be empty")))
                }
                (Some(s), None) => Ok(Matcher::Exact(s.clone())),
                (None, Some(p)) => Matcher::regex(p).map_err(|e| {
                    PolicyError(format!("{name}RegExp: invalid regular expression: {e}"))
                }),
            }
        }
        let issuer = one(&spec.issuer, &spec.issuer_reg_exp, "issuer")?;
        let subject = one(&spec.subject, &spec.subject_reg_exp, "subject")?;
        let mut extensions = BTreeMap::new();
        for (name, value) in &spec.extensions {
            let ext = FulcioExtension::from_name(name).ok_or_else(|| {
                PolicyError(format!(
                    "extensions.{name}: unknown Fulcio extension (known: {})",
                    FulcioExtension::ALL.map(FulcioExtension::name).join(", ")
                ))
            })?;
            extensions.insert(ext, value.clone());
        }
        Ok(IdentityRule {
            issuer,
            subject,
            extensions,
        })
    }

    /// The SAN this rule accepts the leaf for, or why it does not.
    fn accepts<'a>(&self, leaf: &'a Leaf) -> Result<&'a str, String> {
        let Some(issuer) = leaf.issuer.as_deref() else {
            return Err("the certificate names no OIDC issuer".to_string());
        };
        if !self.issuer.is_match(issuer) {
            return Err(format!("issuer {issuer:?} does not match {}", self.issuer));
        }
        let Some(san) = leaf.sans.iter().find(|s| self.subject.is_match(s)) else {
            return Err(format!("no SAN matches subject {}", self.subject));
        };
        for (ext, want) in &self.extensions {
            match leaf.extensions.get(&ext.arc()) {
                Some(have) if have == want => {}
                Some(have) => {
                    return Err(format!("{} is {have:?}, not {want:?}", ext.name()));
                }
                None => return Err(format!("the certificate has no {}", ext.name())),
            }
        }
        Ok(san)
    }
}

/// A keyless verifier's requirements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeylessPolicy {
    tlog: TlogMode,
    sct: SctMode,
    tsa: TsaMode,
    identities: Vec<IdentityRule>,
}

impl KeylessPolicy {
    /// The defaults (`tlog: required`, `sct: required`, `tsa: optional`) with `identities`.
    pub fn new(identities: Vec<IdentityRule>) -> Result<KeylessPolicy, PolicyError> {
        KeylessPolicy::with_modes(
            TlogMode::default(),
            SctMode::default(),
            TsaMode::default(),
            identities,
        )
    }

    /// At least one identity; `tlog: skip` only with `tsa: required` (a signature needs a
    /// verified time, and without a log only a timestamp authority gives one).
    pub fn with_modes(
        tlog: TlogMode,
        sct: SctMode,
        tsa: TsaMode,
        identities: Vec<IdentityRule>,
    ) -> Result<KeylessPolicy, PolicyError> {
        if identities.is_empty() {
            return Err(PolicyError(
                "identities: at least one trusted identity is required".to_string(),
            ));
        }
        if tlog == TlogMode::Skip && tsa != TsaMode::Required {
            return Err(PolicyError(
                "tlog: skip requires tsa: required (without a log entry only a timestamp authority proves when the certificate was used)".to_string(),
            ));
        }
        Ok(KeylessPolicy {
            tlog,
            sct,
            tsa,
            identities,
        })
    }

    /// Whether a log entry is required.
    pub fn tlog(&self) -> TlogMode {
        self.tlog
    }

    /// Whether an SCT is required.
    pub fn sct(&self) -> SctMode {
        self.sct
    }

    /// Whether an RFC 3161 timestamp is required.
    pub fn tsa(&self) -> TsaMode {
        self.tsa
    }

    /// The trusted identities, any one of which suffices.
    pub fn identities(&self) -> &[IdentityRule] {
        &self.identities
    }

    /// The (SAN, issuer) of the first rule that accepts the leaf.
    pub(crate) fn authorize(&self, leaf: &Leaf) -> Result<(String, String), KeylessError> {
        let mut why = Vec::new();
        for (i, rule) in self.identities.iter().enumerate() {
            match rule.accepts(leaf) {
                Ok(san) => {
                    return Ok((san.to_string(), leaf.issuer.clone().unwrap_or_default()));
                }
                Err(e) => why.push(format!("identity {}: {e}", i + 1)),
            }
        }
        Err(KeylessError::Identity(format!(
            "signer {} (issuer {}) is not a trusted identity: {}",
            if leaf.sans.is_empty() {
                "without SAN".to_string()
            } else {
                leaf.sans.join(", ")
            },
            leaf.issuer.as_deref().unwrap_or("none"),
            why.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GHA: &str = "https://token.actions.githubusercontent.com";
    const SAN: &str = "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.0.0";

    fn leaf(sans: &[&str], issuer: Option<&str>, ext: &[(u32, &str)]) -> Leaf {
        Leaf {
            sans: sans.iter().map(|s| s.to_string()).collect(),
            issuer: issuer.map(str::to_string),
            extensions: ext.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            not_before: 0,
            not_after: 1,
        }
    }

    fn spec(yaml: &str) -> IdentitySpec {
        serde_yaml_ng::from_str(yaml).expect("identity yaml")
    }

    fn policy(rules: &[&str]) -> KeylessPolicy {
        KeylessPolicy::new(
            rules
                .iter()
                .map(|y| IdentityRule::from_spec(&spec(y)).expect("rule"))
                .collect(),
        )
        .expect("policy")
    }

    #[test]
    fn regular_expressions_are_anchored() {
        let p = policy(&[
            r"{issuer: 'https://token.actions.githubusercontent.com', subjectRegExp: 'https://github\.com/acme/[^/]+/\.github/workflows/release\.yml@refs/tags/v.*'}",
        ]);
        assert!(p.authorize(&leaf(&[SAN], Some(GHA), &[])).is_ok());
        // Prefix, suffix and embedding tricks that an unanchored search would accept.
        for evil in [
            &format!("https://evil.example/?{SAN}"),
            &format!("{SAN}\nhttps://evil.example"),
            "xhttps://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1",
        ] {
            let e = p.authorize(&leaf(&[evil], Some(GHA), &[])).expect_err(evil);
            assert_eq!(e.code(), crate::verdict::VerdictCode::UntrustedSigner);
        }
        let issuer = policy(&[
            r"{issuerRegExp: 'https://token\.actions\.githubusercontent\.com', subject: x}",
        ]);
        assert!(issuer.authorize(&leaf(&["x"], Some(GHA), &[])).is_ok());
        assert!(
            issuer
                .authorize(&leaf(
                    &["x"],
                    Some("https://token.actions.githubusercontent.com.evil.example"),
                    &[]
                ))
                .is_err()
        );
        // An alternation stays inside the anchors.
        let alt = Matcher::regex("a|b").expect("regex");
        assert!(alt.is_match("a") && alt.is_match("b") && !alt.is_match("ab"));
        // A pattern that would close the anchoring group is refused.
        assert!(Matcher::regex("a)|(b").is_err());
        // Flags inside the pattern do not unanchor it.
        let m = Matcher::regex("(?m)a").expect("regex");
        assert!(!m.is_match("a\nb"));
    }

    #[test]
    fn every_san_is_tried_and_the_matching_one_reported() {
        let p = policy(&["{issuer: 'https://accounts.example', subject: 'me@example.com'}"]);
        let (san, issuer) = p
            .authorize(&leaf(
                &["https://other.example", "me@example.com"],
                Some("https://accounts.example"),
                &[],
            ))
            .expect("second SAN matches");
        assert_eq!(san, "me@example.com");
        assert_eq!(issuer, "https://accounts.example");
        assert!(
            p.authorize(&leaf(&[], Some("https://accounts.example"), &[]))
                .is_err()
        );
    }

    #[test]
    fn any_rule_suffices_and_extensions_must_match_exactly() {
        let p = policy(&[
            "{issuer: 'https://a.example', subject: x}",
            &format!(
                "{{issuer: '{GHA}', subjectRegExp: '.*', extensions: {{githubWorkflowRepository: acme/app, sourceRepositoryURI: 'https://github.com/acme/app', runnerEnvironment: github-hosted}}}}"
            ),
        ]);
        let good = [
            (5, "acme/app"),
            (12, "https://github.com/acme/app"),
            (11, "github-hosted"),
        ];
        assert!(p.authorize(&leaf(&[SAN], Some(GHA), &good)).is_ok());
        let forked = [
            (5, "acme/app-fork"),
            (12, "https://github.com/acme/app"),
            (11, "github-hosted"),
        ];
        let e = p
            .authorize(&leaf(&[SAN], Some(GHA), &forked))
            .expect_err("another repository");
        assert!(e.detail().contains("githubWorkflowRepository"), "{e}");
        let self_hosted = [
            (5, "acme/app"),
            (12, "https://github.com/acme/app"),
            (11, "self-hosted"),
        ];
        assert!(p.authorize(&leaf(&[SAN], Some(GHA), &self_hosted)).is_err());
        let missing = [(5, "acme/app")];
        assert!(p.authorize(&leaf(&[SAN], Some(GHA), &missing)).is_err());
        assert!(
            p.authorize(&leaf(&["x"], Some("https://a.example"), &[]))
                .is_ok()
        );
        assert!(
            p.authorize(&leaf(&["x"], None, &[])).is_err(),
            "no issuer at all"
        );
    }

    #[test]
    fn configuration_mistakes_name_the_field() {
        for (yaml, field) in [
            ("{subject: x}", "issuer"),
            ("{issuer: i}", "subject"),
            ("{issuer: i, issuerRegExp: i, subject: x}", "issuerRegExp"),
            ("{issuer: i, subjectRegExp: '(', }", "subjectRegExp"),
            ("{issuer: '', subject: x}", "issuer"),
            (
                "{issuer: i, subject: x, extensions: {githubRepo: a}}",
                "extensions.githubRepo",
            ),
        ] {
            let e = IdentityRule::from_spec(&spec(yaml)).expect_err(yaml);
            assert!(e.0.contains(field), "{yaml}: {e}");
        }
        let rule = IdentityRule::from_spec(&spec("{issuer: i, subject: s}")).expect("rule");
        assert!(KeylessPolicy::new(vec![]).is_err());
        let e = KeylessPolicy::with_modes(
            TlogMode::Skip,
            SctMode::Required,
            TsaMode::Optional,
            vec![rule.clone()],
        )
        .expect_err("tlog skip without tsa");
        assert!(e.0.contains("tsa: required"), "{e}");
        assert!(
            KeylessPolicy::with_modes(TlogMode::Skip, SctMode::Skip, TsaMode::Required, vec![rule])
                .is_ok()
        );
        let modes: (TlogMode, SctMode, TsaMode) =
            serde_yaml_ng::from_str("[skip, skip, required]").expect("modes");
        assert_eq!(modes, (TlogMode::Skip, SctMode::Skip, TsaMode::Required));
    }

    #[test]
    fn extension_names_round_trip() {
        for ext in FulcioExtension::ALL {
            assert_eq!(FulcioExtension::from_name(ext.name()), Some(ext));
        }
        for (name, arc) in [
            ("githubWorkflowRepository", 5),
            ("sourceRepositoryURI", 12),
            ("sourceRepositoryRef", 14),
            ("sourceRepositoryOwnerURI", 16),
            ("buildSignerURI", 9),
            ("runnerEnvironment", 11),
        ] {
            assert_eq!(FulcioExtension::from_name(name).map(|e| e.arc()), Some(arc));
        }
    }
}
