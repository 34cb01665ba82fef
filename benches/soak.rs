//! Soak: vouch under steady load at 80 % of its measured peak, for minutes, against a real
//! `docker-registry`, with short cache TTLs so verdicts keep expiring and being verified
//! again (registry traffic, cache churn and background verifications all along). Checks:
//! no request fails, resident memory does not drift, runtime tasks and file descriptors
//! come back to their idle level.
//!
//! `cargo bench --bench soak` runs 10 minutes (release build); `SOAK_SECONDS` changes that.
//! Under `cargo test` (as CI runs it) the default is 30 seconds. Prints one
//! `soak: <name> <value> <unit>` line per figure and fails when a check fails.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::registry::{CosignKey, Pusher, Registry, push_cosign_signatures};
use support::*;
use tokio::sync::Mutex;

/// Connections the load is spread over (Gatekeeper keeps a pool of about this size).
const CONNECTIONS: usize = 16;
/// Signed and unsigned images; each request asks for three of them.
const SIGNED: usize = 20;
const UNSIGNED: usize = 4;
/// Resident memory may grow at most this much between the start and the end of the soak.
const MAX_RSS_DRIFT: f64 = 0.05;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn rss_bytes(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib * 1024.0)
}

/// The keys of request `i`: three images, signed and unsigned in turn.
fn keys_for(i: u64, signed: &[String], unsigned: &[String]) -> Vec<String> {
    let i = i as usize;
    vec![
        signed[i % signed.len()].clone(),
        signed[(i * 7 + 3) % signed.len()].clone(),
        unsigned[i % unsigned.len()].clone(),
    ]
}

/// `None` when the answer is right: signed images verified, unsigned ones not.
fn check(reply: &Reply, keys: &[String], unsigned: &[String]) -> Option<String> {
    if reply.status != 200 {
        return Some(format!("HTTP {}", reply.status));
    }
    let Ok(j) = serde_json::from_slice::<serde_json::Value>(&reply.body) else {
        return Some(format!("not JSON: {}", reply.text()));
    };
    if j["response"]["systemError"] != "" {
        return Some(format!("systemError: {}", j["response"]["systemError"]));
    }
    let items = j["response"]["items"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    if items.len() != keys.len() {
        return Some(format!(
            "{} items for {} keys: {j}",
            items.len(),
            keys.len()
        ));
    }
    for (item, key) in items.iter().zip(keys) {
        let want = !unsigned.contains(key);
        if item["key"] != key.as_str() || item["value"]["verified"] != want {
            return Some(format!("{key}: {item}"));
        }
    }
    None
}

#[derive(Default)]
struct Tally {
    latencies: Vec<f64>,
    errors: Vec<String>,
}

/// `CONNECTIONS` connections sending requests until `stop`: back to back when `interval` is
/// `None` (the peak), else each paced to one request per `interval`.
async fn drive(
    vouch: &VouchProcess,
    signed: &Arc<Vec<String>>,
    unsigned: &Arc<Vec<String>>,
    run: Duration,
    interval: Option<Duration>,
) -> Tally {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let counter = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let mut conn = vouch.connect().await;
        let (signed, unsigned) = (signed.clone(), unsigned.clone());
        let (tally, counter, stop) = (tally.clone(), counter.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut ticks = interval.map(|i| {
                // Spread the connections' ticks over one interval; a connection that fell
                // behind (a slow answer) catches up, so the offered rate stays the target.
                let start = tokio::time::Instant::now() + i.mul_f64(c as f64 / CONNECTIONS as f64);
                let mut t = tokio::time::interval_at(start, i);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                t
            });
            let mut mine = Tally::default();
            while !stop.load(Ordering::Relaxed) {
                if let Some(t) = ticks.as_mut() {
                    t.tick().await;
                }
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let keys = keys_for(i, &signed, &unsigned);
                let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
                let t = Instant::now();
                match conn.post("/v1/verify", provider_request(&refs)).await {
                    Ok(r) => {
                        mine.latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                        if let Some(e) = check(&r, &keys, &unsigned) {
                            mine.errors.push(e);
                        }
                    }
                    Err(e) => {
                        mine.errors.push(e);
                        break;
                    }
                }
            }
            let mut all = tally.lock().await;
            all.latencies.extend(mine.latencies);
            all.errors.extend(mine.errors);
        }));
    }
    tokio::time::sleep(run).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load task");
    }
    let mut all = std::mem::take(&mut *tally.lock().await);
    all.latencies.sort_by(f64::total_cmp);
    all
}

async fn soak(secs: f64) {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let key = CosignKey::generate();
    let repo = "acme/soak";
    let mut signed = Vec::new();
    for i in 0..SIGNED {
        let image = pusher.push_image(repo, &format!("s{i}")).await;
        let sig = key.sign_image(&format!("{}/{repo}", registry.host), &image.digest);
        push_cosign_signatures(&pusher, repo, &image.digest, &[sig]).await;
        signed.push(format!("{}/{repo}:s{i}", registry.host));
    }
    let mut unsigned = Vec::new();
    for i in 0..UNSIGNED {
        pusher.push_image(repo, &format!("u{i}")).await;
        unsigned.push(format!("{}/{repo}:u{i}", registry.host));
    }
    let (signed, unsigned) = (Arc::new(signed), Arc::new(unsigned));
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("soak.pub");
    std::fs::write(&key_file, key.public_pem()).expect("key");
    // Short TTLs: every image is resolved and verified again every few seconds. A short
    // registry idle timeout: pooled registry connections (a socket and a task each) close
    // soon after the load stops, so the idle footprint after the run does not depend on
    // how many happened to be pooled when the baseline was taken.
    let vouch = VouchProcess::start(&format!(
        "registryIdleTimeout: 1s\ncache: {{verifiedTtl: 5s, failedTtl: 3s, tagTtl: 2s}}\nregistries:\n- host: {host}\n  plainHttp: true\npolicies:\n- name: acme\n  scopes: [\"{host}/acme/*\"]\n  verifiers:\n  - cosign: {{publicKeys: [{key}]}}\n",
        host = registry.host,
        key = key_file.display()
    ))
    .await;
    let pid = vouch.served.child.id();

    let peak_run = Duration::from_secs_f64((secs / 10.0).clamp(2.0, 10.0));
    let peak = drive(&vouch, &signed, &unsigned, peak_run, None).await;
    assert!(
        peak.errors.is_empty(),
        "errors at peak: {:?}",
        &peak.errors[..peak.errors.len().min(5)]
    );
    let peak_rps = peak.latencies.len() as f64 / peak_run.as_secs_f64();
    let target = peak_rps * 0.8;
    println!("soak: peak_rps {peak_rps:.0} req/s");
    println!("soak: target_rps {target:.0} req/s");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = vouch.footprint().await;

    // Sample memory and tasks once a second while the soak runs.
    let samples = Arc::new(Mutex::new(Vec::<(f64, f64, f64)>::new()));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let (samples, sampling) = (samples.clone(), sampling.clone());
        let ops = vouch.served.ops;
        let started = Instant::now();
        async move {
            while sampling.load(Ordering::Relaxed) {
                let text = ops_get(ops, "/metrics").await.text();
                samples.lock().await.push((
                    started.elapsed().as_secs_f64(),
                    rss_bytes(pid),
                    metric_value(&text, "vouch_runtime_alive_tasks"),
                ));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    let interval = Duration::from_secs_f64(CONNECTIONS as f64 / target);
    let run = Duration::from_secs_f64(secs);
    let tally = drive(&vouch, &signed, &unsigned, run, Some(interval)).await;
    sampling.store(false, Ordering::Relaxed);
    sampler.await.expect("sampler");
    let after = vouch.settles_to(baseline, Duration::from_secs(15)).await;

    let samples = samples.lock().await.clone();
    // Memory at the start (after a fifth of the run, once every cache has turned over) and
    // at the end: medians of the samples in the second and the last tenth of the run.
    let window = |from: f64, to: f64| -> Vec<f64> {
        samples
            .iter()
            .filter(|s| s.0 >= secs * from && s.0 <= secs * to)
            .map(|s| s.1)
            .collect()
    };
    let (rss_start, rss_end) = (median(window(0.1, 0.2)), median(window(0.9, 1.0)));
    let drift = (rss_end - rss_start) / rss_start;
    let max_tasks = samples.iter().map(|s| s.2).fold(0.0, f64::max);
    let lat = &tally.latencies;
    println!("soak: duration {secs:.0} s");
    println!("soak: requests {}", lat.len());
    println!("soak: achieved_rps {:.0} req/s", lat.len() as f64 / secs);
    println!("soak: errors {}", tally.errors.len());
    println!("soak: latency_p50 {:.3} ms", percentile(lat, 0.5));
    println!("soak: latency_p99 {:.3} ms", percentile(lat, 0.99));
    println!("soak: latency_max {:.3} ms", lat[lat.len() - 1]);
    println!("soak: rss_start {:.1} MiB", rss_start / 1048576.0);
    println!("soak: rss_end {:.1} MiB", rss_end / 1048576.0);
    println!("soak: rss_drift {:.2} %", drift * 100.0);
    println!("soak: tasks_idle_before {}", baseline.0);
    println!("soak: tasks_max_during {max_tasks}");
    println!("soak: tasks_idle_after {}", after.0);
    println!("soak: fds_idle_before {}", baseline.1);
    println!("soak: fds_idle_after {}", after.1);
    let verifications = vouch
        .metric("vouch_verifications_total{outcome=\"verified\"}")
        .await
        + vouch
            .metric("vouch_verifications_total{outcome=\"failed\"}")
            .await;
    println!("soak: verifications {verifications}");

    assert!(
        tally.errors.is_empty(),
        "{} failed requests, first: {:?}",
        tally.errors.len(),
        &tally.errors[..tally.errors.len().min(5)]
    );
    assert!(
        drift < MAX_RSS_DRIFT,
        "resident memory drifted {:.1} % ({rss_start} → {rss_end} bytes)",
        drift * 100.0
    );
    assert!(
        after.0 <= baseline.0 && after.1 <= baseline.1,
        "tasks/fds {after:?} did not come back to {baseline:?}"
    );
    // The cache churned: far more verifications than images.
    assert!(
        verifications > (SIGNED + UNSIGNED) as f64 * 2.0,
        "only {verifications} verifications"
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not.
    let benching = std::env::args().any(|a| a == "--bench");
    let secs: f64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if benching { 600.0 } else { 30.0 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(soak(secs));
}
