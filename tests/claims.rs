//! `/v1/claims` over mTLS: first come first served, renewals, checks that never write,
//! expiry, malformed keys, and the Redis store shared by two instances (real
//! `redis-server`), failing closed when Redis is gone.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::redis::RedisServer;
use support::*;

fn claim_key(owner: &str, mode: &str, nonce: &str) -> String {
    json!({"scope": "service-selector/default", "value": "app=web", "owner": owner, "mode": mode, "nonce": nonce})
        .to_string()
}

async fn claims(v: &Vouch, keys: &[&str]) -> Value {
    let r = v.ask("/v1/claims", keys).await;
    assert_eq!(
        r["response"]["idempotent"], false,
        "claims are not idempotent"
    );
    r
}

/// The value of a single-key claims request.
async fn claim(v: &Vouch, owner: &str, mode: &str, nonce: &str) -> Value {
    let key = claim_key(owner, mode, nonce);
    only_verdict(&claims(v, &[&key]).await)
}

#[tokio::test]
async fn first_come_renew_check_and_expiry_in_memory() {
    first_come_renew_check_and_expiry("claims: {ttl: 1s}\n").await;
}

#[tokio::test]
async fn first_come_renew_check_and_expiry_in_redis() {
    let redis = RedisServer::start();
    let yaml = format!(
        "cache: {{redisUrl: \"{}\"}}\nclaims: {{store: redis, ttl: 1s}}\n",
        redis.url
    );
    first_come_renew_check_and_expiry(&yaml).await;
}

/// The same semantics whatever the store.
async fn first_come_renew_check_and_expiry(yaml: &str) {
    let v = Vouch::start(yaml).await;
    // A check never writes: web-1 can still claim after web-0 checked.
    assert_eq!(
        claim(&v, "default/web-0", "check", "u0").await["granted"],
        true
    );
    let first = claim(&v, "default/web-1", "claim", "u1").await;
    assert_eq!(
        first,
        json!({"granted": true, "holder": "default/web-1", "expiresInSeconds": 1})
    );
    let second = claim(&v, "default/web-0", "claim", "u2").await;
    assert_eq!(second["granted"], false);
    assert_eq!(second["holder"], "default/web-1");
    assert_eq!(
        claim(&v, "default/web-1", "claim", "u3").await["granted"],
        true,
        "the holder renews"
    );
    assert_eq!(
        claim(&v, "default/web-0", "check", "u4").await["granted"],
        false
    );
    // After the TTL the value is free again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        claim(&v, "default/web-0", "claim", "u5").await["granted"],
        true
    );
}

#[tokio::test]
async fn malformed_claim_keys_get_a_per_key_error() {
    let v = Vouch::start("").await;
    let good = claim_key("default/a", "claim", "n");
    let r = claims(&v, &["not json", &good]).await;
    let items = r["response"]["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert!(
        items[0]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("invalid-claim: ")),
        "{r}"
    );
    assert_eq!(items[1]["value"]["granted"], true);
}

#[tokio::test]
async fn two_instances_share_claims_through_redis_and_fail_closed_without_it() {
    let mut redis = RedisServer::start();
    let yaml = format!(
        "cache: {{redisUrl: \"{}\"}}\nclaims: {{store: redis, ttl: 60s}}\n",
        redis.url
    );
    let a = Vouch::start(&yaml).await;
    let b = Vouch::start(&yaml).await;
    assert_eq!(
        claim(&a, "default/web-0", "claim", "u1").await["granted"],
        true
    );
    let other = claim(&b, "default/web-1", "claim", "u2").await;
    assert_eq!(other["granted"], false, "{other}");
    assert_eq!(other["holder"], "default/web-0");
    assert_eq!(
        claim(&b, "default/web-0", "claim", "u3").await["granted"],
        true,
        "renewal on the other replica"
    );

    // Concurrent claims from both replicas for a fresh value: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let v = if i % 2 == 0 { &a } else { &b };
        let (addr, client) = (v.running.provider_addr, v.gatekeeper_client());
        let key = json!({"scope": "s", "value": "race", "owner": format!("o{i}"), "mode": "claim", "nonce": i.to_string()}).to_string();
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(addr, client).await.expect("connect");
            let r = c
                .post("/v1/claims", provider_request(&[&key]))
                .await
                .expect("answer")
                .json();
            r["response"]["items"][0]["value"]["granted"] == true
        }));
    }
    let mut granted = 0;
    for t in tasks {
        granted += usize::from(t.await.expect("join"));
    }
    assert_eq!(granted, 1, "exactly one of 20 concurrent claims wins");

    // Redis gone: claims fail closed (systemError), verification is unaffected.
    redis.stop();
    let key = claim_key("default/web-9", "claim", "u9");
    let r = claims(&a, &[&key]).await;
    let system = r["response"]["systemError"].as_str().expect("systemError");
    assert!(system.contains("claim store unreachable"), "{r}");
    assert!(
        r["response"]["items"].as_array().is_some_and(Vec::is_empty),
        "{r}"
    );
    let verify = a.verify(&["quay.io/x/y:1"]).await;
    assert_eq!(verify["response"]["systemError"], "", "{verify}");
}

/// A claim on `value` by `owner`, as its own key.
fn claim_on(value: &str, owner: &str, nonce: &str) -> String {
    json!({"scope": "service-selector/default", "value": value, "owner": owner, "mode": "claim", "nonce": nonce})
        .to_string()
}

/// A claim answered while Redis is frozen is a `systemError`, and it never takes effect
/// when Redis thaws and runs the queued script: the script refuses to write past the
/// deadline the caller passed in Redis' own clock, so the owner that was told "no" does
/// not hold the value afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_answered_with_a_system_error_never_takes_effect_later() {
    let redis = RedisServer::start();
    let yaml = format!(
        "redis: {{url: \"{}\", timeout: 100ms}}\nclaims: {{store: redis, ttl: 60s}}\n",
        redis.url
    );
    let (a, b) = (Vouch::start(&yaml).await, Vouch::start(&yaml).await);
    // The connection is open (the paused Redis must be reached, not refused).
    let warm = claim_on("app=warm", "default/warm", "w");
    assert_eq!(only_verdict(&claims(&a, &[&warm]).await)["granted"], true);
    redis.pause();
    let key = claim_on("app=paused", "default/paused-owner", "p1");
    let r = claims(&a, &[&key]).await;
    let system = r["response"]["systemError"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        system.starts_with("unavailable: ") && system.contains("claim store"),
        "{r}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.resume();
    // The thawed script ran past its deadline and wrote nothing: another owner gets it.
    let other = claim_on("app=paused", "default/other-owner", "p2");
    let granted = eventually(STEP, || async {
        claims(&b, &[&other]).await["response"]["items"][0]["value"]["granted"] == true
    })
    .await;
    assert!(
        granted,
        "the refused claim did not take effect after the pause"
    );
}

/// Claims held in a Redis with AOF and `appendfsync always` survive its restart: under a
/// steady load of claim races (two owners per value, one through each replica), a restart
/// in the middle leaves 0 values granted to two owners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_survive_a_redis_restart_without_a_double_grant() {
    let mut redis = RedisServer::start_with(support::redis::RedisOptions {
        durable: true,
        ..Default::default()
    });
    let yaml = format!(
        "redis: {{url: \"{}\", timeout: 200ms}}\nclaims: {{store: redis, ttl: 120s}}\n",
        redis.url
    );
    let (a, b) = (Vouch::start(&yaml).await, Vouch::start(&yaml).await);
    let mut holders: std::collections::HashMap<String, String> = Default::default();
    let mut double = Vec::new();
    let (mut granted, mut refused, mut unavailable) = (0, 0, 0);
    for round in 0..60 {
        if round == 30 {
            redis.restart();
        }
        let value = format!("app=v{}", round % 20);
        let (x, y) = (format!("default/x{round}"), format!("default/y{round}"));
        let (kx, ky) = (
            claim_on(&value, &x, &format!("nx{round}")),
            claim_on(&value, &y, &format!("ny{round}")),
        );
        let (ca, cb) = (a.connect().await, b.connect().await);
        let (qx, qy) = ([kx.as_str()], [ky.as_str()]);
        let (ra, rb) = tokio::join!(ask_on(ca, "/v1/claims", &qx), ask_on(cb, "/v1/claims", &qy));
        for (r, owner) in [(ra, &x), (rb, &y)] {
            let item = &r["response"]["items"][0];
            if item["value"]["granted"] == true {
                granted += 1;
                match holders.get(&value) {
                    Some(h) if h != owner => double.push(format!("{value}: {h} and {owner}")),
                    _ => {
                        holders.insert(value.clone(), owner.clone());
                    }
                }
            } else if item["value"]["granted"] == false {
                refused += 1;
            } else {
                unavailable += 1;
            }
        }
    }
    println!(
        "claims across a Redis restart: {granted} granted, {refused} refused, {unavailable} unavailable, {} double grants",
        double.len()
    );
    assert!(double.is_empty(), "double grants: {double:?}");
    assert_eq!(
        granted, 20,
        "each of the 20 values granted once, to its first claimant"
    );
    // Every holder is still the holder after the restart.
    for (value, holder) in &holders {
        let check = json!({"scope": "service-selector/default", "value": value, "owner": "default/audit", "mode": "check", "nonce": "c"}).to_string();
        let v = only_verdict(&claims(&a, &[&check]).await);
        assert_eq!(v["holder"], holder.as_str(), "{value}");
    }
}
