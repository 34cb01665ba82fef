//! Closed mode stays closed when vouch hangs.
//!
//! `vouch manifests --failure-policy closed --webhook-timeout 3s --mutation-webhook-timeout
//! 2s` gives the Providers timeouts that fit Gatekeeper's webhook timeout. Here a
//! listener on loopback accepts connections (and, in one variant, the TLS handshake and the
//! request) and never answers; Gatekeeper (modelled by `support::gatekeeper`, whose client
//! bounds each Provider call by the Provider's `spec.timeout`) reviews a Pod and a Service
//! with the generated templates and Constraints. The review must end in the system-error
//! denial, and the call that produces it must end within the Provider timeout.
//!
//! Gatekeeper evaluates each template in its own query, one after the other, and
//! `external_data` is memoized only within a query: `VouchVerification` and
//! `VouchSystemError` each call `vouch-verify`, so a Pod's review against a hung vouch
//! takes two Provider timeouts: the generated `vouch-verify` timeout is (webhook − 1 s) / 2
//! (1 s for a 3 s webhook), and the last test holds the property closed mode needs — the
//! whole review inside the webhook timeout.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::gatekeeper::{Behaviour, FakeProvider, Policies, Review, options};
use vouch::manifests::{self, FailurePolicy, WebhookTimeouts};

/// What evaluating the templates may add to a Provider timeout.
const MARGIN: Duration = Duration::from_millis(500);

/// Gatekeeper's validating webhook timeout in these tests.
const WEBHOOK: Duration = Duration::from_secs(3);

fn closed_objects() -> Vec<Value> {
    manifests::objects(&options(
        FailurePolicy::Closed,
        WebhookTimeouts {
            validating: WEBHOOK,
            mutating: Duration::from_secs(2),
        },
    ))
    .expect("closed mode accepts 3 s / 2 s")
}

fn provider_timeout(objects: &[Value], name: &str) -> Duration {
    let p = objects
        .iter()
        .find(|o| o["kind"] == "Provider" && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("Provider {name}"));
    Duration::from_secs(p["spec"]["timeout"].as_u64().expect("timeout"))
}

fn pod_request() -> Value {
    json!({"kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE",
        "uid": "pod-1", "namespace": "default", "name": "p",
        "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "ghcr.io/acme/api:1.4"}]}}})
}

fn service_request() -> Value {
    json!({"kind": {"group": "", "version": "v1", "kind": "Service"}, "operation": "CREATE",
        "uid": "svc-1", "namespace": "default", "name": "web",
        "object": {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}})
}

/// Gatekeeper's review of `request` against `provider` with `objects`.
async fn review(provider: &FakeProvider, objects: &[Value], request: Value) -> Review {
    let objects = objects.to_vec();
    let gk = provider.gatekeeper().with_providers(&objects);
    tokio::task::spawn_blocking(move || {
        gk.review(
            &Policies::from_objects(&objects),
            &request,
            &json!({"inventory": {}}),
        )
    })
    .await
    .expect("review")
}

/// vouch answering every key with the system error of a deadline reached after `delay`.
fn answers_deadline_reached(delay: Duration) -> Behaviour {
    Behaviour::items(
        |_| json!([]),
        "unavailable: deadline reached before ghcr.io/acme/api:1.4 had an outcome",
    )
    .after(delay)
}

fn evaluation(r: &Review, kind: &str) -> Duration {
    r.evaluations
        .iter()
        .find(|(k, _)| k == kind)
        .map(|(_, d)| *d)
        .unwrap_or_else(|| panic!("{kind} was evaluated: {:?}", r.evaluations))
}

fn hung() -> [(&'static str, Behaviour); 2] {
    [
        ("TCP accepted, TLS never answered", Behaviour::SilentTcp),
        (
            "TLS accepted, request never answered",
            Behaviour::SilentHttp,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_vouch_is_denied_within_the_provider_timeout() {
    let objects = closed_objects();
    let verify = provider_timeout(&objects, "vouch-verify");
    let claims = provider_timeout(&objects, "vouch-claims");
    println!(
        "closed, webhook {WEBHOOK:?}: vouch-verify timeout {verify:?}, vouch-claims timeout {claims:?}"
    );
    assert_eq!(verify, Duration::from_secs(1));
    assert_eq!(claims, Duration::from_secs(2));

    for (name, behaviour) in hung() {
        let provider = FakeProvider::start(behaviour).await;

        // A Pod: VouchVerification finds nothing to deny (null lists), VouchSystemError
        // denies; the uniqueness Constraint does not match Pods and is not evaluated.
        let r = review(&provider, &objects, pod_request()).await;
        let denials = r.denials();
        assert_eq!(denials.len(), 1, "{name}: {:?}", r.violations);
        assert_eq!(denials[0].constraint, "vouch-system-error", "{name}");
        assert_eq!(denials[0].action, "deny", "{name}: closed mode denies");
        assert!(
            denials[0].msg.contains("context deadline exceeded"),
            "{name}: {}",
            denials[0].msg
        );
        assert!(
            !r.evaluations
                .iter()
                .any(|(k, _)| k == "VouchUniqueServiceSelector")
        );
        let to_denial = evaluation(&r, "VouchSystemError");
        println!(
            "{name}: Pod: VouchSystemError denied {to_denial:?} after its evaluation started \
             (Provider timeout {verify:?}); whole review {:?}: {:?}",
            r.elapsed, r.evaluations
        );
        assert!(to_denial >= verify, "{name}: the Provider timeout ended it");
        assert!(
            to_denial <= verify + MARGIN && to_denial < WEBHOOK,
            "{name}: {to_denial:?}"
        );
        // Each template's call is bounded the same way.
        let verification = evaluation(&r, "VouchVerification");
        assert!(verification <= verify + MARGIN, "{name}: {verification:?}");
        assert!(r.elapsed <= 2 * verify + MARGIN, "{name}: {:?}", r.elapsed);

        // A Service: only the uniqueness template runs; the claim's timeout denies (the
        // generated Constraint has allowOnSystemError false when closed).
        let r = review(&provider, &objects, service_request()).await;
        let denials = r.denials();
        assert_eq!(denials.len(), 1, "{name}: {:?}", r.violations);
        assert_eq!(denials[0].constraint, "vouch-unique-service-selector");
        assert!(
            denials[0].msg.contains("could not be claimed")
                && denials[0].msg.contains("context deadline exceeded"),
            "{name}: {}",
            denials[0].msg
        );
        println!(
            "{name}: Service: denied after {:?} (Provider timeout {claims:?}, webhook {WEBHOOK:?})",
            r.elapsed
        );
        assert!(r.elapsed >= claims);
        assert!(
            r.elapsed <= claims + MARGIN && r.elapsed < WEBHOOK,
            "{name}: {:?}",
            r.elapsed
        );
    }
}

/// The whole review of a Pod must end before the API server gives up on the webhook, or
/// the webhook's own failure policy (Gatekeeper's default: `Ignore`) admits the Pod. Both
/// templates' calls to a hung vouch, or to one answering "deadline reached" at the longest
/// `deadline` closed mode accepts (half a second below the 1 s Provider timeout), end
/// inside a 3 s webhook with room for evaluation: Gatekeeper never caches a system error,
/// so the second template asks again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_review_against_a_hung_vouch_ends_inside_the_webhook_timeout() {
    let objects = closed_objects();
    let (max_deadline, _) = manifests::provider_timeouts(
        FailurePolicy::Closed,
        WebhookTimeouts {
            validating: WEBHOOK,
            mutating: Duration::from_secs(2),
        },
    )
    .expect("timeouts")
    .deadlines();
    assert_eq!(max_deadline, Duration::from_millis(500));
    let mut rows: Vec<(&str, Behaviour)> = hung().into();
    rows.push((
        "deadline reached at the longest deadline",
        answers_deadline_reached(max_deadline),
    ));
    let mut late = Vec::new();
    for (name, behaviour) in rows {
        let provider = FakeProvider::start(behaviour).await;
        let r = review(&provider, &objects, pod_request()).await;
        println!("{name}: whole review {:?}: {:?}", r.elapsed, r.evaluations);
        assert!(!r.admitted(), "{name}");
        let denials = r.denials();
        assert_eq!(denials.len(), 1, "{name}: {:?}", r.violations);
        assert_eq!(denials[0].constraint, "vouch-system-error");
        if r.elapsed >= WEBHOOK - MARGIN {
            late.push(format!("{name}: {:?}", r.elapsed));
        }
    }
    assert!(
        late.is_empty(),
        "reviews still running half a second before the {WEBHOOK:?} webhook times out: {late:?}"
    );
}
