//! Trust policy scopes: which images a policy governs.
//!
//! A scope names a registry host and a repository, either exactly (`ghcr.io/acme/api`) or
//! as a prefix ending in `/*` (`ghcr.io/acme/*`, any depth below). Scopes must start with
//! a registry host, so an image reference can never reach a registry that no policy names.
//! A leaf: the config parses scopes once, when it is read ([`ScopeEntry`]), and policy
//! selection and the registry clients use what it parsed.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a scope does not parse: one sentence quoting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeError(String);

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScopeError {}

/// A parsed policy scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// `host/repo`: exactly this repository.
    Exact(String),
    /// `host/path/*`: every repository whose name starts with `host/path/`.
    Prefix(String),
}

impl Scope {
    /// Parses a scope as written in the config.
    pub fn parse(s: &str) -> Result<Scope, ScopeError> {
        let s = s.trim();
        let (body, wildcard) = match s.strip_suffix("/*") {
            Some(b) => (b, true),
            None => (s, false),
        };
        if body.contains('*') {
            return Err(ScopeError(format!(
                "{s:?}: only a trailing \"/*\" wildcard is supported"
            )));
        }
        let (host, rest) = body.split_once('/').unwrap_or((body, ""));
        if !(host.contains('.') || host.contains(':') || host == "localhost") {
            return Err(ScopeError(format!(
                "{s:?} must start with a registry host (e.g. \"ghcr.io/acme/*\"); {host:?} is not one"
            )));
        }
        if !wildcard && rest.is_empty() {
            return Err(ScopeError(format!(
                "{s:?} names no repository; use {:?}",
                format!("{host}/*")
            )));
        }
        if rest.contains(['@', ':']) || rest.contains("//") {
            return Err(ScopeError(format!(
                "{s:?}: a scope names repositories, not tags or digests"
            )));
        }
        let host = normalize_host(host);
        let joined = if rest.is_empty() {
            host
        } else {
            format!("{host}/{rest}")
        };
        Ok(if wildcard {
            Scope::Prefix(format!("{joined}/"))
        } else {
            Scope::Exact(joined)
        })
    }

    /// The registry host the scope names.
    pub fn host(&self) -> &str {
        let s = match self {
            Scope::Exact(s) | Scope::Prefix(s) => s,
        };
        s.split_once('/').map_or(s.as_str(), |(h, _)| h)
    }

    /// How well this scope covers `name` (`registry/repository`): `None` if it does not,
    /// otherwise a rank where larger is more specific.
    pub fn rank(&self, name: &str) -> Option<usize> {
        match self {
            Scope::Exact(s) => (s == name).then_some(usize::MAX),
            Scope::Prefix(p) => name.starts_with(p.as_str()).then_some(p.len()),
        }
    }
}

/// Hosts compare case-insensitively, and `index.docker.io` is Docker Hub's old name.
fn normalize_host(host: &str) -> String {
    let h = host.to_ascii_lowercase();
    if h == "index.docker.io" {
        "docker.io".to_string()
    } else {
        h
    }
}

/// A scope as the config holds it: the text as written, and what it parsed to. Reading a
/// config never fails on a scope; validation reports the error with its path, so that
/// `vouch config check` lists every bad scope at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeEntry {
    text: String,
    parsed: Result<Scope, ScopeError>,
}

impl ScopeEntry {
    /// Parses `text`.
    pub fn new(text: &str) -> ScopeEntry {
        ScopeEntry {
            text: text.to_string(),
            parsed: Scope::parse(text),
        }
    }

    /// The scope as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The parsed scope, or why it does not parse.
    pub fn scope(&self) -> Result<&Scope, &ScopeError> {
        self.parsed.as_ref()
    }
}

impl<'de> Deserialize<'de> for ScopeEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| ScopeEntry::new(&s))
    }
}

impl Serialize for ScopeEntry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}
