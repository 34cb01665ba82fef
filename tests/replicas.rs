//! vouch at the shape it is deployed: several replicas behind one Service, sharing one
//! Redis. Gatekeeper's twin requests reach any replica; the promise is one verification per
//! image however many replicas there are.
//!
//! - Twin requests for 32 cold images, each pair sent at the same moment to two different
//!   replicas, with 2 and with 3 replicas sharing one `redis-server`: exactly one tag
//!   resolution, one signature-manifest fetch and one payload fetch per image (registry
//!   access log), every answer verified.
//! - The replica holding a key's lease is SIGKILLed mid-verification (the registry stalls its
//!   signature response): another replica finishes it once the lease expires, within one
//!   lease period, and no caller waits past its deadline.
//! - Redis paused (SIGSTOP) and resumed, then restarted, under twin load: every answer
//!   verified, none later than the deadline plus 50 ms.
//! - A production Redis: `rediss://` with a CA file, an ACL user and a password file; and
//!   Sentinel, followed through a failover.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::faults::{Fault, FaultProxy, Rule};
use support::redis::{RedisOptions, RedisSentinel, RedisServer};
use support::registry::*;
use support::world::World;
use support::*;

const DEADLINE: Duration = Duration::from_millis(2000);
/// How late an answer may be, beyond the deadline.
const SLACK: Duration = Duration::from_millis(50);

fn verified(r: &Value) -> bool {
    r["response"]["systemError"] == ""
        && r["response"]["items"].as_array().is_some_and(|items| {
            !items.is_empty() && items.iter().all(|i| i["value"]["verified"] == true)
        })
}

/// Per image: (HEADs of its tag, GETs of its signature manifest, GETs of blobs) in `log`.
fn trips(log: &[AccessLine], repo: &str) -> (usize, usize, usize) {
    let of = |method: &str, part: &str| {
        log.iter()
            .filter(|l| l.method == method && l.uri.starts_with(&format!("/v2/{repo}/{part}")))
            .count()
    };
    let sig = log
        .iter()
        .filter(|l| {
            l.method == "GET" && l.uri.starts_with(&format!("/v2/{repo}/manifests/sha256-"))
        })
        .count();
    (of("HEAD", "manifests/"), sig, of("GET", "blobs/"))
}

async fn twins_across(replicas: usize) {
    const IMAGES: usize = 32;
    let w = World::new();
    let redis = RedisServer::start();
    for i in 0..IMAGES {
        w.signed(&format!("acme/twin{i}"), "v1").await;
    }
    // A Redis call may take up to 1 s here: three replicas, the registry and Redis share
    // two cores, and a call that times out is (correctly) a local verification — what
    // this test counts must not depend on the machine's load.
    let yaml = w.policy(
        &w.registry.host,
        &w.key_file(&w.key, "k"),
        &format!(
            "deadline: {}ms\nredis: {{url: \"{}\", timeout: 1s}}\n",
            DEADLINE.as_millis(),
            redis.url
        ),
    );
    let mut vouches = Vec::new();
    for i in 0..replicas {
        let v = Vouch::start(&yaml).await;
        // A replica that has been running: its Redis connection is open.
        let warm = format!("acme/warm{i}");
        w.signed(&warm, "v1").await;
        assert!(verified(
            &v.verify(&[&format!("{}/{warm}:v1", w.registry.host)]).await
        ));
        vouches.push(v);
    }
    // Connections first, so the pairs leave at the same moment.
    let mut conns = Vec::new();
    for i in 0..IMAGES {
        let (a, b) = (i % replicas, (i + 1) % replicas);
        conns.push((i, vouches[a].connect().await, vouches[b].connect().await));
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(2 * IMAGES));
    let host = w.registry.host.clone();
    let (answers, log) = w
        .registry_log(async {
            let mut tasks = Vec::new();
            for (i, a, b) in conns {
                for mut conn in [a, b] {
                    let (barrier, key) = (barrier.clone(), format!("{host}/acme/twin{i}:v1"));
                    tasks.push(tokio::spawn(async move {
                        barrier.wait().await;
                        let started = Instant::now();
                        let reply = conn.post("/v1/verify", provider_request(&[&key])).await;
                        (reply.expect("answered").json(), started.elapsed())
                    }));
                }
            }
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.expect("join"));
            }
            out
        })
        .await;
    let slowest = answers
        .iter()
        .map(|(_, took)| *took)
        .max()
        .unwrap_or_default();
    println!(
        "{replicas} replicas: {} twin answers, slowest {slowest:?}",
        answers.len()
    );
    for (r, _) in &answers {
        assert!(verified(r), "{r}");
    }
    for v in &vouches {
        let text = ops_get(v.running.ops_addr, "/metrics").await.text();
        println!(
            "replica: redis errors {}, shared_key hits {} misses {}, shared hits {} misses {}",
            metric_value(&text, "vouch_redis_errors_total"),
            metric_value(&text, "vouch_cache_hits_total{cache=\"shared_key\"}"),
            metric_value(&text, "vouch_cache_misses_total{cache=\"shared_key\"}"),
            metric_value(&text, "vouch_cache_hits_total{cache=\"shared\"}"),
            metric_value(&text, "vouch_cache_misses_total{cache=\"shared\"}"),
        );
    }
    let mut extra = Vec::new();
    for i in 0..IMAGES {
        let counts = trips(&log, &format!("acme/twin{i}"));
        if counts != (1, 1, 1) {
            extra.push(format!("twin{i}: HEAD/sig/blob {counts:?}"));
        }
    }
    assert!(
        extra.is_empty(),
        "{replicas} replicas: one resolution, one signature manifest, one payload per image:\n{}",
        extra.join("\n")
    );
    let total: f64 = {
        let mut n = 0.0;
        for v in &vouches {
            n += metric_value(
                &ops_get(v.running.ops_addr, "/metrics").await.text(),
                "vouch_verifications_total{outcome=\"verified\"}",
            );
        }
        n
    };
    assert_eq!(
        total,
        (IMAGES + replicas) as f64,
        "one verification per image cluster-wide (and one warm-up image per replica)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twin_requests_split_over_two_replicas_verify_each_image_once() {
    twins_across(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twin_requests_split_over_three_replicas_verify_each_image_once() {
    twins_across(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_while_verifying_is_taken_over_within_one_lease() {
    const LEASE: Duration = Duration::from_millis(1000);
    let w = World::new();
    let proxy = FaultProxy::start(w.registry.addr).await;
    let redis = RedisServer::start();
    let image = w.pusher.push_image("acme/stalled", "v1").await;
    let sig = w
        .key
        .sign_image(&format!("{}/acme/stalled", proxy.host), &image.digest);
    push_cosign_signatures(&w.pusher, "acme/stalled", &image.digest, &[sig]).await;
    let yaml = w.policy(
        &proxy.host,
        &w.key_file(&w.key, "k"),
        &format!(
            "deadline: {}ms\nverificationBudget: 8s\nregistryTimeout: 6s\ncache: {{leaseTtl: {}ms, leasePoll: 20ms}}\nredis: {{url: \"{}\"}}\n",
            DEADLINE.as_millis(),
            LEASE.as_millis(),
            redis.url
        ),
    );
    let mut a = VouchProcess::start(&yaml).await;
    let b = VouchProcess::start(&yaml).await;
    // The first signature-manifest fetch stalls for 6 s: long after A is dead.
    proxy.on(Rule::path(
        "GET",
        "/v2/acme/stalled/manifests/sha256-",
        Fault::Delay(Duration::from_secs(6)),
    )
    .times(1));
    let key = format!("{}/acme/stalled:v1", proxy.host);
    let mut conn_a = a.connect().await;
    let key_a = key.clone();
    let asked_a =
        tokio::spawn(async move { conn_a.post("/v1/verify", provider_request(&[&key_a])).await });
    // A takes the key's lease and stalls on the signature manifest.
    let leased = eventually(STEP, || async {
        !redis.keys("vouch:lease:vouch:key:*").await.is_empty()
            && proxy.log().iter().any(|s| s.fault.is_some())
    })
    .await;
    assert!(leased, "A holds the lease and waits for the registry");
    // B is asked the same key while A holds the lease: it waits for A.
    let mut conn_b = b.connect().await;
    let key_b = key.clone();
    let asked_b = tokio::spawn(async move {
        let started = Instant::now();
        let r = conn_b.post("/v1/verify", provider_request(&[&key_b])).await;
        (r, started.elapsed(), Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let killed_at = Instant::now();
    a.served.child.kill().expect("SIGKILL A");
    let _ = a.served.child.wait();
    let _ = asked_a.await;
    let (r, took, answered_at) = asked_b.await.expect("join");
    let r = r.expect("B answered").json();
    // B waited for A's lease rather than verifying at once: it answered after the kill.
    let after_kill = answered_at
        .checked_duration_since(killed_at)
        .expect("B answered only after A was killed");
    println!("B answered {took:?} after its request, {after_kill:?} after A was killed: {r}");
    assert!(took <= DEADLINE + SLACK, "B answered after {took:?}");
    assert!(verified(&r), "B took over and verified: {r}");
    assert_eq!(
        b.metric("vouch_redis_errors_total").await,
        0.0,
        "B used the lease"
    );
    assert!(
        after_kill <= LEASE + Duration::from_millis(400),
        "taken over within one lease period (+ poll and verification): {after_kill:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_and_restarted_under_twin_load_costs_no_answer() {
    let w = World::new();
    let mut redis = RedisServer::start();
    let yaml = w.policy(
        &w.registry.host,
        &w.key_file(&w.key, "k"),
        &format!(
            "deadline: {}ms\nredis: {{url: \"{}\", timeout: 100ms}}\n",
            DEADLINE.as_millis(),
            redis.url
        ),
    );
    let (a, b) = (Vouch::start(&yaml).await, Vouch::start(&yaml).await);
    let host = w.registry.host.clone();
    let mut round = 0;
    let mut worst = Duration::ZERO;
    let mut failures = Vec::new();
    // Three phases: Redis healthy, paused, restarted (empty).
    for phase in ["healthy", "paused", "restarted"] {
        match phase {
            "paused" => redis.pause(),
            "restarted" => {
                redis.resume();
                redis.restart();
            }
            _ => {}
        }
        for _ in 0..4 {
            round += 1;
            let repos: Vec<String> = (0..4).map(|i| format!("acme/load{round}x{i}")).collect();
            for repo in &repos {
                w.signed(repo, "v1").await;
            }
            let keys: Vec<String> = repos.iter().map(|r| format!("{host}/{r}:v1")).collect();
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let (ca, cb) = (a.connect().await, b.connect().await);
            let (ra, rb) = tokio::join!(
                timed(ask_on(ca, "/v1/verify", &refs)),
                timed(ask_on(cb, "/v1/verify", &refs))
            );
            for (r, took) in [ra, rb] {
                worst = worst.max(took);
                if !verified(&r) {
                    failures.push(format!("{phase}: {r}"));
                }
                if took > DEADLINE + SLACK {
                    failures.push(format!("{phase}: answered after {took:?}"));
                }
            }
        }
    }
    println!("Redis paused and restarted under twin load: {round} rounds, worst answer {worst:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let errors = metric_value(
        &ops_get(a.running.ops_addr, "/metrics").await.text(),
        "vouch_redis_errors_total",
    );
    assert!(errors >= 1.0, "the pause was noticed and counted");
}

async fn timed<F: std::future::Future<Output = Value>>(f: F) -> (Value, Duration) {
    let started = Instant::now();
    let out = f.await;
    (out, started.elapsed())
}

/// `rediss://` with the CA file as the only root, an ACL user and a password file: verdicts
/// are shared, and the password never shows up in a log line or a metric.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_production_redis_with_tls_an_acl_user_and_a_password_file() {
    let ca = Ca::new("redis test CA", false, None);
    let leaf = ca.issue(LeafSpec::server());
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, ca_file, pw_file) = (
        dir.path().join("redis.crt"),
        dir.path().join("redis.key"),
        dir.path().join("ca.pem"),
        dir.path().join("password"),
    );
    std::fs::write(&cert, &leaf.cert_pem).expect("cert");
    std::fs::write(&key, &leaf.key_pem).expect("key");
    std::fs::write(&ca_file, &ca.cert_pem).expect("ca");
    const PASSWORD: &str = "correct-horse-battery";
    std::fs::write(&pw_file, format!("{PASSWORD}\n")).expect("password");
    let redis = RedisServer::start_with(RedisOptions {
        acl_user: Some(("vouch".into(), PASSWORD.into())),
        tls: Some((cert, key)),
        ..RedisOptions::default()
    });
    let tls_url = redis.tls_url.clone().expect("TLS port");
    let w = World::new();
    w.signed("acme/api", "1").await;
    let yaml = w.policy(
        &w.registry.host,
        &w.key_file(&w.key, "k"),
        &format!(
            "redis: {{url: \"{tls_url}\", caFile: {}, username: vouch, passwordFile: {}}}\n",
            ca_file.display(),
            pw_file.display()
        ),
    );
    let v = VouchProcess::start(&yaml).await;
    let key = format!("{}/acme/api:1", w.registry.host);
    assert!(verified(&v.verify(&[&key]).await));
    let stored = redis.keys("vouch:verdict:*").await;
    assert_eq!(
        stored.len(),
        1,
        "the verdict went to Redis over TLS as user vouch"
    );
    assert_eq!(v.metric("vouch_redis_errors_total").await, 0.0);
    let text = ops_get(v.served.ops, "/metrics").await.text();
    assert!(!text.contains(PASSWORD));
    assert!(!v.served.logs.join("\n").contains(PASSWORD));

    // A wrong password: Redis refuses, vouch counts it and verifies without Redis.
    std::fs::write(&pw_file, "wrong\n").expect("password");
    let wrong = VouchProcess::start(&yaml).await;
    w.signed("acme/api", "2").await;
    let key = format!("{}/acme/api:2", w.registry.host);
    assert!(verified(&wrong.verify(&[&key]).await));
    assert!(wrong.metric("vouch_redis_errors_total").await >= 1.0);
}

/// With sentinels, vouch asks them for the master, and follows a failover: after the old
/// master is demoted, writes go to the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_name_the_master_and_a_failover_is_followed() {
    let master = RedisServer::start();
    let replica = RedisServer::start_with(RedisOptions {
        replica_of: Some(master.addr),
        ..RedisOptions::default()
    });
    let synced = eventually(STEP, || async {
        replica
            .command(&["INFO", "replication"])
            .await
            .contains("master_link_status:up")
    })
    .await;
    assert!(synced, "replica in sync");
    let sentinel = RedisSentinel::start(&master, "vouch").await;
    let w = World::new();
    let yaml = w.policy(
        &w.registry.host,
        &w.key_file(&w.key, "k"),
        &format!(
            "redis: {{sentinel: {{masterName: vouch, addresses: [\"{}\"]}}}}\n",
            sentinel.addr
        ),
    );
    let v = Vouch::start(&yaml).await;
    w.signed("acme/api", "1").await;
    let key = format!("{}/acme/api:1", w.registry.host);
    assert!(verified(&v.verify(&[&key]).await));
    assert_eq!(
        master.keys("vouch:verdict:*").await.len(),
        1,
        "written to the master"
    );

    // The sentinel needs to have seen the replica before it can promote it.
    let known = eventually(STEP, || async {
        sentinel.failover("vouch").await.starts_with("+OK")
    })
    .await;
    assert!(known, "failover started");
    let promoted = eventually(STEP, || async {
        sentinel.master("vouch").await == Some(replica.addr.port())
    })
    .await;
    assert!(promoted, "the replica is the master now");
    // New verdicts land on the new master (after at most one failed write).
    let mut landed = false;
    for i in 2..12 {
        w.signed("acme/api", &i.to_string()).await;
        let key = format!("{}/acme/api:{i}", w.registry.host);
        assert!(verified(&v.verify(&[&key]).await));
        let on_new = replica.keys("vouch:verdict:*").await.len();
        println!(
            "after failover, verdict {i}: {on_new} verdicts on the new master, {} on the old, {} redis errors",
            master.keys("vouch:verdict:*").await.len(),
            metric_value(
                &ops_get(v.running.ops_addr, "/metrics").await.text(),
                "vouch_redis_errors_total"
            )
        );
        if on_new >= 2 {
            landed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(landed, "vouch followed the failover to the new master");
}
