//! Trust policy selection: which policy governs an image, for a key from which namespace
//! (pure; no I/O).
//!
//! The candidates are the policies whose scope covers the image and that apply to the
//! key's namespace: every cluster-wide policy, and the namespaced policies naming that
//! namespace (a key without a namespace sees cluster-wide policies only). Among them the
//! most specific [`Scope`] wins — an exact scope beats every prefix, a longer prefix beats a
//! shorter one; at equal specificity a namespaced policy beats a cluster-wide one, an exact
//! namespace name beats a glob and a longer glob a shorter one; a complete tie goes to the
//! policy written first (config validation refuses the same scope for the same namespaces
//! twice).

use crate::config::{Action, Platforms, PolicyConfig, Require};
use crate::reference::ImageRef;
use crate::scope::Scope;

/// A policy as the verification engine uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Policy {
    pub name: String,
    pub action: Action,
    pub require: Require,
    pub platforms: Platforms,
    /// The namespaces it applies to; empty: cluster-wide.
    pub namespaces: Vec<String>,
    /// Whether it carries its own registry credentials.
    pub has_credentials: bool,
}

impl Policy {
    /// How specifically this policy applies to `namespace` (`None`: it does not); a
    /// cluster-wide policy applies everywhere, least specifically.
    fn applies_to(&self, namespace: Option<&str>) -> Option<(bool, (bool, usize))> {
        if self.namespaces.is_empty() {
            return Some((false, (false, 0)));
        }
        let ns = namespace?;
        self.namespaces
            .iter()
            .filter(|p| crate::namespace::matches(p, ns))
            .map(|p| (true, crate::namespace::specificity(p)))
            .max()
    }
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
                platforms: p.platforms,
                namespaces: p.namespaces.clone(),
                has_credentials: p.credentials.is_some(),
            });
            for entry in &p.scopes {
                if let Ok(scope) = entry.scope() {
                    set.scopes.push((scope.clone(), i));
                }
            }
        }
        set
    }

    /// The policy governing `image` for a key from `namespace` (`None`: a cluster-wide
    /// key), if any.
    pub(crate) fn select(&self, image: &ImageRef, namespace: Option<&str>) -> Option<&Policy> {
        let name = image.name();
        self.scopes
            .iter()
            .filter_map(|(scope, i)| {
                let scope_rank = scope.rank(&name)?;
                let ns_rank = self.policies[*i].applies_to(namespace)?;
                // Earlier policies win complete ties: `max_by_key` keeps the last maximum,
                // so the index counts down.
                Some(((scope_rank, ns_rank, std::cmp::Reverse(*i)), *i))
            })
            .max_by_key(|(rank, _)| *rank)
            .map(|(_, i)| &self.policies[i])
    }

    /// A namespaced policy that covers `image` — for explaining why a request without a
    /// namespace (`/v1/mutate`) finds no policy.
    pub(crate) fn covering(&self, image: &ImageRef) -> Option<&Policy> {
        let name = image.name();
        self.scopes
            .iter()
            .filter(|(scope, _)| scope.rank(&name).is_some())
            .map(|(_, i)| &self.policies[*i])
            .find(|p| !p.namespaces.is_empty())
    }

    /// A namespaced policy with its own credentials that covers `image` — for explaining
    /// why a request without a namespace (`/v1/mutate`) cannot reach it.
    pub(crate) fn namespaced_with_credentials(&self, image: &ImageRef) -> Option<&Policy> {
        let name = image.name();
        self.scopes
            .iter()
            .filter(|(scope, _)| scope.rank(&name).is_some())
            .map(|(_, i)| &self.policies[*i])
            .find(|p| p.has_credentials)
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
            ..PolicyConfig::default()
        }
    }

    fn selected<'a>(set: &'a PolicySet, image: &str) -> Option<&'a str> {
        let r = ImageRef::parse(image).expect("valid reference");
        set.select(&r, None).map(|p| p.name.as_str())
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

    fn namespaced(name: &str, scopes: &[&str], namespaces: &[&str]) -> PolicyConfig {
        PolicyConfig {
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            ..policy(name, scopes)
        }
    }

    fn selected_in<'a>(set: &'a PolicySet, image: &str, ns: Option<&str>) -> Option<&'a str> {
        let r = ImageRef::parse(image).expect("valid reference");
        set.select(&r, ns).map(|p| p.name.as_str())
    }

    #[test]
    fn namespaced_policies_apply_only_to_their_namespaces() {
        let set = PolicySet::new(&[
            policy("cluster", &["ghcr.io/acme/*"]),
            namespaced("team-a", &["ghcr.io/acme/*"], &["team-a"]),
            namespaced("team-b", &["ghcr.io/acme/*"], &["team-b-*"]),
            namespaced("b-dev", &["ghcr.io/acme/*"], &["team-b-dev"]),
            namespaced("only-c", &["ghcr.io/c/*"], &["team-c"]),
        ]);
        let img = "ghcr.io/acme/app:1";
        assert_eq!(selected_in(&set, img, None), Some("cluster"));
        assert_eq!(selected_in(&set, img, Some("team-a")), Some("team-a"));
        assert_eq!(selected_in(&set, img, Some("team-b-prod")), Some("team-b"));
        assert_eq!(
            selected_in(&set, img, Some("team-b-dev")),
            Some("b-dev"),
            "exact name beats glob"
        );
        assert_eq!(selected_in(&set, img, Some("team-z")), Some("cluster"));
        assert_eq!(
            selected_in(&set, "ghcr.io/c/x:1", Some("team-a")),
            None,
            "never leaks"
        );
        assert_eq!(selected_in(&set, "ghcr.io/c/x:1", None), None);
        assert_eq!(
            selected_in(&set, "ghcr.io/c/x:1", Some("team-c")),
            Some("only-c")
        );
    }

    #[test]
    fn scope_specificity_comes_before_namespace() {
        let set = PolicySet::new(&[
            policy("api", &["ghcr.io/acme/api"]),
            namespaced("team-a", &["ghcr.io/acme/*"], &["team-a"]),
        ]);
        assert_eq!(
            selected_in(&set, "ghcr.io/acme/api:1", Some("team-a")),
            Some("api")
        );
        assert_eq!(
            selected_in(&set, "ghcr.io/acme/web:1", Some("team-a")),
            Some("team-a")
        );
    }
}
