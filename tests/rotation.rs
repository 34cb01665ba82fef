//! Certificate rotation under load: while Gatekeeper-like clients keep asking for warm
//! (cached) cosign verdicts, the secret volume swaps to a renewed server certificate and a
//! new Gatekeeper client CA. No request on an established connection may fail; the only
//! failures allowed are new handshakes with a certificate of the CA that was rotated out.
//!
//! `cargo test --test rotation -- --nocapture` prints the counts.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::registry::*;
use support::*;
use tokio::task::JoinSet;

/// Load before and after the swap.
const RUN: Duration = Duration::from_secs(3);
const SWAP_AT: Duration = Duration::from_secs(1);
/// After the swap, new handshakes must follow the new files within this (reload 100 ms).
const RELOADED_WITHIN: Duration = Duration::from_secs(1);

/// One fresh connection and one request: the outcome and when it started.
#[derive(Debug)]
struct Attempt {
    at: Instant,
    ok: bool,
}

async fn fresh_request(
    addr: std::net::SocketAddr,
    client: Arc<rustls::ClientConfig>,
    body: String,
) -> bool {
    // With TLS 1.3 the server's verdict on the client certificate arrives with the first
    // read, so a refused certificate shows up as a failed request on the new connection.
    let attempt = async {
        let mut c = Conn::open(addr, client).await?;
        c.post("/v1/verify", body).await
    };
    matches!(tokio::time::timeout(STEP, attempt).await, Ok(Ok(r)) if all_verified(&r, 3))
}

/// HTTP 200, no system error, and `n` items each with a verified verdict.
fn all_verified(r: &Reply, n: usize) -> bool {
    let j = r.json();
    let items = j["response"]["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    r.status == 200
        && j["response"]["systemError"] == ""
        && items.len() == n
        && items.iter().all(|i| i["value"]["verified"] == true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_warm_load_fails_only_handshakes_with_the_old_ca() {
    // The warm workload: three cosign-signed images, verified once, then served cached.
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let key = CosignKey::generate();
    let mut keys = Vec::new();
    for i in 0..3 {
        push_signed(&pusher, &key, &registry.host, "acme/app", &format!("v{i}")).await;
        keys.push(format!("{}/acme/app:v{i}", registry.host));
    }
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let body = provider_request(&refs);

    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret");
    std::fs::create_dir_all(&secret).expect("mkdir");
    let old = Pki::new();
    write_secret_generation(&secret, "gen1", &old);
    std::fs::write(dir.path().join("key.pub"), key.public_pem()).expect("key");
    std::fs::write(
        dir.path().join("vouch.yaml"),
        format!(
            "listen: 127.0.0.1:0\nopsListen: 127.0.0.1:0\ntls: {{certFile: secret/tls.crt, keyFile: secret/tls.key, clientCAFile: secret/ca.crt, reloadInterval: 100ms}}\nregistries:\n- host: {host}\n  plainHttp: true\npolicies:\n- name: acme\n  scopes: [\"{host}/acme/*\"]\n  verifiers:\n  - cosign: {{publicKeys: [key.pub]}}\n",
            host = registry.host
        ),
    )
    .expect("config");
    let config = vouch::config::Config::load(&dir.path().join("vouch.yaml")).expect("valid");
    let running = vouch::app::start(config, vouch::app::Options::default())
        .await
        .expect("start");
    let (addr, ops) = (running.provider_addr, running.ops_addr);
    wait_ready(ops).await;
    let old_client = old.gatekeeper_client();
    // The renewal: a new server certificate from the same serving CA (what cert-manager
    // does), and a new Gatekeeper CA with a new client certificate.
    let new_gatekeeper_ca = Ca::gatekeeper();
    let new = Pki {
        server: old.server_ca.issue(LeafSpec::server()),
        gatekeeper: new_gatekeeper_ca.issue(LeafSpec::gatekeeper()),
        gatekeeper_ca: new_gatekeeper_ca,
        server_ca: old.server_ca,
    };
    let new_client = new.gatekeeper_client();

    // Prime the cache.
    let mut first = Conn::open(addr, old_client.clone()).await.expect("connect");
    let r = first.post("/v1/verify", body.clone()).await.expect("prime");
    assert!(all_verified(&r, 3), "{}", r.text());
    drop(first);

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    // Eight established connections asking back to back: (requests, failures).
    let mut workers = JoinSet::new();
    for _ in 0..8 {
        let (client, body, stop) = (old_client.clone(), body.clone(), stop.clone());
        workers.spawn(async move {
            let mut conn = Conn::open(addr, client).await.expect("connect");
            let (mut n, mut failed) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                match conn.post("/v1/verify", body.clone()).await {
                    Ok(r) if all_verified(&r, 3) => {}
                    Ok(r) => failed.push(format!("{}: {}", r.status, r.text())),
                    Err(e) => failed.push(e),
                }
            }
            (n, failed)
        });
    }
    // New connections, old and new client certificate, every 20 ms.
    let mut dialers = JoinSet::new();
    for (which, client) in [("old", old_client.clone()), ("new", new_client.clone())] {
        let (body, stop) = (body.clone(), stop.clone());
        dialers.spawn(async move {
            let mut attempts = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let at = Instant::now();
                let ok = fresh_request(addr, client.clone(), body.clone()).await;
                attempts.push(Attempt { at, ok });
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (which, attempts)
        });
    }

    tokio::time::sleep(SWAP_AT).await;
    let swapped = Instant::now();
    write_secret_generation(&secret, "gen2", &new);
    tokio::time::sleep(RUN - SWAP_AT).await;
    stop.store(true, Ordering::Relaxed);

    let (mut requests, mut failures) = (0, Vec::new());
    while let Some(r) = workers.join_next().await {
        let (n, f) = r.expect("worker");
        requests += n;
        failures.extend(f);
    }
    let (mut old_attempts, mut new_attempts) = (Vec::new(), Vec::new());
    while let Some(r) = dialers.join_next().await {
        match r.expect("dialer") {
            ("old", a) => old_attempts = a,
            (_, a) => new_attempts = a,
        }
    }
    let summary = |attempts: &[Attempt]| {
        let before: Vec<_> = attempts.iter().filter(|a| a.at < swapped).collect();
        let after: Vec<_> = attempts
            .iter()
            .filter(|a| a.at > swapped + RELOADED_WITHIN)
            .collect();
        (
            before.iter().filter(|a| a.ok).count(),
            before.len(),
            after.iter().filter(|a| a.ok).count(),
            after.len(),
        )
    };
    let o = summary(&old_attempts);
    let n = summary(&new_attempts);
    println!(
        "rotation: {requests} requests on established connections over {:.1} s, {} failed",
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    println!(
        "rotation: old client certificate: new connections ok {}/{} before the swap, {}/{} from 1 s after",
        o.0, o.1, o.2, o.3
    );
    println!(
        "rotation: new client certificate: new connections ok {}/{} before the swap, {}/{} from 1 s after",
        n.0, n.1, n.2, n.3
    );
    assert!(
        failures.is_empty(),
        "failed on established connections: {failures:?}"
    );
    assert!(requests > 100, "the load ran ({requests} requests)");
    // Before the swap only the old CA's certificate is accepted, after it only the new one's.
    assert_eq!(
        (o.0, n.0),
        (o.1, 0),
        "before the swap: old {o:?}, new {n:?}"
    );
    assert_eq!((o.2, n.2), (0, n.3), "after the swap: old {o:?}, new {n:?}");
    assert!(o.1 > 0 && o.3 > 0 && n.3 > 0, "dialers ran: {o:?} {n:?}");
    // The certificate, key and CA were loaded again (the first load is at start).
    let metrics = ops_get(ops, "/metrics").await.text();
    assert!(
        metric_value(&metrics, "vouch_tls_reloads_total{result=\"success\"}") >= 2.0,
        "{metrics}"
    );
    running.shutdown_token().cancel();
}
