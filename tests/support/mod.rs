//! The shared test harness: certificates shaped like Gatekeeper's, a vouch started on free
//! loopback ports, and clients that speak real TLS and HTTP/1.1 to it. Everything started
//! here stops when its handle drops; nothing listens on a fixed port.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_RSA_SHA256, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::TlsConnector;
use vouch::config::Config;

pub mod dockerfile;
pub mod faults;
pub mod gatekeeper;
pub mod helm;
pub mod layout;
pub mod openssl;
pub mod prometheus;
pub mod proxy;
pub mod redis;
pub mod registry;
pub mod sigstore;
pub mod token;
pub mod world;

/// Every network step of a test is bounded by this.
pub const STEP: Duration = Duration::from_secs(10);

/// A certificate authority that can issue leaves.
pub struct Ca {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf certificate and its key, PEM-encoded.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

/// How a leaf is made.
pub struct LeafSpec<'a> {
    pub cn: &'a str,
    pub sans: Vec<String>,
    pub eku: Vec<ExtendedKeyUsagePurpose>,
    pub rsa: bool,
    pub expired: bool,
}

impl<'a> LeafSpec<'a> {
    /// Gatekeeper's webhook certificate, which it also presents as client certificate:
    /// RSA-2048, EKU serverAuth + clientAuth.
    pub fn gatekeeper() -> LeafSpec<'static> {
        let cn = "gatekeeper-webhook-service.gatekeeper-system.svc";
        LeafSpec {
            cn,
            sans: vec![cn.to_string()],
            eku: vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            rsa: true,
            expired: false,
        }
    }

    /// vouch's serving certificate for loopback.
    pub fn server() -> LeafSpec<'static> {
        LeafSpec {
            cn: "vouch",
            sans: vec!["localhost".into(), "127.0.0.1".into()],
            eku: vec![ExtendedKeyUsagePurpose::ServerAuth],
            rsa: false,
            expired: false,
        }
    }
}

fn keypair(rsa: bool) -> KeyPair {
    if rsa {
        KeyPair::generate_for(&PKCS_RSA_SHA256).expect("RSA-2048 key")
    } else {
        KeyPair::generate().expect("P-256 key")
    }
}

impl Ca {
    /// A CA shaped like Gatekeeper's: RSA-2048 and serial number 0.
    pub fn gatekeeper() -> Ca {
        Ca::new("gatekeeper-ca", true, Some(0))
    }

    pub fn new(cn: &str, rsa: bool, serial: Option<u8>) -> Ca {
        let key = keypair(rsa);
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        if let Some(s) = serial {
            params.serial_number = Some(SerialNumber::from_slice(&[s]));
        }
        let cert = params.self_signed(&key).expect("self-signed CA");
        Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    pub fn issue(&self, spec: LeafSpec<'_>) -> Leaf {
        let key = keypair(spec.rsa);
        let mut params = CertificateParams::new(spec.sans).expect("params");
        params.distinguished_name.push(DnType::CommonName, spec.cn);
        params.extended_key_usages = spec.eku;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        if spec.expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).expect("signed leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// The PKI of one test: vouch's serving CA and leaf, Gatekeeper's CA and client leaf.
pub struct Pki {
    pub server_ca: Ca,
    pub server: Leaf,
    pub gatekeeper_ca: Ca,
    pub gatekeeper: Leaf,
}

impl Pki {
    pub fn new() -> Pki {
        let server_ca = Ca::new("vouch test CA", false, None);
        let server = server_ca.issue(LeafSpec::server());
        let gatekeeper_ca = Ca::gatekeeper();
        let gatekeeper = gatekeeper_ca.issue(LeafSpec::gatekeeper());
        Pki {
            server_ca,
            server,
            gatekeeper_ca,
            gatekeeper,
        }
    }

    /// A client config that Gatekeeper would use: trusts vouch's CA, presents its cert.
    pub fn gatekeeper_client(&self) -> Arc<rustls::ClientConfig> {
        client_config(
            &self.server_ca.cert_pem,
            Some(&self.gatekeeper),
            Versions::Tls13,
        )
    }

    /// Writes `tls.crt`, `tls.key`, `ca.crt` (Gatekeeper's CA) into `dir`.
    pub fn write(&self, dir: &Path) {
        std::fs::create_dir_all(dir).expect("mkdir");
        std::fs::write(dir.join("tls.crt"), &self.server.cert_pem).expect("write cert");
        std::fs::write(dir.join("tls.key"), &self.server.key_pem).expect("write key");
        std::fs::write(dir.join("ca.crt"), &self.gatekeeper_ca.cert_pem).expect("write ca");
    }
}

/// Lays out a secret volume the way kubelet updates one: `dir/..<generation>/` holds the
/// files of [`Pki::write`], `dir/..data` links to it (swapped with an atomic rename), and
/// `dir/<file>` links to `..data/<file>`.
pub fn write_secret_generation(dir: &Path, generation: &str, pki: &Pki) {
    let data = dir.join(format!("..{generation}"));
    pki.write(&data);
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{generation}"), &tmp).expect("symlink");
    // rename(2) over the old link: the atomic swap kubelet performs.
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    for f in ["tls.crt", "tls.key", "ca.crt"] {
        let link = dir.join(f);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{f}"), &link).expect("file link");
        }
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

/// TLS versions a test client offers.
#[derive(Clone, Copy)]
pub enum Versions {
    Tls13,
    Tls12Only,
}

/// A rustls client config trusting `server_ca`, presenting `identity` if given.
pub fn client_config(
    server_ca: &str,
    identity: Option<&Leaf>,
    versions: Versions,
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(server_ca.as_bytes()) {
        roots.add(c.expect("server CA pem")).expect("add root");
    }
    let v: &[&rustls::SupportedProtocolVersion] = match versions {
        Versions::Tls13 => &[&rustls::version::TLS13],
        Versions::Tls12Only => &[&rustls::version::TLS12],
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(v)
        .expect("versions")
        .with_root_certificates(roots);
    let config = match identity {
        Some(leaf) => {
            let certs = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("leaf pem");
            let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key pem");
            builder
                .with_client_auth_cert(certs, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// One HTTP/1.1 keep-alive connection over TLS.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

/// A response as the tests look at it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// Reads a whole response.
    async fn read(resp: hyper::Response<hyper::body::Incoming>) -> Result<Reply, String> {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes()
            .to_vec();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A bare TLS stream to `addr` (SNI `localhost`), for tests that write raw bytes.
pub async fn tls_stream(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))
}

/// An answer read off a raw stream: status, header lines (names lower-cased) and body.
pub struct RawReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for RawReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawReply")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

impl RawReply {
    /// The values of header `name` (lower case).
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether the answer announces that the server closes the connection.
    pub fn says_close(&self) -> bool {
        self.header("connection")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// Writes `bytes` on `stream` while reading the answer, so an answer sent before the
/// request is fully written (a refused head or body) is heard even when the server
/// closes while the client still writes. Bounded by [`STEP`].
pub async fn raw_request<S>(stream: &mut S, bytes: &[u8]) -> Result<RawReply, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut rd, mut wr) = tokio::io::split(stream);
    let write = async {
        // The server may close before taking everything: not this function's failure.
        let _ = wr.write_all(bytes).await;
        let _ = wr.flush().await;
    };
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match rd.read(&mut chunk).await {
                Ok(0) => return Err(format!("closed before an answer ({} bytes)", buf.len())),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("read: {e} ({} bytes)", buf.len())),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("no status line in {head:?}"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = buf[head_end..].to_vec();
        while body.len() < length {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return Err("closed inside the answer's body".to_string()),
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        Ok(RawReply {
            status,
            headers,
            body,
        })
    };
    let both = async { tokio::join!(write, read).1 };
    tokio::time::timeout(STEP, both)
        .await
        .map_err(|_| "no answer in time".to_string())?
}

/// Whether the server closes `stream` (end of stream or an error) within two seconds.
pub async fn closed_by_server<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

impl Conn {
    /// TLS handshake (SNI `localhost`) and HTTP/1.1 handshake.
    pub async fn open(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Result<Conn, String> {
        let fut = async {
            let tls = tls_stream(addr, config).await?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| format!("http: {e}"))?;
            tokio::spawn(conn);
            Ok(Conn { sender })
        };
        tokio::time::timeout(STEP, fut)
            .await
            .map_err(|_| "connect timed out".to_string())?
    }

    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: impl Into<Bytes>,
    ) -> Result<Reply, String> {
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(body.into()))
            .map_err(|e| e.to_string())?;
        let fut = async {
            self.sender
                .ready()
                .await
                .map_err(|e| format!("not ready: {e}"))?;
            let resp = self
                .sender
                .send_request(req)
                .await
                .map_err(|e| format!("request: {e}"))?;
            Reply::read(resp).await
        };
        tokio::time::timeout(STEP, fut)
            .await
            .map_err(|_| "request timed out".to_string())?
    }

    pub async fn post(&mut self, path: &str, body: impl Into<Bytes>) -> Result<Reply, String> {
        self.send("POST", path, body).await
    }
}

/// A ProviderRequest body.
pub fn provider_request(keys: &[&str]) -> String {
    serde_json::json!({"apiVersion": "externaldata.gatekeeper.sh/v1beta1",
        "kind": "ProviderRequest", "request": {"keys": keys}})
    .to_string()
}

/// Plain-HTTP GET on the ops port.
pub async fn ops_get(addr: SocketAddr, path: &str) -> Reply {
    let fut = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connect ops");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .expect("http handshake");
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .uri(path)
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let resp = sender.send_request(req).await.expect("ops request");
        Reply::read(resp).await.expect("ops response")
    };
    tokio::time::timeout(STEP, fut)
        .await
        .expect("ops request timed out")
}

/// Polls `ready` every 20 ms for a freshly spawned server process: `true` once it answers,
/// `false` when the process exited first (e.g. its port was taken), and a panic showing
/// `log()` when it neither answers nor exits within [`STEP`].
pub fn wait_for_child(
    child: &mut Option<std::process::Child>,
    mut ready: impl FnMut() -> bool,
    what: &str,
    log: impl Fn() -> String,
) -> bool {
    let until = std::time::Instant::now() + STEP;
    while std::time::Instant::now() < until {
        // A child we cannot poll is as good as gone.
        let exited = child
            .as_mut()
            .is_none_or(|c| !matches!(c.try_wait(), Ok(None)));
        if exited {
            return false;
        }
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not answer:\n{}", log());
}

/// Polls `check` every 50 ms until it returns true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A loopback port that was free a moment ago, for a server that binds it by itself
/// (docker-registry, redis-server): another process may take it first, so their start-up
/// retries with a new port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// A loopback listener that counts the connections made to it and closes each at once:
/// the host a redirect or a token realm points to, where vouch must never go. Stops on
/// drop.
/// Serves `router` (HTTP/1.1, plain) on a free loopback port until the returned sender is
/// fired or dropped.
pub async fn serve_router(
    router: axum::Router,
    name: &'static str,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    });
    (addr, tx)
}

pub struct CountingListener {
    pub addr: SocketAddr,
    count: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingListener {
    pub async fn start() -> CountingListener {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a counting listener on loopback");
        let addr = listener.local_addr().expect("counting listener address");
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = count.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(socket);
            }
        });
        CountingListener { addr, count, task }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for CountingListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// True once nothing listens at `addr` any more (waits at most [`STEP`]).
pub async fn listener_closed(addr: SocketAddr) -> bool {
    eventually(STEP, || async {
        tokio::net::TcpStream::connect(addr)
            .await
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
    })
    .await
}

/// Waits (bounded) until the ops listener at `ops` answers `/readyz` with 200.
pub async fn wait_ready(ops: SocketAddr) {
    assert!(
        eventually(STEP, || async move {
            ops_get(ops, "/readyz").await.status == 200
        })
        .await,
        "vouch did not become ready"
    );
}

/// One request to the provider endpoint `path` on `conn`; HTTP 200 expected.
pub async fn ask_on(mut conn: Conn, path: &str, keys: &[&str]) -> serde_json::Value {
    let reply = conn
        .post(path, provider_request(keys))
        .await
        .expect("request");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

/// A vouch started in this process on free loopback ports, with its files in a temp dir.
/// Dropping it starts the shutdown.
pub struct Vouch {
    pub running: vouch::app::Running,
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    client: Client,
}

/// How a test reaches a running vouch, in this process ([`Vouch`]) or a child
/// ([`VouchProcess`]): its provider and ops addresses and Gatekeeper's TLS client. Both
/// handles dereference to one.
#[derive(Clone)]
pub struct Client {
    pub provider: SocketAddr,
    pub ops: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
}

impl Client {
    /// A client config that Gatekeeper would use: trusts vouch's CA, presents its cert.
    pub fn gatekeeper_client(&self) -> Arc<rustls::ClientConfig> {
        self.tls.clone()
    }

    /// A new connection to the provider port.
    pub async fn connect(&self) -> Conn {
        Conn::open(self.provider, self.tls.clone())
            .await
            .expect("gatekeeper client connects")
    }

    /// One `/v1/verify` request on a fresh connection; HTTP 200 expected.
    pub async fn verify(&self, keys: &[&str]) -> serde_json::Value {
        self.ask("/v1/verify", keys).await
    }

    /// One request to the provider endpoint `path` on a fresh connection; HTTP 200 expected.
    pub async fn ask(&self, path: &str, keys: &[&str]) -> serde_json::Value {
        ask_on(self.connect().await, path, keys).await
    }

    /// One metric from `/metrics` (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        metric_value(&ops_get(self.ops, "/metrics").await.text(), name)
    }
}

impl Vouch {
    /// A config with loopback listeners, the PKI's files and a fast reload interval; the
    /// caller adds policies or changes fields before starting. A test config without
    /// policies says so (`allowNoPolicies: true`), as a user must.
    pub fn config(dir: &Path, yaml: &str) -> Config {
        let no_policies = if yaml.contains("policies:") {
            ""
        } else {
            "allowNoPolicies: true\n"
        };
        let text = format!(
            "listen: 127.0.0.1:0\nopsListen: 127.0.0.1:0\nconfigReloadInterval: 100ms\ntls: {{certFile: tls.crt, keyFile: tls.key, clientCAFile: ca.crt, reloadInterval: 100ms}}\n{no_policies}{yaml}"
        );
        let path = dir.join("vouch.yaml");
        std::fs::write(&path, text).expect("write config");
        Config::load(&path).unwrap_or_else(|e| panic!("test config invalid: {e}"))
    }

    /// Starts vouch with mTLS on a fresh PKI and the given extra YAML.
    pub async fn start(yaml: &str) -> Vouch {
        Vouch::start_with(yaml, None).await
    }

    pub async fn start_with(yaml: &str, engine: Option<Arc<dyn vouch::engine::Engine>>) -> Vouch {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::new();
        pki.write(dir.path());
        let config = Vouch::config(dir.path(), yaml);
        let running = vouch::app::start(
            config,
            vouch::app::Options {
                dev_ca_out: None,
                verify_engine: engine,
                config_path: Some(dir.path().join("vouch.yaml")),
            },
        )
        .await
        .expect("vouch starts");
        let client = Client {
            provider: running.provider_addr,
            ops: running.ops_addr,
            tls: pki.gatekeeper_client(),
        };
        let v = Vouch {
            running,
            dir,
            pki,
            client,
        };
        v.wait_ready().await;
        v
    }

    pub async fn wait_ready(&self) {
        wait_ready(self.running.ops_addr).await;
    }

    /// Rewrites the config file (same loopback listeners and TLS files) with `yaml`; a
    /// running vouch reloads it within its `configReloadInterval`.
    pub fn rewrite_config(&self, yaml: &str) {
        Vouch::config(self.dir.path(), yaml);
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl std::ops::Deref for Vouch {
    type Target = Client;

    /// Connections, requests and metrics, as for a [`VouchProcess`].
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for Vouch {
    fn drop(&mut self) {
        self.running.shutdown_token().cancel();
    }
}

/// The value (verdict) of the only item of a `/v1/verify` response; panics on a per-key
/// error or a system error, which the caller did not expect.
pub fn only_verdict(r: &serde_json::Value) -> serde_json::Value {
    assert_eq!(r["response"]["systemError"], "", "{r}");
    let item = &r["response"]["items"][0];
    assert!(
        item.get("error").is_none(),
        "unexpected per-key error: {item}"
    );
    item["value"].clone()
}

/// A failed verdict with `code` and a reason.
pub fn assert_code(v: &serde_json::Value, code: &str) {
    assert_eq!(v["verified"], false, "{v}");
    assert_eq!(v["code"], code, "{v}");
    assert!(
        v["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "a reason is given: {v}"
    );
}

/// The value of the sample whose name-and-labels text is exactly `name` (e.g.
/// `vouch_requests_total{endpoint="verify",outcome="ok"}`); 0 when absent.
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (n, v) = l.rsplit_once(' ')?;
            (n == name).then(|| v.parse::<f64>().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// A `vouch serve` child process; killed on drop so a failed assertion leaves nothing
/// running.
pub struct Served {
    pub child: std::process::Child,
    pub provider: SocketAddr,
    pub ops: SocketAddr,
    /// Log lines read up to the "listening" line.
    pub logs: Vec<String>,
    /// With [`Served::spawn_logged`]: every log line, read on as they come.
    all_logs: Option<Arc<std::sync::Mutex<Vec<String>>>>,
}

impl Served {
    /// Runs `binary --log-format json serve ARGS...` and waits for its listening line.
    /// After that line nobody reads stderr any more and the pipe closes: vouch must keep
    /// serving (and exit cleanly) when its log reader is gone.
    pub fn spawn(binary: &str, args: &[&std::ffi::OsStr]) -> Served {
        Served::spawn_inner(binary, "json", args, None).0
    }

    /// Runs `binary --log-format FORMAT serve ARGS...`, waits for its listening line, and
    /// hands over the log lines that follow.
    pub fn spawn_logging(
        binary: &str,
        format: &str,
        args: &[&std::ffi::OsStr],
    ) -> (Served, std::sync::mpsc::Receiver<String>) {
        Served::spawn_inner(binary, format, args, None)
    }

    /// As [`Served::spawn`] at log level `info`, but every log line is kept, for tests of
    /// what vouch logs ([`Served::log_lines`]).
    pub fn spawn_logged(binary: &str, args: &[&std::ffi::OsStr]) -> Served {
        let all = Arc::new(std::sync::Mutex::new(Vec::new()));
        Served::spawn_inner(binary, "json", args, Some(all)).0
    }

    fn spawn_inner(
        binary: &str,
        format: &str,
        args: &[&std::ffi::OsStr],
        all_logs: Option<Arc<std::sync::Mutex<Vec<String>>>>,
    ) -> (Served, std::sync::mpsc::Receiver<String>) {
        use std::io::{BufRead, BufReader};
        let mut command = std::process::Command::new(binary);
        if all_logs.is_some() {
            command.env("RUST_LOG", "info");
        }
        let mut child = command
            .args(["--log-format", format, "serve"])
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn vouch serve");
        let stderr = child.stderr.take().expect("stderr");
        // Log lines are read on a thread (the read blocks) and handed over a channel; when
        // they are all kept, the thread reads on after the channel's receiver is gone.
        let (tx, rx) = std::sync::mpsc::channel();
        let keep = all_logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(all) = &keep
                    && let Ok(mut all) = all.lock()
                {
                    all.push(line.clone());
                }
                if tx.send(line).is_err() && keep.is_none() {
                    break;
                }
            }
        });
        let mut logs = Vec::new();
        let until = std::time::Instant::now() + STEP;
        while std::time::Instant::now() < until {
            let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) else {
                continue;
            };
            let json = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|j| {
                    let f = &j["fields"];
                    let p = f["provider_addr"].as_str()?.parse().ok()?;
                    let o = f["ops_addr"].as_str()?.parse().ok()?;
                    Some((p, o))
                });
            // The text format: `… vouch is listening provider_addr=A ops_addr=B`.
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(name))
                    .and_then(|a| a.parse().ok())
            };
            let text = field("provider_addr=").zip(field("ops_addr="));
            logs.push(line);
            if let Some((provider, ops)) = json.or(text) {
                let served = Served {
                    child,
                    provider,
                    ops,
                    logs,
                    all_logs,
                };
                return (served, rx);
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("no listening line from vouch serve:\n{}", logs.join("\n"));
    }

    /// Every log line so far, parsed (JSON), with [`Served::spawn_logged`]; empty otherwise.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        let Some(all) = &self.all_logs else {
            return Vec::new();
        };
        let lines = all.lock().map(|l| l.clone()).unwrap_or_default();
        lines
            .iter()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
            })
            .collect()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success(), "SIGTERM sent");
        let until = std::time::Instant::now() + STEP;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(
                std::time::Instant::now() < until,
                "vouch did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// vouch as a child process of the test, with a fresh PKI and `yaml` in a temp dir: for
/// tests that watch the process itself (its tasks, file descriptors and memory on
/// `/metrics`) without the test's own clients and servers mixed in.
pub struct VouchProcess {
    pub served: Served,
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    client: Client,
}

impl std::ops::Deref for VouchProcess {
    type Target = Client;

    /// Connections, requests and metrics, as for a [`Vouch`].
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl VouchProcess {
    pub async fn start(yaml: &str) -> VouchProcess {
        VouchProcess::start_inner(yaml, false).await
    }

    /// As [`VouchProcess::start`], keeping every log line ([`Served::log_lines`]).
    pub async fn start_logged(yaml: &str) -> VouchProcess {
        VouchProcess::start_inner(yaml, true).await
    }

    async fn start_inner(yaml: &str, logged: bool) -> VouchProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::new();
        pki.write(dir.path());
        Vouch::config(dir.path(), yaml);
        let config = dir.path().join("vouch.yaml");
        let args = [std::ffi::OsStr::new("--config"), config.as_os_str()];
        let binary = env!("CARGO_BIN_EXE_vouch");
        let served = if logged {
            Served::spawn_logged(binary, &args)
        } else {
            Served::spawn(binary, &args)
        };
        wait_ready(served.ops).await;
        let client = Client {
            provider: served.provider,
            ops: served.ops,
            tls: pki.gatekeeper_client(),
        };
        VouchProcess {
            served,
            dir,
            pki,
            client,
        }
    }

    /// Alive runtime tasks and open file descriptors: what comes back to its idle level
    /// after load, unless something leaks.
    pub async fn footprint(&self) -> (f64, f64) {
        let text = ops_get(self.served.ops, "/metrics").await.text();
        (
            metric_value(&text, "vouch_runtime_alive_tasks"),
            metric_value(&text, "process_open_fds"),
        )
    }

    /// Waits up to 15 s for tasks and file descriptors to come back to `baseline` (or
    /// below), prints both (`label: tasks A -> B, fds C -> D`) and fails the test if they
    /// did not.
    pub async fn assert_back_to(&self, baseline: (f64, f64), label: &str) {
        let now = self.settles_to(baseline, Duration::from_secs(15)).await;
        println!(
            "{label}: tasks {} -> {}, fds {} -> {}",
            baseline.0, now.0, baseline.1, now.1
        );
        assert!(
            now.0 <= baseline.0 && now.1 <= baseline.1,
            "tasks/fds {now:?} did not come back to {baseline:?}"
        );
    }

    /// Waits (bounded) until tasks and file descriptors are back to `baseline` or below;
    /// returns the last reading.
    pub async fn settles_to(&self, baseline: (f64, f64), within: Duration) -> (f64, f64) {
        let until = std::time::Instant::now() + within;
        loop {
            let now = self.footprint().await;
            if (now.0 <= baseline.0 && now.1 <= baseline.1) || std::time::Instant::now() > until {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Runs `command` with `stdin` (nothing when `None`), reading its output on threads so a
/// full pipe cannot stall it, and waits at most `limit`; past it the process is killed and
/// the test fails naming `what`. For synchronous callers ([`run_command`] is the async one).
pub fn run_within(
    mut command: std::process::Command,
    stdin: Option<Vec<u8>>,
    limit: Duration,
    what: &str,
) -> std::process::Output {
    use std::io::{Read, Write};
    use std::process::Stdio;
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let writer = stdin.map(|input| {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        })
    });
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = pipe.read_to_end(&mut out);
            out
        })
    };
    let stdout = reader(Box::new(child.stdout.take().expect("stdout")));
    let stderr = reader(Box::new(child.stderr.take().expect("stderr")));
    let until = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap_or_else(|e| panic!("{what}: {e}")) {
            break status;
        }
        if std::time::Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} took longer than {limit:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    std::process::Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// The median of `v` (the upper one of an even count): how the benches summarise rounds.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// What a finished command left: its exit status (-1 when killed by a signal), standard
/// output and standard error.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `binary ARGS...` with `stdin` as its standard input and waits at most `within`;
/// past it the process is killed and the test fails, so a hung command cannot hang the
/// suite.
pub async fn run_command(binary: &str, args: &[&str], stdin: &[u8], within: Duration) -> Ran {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(binary)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the command");
    let mut input = child.stdin.take().expect("stdin is piped");
    let stdin = stdin.to_vec();
    // A command that does not read its input must not block the writer forever.
    let writer = tokio::spawn(async move {
        let _ = input.write_all(&stdin).await;
    });
    let out = tokio::time::timeout(within, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{binary} {args:?} did not finish within {within:?}"))
        .expect("wait for the command");
    writer.abort();
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
