//! The provider listener: TCP accept loop, TLS handshakes, HTTP/1.1 connections, routing.
//!
//! Every bound here is a named value from [`ServerTuning`]: at most `maxConnections`
//! connections (at the cap the least useful connection gives way, see [`crate::slots`];
//! when all are serving, the accept loop waits and excess clients queue in the kernel
//! backlog instead of costing memory), `handshakeTimeout` for TLS,
//! `headerReadTimeout` for a request head (counted from the handshake or from the first
//! byte after the previous response), `idleTimeout` between requests on a keep-alive
//! connection. hyper's own header timeout is not used: it also runs while a keep-alive
//! connection is idle, which would close Gatekeeper's pooled connections after a few
//! seconds.

use std::convert::Infallible;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::Instrument;

use crate::config::ServerTuning;
use crate::exchange::Exchange;
use crate::metrics::{Endpoint, HandshakeFailure, Metrics, RequestOutcome};
use crate::protocol::ProviderResponse;
use crate::slots::{Phase, Slot, Slots};
use crate::tls::TlsState;

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

/// The provider routes: one path per endpoint, each answered by its [`Exchange`].
pub(crate) fn router(
    endpoints: Vec<(&'static str, Arc<Exchange>)>,
    metrics: Arc<Metrics>,
) -> Router {
    let mut router = Router::new();
    for (path, exchange) in endpoints {
        let metrics = metrics.clone();
        router = router.route(
            path,
            any(move |req: Request| handle(exchange.clone(), metrics.clone(), req)),
        );
    }
    router.fallback(move |req: Request| {
        let metrics = metrics.clone();
        async move {
            metrics.request_done(Endpoint::Other, RequestOutcome::Rejected, 0.0);
            json(
                StatusCode::NOT_FOUND,
                &ProviderResponse::system_error(
                    true,
                    format!("no provider endpoint at {}", req.uri().path()),
                ),
                0,
            )
        }
    })
}

async fn handle(exchange: Arc<Exchange>, metrics: Arc<Metrics>, req: Request) -> Response {
    let id = REQUEST_IDS.fetch_add(1, Ordering::Relaxed);
    if req.method() != Method::POST {
        metrics.request_done(exchange.endpoint, RequestOutcome::Rejected, 0.0);
        let mut resp = json(
            StatusCode::METHOD_NOT_ALLOWED,
            &ProviderResponse::system_error(
                exchange.idempotent,
                format!("method {} not allowed; use POST", req.method()),
            ),
            id,
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return resp;
    }
    let content_length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let span = tracing::info_span!("request", id, endpoint = exchange.endpoint.as_str());
    let response = exchange
        .answer(req.into_body(), content_length)
        .instrument(span)
        .await;
    json(StatusCode::OK, &response, id)
}

fn json(status: StatusCode, body: &ProviderResponse, id: u64) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| {
        br#"{"apiVersion":"externaldata.gatekeeper.sh/v1beta1","kind":"ProviderResponse","response":{"idempotent":true,"items":[],"systemError":"internal error: cannot encode response"}}"#.to_vec()
    });
    let mut resp = (status, Body::from(bytes)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        h.insert("x-request-id", v);
    }
    resp
}

/// Serves `app` on `listener` over TLS until `shutdown`, then lets open connections finish
/// their in-flight request for up to `tuning.shutdownGrace`.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<TlsState>,
    app: Router,
    tuning: ServerTuning,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let slots = Slots::new(tuning.max_connections, metrics.clone());
    let tracker = TaskTracker::new();
    let tuning = Arc::new(tuning);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let slot = tokio::select! {
            s = slots.acquire() => s,
            _ = shutdown.cancelled() => break,
        };
        let Some(config) = tls.current() else {
            metrics.handshake_failed(HandshakeFailure::NotReady);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let conn = Connection {
            app: app.clone(),
            tuning: tuning.clone(),
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
        };
        tracker.spawn(
            async move {
                conn.run(tcp, TlsAcceptor::from(config), slot).await;
            }
            .instrument(tracing::debug_span!("conn", %peer)),
        );
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(tuning.shutdown_grace.get(), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = tracker.len(),
            "shutdown grace period over; closing remaining connections"
        );
    }
}

struct Connection {
    app: Router,
    tuning: Arc<ServerTuning>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
}

impl Connection {
    async fn run(self, tcp: tokio::net::TcpStream, acceptor: TlsAcceptor, slot: Slot) {
        let handshake =
            tokio::time::timeout(self.tuning.handshake_timeout.get(), acceptor.accept(tcp));
        let handshake = tokio::select! {
            r = handshake => r,
            _ = slot.state.shed() => {
                tracing::debug!("closed in the TLS handshake to make room at the connection cap");
                return;
            }
        };
        let stream = match handshake {
            Err(_) => {
                self.metrics.handshake_failed(HandshakeFailure::Timeout);
                tracing::debug!("TLS handshake timed out");
                return;
            }
            Ok(Err(e)) => {
                let why = classify_handshake_error(&e);
                self.metrics.handshake_failed(why);
                tracing::debug!(error = %e, reason = why.as_str(), "TLS handshake failed");
                return;
            }
            Ok(Ok(s)) => s,
        };
        let _open = self.metrics.connection_open();
        let slot = Arc::new(slot);
        slot.set_phase(Phase::AwaitingRequest);
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            inner: stream,
            activity: activity.clone(),
        });
        let app = self.app.clone();
        let svc_activity = activity.clone();
        let svc_slot = slot.clone();
        let metrics = self.metrics.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let app = app.clone();
            let activity = svc_activity.clone();
            let slot = svc_slot.clone();
            let metrics = metrics.clone();
            activity.request_started();
            slot.set_phase(Phase::Serving);
            async move {
                let resp = match host_problem(&req) {
                    Some(why) => {
                        metrics.request_done(Endpoint::Other, RequestOutcome::Rejected, 0.0);
                        closing(json(
                            StatusCode::BAD_REQUEST,
                            &ProviderResponse::system_error(true, why),
                            0,
                        ))
                    }
                    None => {
                        let (req, read_to_end) = tracked(req);
                        let resp = app.oneshot(req).await;
                        let resp = resp.map_err(|never: Infallible| match never {});
                        // A body not read to its end (over the drain bound, cut off by the
                        // deadline, or never read) cannot be skipped: hyper closes the
                        // connection after the answer, and the answer says so.
                        match resp {
                            Ok(r) if !read_to_end.load(Ordering::Acquire) => Ok(closing(r)),
                            other => other,
                        }?
                    }
                };
                activity.request_finished();
                slot.set_phase(Phase::Idle);
                Ok::<_, Infallible>(resp)
            }
        });
        // One bound on the request head, in bytes, whatever the head's shape and however
        // it arrives: hyper's `max_header_size` measures the parsed head (the request line,
        // the header lines and the blank line) and also refuses a partial head once that
        // many bytes are buffered. `max_buf_size` alone is checked only while a head is
        // incomplete, so a long head arriving in one large read slipped through it.
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .keep_alive(true)
            .max_header_size(self.tuning.max_header_bytes)
            .max_headers(self.tuning.max_headers)
            .max_buf_size(self.tuning.max_header_bytes);
        let mut conn = pin!(builder.serve_connection(io, service));
        let header_timeout = self.tuning.header_read_timeout.get();
        let idle_timeout = self.tuning.idle_timeout.get();
        let mut closing = false;
        loop {
            let wake = activity.next_check(header_timeout, idle_timeout);
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = self.shutdown.cancelled(), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                _ = slot.state.shed(), if !closing => {
                    if activity.serving() {
                        // Chosen just as a request arrived: finish it, then close.
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    } else {
                        tracing::debug!("closed to make room at the connection cap");
                        return;
                    }
                }
                _ = tokio::time::sleep_until(wake.at), if !closing => {
                    match activity.expired(header_timeout, idle_timeout) {
                        Some(Expiry::HeaderRead) => {
                            tracing::debug!("request head not received in time; closing");
                            return;
                        }
                        Some(Expiry::Idle) => {
                            conn.as_mut().graceful_shutdown();
                            closing = true;
                        }
                        None => {}
                    }
                }
            }
        }
    }
}

/// Why a request's `Host` header makes it malformed: HTTP/1.1 requires exactly one
/// (RFC 9112 §3.2); HTTP/1.0 may omit it but never repeat it.
fn host_problem<B>(req: &hyper::Request<B>) -> Option<String> {
    let hosts = req.headers().get_all(header::HOST).iter().count();
    let optional = req.version() == axum::http::Version::HTTP_10;
    match hosts {
        1 => None,
        0 if optional => None,
        0 => Some(
            "request-invalid: the request carries no Host header; HTTP/1.1 requires exactly one"
                .into(),
        ),
        n => Some(format!(
            "request-invalid: the request carries {n} Host headers; HTTP/1.1 requires exactly one"
        )),
    }
}

/// `resp` with `Connection: close`: the server closes the connection after it, and the
/// client learns so from the answer instead of from a reset on its next request.
fn closing(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// The request with its body wrapped, and a flag set once the body has been read to
/// its end.
fn tracked(req: hyper::Request<Incoming>) -> (Request, Arc<AtomicBool>) {
    let (parts, body) = req.into_parts();
    let done = Arc::new(AtomicBool::new(http_body::Body::is_end_stream(&body)));
    let body = Tracked {
        inner: body,
        done: done.clone(),
    };
    (Request::from_parts(parts, Body::new(body)), done)
}

/// A request body that notes when it has been read to its end.
struct Tracked {
    inner: Incoming,
    done: Arc<AtomicBool>,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = http_body::Body::poll_frame(std::pin::Pin::new(&mut self.inner), cx);
        let ended = match &polled {
            std::task::Poll::Ready(None) => true,
            std::task::Poll::Ready(Some(Ok(_))) => http_body::Body::is_end_stream(&self.inner),
            _ => false,
        };
        if ended {
            self.done.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::Body::size_hint(&self.inner)
    }
}

fn classify_handshake_error(e: &std::io::Error) -> HandshakeFailure {
    use rustls::Error as E;
    match e.get_ref().and_then(|inner| inner.downcast_ref::<E>()) {
        Some(E::NoCertificatesPresented) => HandshakeFailure::NoClientCert,
        Some(E::InvalidCertificate(_)) => HandshakeFailure::BadClientCert,
        Some(
            E::PeerIncompatible(_) | E::InappropriateHandshakeMessage { .. } | E::InvalidMessage(_),
        )
        | Some(E::PeerMisbehaved(_) | E::InappropriateMessage { .. }) => HandshakeFailure::Protocol,
        _ => HandshakeFailure::Other,
    }
}

/// What happened on a connection lately, for the header-read and idle timers.
struct Activity {
    epoch: Instant,
    /// Requests being served now.
    in_flight: AtomicUsize,
    /// Milliseconds since `epoch` when the current request head started arriving (or the
    /// handshake ended); `u64::MAX` when no head is pending.
    head_since: AtomicU64,
    /// Milliseconds since `epoch` of the last response or handshake.
    last_done: AtomicU64,
}

enum Expiry {
    HeaderRead,
    Idle,
}

struct Wake {
    at: Instant,
}

const NONE: u64 = u64::MAX;

impl Activity {
    fn new() -> Activity {
        // A new connection must send its first request head within the header timeout.
        Activity {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            head_since: AtomicU64::new(0),
            last_done: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    /// Bytes arrived. If no request is in flight and none is pending, a new head starts.
    fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let _ = self.head_since.compare_exchange(
                NONE,
                self.now_ms(),
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(NONE, Ordering::Release);
    }

    fn serving(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    fn request_finished(&self) {
        self.last_done.store(self.now_ms(), Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    fn next_check(&self, header: Duration, idle: Duration) -> Wake {
        let head = self.head_since.load(Ordering::Acquire);
        let at = if head != NONE {
            self.at(head) + header
        } else if self.in_flight.load(Ordering::Acquire) > 0 {
            // Serving: the exchange deadline bounds the request; look again later.
            Instant::now() + idle.min(Duration::from_secs(1))
        } else {
            self.at(self.last_done.load(Ordering::Acquire)) + idle
        };
        // Never busy-loop on a timer already past.
        Wake {
            at: at.max(Instant::now() + Duration::from_millis(1)),
        }
    }

    fn expired(&self, header: Duration, idle: Duration) -> Option<Expiry> {
        let now = self.now_ms();
        let head = self.head_since.load(Ordering::Acquire);
        if head != NONE && now.saturating_sub(head) >= header.as_millis() as u64 {
            return Some(Expiry::HeaderRead);
        }
        if head == NONE
            && self.in_flight.load(Ordering::Acquire) == 0
            && now.saturating_sub(self.last_done.load(Ordering::Acquire)) >= idle.as_millis() as u64
        {
            return Some(Expiry::Idle);
        }
        None
    }
}

/// The TLS stream, reporting reads to the connection's [`Activity`].
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
