//! Connection-level bounds of the provider listener: header-read timeout (also against a
//! trickling client), idle keep-alive timeout, and the connection cap (who gives way at it,
//! and waiting when every slot is serving).

mod support;

use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ALLOW: &str =
    "policies:\n- name: library\n  scopes: [\"docker.io/library/*\"]\n  action: allow\n";

/// Reads until EOF or error; returns how long that took (bounded by STEP).
async fn time_until_closed<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let read_all = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(STEP, read_all)
        .await
        .expect("server closes the connection");
    started.elapsed()
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let v = Vouch::start(&format!("server: {{headerReadTimeout: 300ms}}\n{ALLOW}")).await;
    let mut s = tls_stream(v.running.provider_addr, v.gatekeeper_client())
        .await
        .expect("tls");
    let took = time_until_closed(&mut s).await;
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_trickled_request_head_is_cut_off() {
    let v = Vouch::start(&format!("server: {{headerReadTimeout: 400ms}}\n{ALLOW}")).await;
    let mut s = tls_stream(v.running.provider_addr, v.gatekeeper_client())
        .await
        .expect("tls");
    let head = b"POST /v1/verify HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let started = Instant::now();
    let mut closed = false;
    for b in head {
        if s.write_all(&[*b]).await.is_err() || s.flush().await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    if !closed {
        // Writes may still be buffered; the read side sees the close.
        let mut buf = [0u8; 64];
        let r = tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await;
        closed = matches!(r, Ok(Ok(0)) | Ok(Err(_)));
    }
    assert!(closed, "slow head not cut off");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cut off near the 400 ms budget"
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_live_until_the_idle_timeout() {
    let v = Vouch::start(&format!(
        "server: {{idleTimeout: 600ms, headerReadTimeout: 200ms}}\n{ALLOW}"
    ))
    .await;
    let mut conn = v.connect().await;
    // Idle longer than the header timeout but shorter than the idle timeout: still open.
    for _ in 0..2 {
        let r = conn
            .post("/v1/verify", provider_request(&["nginx"]))
            .await
            .expect("kept alive");
        assert_eq!(r.status, 200);
        tokio::time::sleep(Duration::from_millis(350)).await;
    }
    // Past the idle timeout the server closes it.
    let mut s = tls_stream(v.running.provider_addr, v.gatekeeper_client())
        .await
        .expect("tls");
    s.write_all(provider_post(&provider_request(&["nginx"])).as_bytes())
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.expect("response");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let took = time_until_closed(&mut s).await;
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

fn provider_post(body: &str) -> String {
    format!(
        "POST /v1/verify HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn at_the_cap_the_oldest_connection_without_a_request_gives_way() {
    let v = Vouch::start(&format!("server: {{maxConnections: 2}}\n{ALLOW}")).await;
    // The oldest: a TCP connection that never starts its TLS handshake.
    let mut silent = tokio::net::TcpStream::connect(v.running.provider_addr)
        .await
        .expect("tcp");
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A keep-alive client that has been served and now idles.
    let mut idle = v.connect().await;
    assert_eq!(
        idle.post("/v1/verify", provider_request(&["nginx"]))
            .await
            .map(|r| r.status),
        Ok(200)
    );
    // A newcomer at the cap is served at once, in the silent connection's slot.
    let started = Instant::now();
    let mut newcomer = tokio::time::timeout(STEP, v.connect())
        .await
        .expect("newcomer connects");
    assert_eq!(
        newcomer
            .post("/v1/verify", provider_request(&["nginx"]))
            .await
            .map(|r| r.status),
        Ok(200)
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "newcomer waited {:?}, as if for the 5 s handshake timeout",
        started.elapsed()
    );
    let took = time_until_closed(&mut silent).await;
    assert!(
        took < Duration::from_secs(2),
        "silent connection kept {took:?}"
    );
    // The idle keep-alive client was not the one to give way.
    assert_eq!(
        idle.post("/v1/verify", provider_request(&["nginx"]))
            .await
            .map(|r| r.status),
        Ok(200)
    );
    let metrics = ops_get(v.running.ops_addr, "/metrics").await.text();
    assert_eq!(
        metric_value(
            &metrics,
            "vouch_connections_shed_total{phase=\"handshake\"}"
        ),
        1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn when_every_slot_is_serving_a_new_client_waits_for_one() {
    let v = Vouch::start(&format!(
        "deadline: 1500ms\nserver: {{maxConnections: 2}}\n{ALLOW}"
    ))
    .await;
    // Two requests whose bodies never finish arriving: both slots are serving until the
    // deadline answers them.
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut s = tls_stream(v.running.provider_addr, v.gatekeeper_client())
            .await
            .expect("tls");
        s.write_all(b"POST /v1/verify HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{")
            .await
            .expect("write head");
        s.flush().await.expect("flush");
        busy.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let third = tokio::spawn({
        let addr = v.running.provider_addr;
        let config = v.gatekeeper_client();
        async move {
            let mut c = Conn::open(addr, config).await?;
            c.post("/v1/verify", provider_request(&["nginx"]))
                .await
                .map(|r| r.status)
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !third.is_finished(),
        "a serving connection was closed for a newcomer"
    );
    // Each busy request is answered (a systemError for the unfinished body) at its deadline.
    for s in &mut busy {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(STEP, s.read(&mut buf))
            .await
            .expect("answered at the deadline")
            .expect("read");
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("systemError"), "{text}");
    }
    drop(busy);
    let r = tokio::time::timeout(STEP, third)
        .await
        .expect("served once a slot frees");
    assert_eq!(r.expect("join"), Ok(200));
}
