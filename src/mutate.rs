//! `/v1/mutate`: pins image references to their digests (SPEC §2).
//!
//! The value of each key is a **string**: the key as written, with `@<digest>` appended, so
//! a tag is kept (`ghcr.io/a/b:1.4` → `ghcr.io/a/b:1.4@sha256:…`). The mapping is a fixed
//! point: a key that already carries a digest comes back unchanged, so mutating twice changes
//! nothing. Keys no policy covers get the per-key error `no-policy: …` and keys of
//! `action: allow` policies come back unchanged — neither causes registry traffic. Tag
//! resolutions share the verification engine's tag cache, so the digest pinned is the one
//! that was (or will be) verified within `tagTtl`.

use crate::config::Action;
use crate::engine::{ErrorCode, KeyError, Outcome};
use crate::policy::PolicySet;
use crate::protocol::Json;
use crate::reference::ImageRef;

/// What pinning `key` needs, decided without I/O.
#[derive(Debug, PartialEq)]
pub enum Pin {
    /// The answer is known: the key unchanged, or a per-key error.
    Done(Outcome),
    /// Resolve this tag and append the digest to the key.
    Resolve(ImageRef),
}

/// Settles every key that needs no registry.
pub fn plan(key: &str, policies: &PolicySet) -> Pin {
    let image = match ImageRef::parse(key) {
        Ok(i) => i,
        Err(e) => {
            return Pin::Done(Outcome::Error(KeyError::new(
                ErrorCode::InvalidReference,
                e.to_string(),
            )));
        }
    };
    let Some(policy) = policies.select(&image) else {
        return Pin::Done(Outcome::Error(KeyError::new(
            ErrorCode::NoPolicy,
            format!("no trust policy scope covers {}", image.name()),
        )));
    };
    if image.digest().is_some() || policy.action == Action::Allow {
        return Pin::Done(unchanged(key));
    }
    Pin::Resolve(image)
}

/// The key itself, as the mutation's value.
pub fn unchanged(key: &str) -> Outcome {
    Outcome::Value(Json::new(key))
}

/// The key pinned to `digest`.
pub fn pinned(key: &str, digest: &str) -> Outcome {
    Outcome::Value(Json::new(&format!("{key}@{digest}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn policies() -> PolicySet {
        let c = Config::parse(
            "policies:\n- name: lib\n  scopes: [\"docker.io/library/*\"]\n  action: allow\n- name: acme\n  scopes: [\"ghcr.io/acme/*\"]\n  verifiers:\n  - cosign: {publicKeys: [k.pub]}\n",
            "t",
            None,
        )
        .expect("valid");
        PolicySet::new(&c.policies)
    }

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn digests_and_allow_policies_come_back_unchanged() {
        let p = policies();
        let key = format!("ghcr.io/acme/api:1@{D}");
        assert_eq!(plan(&key, &p), Pin::Done(unchanged(&key)));
        assert_eq!(plan("nginx:1.27", &p), Pin::Done(unchanged("nginx:1.27")));
    }

    #[test]
    fn uncovered_and_invalid_keys_are_per_key_errors() {
        let p = policies();
        match plan("quay.io/x/y:1", &p) {
            Pin::Done(Outcome::Error(e)) => {
                assert_eq!(
                    e.to_string(),
                    "no-policy: no trust policy scope covers quay.io/x/y"
                )
            }
            other => panic!("{other:?}"),
        }
        match plan("Not A Ref", &p) {
            Pin::Done(Outcome::Error(e)) => assert_eq!(e.code, ErrorCode::InvalidReference),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tags_are_resolved_and_pinning_is_a_fixed_point() {
        let p = policies();
        let Pin::Resolve(image) = plan("ghcr.io/acme/api:1.4", &p) else {
            panic!("a tag of a verify policy needs resolving");
        };
        assert_eq!(image.tag(), Some("1.4"));
        let Outcome::Value(v) = pinned("ghcr.io/acme/api:1.4", D) else {
            panic!("a value");
        };
        let once: String = v.parse().expect("string");
        assert_eq!(once, format!("ghcr.io/acme/api:1.4@{D}"));
        assert_eq!(
            plan(&once, &p),
            Pin::Done(unchanged(&once)),
            "mutating twice changes nothing"
        );
    }
}
