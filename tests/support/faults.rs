//! A fault-injecting HTTP/1.1 reverse proxy in front of a registry. Where [`super::proxy`]
//! breaks whole TCP connections, this one breaks single responses: a status the registry
//! would never send, a body cut short, a wrong length, a flipped byte, a redirect. It parses
//! each request, so rules can pick one request (say the `HEAD` of one manifest) and leave the
//! rest of the conversation intact, which is how a flaky registry or a broken middlebox
//! looks to vouch.
//!
//! Responses are written raw on the client socket, not through an HTTP server library:
//! a library would repair exactly the framing the faults are meant to break.
//!
//! The client's `Host` header is forwarded as it is, so the absolute URLs the registry builds
//! from it (upload `Location`s) point back at the proxy and a push through the proxy stays on
//! it. Request bodies are read by `Content-Length`; a chunked request body is answered with
//! 400 and a close (registry clients upload with a length).
//!
//! Requests under a path prefix can be routed to another upstream ([`FaultProxy::route`]):
//! a registry's token service then lives on the registry's own host and port as the client
//! sees it, which is the only plain-HTTP realm vouch accepts, and the same rules break it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::STEP;

/// The longest request head (request line and headers) the proxy reads.
const MAX_HEAD: usize = 64 * 1024;

/// Headers that describe one connection or one message's framing, not the content: never
/// forwarded either way, the proxy frames each side itself.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// What happens to one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forwards, then holds the whole response back this long: a slow registry.
    Delay(Duration),
    /// Answers this status with an empty body (and `Retry-After` if given) without
    /// contacting upstream: an overloaded or rate-limiting registry.
    Status {
        code: u16,
        retry_after: Option<String>,
    },
    /// Status line, headers and the first half of the body, then a TCP reset. For `HEAD`
    /// the first half of the header block. A reset discards what the kernel has not sent
    /// yet: on loopback a manifest-sized half has always left, a half of megabytes may not.
    ResetMidBody,
    /// Headers announcing the full `Content-Length`, the first half of the body, then a
    /// clean close (FIN). For `HEAD` the first half of the header block.
    Truncate,
    /// The full body under a `Content-Length` of its length plus this delta (for `HEAD` the
    /// announced length plus the delta). With a delta other than 0 the connection closes
    /// after the body: a client told to expect more waits until the close, and one told to
    /// expect less would otherwise read the rest as the next response.
    ContentLength(i64),
    /// The body replaced by this many bytes: the original followed by spaces (or cut, when
    /// shorter), with a matching `Content-Length` and every other header, the digest
    /// included, unchanged. For `HEAD` only the announced length changes.
    Oversize(usize),
    /// Same length, the middle byte XOR 1; a response without a body (`HEAD`) instead gets
    /// the last hex digit of its `Docker-Content-Digest` changed.
    Corrupt,
    /// A `307` to this (full) URL, without contacting upstream.
    Redirect(String),
    /// The full, correct response one byte at a time with this pause between bytes: a
    /// client must not mistake a slow response for a broken one.
    Trickle(Duration),
    /// A few hundred bytes that are not HTTP, then a close.
    Garbage,
}

/// When a fault applies. The first rule that matches a request and has uses left applies.
#[derive(Debug, Clone)]
pub struct Rule {
    /// `None` matches every method.
    pub method: Option<&'static str>,
    /// A substring of the request target (path and query); empty matches every request.
    pub path_contains: String,
    pub fault: Fault,
    /// How many more requests this rule applies to; `None` is forever.
    pub times: Option<usize>,
}

impl Rule {
    /// Every request, forever.
    pub fn any(fault: Fault) -> Rule {
        Rule::path(None, "", fault)
    }

    /// Requests with `method` (`"GET"`, or `None` for any) whose target contains `contains`.
    pub fn path(
        method: impl Into<Option<&'static str>>,
        contains: impl Into<String>,
        fault: Fault,
    ) -> Rule {
        Rule {
            method: method.into(),
            path_contains: contains.into(),
            fault,
            times: None,
        }
    }

    /// Applies to the next `n` matching requests only.
    pub fn times(self, n: usize) -> Rule {
        Rule {
            times: Some(n),
            ..self
        }
    }

    fn matches(&self, method: &str, target: &str) -> bool {
        self.times != Some(0)
            && self.method.is_none_or(|m| m.eq_ignore_ascii_case(method))
            && target.contains(&self.path_contains)
    }
}

/// One request the proxy has seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    /// The request target: path and query.
    pub path: String,
    /// The `Debug` form of the fault applied (e.g. `Status { code: 503, retry_after: None }`),
    /// `None` when the request passed through.
    pub fault: Option<String>,
}

/// A proxy listening on a free loopback port. Dropping it aborts its tasks, which closes the
/// listener and every connection.
pub struct FaultProxy {
    pub addr: SocketAddr,
    /// `127.0.0.1:PORT`, to put where the registry's host would go (an image reference).
    pub host: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

/// What the proxy and its connection tasks share. The mutexes are never held across an
/// await.
struct Shared {
    rules: Mutex<Vec<Rule>>,
    log: Mutex<Vec<Seen>>,
    open: AtomicUsize,
    /// Where requests go that no route takes.
    upstream: Mutex<SocketAddr>,
    /// Path prefixes with their own upstream, in the order they were added.
    routes: Mutex<Vec<(String, SocketAddr)>>,
}

/// A lock that survives a panicked holder: a failed assertion elsewhere must not turn every
/// later request into a second panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (plain HTTP) that passes everything through until a rule
    /// is added. Must be called within a tokio runtime, which then runs the proxy.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fault proxy on loopback");
        let addr = listener.local_addr().expect("fault proxy address");
        let http = reqwest::Client::builder()
            .no_proxy()
            // The client sees the registry's redirects, not their targets.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(STEP)
            .build()
            .expect("reqwest client");
        let shared = Arc::new(Shared {
            rules: Mutex::default(),
            log: Mutex::default(),
            open: AtomicUsize::new(0),
            upstream: Mutex::new(upstream),
            routes: Mutex::default(),
        });
        let task = tokio::spawn(accept_loop(listener, http, shared.clone()));
        FaultProxy {
            addr,
            host: addr.to_string(),
            shared,
            task,
        }
    }

    /// Adds a rule after the existing ones.
    pub fn on(&self, rule: Rule) {
        lock(&self.shared.rules).push(rule);
    }

    /// Removes every rule: from now on everything passes through.
    pub fn clear(&self) {
        lock(&self.shared.rules).clear();
    }

    /// Every request seen so far, in the order they arrived.
    pub fn log(&self) -> Vec<Seen> {
        lock(&self.shared.log).clone()
    }

    /// Client connections currently open.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Sends requests whose target starts with `prefix` (e.g. `/token`) to `upstream`
    /// instead; the first matching route wins. Rules apply to them like to any request.
    pub fn route(&self, prefix: impl Into<String>, upstream: SocketAddr) {
        lock(&self.shared.routes).push((prefix.into(), upstream));
    }

    /// Replaces the upstream of every request no route takes: for a server that must know
    /// the proxy's address before it can start (a registry whose token realm is on the
    /// proxy).
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *lock(&self.shared.upstream) = upstream;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accept task owns the listener and the JoinSet of the connections; dropping
        // the JoinSet aborts them, which drops (closes) their sockets.
        self.task.abort();
    }
}

impl Shared {
    /// Logs the request and returns the fault to apply, using up one of the rule's times.
    fn fault_for(&self, method: &str, target: &str) -> Option<Fault> {
        let fault = {
            let mut rules = lock(&self.rules);
            rules
                .iter_mut()
                .find(|r| r.matches(method, target))
                .map(|rule| {
                    if let Some(n) = &mut rule.times {
                        *n -= 1;
                    }
                    rule.fault.clone()
                })
        };
        lock(&self.log).push(Seen {
            method: method.to_owned(),
            path: target.to_owned(),
            fault: fault.as_ref().map(|f| format!("{f:?}")),
        });
        fault
    }

    /// The upstream of a request: the first route whose prefix starts `target`, else the
    /// default one.
    fn upstream_for(&self, target: &str) -> SocketAddr {
        lock(&self.routes)
            .iter()
            .find(|(prefix, _)| target.starts_with(prefix.as_str()))
            .map(|(_, upstream)| *upstream)
            .unwrap_or_else(|| *lock(&self.upstream))
    }
}

/// Counts a connection as open for as long as its task lives, aborted or not.
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn accept_loop(listener: TcpListener, http: reqwest::Client, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // EMFILE and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        while connections.try_join_next().is_some() {}
        shared.open.fetch_add(1, Ordering::SeqCst);
        let open = OpenGuard(shared.clone());
        connections.spawn(serve(client, http.clone(), open));
    }
}

/// One parsed client request.
struct Request {
    method: Method,
    target: String,
    headers: HeaderMap,
    body: Vec<u8>,
    keep_alive: bool,
}

/// Why reading a request stopped.
enum Ended {
    /// The client closed (or the socket failed): nothing to answer.
    Closed,
    /// Not a request this proxy can forward: answered 400, then closed.
    Bad,
}

/// One client connection: requests in a keep-alive loop, each answered (faulty or not)
/// before the next is read. Returning drops (closes) the socket.
async fn serve(mut client: TcpStream, http: reqwest::Client, open: OpenGuard) {
    let shared = &open.0;
    // Trickled bytes must leave one by one; Nagle would merge them.
    let _ = client.set_nodelay(true);
    let mut pending = Vec::new();
    loop {
        let request = match read_request(&mut client, &mut pending).await {
            Ok(request) => request,
            Err(Ended::Closed) => return,
            Err(Ended::Bad) => {
                let bad =
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                let _ = client.write_all(bad).await;
                let _ = client.shutdown().await;
                return;
            }
        };
        let fault = shared.fault_for(request.method.as_str(), &request.target);
        let upstream = shared.upstream_for(&request.target);
        let plan = respond(&request, fault.as_ref(), &http, upstream).await;
        if send(&mut client, &plan).await.is_err() {
            return;
        }
        match plan.end {
            End::KeepAlive if request.keep_alive => {}
            End::Reset => {
                // SO_LINGER 0: the close that follows sends RST instead of FIN.
                let _ = client.set_zero_linger();
                return;
            }
            End::KeepAlive | End::Close => {
                let _ = client.shutdown().await;
                return;
            }
        }
    }
}

/// Reads one request (head up to [`MAX_HEAD`], body by `Content-Length`) from `pending`
/// and the socket; bytes after it stay in `pending` for the next one.
async fn read_request(tcp: &mut TcpStream, pending: &mut Vec<u8>) -> Result<Request, Ended> {
    let head_end = loop {
        if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if pending.len() > MAX_HEAD {
            return Err(Ended::Bad);
        }
        read_more(tcp, pending).await?;
    };
    let head: Vec<u8> = pending.drain(..head_end).collect();
    let mut request = parse_head(&head).ok_or(Ended::Bad)?;
    if request.headers.contains_key("transfer-encoding") {
        return Err(Ended::Bad);
    }
    let length = match request.headers.get("content-length") {
        Some(v) => v.to_str().ok().and_then(|s| s.parse::<usize>().ok()),
        None => Some(0),
    };
    let length = length.ok_or(Ended::Bad)?;
    while pending.len() < length {
        read_more(tcp, pending).await?;
    }
    request.body = pending.drain(..length).collect();
    Ok(request)
}

async fn read_more(tcp: &mut TcpStream, pending: &mut Vec<u8>) -> Result<(), Ended> {
    let mut buf = [0u8; 16 * 1024];
    match tcp.read(&mut buf).await {
        Ok(0) | Err(_) => Err(Ended::Closed),
        Ok(n) => {
            pending.extend_from_slice(&buf[..n]);
            Ok(())
        }
    }
}

/// Parses `METHOD /target HTTP/1.x` and the header lines; `None` for anything else.
fn parse_head(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
    let mut parts = lines.next()?.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !target.starts_with('/') {
        return None;
    }
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).ok()?,
            HeaderValue::from_str(value.trim()).ok()?,
        );
    }
    let connection = headers
        .get("connection")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let keep_alive = match version {
        "HTTP/1.1" => !connection.contains("close"),
        "HTTP/1.0" => connection.contains("keep-alive"),
        _ => return None,
    };
    Some(Request {
        method: Method::from_bytes(method.as_bytes()).ok()?,
        target: target.to_owned(),
        headers,
        body: Vec::new(),
        keep_alive,
    })
}

/// The bytes to write for one response, how fast, and what becomes of the connection.
struct Plan {
    bytes: Vec<u8>,
    pace: Pace,
    end: End,
}

enum Pace {
    AtOnce,
    After(Duration),
    ByteEvery(Duration),
}

enum End {
    KeepAlive,
    Close,
    Reset,
}

impl Plan {
    fn keep(bytes: Vec<u8>) -> Plan {
        Plan::ending(bytes, End::KeepAlive)
    }

    fn ending(bytes: Vec<u8>, end: End) -> Plan {
        Plan {
            bytes,
            pace: Pace::AtOnce,
            end,
        }
    }
}

/// A response as upstream sent it.
struct Upstream {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
    /// The request was `HEAD`: no body is written, whatever the length says.
    head: bool,
}

/// The answer to one request: local for the faults that need no upstream, otherwise
/// upstream's response shaped by the fault. An unreachable upstream is a 502.
async fn respond(
    request: &Request,
    fault: Option<&Fault>,
    http: &reqwest::Client,
    upstream: SocketAddr,
) -> Plan {
    let local = |code: u16, header: Option<(&'static str, &str)>| {
        let mut headers = HeaderMap::new();
        if let Some((name, value)) = header
            && let Ok(value) = HeaderValue::from_str(value)
        {
            headers.insert(name, value);
        }
        Plan::keep(encode(code, &headers, Some("0"), &[]))
    };
    match fault {
        Some(Fault::Status { code, retry_after }) => {
            return local(*code, retry_after.as_deref().map(|v| ("retry-after", v)));
        }
        Some(Fault::Redirect(url)) => return local(307, Some(("location", url))),
        Some(Fault::Garbage) => return Plan::ending(garbage(), End::Close),
        _ => {}
    }
    match forward(request, http, upstream).await {
        Ok(response) => shape(response, fault),
        Err(_) => local(502, None),
    }
}

/// Sends `request` upstream with its headers minus the hop-by-hop ones, and reads the whole
/// response.
async fn forward(
    request: &Request,
    http: &reqwest::Client,
    upstream: SocketAddr,
) -> Result<Upstream, reqwest::Error> {
    let mut headers = request.headers.clone();
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    let url = format!("http://{upstream}{}", request.target);
    let response = http
        .request(request.method.clone(), url)
        .headers(headers)
        .body(request.body.clone())
        .send()
        .await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await?.to_vec();
    Ok(Upstream {
        status,
        headers,
        body,
        head: request.method == Method::HEAD,
    })
}

impl Upstream {
    /// The response with `length` as its `Content-Length` and `body` (none for `HEAD`).
    fn encode_with(&self, length: Option<&str>, body: &[u8]) -> Vec<u8> {
        let body = if self.head { &[][..] } else { body };
        encode(self.status, &self.headers, length, body)
    }

    /// The length upstream meant: the body's, or for `HEAD` the announced one verbatim
    /// (registries announce the manifest size on `HEAD`), if any.
    fn length(&self) -> Option<String> {
        if self.head {
            let announced = self.headers.get("content-length")?;
            announced.to_str().ok().map(str::to_owned)
        } else {
            Some(self.body.len().to_string())
        }
    }

    fn unchanged(&self) -> Vec<u8> {
        self.encode_with(self.length().as_deref(), &self.body)
    }
}

/// Upstream's response with `fault` applied.
fn shape(mut response: Upstream, fault: Option<&Fault>) -> Plan {
    let paced = |pace| Plan {
        pace,
        ..Plan::keep(response.unchanged())
    };
    match fault {
        None => Plan::keep(response.unchanged()),
        Some(Fault::Delay(d)) => paced(Pace::After(*d)),
        Some(Fault::Trickle(d)) => paced(Pace::ByteEvery(*d)),
        Some(Fault::ResetMidBody) => Plan::ending(first_half(&response), End::Reset),
        Some(Fault::Truncate) => Plan::ending(first_half(&response), End::Close),
        Some(Fault::ContentLength(delta)) => {
            let actual: i64 = response.length().and_then(|l| l.parse().ok()).unwrap_or(0);
            let declared = (actual + delta).max(0).to_string();
            let end = if *delta == 0 {
                End::KeepAlive
            } else {
                End::Close
            };
            Plan::ending(response.encode_with(Some(&declared), &response.body), end)
        }
        Some(Fault::Oversize(n)) => {
            let mut body = response.body.clone();
            body.resize(*n, b' ');
            Plan::keep(response.encode_with(Some(&n.to_string()), &body))
        }
        Some(Fault::Corrupt) => {
            if response.head || response.body.is_empty() {
                corrupt_digest(&mut response.headers);
            } else {
                let middle = response.body.len() / 2;
                response.body[middle] ^= 0x01;
            }
            Plan::keep(response.unchanged())
        }
        // Answered in `respond` without asking upstream.
        Some(Fault::Status { .. } | Fault::Redirect(_) | Fault::Garbage) => {
            Plan::keep(response.unchanged())
        }
    }
}

/// Headers announcing the full length and half the body; for `HEAD` half the header block.
fn first_half(response: &Upstream) -> Vec<u8> {
    let mut bytes = response.encode_with(response.length().as_deref(), &[]);
    if response.head {
        bytes.truncate(bytes.len() / 2);
    } else {
        bytes.extend_from_slice(&response.body[..response.body.len() / 2]);
    }
    bytes
}

/// Changes the last hex digit of `Docker-Content-Digest`, if there is one.
fn corrupt_digest(headers: &mut HeaderMap) {
    let Some(digest) = headers.get("docker-content-digest") else {
        return;
    };
    let mut digest = digest.as_bytes().to_vec();
    if let Some(last) = digest.last_mut() {
        *last = if *last == b'0' { b'1' } else { b'0' };
    }
    if let Ok(value) = HeaderValue::from_bytes(&digest) {
        headers.insert("docker-content-digest", value);
    }
}

/// Bytes no HTTP client can take for a status line.
fn garbage() -> Vec<u8> {
    b"\x00\xffthis is not HTTP\r\n".repeat(16)
}

/// A raw response: status line, `headers` minus the hop-by-hop ones, our own `Content-Length`
/// (if any), a blank line, `body`.
fn encode(status: u16, headers: &HeaderMap, length: Option<&str>, body: &[u8]) -> Vec<u8> {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown");
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n").into_bytes();
    for (name, value) in headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    if let Some(length) = length {
        out.extend_from_slice(format!("content-length: {length}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// Writes the plan's bytes at its pace.
async fn send(tcp: &mut TcpStream, plan: &Plan) -> std::io::Result<()> {
    match plan.pace {
        Pace::AtOnce => tcp.write_all(&plan.bytes).await?,
        Pace::After(delay) => {
            pause(tcp, delay).await?;
            tcp.write_all(&plan.bytes).await?;
        }
        Pace::ByteEvery(delay) => {
            for (i, byte) in plan.bytes.iter().enumerate() {
                if i > 0 {
                    pause(tcp, delay).await?;
                }
                tcp.write_all(&[*byte]).await?;
            }
        }
    }
    tcp.flush().await
}

/// Sleeps `delay`, or fails as soon as the client closes its side: a client that gave up
/// on a held-back response is gone at once, for [`FaultProxy::open_connections`] too, not
/// only when the delay ends. A client that half-closes and then waits counts as gone;
/// HTTP clients do not do that.
async fn pause(tcp: &TcpStream, delay: Duration) -> std::io::Result<()> {
    let hung_up = async {
        let mut byte = [0u8; 1];
        match tcp.peek(&mut byte).await {
            Ok(0) | Err(_) => {}
            // A pipelined request waits for its turn; only a close ends the pause early.
            Ok(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::time::sleep(delay) => Ok(()),
        _ = hung_up => Err(std::io::ErrorKind::ConnectionAborted.into()),
    }
}
