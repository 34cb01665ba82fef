//! The verification engine behind `/v1/verify` and `vouch verify`.
//!
//! [`decide`] is the pure front half: parse the reference, pick the policy, and settle
//! every key that needs no registry (`invalid-reference`, `no-policy`, `action: allow`).
//! Keys whose policy asks for signatures go on to the verifiers.

mod report;

pub use report::{Report, SignatureReport, VerdictCode};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::config::{Action, Config};
use crate::engine::{Engine, ErrorCode, KeyError, Outcome};
use crate::policy::{Policy, PolicySet};
use crate::reference::ImageRef;

/// What [`decide`] concluded without any I/O.
#[derive(Debug)]
pub enum Decision<'p> {
    /// A verdict reached from the key and the policies alone.
    Verdict(Report),
    /// The image must be verified against this policy's verifiers.
    Verify { image: ImageRef, policy: &'p Policy },
}

/// Settles what can be settled without a registry.
pub fn decide<'p>(key: &str, policies: &'p PolicySet) -> Decision<'p> {
    let image = match ImageRef::parse(key) {
        Ok(i) => i,
        Err(e) => {
            return Decision::Verdict(Report::failed(
                key,
                "",
                VerdictCode::InvalidReference,
                e.to_string(),
            ));
        }
    };
    let Some(policy) = policies.select(&image) else {
        let reason = format!("no trust policy scope covers {}", image.name());
        return Decision::Verdict(Report::failed(
            &image.to_string(),
            "",
            VerdictCode::NoPolicy,
            reason,
        ));
    };
    match policy.action {
        Action::Allow => Decision::Verdict(Report::allowed(&image, &policy.name)),
        Action::Verify => Decision::Verify { image, policy },
    }
}

/// Verifies image references against the configured trust policies.
pub struct VerifyEngine {
    policies: PolicySet,
}

impl VerifyEngine {
    pub fn new(config: &Config) -> VerifyEngine {
        VerifyEngine {
            policies: PolicySet::new(&config.policies),
        }
    }

    async fn verify(&self, key: &str) -> Outcome {
        match decide(key, &self.policies) {
            Decision::Verdict(report) => Outcome::Value(report.to_value()),
            Decision::Verify { image, policy } => Outcome::Error(KeyError::new(
                ErrorCode::Unsupported,
                format!(
                    "policy {:?} requires signature verification of {image}, which this build does not perform yet",
                    policy.name
                ),
            )),
        }
    }
}

impl Engine for VerifyEngine {
    fn evaluate<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Outcome> {
        self.verify(key).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies() -> PolicySet {
        let config = Config::parse(
            "policies:\n- name: library\n  scopes: [\"docker.io/library/*\"]\n  action: allow\n- name: acme\n  scopes: [\"ghcr.io/acme/*\"]\n  verifiers:\n  - cosign: {publicKeys: [k.pub]}\n",
            "t",
            None,
        )
        .expect("valid");
        PolicySet::new(&config.policies)
    }

    fn verdict(key: &str) -> Report {
        match decide(key, &policies()) {
            Decision::Verdict(r) => r,
            other => panic!("expected a verdict for {key:?}, got {other:?}"),
        }
    }

    #[test]
    fn allow_policy_is_a_verified_verdict_without_signatures() {
        let r = verdict("nginx:1.27");
        assert!(r.verified);
        assert_eq!(r.policy, "library");
        assert_eq!(r.reference, "docker.io/library/nginx:1.27");
        assert!(r.signatures.is_empty());
        assert_eq!(r.code, VerdictCode::None);
    }

    #[test]
    fn allow_policy_reports_a_digest_the_key_carries() {
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let r = verdict(&format!("nginx@{d}"));
        assert_eq!(r.digest, d);
    }

    #[test]
    fn unknown_registry_is_no_policy() {
        let r = verdict("quay.io/x/y:1");
        assert!(!r.verified);
        assert_eq!(r.code, VerdictCode::NoPolicy);
        assert!(r.reason.contains("quay.io/x/y"), "{}", r.reason);
    }

    #[test]
    fn garbage_is_invalid_reference() {
        let r = verdict("not a reference");
        assert!(!r.verified);
        assert_eq!(r.code, VerdictCode::InvalidReference);
        assert_eq!(r.reference, "not a reference");
    }

    #[test]
    fn verify_policy_goes_to_the_verifiers() {
        let set = policies();
        match decide("ghcr.io/acme/api:1", &set) {
            Decision::Verify { image, policy } => {
                assert_eq!(policy.name, "acme");
                assert_eq!(image.to_string(), "ghcr.io/acme/api:1");
            }
            other => panic!("expected verification, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn engine_never_answers_verified_for_a_policy_it_cannot_check() {
        let engine = VerifyEngine {
            policies: policies(),
        };
        match engine.evaluate("ghcr.io/acme/api:1").await {
            Outcome::Error(e) => assert_eq!(e.code, ErrorCode::Unsupported),
            other => panic!("expected a per-key error, got {other:?}"),
        }
    }
}
