//! Tests of the registry harness itself, against the real Debian `docker-registry`: if these
//! pass, a failing vouch test against the registry points at vouch, not at the harness.

mod support;

use std::future::Future;

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{DerSignature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use reqwest::{Method, Url};
use support::STEP;
use support::registry::*;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Bounds one network step of a test.
async fn step<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(STEP, f).await.expect("step timed out")
}

/// HEAD of a manifest with the OCI Accept types: (status, Docker-Content-Digest, Content-Type).
async fn head_manifest(
    pusher: &Pusher,
    repo: &str,
    reference: &str,
) -> (u16, Option<String>, Option<String>) {
    let response = step(
        pusher
            .request(Method::HEAD, &format!("/v2/{repo}/manifests/{reference}"))
            .header(reqwest::header::ACCEPT, MANIFEST_ACCEPT)
            .send(),
    )
    .await
    .expect("HEAD manifest");
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    (
        response.status().as_u16(),
        header("docker-content-digest"),
        header("content-type"),
    )
}

#[tokio::test]
async fn pushed_image_heads_to_its_digest() {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let image = step(pusher.push_image("test/app", "v1")).await;

    assert_eq!(image.digest, sha256_digest(&image.manifest));
    assert_eq!(image.size, image.manifest.len());
    let (status, digest, content_type) = head_manifest(&pusher, "test/app", "v1").await;
    assert_eq!(status, 200);
    assert_eq!(digest.as_deref(), Some(image.digest.as_str()));
    assert_eq!(content_type.as_deref(), Some(OCI_MANIFEST));

    let (digest, bytes) = step(pusher.get_manifest("test/app", &image.digest)).await;
    assert_eq!(digest, image.digest);
    assert_eq!(
        bytes, image.manifest,
        "the registry keeps the bytes as pushed"
    );
}

#[tokio::test]
async fn images_differ_tags_move_and_indexes_list_platforms() {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let first = step(pusher.push_image("test/app", "v1")).await;
    let second = step(pusher.push_image("test/app", "v2")).await;
    assert_ne!(first.digest, second.digest, "every pushed image is unique");

    step(pusher.tag("test/app", "v1", &second)).await;
    let (_, digest, _) = head_manifest(&pusher, "test/app", "v1").await;
    assert_eq!(digest.as_deref(), Some(second.digest.as_str()), "v1 moved");

    let index = step(pusher.push_index("test/app", "multi", &[first.clone(), second])).await;
    let (status, digest, content_type) = head_manifest(&pusher, "test/app", "multi").await;
    assert_eq!(status, 200);
    assert_eq!(digest.as_deref(), Some(index.digest.as_str()));
    assert_eq!(content_type.as_deref(), Some(OCI_INDEX));
    let parsed: serde_json::Value = serde_json::from_slice(&index.manifest).expect("index");
    let platforms: Vec<_> = parsed["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().expect("arch"))
        .collect();
    assert_eq!(platforms, ["amd64", "arm64"]);
    assert_eq!(parsed["manifests"][0]["digest"], first.digest.as_str());

    step(pusher.delete_manifest("test/app", &first.digest)).await;
    let (status, _, _) = head_manifest(&pusher, "test/app", &first.digest).await;
    assert_eq!(status, 404, "deleted");
}

#[tokio::test]
async fn cosign_signature_is_stored_like_cosign_and_verifies() {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let image = step(pusher.push_image("test/app", "v1")).await;
    let key = CosignKey::generate();
    let reference = format!("{}/test/app", registry.host);
    let signature = key.sign_image(&reference, &image.digest);
    assert_eq!(
        String::from_utf8(signature.payload.clone()).expect("utf-8"),
        format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"{reference}"}},"image":{{"docker-manifest-digest":"{}"}},"type":"cosign container image signature"}},"optional":null}}"#,
            image.digest
        )
    );

    let pushed = step(push_cosign_signatures(
        &pusher,
        "test/app",
        &image.digest,
        std::slice::from_ref(&signature),
    ))
    .await;
    let tag = signature_tag(&image.digest);
    assert_eq!(tag, format!("sha256-{}.sig", &image.digest[7..]));
    let (digest, manifest) = step(pusher.get_manifest("test/app", &tag)).await;
    assert_eq!(digest, pushed);

    let manifest: serde_json::Value = serde_json::from_slice(&manifest).expect("manifest");
    assert_eq!(manifest["mediaType"], OCI_MANIFEST);
    assert_eq!(manifest["config"]["mediaType"], OCI_CONFIG);
    let layer = &manifest["layers"][0];
    assert_eq!(layer["mediaType"], COSIGN_SIMPLESIGNING);
    let annotation = layer["annotations"][COSIGN_SIGNATURE_ANNOTATION]
        .as_str()
        .expect("signature annotation");
    assert_eq!(annotation, signature.signature_b64);

    let payload =
        step(pusher.get_blob("test/app", layer["digest"].as_str().expect("digest"))).await;
    assert_eq!(payload, signature.payload);
    let verifying = VerifyingKey::from_public_key_pem(&key.public_pem()).expect("public pem");
    let der = STANDARD.decode(annotation).expect("base64");
    let der = DerSignature::try_from(der.as_slice()).expect("DER signature");
    verifying
        .verify(&payload, &der)
        .expect("signature verifies");
    let mut tampered = payload.clone();
    tampered[0] ^= 1;
    assert!(verifying.verify(&tampered, &der).is_err());
}

#[tokio::test]
async fn basic_auth_registry_demands_credentials() {
    let registry = Registry::start_with_basic_auth();
    registry.settle_log().await;
    let before = registry.access_log().len();
    let anonymous = Pusher::new(&registry);
    let alice = Pusher::with_basic_auth(&registry, USER, PASSWORD);
    let wrong = Pusher::with_basic_auth(&registry, USER, "wrong");
    let status = |pusher: &Pusher| {
        let request = pusher.request(Method::GET, "/v2/").send();
        async move { step(request).await.expect("GET /v2/").status().as_u16() }
    };
    assert_eq!(status(&anonymous).await, 401);
    assert_eq!(status(&wrong).await, 401);
    assert_eq!(status(&alice).await, 200);

    let image = step(alice.push_image("test/app", "v1")).await;
    let (status, digest, _) = head_manifest(&alice, "test/app", "v1").await;
    assert_eq!(
        (status, digest.as_deref()),
        (200, Some(image.digest.as_str()))
    );
    let (status, _, _) = head_manifest(&anonymous, "test/app", "v1").await;
    assert_eq!(status, 401);

    registry.settle_log().await;
    let rejected = registry
        .requests_since(before)
        .into_iter()
        .filter(|l| l.status == 401)
        .count();
    assert_eq!(rejected, 3, "the access log records rejected requests too");
}

#[tokio::test]
async fn access_log_counts_the_round_trips_of_one_operation() {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    step(pusher.push_image("test/app", "v1")).await;
    registry.settle_log().await;
    let log = registry.access_log();
    let methods: Vec<_> = log.iter().map(|l| l.method.as_str()).collect();
    // Startup probe(s), then 2 blobs (POST + PUT each) and the manifest PUT.
    assert_eq!(
        methods[methods.len() - 5..],
        ["POST", "PUT", "POST", "PUT", "PUT"]
    );
    assert!(
        log.iter()
            .any(|l| l.uri.contains("?_state=") && l.uri.contains("&digest=sha256")),
        "query strings are kept: {log:?}"
    );

    let before = log.len();
    head_manifest(&pusher, "test/app", "v1").await;
    registry.settle_log().await;
    assert_eq!(
        registry.requests_since(before),
        [AccessLine {
            method: "HEAD".into(),
            uri: "/v2/test/app/manifests/v1".into(),
            status: 200,
        }]
    );
}

#[tokio::test]
async fn stop_closes_the_port() {
    let mut registry = Registry::start();
    let addr = registry.addr;
    assert!(std::net::TcpStream::connect(addr).is_ok());
    registry.stop();
    let refused = std::net::TcpStream::connect(addr).expect_err("nothing listens after stop");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    registry.stop(); // idempotent
}

#[test]
fn upload_url_appends_the_digest_to_any_location() {
    let base = Url::parse("http://127.0.0.1:5000/").expect("base");
    let digest = "sha256:abc";
    assert_eq!(
        upload_url(&base, "/v2/a/blobs/uploads/u1", digest).as_str(),
        "http://127.0.0.1:5000/v2/a/blobs/uploads/u1?digest=sha256%3Aabc"
    );
    assert_eq!(
        upload_url(
            &base,
            "http://127.0.0.1:5000/v2/a/blobs/uploads/u1?_state=x%3D%3D",
            digest
        )
        .as_str(),
        "http://127.0.0.1:5000/v2/a/blobs/uploads/u1?_state=x%3D%3D&digest=sha256%3Aabc"
    );
}
