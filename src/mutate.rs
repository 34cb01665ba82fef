//! `/v1/mutate`: pins image references to their digests (SPEC §2) — the whole behaviour:
//! [`plan`], the pure front half, and [`MutateEngine`], which resolves what `plan` leaves
//! with the verification engine's [`VerifyEngine::resolve`].
//!
//! The value of each key is a **string**: the key as written, with `@<digest>` appended, so
//! a tag is kept (`ghcr.io/a/b:1.4` → `ghcr.io/a/b:1.4@sha256:…`). The mapping is a fixed
//! point: a key that already carries a digest comes back unchanged, so mutating twice changes
//! nothing. Keys no policy covers get the per-key error `no-policy: …` and keys of
//! `action: allow` policies come back unchanged — neither causes registry traffic. Tag
//! resolutions share the verification engine's tag cache, so the digest pinned is the one
//! that was (or will be) verified within `tagTtl`.
//!
//! Mutation has no namespace: Gatekeeper's mutation requests carry only the value (its
//! issue #3376), so only cluster-wide policies and the registries' own credentials pin. An
//! image only namespaced policies cover gets `no-policy`, and one only a namespaced
//! policy's credentials can read gets an `auth` error that says so — never a silent skip.

use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::config::Action;
use crate::engine::{Engine, ErrorCode, KeyError, Outcome};
use crate::policy::{Policy, PolicySet};
use crate::protocol::Json;
use crate::reference::ImageRef;
use crate::reload::EngineSlot;
use crate::verdict::VerdictCode;
use crate::verify::{Failure, Resolution, VerifyEngine, classify};

/// What pinning `key` needs, decided without I/O.
#[derive(Debug, PartialEq)]
pub(crate) enum Pin {
    /// The answer is known: the key unchanged, or a per-key error.
    Done(Outcome),
    /// Resolve this tag (under this cluster-wide policy) and append the digest to the key.
    Resolve(ImageRef, Policy),
}

/// Settles every key that needs no registry.
pub(crate) fn plan(key: &str, policies: &PolicySet) -> Pin {
    let image = match ImageRef::parse(key) {
        Ok(i) => i,
        Err(e) => {
            return Pin::Done(Outcome::Error(KeyError::new(
                ErrorCode::InvalidReference,
                e.to_string(),
            )));
        }
    };
    let Some(policy) = policies.select(&image, None) else {
        let namespaced = policies
            .covering(&image)
            .map(|p| {
                format!(
                    " (policy {:?} covers it for namespaces {}, but mutation requests carry no namespace)",
                    p.name,
                    p.namespaces.join(", ")
                )
            })
            .unwrap_or_default();
        return Pin::Done(Outcome::Error(KeyError::new(
            ErrorCode::NoPolicy,
            format!(
                "no cluster-wide trust policy scope covers {}{namespaced}",
                image.name()
            ),
        )));
    };
    if image.digest().is_some() || policy.action == Action::Allow {
        return Pin::Done(unchanged(key));
    }
    Pin::Resolve(image, policy.clone())
}

/// The key itself, as the mutation's value.
pub(crate) fn unchanged(key: &str) -> Outcome {
    Outcome::Value(Json::new(key))
}

/// The key pinned to `digest`.
pub(crate) fn pinned(key: &str, digest: &str) -> Outcome {
    Outcome::Value(Json::new(&format!("{key}@{digest}")))
}

/// `/v1/mutate` on the current verification engine: pins tags to digests through its tag
/// cache, so the digest pinned is the one verified within `tagTtl`.
pub(crate) struct MutateEngine(pub Arc<EngineSlot>);

impl MutateEngine {
    async fn pin(engine: &VerifyEngine, key: &str) -> Outcome {
        let (image, policy) = match plan(key, engine.policies()) {
            Pin::Done(outcome) => return outcome,
            Pin::Resolve(image, policy) => (image, policy),
        };
        match engine.resolve(&image, &policy, engine.budget()).await {
            Ok(r) => pinned(key, &r.descriptor.digest),
            Err(Resolution::Unavailable(outcome)) => outcome,
            // Mutation values must be strings, so what verification answers as a verdict
            // is a per-key error here.
            Err(Resolution::Failed(e)) => match classify(e) {
                Failure::Verdict(d) => {
                    let code = match d.code {
                        VerdictCode::NotFound => ErrorCode::NotFound,
                        VerdictCode::InvalidImage => ErrorCode::InvalidImage,
                        _ => ErrorCode::RegistryProtocol,
                    };
                    Outcome::Error(KeyError::new(code, d.reason))
                }
                Failure::Other(Outcome::Error(e)) if e.code == ErrorCode::Auth => {
                    match engine.policies().namespaced_with_credentials(&image) {
                        Some(p) => Outcome::Error(KeyError::new(
                            ErrorCode::Auth,
                            format!(
                                "{}; only policy {:?}'s credentials (namespaces {}) may reach it, and mutation requests carry no namespace, so pinning uses the registry's own",
                                e.message,
                                p.name,
                                p.namespaces.join(", ")
                            ),
                        )),
                        None => Outcome::Error(e),
                    }
                }
                Failure::Other(outcome) => outcome,
            },
        }
    }
}

impl Engine for MutateEngine {
    fn evaluate<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Outcome> {
        let engine = self.0.load_full();
        async move { MutateEngine::pin(&engine, key).await }.boxed()
    }
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
                    "no-policy: no cluster-wide trust policy scope covers quay.io/x/y"
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
        let Pin::Resolve(image, _) = plan("ghcr.io/acme/api:1.4", &p) else {
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
