//! Tests of the notation layout harness itself: fixture layouts pushed byte-exact into the real
//! `docker-registry`, the in-process OCI server with the referrers API, and the independent
//! Notary Project JWS signer. If these pass, a failing vouch notation test points at vouch.

mod support;

use std::future::Future;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::Method;
use reqwest::header::HeaderMap;
use rsa::pkcs1::EncodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use serde_json::{Value, json};
use sha2::Sha256;
use support::STEP;
use support::layout::*;
use support::registry::*;

/// Bounds one network step of a test.
async fn step<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(STEP, f).await.expect("step timed out")
}

const VALID: &str = "e2e-valid-signature";
const MULTIPLE: &str = "e2e-valid-multiple-signatures";
const IMAGE: &str = "sha256:b8479de3f88fb259a0a9ea82a5b2a052a1ef3c4ebbcfc61482d5ae4c831f8af9";
const SIGNATURE: &str = "sha256:90ceaff260d657d797c408ac73564a9c7bb9d86055877c2a811f0e63b8c6524f";
const SECOND_SIGNATURE: &str =
    "sha256:c3ebe4a20b6832328fc5078a7795ddc1114b896e13fca2add38109c3866b5fbf";
const ENVELOPE: &str = "sha256:c9af07e038b2b1a463e648986ad7273157511ffeba0b689f33e5472bae471f50";
const TAG_INDEX: &str = "sha256:13e107e0dd246f07ff18998a3d39e226965c41477a1bc1765f7617632ff3f283";
const EMPTY_CONFIG: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes));
    })
}

fn b64url(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).expect("base64url")
}

fn keys(value: &Value) -> Vec<String> {
    value.as_object().expect("object").keys().cloned().collect()
}

// ---------------------------------------------------------------------------------------------
// Layout loading

#[test]
fn layout_loads_image_signatures_and_tag_index() {
    let layout = fixture(VALID);
    assert_eq!(layout.image_tag, "v1");
    assert_eq!(layout.image.digest, IMAGE);
    assert_eq!(layout.image.media_type, OCI_MANIFEST);
    assert_eq!(layout.image.size, 517);
    let sigs: Vec<_> = layout
        .signatures
        .iter()
        .map(|d| d.digest.as_str())
        .collect();
    assert_eq!(sigs, [SIGNATURE]);
    let index = layout.tag_index.as_ref().expect("tag index");
    assert_eq!(index.digest, TAG_INDEX);
    assert_eq!(index.media_type, OCI_INDEX);
    assert_eq!(index.ref_name(), Some(tag_schema_tag(IMAGE).as_str()));
    for d in layout.manifests() {
        let bytes = layout.blob(&d.digest);
        assert_eq!(sha256_digest(&bytes), d.digest);
        assert_eq!(bytes.len() as u64, d.size);
    }

    let multiple = fixture(MULTIPLE);
    let sigs: Vec<_> = multiple
        .signatures
        .iter()
        .map(|d| d.digest.as_str())
        .collect();
    assert_eq!(sigs, [SIGNATURE, SECOND_SIGNATURE]);
    assert_eq!(
        multiple.tag_index.as_ref().map(|d| d.digest.as_str()),
        Some(TAG_INDEX)
    );

    let unsigned = fixture("e2e");
    assert!(unsigned.signatures.is_empty() && unsigned.tag_index.is_none());
}

#[test]
fn descriptor_json_round_trips_notation_bytes() {
    // Every index.json entry and the tag index's entry come back field for field, in order.
    let layout = fixture(VALID);
    let index_json = json_of(&std::fs::read(layout.dir.join("index.json")).expect("index.json"));
    for entry in index_json["manifests"].as_array().expect("manifests") {
        let back = Descriptor::from_json(entry).to_json();
        assert_eq!(back.to_string(), entry.to_string());
    }
    let tag_index = json_of(&layout.blob(TAG_INDEX));
    let entry = &tag_index["manifests"][0];
    assert_eq!(
        keys(entry),
        ["mediaType", "digest", "size", "annotations", "artifactType"]
    );
    assert_eq!(
        Descriptor::from_json(entry).to_json().to_string(),
        entry.to_string()
    );
    // of_manifest derives the referrers descriptor from the signature manifest itself.
    let derived = Descriptor::of_manifest(OCI_MANIFEST, &layout.blob(SIGNATURE));
    assert_eq!(derived, Descriptor::from_json(entry));
}

// ---------------------------------------------------------------------------------------------
// The real registry

#[tokio::test]
async fn push_layout_reads_back_byte_identical() {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let layout = fixture(VALID);
    step(push_layout(&pusher, "notation/valid", &layout)).await;

    let (digest, body) = step(pusher.get_manifest("notation/valid", "v1")).await;
    assert_eq!(digest, IMAGE);
    assert_eq!(body, layout.blob(IMAGE));
    let (digest, body) = step(pusher.get_manifest("notation/valid", SIGNATURE)).await;
    assert_eq!(digest, SIGNATURE);
    assert_eq!(body, layout.blob(SIGNATURE));
    let (digest, body) = step(pusher.get_manifest("notation/valid", &tag_schema_tag(IMAGE))).await;
    assert_eq!(digest, TAG_INDEX);
    assert_eq!(body, layout.blob(TAG_INDEX));
    let envelope = step(pusher.get_blob("notation/valid", ENVELOPE)).await;
    assert_eq!(envelope, layout.blob(ENVELOPE));
}

#[tokio::test]
async fn push_notation_signature_appends_to_tag_index() {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let signer = NotarySigner::e2e();

    // An unsigned image: the first signature creates the tag-schema index.
    let unsigned = fixture("e2e");
    step(push_layout(&pusher, "notation/unsigned", &unsigned)).await;
    let subject = &unsigned.image;
    let first = signer.sign_jws(&target_payload(subject), "2024-01-01T00:00:00Z", None);
    let second = signer.sign_jws(
        &target_payload(subject),
        "2024-01-02T00:00:00Z",
        Some("2999-01-01T00:00:00Z"),
    );
    let one = step(push_notation_signature(
        &pusher,
        "notation/unsigned",
        subject,
        &first,
    ))
    .await;
    let two = step(push_notation_signature(
        &pusher,
        "notation/unsigned",
        subject,
        &second,
    ))
    .await;
    assert_ne!(one.digest, two.digest);
    for d in [&one, &two] {
        assert_eq!(d.media_type, OCI_MANIFEST);
        assert_eq!(d.artifact_type.as_deref(), Some(NOTARY_SIGNATURE));
    }

    let (_, index) = step(pusher.get_manifest("notation/unsigned", &tag_schema_tag(IMAGE))).await;
    let index = json_of(&index);
    assert_eq!(index["mediaType"], OCI_INDEX);
    assert_eq!(index["manifests"], json!([one.to_json(), two.to_json()]));

    // The signature manifest is notation's, and its layer is the envelope.
    let (digest, manifest) = step(pusher.get_manifest("notation/unsigned", &one.digest)).await;
    assert_eq!(digest, one.digest);
    let envelope_digest = sha256_digest(&first);
    assert_eq!(
        manifest,
        signature_manifest(subject, &envelope_digest, first.len() as u64, EMPTY_CONFIG)
    );
    assert_eq!(
        step(pusher.get_blob("notation/unsigned", &envelope_digest)).await,
        first
    );
    assert_eq!(
        step(pusher.get_blob("notation/unsigned", EMPTY_CONFIG)).await,
        b"{}"
    );

    // A signed image: the existing entry is kept as it was and the new one appended.
    let valid = fixture(VALID);
    step(push_layout(&pusher, "notation/valid", &valid)).await;
    let added = step(push_notation_signature(
        &pusher,
        "notation/valid",
        &valid.image,
        &first,
    ))
    .await;
    let (_, index) = step(pusher.get_manifest("notation/valid", &tag_schema_tag(IMAGE))).await;
    let original = json_of(&valid.blob(TAG_INDEX));
    let index = json_of(&index);
    assert_eq!(
        index["manifests"],
        json!([original["manifests"][0], added.to_json()])
    );
}

// ---------------------------------------------------------------------------------------------
// The in-process OCI server

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(STEP)
        .build()
        .expect("reqwest client")
}

struct Got {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn fetch(server: &LayoutServer, method: Method, path: &str) -> Got {
    let response = step(
        client()
            .request(method, format!("http://{}{path}", server.host))
            .header(reqwest::header::ACCEPT, MANIFEST_ACCEPT)
            .send(),
    )
    .await
    .expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = step(response.bytes()).await.expect("body").to_vec();
    Got {
        status,
        headers,
        body,
    }
}

async fn get(server: &LayoutServer, path: &str) -> Got {
    fetch(server, Method::GET, path).await
}

fn error_code(got: &Got) -> String {
    json_of(&got.body)["errors"][0]["code"]
        .as_str()
        .expect("error code")
        .to_owned()
}

#[tokio::test]
async fn server_serves_manifests_and_blobs_with_headers() {
    let layout = fixture(VALID);
    let server = LayoutServer::start(
        vec![("notation/valid".into(), layout.clone())],
        ServerOptions::default(),
    )
    .await;
    assert!(server.host.starts_with("127.0.0.1:"));

    let base = get(&server, "/v2/").await;
    assert_eq!((base.status, json_of(&base.body)), (200, json!({})));

    let by_tag = get(&server, "/v2/notation/valid/manifests/v1").await;
    assert_eq!(by_tag.status, 200);
    assert_eq!(by_tag.header("content-type"), Some(OCI_MANIFEST));
    assert_eq!(by_tag.header("docker-content-digest"), Some(IMAGE));
    assert_eq!(by_tag.header("content-length"), Some("517"));
    assert_eq!(by_tag.body, layout.blob(IMAGE));

    let by_digest = get(
        &server,
        &format!("/v2/notation/valid/manifests/{SIGNATURE}"),
    )
    .await;
    assert_eq!(by_digest.status, 200);
    assert_eq!(by_digest.header("docker-content-digest"), Some(SIGNATURE));
    assert_eq!(by_digest.body, layout.blob(SIGNATURE));

    let head = fetch(
        &server,
        Method::HEAD,
        &format!("/v2/notation/valid/manifests/{SIGNATURE}"),
    )
    .await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some(OCI_MANIFEST));
    assert_eq!(head.header("docker-content-digest"), Some(SIGNATURE));
    assert_eq!(head.header("content-length"), Some("728"));
    assert!(head.body.is_empty());

    let blob = get(&server, &format!("/v2/notation/valid/blobs/{ENVELOPE}")).await;
    assert_eq!(blob.status, 200);
    assert_eq!(blob.header("docker-content-digest"), Some(ENVELOPE));
    assert_eq!(blob.body, layout.blob(ENVELOPE));

    // Without the tag schema the `sha256-…` tag is unknown (the index still is by digest).
    let tag = tag_schema_tag(IMAGE);
    let hidden = get(&server, &format!("/v2/notation/valid/manifests/{tag}")).await;
    assert_eq!(
        (hidden.status, error_code(&hidden).as_str()),
        (404, "MANIFEST_UNKNOWN")
    );

    let unknown_repo = get(&server, "/v2/notation/other/manifests/v1").await;
    assert_eq!(
        (unknown_repo.status, error_code(&unknown_repo).as_str()),
        (404, "NAME_UNKNOWN")
    );
    let unknown_tag = get(&server, "/v2/notation/valid/manifests/v2").await;
    assert_eq!(unknown_tag.status, 404);
    let unknown_blob = get(
        &server,
        &format!("/v2/notation/valid/blobs/{}", sha256_digest(b"x")),
    )
    .await;
    assert_eq!(
        (unknown_blob.status, error_code(&unknown_blob).as_str()),
        (404, "BLOB_UNKNOWN")
    );
    let unknown_path = get(&server, "/v2/notation/valid/tags/list?n=1").await;
    assert_eq!(unknown_path.status, 404);
    assert_eq!(get(&server, "/elsewhere").await.status, 404);

    assert_eq!(
        server.requests(),
        [
            "GET /v2/".to_string(),
            "GET /v2/notation/valid/manifests/v1".into(),
            format!("GET /v2/notation/valid/manifests/{SIGNATURE}"),
            format!("HEAD /v2/notation/valid/manifests/{SIGNATURE}"),
            format!("GET /v2/notation/valid/blobs/{ENVELOPE}"),
            format!("GET /v2/notation/valid/manifests/{tag}"),
            "GET /v2/notation/other/manifests/v1".into(),
            "GET /v2/notation/valid/manifests/v2".into(),
            format!("GET /v2/notation/valid/blobs/{}", sha256_digest(b"x")),
            "GET /v2/notation/valid/tags/list?n=1".into(),
            "GET /elsewhere".into(),
        ]
    );
}

#[tokio::test]
async fn server_serves_tag_schema_index_when_enabled() {
    let layout = fixture(VALID);
    let server = LayoutServer::start(
        vec![("notation/valid".into(), layout.clone())],
        ServerOptions {
            tag_schema: true,
            page_size: None,
        },
    )
    .await;
    let got = get(
        &server,
        &format!("/v2/notation/valid/manifests/{}", tag_schema_tag(IMAGE)),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some(OCI_INDEX));
    assert_eq!(got.header("docker-content-digest"), Some(TAG_INDEX));
    assert_eq!(got.body, layout.blob(TAG_INDEX));
}

#[tokio::test]
async fn referrers_list_signatures_and_honour_the_filter() {
    let layout = fixture(VALID);
    let server = LayoutServer::start(
        vec![("notation/valid".into(), layout.clone())],
        ServerOptions::default(),
    )
    .await;
    let path = format!("/v2/notation/valid/referrers/{IMAGE}");

    let all = get(&server, &path).await;
    assert_eq!(all.status, 200);
    assert_eq!(all.header("content-type"), Some(OCI_INDEX));
    assert_eq!(all.header("oci-filters-applied"), None);
    assert_eq!(all.header("link"), None);
    let index = json_of(&all.body);
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], OCI_INDEX);
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 1);
    let signature = Descriptor::from_json(&manifests[0]);
    assert_eq!(signature.digest, SIGNATURE);
    assert_eq!(signature.size, 728);
    assert_eq!(signature.media_type, OCI_MANIFEST);
    assert_eq!(signature.artifact_type.as_deref(), Some(NOTARY_SIGNATURE));
    assert_eq!(
        signature.annotations["io.cncf.notary.x509chain.thumbprint#S256"],
        json!("[\"e38aea13f2b051f7183cca64a51ee676f4d4456f41d9fecf15eb367efc7343b9\"]")
    );

    let filtered = get(&server, &format!("{path}?artifactType={NOTARY_SIGNATURE}")).await;
    assert_eq!(filtered.header("oci-filters-applied"), Some("artifactType"));
    assert_eq!(json_of(&filtered.body)["manifests"], index["manifests"]);
    // A percent-encoded filter is decoded.
    let encoded = get(
        &server,
        &format!("{path}?artifactType=application%2Fvnd.cncf.notary.signature"),
    )
    .await;
    assert_eq!(json_of(&encoded.body)["manifests"], index["manifests"]);

    let other = get(&server, &format!("{path}?artifactType=application/example")).await;
    assert_eq!(other.status, 200);
    assert_eq!(other.header("oci-filters-applied"), Some("artifactType"));
    assert_eq!(json_of(&other.body)["manifests"], json!([]));

    // Nothing refers to the signature: an empty list, not a 404 (OCI 1.1).
    let none = get(
        &server,
        &format!("/v2/notation/valid/referrers/{SIGNATURE}"),
    )
    .await;
    assert_eq!(none.status, 200);
    assert_eq!(json_of(&none.body)["manifests"], json!([]));
    let invalid = get(&server, "/v2/notation/valid/referrers/latest").await;
    assert_eq!(invalid.status, 400);
}

/// Follows `Link: <…>; rel="next"` from `path`; returns every page's digests.
async fn all_pages(server: &LayoutServer, path: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut next = Some(path.to_owned());
    while let Some(path) = next.take() {
        assert!(pages.len() < 10, "too many pages");
        let got = get(server, &path).await;
        assert_eq!(got.status, 200, "{path}");
        let digests = json_of(&got.body)["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .map(|d| d["digest"].as_str().expect("digest").to_owned())
            .collect();
        pages.push(digests);
        next = got.header("link").map(|link| {
            let (url, rel) = link.split_once(';').expect("link params");
            assert_eq!(rel.trim(), "rel=\"next\"");
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        });
    }
    pages
}

#[tokio::test]
async fn referrers_paginate_by_link() {
    let server = LayoutServer::start(
        vec![("notation/multi".into(), fixture(MULTIPLE))],
        ServerOptions {
            tag_schema: false,
            page_size: Some(1),
        },
    )
    .await;
    let path = format!("/v2/notation/multi/referrers/{IMAGE}");
    let pages = all_pages(&server, &path).await;
    assert_eq!(
        pages,
        [
            vec![SIGNATURE.to_string()],
            vec![SECOND_SIGNATURE.to_string()]
        ]
    );
    // The filter survives into the Link.
    let filtered = all_pages(&server, &format!("{path}?artifactType={NOTARY_SIGNATURE}")).await;
    assert_eq!(filtered, pages);
    let requests = server.requests();
    assert_eq!(requests.len(), 4);
    assert!(requests[3].contains("artifactType=") && requests[3].contains("last="));

    // Without a page size everything comes at once.
    let whole = LayoutServer::start(
        vec![("notation/multi".into(), fixture(MULTIPLE))],
        ServerOptions::default(),
    )
    .await;
    assert_eq!(
        all_pages(&whole, &path).await,
        [vec![SIGNATURE.to_string(), SECOND_SIGNATURE.to_string()]]
    );
}

#[tokio::test]
async fn server_takes_signatures_made_in_tests() {
    let unsigned = fixture("e2e");
    let server = LayoutServer::start(
        vec![("notation/unsigned".into(), unsigned.clone())],
        ServerOptions {
            tag_schema: true,
            page_size: None,
        },
    )
    .await;
    let referrers = format!("/v2/notation/unsigned/referrers/{IMAGE}");
    assert_eq!(
        json_of(&get(&server, &referrers).await.body)["manifests"],
        json!([])
    );
    let tag = format!("/v2/notation/unsigned/manifests/{}", tag_schema_tag(IMAGE));
    assert_eq!(get(&server, &tag).await.status, 404);

    let signer = NotarySigner::e2e();
    let envelope = signer.sign_jws(
        &target_payload(&unsigned.image),
        "2024-01-01T00:00:00Z",
        None,
    );
    let added = server.add_notation_signature("notation/unsigned", &unsigned.image, &envelope);
    assert_eq!(added.artifact_type.as_deref(), Some(NOTARY_SIGNATURE));

    let listed = json_of(&get(&server, &referrers).await.body);
    assert_eq!(listed["manifests"], json!([added.to_json()]));
    let index = get(&server, &tag).await;
    assert_eq!(index.status, 200);
    assert_eq!(json_of(&index.body)["manifests"], json!([added.to_json()]));
    let manifest = get(
        &server,
        &format!("/v2/notation/unsigned/manifests/{}", added.digest),
    )
    .await;
    let layer = &json_of(&manifest.body)["layers"][0];
    let blob = get(
        &server,
        &format!(
            "/v2/notation/unsigned/blobs/{}",
            layer["digest"].as_str().expect("digest")
        ),
    )
    .await;
    assert_eq!(blob.body, envelope);

    // The lower-level additions, into a new repository.
    let digest = server.add_blob("other/repo", b"hello".to_vec());
    assert_eq!(
        get(&server, &format!("/v2/other/repo/blobs/{digest}"))
            .await
            .body,
        b"hello"
    );
    let d = server.add_manifest("other/repo", unsigned.blob(IMAGE), OCI_MANIFEST);
    assert_eq!(d.digest, IMAGE);
    server.set_tag("other/repo", "latest", IMAGE);
    let got = get(&server, "/v2/other/repo/manifests/latest").await;
    assert_eq!(got.header("docker-content-digest"), Some(IMAGE));
}

#[tokio::test]
async fn server_stops_when_dropped() {
    let server = LayoutServer::start(
        vec![("a/b".into(), fixture("e2e"))],
        ServerOptions::default(),
    )
    .await;
    let addr = server.addr;
    assert_eq!(get(&server, "/v2/").await.status, 200);
    drop(server);
    let stopped = support::eventually(STEP, || async move {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(
        stopped,
        "layout server still accepts connections after drop"
    );
}

// ---------------------------------------------------------------------------------------------
// The JWS signer

/// Verifies a flattened JWS envelope's RSASSA-PSS SHA-256 signature against the public key of
/// its first x5c certificate, with RustCrypto (salt length 32) and with aws-lc-rs.
fn verify_envelope(envelope: &Value) -> Result<(), String> {
    let der = STANDARD
        .decode(envelope["header"]["x5c"][0].as_str().expect("x5c"))
        .expect("x5c base64");
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("x5c certificate");
    let public = rsa::PublicKey::from_public_key_der(cert.tbs_certificate.subject_pki.raw)
        .expect("RSA public key");
    let input = format!(
        "{}.{}",
        envelope["protected"].as_str().expect("protected"),
        envelope["payload"].as_str().expect("payload")
    );
    let signature = b64url(envelope["signature"].as_str().expect("signature"));

    let verifying = rsa::pss::VerifyingKey::<Sha256>::new(public.clone());
    let rust_crypto = rsa::pss::Signature::try_from(signature.as_slice())
        .map_err(|e| e.to_string())
        .and_then(|s| {
            verifying
                .verify(input.as_bytes(), &s)
                .map_err(|e| format!("rsa: {e}"))
        });

    let pkcs1 = public.to_pkcs1_der().expect("PKCS#1 public key");
    let aws = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA256,
        pkcs1.as_bytes(),
    )
    .verify(input.as_bytes(), &signature)
    .map_err(|_| "aws-lc-rs: bad signature".to_string());

    assert_eq!(
        rust_crypto.is_ok(),
        aws.is_ok(),
        "the two verifiers disagree: {rust_crypto:?} {aws:?}"
    );
    rust_crypto
}

#[test]
fn signed_jws_verifies_and_tampering_breaks_it() {
    let signer = NotarySigner::e2e();
    let layout = fixture(VALID);
    let payload = target_payload(&layout.image);
    let envelope_bytes = signer.sign_jws(&payload, "2024-01-01T00:00:00Z", None);
    let envelope = json_of(&envelope_bytes);
    assert_eq!(
        keys(&envelope),
        ["payload", "protected", "header", "signature"]
    );
    assert_eq!(
        b64url(envelope["payload"].as_str().expect("payload")),
        payload
    );
    assert_eq!(
        envelope["header"],
        json!({"x5c": [STANDARD.encode(&signer.cert_der)],
               "io.cncf.notary.signingAgent": SIGNING_AGENT})
    );
    assert_eq!(
        json_of(&b64url(envelope["protected"].as_str().expect("protected"))),
        json!({"alg": "PS256", "crit": ["io.cncf.notary.signingScheme"],
               "cty": NOTARY_PAYLOAD, "io.cncf.notary.signingScheme": "notary.x509",
               "io.cncf.notary.signingTime": "2024-01-01T00:00:00Z"})
    );
    verify_envelope(&envelope).expect("signature verifies");

    let mut tampered = envelope.clone();
    let other = target_payload(&Descriptor {
        size: 518,
        ..layout.image.clone()
    });
    tampered["payload"] = json!(URL_SAFE_NO_PAD.encode(other));
    assert!(
        verify_envelope(&tampered).is_err(),
        "tampered payload verified"
    );

    let mut tampered = envelope.clone();
    tampered["protected"] =
        json!(URL_SAFE_NO_PAD.encode(protected_header("2024-01-01T00:00:01Z", None)));
    assert!(
        verify_envelope(&tampered).is_err(),
        "tampered header verified"
    );

    let mut tampered = envelope;
    let mut signature = b64url(tampered["signature"].as_str().expect("signature"));
    signature[10] ^= 1;
    tampered["signature"] = json!(URL_SAFE_NO_PAD.encode(signature));
    assert!(
        verify_envelope(&tampered).is_err(),
        "tampered signature verified"
    );
}

#[test]
fn signer_matches_the_fixture_envelope() {
    let layout = fixture(VALID);
    let fixture_envelope = json_of(&layout.blob(ENVELOPE));
    // The verifier is right about notation's own signature, made with the same key.
    verify_envelope(&fixture_envelope).expect("fixture signature verifies");

    let signer = NotarySigner::e2e();
    assert_eq!(
        fixture_envelope["header"]["x5c"],
        json!([STANDARD.encode(&signer.cert_der)]),
        "the fixture was signed with the e2e certificate"
    );
    assert_eq!(
        signer.cert_thumbprint(),
        "e38aea13f2b051f7183cca64a51ee676f4d4456f41d9fecf15eb367efc7343b9"
    );

    let protected_of =
        |envelope: &Value| json_of(&b64url(envelope["protected"].as_str().expect("protected")));
    let fixture_protected = protected_of(&fixture_envelope);
    let time = fixture_protected["io.cncf.notary.signingTime"]
        .as_str()
        .expect("signing time");
    let ours = json_of(&signer.sign_jws(&target_payload(&layout.image), time, None));
    assert_eq!(keys(&protected_of(&ours)), keys(&fixture_protected));
    // Same header and payload values: the very same base64url strings.
    assert_eq!(ours["protected"], fixture_envelope["protected"]);
    assert_eq!(ours["payload"], fixture_envelope["payload"]);
    assert_eq!(keys(&ours), keys(&fixture_envelope));
    assert_eq!(keys(&ours["header"]), keys(&fixture_envelope["header"]));

    // With an expiry: keys still sorted as Go sorts a map, expiry listed critical after the
    // signing scheme.
    let with_expiry = protected_of(&json_of(&signer.sign_jws(
        b"{}",
        time,
        Some("2099-01-01T00:00:00Z"),
    )));
    assert_eq!(
        keys(&with_expiry),
        [
            "alg",
            "crit",
            "cty",
            "io.cncf.notary.expiry",
            "io.cncf.notary.signingScheme",
            "io.cncf.notary.signingTime"
        ]
    );
    assert_eq!(
        with_expiry["crit"],
        json!(["io.cncf.notary.signingScheme", "io.cncf.notary.expiry"])
    );
}

#[test]
fn signature_manifest_matches_notation_but_annotations() {
    let layout = fixture(VALID);
    let mut notation = json_of(&layout.blob(SIGNATURE));
    notation
        .as_object_mut()
        .expect("manifest object")
        .remove("annotations");
    let ours = signature_manifest(&layout.image, ENVELOPE, 2070, EMPTY_CONFIG);
    assert_eq!(
        String::from_utf8(ours).expect("utf-8"),
        serde_json::to_string(&notation).expect("json")
    );
    assert_eq!(sha256_digest(b"{}"), EMPTY_CONFIG);
}
