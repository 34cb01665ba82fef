//! `/v1/mutate` over mTLS against a real `docker-registry`: tags pinned to digests with the
//! tag kept, a fixed point, no traffic for uncovered keys, and the 900 ms deadline.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::proxy::{Mode, Proxy};
use support::registry::*;
use support::*;

fn policy(host: &str, key_file: &str, extra: &str) -> String {
    format!(
        "{extra}registries:\n- host: {host}\n  plainHttp: true\npolicies:\n- name: library\n  scopes: [\"docker.io/library/*\"]\n  action: allow\n- name: acme\n  scopes: [\"{host}/acme/*\"]\n  verifiers:\n  - cosign: {{publicKeys: [{key_file}]}}\n"
    )
}

fn key_file(dir: &tempfile::TempDir) -> String {
    let p = dir.path().join("k.pub");
    std::fs::write(&p, CosignKey::generate().public_pem()).expect("key");
    p.display().to_string()
}

async fn mutate(v: &Vouch, keys: &[&str]) -> Value {
    v.ask("/v1/mutate", keys).await
}

fn item<'a>(r: &'a Value, key: &str) -> &'a Value {
    r["response"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["key"] == key)
        .unwrap_or_else(|| panic!("no item for {key}: {r}"))
}

#[tokio::test]
async fn tags_are_pinned_and_everything_else_answered_without_traffic() {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let image = pusher.push_image("acme/api", "1.4").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let v = Vouch::start(&policy(&registry.host, &key_file(&dir), "")).await;
    let tag = format!("{}/acme/api:1.4", registry.host);
    let by_digest = format!("{}/acme/api@{}", registry.host, image.digest);
    let missing = format!("{}/acme/api:absent", registry.host);
    let counter = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let uncovered = format!("{}/acme/api:1", counter.local_addr().expect("addr"));

    let r = mutate(
        &v,
        &[
            &tag,
            &by_digest,
            "nginx:1.27",
            &uncovered,
            "Not A Ref",
            &missing,
        ],
    )
    .await;
    assert_eq!(r["response"]["idempotent"], true);
    assert_eq!(r["response"]["systemError"], "", "{r}");
    assert_eq!(
        r["response"]["items"].as_array().map(Vec::len),
        Some(6),
        "an item for every key"
    );
    let pinned = format!("{tag}@{}", image.digest);
    assert_eq!(item(&r, &tag)["value"], pinned.as_str(), "the tag is kept");
    assert_eq!(item(&r, &by_digest)["value"], by_digest.as_str());
    assert_eq!(
        item(&r, "nginx:1.27")["value"],
        "nginx:1.27",
        "allow policies are not pinned"
    );
    assert!(
        item(&r, &uncovered)["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("no-policy: ")),
        "{r}"
    );
    assert!(
        item(&r, "Not A Ref")["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("invalid-reference: ")),
        "{r}"
    );
    assert!(
        item(&r, &missing)["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("not-found: ")),
        "{r}"
    );
    // No connection was attempted to the uncovered host.
    let accepted = tokio::time::timeout(Duration::from_millis(100), counter.accept()).await;
    assert!(accepted.is_err(), "vouch contacted an unconfigured host");

    // Mutating the result again changes nothing, without asking the registry.
    registry.settle_log().await;
    let before = registry.access_log().len();
    let again = mutate(&v, &[&pinned]).await;
    assert_eq!(item(&again, &pinned)["value"], pinned.as_str());
    registry.settle_log().await;
    assert_eq!(registry.requests_since(before).len(), 0);
}

#[tokio::test]
async fn mutation_answers_within_its_own_deadline() {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    pusher.push_image("acme/api", "1").await;
    let proxy = Proxy::start(registry.addr).await;
    proxy.set_mode(Mode::Delay(Duration::from_millis(1500)));
    let dir = tempfile::tempdir().expect("tempdir");
    let v = Vouch::start(&policy(
        &proxy.host,
        &key_file(&dir),
        "mutateDeadline: 900ms\n",
    ))
    .await;
    let mut conn = v.connect().await;
    let key = format!("{}/acme/api:1", proxy.host);
    let started = Instant::now();
    let r = conn
        .post("/v1/mutate", provider_request(&[&key]))
        .await
        .expect("answer")
        .json();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(950),
        "{took:?}"
    );
    let system = r["response"]["systemError"].as_str().expect("systemError");
    assert!(
        system.contains("deadline of 900 ms") && system.contains(&key),
        "{r}"
    );
}
