//! Provider benchmark: start-up time, `/v1/verify` throughput over mTLS keep-alive, and
//! cold cosign verifications against a real `docker-registry` (round trips and latency).
//!
//! Runs the release `vouch serve` binary as a child process with a Gatekeeper-shaped PKI
//! and drives it from this process over loopback, like Gatekeeper would. Prints one
//! `bench: <name> <value> <unit>` line per figure. The load generator shares the machine's
//! cores with vouch, so absolute figures are a floor, not a ceiling.
//!
//! `cargo bench --bench provider` (set `BENCH_SECONDS` to change the 3 s per round).

#[path = "../tests/support/mod.rs"]
mod support;

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use support::layout::{fixture, fixtures_dir, push_layout};
use support::registry::{CosignKey, Pusher, Registry, push_cosign_signatures};
use support::*;

const VOUCH: &str = env!("CARGO_BIN_EXE_vouch");
const ROUNDS: usize = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn write_config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("vouch.yaml");
    std::fs::write(
        &path,
        "listen: 127.0.0.1:0\nopsListen: 127.0.0.1:0\ntls: {certFile: tls.crt, keyFile: tls.key, clientCAFile: ca.crt}\npolicies:\n- name: library\n  scopes: [\"docker.io/library/*\"]\n  action: allow\n",
    )
    .expect("write config");
    path
}

async fn wait_ready(ops: std::net::SocketAddr) {
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

/// Spawn → `/readyz` 200, in milliseconds.
async fn startup(config: &std::path::Path) -> f64 {
    let started = Instant::now();
    let mut served = Served::spawn(VOUCH, &[OsStr::new("--config"), config.as_os_str()]);
    wait_ready(served.ops).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    served.terminate();
    ms
}

/// `conns` keep-alive connections sending one-key requests back to back for `secs`.
/// Returns (requests per second, latencies in ms).
async fn load(served: &Served, pki: &Pki, conns: usize, secs: f64) -> (f64, Vec<f64>) {
    let client = client_config(
        &pki.server_ca.cert_pem,
        Some(&pki.gatekeeper),
        Versions::Tls13,
    );
    let body = provider_request(&["nginx:1.27"]);
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let client = client.clone();
        let body = body.clone();
        let addr = served.provider;
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
    let rps = all.len() as f64 / started.elapsed().as_secs_f64();
    (rps, all)
}

/// Runs vouch with `policy_yaml` (registries and policies) and verifies each key once, in
/// order, over one keep-alive connection; every key must verify. Returns (latencies in ms,
/// registry round trips per verification from the registry's access log).
async fn cold_runs(
    dir: &std::path::Path,
    pki: &Pki,
    registry: &Registry,
    policy_yaml: &str,
    keys: &[String],
) -> (Vec<f64>, f64) {
    let config = dir.join("cold.yaml");
    std::fs::write(
        &config,
        format!("listen: 127.0.0.1:0\nopsListen: 127.0.0.1:0\ntls: {{certFile: tls.crt, keyFile: tls.key, clientCAFile: ca.crt}}\n{policy_yaml}"),
    )
    .expect("write config");
    let served = Served::spawn(VOUCH, &[OsStr::new("--config"), config.as_os_str()]);
    wait_ready(served.ops).await;
    let client = client_config(
        &pki.server_ca.cert_pem,
        Some(&pki.gatekeeper),
        Versions::Tls13,
    );
    let mut conn = Conn::open(served.provider, client).await.expect("connect");
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

/// `n` distinct cosign-signed tags.
async fn cold_cosign(dir: &std::path::Path, pki: &Pki, n: usize) -> (Vec<f64>, f64) {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let key = CosignKey::generate();
    let key_file = dir.join("bench.pub");
    std::fs::write(&key_file, key.public_pem()).expect("write key");
    let repo = "acme/bench";
    let mut keys = Vec::new();
    for i in 0..n {
        let image = pusher.push_image(repo, &format!("v{i}")).await;
        let sig = key.sign_image(&format!("{}/{repo}", registry.host), &image.digest);
        push_cosign_signatures(&pusher, repo, &image.digest, &[sig]).await;
        keys.push(format!("{}/{repo}:v{i}", registry.host));
    }
    let policy = format!(
        "registries:\n- host: {host}\n  plainHttp: true\npolicies:\n- name: acme\n  scopes: [\"{host}/acme/*\"]\n  verifiers:\n  - cosign: {{publicKeys: [{key}]}}\n",
        host = registry.host,
        key = key_file.display()
    );
    cold_runs(dir, pki, &registry, &policy, &keys).await
}

/// The published notation e2e layout pushed to `n` repositories (tag-schema discovery).
async fn cold_notation(dir: &std::path::Path, pki: &Pki, n: usize) -> (Vec<f64>, f64) {
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
    cold_runs(dir, pki, &registry, &policy, &keys).await
}

fn main() {
    let secs: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::new();
        pki.write(dir.path());
        let config = write_config(dir.path());

        let mut startups = Vec::new();
        for _ in 0..5 {
            startups.push(startup(&config).await);
        }
        println!("bench: startup_to_ready_median {:.1} ms", median(startups));

        let served = Served::spawn(VOUCH, &[OsStr::new("--config"), config.as_os_str()]);
        wait_ready(served.ops).await;
        // Warm-up: connections, allocator, branch predictors.
        load(&served, &pki, 4, 0.5).await;
        let mut medians = Vec::new();
        for conns in [1usize, 16] {
            let mut rps = Vec::new();
            let mut lat = Vec::new();
            for _ in 0..ROUNDS {
                let (r, l) = load(&served, &pki, conns, secs).await;
                rps.push(r);
                lat.extend(l);
            }
            lat.sort_by(f64::total_cmp);
            let m = median(rps);
            medians.push(m);
            println!("bench: verify_allow_rps_c{conns} {m:.0} req/s");
            println!(
                "bench: verify_allow_latency_p50_c{conns} {:.3} ms",
                percentile(&lat, 0.5)
            );
            println!(
                "bench: verify_allow_latency_p99_c{conns} {:.3} ms",
                percentile(&lat, 0.99)
            );
        }
        println!(
            "bench: verify_allow_rps_ratio_c16_over_c1 {:.2} x",
            medians[1] / medians[0]
        );

        if std::path::Path::new("/usr/bin/docker-registry").exists() {
            let n = if secs < 1.0 { 5 } else { 50 };
            let (mut lat, trips) = cold_cosign(dir.path(), &pki, n).await;
            lat.sort_by(f64::total_cmp);
            println!(
                "bench: verify_cosign_cold_latency_p50 {:.3} ms",
                percentile(&lat, 0.5)
            );
            println!(
                "bench: verify_cosign_cold_latency_p99 {:.3} ms",
                percentile(&lat, 0.99)
            );
            println!("bench: verify_cosign_cold_registry_round_trips {trips:.1} requests");
            let (mut lat, trips) = cold_notation(dir.path(), &pki, n).await;
            lat.sort_by(f64::total_cmp);
            println!(
                "bench: verify_notation_cold_latency_p50 {:.3} ms",
                percentile(&lat, 0.5)
            );
            println!(
                "bench: verify_notation_cold_latency_p99 {:.3} ms",
                percentile(&lat, 0.99)
            );
            println!("bench: verify_notation_cold_registry_round_trips {trips:.1} requests");
        } else {
            println!("bench: verify_cosign_cold skipped (no /usr/bin/docker-registry)");
        }
    });
}
