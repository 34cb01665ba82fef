//! A real OCI registry for tests: Debian's `docker-registry` (distribution 2.8) as a child
//! process on a free loopback port, a pusher that uploads byte-exact content over the v2 API,
//! and a cosign signer that shares no code with vouch (RustCrypto p256, not aws-lc-rs), so a
//! verification bug in vouch cannot be hidden by the same bug in the signer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::elliptic_curve::Generate;
use p256::pkcs8::{EncodePublicKey, LineEnding};
use reqwest::{Method, RequestBuilder, Response, Url};
use serde_json::json;

use super::{STEP, free_port, token, wait_for_child};

/// The user of [`Registry::start_with_basic_auth`] (and of the token service in
/// [`super::token`]).
pub const USER: &str = "alice";
/// The password of [`USER`].
pub const PASSWORD: &str = "s3cret";
/// `USER:PASSWORD` hashed with bcrypt (`htpasswd -Bbn`, cost 5): distribution only accepts
/// bcrypt, and reads the file once at startup.
const HTPASSWD: &str = "alice:$2y$05$YFGxOJoEh5OFn0l9IzFhvu2aW45jbgl1c4DGepR8i.LKUPYClEbha\n";

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const COSIGN_SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const COSIGN_SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The Accept header for manifest reads: without an OCI type in it, distribution answers 404
/// `MANIFEST_UNKNOWN` for an OCI manifest that exists.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// How often a port is picked again when the registry exits before answering (another
/// process took the port between our pick and its bind).
const START_ATTEMPTS: usize = 5;

/// `sha256:<hex>` of `bytes`, the OCI digest form.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hex: String = digest(&SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// A `docker-registry serve` child process with filesystem storage in its own temp dir.
/// Stopped (killed and reaped) on drop, so a failed assertion leaves nothing running.
pub struct Registry {
    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub host: String,
    pub addr: SocketAddr,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// One request as the registry's access log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLine {
    pub method: String,
    /// Path and query, as sent.
    pub uri: String,
    pub status: u16,
}

impl AccessLine {
    /// Parses a combined-log-format line:
    /// `127.0.0.1 - - [date] "HEAD /v2/a/manifests/v1 HTTP/1.1" 200 1234 "" "agent"`.
    fn parse(line: &str) -> Option<AccessLine> {
        let (_, rest) = line.split_once('"')?;
        let (request, rest) = rest.split_once('"')?;
        let mut request = request.split(' ');
        let method = request.next()?.to_owned();
        let uri = request.next()?.to_owned();
        let status = rest.split_whitespace().next()?.parse().ok()?;
        Some(AccessLine {
            method,
            uri,
            status,
        })
    }
}

/// How a registry authenticates its clients.
#[derive(Clone, Copy)]
enum Auth<'a> {
    Anonymous,
    /// HTTP Basic against [`HTPASSWD`].
    Basic,
    /// Bearer tokens from the token service at `realm`, signed by a key whose certificate
    /// is `rootcert_pem` (issuer [`token::ISSUER`], audience [`token::SERVICE`]).
    Token {
        realm: &'a str,
        rootcert_pem: &'a str,
    },
}

impl Registry {
    /// An anonymous registry: anyone may pull and push.
    pub fn start() -> Registry {
        Registry::start_inner(Auth::Anonymous, None)
    }

    /// A registry that demands HTTP Basic credentials ([`USER`], [`PASSWORD`]) for every
    /// request, `/v2/` included.
    pub fn start_with_basic_auth() -> Registry {
        Registry::start_inner(Auth::Basic, None)
    }

    /// A registry that demands bearer tokens: every request without a valid one gets a
    /// `401` with `WWW-Authenticate: Bearer realm="<realm>",service="<token::SERVICE>",
    /// scope=…`. It accepts JWTs issued by [`token::ISSUER`] for [`token::SERVICE`] and
    /// signed by the key of `rootcert_pem` (its `rootcertbundle`). Distribution does not
    /// contact the realm itself; only clients do, so the realm may be any URL, the test's
    /// token service or a trap. [`Pusher::with_bearer`] pushes to it.
    pub fn start_with_token_auth(realm: &str, rootcert_pem: &str) -> Registry {
        Registry::start_inner(
            Auth::Token {
                realm,
                rootcert_pem,
            },
            None,
        )
    }

    /// A registry serving HTTPS with the given PEM certificate and key (no auth). Only
    /// for TLS tests: [`Pusher`] speaks plain HTTP.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Registry {
        Registry::start_inner(Auth::Anonymous, Some((cert_pem, key_pem)))
    }

    fn start_inner(auth: Auth<'_>, tls: Option<(&str, &str)>) -> Registry {
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let mut registry = Registry::spawn(free_port(), auth, tls);
            if registry.wait_ready() {
                return registry;
            }
            // It exited (most likely the port was taken); dropping it removes its directory.
            last_log = registry.server_log();
        }
        panic!("docker-registry did not start in {START_ATTEMPTS} attempts:\n{last_log}");
    }

    fn spawn(port: u16, auth: Auth<'_>, tls: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().expect("registry tempdir");
        // JSON is YAML, and serde_json quotes the temp paths correctly.
        let mut config = json!({
            "version": "0.1",
            "log": {"level": "info"},
            "storage": {
                "filesystem": {"rootdirectory": dir.path().join("data")},
                "delete": {"enabled": true},
            },
            "http": {"addr": format!("127.0.0.1:{port}")},
        });
        match auth {
            Auth::Anonymous => {}
            Auth::Basic => {
                let htpasswd = dir.path().join("htpasswd");
                std::fs::write(&htpasswd, HTPASSWD).expect("write htpasswd");
                config["auth"] = json!({"htpasswd": {"realm": "vouch-test", "path": htpasswd}});
            }
            Auth::Token {
                realm,
                rootcert_pem,
            } => {
                let bundle = dir.path().join("token-issuer.crt");
                std::fs::write(&bundle, rootcert_pem).expect("write token root certificate");
                config["auth"] = json!({"token": {
                    "realm": realm,
                    "service": token::SERVICE,
                    "issuer": token::ISSUER,
                    "rootcertbundle": bundle,
                }});
            }
        }
        if let Some((cert, key)) = tls {
            let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
            std::fs::write(&cert_path, cert).expect("write registry cert");
            std::fs::write(&key_path, key).expect("write registry key");
            config["http"]["tls"] = json!({"certificate": cert_path, "key": key_path});
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config.to_string()).expect("write registry config");
        let log_file = |name: &str| std::fs::File::create(dir.path().join(name)).expect(name);
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config_path)
            .env("REGISTRY_HTTP_SECRET", "vouch-test-secret")
            .stdin(Stdio::null())
            .stdout(log_file("access.log"))
            .stderr(log_file("registry.log"))
            .spawn()
            .expect("spawn /usr/bin/docker-registry (apt-get install docker-registry)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        Registry {
            host: addr.to_string(),
            addr,
            child: Some(child),
            dir,
        }
    }

    /// Polls `GET /v2/` until it answers (see [`wait_for_child`]). A TLS registry answers the
    /// plain-HTTP probe with 400: alive all the same.
    fn wait_ready(&mut self) -> bool {
        let addr = self.addr;
        let what = format!("docker-registry on {}", self.host);
        let log_path = self.dir.path().join("registry.log");
        wait_for_child(
            &mut self.child,
            || matches!(probe(addr), Some(200 | 400 | 401)),
            &what,
            || std::fs::read_to_string(&log_path).unwrap_or_default(),
        )
    }

    /// Kills the registry and reaps it. Safe to call more than once.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Every request the registry has answered so far, in order.
    ///
    /// Read from the combined access log on the registry's stdout rather than from the
    /// logrus `response completed` lines on stderr: those are missing for requests that
    /// authentication rejects (401), and a 401 challenge is a round trip too. Startup
    /// probes (`GET /v2/`) are included, so count from a baseline with
    /// [`Registry::requests_since`].
    pub fn access_log(&self) -> Vec<AccessLine> {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(AccessLine::parse)
            .collect()
    }

    /// The requests after the first `n`: `let n = reg.access_log().len();` before an
    /// operation, then this after [`Registry::settle_log`] gives that operation's round trips.
    pub fn requests_since(&self, n: usize) -> Vec<AccessLine> {
        self.access_log().into_iter().skip(n).collect()
    }

    /// Waits (at most 2 s) until the access log has not grown for 100 ms: a line is written
    /// when the handler returns, which can be just after the client has its response.
    pub async fn settle_log(&self) {
        let until = tokio::time::Instant::now() + Duration::from_secs(2);
        let mut count = self.access_log().len();
        let mut stable_since = tokio::time::Instant::now();
        while tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = self.access_log().len();
            if now != count {
                count = now;
                stable_since = tokio::time::Instant::now();
            } else if stable_since.elapsed() >= Duration::from_millis(100) {
                return;
            }
        }
    }

    /// The registry's own (logrus) log, for failure messages.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The status of a plain `GET /v2/` (blocking, so that [`Registry::start`] works with or
/// without a runtime), or None when nothing answers yet.
fn probe(addr: SocketAddr) -> Option<u16> {
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    tcp.set_write_timeout(Some(Duration::from_secs(1))).ok()?;
    write!(tcp, "GET /v2/ HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).ok()?;
    // "HTTP/1.x NNN"
    std::str::from_utf8(&head[9..]).ok()?.parse().ok()
}

/// A manifest as pushed: the exact bytes and their digest.
#[derive(Debug, Clone)]
pub struct Image {
    /// `sha256:<hex>` of `manifest`.
    pub digest: String,
    pub manifest: Vec<u8>,
    pub media_type: String,
    pub size: usize,
}

impl Image {
    /// An OCI descriptor of this manifest, as an index refers to it.
    fn descriptor(&self) -> serde_json::Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }
}

/// Pushes content over the registry's v2 API, byte for byte: what tests later expect vouch
/// to read back is exactly what went in.
pub struct Pusher {
    client: reqwest::Client,
    base: Url,
    auth: PushAuth,
}

/// Makes a bearer token for a repository (its `pull,push` access).
pub type MintToken = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// What a [`Pusher`] sends with every request.
enum PushAuth {
    Anonymous,
    Basic(String, String),
    /// A token minted for the repository the request is about. The pusher does not walk
    /// the token flow itself: vouch's side of that flow is what the tests examine, and a
    /// second client implementation of it would only add a way for the setup to fail.
    Bearer(MintToken),
}

impl Pusher {
    /// A pusher without credentials.
    pub fn new(registry: &Registry) -> Pusher {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(STEP)
            .build()
            .expect("reqwest client");
        let base = Url::parse(&format!("http://{}/", registry.host)).expect("registry url");
        Pusher {
            client,
            base,
            auth: PushAuth::Anonymous,
        }
    }

    /// A pusher that sends HTTP Basic credentials with every request.
    pub fn with_basic_auth(registry: &Registry, user: &str, pass: &str) -> Pusher {
        Pusher {
            auth: PushAuth::Basic(user.to_owned(), pass.to_owned()),
            ..Pusher::new(registry)
        }
    }

    /// A pusher for a [`Registry::start_with_token_auth`] registry: every request carries
    /// `Authorization: Bearer <mint(repository)>` for the repository in its path
    /// (`/v2/<repository>/blobs/…`, `…/manifests/…`, `…/tags/…`).
    pub fn with_bearer(registry: &Registry, mint: MintToken) -> Pusher {
        Pusher {
            auth: PushAuth::Bearer(mint),
            ..Pusher::new(registry)
        }
    }

    /// A request to `path` (e.g. `/v2/`) on the registry, with this pusher's credentials.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let url = self.base.join(path).expect("registry path");
        let repository_path = url.path().to_owned();
        let request = self.client.request(method, url);
        match &self.auth {
            PushAuth::Anonymous => request,
            PushAuth::Basic(user, pass) => request.basic_auth(user, Some(pass)),
            PushAuth::Bearer(mint) => request.bearer_auth(mint(repository_of(&repository_path))),
        }
    }

    /// Uploads a blob (monolithic: POST to open the upload, PUT with the content and
    /// digest) and returns its `sha256:<hex>` digest.
    pub async fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        let opened = self
            .request(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
            .send()
            .await
            .expect("POST blob upload");
        let opened = expect_status(opened, 202, "open blob upload").await;
        let location = opened
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .expect("upload Location header");
        let url = upload_url(&self.base, location, &digest);
        let put = self
            .request(Method::PUT, url.as_str())
            // Not the form type: Go's ParseForm would consume the body looking for `digest`.
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .expect("PUT blob");
        expect_status(put, 201, "complete blob upload").await;
        digest
    }

    /// PUTs manifest bytes under `reference` (a tag or digest) and returns their digest,
    /// after checking the registry computed the same one.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> String {
        let digest = sha256_digest(bytes);
        let put = self
            .request(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
            .header(reqwest::header::CONTENT_TYPE, media_type)
            .body(bytes.to_vec())
            .send()
            .await
            .expect("PUT manifest");
        let put = expect_status(put, 201, "push manifest").await;
        assert_eq!(
            header(&put, "docker-content-digest").as_deref(),
            Some(digest.as_str()),
            "registry digest of the pushed manifest"
        );
        digest
    }

    /// Pushes a small single-layer OCI image under `repo:tag`. The layer holds a process-wide
    /// counter and the time, so every call yields a different digest.
    pub async fn push_image(&self, repo: &str, tag: &str) -> Image {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let layer = format!("vouch test layer {} {n} {nanos}\n", std::process::id()).into_bytes();
        let layer_digest = self.push_blob(repo, &layer).await;
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }))
        .expect("config json");
        let config_digest = self.push_blob(repo, &config).await;
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": layer.len()}],
        }))
        .expect("manifest json");
        self.push_manifest_image(repo, tag, OCI_MANIFEST, manifest)
            .await
    }

    /// Pushes an OCI image index of `images` (which must already be in `repo`: distribution
    /// checks that an index's children exist) with platforms linux/amd64, linux/arm64, ...
    pub async fn push_index(&self, repo: &str, tag: &str, images: &[Image]) -> Image {
        const ARCHITECTURES: [&str; 5] = ["amd64", "arm64", "ppc64le", "s390x", "riscv64"];
        assert!(
            images.len() <= ARCHITECTURES.len(),
            "at most {} platforms",
            ARCHITECTURES.len()
        );
        let manifests: Vec<_> = images
            .iter()
            .zip(ARCHITECTURES)
            .map(|(image, arch)| {
                let mut entry = image.descriptor();
                entry["platform"] = json!({"architecture": arch, "os": "linux"});
                entry
            })
            .collect();
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests,
        }))
        .expect("index json");
        self.push_manifest_image(repo, tag, OCI_INDEX, index).await
    }

    /// Pushes an OCI image index of `images` (already in `repo`) with the given platforms
    /// (`os`, `architecture`) — any number, repeats allowed.
    pub async fn push_index_with(
        &self,
        repo: &str,
        tag: &str,
        images: &[(&Image, &str, &str)],
    ) -> Image {
        let manifests: Vec<_> = images
            .iter()
            .map(|(image, os, arch)| {
                let mut entry = image.descriptor();
                entry["platform"] = json!({"architecture": arch, "os": os});
                entry
            })
            .collect();
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests,
        }))
        .expect("index json");
        self.push_manifest_image(repo, tag, OCI_INDEX, index).await
    }

    /// Points `repo:tag` at `image` by PUTting its exact manifest bytes again (moves the tag
    /// if it pointed elsewhere).
    pub async fn tag(&self, repo: &str, tag: &str, image: &Image) {
        let digest = self
            .push_manifest(repo, tag, &image.media_type, &image.manifest)
            .await;
        assert_eq!(digest, image.digest);
    }

    /// Deletes a manifest by digest (the registry runs with `storage.delete.enabled`).
    pub async fn delete_manifest(&self, repo: &str, digest: &str) {
        let deleted = self
            .request(Method::DELETE, &format!("/v2/{repo}/manifests/{digest}"))
            .send()
            .await
            .expect("DELETE manifest");
        expect_status(deleted, 202, "delete manifest").await;
    }

    /// Reads a manifest (with the OCI Accept types); returns its `Docker-Content-Digest`
    /// and bytes.
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> (String, Vec<u8>) {
        let got = self
            .request(Method::GET, &format!("/v2/{repo}/manifests/{reference}"))
            .header(reqwest::header::ACCEPT, MANIFEST_ACCEPT)
            .send()
            .await
            .expect("GET manifest");
        let got = expect_status(got, 200, "get manifest").await;
        let digest = header(&got, "docker-content-digest").expect("Docker-Content-Digest");
        let body = got.bytes().await.expect("manifest body").to_vec();
        (digest, body)
    }

    /// Reads a blob by digest.
    pub async fn get_blob(&self, repo: &str, digest: &str) -> Vec<u8> {
        let got = self
            .request(Method::GET, &format!("/v2/{repo}/blobs/{digest}"))
            .send()
            .await
            .expect("GET blob");
        let got = expect_status(got, 200, "get blob").await;
        got.bytes().await.expect("blob body").to_vec()
    }

    async fn push_manifest_image(
        &self,
        repo: &str,
        tag: &str,
        media_type: &str,
        manifest: Vec<u8>,
    ) -> Image {
        let digest = self.push_manifest(repo, tag, media_type, &manifest).await;
        Image {
            digest,
            size: manifest.len(),
            manifest,
            media_type: media_type.to_owned(),
        }
    }
}

/// The repository a v2 API path is about: `acme/api` for `/v2/acme/api/blobs/uploads/…`.
fn repository_of(path: &str) -> &str {
    let name = path
        .strip_prefix("/v2/")
        .unwrap_or_else(|| panic!("{path} is not a repository path of the v2 API"));
    ["/blobs/", "/manifests/", "/tags/"]
        .iter()
        .filter_map(|part| name.find(part))
        .min()
        .map(|end| &name[..end])
        .unwrap_or_else(|| panic!("{path} names no repository"))
}

/// The URL that completes an upload: the `Location` of the POST (absolute, or relative to
/// the registry) with `digest=` appended to whatever query it already has.
pub fn upload_url(base: &Url, location: &str, digest: &str) -> Url {
    let mut url = base.join(location).expect("upload Location is a URL");
    url.query_pairs_mut().append_pair("digest", digest);
    url
}

/// Returns the response when its status is `want`; otherwise panics with the body, which
/// carries the registry's error code.
async fn expect_status(response: Response, want: u16, what: &str) -> Response {
    let status = response.status().as_u16();
    if status != want {
        let body = response.text().await.unwrap_or_default();
        panic!("{what}: expected {want}, got {status}: {body}");
    }
    response
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A cosign key pair made with RustCrypto's p256, independent of the aws-lc-rs code vouch
/// verifies with.
pub struct CosignKey {
    sk: SigningKey,
}

/// One signature as cosign stores it: the signed payload (a blob) and the base64 DER
/// signature (a layer annotation).
#[derive(Debug, Clone)]
pub struct CosignSignature {
    pub payload: Vec<u8>,
    pub signature_b64: String,
}

impl CosignKey {
    /// A fresh P-256 key from the OS RNG.
    pub fn generate() -> CosignKey {
        CosignKey {
            sk: SigningKey::generate(),
        }
    }

    /// The public key as `cosign.pub` holds it: a PEM SubjectPublicKeyInfo.
    pub fn public_pem(&self) -> String {
        self.sk
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("public key pem")
    }

    /// ECDSA-SHA256 over `payload`, ASN.1 DER, base64: cosign's annotation value.
    pub fn sign_b64(&self, payload: &[u8]) -> String {
        let signature: DerSignature = self.sk.sign(payload);
        STANDARD.encode(signature.as_bytes())
    }

    /// Signs the simple-signing payload for `docker_reference` at `digest`, as `cosign sign`
    /// does.
    pub fn sign_image(&self, docker_reference: &str, digest: &str) -> CosignSignature {
        let payload = simple_signing_payload(docker_reference, digest);
        CosignSignature {
            signature_b64: self.sign_b64(&payload),
            payload,
        }
    }
}

/// Cosign's simple-signing payload, byte for byte as cosign writes it (keys in this order,
/// no whitespace, `"optional":null` when there are no annotations).
pub fn simple_signing_payload(docker_reference: &str, digest: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": null,
    }))
    .expect("payload json")
}

/// The tag under which cosign stores the signatures of `image_digest`:
/// `sha256:<hex>` becomes `sha256-<hex>.sig`.
pub fn signature_tag(image_digest: &str) -> String {
    format!("{}.sig", image_digest.replace(':', "-"))
}

/// Pushes `repo:tag` and a cosign signature of it by `key` — what `cosign sign` leaves in a
/// registry. The signature names the image `<host>/<repo>`: the registry's host, or that of
/// a proxy in front of it, as vouch will see it.
pub async fn push_signed(
    pusher: &Pusher,
    key: &CosignKey,
    host: &str,
    repo: &str,
    tag: &str,
) -> Image {
    let image = pusher.push_image(repo, tag).await;
    let sig = key.sign_image(&format!("{host}/{repo}"), &image.digest);
    push_cosign_signatures(pusher, repo, &image.digest, &[sig]).await;
    image
}

/// Pushes a signature image the way cosign does (tag scheme): each payload a
/// simple-signing layer annotated with its signature, a config like the one
/// go-containerregistry writes, tagged [`signature_tag`] in `repo`. Returns the signature
/// manifest's digest.
pub async fn push_cosign_signatures(
    pusher: &Pusher,
    repo: &str,
    image_digest: &str,
    sigs: &[CosignSignature],
) -> String {
    let layers: Vec<_> = sigs
        .iter()
        .map(|sig| {
            let mut annotations = serde_json::Map::new();
            annotations.insert(
                COSIGN_SIGNATURE_ANNOTATION.to_string(),
                json!(sig.signature_b64),
            );
            (sig.payload.clone(), annotations)
        })
        .collect();
    push_signature_layers(pusher, repo, image_digest, &layers).await
}

/// Pushes a signature image of simple-signing layers (payload, annotations), as cosign
/// does, tagged [`signature_tag`] in `repo`. Returns the signature manifest's digest.
pub async fn push_signature_layers(
    pusher: &Pusher,
    repo: &str,
    image_digest: &str,
    sigs: &[(Vec<u8>, serde_json::Map<String, serde_json::Value>)],
) -> String {
    let image = SignatureImage::of(sigs);
    for blob in image.blobs() {
        pusher.push_blob(repo, blob).await;
    }
    pusher
        .push_manifest(
            repo,
            &signature_tag(image_digest),
            OCI_MANIFEST,
            &image.manifest,
        )
        .await
}

/// A cosign signature image, byte for byte: its config (as go-containerregistry writes
/// it), its manifest, and the payload blobs its layers name.
pub struct SignatureImage {
    pub payloads: Vec<Vec<u8>>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

impl SignatureImage {
    /// The signature image of simple-signing layers (payload, annotations).
    pub fn of(sigs: &[(Vec<u8>, serde_json::Map<String, serde_json::Value>)]) -> SignatureImage {
        SignatureImage::of_type(COSIGN_SIMPLESIGNING, sigs)
    }

    /// The image of layers of `media_type` (blob, annotations): cosign's `.sig` or `.att`.
    pub fn of_type(
        media_type: &str,
        sigs: &[(Vec<u8>, serde_json::Map<String, serde_json::Value>)],
    ) -> SignatureImage {
        let layers: Vec<_> = sigs
            .iter()
            .map(|(payload, annotations)| {
                json!({
                    "mediaType": media_type,
                    "digest": sha256_digest(payload),
                    "size": payload.len(),
                    "annotations": annotations,
                })
            })
            .collect();
        let diff_ids: Vec<_> = layers.iter().map(|l| l["digest"].clone()).collect();
        let config = serde_json::to_vec(&json!({
            "architecture": "",
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "config": {},
        }))
        .expect("config json");
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(&config), "size": config.len()},
            "layers": layers,
        }))
        .expect("signature manifest json");
        SignatureImage {
            payloads: sigs.iter().map(|(p, _)| p.clone()).collect(),
            config,
            manifest,
        }
    }

    /// Every blob the manifest names: the payloads, then the config.
    pub fn blobs(&self) -> impl Iterator<Item = &[u8]> {
        self.payloads
            .iter()
            .map(Vec::as_slice)
            .chain(std::iter::once(self.config.as_slice()))
    }
}
