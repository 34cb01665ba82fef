//! Tests of the HTTP fault proxy itself, in front of the real Debian `docker-registry`: if
//! these pass, a failing vouch test behind the proxy points at vouch, not at the harness.

mod support;

use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use reqwest::Method;
use support::faults::{Fault, FaultProxy, Rule, Seen};
use support::registry::{Image, MANIFEST_ACCEPT, Pusher, Registry, sha256_digest};
use support::{STEP, eventually, listener_closed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REPO: &str = "test/app";

/// Bounds one network step of a test.
async fn step<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(STEP, f).await.expect("step timed out")
}

/// A registry with one image, and a proxy in front of it.
async fn setup() -> (Registry, FaultProxy, Image) {
    let registry = Registry::start();
    let image = step(Pusher::new(&registry).push_image(REPO, "v1")).await;
    let proxy = FaultProxy::start(registry.addr).await;
    (registry, proxy, image)
}

/// A client that shows redirects instead of following them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(STEP)
        .build()
        .expect("reqwest client")
}

fn manifest_path(image: &Image) -> String {
    format!("/v2/{REPO}/manifests/{}", image.digest)
}

/// A manifest request with the OCI Accept types to `host` (the proxy or the registry).
async fn manifest(host: &str, method: Method, image: &Image) -> reqwest::Response {
    let url = format!("http://{host}{}", manifest_path(image));
    step(
        client()
            .request(method, url)
            .header("accept", MANIFEST_ACCEPT)
            .send(),
    )
    .await
    .expect("response head")
}

/// The whole body, or the error that ended it.
async fn body(response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    step(response.bytes()).await.map(|b| b.to_vec())
}

/// The kind of the I/O error behind a client error (reqwest wraps hyper's, which wraps it).
fn io_kind(err: &reqwest::Error) -> Option<ErrorKind> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = e.source();
    }
    None
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    let value = response.headers().get(name)?;
    Some(value.to_str().expect("ASCII header").to_owned())
}

/// A keep-alive request (`close` adds `Connection: close`) as raw bytes.
fn raw_request(method: &str, path: &str, host: &str, close: bool) -> String {
    let connection = if close { "connection: close\r\n" } else { "" };
    format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\naccept: {MANIFEST_ACCEPT}\r\n{connection}\r\n"
    )
}

/// Writes `request` on a fresh connection and reads until the connection ends: the bytes
/// received and how it ended (`Ok` for EOF).
async fn raw(addr: SocketAddr, request: &str) -> (Vec<u8>, std::io::Result<()>) {
    let mut tcp = step(TcpStream::connect(addr)).await.expect("connect");
    step(tcp.write_all(request.as_bytes()))
        .await
        .expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match step(tcp.read(&mut buf)).await {
            Ok(0) => return (got, Ok(())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return (got, Err(e)),
        }
    }
}

/// Reads one whole response (with a `Content-Length`) from a kept-alive connection.
async fn read_response(tcp: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some((head, rest)) = split(&got)
            && rest.len() >= content_length(&head)
        {
            return got;
        }
        let n = step(tcp.read(&mut buf)).await.expect("read response");
        assert!(n > 0, "closed mid-response");
        got.extend_from_slice(&buf[..n]);
    }
}

/// Splits raw response bytes into the header block (without the blank line) and the rest;
/// `None` when the header block is incomplete.
fn split(raw: &[u8]) -> Option<(String, &[u8])> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8(raw[..end].to_vec()).expect("ASCII head");
    Some((head, &raw[end + 4..]))
}

/// The value of header `name` in a raw header block.
fn raw_header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

fn content_length(head: &str) -> usize {
    raw_header(head, "content-length")
        .expect("content-length")
        .parse()
        .expect("numeric content-length")
}

fn seen(method: &str, path: &str, fault: Option<&str>) -> Seen {
    Seen {
        method: method.into(),
        path: path.into(),
        fault: fault.map(Into::into),
    }
}

// ---- Passing through ----

#[tokio::test]
async fn passes_get_and_head_through_unchanged_and_logs_them() {
    let (registry, proxy, image) = setup().await;
    assert_eq!(proxy.host, proxy.addr.to_string());
    assert!(proxy.addr.ip().is_loopback());

    let direct = manifest(&registry.host, Method::GET, &image).await;
    let proxied = manifest(&proxy.host, Method::GET, &image).await;
    assert_eq!(proxied.status(), 200);
    for name in ["docker-content-digest", "content-type", "etag"] {
        assert_eq!(header(&proxied, name), header(&direct, name), "{name}");
    }
    assert_eq!(
        header(&proxied, "docker-content-digest"),
        Some(image.digest.clone())
    );
    assert_eq!(body(proxied).await.expect("body"), image.manifest);

    // HEAD keeps the announced length of a body it does not send.
    let head = manifest(&proxy.host, Method::HEAD, &image).await;
    assert_eq!(head.status(), 200);
    assert_eq!(
        header(&head, "content-length"),
        Some(image.size.to_string())
    );
    assert_eq!(
        header(&head, "docker-content-digest"),
        Some(image.digest.clone())
    );
    let path = manifest_path(&image);
    let (bytes, end) = raw(proxy.addr, &raw_request("HEAD", &path, &proxy.host, true)).await;
    end.expect("clean close after Connection: close");
    let (head, rest) = split(&bytes).expect("complete head");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(content_length(&head), image.size);
    assert!(rest.is_empty(), "no body after a HEAD");

    // Errors pass through as they are.
    let url = format!("http://{}/v2/{REPO}/manifests/missing", proxy.host);
    let missing = step(client().get(url).send()).await.expect("404");
    assert_eq!(missing.status(), 404);
    assert!(
        String::from_utf8(body(missing).await.expect("body"))
            .unwrap()
            .contains("MANIFEST_UNKNOWN")
    );

    assert_eq!(
        proxy.log(),
        [
            seen("GET", &path, None),
            seen("HEAD", &path, None),
            seen("HEAD", &path, None),
            seen("GET", &format!("/v2/{REPO}/manifests/missing"), None),
        ]
    );
}

#[tokio::test]
async fn keeps_connections_alive_and_pushes_through() {
    let (registry, proxy, _) = setup().await;
    let http = client();
    let base = format!("http://{}", proxy.host);

    // A monolithic blob upload through the proxy: the registry builds the upload URL from
    // the forwarded Host, so it points back at the proxy.
    let blob = b"pushed through the fault proxy".to_vec();
    let digest = sha256_digest(&blob);
    let opened = step(http.post(format!("{base}/v2/{REPO}/blobs/uploads/")).send())
        .await
        .expect("POST");
    assert_eq!(opened.status(), 202);
    let location = header(&opened, "location").expect("Location");
    assert!(location.starts_with(&base), "{location}");
    let put = step(
        http.put(format!("{location}&digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(blob.clone())
            .send(),
    )
    .await
    .expect("PUT");
    assert_eq!(put.status(), 201);
    let got = step(http.get(format!("{base}/v2/{REPO}/blobs/{digest}")).send())
        .await
        .expect("GET blob");
    assert_eq!(body(got).await.expect("blob"), blob);
    assert_eq!(
        step(Pusher::new(&registry).get_blob(REPO, &digest)).await,
        blob
    );

    let methods: Vec<_> = proxy.log().into_iter().map(|s| s.method).collect();
    assert_eq!(methods, ["POST", "PUT", "GET"]);
    assert_eq!(proxy.open_connections(), 1, "one kept-alive connection");
    drop(http);
    assert!(eventually(STEP, || async { proxy.open_connections() == 0 }).await);
}

// ---- Faults answered locally ----

#[tokio::test]
async fn status_faults_answer_without_contacting_upstream() {
    let (registry, proxy, image) = setup().await;
    registry.settle_log().await;
    let before = registry.access_log().len();

    proxy.on(Rule::path(
        "GET",
        "/manifests/",
        Fault::Status {
            code: 503,
            retry_after: None,
        },
    ));
    let retry_after = Some("7".to_string());
    proxy.on(Rule::any(Fault::Status {
        code: 429,
        retry_after,
    }));

    let unavailable = manifest(&proxy.host, Method::GET, &image).await;
    assert_eq!(unavailable.status(), 503);
    assert_eq!(header(&unavailable, "content-length").as_deref(), Some("0"));
    assert_eq!(header(&unavailable, "retry-after"), None);
    assert!(body(unavailable).await.expect("empty body").is_empty());

    // HEAD does not match the first rule; the second one applies.
    let limited = manifest(&proxy.host, Method::HEAD, &image).await;
    assert_eq!(limited.status(), 429);
    assert_eq!(header(&limited, "retry-after").as_deref(), Some("7"));

    let redirect = Fault::Redirect("http://127.0.0.1:9/elsewhere".into());
    proxy.clear();
    proxy.on(Rule::any(redirect));
    let moved = manifest(&proxy.host, Method::GET, &image).await;
    assert_eq!(moved.status(), 307);
    assert_eq!(
        header(&moved, "location").as_deref(),
        Some("http://127.0.0.1:9/elsewhere")
    );

    registry.settle_log().await;
    assert_eq!(
        registry.requests_since(before),
        [],
        "upstream not contacted"
    );
    let faults: Vec<_> = proxy.log().into_iter().map(|s| s.fault).collect();
    assert_eq!(
        faults,
        [
            Some("Status { code: 503, retry_after: None }".into()),
            Some("Status { code: 429, retry_after: Some(\"7\") }".into()),
            Some("Redirect(\"http://127.0.0.1:9/elsewhere\")".into()),
        ]
    );
}

#[tokio::test]
async fn times_limits_a_rule_and_clear_removes_all() {
    let (_registry, proxy, image) = setup().await;
    let status = |code| Fault::Status {
        code,
        retry_after: None,
    };
    proxy.on(Rule::path(None, "/manifests/", status(503)).times(2));
    proxy.on(Rule::path("GET", &image.digest, status(429)).times(1));
    proxy.on(Rule::path("GET", "/no-such-path", status(500)));

    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(
            manifest(&proxy.host, Method::GET, &image)
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(codes, [503, 503, 429, 200]);

    proxy.on(Rule::any(status(500)));
    assert_eq!(
        manifest(&proxy.host, Method::GET, &image).await.status(),
        500
    );
    proxy.clear();
    assert_eq!(
        manifest(&proxy.host, Method::GET, &image).await.status(),
        200
    );
    assert_eq!(proxy.log().len(), 6);
    assert_eq!(proxy.log()[3].fault, None);
}

#[tokio::test]
async fn garbage_is_not_http() {
    let (_registry, proxy, image) = setup().await;
    proxy.on(Rule::any(Fault::Garbage));

    let tcp = step(TcpStream::connect(proxy.addr)).await.expect("connect");
    let (mut sender, conn) = step(hyper::client::conn::http1::handshake(TokioIo::new(tcp)))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let request = hyper::Request::get(manifest_path(&image))
        .header("host", proxy.host.as_str())
        .body(Empty::<Bytes>::new())
        .expect("request");
    let err = step(sender.send_request(request))
        .await
        .expect_err("not HTTP");
    assert!(err.is_parse(), "a parse error: {err:?}");

    let (bytes, end) = raw(proxy.addr, &raw_request("GET", "/v2/", &proxy.host, false)).await;
    end.expect("closed after the garbage");
    assert!(bytes.len() >= 200, "a few hundred bytes: {}", bytes.len());
    assert!(!bytes.starts_with(b"HTTP/"));
}

// ---- Faults on upstream's response ----

#[tokio::test]
async fn delay_holds_the_whole_response_back() {
    let (_registry, proxy, image) = setup().await;
    let delay = Duration::from_millis(300);
    proxy.on(Rule::any(Fault::Delay(delay)).times(1));

    let started = Instant::now();
    let response = manifest(&proxy.host, Method::GET, &image).await;
    assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
    assert_eq!(body(response).await.expect("body"), image.manifest);

    let started = Instant::now();
    manifest(&proxy.host, Method::GET, &image).await;
    assert!(
        started.elapsed() < delay,
        "used up: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn reset_mid_body_resets_after_half_the_body() {
    let (_registry, proxy, image) = setup().await;
    proxy.on(Rule::any(Fault::ResetMidBody));
    let path = manifest_path(&image);

    let (bytes, end) = raw(proxy.addr, &raw_request("GET", &path, &proxy.host, false)).await;
    let err = end.expect_err("a reset, not EOF");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    let (head, rest) = split(&bytes).expect("the whole head arrives");
    assert_eq!(
        content_length(&head),
        image.size,
        "the full length is announced"
    );
    assert_eq!(rest, &image.manifest[..image.size / 2]);

    // HEAD: half the header block.
    let (bytes, end) = raw(proxy.addr, &raw_request("HEAD", &path, &proxy.host, false)).await;
    assert_eq!(end.expect_err("a reset").kind(), ErrorKind::ConnectionReset);
    assert!(bytes.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(split(&bytes).is_none(), "incomplete head");

    let response = manifest(&proxy.host, Method::GET, &image).await;
    let err = body(response).await.expect_err("body fails");
    assert_eq!(io_kind(&err), Some(ErrorKind::ConnectionReset), "{err:?}");
}

#[tokio::test]
async fn truncate_closes_after_half_the_body() {
    let (_registry, proxy, image) = setup().await;
    proxy.on(Rule::any(Fault::Truncate));
    let path = manifest_path(&image);

    let (bytes, end) = raw(proxy.addr, &raw_request("GET", &path, &proxy.host, false)).await;
    end.expect("a clean close");
    let (head, rest) = split(&bytes).expect("the whole head arrives");
    assert_eq!(content_length(&head), image.size);
    assert_eq!(rest, &image.manifest[..image.size / 2]);

    let (bytes, end) = raw(proxy.addr, &raw_request("HEAD", &path, &proxy.host, false)).await;
    end.expect("a clean close");
    assert!(!bytes.is_empty() && split(&bytes).is_none(), "half a head");

    let response = manifest(&proxy.host, Method::GET, &image).await;
    let err = body(response).await.expect_err("body fails");
    assert_eq!(io_kind(&err), Some(ErrorKind::UnexpectedEof), "{err:?}");
}

#[tokio::test]
async fn content_length_lies_about_the_body() {
    let (_registry, proxy, image) = setup().await;
    let path = manifest_path(&image);

    proxy.on(Rule::any(Fault::ContentLength(10)));
    let (bytes, end) = raw(proxy.addr, &raw_request("GET", &path, &proxy.host, false)).await;
    end.expect("closed after the body");
    let (head, rest) = split(&bytes).expect("head");
    assert_eq!(content_length(&head), image.size + 10);
    assert_eq!(rest, image.manifest, "the full body, nothing more");
    let response = manifest(&proxy.host, Method::GET, &image).await;
    let err = body(response).await.expect_err("waits for 10 more bytes");
    assert_eq!(io_kind(&err), Some(ErrorKind::UnexpectedEof), "{err:?}");
    let head = manifest(&proxy.host, Method::HEAD, &image).await;
    assert_eq!(
        header(&head, "content-length"),
        Some((image.size + 10).to_string())
    );

    proxy.clear();
    proxy.on(Rule::any(Fault::ContentLength(-10)));
    let response = manifest(&proxy.host, Method::GET, &image).await;
    assert_eq!(
        body(response).await.expect("short body"),
        image.manifest[..image.size - 10]
    );
}

#[tokio::test]
async fn oversize_pads_the_body_and_keeps_the_digest() {
    let (_registry, proxy, image) = setup().await;
    let n = image.size + 1000;
    proxy.on(Rule::any(Fault::Oversize(n)));

    let response = manifest(&proxy.host, Method::GET, &image).await;
    assert_eq!(
        header(&response, "docker-content-digest"),
        Some(image.digest.clone())
    );
    let got = body(response).await.expect("body");
    assert_eq!(got.len(), n);
    assert_eq!(got[..image.size], image.manifest);
    assert!(got[image.size..].iter().all(|b| *b == b' '));

    let head = manifest(&proxy.host, Method::HEAD, &image).await;
    assert_eq!(header(&head, "content-length"), Some(n.to_string()));
}

#[tokio::test]
async fn corrupt_changes_one_byte_or_the_digest() {
    let (_registry, proxy, image) = setup().await;
    proxy.on(Rule::any(Fault::Corrupt));

    let response = manifest(&proxy.host, Method::GET, &image).await;
    assert_eq!(
        header(&response, "docker-content-digest"),
        Some(image.digest.clone())
    );
    let got = body(response).await.expect("body");
    assert_eq!(got.len(), image.size);
    assert_ne!(sha256_digest(&got), image.digest);
    let differing = got
        .iter()
        .zip(&image.manifest)
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(differing, 1);

    let head = manifest(&proxy.host, Method::HEAD, &image).await;
    assert_eq!(
        header(&head, "content-length"),
        Some(image.size.to_string())
    );
    let digest = header(&head, "docker-content-digest").expect("digest");
    assert_ne!(digest, image.digest);
    assert_eq!(
        digest[..digest.len() - 1],
        image.digest[..image.digest.len() - 1]
    );
}

#[tokio::test]
async fn trickle_sends_the_correct_response_byte_by_byte() {
    let (_registry, proxy, image) = setup().await;
    let manifest: serde_json::Value = serde_json::from_slice(&image.manifest).expect("json");
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer digest");
    let path = format!("/v2/{REPO}/blobs/{layer}");
    let pause = Duration::from_millis(2);
    proxy.on(Rule::path("GET", "/blobs/", Fault::Trickle(pause)));

    let started = Instant::now();
    let (bytes, end) = raw(proxy.addr, &raw_request("GET", &path, &proxy.host, true)).await;
    let took = started.elapsed();
    end.expect("clean close after Connection: close");
    let (head, rest) = split(&bytes).expect("head");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(content_length(&head), rest.len());
    assert_eq!(sha256_digest(rest), layer, "the correct blob");
    let at_least = pause * (bytes.len() as u32 - 1);
    assert!(took >= at_least, "{} bytes in {took:?}", bytes.len());
}

// ---- Connections ----

#[tokio::test]
async fn counts_open_connections_until_clients_leave() {
    let (_registry, proxy, _) = setup().await;
    assert_eq!(proxy.open_connections(), 0);
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(step(TcpStream::connect(proxy.addr)).await.expect("connect"));
    }
    assert!(eventually(STEP, || async { proxy.open_connections() == 3 }).await);
    // A client gone mid-response does not upset the proxy.
    proxy.on(Rule::any(Fault::Trickle(Duration::from_millis(5))));
    let mut leaving = clients.pop().expect("a client");
    let request = raw_request("GET", "/v2/", &proxy.host, false);
    step(leaving.write_all(request.as_bytes()))
        .await
        .expect("write");
    let mut first = [0u8; 1];
    step(leaving.read_exact(&mut first))
        .await
        .expect("first byte");
    drop(leaving);
    // So does one that gives up on a response held back far longer than the test runs.
    proxy.clear();
    proxy.on(Rule::any(Fault::Delay(Duration::from_secs(60))));
    let mut waiting = clients.pop().expect("a client");
    step(waiting.write_all(request.as_bytes()))
        .await
        .expect("write");
    assert!(eventually(STEP, || async { proxy.log().len() == 2 }).await);
    drop(waiting);
    let promptly = Duration::from_secs(2);
    assert!(eventually(promptly, || async { proxy.open_connections() == 1 }).await);
    clients.clear();
    assert!(eventually(promptly, || async { proxy.open_connections() == 0 }).await);
}

#[tokio::test]
async fn drop_closes_connections_and_the_port() {
    let (_registry, proxy, _) = setup().await;
    let addr = proxy.addr;
    let mut tcp = step(TcpStream::connect(addr)).await.expect("connect");
    let request = raw_request("GET", "/v2/", &proxy.host, false);
    step(tcp.write_all(request.as_bytes()))
        .await
        .expect("write");
    let response = read_response(&mut tcp).await;
    assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"));

    drop(proxy);
    let mut buf = [0u8; 64];
    let closed = step(tcp.read(&mut buf)).await;
    assert!(matches!(closed, Ok(0) | Err(_)), "closed: {closed:?}");
    assert!(listener_closed(addr).await, "listener closed");
}
