//! Trust policy selection: which policy governs an image (pure; no I/O). The most specific
//! [`Scope`] wins: an exact scope beats every prefix, a longer prefix beats a shorter one.

use crate::config::{Action, PolicyConfig, Require};
use crate::reference::ImageRef;
use crate::scope::Scope;

/// A policy as the verification engine uses it.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub name: String,
    pub action: Action,
    pub require: Require,
}

/// All policies, indexed by scope.
#[derive(Debug, Clone, Default)]
pub(crate) struct PolicySet {
    scopes: Vec<(Scope, usize)>,
    policies: Vec<Policy>,
}

impl PolicySet {
    /// Builds the set from validated config; scopes that do not parse were already reported
    /// by config validation and are skipped here.
    pub(crate) fn new(configs: &[PolicyConfig]) -> PolicySet {
        let mut set = PolicySet::default();
        for (i, p) in configs.iter().enumerate() {
            set.policies.push(Policy {
                name: p.name.clone(),
                action: p.action,
                require: p.require,
            });
            for entry in &p.scopes {
                if let Ok(scope) = entry.scope() {
                    set.scopes.push((scope.clone(), i));
                }
            }
        }
        set
    }

    /// The policy with the most specific scope covering `image`, if any.
    pub(crate) fn select(&self, image: &ImageRef) -> Option<&Policy> {
        let name = image.name();
        self.scopes
            .iter()
            .filter_map(|(scope, i)| scope.rank(&name).map(|r| (r, *i)))
            .max_by_key(|(r, _)| *r)
            .map(|(_, i)| &self.policies[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::Scope;

    fn policy(name: &str, scopes: &[&str]) -> PolicyConfig {
        PolicyConfig {
            name: name.into(),
            scopes: scopes
                .iter()
                .map(|s| crate::scope::ScopeEntry::new(s))
                .collect(),
            require: Require::Any,
            action: Action::Allow,
            verifiers: vec![],
            attestations: vec![],
        }
    }

    fn selected<'a>(set: &'a PolicySet, image: &str) -> Option<&'a str> {
        let r = ImageRef::parse(image).expect("valid reference");
        set.select(&r).map(|p| p.name.as_str())
    }

    #[test]
    fn scope_syntax() {
        assert_eq!(
            Scope::parse("ghcr.io/acme/*"),
            Ok(Scope::Prefix("ghcr.io/acme/".into()))
        );
        assert_eq!(
            Scope::parse("ghcr.io/*"),
            Ok(Scope::Prefix("ghcr.io/".into()))
        );
        assert_eq!(
            Scope::parse("localhost:5000/a"),
            Ok(Scope::Exact("localhost:5000/a".into()))
        );
        assert_eq!(
            Scope::parse("Index.Docker.io/library/*"),
            Ok(Scope::Prefix("docker.io/library/".into()))
        );
        for bad in [
            "*",
            "acme/*",
            "nginx",
            "ghcr.io",
            "ghcr.io/a*/b",
            "ghcr.io/a:1",
            "r.io/a@sha256:x",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn most_specific_scope_wins() {
        let set = PolicySet::new(&[
            policy("all-ghcr", &["ghcr.io/*"]),
            policy("acme", &["ghcr.io/acme/*"]),
            policy("acme-api", &["ghcr.io/acme/api"]),
            policy("library", &["docker.io/library/*"]),
        ]);
        assert_eq!(selected(&set, "ghcr.io/acme/api:1"), Some("acme-api"));
        assert_eq!(selected(&set, "ghcr.io/acme/web:1"), Some("acme"));
        assert_eq!(selected(&set, "ghcr.io/acme/team/deep:1"), Some("acme"));
        assert_eq!(selected(&set, "ghcr.io/other/x"), Some("all-ghcr"));
        assert_eq!(selected(&set, "nginx"), Some("library"));
        assert_eq!(selected(&set, "bitnami/redis"), None);
        assert_eq!(selected(&set, "quay.io/acme/api"), None);
    }

    #[test]
    fn prefix_matches_whole_path_segments_only() {
        let set = PolicySet::new(&[policy("acme", &["ghcr.io/acme/*"])]);
        assert_eq!(selected(&set, "ghcr.io/acme-evil/x"), None);
        assert_eq!(selected(&set, "ghcr.io/acme"), None);
        let set = PolicySet::new(&[policy("exact", &["ghcr.io/acme/api"])]);
        assert_eq!(selected(&set, "ghcr.io/acme/api-v2"), None);
    }

    #[test]
    fn host_with_port_is_its_own_registry() {
        let set = PolicySet::new(&[policy("local", &["localhost:5000/*"])]);
        assert_eq!(selected(&set, "localhost:5000/a/b"), Some("local"));
        assert_eq!(selected(&set, "localhost:5001/a/b"), None);
        assert_eq!(selected(&set, "localhost/a/b"), None);
    }
}
