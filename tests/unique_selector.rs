//! The `VouchUniqueServiceSelector` template cannot be talked into admitting.
//!
//! Gatekeeper is modelled by `support::gatekeeper`: the objects `vouch manifests` generates
//! (template, Constraint with its `allowOnSystemError`, Providers with their timeouts), each
//! template evaluated in regorus (Rego v0) with `external_data` as Gatekeeper's client, and
//! `data.inventory` as the test says. The claims come from a running vouch, or from a fake
//! Provider where the answer itself is what is tested.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use sha2::Digest;
use support::gatekeeper::{
    Behaviour, FakeProvider, Gatekeeper, Policies, Review, inventory, options,
};
use support::*;
use vouch::manifests::{self, FailurePolicy, WebhookTimeouts};

/// Gatekeeper's webhook timeouts closed mode accepts: 3 s validating, 2 s mutating.
fn webhooks() -> WebhookTimeouts {
    WebhookTimeouts {
        validating: Duration::from_secs(3),
        mutating: Duration::from_secs(2),
    }
}

fn generated(policy: FailurePolicy) -> Vec<Value> {
    manifests::objects(&options(policy, webhooks())).expect("objects")
}

fn service(name: &str, selector: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": selector, "ports": [{"port": 80}]}})
}

/// The AdmissionRequest Gatekeeper reviews for `object`.
fn request(object: &Value, operation: &str, uid: &str) -> Value {
    json!({"kind": {"group": "", "version": "v1", "kind": "Service"}, "operation": operation,
        "uid": uid, "dryRun": false, "namespace": object["metadata"]["namespace"],
        "name": object["metadata"]["name"], "object": object})
}

/// Gatekeeper's review of `request` under the generated objects of `policy`, off the
/// runtime's workers (the model blocks).
async fn review(gk: &Gatekeeper, policy: FailurePolicy, request: Value, seen: &[&Value]) -> Review {
    let objects = generated(policy);
    let gk = gk.clone().with_providers(&objects);
    let data = inventory(seen);
    tokio::task::spawn_blocking(move || {
        gk.review(&Policies::from_objects(&objects), &request, &data)
    })
    .await
    .expect("review")
}

fn messages(r: &Review) -> Vec<&str> {
    r.denials().iter().map(|v| v.msg.as_str()).collect()
}

/// (a) A copy the inventory check denies does not claim: once the holder's claim expires
/// nobody else holds the selector, so the holder's UPDATEs are admitted while the copy keeps
/// being retried (and denied by the inventory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_denied_by_the_inventory_never_claims() {
    let v = Vouch::start("claims: {ttl: 1s}\n").await;
    let gk = Gatekeeper::new(v.running.provider_addr, v.gatekeeper_client());
    let selector = json!({"app": "shop"});
    let holder = service("holder", selector.clone());
    let copy = service("copy", selector);
    let policy = FailurePolicy::Closed;

    let r = review(&gk, policy, request(&holder, "CREATE", "h1"), &[]).await;
    assert!(r.admitted(), "{:?}", r.violations);
    let claimed = std::time::Instant::now();

    let mut updates = 0;
    for attempt in 0..15 {
        // The copy, retried by its controller, sees the holder in the inventory.
        let r = review(
            &gk,
            policy,
            request(&copy, "CREATE", &format!("c{attempt}")),
            &[&holder],
        )
        .await;
        let denied = messages(&r);
        assert_eq!(denied.len(), 1, "attempt {attempt}: {denied:?}");
        assert!(
            denied[0].contains("is already used by Service default/holder"),
            "attempt {attempt}: the inventory denies, not the claim: {denied:?}"
        );
        // Past the holder's claim TTL, with retries of the copy in between: the holder's
        // UPDATE renews its claim, which nobody took meanwhile.
        if claimed.elapsed() > Duration::from_millis(1300) && attempt % 3 == 0 {
            let r = review(
                &gk,
                policy,
                request(&holder, "UPDATE", &format!("u{attempt}")),
                &[&holder],
            )
            .await;
            assert!(
                r.admitted(),
                "attempt {attempt}: the holder's update: {:?}",
                r.violations
            );
            updates += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        updates >= 2,
        "the holder updated after its claim expired ({updates})"
    );
}

/// (b) Every answer of the claim but "granted" denies, in both failure modes; only an
/// outage follows `allowOnSystemError`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_but_granted_denies() {
    type Items = fn(&[String]) -> Value;
    let no_items: Items = |_| json!([]);
    let without_holder: Items = |keys| json!([{"key": keys[0], "value": {"granted": false}}]);
    let empty_holder: Items = |keys| json!([{"key": keys[0], "value": {"granted": false, "holder": "", "expiresInSeconds": 9}}]);
    let granted_as_text: Items =
        |keys| json!([{"key": keys[0], "value": {"granted": "true", "holder": "default/other"}}]);
    let no_value: Items = |keys| json!([{"key": keys[0]}]);
    let not_an_object: Items = |keys| json!([{"key": keys[0], "value": "granted"}]);
    let other_key: Items = |_| json!([{"key": "{}", "value": {"granted": true, "holder": "x"}}]);
    let key_error: Items =
        |keys| json!([{"key": keys[0], "error": "invalid-claim: scope must not be empty"}]);
    let granted: Items = |keys| json!([{"key": keys[0], "value": {"granted": true, "holder": "default/web", "expiresInSeconds": 60}}]);
    // (name, items, systemError, admitted when open, admitted when closed, message part)
    let rows: Vec<(&str, Items, &str, bool, bool, &str)> = vec![
        (
            "no item for the key",
            no_items,
            "",
            false,
            false,
            "vouch returned no answer for the claim",
        ),
        (
            "granted false without holder",
            without_holder,
            "",
            false,
            false,
            "named no holder",
        ),
        (
            "granted false, empty holder",
            empty_holder,
            "",
            false,
            false,
            "named no holder",
        ),
        (
            "granted as a string",
            granted_as_text,
            "",
            false,
            false,
            "is claimed by Service default/other",
        ),
        (
            "an item without value",
            no_value,
            "",
            false,
            false,
            "named no holder",
        ),
        (
            "a value that is not an object",
            not_an_object,
            "",
            false,
            false,
            "named no holder",
        ),
        (
            "an item for another key only",
            other_key,
            "",
            false,
            false,
            "vouch returned no answer",
        ),
        (
            "a per-key error",
            key_error,
            "",
            false,
            false,
            "invalid-claim: scope must not be empty",
        ),
        (
            "a request vouch refused for what it holds",
            no_items,
            "request-invalid: request has 513 keys, over limits.maxKeys (512)",
            false,
            false,
            "request-invalid:",
        ),
        (
            "an outage (claim store unreachable)",
            no_items,
            "unavailable: claim store unreachable: connection refused",
            true,
            false,
            "claim store unreachable",
        ),
        ("granted", granted, "", true, true, ""),
    ];
    let web = service("web", json!({"app": "web"}));
    for (name, items, system_error, open, closed, part) in rows {
        let fake = FakeProvider::start(Behaviour::items(items, system_error)).await;
        for (policy, want) in [(FailurePolicy::Open, open), (FailurePolicy::Closed, closed)] {
            let gk = fake.gatekeeper();
            let r = review(&gk, policy, request(&web, "CREATE", "w1"), &[]).await;
            println!("{policy:?}: {name}: {:?}", messages(&r));
            assert_eq!(r.admitted(), want, "{policy:?}: {name}: {:?}", r.violations);
            if !want {
                let denied = messages(&r);
                assert_eq!(denied.len(), 1, "{policy:?}: {name}: {denied:?}");
                assert!(denied[0].contains(part), "{policy:?}: {name}: {denied:?}");
            }
        }
        assert_eq!(fake.requests(), 2, "{name}: one claim per review");
    }

    // A body that is not a ProviderResponse and vouch unreachable are Gatekeeper's own
    // system errors: outages, admitted when open, denied when closed.
    let junk = FakeProvider::start(Behaviour::Answer(std::sync::Arc::new(|_| {
        (502, json!("bad gateway"))
    })))
    .await;
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let nowhere = Gatekeeper::new(
        closed_port.local_addr().expect("addr"),
        junk.pki.gatekeeper_client(),
    );
    drop(closed_port);
    for (name, gk) in [
        ("a body that is not JSON", junk.gatekeeper()),
        ("vouch unreachable", nowhere),
    ] {
        for (policy, want) in [(FailurePolicy::Open, true), (FailurePolicy::Closed, false)] {
            let r = review(&gk, policy, request(&web, "CREATE", "w2"), &[]).await;
            println!("{policy:?}: {name}: {:?}", messages(&r));
            assert_eq!(r.admitted(), want, "{policy:?}: {name}: {:?}", r.violations);
            if !want {
                assert!(
                    messages(&r)[0].contains("could not be claimed: failed to"),
                    "{:?}",
                    r.violations
                );
            }
        }
    }
}

/// A selector of `bytes` or more in canonical form, as many labels as it takes.
fn big_selector(bytes: usize) -> (Value, String) {
    let mut selector = serde_json::Map::new();
    let mut i = 0;
    while canonical(&selector).len() < bytes {
        selector.insert(
            format!("example.com/label-{i:03}"),
            Value::String(format!("{i:03}-{}", "v".repeat(59))),
        );
        i += 1;
    }
    let c = canonical(&selector);
    (Value::Object(selector), c)
}

/// The template's canonical form: sorted `k=v` pairs joined by `,`.
fn canonical(selector: &serde_json::Map<String, Value>) -> String {
    let mut pairs: Vec<String> = selector
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// (c) A 4 KiB selector (twice vouch's `limits.maxKeyBytes`) is claimed through a running
/// vouch, and a second Service with it is denied naming the holder; the claim key carries
/// the selector's SHA-256, not the selector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_four_kib_selector_is_claimable() {
    let v = Vouch::start("claims: {ttl: 60s}\n").await;
    let gk = Gatekeeper::new(v.running.provider_addr, v.gatekeeper_client());
    let (selector, canonical) = big_selector(4096);
    assert!(canonical.len() >= 4096);
    let first = service("first", selector.clone());
    let second = service("second", selector);

    // The key the template sends.
    let mut engine = gk.engine(&[("unique.rego", manifests::UNIQUE_SELECTOR_REGO)]);
    engine.set_input(
        regorus::Value::from_json_str(
            &json!({"review": request(&first, "CREATE", "f1")}).to_string(),
        )
        .expect("input"),
    );
    let key = engine
        .eval_rule("data.vouchuniqueserviceselector.claim_key".into())
        .expect("claim key");
    let key: String = key.as_string().expect("a string").to_string();
    let parsed: Value = serde_json::from_str(&key).expect("JSON");
    let digest: String = sha2::Sha256::digest(canonical.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(parsed["value"], format!("sha256:{digest}"), "{key}");
    assert_eq!(parsed["owner"], "default/first");
    assert_eq!(parsed["scope"], "service-selector/default");
    println!(
        "claim key for a {}-byte selector: {} bytes",
        canonical.len(),
        key.len()
    );
    assert!(key.len() < 512, "{key}");

    for policy in [FailurePolicy::Closed, FailurePolicy::Open] {
        let r = review(
            &gk,
            policy,
            request(&first, "CREATE", &format!("f-{policy:?}")),
            &[],
        )
        .await;
        assert!(r.admitted(), "{policy:?}: granted: {:?}", r.violations);
        let r = review(
            &gk,
            policy,
            request(&second, "CREATE", &format!("s-{policy:?}")),
            &[],
        )
        .await;
        let denied = messages(&r);
        assert_eq!(denied.len(), 1, "{policy:?}: {denied:?}");
        assert!(
            denied[0].contains("is claimed by Service default/first"),
            "{denied:?}"
        );
        assert!(
            denied[0].len() < 400,
            "the message abbreviates the selector: {}",
            denied[0]
        );
        assert_eq!(r.denials()[0].details["holder"], "default/first");
    }
}

/// After an UPDATE from selector S1 to S2 the holder keeps S1's claim until it expires:
/// another Service with S1 is denied for at most `claims.ttl`, then admitted. vouch's
/// claims API has no release; RACE.md says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_selector_stays_claimed_until_its_ttl() {
    let v = Vouch::start("claims: {ttl: 1s}\n").await;
    let gk = Gatekeeper::new(v.running.provider_addr, v.gatekeeper_client());
    let policy = FailurePolicy::Closed;
    let before = service("mover", json!({"app": "old"}));
    let after = service("mover", json!({"app": "new"}));
    let newcomer = service("newcomer", json!({"app": "old"}));

    let r = review(&gk, policy, request(&before, "CREATE", "m1"), &[]).await;
    assert!(r.admitted(), "{:?}", r.violations);
    let mut update = request(&after, "UPDATE", "m2");
    update["oldObject"] = before.clone();
    let r = review(&gk, policy, update, &[&before]).await;
    assert!(r.admitted(), "{:?}", r.violations);
    let updated = std::time::Instant::now();

    // The inventory shows the new selector; the old one's claim is still held.
    let r = review(&gk, policy, request(&newcomer, "CREATE", "n1"), &[&after]).await;
    let denied = messages(&r);
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert!(
        denied[0].contains("is claimed by Service default/mover"),
        "{denied:?}"
    );

    tokio::time::sleep(Duration::from_millis(1100).saturating_sub(updated.elapsed())).await;
    let r = review(&gk, policy, request(&newcomer, "CREATE", "n2"), &[&after]).await;
    assert!(r.admitted(), "after claims.ttl: {:?}", r.violations);
}

/// Deleting one of two Services that share a selector is admitted and asks nothing: neither
/// check applies to a DELETE (Gatekeeper hands the deleted object over as `object`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_duplicate_is_admitted() {
    let fake = FakeProvider::start(Behaviour::items(|_| json!([]), "")).await;
    let a = service("a", json!({"app": "dup"}));
    let b = service("b", json!({"app": "dup"}));
    for policy in [FailurePolicy::Open, FailurePolicy::Closed] {
        let r = review(
            &fake.gatekeeper(),
            policy,
            request(&b, "DELETE", "d1"),
            &[&a, &b],
        )
        .await;
        assert!(r.admitted(), "{policy:?}: {:?}", r.violations);
        assert!(r.violations.is_empty(), "{policy:?}: {:?}", r.violations);
        // Its CREATE would have been denied by the inventory, without asking vouch either.
        let r = review(
            &fake.gatekeeper(),
            policy,
            request(&b, "CREATE", "d2"),
            &[&a],
        )
        .await;
        assert_eq!(messages(&r).len(), 1, "{policy:?}: {:?}", r.violations);
    }
    assert_eq!(
        fake.requests(),
        0,
        "no claim for a DELETE or a request the inventory denies"
    );
}
