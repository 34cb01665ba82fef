//! Connection-level bounds of the provider listener: header-read timeout (also against a
//! trickling client), idle keep-alive timeout, and the connection cap (who gives way at it,
//! and waiting when every slot is serving); the request-head size limit, one monotonic
//! bound (every head up to `server.maxHeaderBytes` accepted, every larger one answered
//! 431); `Connection: close` on every answer after which the server closes; and exactly
//! one `Host` header required.

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

/// A `/v1/verify` request whose head (request line, headers, blank line) is exactly
/// `size` bytes, padded with headers of at most 16 KiB each.
fn request_with_head_of(size: usize) -> Vec<u8> {
    let body = provider_request(&["nginx"]);
    let start = format!(
        "POST /v1/verify HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    let mut head = start.into_bytes();
    let mut n = 0;
    // Each padding header: "X-Pad-N: " + value + CRLF; the final CRLF ends the head.
    while head.len() + 2 < size {
        let name = format!("X-Pad-{n}: ");
        let room = size - 2 - head.len();
        let overhead = name.len() + 2;
        assert!(room > overhead, "cannot pad to exactly {size} bytes");
        let mut value = room - overhead;
        // Leave room for one more header rather than a remainder too small for one.
        if value > 16 * 1024 {
            value = (16 * 1024).min(room - overhead - 32);
        }
        head.extend_from_slice(name.as_bytes());
        head.extend(std::iter::repeat_n(b'a', value));
        head.extend_from_slice(b"\r\n");
        n += 1;
    }
    head.extend_from_slice(b"\r\n");
    assert_eq!(head.len(), size);
    head.extend_from_slice(body.as_bytes());
    head
}

/// The status of a fresh connection's answer to a request whose head is `size` bytes,
/// and whether that answer said the server closes the connection (and it did).
async fn answer_to_head_of(v: &Vouch, size: usize) -> (u16, bool) {
    let mut s = tls_stream(v.running.provider_addr, v.gatekeeper_client())
        .await
        .expect("tls");
    let reply = raw_request(&mut s, &request_with_head_of(size))
        .await
        .unwrap_or_else(|e| panic!("head of {size} bytes: {e}"));
    let closing = reply.says_close();
    if closing {
        assert!(closed_by_server(&mut s).await, "said close, kept it open");
    }
    (reply.status, closing)
}

#[tokio::test]
async fn the_head_limit_is_one_monotonic_bound_on_the_default() {
    let v = Vouch::start(ALLOW).await;
    const KIB: usize = 1024;
    let limit = 64 * KIB;
    for size in [
        8 * KIB,
        32 * KIB,
        limit - 1,
        limit,
        limit + 1,
        72 * KIB,
        80 * KIB,
        96 * KIB,
        1024 * KIB,
    ] {
        let (status, closing) = answer_to_head_of(&v, size).await;
        if size <= limit {
            assert_eq!(status, 200, "a head of {size} bytes is within the limit");
        } else {
            assert_eq!(status, 431, "a head of {size} bytes is over the limit");
            assert!(closing, "431 for {size} bytes without Connection: close");
        }
    }
}

#[tokio::test]
async fn a_configured_head_limit_is_exact() {
    let v = Vouch::start(&format!("server: {{maxHeaderBytes: 8192}}\n{ALLOW}")).await;
    for (size, want) in [
        (4096, 200),
        (8191, 200),
        (8192, 200),
        (8193, 431),
        (20000, 431),
    ] {
        let (status, closing) = answer_to_head_of(&v, size).await;
        assert_eq!(status, want, "head of {size} bytes");
        assert_eq!(closing, want == 431, "head of {size} bytes");
    }
}

#[tokio::test]
async fn answers_after_which_the_connection_closes_say_so() {
    let v = Vouch::start(&format!(
        "limits: {{maxBodyBytes: 1024, maxDrainBytes: 4096}}\n{ALLOW}"
    ))
    .await;
    let addr = v.running.provider_addr;
    let post = |len: usize, body: &[u8]| {
        let mut r = format!(
            "POST /v1/verify HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    };

    // A declared body over the drain bound is refused unread: the connection cannot be
    // reused, and the answer says so.
    let mut s = tls_stream(addr, v.gatekeeper_client()).await.expect("tls");
    let r = raw_request(&mut s, &post(100_000, &[b' '; 2000]))
        .await
        .expect("answer");
    assert_eq!(r.status, 200);
    assert!(
        String::from_utf8_lossy(&r.body).contains("request-invalid"),
        "{r:?}"
    );
    assert!(r.says_close(), "{r:?}");
    assert!(closed_by_server(&mut s).await);

    // A body over the limit but within the drain bound is read to its end: refused, and
    // the connection stays usable.
    let mut s = tls_stream(addr, v.gatekeeper_client()).await.expect("tls");
    let r = raw_request(&mut s, &post(2000, &[b' '; 2000]))
        .await
        .expect("answer");
    assert!(
        String::from_utf8_lossy(&r.body).contains("request-invalid"),
        "{r:?}"
    );
    assert!(!r.says_close(), "{r:?}");
    let again = provider_request(&["nginx"]);
    let r = raw_request(&mut s, &post(again.len(), again.as_bytes()))
        .await
        .expect("the connection serves a second request");
    assert_eq!(r.status, 200);
    assert!(
        String::from_utf8_lossy(&r.body).contains("\"verified\":true"),
        "{r:?}"
    );

    // A malformed request line: hyper's own 400, closing.
    let mut s = tls_stream(addr, v.gatekeeper_client()).await.expect("tls");
    let r = raw_request(&mut s, b"NOT A REQUEST\r\n\r\n")
        .await
        .expect("answer");
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.says_close(), "{r:?}");
    assert!(closed_by_server(&mut s).await);
}

#[tokio::test]
async fn exactly_one_host_header_is_required() {
    let v = Vouch::start(ALLOW).await;
    let body = provider_request(&["nginx"]);
    let request = |hosts: &str| {
        format!(
            "POST /v1/verify HTTP/1.1\r\n{hosts}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    for (hosts, want) in [
        ("Host: localhost\r\n", 200),
        ("", 400),
        ("Host: localhost\r\nHost: localhost\r\n", 400),
        ("Host: localhost\r\nHost: elsewhere\r\n", 400),
    ] {
        let mut s = tls_stream(v.running.provider_addr, v.gatekeeper_client())
            .await
            .expect("tls");
        let r = raw_request(&mut s, request(hosts).as_bytes())
            .await
            .expect("answer");
        assert_eq!(r.status, want, "{hosts:?}: {r:?}");
        if want == 400 {
            let text = String::from_utf8_lossy(&r.body);
            assert!(
                text.contains("request-invalid") && text.contains("Host"),
                "{text}"
            );
            assert!(r.says_close(), "{r:?}");
            assert!(closed_by_server(&mut s).await, "{hosts:?}");
        } else {
            assert!(!r.says_close(), "{r:?}");
        }
    }
}
