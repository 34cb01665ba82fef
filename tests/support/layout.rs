//! Notary Project fixtures as tests use them: OCI image layouts from notation's e2e suite,
//! pushed byte-exact into the real registry or served by a small in-process OCI distribution
//! server that also speaks the OCI 1.1 referrers API (which the Debian `docker-registry` 2.8
//! does not); and Notary Project JWS signatures made with the published e2e key by RustCrypto's
//! `rsa`, independent of the aws-lc-rs code vouch verifies with.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::Url;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use super::registry::{OCI_INDEX, OCI_MANIFEST, Pusher, sha256_digest};

/// The config and artifact type of a Notary Project signature manifest.
pub const NOTARY_SIGNATURE: &str = "application/vnd.cncf.notary.signature";
/// The media type of a JWS signature envelope layer.
pub const JOSE_JSON: &str = "application/jose+json";
/// The content type of the Notary Project payload (`cty` of the JWS).
pub const NOTARY_PAYLOAD: &str = "application/vnd.cncf.notary.payload.v1+json";
/// The index.json annotation that names a manifest's tag.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The signing agent the test signer writes into the unprotected header.
pub const SIGNING_AGENT: &str = "vouch-tests";

/// The notation fixtures (read-only, shared between checkouts).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/notation")
}

/// An OCI content descriptor, kept apart from its JSON so tests can compare and rebuild it.
#[derive(Debug, Clone, PartialEq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Map<String, Value>,
}

impl Descriptor {
    /// Reads a descriptor from its JSON (fields other than these five are dropped).
    pub fn from_json(value: &Value) -> Descriptor {
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        Descriptor {
            media_type: text("mediaType").expect("descriptor mediaType"),
            digest: text("digest").expect("descriptor digest"),
            size: value["size"].as_u64().expect("descriptor size"),
            artifact_type: text("artifactType"),
            annotations: value
                .get("annotations")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// The descriptor of manifest `bytes` as the referrers API lists it: its artifact type is
    /// the manifest's `artifactType`, or else its `config.mediaType`; its annotations are the
    /// manifest's.
    pub fn of_manifest(media_type: &str, bytes: &[u8]) -> Descriptor {
        let manifest: Value = serde_json::from_slice(bytes).expect("manifest is JSON");
        let artifact_type = manifest
            .get("artifactType")
            .or_else(|| manifest.get("config").and_then(|c| c.get("mediaType")))
            .and_then(Value::as_str)
            .map(str::to_owned);
        Descriptor {
            media_type: media_type.to_owned(),
            digest: sha256_digest(bytes),
            size: bytes.len() as u64,
            artifact_type,
            annotations: manifest
                .get("annotations")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// OCI descriptor JSON in the field order of Go's `ocispec.Descriptor` (what notation and
    /// oras write): mediaType, digest, size, annotations, artifactType; absent ones omitted.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("mediaType".into(), json!(self.media_type));
        map.insert("digest".into(), json!(self.digest));
        map.insert("size".into(), json!(self.size));
        if !self.annotations.is_empty() {
            map.insert(
                "annotations".into(),
                Value::Object(self.annotations.clone()),
            );
        }
        if let Some(artifact_type) = &self.artifact_type {
            map.insert("artifactType".into(), json!(artifact_type));
        }
        Value::Object(map)
    }

    /// Just mediaType, digest and size: how notation writes a `subject`.
    pub fn subject_json(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }

    /// The `org.opencontainers.image.ref.name` annotation, if any.
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations.get(REF_NAME).and_then(Value::as_str)
    }
}

/// The referrers tag schema's tag for `digest`: `sha256:<hex>` becomes `sha256-<hex>`.
/// Whether `tag` is a tag-schema index tag (`sha256-<64 hex>`, no suffix: cosign's
/// `sha256-<hex>.sig` is an ordinary tag).
fn is_tag_schema_index(tag: &str) -> bool {
    tag.strip_prefix("sha256-")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub fn tag_schema_tag(digest: &str) -> String {
    digest.replace(':', "-")
}

/// An OCI image layout as notation's e2e fixtures are made: one image tagged by `ref.name`,
/// its signature manifests, and (maybe) the tag-schema index listing them.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
    pub image: Descriptor,
    pub image_tag: String,
    pub signatures: Vec<Descriptor>,
    pub tag_index: Option<Descriptor>,
}

impl Layout {
    /// Reads `dir/index.json`: the image is the entry whose ref.name does not start with
    /// `sha256-`, the tag index the one whose ref.name does, the signatures all the others.
    pub fn load(dir: &Path) -> Layout {
        let path = dir.join("index.json");
        let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let index: Value = serde_json::from_slice(&text).expect("index.json is JSON");
        let mut image = None;
        let mut tag_index = None;
        let mut signatures = Vec::new();
        for entry in index["manifests"].as_array().expect("index.json manifests") {
            let descriptor = Descriptor::from_json(entry);
            match descriptor.ref_name() {
                Some(name) if name.starts_with("sha256-") && tag_index.is_none() => {
                    tag_index = Some(descriptor)
                }
                Some(name) if !name.starts_with("sha256-") && image.is_none() => {
                    image = Some((name.to_owned(), descriptor))
                }
                _ => signatures.push(descriptor),
            }
        }
        let (image_tag, image) = image.expect("index.json has a tagged image");
        Layout {
            dir: dir.to_owned(),
            image,
            image_tag,
            signatures,
            tag_index,
        }
    }

    /// The bytes of a blob (manifests are blobs too) in `blobs/<alg>/<hex>`.
    pub fn blob(&self, digest: &str) -> Vec<u8> {
        let (alg, hex) = digest.split_once(':').expect("digest is alg:hex");
        let path = self.dir.join("blobs").join(alg).join(hex);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Every manifest in index.json, in push order: image, signatures, tag index.
    pub fn manifests(&self) -> Vec<&Descriptor> {
        std::iter::once(&self.image)
            .chain(&self.signatures)
            .chain(&self.tag_index)
            .collect()
    }

    /// Every file in `blobs/sha256`, by digest.
    pub fn all_blobs(&self) -> HashMap<String, Vec<u8>> {
        let dir = self.dir.join("blobs/sha256");
        std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| {
                let entry = entry.expect("blob dir entry");
                let digest = format!("sha256:{}", entry.file_name().to_string_lossy());
                let bytes = std::fs::read(entry.path()).expect("read blob");
                (digest, bytes)
            })
            .collect()
    }
}

/// One of notation's e2e layouts, `notation-e2e/oci_layout/<name>`.
pub fn fixture(name: &str) -> Layout {
    Layout::load(&fixtures_dir().join("notation-e2e/oci_layout").join(name))
}

/// The blob descriptors (config and layers) a manifest refers to; none for an index.
fn referenced_blobs(manifest: &[u8]) -> Vec<Descriptor> {
    let manifest: Value = serde_json::from_slice(manifest).expect("manifest is JSON");
    manifest
        .get("config")
        .into_iter()
        .chain(
            manifest
                .get("layers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        )
        .map(Descriptor::from_json)
        .collect()
}

/// Pushes `layout` into `repo` byte-exact, in the order distribution requires (blobs before
/// the manifests that use them, an index's children before the index): the blobs of each
/// manifest, the image by its tag, each signature by digest, the tag-schema index by its
/// `sha256-<hex>` tag.
pub async fn push_layout(pusher: &Pusher, repo: &str, layout: &Layout) {
    let mut pushed = HashSet::new();
    for manifest in std::iter::once(&layout.image).chain(&layout.signatures) {
        for blob in referenced_blobs(&layout.blob(&manifest.digest)) {
            if pushed.insert(blob.digest.clone()) {
                let digest = pusher.push_blob(repo, &layout.blob(&blob.digest)).await;
                assert_eq!(digest, blob.digest, "fixture blob digest");
            }
        }
    }
    let image = &layout.image;
    let digest = pusher
        .push_manifest(
            repo,
            &layout.image_tag,
            &image.media_type,
            &layout.blob(&image.digest),
        )
        .await;
    assert_eq!(digest, image.digest, "fixture image digest");
    for signature in &layout.signatures {
        let digest = pusher
            .push_manifest(
                repo,
                &signature.digest,
                &signature.media_type,
                &layout.blob(&signature.digest),
            )
            .await;
        assert_eq!(digest, signature.digest, "fixture signature digest");
    }
    if let Some(index) = &layout.tag_index {
        let tag = index.ref_name().expect("tag index ref.name");
        let digest = pusher
            .push_manifest(repo, tag, &index.media_type, &layout.blob(&index.digest))
            .await;
        assert_eq!(digest, index.digest, "fixture tag index digest");
    }
}

/// How a [`LayoutServer`] behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerOptions {
    /// Serve the `sha256-<hex>` tag-schema index tags (off: only the referrers API finds
    /// signatures, as on a registry that never had the fallback written).
    pub tag_schema: bool,
    /// At most this many descriptors per referrers page, with a `Link` to the next.
    pub page_size: Option<usize>,
}

struct Stored {
    digest: String,
    media_type: String,
    bytes: Vec<u8>,
}

#[derive(Default)]
struct Repo {
    /// In insertion order, which is the order the referrers API lists them.
    manifests: Vec<Stored>,
    tags: HashMap<String, String>,
    blobs: HashMap<String, Vec<u8>>,
}

impl Repo {
    fn add_manifest(&mut self, media_type: &str, bytes: Vec<u8>) -> String {
        let digest = sha256_digest(&bytes);
        if !self.manifests.iter().any(|m| m.digest == digest) {
            self.manifests.push(Stored {
                digest: digest.clone(),
                media_type: media_type.to_owned(),
                bytes,
            });
        }
        digest
    }

    fn manifest(&self, digest: &str) -> Option<&Stored> {
        self.manifests.iter().find(|m| m.digest == digest)
    }
}

struct Shared {
    repos: Mutex<HashMap<String, Repo>>,
    requests: Mutex<Vec<String>>,
    options: ServerOptions,
}

/// A minimal OCI distribution server (plain HTTP on a free loopback port) serving layouts by
/// repository name, with the OCI 1.1 referrers API, optional tag schema and optional referrers
/// pagination; it records every request. Stops when dropped.
pub struct LayoutServer {
    /// `127.0.0.1:PORT`, to put in image references.
    pub host: String,
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl LayoutServer {
    /// Serves each `(repository, layout)`: all of the layout's blobs, its manifests by digest,
    /// the image by its tag and, with `tag_schema`, the tag index by its `sha256-<hex>` tag.
    /// Layouts given under the same repository name are merged.
    pub async fn start(repos: Vec<(String, Layout)>, options: ServerOptions) -> LayoutServer {
        let mut map: HashMap<String, Repo> = HashMap::new();
        for (name, layout) in repos {
            let repo = map.entry(name).or_default();
            repo.blobs.extend(layout.all_blobs());
            for manifest in layout.manifests() {
                repo.add_manifest(&manifest.media_type, layout.blob(&manifest.digest));
            }
            repo.tags
                .insert(layout.image_tag.clone(), layout.image.digest.clone());
            if let Some(index) = &layout.tag_index {
                let tag = index.ref_name().expect("tag index ref.name").to_owned();
                repo.tags.insert(tag, index.digest.clone());
            }
        }
        let shared = Arc::new(Shared {
            repos: Mutex::new(map),
            requests: Mutex::new(Vec::new()),
            options,
        });
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let (addr, tx) = super::serve_router(router, "layout server").await;
        LayoutServer {
            host: addr.to_string(),
            addr,
            shared,
            shutdown: Some(tx),
        }
    }

    /// Every request so far, as `"METHOD /path?query"`, in arrival order.
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().expect("requests lock").clone()
    }

    /// Adds manifest bytes to `repo` (created if new), reachable by digest and listed by the
    /// referrers API if it has a `subject`; returns its referrers-style descriptor.
    pub fn add_manifest(&self, repo: &str, bytes: Vec<u8>, media_type: &str) -> Descriptor {
        let descriptor = Descriptor::of_manifest(media_type, &bytes);
        self.with_repo(repo, |r| r.add_manifest(media_type, bytes));
        descriptor
    }

    /// Adds a blob to `repo` (created if new); returns its digest.
    pub fn add_blob(&self, repo: &str, bytes: Vec<u8>) -> String {
        let digest = sha256_digest(&bytes);
        self.with_repo(repo, |r| r.blobs.insert(digest.clone(), bytes));
        digest
    }

    /// Points `repo:tag` at a manifest digest.
    pub fn set_tag(&self, repo: &str, tag: &str, digest: &str) {
        self.with_repo(repo, |r| r.tags.insert(tag.to_owned(), digest.to_owned()));
    }

    /// An empty server with the referrers API and no tag-schema fallback (how Sigstore
    /// bundles are found on an OCI 1.1 registry).
    pub async fn referrers_only() -> LayoutServer {
        LayoutServer::start(
            Vec::new(),
            ServerOptions {
                tag_schema: false,
                page_size: None,
            },
        )
        .await
    }

    /// An image manifest (and the `{}` config it names) tagged `repo:tag`.
    pub fn add_tagged_image(&self, repo: &str, tag: &str, manifest: Vec<u8>) -> Descriptor {
        self.add_blob(repo, b"{}".to_vec());
        let d = self.add_manifest(repo, manifest, super::registry::OCI_MANIFEST);
        self.set_tag(repo, tag, &d.digest);
        d
    }

    /// What [`push_notation_signature`] does to a registry, done in memory: adds the config
    /// and envelope blobs and the signature manifest, and appends the signature to the
    /// tag-schema index (served only with `tag_schema`). Returns the signature's descriptor
    /// as written into that index.
    pub fn add_notation_signature(
        &self,
        repo: &str,
        subject: &Descriptor,
        envelope: &[u8],
    ) -> Descriptor {
        let config_digest = self.add_blob(repo, b"{}".to_vec());
        let envelope_digest = self.add_blob(repo, envelope.to_vec());
        let manifest = signature_manifest(
            subject,
            &envelope_digest,
            envelope.len() as u64,
            &config_digest,
        );
        let mut descriptor = self.add_manifest(repo, manifest, OCI_MANIFEST);
        descriptor.artifact_type = Some(NOTARY_SIGNATURE.to_owned());
        let tag = tag_schema_tag(&subject.digest);
        let existing = self.with_repo(repo, |r| {
            r.tags
                .get(&tag)
                .and_then(|d| r.manifest(d))
                .map(|m| m.bytes.clone())
        });
        let index = append_to_index(existing.as_deref(), &descriptor);
        let digest = self.with_repo(repo, |r| r.add_manifest(OCI_INDEX, index));
        self.set_tag(repo, &tag, &digest);
        descriptor
    }

    fn with_repo<T>(&self, repo: &str, f: impl FnOnce(&mut Repo) -> T) -> T {
        let mut repos = self.shared.repos.lock().expect("repos lock");
        f(repos.entry(repo.to_owned()).or_default())
    }
}

impl Drop for LayoutServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A distribution-style error response.
fn error(status: StatusCode, code: &str, message: &str, detail: Value) -> Response {
    let body = json!({"errors": [{"code": code, "message": message, "detail": detail}]});
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("error response")
}

/// A 200 with content, its type, digest and length (hyper leaves the body out for HEAD).
fn content(media_type: &str, digest: &str, bytes: Vec<u8>) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, media_type)
        .header("docker-content-digest", digest)
        .header(header::CONTENT_LENGTH, bytes.len())
        .body(Body::from(bytes))
        .expect("content response")
}

fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Every route, parsed by hand: repository names contain `/`.
async fn handle(State(shared): State<Arc<Shared>>, method: Method, uri: Uri) -> Response {
    let target = uri
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| uri.path().to_owned());
    shared
        .requests
        .lock()
        .expect("requests lock")
        .push(format!("{method} {target}"));
    if method != Method::GET && method != Method::HEAD {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "the operation is unsupported",
            json!({"method": method.as_str()}),
        );
    }
    let path = uri.path();
    if path == "/v2/" || path == "/v2" {
        return Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .header("docker-distribution-api-version", "registry/2.0")
            .body(Body::from("{}"))
            .expect("base response");
    }
    let not_found = || {
        error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "not found",
            json!({"path": path}),
        )
    };
    let Some(rest) = path.strip_prefix("/v2/") else {
        return not_found();
    };
    let mut parts = rest.rsplitn(3, '/');
    let (Some(reference), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next())
    else {
        return not_found();
    };
    if !matches!(kind, "manifests" | "blobs" | "referrers") || reference.is_empty() {
        return not_found();
    }
    let repos = shared.repos.lock().expect("repos lock");
    let Some(repo) = repos.get(name) else {
        return error(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "repository name not known to registry",
            json!({"name": name}),
        );
    };
    match kind {
        "manifests" => {
            let digest = if is_digest(reference) {
                Some(reference)
            } else if is_tag_schema_index(reference) && !shared.options.tag_schema {
                None
            } else {
                repo.tags.get(reference).map(String::as_str)
            };
            match digest.and_then(|d| repo.manifest(d)) {
                Some(m) => content(&m.media_type, &m.digest, m.bytes.clone()),
                None => error(
                    StatusCode::NOT_FOUND,
                    "MANIFEST_UNKNOWN",
                    "manifest unknown",
                    json!({"name": name, "reference": reference}),
                ),
            }
        }
        "blobs" => match repo.blobs.get(reference) {
            Some(bytes) => content("application/octet-stream", reference, bytes.clone()),
            None => error(
                StatusCode::NOT_FOUND,
                "BLOB_UNKNOWN",
                "blob unknown to registry",
                json!({"digest": reference}),
            ),
        },
        _ => {
            if !is_digest(reference) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "DIGEST_INVALID",
                    "provided digest did not match uploaded content",
                    json!({"digest": reference}),
                );
            }
            referrers(repo, name, reference, &target, shared.options.page_size)
        }
    }
}

/// The referrers response: an OCI index of the descriptors of every manifest whose
/// `subject.digest` is `digest`, filtered by `artifactType`, paginated by `last`.
fn referrers(
    repo: &Repo,
    name: &str,
    digest: &str,
    target: &str,
    page_size: Option<usize>,
) -> Response {
    let url = Url::parse(&format!("http://localhost{target}")).expect("request target");
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let filter = query.get("artifactType");
    let all: Vec<Descriptor> = repo
        .manifests
        .iter()
        .filter(|m| {
            serde_json::from_slice::<Value>(&m.bytes)
                .ok()
                .and_then(|v| v["subject"]["digest"].as_str().map(|d| d == digest))
                .unwrap_or(false)
        })
        .map(|m| Descriptor::of_manifest(&m.media_type, &m.bytes))
        .filter(|d| filter.is_none_or(|f| d.artifact_type.as_ref() == Some(f)))
        .collect();
    let start = match query.get("last") {
        Some(last) => match all.iter().position(|d| &d.digest == last) {
            Some(i) => i + 1,
            None => all.len(),
        },
        None => 0,
    };
    let rest = &all[start..];
    let (page, more) = match page_size {
        Some(n) if rest.len() > n => (&rest[..n], true),
        _ => (rest, false),
    };
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": page.iter().map(Descriptor::to_json).collect::<Vec<_>>(),
    }))
    .expect("referrers json");
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, OCI_INDEX)
        .header(header::CONTENT_LENGTH, body.len());
    if filter.is_some() {
        response = response.header("oci-filters-applied", "artifactType");
    }
    if more {
        let mut next = Url::parse(&format!("http://localhost/v2/{name}/referrers/{digest}"))
            .expect("next url");
        {
            let mut pairs = next.query_pairs_mut();
            if let Some(f) = filter {
                pairs.append_pair("artifactType", f);
            }
            pairs.append_pair("last", &page.last().expect("non-empty page").digest);
        }
        let link = format!(
            "<{}?{}>; rel=\"next\"",
            next.path(),
            next.query().expect("query")
        );
        response = response.header(header::LINK, link);
    }
    response.body(Body::from(body)).expect("referrers response")
}

/// The Notary Project signing key and certificate, used through RustCrypto's `rsa` (RSASSA-PSS
/// with SHA-256, salt length 32) so the signatures do not come from vouch's own code.
pub struct NotarySigner {
    key: rsa::pss::SigningKey<Sha256>,
    /// The signing certificate, DER: the first `x5c` entry.
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
    /// Intermediates that follow it in `x5c`, DER.
    pub chain: Vec<Vec<u8>>,
}

impl NotarySigner {
    /// notation's published e2e key and self-signed certificate (CN=e2e), which signed the
    /// e2e layouts.
    pub fn e2e() -> NotarySigner {
        let dir = fixtures_dir().join("notation-e2e/localkeys");
        let key = std::fs::read_to_string(dir.join("e2e.key")).expect("read e2e.key");
        let cert = std::fs::read_to_string(dir.join("e2e.crt")).expect("read e2e.crt");
        NotarySigner::from_pem(&key, &cert)
    }

    /// A signer from a PKCS#8 PEM RSA key and a PEM certificate.
    pub fn from_pem(key_pem: &str, cert_pem: &str) -> NotarySigner {
        let private = rsa::PrivateKey::from_pkcs8_pem(key_pem).expect("PKCS#8 RSA key");
        NotarySigner {
            key: rsa::pss::SigningKey::<Sha256>::new(private),
            cert_der: pem_der(cert_pem),
            cert_pem: cert_pem.to_owned(),
            chain: Vec::new(),
        }
    }

    /// The same signer, sending `intermediates` (PEM) after its certificate in `x5c`.
    pub fn with_chain(mut self, intermediates: &[&str]) -> NotarySigner {
        self.chain = intermediates.iter().map(|p| pem_der(p)).collect();
        self
    }

    /// The SHA-256 of the certificate, hex: what notation writes into the
    /// `io.cncf.notary.x509chain.thumbprint#S256` annotation.
    pub fn cert_thumbprint(&self) -> String {
        sha256_digest(&self.cert_der)
            .trim_start_matches("sha256:")
            .to_owned()
    }

    /// notation's flattened JWS JSON envelope over `payload`, with the protected header
    /// notation-core-go writes (keys sorted like a Go map; `crit` lists the signing scheme,
    /// then the expiry if there is one) and an RSASSA-PSS SHA-256 signature.
    pub fn sign_jws(&self, payload: &[u8], signing_time: &str, expiry: Option<&str>) -> Vec<u8> {
        let protected_b64 = URL_SAFE_NO_PAD.encode(protected_header(signing_time, expiry));
        let payload_b64 = URL_SAFE_NO_PAD.encode(payload);
        let signing_input = format!("{protected_b64}.{payload_b64}");
        let signature: rsa::pss::Signature = self.key.sign(signing_input.as_bytes());
        serde_json::to_vec(&json!({
            "payload": payload_b64,
            "protected": protected_b64,
            "header": {
                "x5c": std::iter::once(&self.cert_der)
                    .chain(&self.chain)
                    .map(|c| STANDARD.encode(c))
                    .collect::<Vec<_>>(),
                "io.cncf.notary.signingAgent": SIGNING_AGENT,
            },
            "signature": URL_SAFE_NO_PAD.encode(signature.to_bytes()),
        }))
        .expect("jws json")
    }
}

impl NotarySigner {
    /// notation's COSE_Sign1 envelope over `payload`: PS256, the Notary headers protected
    /// (`crit` naming the signing scheme, the signing time as an epoch date), the chain in
    /// `x5chain` (label 33) and, if given, `timestamp` as the unprotected
    /// `io.cncf.notary.timestampSignature`. Signed with RustCrypto's `rsa` over the
    /// Sig_structure coset builds.
    pub fn sign_cose(&self, payload: &[u8], signing_time: i64) -> Vec<u8> {
        use coset::cbor::value::Value as Cbor;
        use coset::{
            CoseSign1Builder, HeaderBuilder, RegisteredLabelWithPrivate, TaggedCborSerializable,
            iana,
        };
        let protected = HeaderBuilder::new()
            .algorithm(iana::Algorithm::PS256)
            .content_type("application/vnd.cncf.notary.payload.v1+json".into())
            .add_critical_label(RegisteredLabelWithPrivate::Text(
                "io.cncf.notary.signingScheme".into(),
            ))
            .text_value(
                "io.cncf.notary.signingScheme".into(),
                Cbor::Text("notary.x509".into()),
            )
            .text_value(
                "io.cncf.notary.signingTime".into(),
                Cbor::Tag(1, Box::new(Cbor::Integer(signing_time.into()))),
            )
            .build();
        let chain: Vec<Cbor> = std::iter::once(&self.cert_der)
            .chain(&self.chain)
            .map(|c| Cbor::Bytes(c.clone()))
            .collect();
        let unprotected = HeaderBuilder::new().value(33, Cbor::Array(chain)).build();
        CoseSign1Builder::new()
            .protected(protected)
            .unprotected(unprotected)
            .payload(payload.to_vec())
            .create_signature(b"", |tbs| {
                let signature: rsa::pss::Signature = self.key.sign(tbs);
                signature.to_vec()
            })
            .build()
            .to_tagged_vec()
            .expect("COSE_Sign1")
    }
}

/// The signature value of a COSE_Sign1 envelope (what an RFC 3161 timestamp is over).
pub fn cose_signature(envelope: &[u8]) -> Vec<u8> {
    use coset::TaggedCborSerializable;
    coset::CoseSign1::from_tagged_slice(envelope)
        .expect("COSE_Sign1")
        .signature
}

/// The COSE envelope with `token` as its unprotected `io.cncf.notary.timestampSignature`.
pub fn cose_with_timestamp(envelope: &[u8], token: &[u8]) -> Vec<u8> {
    use coset::cbor::value::Value as Cbor;
    use coset::{Label, TaggedCborSerializable};
    let mut sign1 = coset::CoseSign1::from_tagged_slice(envelope).expect("COSE_Sign1");
    sign1.unprotected.rest.push((
        Label::Text("io.cncf.notary.timestampSignature".into()),
        Cbor::Bytes(token.to_vec()),
    ));
    sign1.to_tagged_vec().expect("COSE_Sign1")
}

/// The signature value of a JWS envelope (what an RFC 3161 timestamp is over).
pub fn jws_signature(envelope: &[u8]) -> Vec<u8> {
    let v: Value = serde_json::from_slice(envelope).expect("jws");
    URL_SAFE_NO_PAD
        .decode(v["signature"].as_str().expect("signature"))
        .expect("base64url")
}

/// The envelope with `token` as its timestamp countersignature, where notation-core-go
/// writes it: the unprotected header `io.cncf.notary.timestampSignature`, standard base64.
pub fn with_timestamp(envelope: &[u8], token: &[u8]) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(envelope).expect("jws");
    v["header"]["io.cncf.notary.timestampSignature"] = Value::String(STANDARD.encode(token));
    serde_json::to_vec(&v).expect("json")
}

/// The JWS protected header as notation-core-go marshals it (a Go map: keys sorted).
pub fn protected_header(signing_time: &str, expiry: Option<&str>) -> Vec<u8> {
    let mut crit = vec!["io.cncf.notary.signingScheme"];
    if expiry.is_some() {
        crit.push("io.cncf.notary.expiry");
    }
    let mut map = Map::new();
    map.insert("alg".into(), json!("PS256"));
    map.insert("crit".into(), json!(crit));
    map.insert("cty".into(), json!(NOTARY_PAYLOAD));
    if let Some(expiry) = expiry {
        map.insert("io.cncf.notary.expiry".into(), json!(expiry));
    }
    map.insert("io.cncf.notary.signingScheme".into(), json!("notary.x509"));
    map.insert("io.cncf.notary.signingTime".into(), json!(signing_time));
    serde_json::to_vec(&Value::Object(map)).expect("protected json")
}

/// The DER of the first PEM block in `pem`.
fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    STANDARD.decode(body).expect("PEM base64")
}

/// The Notary Project payload for `target`: `{"targetArtifact":{digest, mediaType, size}}`.
pub fn target_payload(target: &Descriptor) -> Vec<u8> {
    serde_json::to_vec(&json!({"targetArtifact": {
        "digest": target.digest,
        "mediaType": target.media_type,
        "size": target.size,
    }}))
    .expect("payload json")
}

/// A Notary Project signature manifest as notation writes it: config the 2-byte `{}` blob
/// typed `application/vnd.cncf.notary.signature`, one `application/jose+json` layer (the
/// envelope), `subject` the signed manifest.
pub fn signature_manifest(
    subject: &Descriptor,
    envelope_digest: &str,
    envelope_size: u64,
    config_digest: &str,
) -> Vec<u8> {
    signature_manifest_of(
        JOSE_JSON,
        subject,
        envelope_digest,
        envelope_size,
        config_digest,
    )
}

/// [`signature_manifest`] for an envelope of `media_type` (`application/cose` for COSE).
pub fn signature_manifest_of(
    media_type: &str,
    subject: &Descriptor,
    envelope_digest: &str,
    envelope_size: u64,
    config_digest: &str,
) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": NOTARY_SIGNATURE, "digest": config_digest, "size": 2},
        "layers": [{"mediaType": media_type, "digest": envelope_digest, "size": envelope_size}],
        "subject": subject.subject_json(),
    }))
    .expect("signature manifest json")
}

/// `existing` tag-schema index bytes (or a new, empty index) with `descriptor` appended,
/// unless it is already listed.
fn append_to_index(existing: Option<&[u8]>, descriptor: &Descriptor) -> Vec<u8> {
    let mut index: Value = match existing {
        Some(bytes) => serde_json::from_slice(bytes).expect("tag index is JSON"),
        None => json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}),
    };
    let manifests = index["manifests"]
        .as_array_mut()
        .expect("tag index manifests");
    if !manifests
        .iter()
        .any(|m| m["digest"].as_str() == Some(descriptor.digest.as_str()))
    {
        manifests.push(descriptor.to_json());
    }
    serde_json::to_vec(&index).expect("tag index json")
}

/// Pushes a Notary Project signature of `subject` to the registry as notation does when the
/// registry has no referrers API: the `{}` config and `envelope` blobs, the signature manifest
/// by digest, then the tag-schema index `sha256-<hex>` read (if present), appended to and
/// written back. Returns the signature's descriptor as written into that index.
pub async fn push_notation_signature(
    pusher: &Pusher,
    repo: &str,
    subject: &Descriptor,
    envelope: &[u8],
) -> Descriptor {
    push_notation_signature_as(pusher, repo, subject, envelope, JOSE_JSON).await
}

/// [`push_notation_signature`] for an envelope of `media_type` (`application/cose`).
pub async fn push_notation_signature_as(
    pusher: &Pusher,
    repo: &str,
    subject: &Descriptor,
    envelope: &[u8],
    media_type: &str,
) -> Descriptor {
    let config_digest = pusher.push_blob(repo, b"{}").await;
    let envelope_digest = pusher.push_blob(repo, envelope).await;
    let manifest = signature_manifest_of(
        media_type,
        subject,
        &envelope_digest,
        envelope.len() as u64,
        &config_digest,
    );
    push_referrer(pusher, repo, &subject.digest, &manifest, NOTARY_SIGNATURE).await
}

/// Pushes `manifest` (an OCI manifest referring to `subject_digest`) by digest and lists it
/// in the subject's tag-schema index as an artifact of `artifact_type`, as a client does
/// when the registry has no referrers API. Returns its descriptor as written there.
pub async fn push_referrer(
    pusher: &Pusher,
    repo: &str,
    subject_digest: &str,
    manifest: &[u8],
    artifact_type: &str,
) -> Descriptor {
    let digest = pusher
        .push_manifest(repo, &sha256_digest(manifest), OCI_MANIFEST, manifest)
        .await;
    let descriptor = Descriptor {
        media_type: OCI_MANIFEST.to_owned(),
        digest,
        size: manifest.len() as u64,
        artifact_type: Some(artifact_type.to_owned()),
        annotations: Map::new(),
    };
    let tag = tag_schema_tag(subject_digest);
    let got = pusher
        .request(reqwest::Method::GET, &format!("/v2/{repo}/manifests/{tag}"))
        .header(reqwest::header::ACCEPT, OCI_INDEX)
        .send()
        .await
        .expect("GET tag-schema index");
    let existing = match got.status().as_u16() {
        200 => Some(got.bytes().await.expect("tag index body").to_vec()),
        404 => None,
        status => panic!(
            "GET tag-schema index: {status}: {}",
            got.text().await.unwrap_or_default()
        ),
    };
    let index = append_to_index(existing.as_deref(), &descriptor);
    pusher.push_manifest(repo, &tag, OCI_INDEX, &index).await;
    descriptor
}
