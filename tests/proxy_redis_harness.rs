//! Tests of the Redis and fault-proxy harnesses themselves: if these pass, a failing cache
//! test points at vouch, not at the harness.

mod support;

use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use support::proxy::{Mode, Proxy};
use support::redis::RedisServer;
use support::{STEP, eventually, listener_closed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bounds one network step of a test.
async fn step<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(STEP, f).await.expect("step timed out")
}

/// "Immediately", for a close the proxy does on its own: well under a delay a test sets.
const PROMPTLY: Duration = Duration::from_secs(1);

// ---- Redis ----

#[tokio::test]
async fn redis_answers_commands_and_lists_keys() {
    let redis = RedisServer::start();
    assert_eq!(redis.addr.ip().to_string(), "127.0.0.1");
    assert_eq!(
        redis.url,
        format!("redis://127.0.0.1:{}/", redis.addr.port())
    );

    assert_eq!(redis.command(&["PING"]).await, "+PONG\r\n");
    assert_eq!(redis.command(&["SET", "a", "1"]).await, "+OK\r\n");
    assert_eq!(redis.command(&["GET", "a"]).await, "$1\r\n1\r\n");
    assert_eq!(redis.command(&["GET", "missing"]).await, "$-1\r\n");
    // Arguments are bulk strings: spaces and CRLF inside a value survive.
    assert_eq!(
        redis.command(&["SET", "vouch:x", "two words\r\n"]).await,
        "+OK\r\n"
    );
    assert_eq!(
        redis.command(&["GET", "vouch:x"]).await,
        "$11\r\ntwo words\r\n\r\n"
    );
    assert_eq!(redis.command(&["DBSIZE"]).await, ":2\r\n");
    assert!(
        redis
            .command(&["NO-SUCH-COMMAND"])
            .await
            .starts_with("-ERR"),
        "an error reply is returned, not a panic"
    );

    assert_eq!(redis.keys("*").await, ["a", "vouch:x"]);
    assert_eq!(redis.keys("vouch:*").await, ["vouch:x"]);
    assert!(redis.keys("nothing*").await.is_empty());

    // A reply larger than one read: `command` reads until the reply is complete.
    let big = "v".repeat(200_000);
    assert_eq!(redis.command(&["SET", "big", &big]).await, "+OK\r\n");
    assert_eq!(
        redis.command(&["GET", "big"]).await,
        format!("$200000\r\n{big}\r\n")
    );

    assert_eq!(redis.command(&["FLUSHALL"]).await, "+OK\r\n");
    assert!(redis.keys("*").await.is_empty());
}

#[tokio::test]
async fn redis_stops_and_restarts_empty_on_the_same_port() {
    let mut redis = RedisServer::start();
    let addr = redis.addr;
    let url = redis.url.clone();
    assert_eq!(redis.command(&["SET", "a", "1"]).await, "+OK\r\n");

    redis.stop();
    let refused = TcpStream::connect(addr).await.expect_err("port refuses");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    assert!(redis.try_command(&["PING"]).await.is_err());
    redis.stop(); // idempotent

    redis.restart();
    assert_eq!(redis.addr, addr);
    assert_eq!(redis.url, url);
    assert_eq!(redis.command(&["PING"]).await, "+PONG\r\n");
    assert_eq!(
        redis.command(&["GET", "a"]).await,
        "$-1\r\n",
        "data is gone"
    );
    assert!(redis.keys("*").await.is_empty());
    assert!(
        redis.log().matches("Ready to accept connections").count() >= 2,
        "the log keeps both runs:\n{}",
        redis.log()
    );

    // Restart of a running server works too.
    assert_eq!(redis.command(&["SET", "b", "2"]).await, "+OK\r\n");
    redis.restart();
    assert_eq!(redis.command(&["DBSIZE"]).await, ":0\r\n");
}

#[tokio::test]
async fn redis_is_killed_on_drop_and_servers_do_not_share_ports() {
    let one = RedisServer::start();
    let two = RedisServer::start();
    assert_ne!(one.addr, two.addr);
    one.command(&["SET", "only-in-one", "1"]).await;
    assert!(two.keys("*").await.is_empty());

    let addr = one.addr;
    drop(one);
    let refused = TcpStream::connect(addr).await.expect_err("port refuses");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
}

// ---- Proxy ----

/// An echo server on a free loopback port; counts the connections it has seen closed.
async fn echo_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    let closed = Arc::new(AtomicUsize::new(0));
    let count = closed.clone();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.expect("echo accept");
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                loop {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if tcp.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, closed)
}

/// Writes `msg` and reads it back; returns how long the round trip took.
async fn round_trip(tcp: &mut TcpStream, msg: &[u8]) -> Duration {
    let started = Instant::now();
    step(tcp.write_all(msg)).await.expect("write");
    let mut back = vec![0u8; msg.len()];
    step(tcp.read_exact(&mut back)).await.expect("read echo");
    assert_eq!(back, msg);
    started.elapsed()
}

/// Asserts that `tcp` is closed by the other side within [`PROMPTLY`]: EOF, no data.
async fn assert_closed(tcp: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(PROMPTLY, tcp.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("{what}: still open after {PROMPTLY:?}"));
    assert_eq!(read.expect(what), 0, "{what}: EOF, no data");
}

#[tokio::test]
async fn proxy_passes_bytes_both_ways_and_counts_connections() {
    let (upstream, closed) = echo_server().await;
    let proxy = Proxy::start(upstream).await;
    assert_eq!(proxy.host, proxy.addr.to_string());
    assert!(proxy.addr.ip().is_loopback());
    assert_ne!(proxy.addr, upstream);
    assert_eq!(proxy.mode(), Mode::Pass);
    assert_eq!(proxy.connections(), 0);

    let mut tcp = step(TcpStream::connect(proxy.addr)).await.expect("connect");
    round_trip(&mut tcp, b"hello").await;
    // More than one chunk each way, in order.
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    round_trip(&mut tcp, &big).await;
    assert_eq!(proxy.connections(), 1);

    // A half-close travels through: upstream sees EOF, closes, and so does the client.
    tcp.shutdown().await.expect("shutdown write");
    assert_closed(&mut tcp, "after half-close").await;
    assert!(eventually(STEP, || async { closed.load(Ordering::SeqCst) == 1 }).await);

    for _ in 0..2 {
        let mut tcp = step(TcpStream::connect(proxy.addr)).await.expect("connect");
        round_trip(&mut tcp, b"again").await;
    }
    assert_eq!(proxy.connections(), 3);
}

#[tokio::test]
async fn proxy_delay_holds_back_responses_on_open_and_new_connections() {
    let (upstream, _) = echo_server().await;
    let proxy = Proxy::start(upstream).await;
    let delay = Duration::from_millis(300);

    let mut open = step(TcpStream::connect(proxy.addr)).await.expect("connect");
    let fast = round_trip(&mut open, b"ping").await;
    assert!(fast < delay, "Pass is not delayed: {fast:?}");

    proxy.set_mode(Mode::Delay(delay));
    assert_eq!(proxy.mode(), Mode::Delay(delay));
    let slow = round_trip(&mut open, b"ping").await;
    assert!(
        slow >= delay && slow < Duration::from_secs(2),
        "open connection: {slow:?}"
    );
    let mut new = step(TcpStream::connect(proxy.addr)).await.expect("connect");
    let slow = round_trip(&mut new, b"ping").await;
    assert!(
        slow >= delay && slow < Duration::from_secs(2),
        "new connection: {slow:?}"
    );

    proxy.set_mode(Mode::Pass);
    let fast = round_trip(&mut open, b"ping").await;
    assert!(fast < delay, "back to Pass: {fast:?}");
    assert_eq!(proxy.connections(), 2);
}

#[tokio::test]
async fn proxy_refuse_closes_new_and_open_connections_until_pass() {
    let (upstream, closed) = echo_server().await;
    let proxy = Proxy::start(upstream).await;

    let mut open = step(TcpStream::connect(proxy.addr)).await.expect("connect");
    round_trip(&mut open, b"before").await;

    proxy.set_mode(Mode::Refuse);
    assert_closed(&mut open, "open connection").await;
    // The upstream side of it is released as well.
    assert!(eventually(STEP, || async { closed.load(Ordering::SeqCst) == 1 }).await);

    let mut new = step(TcpStream::connect(proxy.addr))
        .await
        .expect("a refusing proxy still accepts");
    assert_closed(&mut new, "new connection").await;
    assert_eq!(proxy.connections(), 2, "refused connections count");

    proxy.set_mode(Mode::Pass);
    let mut again = step(TcpStream::connect(proxy.addr)).await.expect("connect");
    round_trip(&mut again, b"after").await;
    assert_eq!(proxy.connections(), 3);
}

#[tokio::test]
async fn proxy_stops_on_drop() {
    let (upstream, closed) = echo_server().await;
    let proxy = Proxy::start(upstream).await;
    let addr = proxy.addr;
    let mut open = step(TcpStream::connect(addr)).await.expect("connect");
    round_trip(&mut open, b"x").await;

    drop(proxy);
    assert_closed(&mut open, "open connection after drop").await;
    assert!(eventually(STEP, || async { closed.load(Ordering::SeqCst) == 1 }).await);
    assert!(listener_closed(addr).await, "listener closed");
}

/// A keep-alive HTTP/1.1 server that answers every request `200 ok`.
async fn http_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
    let addr = listener.local_addr().expect("http addr");
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.expect("http accept");
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                    }
                    // Requests without bodies: each ends at the blank line.
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        let response = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if tcp.write_all(response).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// What a registry client sees: one kept-alive HTTP connection, through every mode.
#[tokio::test]
async fn proxy_modes_reach_a_kept_alive_http_connection() {
    let proxy = Proxy::start(http_server().await).await;
    let tcp = step(TcpStream::connect(proxy.addr)).await.expect("connect");
    let (mut sender, conn) = step(hyper::client::conn::http1::handshake(TokioIo::new(tcp)))
        .await
        .expect("http handshake");
    let conn = tokio::spawn(conn);
    let get = || {
        hyper::Request::builder()
            .uri("/v2/")
            .header("host", proxy.host.as_str())
            .body(Full::new(Bytes::new()))
            .expect("request")
    };

    let timed_get = async |sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>| {
        let started = Instant::now();
        let response = step(sender.send_request(get())).await?;
        assert_eq!(response.status(), 200);
        let body = step(response.into_body().collect()).await?.to_bytes();
        assert_eq!(&body[..], b"ok");
        Ok::<_, hyper::Error>(started.elapsed())
    };

    timed_get(&mut sender).await.expect("Pass");
    proxy.set_mode(Mode::Delay(Duration::from_millis(300)));
    let slow = timed_get(&mut sender).await.expect("Delay");
    assert!(
        slow >= Duration::from_millis(300) && slow < Duration::from_secs(2),
        "{slow:?}"
    );
    proxy.set_mode(Mode::Refuse);
    // hyper notices the close and ends the connection task; the sender fails from then on.
    step(conn)
        .await
        .expect("connection task")
        .expect("closed cleanly between requests");
    assert!(timed_get(&mut sender).await.is_err());
    assert_eq!(proxy.connections(), 1, "all on one connection");
}
