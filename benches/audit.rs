//! Audit benchmark: the wall time of `vouch audit` (the release binary, as an operator runs
//! it) over a List whose workloads hold 1 000 distinct cosign-signed images in a real
//! `docker-registry`, with the Redis tier configured: **cold** (Redis flushed, so every
//! image is resolved and its signature fetched and checked) and **cached** (the same List
//! again, a new process finding every verdict in Redis, as an audit run beside serving
//! replicas with the same config does). Also the registry requests per image of each run.
//! Each figure is the median of [`ROUNDS`] runs. First, the cost of reading and extracting
//! alone: 10 000 Pods whose images need no registry.
//!
//! `cargo bench --bench audit` (`AUDIT_IMAGES` changes the 1 000; with `BENCH_SECONDS`
//! below 1, as CI's smoke run under `cargo test --all-targets` sets it, 20 images and 500
//! Pods, one round). The registry scenario
//! needs Debian's `docker-registry` and `redis-server` (`bash .ci/run` installs them);
//! without them it says so.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use support::redis::RedisServer;
use support::registry::{CosignKey, Pusher, Registry, push_signed};
use support::{median, run_command};

const VOUCH: &str = env!("CARGO_BIN_EXE_vouch");
const ROUNDS: usize = 3;
/// Images pushed at the same time while setting up.
const PUSH_CONCURRENCY: usize = 16;
/// Images per workload (a Deployment with several containers), workloads per namespace.
const IMAGES_PER_WORKLOAD: usize = 5;
const WORKLOADS_PER_NAMESPACE: usize = 20;
/// Bound on one audit run; a run past it fails the benchmark.
const RUN_BOUND: Duration = Duration::from_secs(600);

/// Deployments of `images`, [`IMAGES_PER_WORKLOAD`] each, [`WORKLOADS_PER_NAMESPACE`] per
/// namespace.
fn list(images: &[String]) -> Vec<u8> {
    let items: Vec<_> = images
        .chunks(IMAGES_PER_WORKLOAD)
        .enumerate()
        .map(|(i, chunk)| {
            let containers: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(c, image)| json!({"name": format!("c{c}"), "image": image}))
                .collect();
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": format!("app-{i}"), "namespace": format!("team-{}", i / WORKLOADS_PER_NAMESPACE)},
                "spec": {"template": {"spec": {"containers": containers}}}})
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "List", "items": items})
        .to_string()
        .into_bytes()
}

/// One `vouch audit` run: seconds, and registry requests per image.
async fn run(registry: &Registry, config: &Path, input: &[u8], n: usize) -> (f64, f64) {
    registry.settle_log().await;
    let before = registry.access_log().len();
    let started = Instant::now();
    let ran = run_command(
        VOUCH,
        &[
            "audit",
            "--quiet",
            "--config",
            &config.display().to_string(),
        ],
        input,
        RUN_BOUND,
    )
    .await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(
        ran.code, 0,
        "every image is signed: {}{}",
        ran.stdout, ran.stderr
    );
    assert!(
        ran.stdout.contains(&format!(
            "open:   0 denied, 0 warned, {} admitted",
            n / IMAGES_PER_WORKLOAD
        )),
        "{}",
        ran.stdout
    );
    registry.settle_log().await;
    let requests = registry.requests_since(before).len() as f64;
    (secs, requests / n as f64)
}

/// Pods in the extraction scenario: a large cluster's worth of objects.
const EXTRACTION_PODS: usize = 10_000;
/// The smoke run's sizes.
const SMOKE_IMAGES: usize = 20;
const SMOKE_PODS: usize = 500;

/// The Rego and the report alone: `pods` Pods of three images each (init container
/// included), every image under an `action: allow` policy, so no registry is asked. Prints
/// the median wall time of the whole run over `rounds`.
async fn extraction(dir: &Path, pods: usize, rounds: usize) {
    let items: Vec<_> = (0..pods)
        .map(|i| {
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("p{i}"), "namespace": format!("ns{}", i % 50)},
                "spec": {"containers": [{"name": "c", "image": format!("nginx:1.{}", i % 300)}, {"name": "s", "image": "busybox"}],
                         "initContainers": [{"name": "i", "image": "alpine:3"}]}})
        })
        .collect();
    let input = json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
    let config = dir.join("allow.yaml");
    std::fs::write(
        &config,
        "policies:\n- name: library\n  scopes: [\"docker.io/library/*\"]\n  action: allow\n",
    )
    .expect("write config");
    let mut times = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        let ran = run_command(
            VOUCH,
            &[
                "audit",
                "--quiet",
                "--config",
                &config.display().to_string(),
            ],
            input.as_bytes(),
            RUN_BOUND,
        )
        .await;
        times.push(started.elapsed().as_secs_f64());
        assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    }
    println!(
        "bench: audit_extraction_{pods}_pods_input {:.1} MiB",
        input.len() as f64 / (1 << 20) as f64
    );
    println!(
        "bench: audit_extraction_{pods}_pods_wall_time_median {:.2} s",
        median(times)
    );
}

fn main() {
    let smoke = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .is_some_and(|s| s < 1.0);
    let (n, pods, rounds) = if smoke {
        (SMOKE_IMAGES, SMOKE_PODS, 1)
    } else {
        let n = std::env::var("AUDIT_IMAGES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1000);
        (n, EXTRACTION_PODS, ROUNDS)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        extraction(dir.path(), pods, rounds).await;
        for tool in ["/usr/bin/docker-registry", "/usr/bin/redis-server"] {
            if !Path::new(tool).exists() {
                println!("bench: audit of {n} images skipped (no {tool})");
                return;
            }
        }
        let registry = Registry::start();
        let pusher = Pusher::new(&registry);
        let key = CosignKey::generate();
        let key_file = dir.path().join("acme.pub");
        std::fs::write(&key_file, key.public_pem()).expect("write key");
        let host = registry.host.clone();
        let pushed = Instant::now();
        futures_util::stream::iter(0..n)
            .map(|i| {
                let (pusher, key, host) = (&pusher, &key, &host);
                async move { push_signed(pusher, key, host, "acme/app", &format!("v{i}")).await }
            })
            .buffer_unordered(PUSH_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        eprintln!(
            "bench: pushed {n} signed images in {:.1} s",
            pushed.elapsed().as_secs_f64()
        );
        let images: Vec<String> = (0..n).map(|i| format!("{host}/acme/app:v{i}")).collect();
        let input = list(&images);
        let redis = RedisServer::start();
        let config = dir.path().join("vouch.yaml");
        std::fs::write(
            &config,
            format!(
                "redis: {{url: \"{}\"}}\nregistries:\n- host: {host}\n  plainHttp: true\npolicies:\n- name: acme\n  scopes: [\"{host}/acme/*\"]\n  verifiers:\n  - cosign: {{publicKeys: [{}]}}\n",
                redis.url,
                key_file.display()
            ),
        )
        .expect("write config");

        let (mut cold, mut cached, mut cold_trips, mut cached_trips) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            redis.command(&["FLUSHALL"]).await;
            let (secs, trips) = run(&registry, &config, &input, n).await;
            cold.push(secs);
            cold_trips.push(trips);
            let (secs, trips) = run(&registry, &config, &input, n).await;
            cached.push(secs);
            cached_trips.push(trips);
        }
        println!("bench: audit_images {n} images");
        println!("bench: audit_cold_wall_time_median {:.2} s", median(cold));
        println!(
            "bench: audit_cold_registry_requests_per_image {:.2} requests",
            median(cold_trips)
        );
        println!(
            "bench: audit_cached_wall_time_median {:.2} s",
            median(cached)
        );
        println!(
            "bench: audit_cached_registry_requests_per_image {:.2} requests",
            median(cached_trips)
        );
    });
}
