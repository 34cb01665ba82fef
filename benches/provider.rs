//! Provider benchmark: start-up time; `/v1/verify` throughput over mTLS keep-alive for
//! allow keys and for warm (cached) cosign verdicts, side by side with a ceiling server on
//! the same axum+rustls stack, without and with Redis configured (and the Redis calls an
//! L1 hit makes: none); a cold burst of twin requests against a real `docker-registry`
//! (verifications and round trips per image), on one replica and split over three replicas
//! sharing a `redis-server` (and the latency the waiting replica adds); cold cosign and
//! Notary verifications (latency, round trips); memory of 100 000 cached verdicts.
//!
//! Runs the release `vouch serve` binary as a child process with a Gatekeeper-shaped PKI
//! and drives it from this process over loopback, like Gatekeeper would. Prints one
//! `bench: <name> <value> <unit>` line per figure. The load generator shares the machine's
//! cores with vouch, so absolute figures are a floor, not a ceiling.
//!
//! `cargo bench --bench provider` (set `BENCH_SECONDS` to change the 3 s per round; below
//! 1 s the registry scenarios shrink to a smoke test).

#[path = "../tests/support/mod.rs"]
mod support;

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::layout::{fixture, fixtures_dir, push_layout};
use support::redis::RedisServer;
use support::registry::{CosignKey, Image, Pusher, Registry, push_cosign_signatures, push_signed};
use support::*;

const VOUCH: &str = env!("CARGO_BIN_EXE_vouch");
const ROUNDS: usize = 3;

type Client = Arc<rustls::ClientConfig>;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// vouch's config in `dir` (mTLS with the PKI written there) plus `rest`.
fn write_config(dir: &Path, name: &str, rest: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("listen: 127.0.0.1:0\nopsListen: 127.0.0.1:0\ntls: {{certFile: tls.crt, keyFile: tls.key, clientCAFile: ca.crt}}\n{rest}"),
    )
    .expect("write config");
    path
}

const ALLOW: &str =
    "policies:\n- name: library\n  scopes: [\"docker.io/library/*\"]\n  action: allow\n";

async fn wait_ready(ops: SocketAddr) {
    loop {
        if let Ok(tcp) = tokio::net::TcpStream::connect(ops).await {
            drop(tcp);
            if ops_get(ops, "/readyz").await.status == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn serve(config: &Path) -> Served {
    let served = Served::spawn(VOUCH, &[OsStr::new("--config"), config.as_os_str()]);
    wait_ready(served.ops).await;
    served
}

/// Spawn → `/readyz` 200, in milliseconds.
async fn startup(config: &Path) -> f64 {
    let started = Instant::now();
    let mut served = serve(config).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    served.terminate();
    ms
}

/// `conns` keep-alive connections to `addr` sending `body` back to back for `secs`.
/// Returns (requests per second, latencies in ms).
async fn load(
    addr: SocketAddr,
    client: &Client,
    body: &str,
    conns: usize,
    secs: f64,
) -> (f64, Vec<f64>) {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let client = client.clone();
        let body = body.to_string();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr, client).await.expect("connect");
            let mut lat = Vec::new();
            while Instant::now() < end {
                let t = Instant::now();
                let r = conn
                    .post("/v1/verify", body.clone())
                    .await
                    .expect("request");
                assert_eq!(r.status, 200);
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lat
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("load task"));
    }
    (all.len() as f64 / started.elapsed().as_secs_f64(), all)
}

/// [`ROUNDS`] rounds of [`load`]; prints `<name>_rps`, `_latency_p50`, `_latency_p99` and
/// returns (median req/s, p99 ms).
async fn measure(
    name: &str,
    addr: SocketAddr,
    client: &Client,
    body: &str,
    conns: usize,
    secs: f64,
) -> (f64, f64) {
    let mut rps = Vec::new();
    let mut lat = Vec::new();
    for _ in 0..ROUNDS {
        let (r, l) = load(addr, client, body, conns, secs).await;
        rps.push(r);
        lat.extend(l);
    }
    lat.sort_by(f64::total_cmp);
    let (m, p50, p99) = (median(rps), percentile(&lat, 0.5), percentile(&lat, 0.99));
    println!("bench: {name}_rps {m:.0} req/s");
    println!("bench: {name}_latency_p50 {p50:.3} ms");
    println!("bench: {name}_latency_p99 {p99:.3} ms");
    (m, p99)
}

/// The ceiling: vouch's own accept loop, TLS and router, answering every request with a
/// precomputed response body — what the provider costs with zero work per key.
async fn ceiling(dir: &Path, body: String) -> (SocketAddr, tokio_util::sync::CancellationToken) {
    use vouch::internal::{Reloader, TlsSource, TlsState};
    let metrics = Arc::new(vouch::internal::Metrics::new());
    let state = Arc::new(TlsState::default());
    let source = TlsSource::Files {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
        client_ca: Some(dir.join("ca.crt")),
    };
    Reloader::new(source, state.clone(), metrics.clone())
        .tick()
        .await;
    let body = bytes::Bytes::from(body);
    let app = axum::Router::new().route(
        "/v1/verify",
        // Reads the request body as vouch does: a connection whose request body is left
        // unread is answered with `Connection: close` and not reused.
        axum::routing::post(move |_request: bytes::Bytes| {
            let body = body.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(vouch::internal::serve(
        listener,
        state,
        app,
        Default::default(),
        metrics,
        stop.clone(),
    ));
    (addr, stop)
}

fn cosign_policy(host: &str, key_file: &Path) -> String {
    format!(
        "registries:\n- host: {host}\n  plainHttp: true\npolicies:\n- name: acme\n  scopes: [\"{host}/acme/*\"]\n  verifiers:\n  - cosign: {{publicKeys: [{}]}}\n",
        key_file.display()
    )
}

/// A registry with `n` cosign-signed tags `acme/bench:v<i>`; returns it, the key file and
/// the image keys.
async fn signed_registry(dir: &Path, n: usize) -> (Registry, std::path::PathBuf, Vec<String>) {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let key = CosignKey::generate();
    let key_file = dir.join("bench.pub");
    std::fs::write(&key_file, key.public_pem()).expect("write key");
    let repo = "acme/bench";
    let mut keys = Vec::new();
    for i in 0..n {
        push_signed(&pusher, &key, &registry.host, repo, &format!("v{i}")).await;
        keys.push(format!("{}/{repo}:v{i}", registry.host));
    }
    (registry, key_file, keys)
}

/// Warm verdicts: three cached cosign keys per request (a pod with three images) at 16 and
/// 64 connections, each figure next to the ceiling's in the same run; `redis`: the same
/// with the shared tier configured, and the Redis commands the warm load caused.
async fn warm(dir: &Path, client: &Client, secs: f64, redis: Option<&RedisServer>) {
    let (registry, key_file, keys) = signed_registry(dir, 3).await;
    let (name, extra) = match redis {
        Some(r) => ("warm_redis", format!("redis: {{url: \"{}\"}}\n", r.url)),
        None => ("warm", String::new()),
    };
    let config = write_config(
        dir,
        &format!("{name}.yaml"),
        &format!("{extra}{}", cosign_policy(&registry.host, &key_file)),
    );
    let served = serve(&config).await;
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let body = provider_request(&refs);
    let mut conn = Conn::open(served.provider, client.clone())
        .await
        .expect("connect");
    let first = conn.post("/v1/verify", body.clone()).await.expect("prime");
    assert!(
        first.text().contains("\"verified\":true"),
        "{}",
        first.text()
    );
    let (ceiling_addr, stop) = ceiling(dir, first.text()).await;
    load(served.provider, client, &body, 4, 0.5).await;
    load(ceiling_addr, client, &body, 4, 0.5).await;
    let redis_calls_before = match redis {
        Some(r) => redis_commands(r).await,
        None => 0.0,
    };
    for conns in [16usize, 64] {
        let (rps, p99) = measure(
            &format!("{name}_c{conns}"),
            served.provider,
            client,
            &body,
            conns,
            secs,
        )
        .await;
        let (c_rps, c_p99) = measure(
            &format!("ceiling_c{conns}"),
            ceiling_addr,
            client,
            &body,
            conns,
            secs,
        )
        .await;
        println!(
            "bench: {name}_c{conns}_rps_over_ceiling {:.2} x",
            rps / c_rps
        );
        println!(
            "bench: {name}_c{conns}_p99_over_ceiling {:.2} x",
            p99 / c_p99
        );
    }
    if let Some(r) = redis {
        // The measurement itself (INFO) is one command.
        let calls = redis_commands(r).await - redis_calls_before - 1.0;
        println!("bench: {name}_redis_commands_during_warm_load {calls:.0} commands");
    }
    stop.cancel();
}

/// Commands Redis has processed (`INFO stats`, `total_commands_processed`).
async fn redis_commands(redis: &RedisServer) -> f64 {
    let info = redis.command(&["INFO", "stats"]).await;
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// Cold burst over replicas: `n` unique images, each asked by two concurrent template calls
/// that reach two different replicas of `replicas` sharing one Redis. Prints
/// verifications and registry round trips per image (cluster-wide), and how much later the
/// second answer of a pair comes than the first (the replica that waited for the other's
/// verification).
async fn cold_burst_replicas(dir: &Path, client: &Client, n: usize, replicas: usize) {
    let (registry, key_file, keys) = signed_registry(dir, n).await;
    let redis = RedisServer::start();
    let config = write_config(
        dir,
        "burst-replicas.yaml",
        &format!(
            "redis: {{url: \"{}\"}}\n{}",
            redis.url,
            cosign_policy(&registry.host, &key_file)
        ),
    );
    let mut served = Vec::new();
    for _ in 0..replicas {
        served.push(serve(&config).await);
    }
    let addrs: Arc<Vec<SocketAddr>> = Arc::new(served.iter().map(|s| s.provider).collect());
    registry.settle_log().await;
    let before = registry.access_log().len();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let keys = Arc::new(keys);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..32 {
        let (next, keys, client, addrs) =
            (next.clone(), keys.clone(), client.clone(), addrs.clone());
        tasks.push(tokio::spawn(async move {
            // This worker's connections, one per replica.
            let mut conns = Vec::new();
            for addr in addrs.iter() {
                conns.push(Conn::open(*addr, client.clone()).await.expect("connect"));
            }
            let mut gaps = Vec::new();
            let mut late = 0usize;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(key) = keys.get(i) else {
                    return (gaps, late);
                };
                let body = provider_request(&[key]);
                let (x, y) = ((i + worker) % addrs.len(), (i + worker + 1) % addrs.len());
                let (first, rest) = conns.split_at_mut(x.max(y));
                let (ca, cb) = if x < y {
                    (&mut first[x], &mut rest[0])
                } else {
                    (&mut rest[0], &mut first[y])
                };
                let t = Instant::now();
                let (fa, fb) = (
                    ca.post("/v1/verify", body.clone()),
                    cb.post("/v1/verify", body),
                );
                let ((ra, la), (rb, lb)) = tokio::join!(async { (fa.await, t.elapsed()) }, async {
                    (fb.await, t.elapsed())
                });
                for (r, took) in [(ra, la), (rb, lb)] {
                    let r = r.expect("answer");
                    if !r.text().contains("\"systemError\":\"\"")
                        || took > Duration::from_millis(2500)
                    {
                        late += 1;
                    }
                }
                gaps.push((la.max(lb) - la.min(lb)).as_secs_f64() * 1000.0);
            }
        }));
    }
    let (mut gaps, mut late) = (Vec::new(), 0);
    for t in tasks {
        let (g, l) = t.await.expect("burst task");
        gaps.extend(g);
        late += l;
    }
    let wall = started.elapsed().as_secs_f64();
    registry.settle_log().await;
    let trips = registry.requests_since(before).len() as f64 / n as f64;
    let mut verifications = 0.0;
    for s in &served {
        let metrics = ops_get(s.ops, "/metrics").await.text();
        verifications += metric_value(&metrics, "vouch_verifications_total{outcome=\"verified\"}");
    }
    gaps.sort_by(f64::total_cmp);
    let name = format!("cold_burst_{replicas}_replicas");
    println!("bench: {name}_images {n} images");
    println!(
        "bench: {name}_verifications_per_image {:.2} verifications",
        verifications / n as f64
    );
    println!("bench: {name}_registry_round_trips_per_image {trips:.2} requests");
    println!(
        "bench: {name}_second_answer_later_p50 {:.1} ms",
        percentile(&gaps, 0.5)
    );
    println!(
        "bench: {name}_second_answer_later_p99 {:.1} ms",
        percentile(&gaps, 0.99)
    );
    println!("bench: {name}_wall_time {wall:.2} s");
    println!("bench: {name}_answers_after_deadline {late} answers");
}

/// Cold burst: `n` unique images, each asked by two concurrent template calls (the
/// verification and the system-error template), from 64 connections.
async fn cold_burst(dir: &Path, client: &Client, n: usize) {
    let (registry, key_file, keys) = signed_registry(dir, n).await;
    let config = write_config(dir, "burst.yaml", &cosign_policy(&registry.host, &key_file));
    let served = serve(&config).await;
    registry.settle_log().await;
    let before = registry.access_log().len();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let keys = Arc::new(keys);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _pair in 0..32 {
        let (next, keys, client, addr) =
            (next.clone(), keys.clone(), client.clone(), served.provider);
        tasks.push(tokio::spawn(async move {
            let mut a = Conn::open(addr, client.clone()).await.expect("connect");
            let mut b = Conn::open(addr, client).await.expect("connect");
            let mut late = 0usize;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(key) = keys.get(i) else { return late };
                let body = provider_request(&[key]);
                let t = Instant::now();
                let (ra, rb) = tokio::join!(
                    a.post("/v1/verify", body.clone()),
                    b.post("/v1/verify", body)
                );
                for r in [ra, rb] {
                    let r = r.expect("answer");
                    if !r.text().contains("\"systemError\":\"\"")
                        || t.elapsed() > Duration::from_millis(2500)
                    {
                        late += 1;
                    }
                }
            }
        }));
    }
    let mut late = 0;
    for t in tasks {
        late += t.await.expect("burst task");
    }
    let wall = started.elapsed().as_secs_f64();
    registry.settle_log().await;
    let trips = registry.requests_since(before).len() as f64 / n as f64;
    let metrics = ops_get(served.ops, "/metrics").await.text();
    let verifications = metric_value(&metrics, "vouch_verifications_total{outcome=\"verified\"}");
    println!("bench: cold_burst_images {n} images");
    println!(
        "bench: cold_burst_verifications_per_image {:.2} verifications",
        verifications / n as f64
    );
    println!("bench: cold_burst_registry_round_trips_per_image {trips:.2} requests");
    println!("bench: cold_burst_wall_time {wall:.2} s");
    println!("bench: cold_burst_answers_after_deadline {late} answers");
    println!(
        "bench: cold_burst_vouch_rss {:.1} MiB",
        rss_mib(served.child.id())
    );
}

/// Resident set size of a process, from /proc.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// 100 000 verdicts (each with one signature) in vouch's verdict cache, in this process:
/// the RSS growth they cause, and an idle vouch's RSS for the total.
async fn memory(config: &Path, n: usize) {
    use vouch::internal::{CachedVerdict, Caches, VerdictKey, VerdictScope};
    let idle = serve(config).await;
    let idle_rss = rss_mib(idle.child.id());
    let cfg = vouch::config::CacheConfig {
        max_entries: n as u64 * 2,
        ..Default::default()
    };
    let caches = Caches::new(&cfg, Arc::new(vouch::internal::Metrics::new()));
    let before = rss_mib(std::process::id());
    for i in 0..n {
        let key = VerdictKey {
            generation: 0x5eed,
            policy: "acme".into(),
            name: format!("ghcr.io/acme/service-{}", i % 500),
            digest: vouch::internal::sha256_digest(&i.to_le_bytes()),
            scope: VerdictScope::Digest,
        };
        let mut report = vouch::verdict::Report::failed(
            &format!("{}:v{i}", key.name),
            "acme",
            vouch::verdict::Denial::new(vouch::verdict::VerdictCode::None, ""),
        );
        report.verified = true;
        report.digest = key.digest.clone();
        report.signatures = vec![vouch::verdict::SignatureReport {
            format: "cosign".into(),
            verified: true,
            signer: "key:acme-release".into(),
            detail: String::new(),
            issuer: String::new(),
            timestamp: None,
            revocation: Vec::new(),
        }];
        let v = CachedVerdict::new(report, Duration::from_secs(600));
        let _ = caches.verdict(key, async { Ok(v) }).await;
    }
    let held = caches.verdict_count().await;
    let grown = rss_mib(std::process::id()) - before;
    println!("bench: memory_cached_verdicts {held} verdicts");
    println!("bench: memory_rss_growth_for_cached_verdicts {grown:.1} MiB");
    println!("bench: memory_idle_vouch_rss {idle_rss:.1} MiB");
    println!(
        "bench: memory_rss_estimate_with_verdicts {:.1} MiB",
        idle_rss + grown
    );
}

/// Verifies each key once, in order, over one keep-alive connection to a fresh vouch with
/// `policy`; every key must verify. Returns (latencies in ms, registry round trips per
/// verification from the registry's access log).
async fn cold_runs(
    dir: &Path,
    client: &Client,
    registry: &Registry,
    policy: &str,
    keys: &[String],
) -> (Vec<f64>, f64) {
    let served = serve(&write_config(dir, "cold.yaml", policy)).await;
    let mut conn = Conn::open(served.provider, client.clone())
        .await
        .expect("connect");
    registry.settle_log().await;
    let before = registry.access_log().len();
    let mut lat = Vec::new();
    for key in keys {
        let t = Instant::now();
        let r = conn
            .post("/v1/verify", provider_request(&[key]))
            .await
            .expect("request");
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        let verified = &r.json()["response"]["items"][0]["value"]["verified"];
        assert_eq!(verified, true, "{}", r.text());
    }
    registry.settle_log().await;
    let trips = registry.requests_since(before).len() as f64 / keys.len() as f64;
    (lat, trips)
}

fn print_cold(name: &str, mut lat: Vec<f64>, trips: f64) {
    lat.sort_by(f64::total_cmp);
    println!("bench: {name}_latency_p50 {:.3} ms", percentile(&lat, 0.5));
    println!("bench: {name}_latency_p99 {:.3} ms", percentile(&lat, 0.99));
    println!("bench: {name}_registry_round_trips {trips:.1} requests");
}

/// `n` distinct cosign-signed tags, each verified once.
async fn cold_cosign(dir: &Path, client: &Client, n: usize) {
    let (registry, key_file, keys) = signed_registry(dir, n).await;
    let (lat, trips) = cold_runs(
        dir,
        client,
        &registry,
        &cosign_policy(&registry.host, &key_file),
        &keys,
    )
    .await;
    print_cold("verify_cosign_cold", lat, trips);
}

/// The published notation e2e layout pushed to `n` repositories (tag-schema discovery),
/// each verified once.
async fn cold_notation(dir: &Path, client: &Client, n: usize) {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let layout = fixture("e2e-valid-signature");
    let mut keys = Vec::new();
    for i in 0..n {
        push_layout(&pusher, &format!("notation/r{i}"), &layout).await;
        keys.push(format!("{}/notation/r{i}:v1", registry.host));
    }
    let crt = fixtures_dir().join("notation-e2e/localkeys/e2e.crt");
    let policy = format!(
        "registries:\n- host: {host}\n  plainHttp: true\npolicies:\n- name: notary\n  scopes: [\"{host}/notation/*\"]\n  verifiers:\n  - notation: {{trustStore: [{crt}], trustedIdentities: [\"*\"]}}\n",
        host = registry.host,
        crt = crt.display()
    );
    let (lat, trips) = cold_runs(dir, client, &registry, &policy, &keys).await;
    print_cold("verify_notation_cold", lat, trips);
}

/// Cold keyless verification of `n` images signed both ways (a legacy `.sig` layer and a
/// DSSE bundle referrer) by sigstore-js against its mock Sigstore, served by the in-process
/// OCI 1.1 server (referrers API): latency and registry round trips per image for each
/// `format`, and the CPU time of one verification (in this process, release build).
async fn cold_keyless(dir: &Path, client: &Client, n: usize) {
    use support::sigstore::{add_bundle, add_legacy, node_modules, sign};
    if !node_modules().join("@sigstore/sign").is_dir() {
        println!("bench: keyless scenarios skipped (run .ci/run to install the Node signer)");
        return;
    }
    let f = sign(n);
    let root = dir.join("trusted_root.json");
    std::fs::write(&root, f.root_json()).expect("trusted root");
    for format in ["legacy", "bundle", "any"] {
        let server = support::layout::LayoutServer::referrers_only().await;
        let mut keys = Vec::new();
        for (i, image) in f.images.iter().enumerate() {
            let repo = format!("acme/k{i}");
            let d = server.add_tagged_image(&repo, "v1", image.manifest.clone());
            add_legacy(
                &server,
                &repo,
                &image.digest,
                &image.payload,
                &f.legacy_annotations(&image.bundles["legacy"]),
            );
            add_bundle(&server, &repo, &d, &image.bundle_bytes("dsse"));
            keys.push(format!("{}/{repo}:v1", server.host));
        }
        let policy = format!(
            "registries:\n- host: {host}\n  plainHttp: true\npolicies:\n- name: acme-ci\n  scopes: [\"{host}/acme/*\"]\n  verifiers:\n  - keyless:\n      trustedRoot: {root}\n      format: {format}\n      identities:\n      - {{issuer: \"{issuer}\", subject: \"{subject}\"}}\n",
            host = server.host,
            root = root.display(),
            issuer = f.issuer,
            subject = f.subject,
        );
        let served = serve(&write_config(dir, "keyless.yaml", &policy)).await;
        let mut conn = Conn::open(served.provider, client.clone())
            .await
            .expect("connect");
        let before = server.requests().len();
        let mut lat = Vec::new();
        for key in &keys {
            let t = Instant::now();
            let r = conn
                .post("/v1/verify", provider_request(&[key]))
                .await
                .expect("request");
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            let verified = &r.json()["response"]["items"][0]["value"]["verified"];
            assert_eq!(verified, true, "{}", r.text());
        }
        let trips = (server.requests().len() - before) as f64 / keys.len() as f64;
        print_cold(&format!("verify_keyless_{format}_cold"), lat, trips);
    }

    // CPU per verification, in this process: the bundle and the legacy form of one image.
    let root = vouch::keyless::TrustedRoot::from_json(&f.root_json()).expect("root");
    let rule = vouch::keyless::IdentityRule::new(
        vouch::keyless::Matcher::Exact(f.issuer.clone()),
        vouch::keyless::Matcher::Exact(f.subject.clone()),
    );
    let policy = vouch::keyless::KeylessPolicy::new(vec![rule]).expect("policy");
    let image = &f.images[0];
    let bundle = image.bundle_bytes("dsse");
    let legacy = vouch::keyless::LegacySignature::from_annotations(
        image.payload.clone(),
        f.legacy_annotations(&image.bundles["legacy"]),
    );
    let time = |run: &dyn Fn() -> bool| {
        let mut samples = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            assert!(run());
            samples.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        median(samples)
    };
    let b = time(&|| vouch::keyless::verify_bundle(&bundle, &image.digest, &root, &policy).is_ok());
    let l = time(&|| vouch::keyless::verify_legacy(&legacy, &image.digest, &root, &policy).is_ok());
    println!("bench: keyless_cpu_per_bundle_verification_median {b:.3} ms");
    println!("bench: keyless_cpu_per_legacy_verification_median {l:.3} ms");
}

/// Cold verification of `n` images each with a keyless signature and a SLSA provenance
/// attestation (both bundles, referrers API) judged by the shipped provenance policy:
/// latency and round trips per image; then the CPU of one image's signature and
/// attestation checks and evaluation, and the evaluation of a 1 MiB SPDX SBOM against the
/// shipped SBOM policy, in this process.
async fn cold_attested(dir: &Path, client: &Client, n: usize) {
    use support::sigstore::{add_bundle, node_modules, sign};
    if !node_modules().join("@sigstore/sign").is_dir() {
        println!("bench: attestation scenarios skipped (run .ci/run to install the Node signer)");
        return;
    }
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/attestations");
    let f = sign(n);
    let root = dir.join("trusted_root.json");
    std::fs::write(&root, f.root_json()).expect("trusted root");
    let server = support::layout::LayoutServer::referrers_only().await;
    let mut keys = Vec::new();
    for (i, image) in f.images.iter().enumerate() {
        let repo = format!("acme/a{i}");
        let d = server.add_tagged_image(&repo, "v1", image.manifest.clone());
        add_bundle(&server, &repo, &d, &image.bundle_bytes("dsse"));
        add_bundle(&server, &repo, &d, &image.bundle_bytes("slsa"));
        keys.push(format!("{}/{repo}:v1", server.host));
    }
    let policy = format!(
        "registries:\n- host: {host}\n  plainHttp: true\npolicies:\n- name: acme-ci\n  scopes: [\"{host}/acme/*\"]\n  verifiers:\n  - keyless:\n      trustedRoot: {root}\n      format: bundle\n      identities:\n      - {{issuer: \"{issuer}\", subject: \"{subject}\"}}\n  attestations:\n  - predicateType: https://slsa.dev/provenance/v1\n    policy: {slsa}\n    params: {{repositories: [\"https://github.com/acme/app\"]}}\n",
        host = server.host,
        root = root.display(),
        issuer = f.issuer,
        subject = f.subject,
        slsa = policies.join("slsa-provenance.rego").display(),
    );
    let served = serve(&write_config(dir, "attested.yaml", &policy)).await;
    let mut conn = Conn::open(served.provider, client.clone())
        .await
        .expect("connect");
    let before = server.requests().len();
    let mut lat = Vec::new();
    for key in &keys {
        let t = Instant::now();
        let r = conn
            .post("/v1/verify", provider_request(&[key]))
            .await
            .expect("request");
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        let value = &r.json()["response"]["items"][0]["value"];
        assert_eq!(value["verified"], true, "{}", r.text());
        assert_eq!(value["attestations"][0]["passed"], true, "{}", r.text());
    }
    let trips = (server.requests().len() - before) as f64 / keys.len() as f64;
    print_cold("verify_attested_cold", lat, trips);

    // CPU of one image in this process: the signature bundle, the attestation bundle, the
    // provenance policy.
    let trusted = vouch::keyless::TrustedRoot::from_json(&f.root_json()).expect("root");
    let rule = vouch::keyless::IdentityRule::new(
        vouch::keyless::Matcher::Exact(f.issuer.clone()),
        vouch::keyless::Matcher::Exact(f.subject.clone()),
    );
    let identity = vouch::keyless::KeylessPolicy::new(vec![rule]).expect("policy");
    let slsa = vouch::internal::RegoPolicy::load(
        &policies.join("slsa-provenance.rego"),
        Duration::from_secs(1),
    )
    .expect("slsa policy");
    let image = &f.images[0];
    let (sig, att) = (image.bundle_bytes("dsse"), image.bundle_bytes("slsa"));
    let params = serde_json::json!({"repositories": ["https://github.com/acme/app"]});
    let mut samples = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        assert!(vouch::keyless::verify_bundle(&sig, &image.digest, &trusted, &identity).is_ok());
        let v =
            vouch::keyless::verify_bundle(&att, &image.digest, &trusted, &identity).expect("att");
        let statement = match v.content {
            vouch::keyless::SignedContent::Dsse { statement, .. } => statement,
            _ => panic!("a DSSE attestation"),
        };
        let input = serde_json::json!({"statement": statement, "signer": v.identity,
            "issuer": v.issuer, "image": {"reference": "", "digest": image.digest}, "params": params});
        assert_eq!(slsa.deny(input), Ok(vec![]));
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "bench: attested_cpu_per_image_median {:.3} ms",
        median(samples)
    );

    // A 1 MiB SPDX SBOM against the shipped SBOM policy.
    let sbom =
        vouch::internal::RegoPolicy::load(&policies.join("sbom.rego"), Duration::from_secs(5))
            .expect("sbom policy");
    let mut packages = Vec::new();
    let mut size = 0;
    let mut i = 0;
    while size < 1024 * 1024 {
        let p = serde_json::json!({"SPDXID": format!("SPDXRef-Package-{i}"), "name": format!("package-{i}"),
            "versionInfo": "1.0.0", "downloadLocation": "NOASSERTION",
            "licenseConcluded": "MIT OR Apache-2.0", "licenseDeclared": "MIT"});
        size += p.to_string().len();
        packages.push(p);
        i += 1;
    }
    let statement = serde_json::json!({"_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "ghcr.io/acme/app", "digest": {"sha256": "0".repeat(64)}}],
        "predicateType": "https://spdx.dev/Document",
        "predicate": {"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": "app", "packages": packages}});
    let input = serde_json::json!({"statement": statement, "signer": "", "issuer": "",
        "image": {"reference": "", "digest": ""},
        "params": {"deniedLicenses": ["GPL-3.0-only", "AGPL-3.0-only"], "deniedPackages": ["log4j-core"]}});
    let mut samples = Vec::new();
    for _ in 0..5 {
        let input = input.clone();
        let t = Instant::now();
        assert_eq!(sbom.deny(input), Ok(vec![]));
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!("bench: sbom_1mib_packages {i} packages");
    println!(
        "bench: sbom_1mib_evaluation_median {:.1} ms",
        median(samples)
    );
    // The same SBOM with one package under a denied licence: the policy then reads every
    // package's licences.
    let mut one_denied = input.clone();
    one_denied["statement"]["predicate"]["packages"][i / 2]["licenseConcluded"] =
        serde_json::json!("GPL-3.0-only");
    let mut samples = Vec::new();
    for _ in 0..5 {
        let input = one_denied.clone();
        let t = Instant::now();
        let denied = sbom.deny(input).expect("evaluated");
        assert_eq!(denied.len(), 1, "{denied:?}");
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "bench: sbom_1mib_one_denied_evaluation_median {:.1} ms",
        median(samples)
    );
}

/// Cold verification of `n` three-platform indexes under `platforms: each`, every platform
/// signed: registry round trips per index and per platform (target: one manifest fetch and
/// one signature discovery per platform, nothing twice).
async fn cold_index_each(dir: &Path, client: &Client, n: usize) {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let key = CosignKey::generate();
    let key_file = dir.join("index.pub");
    std::fs::write(&key_file, key.public_pem()).expect("write key");
    let host = registry.host.clone();
    let mut keys = Vec::new();
    const PLATFORMS: [(&str, &str); 3] =
        [("linux", "amd64"), ("linux", "arm64"), ("windows", "amd64")];
    for i in 0..n {
        let repo = format!("acme/multi{i}");
        let mut children = Vec::new();
        for (j, _) in PLATFORMS.iter().enumerate() {
            let c = pusher.push_image(&repo, &format!("p{j}")).await;
            let sig = key.sign_image(&format!("{host}/{repo}"), &c.digest);
            push_cosign_signatures(&pusher, &repo, &c.digest, &[sig]).await;
            children.push(c);
        }
        let entries: Vec<(&Image, &str, &str)> = children
            .iter()
            .zip(PLATFORMS)
            .map(|(c, (os, arch))| (c, os, arch))
            .collect();
        pusher.push_index_with(&repo, "v1", &entries).await;
        keys.push(format!("{host}/{repo}:v1"));
    }
    let policy = format!(
        "registries:\n- host: {host}\n  plainHttp: true\npolicies:\n- name: acme\n  scopes: [\"{host}/acme/*\"]\n  platforms: each\n  verifiers:\n  - cosign: {{publicKeys: [{}]}}\n",
        key_file.display()
    );
    let (lat, trips) = cold_runs(dir, client, &registry, &policy, &keys).await;
    print_cold("verify_index_each_3_platforms_cold", lat, trips);
    println!(
        "bench: verify_index_each_round_trips_per_platform {:.2} requests (besides the index's HEAD and GET)",
        (trips - 2.0) / PLATFORMS.len() as f64
    );
}

/// Cold Notary Project verifications of an `openssl ca` chain (root → intermediate → leaf)
/// with revocation by OCSP, by CRL, and without revocation, side by side. Each group of
/// keys is verified by a fresh vouch: its first key pays the revocation fetches (cold
/// revocation cache), the others find the answers cached (warm).
async fn cold_notation_revocation(dir: &Path, client: &Client, n: usize) {
    use support::layout::{Descriptor, NotarySigner, push_notation_signature, target_payload};
    use support::openssl::{OpensslPki, RevocationServer, SigningLeaf};
    let server = RevocationServer::start().await;
    let pki = OpensslPki::new(Some(&server.crl_url("root")));
    server.publish_crl("root", pki.root.dir.join("crl.der"));
    server.publish_crl("intermediate", pki.intermediate.dir.join("crl.der"));
    let (ocsp_cert, ocsp_key) = pki.ocsp_signer(&pki.intermediate);
    server.publish_ocsp(
        "intermediate",
        pki.intermediate.dir.clone(),
        ocsp_cert,
        ocsp_key,
    );
    let inter = pki.intermediate_pem();
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let host = registry.host.clone();
    let groups = if n >= 50 { 5 } else { 2 };
    let variants = [
        ("none", None, None, ""),
        (
            "ocsp",
            Some(server.ocsp_url("intermediate")),
            None,
            ", revocationHosts: [\"127.0.0.1\"]",
        ),
        (
            "crl",
            None,
            Some(server.crl_url("intermediate")),
            ", revocationHosts: [\"127.0.0.1\"]",
        ),
    ];
    let mut cold_p50 = Vec::new();
    for (name, ocsp, crl, hosts) in variants {
        let (key, cert, _) = pki.leaf(&SigningLeaf {
            cn: &format!("bench-{name}"),
            ocsp,
            crl,
            validity: None,
        });
        let signer = NotarySigner::from_pem(&key, &cert).with_chain(&[&inter]);
        let mut keys = Vec::new();
        for i in 0..n {
            let repo = format!("rev-{name}/r{i}");
            let image = pusher.push_image(&repo, "v1").await;
            let me = Descriptor::of_manifest(&image.media_type, &image.manifest);
            let env = signer.sign_jws(&target_payload(&me), "2026-01-01T00:00:00Z", None);
            push_notation_signature(&pusher, &repo, &me, &env).await;
            keys.push(format!("{host}/{repo}:v1"));
        }
        let policy = format!(
            "registries:\n- host: {host}\n  plainHttp: true\npolicies:\n- name: rev\n  scopes: [\"{host}/rev-{name}/*\"]\n  verifiers:\n  - notation: {{trustStore: [{}], trustedIdentities: [\"*\"]{hosts}}}\n",
            pki.root.cert().display()
        );
        let fetches = || {
            server.hits("/ocsp/intermediate")
                + server.hits("/crl/intermediate")
                + server.hits("/crl/root")
        };
        let (mut cold, mut warm, mut trips) = (Vec::new(), Vec::new(), 0.0);
        let (mut cold_fetches, mut warm_fetches) = (0usize, 0usize);
        for group in keys.chunks(n.div_ceil(groups)) {
            let served = serve(&write_config(dir, "revocation.yaml", &policy)).await;
            let mut conn = Conn::open(served.provider, client.clone())
                .await
                .expect("connect");
            for (i, key) in group.iter().enumerate() {
                registry.settle_log().await;
                let (log_before, before) = (registry.access_log().len(), fetches());
                let t = Instant::now();
                let r = conn
                    .post("/v1/verify", provider_request(&[key]))
                    .await
                    .expect("request");
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                let verified = &r.json()["response"]["items"][0]["value"]["verified"];
                assert_eq!(verified, true, "{}", r.text());
                registry.settle_log().await;
                let fetched = fetches() - before;
                if i == 0 {
                    cold.push(ms);
                    cold_fetches += fetched;
                    trips += registry.requests_since(log_before).len() as f64;
                } else {
                    warm.push(ms);
                    warm_fetches += fetched;
                }
            }
        }
        let runs = cold.len() as f64;
        cold.sort_by(f64::total_cmp);
        warm.sort_by(f64::total_cmp);
        let p50 = percentile(&cold, 0.5);
        cold_p50.push((name, p50));
        println!("bench: notation_revocation_{name}_cold_latency_p50 {p50:.3} ms");
        println!(
            "bench: notation_revocation_{name}_warm_cache_latency_p50 {:.3} ms",
            percentile(&warm, 0.5)
        );
        println!(
            "bench: notation_revocation_{name}_registry_round_trips {:.1} requests",
            trips / runs
        );
        println!(
            "bench: notation_revocation_{name}_fetches_cold {:.1} requests per image",
            cold_fetches as f64 / runs
        );
        println!(
            "bench: notation_revocation_{name}_fetches_warm {warm_fetches} requests for {} images",
            warm.len()
        );
    }
    let base = cold_p50[0].1;
    for (name, p50) in &cold_p50[1..] {
        println!(
            "bench: notation_revocation_{name}_added_latency_cold {:.3} ms",
            p50 - base
        );
    }
}

fn main() {
    let secs: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let full = secs >= 1.0;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::new();
        pki.write(dir.path());
        let client = pki.gatekeeper_client();
        let allow = write_config(dir.path(), "allow.yaml", ALLOW);

        let mut startups = Vec::new();
        for _ in 0..5 {
            startups.push(startup(&allow).await);
        }
        println!("bench: startup_to_ready_median {:.1} ms", median(startups));

        let served = serve(&allow).await;
        let body = provider_request(&["nginx:1.27"]);
        load(served.provider, &client, &body, 4, 0.5).await;
        let (c1, _) = measure("verify_allow_c1", served.provider, &client, &body, 1, secs).await;
        let (c16, _) = measure(
            "verify_allow_c16",
            served.provider,
            &client,
            &body,
            16,
            secs,
        )
        .await;
        println!(
            "bench: verify_allow_rps_ratio_c16_over_c1 {:.2} x",
            c16 / c1
        );
        drop(served);

        memory(&allow, if full { 100_000 } else { 1_000 }).await;

        if !Path::new("/usr/bin/docker-registry").exists() {
            println!("bench: registry scenarios skipped (no /usr/bin/docker-registry)");
            return;
        }
        warm(dir.path(), &client, secs, None).await;
        let redis = RedisServer::start();
        warm(dir.path(), &client, secs, Some(&redis)).await;
        drop(redis);
        cold_burst(dir.path(), &client, if full { 500 } else { 10 }).await;
        cold_burst_replicas(dir.path(), &client, if full { 500 } else { 10 }, 3).await;
        let n = if full { 50 } else { 5 };
        cold_cosign(dir.path(), &client, n).await;
        cold_notation(dir.path(), &client, n).await;
        cold_notation_revocation(dir.path(), &client, n).await;
        cold_index_each(dir.path(), &client, n).await;
        cold_keyless(dir.path(), &client, n).await;
        cold_attested(dir.path(), &client, n).await;
    });
}
