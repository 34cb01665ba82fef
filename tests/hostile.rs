//! Hostile clients on the provider port, all at once, while a Gatekeeper-like client keeps
//! asking: thousands of TCP connections that never start TLS, slowloris request heads, a
//! body trickled a byte at a time, oversized headers, TLS garbage. The real client must be
//! answered every time (keep-alive and fresh connections alike), and once the attack stops
//! vouch's tasks and file descriptors come back to their idle level.
//!
//! `cargo test --test hostile -- --nocapture` prints the good client's latencies.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

const ALLOW: &str =
    "policies:\n- name: library\n  scopes: [\"docker.io/library/*\"]\n  action: allow\n";

/// How long the attack runs while the good client measures.
const ATTACK: Duration = Duration::from_secs(4);
/// TCP connections that never start a handshake: more than `maxConnections` (1024).
const SILENT_CONNECTIONS: usize = 2000;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Repeats `attack` (each run on a fresh connection) until `stop`; counts runs.
fn repeat<F, Fut>(set: &mut JoinSet<()>, stop: &Arc<AtomicBool>, runs: &Arc<AtomicUsize>, attack: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let (stop, runs) = (stop.clone(), runs.clone());
    set.spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            // Each run is bounded: a hostile client that vouch never cuts off would fail
            // the test through the join below instead of hanging it.
            let _ = tokio::time::timeout(STEP, attack()).await;
            runs.fetch_add(1, Ordering::Relaxed);
        }
    });
}

/// Writes `bytes` one at a time with `pause` between them until the server closes.
async fn trickle<S: tokio::io::AsyncWrite + Unpin>(s: &mut S, bytes: &[u8], pause: Duration) {
    for b in bytes.iter().cycle() {
        if s.write_all(&[*b]).await.is_err() || s.flush().await.is_err() {
            return;
        }
        tokio::time::sleep(pause).await;
    }
}

/// A Gatekeeper-like client for `run`: two keep-alive connections and one fresh connection
/// per round, every answer checked; returns the latencies in ms.
async fn good_client(v: &VouchProcess, run: Duration) -> Vec<f64> {
    let client = v.gatekeeper_client();
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut kept = [v.connect().await, v.connect().await];
    let body = provider_request(&["nginx:1.27", "docker.io/library/redis:7"]);
    while started.elapsed() < run {
        for conn in kept.iter_mut() {
            let t = Instant::now();
            let r = conn
                .post("/v1/verify", body.clone())
                .await
                .expect("kept-alive request");
            assert_eq!(r.status, 200);
            assert_eq!(r.json()["response"]["systemError"], "", "{}", r.text());
            latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let t = Instant::now();
        let mut fresh = tokio::time::timeout(STEP, Conn::open(v.served.provider, client.clone()))
            .await
            .expect("a fresh connection is accepted")
            .expect("handshake");
        let r = fresh
            .post("/v1/verify", body.clone())
            .await
            .expect("request");
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["response"]["items"][1]["value"]["verified"], true);
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    latencies.sort_by(f64::total_cmp);
    latencies
}

fn print_latencies(when: &str, sorted: &[f64]) {
    println!(
        "hostile: good client {when}: {} requests, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        sorted.len(),
        percentile(sorted, 0.5),
        percentile(sorted, 0.99),
        sorted[sorted.len() - 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_do_not_starve_gatekeeper() {
    // Short head timeout, so the slow clients are cut off (and come back) during the attack.
    let v = VouchProcess::start(&format!(
        "deadline: 1s\nserver: {{headerReadTimeout: 1s, handshakeTimeout: 2s}}\n{ALLOW}"
    ))
    .await;
    let addr = v.served.provider;
    let client = v.gatekeeper_client();
    // The slow clients are cut off after the 1 s head timeout or deadline and reconnect.
    // Warm up, then note the idle footprint.
    assert_eq!(
        v.verify(&["nginx:1.27"]).await["response"]["items"][0]["value"]["verified"],
        true
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = v.footprint().await;
    print_latencies("quiet", &good_client(&v, Duration::from_secs(1)).await);

    let stop = Arc::new(AtomicBool::new(false));
    let mut attackers = JoinSet::new();
    let counts: Vec<(&str, Arc<AtomicUsize>)> = [
        "silent",
        "slowloris",
        "trickled_body",
        "huge_headers",
        "tls_garbage",
    ]
    .into_iter()
    .map(|n| (n, Arc::new(AtomicUsize::new(0))))
    .collect();

    // Thousands of connections that connect and say nothing, held open.
    let silent = {
        let mut held = Vec::new();
        for _ in 0..SILENT_CONNECTIONS {
            if let Ok(s) = TcpStream::connect(addr).await {
                held.push(s);
            }
        }
        counts[0].1.fetch_add(held.len(), Ordering::Relaxed);
        held
    };
    // Slowloris: a request head a byte every 100 ms, on 50 connections.
    for _ in 0..50 {
        let c = client.clone();
        repeat(&mut attackers, &stop, &counts[1].1, move || {
            let c = c.clone();
            async move {
                if let Ok(mut s) = tls_stream(addr, c).await {
                    trickle(
                        &mut s,
                        b"POST /v1/verify HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaa",
                        Duration::from_millis(100),
                    )
                    .await;
                }
            }
        });
    }
    // A complete head, then the body a byte every 100 ms, on 50 connections.
    for _ in 0..50 {
        let c = client.clone();
        repeat(&mut attackers, &stop, &counts[2].1, move || {
            let c = c.clone();
            async move {
                if let Ok(mut s) = tls_stream(addr, c).await {
                    let head =
                        "POST /v1/verify HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n";
                    if s.write_all(head.as_bytes()).await.is_ok() {
                        trickle(&mut s, b"{\"keys\":", Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
    // Request heads of 200 KiB (the limit is 64 KiB).
    for _ in 0..10 {
        let c = client.clone();
        repeat(&mut attackers, &stop, &counts[3].1, move || {
            let c = c.clone();
            async move {
                if let Ok(mut s) = tls_stream(addr, c).await {
                    let mut head = b"POST /v1/verify HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
                    head.extend(std::iter::repeat_n(b'a', 200 * 1024));
                    head.extend_from_slice(b"\r\n\r\n");
                    let _ = s.write_all(&head).await;
                    let mut buf = [0u8; 1024];
                    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                }
            }
        });
    }
    // Bytes that are not TLS at all.
    for i in 0..10u8 {
        repeat(&mut attackers, &stop, &counts[4].1, move || async move {
            if let Ok(mut s) = TcpStream::connect(addr).await {
                let garbage: Vec<u8> = (0..4096u32)
                    .map(|j| (j as u8).wrapping_mul(31) ^ i)
                    .collect();
                let _ = s.write_all(&garbage).await;
                let mut buf = [0u8; 1024];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            }
        });
    }

    let latencies = good_client(&v, ATTACK).await;
    let metrics = ops_get(v.served.ops, "/metrics").await.text();
    stop.store(true, Ordering::Relaxed);
    drop(silent);
    tokio::time::timeout(STEP * 2, async {
        while attackers.join_next().await.is_some() {}
    })
    .await
    .expect("every hostile client is cut off or gives up");

    print_latencies("under attack", &latencies);
    let max = latencies[latencies.len() - 1];
    for (name, n) in &counts {
        println!("hostile: {name} connections {}", n.load(Ordering::Relaxed));
    }
    for phase in ["handshake", "no_request", "idle"] {
        println!(
            "hostile: shed {phase} {}",
            metric_value(
                &metrics,
                &format!("vouch_connections_shed_total{{phase=\"{phase}\"}}")
            )
        );
    }
    // Every hostile kind ran; the slow ones were cut off and came back (more runs than
    // clients), which they only do when vouch closes them.
    for (name, n) in &counts[1..] {
        assert!(n.load(Ordering::Relaxed) > 50, "{name} ran {n:?} times");
    }
    // A real client is answered well within Gatekeeper's 3 s webhook timeout.
    assert!(max < 1000.0, "slowest good request {max:.1} ms");
    assert!(
        metric_value(
            &metrics,
            "vouch_connections_shed_total{phase=\"handshake\"}"
        ) > 0.0,
        "the silent flood never reached the cap"
    );

    // After the attack: back to the idle footprint.
    v.assert_back_to(baseline, "hostile").await;
}
