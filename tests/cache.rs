//! Verdict caching end to end: single flight, deadlines, TTLs by outcome, transient
//! failures, config reloads, and the Redis tier shared by two instances — against a real
//! `docker-registry`, through a fault-injecting proxy where timing matters, and a real
//! `redis-server`.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::proxy::{Mode, Proxy};
use support::redis::RedisServer;
use support::registry::*;
use support::world::World;
use support::*;

async fn metric(v: &Vouch, name: &str) -> f64 {
    v.metric(name).await
}

const VERIFIED: &str = "vouch_verifications_total{outcome=\"verified\"}";

fn verdict(r: &Value) -> &Value {
    &r["response"]["items"][0]["value"]
}

#[tokio::test]
async fn a_hundred_concurrent_requests_for_a_cold_key_verify_once() {
    let w = World::new();
    w.signed("acme/api", "1").await;
    let v = Vouch::start(&w.policy(&w.registry.host, &w.key_file(&w.key, "k"), "")).await;
    let key = format!("{}/acme/api:1", w.registry.host);
    let (answers, trips) = w
        .registry_requests(async {
            let mut tasks = Vec::new();
            for _ in 0..100 {
                let addr = v.running.provider_addr;
                let client = v.gatekeeper_client();
                let key = key.clone();
                tasks.push(tokio::spawn(async move {
                    let mut c = Conn::open(addr, client).await.expect("connect");
                    c.post("/v1/verify", provider_request(&[&key]))
                        .await
                        .expect("answer")
                        .json()
                }));
            }
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.expect("join"));
            }
            out
        })
        .await;
    let first = verdict(&answers[0]).clone();
    assert_eq!(first["verified"], true, "{first}");
    assert!(
        answers.iter().all(|a| *verdict(a) == first),
        "all 100 get the same verdict"
    );
    assert_eq!(trips, 3, "one HEAD, one signature manifest, one payload");
    assert_eq!(metric(&v, VERIFIED).await, 1.0);
    let coalesced = metric(&v, "vouch_cache_coalesced_total{cache=\"key\"}").await
        + metric(&v, "vouch_cache_hits_total{cache=\"key\"}").await
        + metric(&v, "vouch_cache_coalesced_total{cache=\"verdict\"}").await
        + metric(&v, "vouch_cache_hits_total{cache=\"verdict\"}").await;
    assert_eq!(
        coalesced, 99.0,
        "99 callers waited for or reused the one verification"
    );
}

#[tokio::test]
async fn a_caller_past_its_deadline_leaves_the_verification_running() {
    let w = World::new();
    w.signed("acme/api", "1").await;
    let proxy = Proxy::start(w.registry.addr).await;
    proxy.set_mode(Mode::Delay(Duration::from_millis(250)));
    let v = Vouch::start(&w.policy(
        &proxy.host,
        &w.key_file(&w.key, "k"),
        "deadline: 400ms\nregistryTimeout: 3s\n",
    ))
    .await;
    let key = format!("{}/acme/api:1", proxy.host);
    let r = v.verify(&[&key]).await;
    let system = r["response"]["systemError"].as_str().expect("systemError");
    assert!(
        system.contains("deadline of 400 ms") && system.contains(&key),
        "{r}"
    );
    // The verification goes on in the background and lands in the cache…
    assert!(
        eventually(STEP, || async { metric(&v, VERIFIED).await == 1.0 }).await,
        "the verification finished after its caller gave up"
    );
    // …so the retry is answered from it, without the registry.
    proxy.set_mode(Mode::Pass);
    let (r, trips) = w.registry_requests(v.verify(&[&key])).await;
    assert_eq!(verdict(&r)["verified"], true, "{r}");
    assert_eq!(trips, 0);
}

#[tokio::test]
async fn verdicts_and_tags_expire_by_outcome() {
    let w = World::new();
    let image = w.pusher.push_image("acme/api", "1").await;
    let yaml = w.policy(
        &w.registry.host,
        &w.key_file(&w.key, "k"),
        "cache: {failedTtl: 600ms, verifiedTtl: 1h, tagTtl: 400ms}\n",
    );
    let v = Vouch::start(&yaml).await;
    let key = format!("{}/acme/api:1", w.registry.host);
    assert_eq!(verdict(&v.verify(&[&key]).await)["code"], "unsigned");

    // Signed now, but the failed verdict is served until failedTtl passes.
    w.sign("acme/api", &image, &w.key).await;
    assert_eq!(
        verdict(&v.verify(&[&key]).await)["code"],
        "unsigned",
        "cached failed verdict"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        verdict(&v.verify(&[&key]).await)["verified"],
        true,
        "re-verified after failedTtl"
    );

    // The tag moves to an unsigned image: seen once the tag resolution is older than tagTtl.
    let other = w.pusher.push_image("acme/api", "other").await;
    w.pusher.tag("acme/api", "1", &other).await;
    assert_eq!(
        verdict(&v.verify(&[&key]).await)["verified"],
        true,
        "tag still cached"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = v.verify(&[&key]).await;
    assert_eq!(verdict(&r)["code"], "unsigned", "{r}");
    assert_eq!(verdict(&r)["digest"], other.digest.as_str());
}

#[tokio::test]
async fn transient_failures_are_not_cached() {
    let w = World::new();
    w.signed("acme/api", "1").await;
    let proxy = Proxy::start(w.registry.addr).await;
    proxy.set_mode(Mode::Refuse);
    let v = Vouch::start(&w.policy(
        &proxy.host,
        &w.key_file(&w.key, "k"),
        "cache: {registryBackoff: 200ms}\n",
    ))
    .await;
    let key = format!("{}/acme/api:1", proxy.host);
    let r = v.verify(&[&key]).await;
    assert!(
        r["response"]["systemError"]
            .as_str()
            .is_some_and(|s| s.contains(&key)),
        "{r}"
    );
    // During the back-off the registry is not contacted at all.
    let before = proxy.connections();
    let r = v.verify(&[&key]).await;
    assert!(
        r["response"]["systemError"]
            .as_str()
            .is_some_and(|s| s.contains("not contacted")),
        "{r}"
    );
    assert_eq!(proxy.connections(), before);
    proxy.set_mode(Mode::Pass);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = v.verify(&[&key]).await;
    assert_eq!(verdict(&r)["verified"], true, "{r}");
}

/// After `/v1/mutate` pins an image, every admission asks about `repo:tag@sha256:…`: with the
/// verdict already reached for the tag, that costs no registry request at all.
#[tokio::test]
async fn a_pinned_image_with_a_known_verdict_costs_no_registry_request() {
    let w = World::new();
    let image = w.signed("acme/api", "1").await;
    let v = Vouch::start(&w.policy(&w.registry.host, &w.key_file(&w.key, "k"), "")).await;
    let tag = format!("{}/acme/api:1", w.registry.host);
    let (r, trips) = w.registry_requests(v.verify(&[&tag])).await;
    assert_eq!(verdict(&r)["verified"], true);
    assert_eq!(trips, 3);
    for pinned in [
        format!("{}/acme/api:1@{}", w.registry.host, image.digest),
        format!("{}/acme/api@{}", w.registry.host, image.digest),
    ] {
        let (r, trips) = w.registry_requests(v.verify(&[&pinned])).await;
        assert_eq!(verdict(&r)["verified"], true, "{r}");
        assert_eq!(verdict(&r)["reference"], pinned.as_str(), "{r}");
        assert_eq!(trips, 0, "{pinned}: answered from the verdict cache");
    }
    // A digest no verdict is known for is resolved (to check it exists) and verified.
    let other = w.signed("acme/api", "2").await;
    let pinned = format!("{}/acme/api@{}", w.registry.host, other.digest);
    let (r, trips) = w.registry_requests(v.verify(&[&pinned])).await;
    assert_eq!(verdict(&r)["verified"], true);
    assert_eq!(trips, 3, "HEAD, signature manifest, payload");
}

#[tokio::test]
async fn a_config_reload_drops_verdicts_of_the_old_trust_config() {
    let w = World::new();
    w.signed("acme/api", "1").await;
    let trusted = w.key_file(&w.key, "a");
    let v = Vouch::start(&w.policy(&w.registry.host, &trusted, "")).await;
    let key = format!("{}/acme/api:1", w.registry.host);
    assert_eq!(verdict(&v.verify(&[&key]).await)["verified"], true);

    let other = w.key_file(&CosignKey::generate(), "b");
    v.rewrite_config(&w.policy(&w.registry.host, &other, ""));
    let reloaded = eventually(STEP, || async {
        metric(&v, "vouch_config_reloads_total{result=\"success\"}").await >= 1.0
    })
    .await;
    assert!(reloaded, "config reloaded");
    let r = v.verify(&[&key]).await;
    assert_eq!(
        verdict(&r)["code"],
        "untrusted-signer",
        "old verdict not served: {r}"
    );
}

#[tokio::test]
async fn two_instances_share_verdicts_through_redis_and_survive_its_loss() {
    let w = World::new();
    let first = w.signed("acme/api", "1").await;
    w.signed("acme/api", "2").await;
    let mut redis = RedisServer::start();
    let extra = format!("cache: {{redisUrl: \"{}\"}}\n", redis.url);
    let yaml = w.policy(&w.registry.host, &w.key_file(&w.key, "k"), &extra);
    let a = Vouch::start(&yaml).await;
    let b = Vouch::start(&yaml).await;
    let one = format!("{}/acme/api:1", w.registry.host);

    let (r, trips) = w.registry_requests(a.verify(&[&one])).await;
    assert_eq!(verdict(&r)["verified"], true);
    assert_eq!(trips, 3);
    assert_eq!(redis.keys("vouch:verdict:*").await.len(), 1);

    // The second instance finds the key's answer in Redis: no registry request at all.
    let (r, trips) = w.registry_requests(b.verify(&[&one])).await;
    assert_eq!(verdict(&r)["verified"], true);
    assert_eq!(trips, 0, "the answer for the same key is shared");
    assert_eq!(
        metric(&b, "vouch_cache_hits_total{cache=\"shared_key\"}").await,
        1.0
    );
    // The image pinned by digest (what /v1/mutate makes of every pod): its verdict is in
    // Redis, so the second instance answers without resolving anything.
    let pinned = format!("{}/acme/api:1@{}", w.registry.host, first.digest);
    let (r, trips) = w.registry_requests(b.verify(&[&pinned])).await;
    assert_eq!(verdict(&r)["verified"], true);
    assert_eq!(
        trips, 0,
        "a digest reference with a known verdict needs no registry"
    );
    assert_eq!(metric(&b, VERIFIED).await, 0.0, "b never verified");
    assert_eq!(
        metric(&b, "vouch_cache_hits_total{cache=\"shared\"}").await,
        1.0
    );

    // Redis gone: both keep answering, from L1 and from the registry.
    redis.stop();
    assert_eq!(verdict(&a.verify(&[&one]).await)["verified"], true);
    let two = format!("{}/acme/api:2", w.registry.host);
    let r = b.verify(&[&two]).await;
    assert_eq!(r["response"]["systemError"], "", "{r}");
    assert_eq!(verdict(&r)["verified"], true, "{r}");
    assert!(metric(&b, "vouch_redis_errors_total").await >= 1.0);
}
