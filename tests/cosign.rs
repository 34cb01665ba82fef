//! cosign verification end to end: a real `docker-registry`, signatures made by an
//! independent implementation (RustCrypto p256), vouch over mTLS.

mod support;

use serde_json::Value;
use support::registry::*;
use support::*;

/// A registry, a trusted key, and vouch configured to trust it for `<registry>/acme/*`.
struct Setup {
    registry: Registry,
    pusher: Pusher,
    trusted: CosignKey,
    vouch: Vouch,
    _keys: tempfile::TempDir,
}

fn verify_policy(registry: &Registry, key_file: &std::path::Path, extra: &str) -> String {
    format!(
        "registryTimeout: 500ms\n{top}registries:\n- host: {host}\n  plainHttp: true\n{entry}policies:\n- name: acme\n  scopes: [\"{host}/acme/*\"]\n  verifiers:\n  - cosign: {{publicKeys: [{key}]}}\n",
        host = registry.host,
        key = key_file.display(),
        // Lines indented by two spaces belong to the registry entry, the others are top-level.
        top = extra
            .lines()
            .filter(|l| !l.starts_with("  "))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
        entry = extra
            .lines()
            .filter(|l| l.starts_with("  "))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
}

async fn setup_with(registry: Registry, pusher: Pusher, extra: &str) -> Setup {
    let keys = tempfile::tempdir().expect("tempdir");
    let trusted = CosignKey::generate();
    let key_file = keys.path().join("trusted.pub");
    std::fs::write(&key_file, trusted.public_pem()).expect("write key");
    let vouch = Vouch::start(&verify_policy(&registry, &key_file, extra)).await;
    Setup {
        registry,
        pusher,
        trusted,
        vouch,
        _keys: keys,
    }
}

async fn setup() -> Setup {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    setup_with(registry, pusher, "").await
}

impl Setup {
    fn reference(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.registry.host)
    }

    /// Pushes an image and signs it with `key` (cosign's tag scheme).
    async fn signed_image(&self, repo: &str, tag: &str, key: &CosignKey) -> Image {
        push_signed(&self.pusher, key, &self.registry.host, repo, tag).await
    }

    /// The value (verdict) for one key; panics on a per-key error or system error.
    async fn verdict(&self, key: &str) -> Value {
        only_verdict(&self.vouch.verify(&[key]).await)
    }
}

#[tokio::test]
async fn signed_with_the_trusted_key_is_verified() {
    let s = setup().await;
    let image = s.signed_image("acme/api", "1.0", &s.trusted).await;
    let v = s.verdict(&s.reference("acme/api", "1.0")).await;
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["digest"], image.digest.as_str());
    assert_eq!(v["policy"], "acme");
    assert_eq!(v["code"], "");
    assert_eq!(v["signatures"][0]["format"], "cosign");
    assert_eq!(v["signatures"][0]["verified"], true);
    assert_eq!(v["signatures"][0]["signer"], "key:trusted");
    // The digest form of the same image verifies too.
    let by_digest = format!("{}/acme/api@{}", s.registry.host, image.digest);
    assert_eq!(s.verdict(&by_digest).await["verified"], true);
}

#[tokio::test]
async fn unsigned_and_missing_images() {
    let s = setup().await;
    s.pusher.push_image("acme/api", "bare").await;
    assert_code(
        &s.verdict(&s.reference("acme/api", "bare")).await,
        "unsigned",
    );
    assert_code(
        &s.verdict(&s.reference("acme/api", "absent")).await,
        "not-found",
    );
}

#[tokio::test]
async fn another_key_is_an_untrusted_signer() {
    let s = setup().await;
    s.signed_image("acme/api", "1.0", &CosignKey::generate())
        .await;
    let v = s.verdict(&s.reference("acme/api", "1.0")).await;
    assert_code(&v, "untrusted-signer");
    assert_eq!(v["signatures"][0]["verified"], false);
}

#[tokio::test]
async fn a_signature_copied_from_another_image_is_a_digest_mismatch() {
    let s = setup().await;
    let a = s.pusher.push_image("acme/api", "a").await;
    let b = s.pusher.push_image("acme/api", "b").await;
    let sig_for_a = s
        .trusted
        .sign_image(&format!("{}/acme/api", s.registry.host), &a.digest);
    push_cosign_signatures(&s.pusher, "acme/api", &b.digest, &[sig_for_a]).await;
    assert_code(
        &s.verdict(&s.reference("acme/api", "b")).await,
        "digest-mismatch",
    );
}

#[tokio::test]
async fn corrupted_signature_bytes_are_an_invalid_signature() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let s = setup().await;
    let image = s.pusher.push_image("acme/api", "1.0").await;
    let mut sig = s
        .trusted
        .sign_image(&format!("{}/acme/api", s.registry.host), &image.digest);
    let mut der = b64.decode(&sig.signature_b64).expect("b64");
    der.truncate(der.len() - 3);
    sig.signature_b64 = b64.encode(&der);
    push_cosign_signatures(&s.pusher, "acme/api", &image.digest, &[sig]).await;
    assert_code(
        &s.verdict(&s.reference("acme/api", "1.0")).await,
        "invalid-signature",
    );
}

#[tokio::test]
async fn a_tag_moved_to_an_unsigned_digest_is_not_verified() {
    // Tag resolutions are cached for tagTtl; keep it short so the move is seen quickly.
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let s = setup_with(registry, pusher, "cache: {tagTtl: 200ms}\n").await;
    let signed = s.signed_image("acme/api", "1.0", &s.trusted).await;
    assert_eq!(
        s.verdict(&s.reference("acme/api", "1.0")).await["verified"],
        true
    );
    let unsigned = s.pusher.push_image("acme/api", "other").await;
    s.pusher.tag("acme/api", "1.0", &unsigned).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let v = s.verdict(&s.reference("acme/api", "1.0")).await;
    assert_code(&v, "unsigned");
    assert_eq!(v["digest"], unsigned.digest.as_str());
    assert_ne!(signed.digest, unsigned.digest);
}

#[tokio::test]
async fn a_multi_arch_index_is_verified_at_the_index_digest() {
    let s = setup().await;
    let amd = s.pusher.push_image("acme/multi", "amd64").await;
    let arm = s.pusher.push_image("acme/multi", "arm64").await;
    let index = s.pusher.push_index("acme/multi", "1.0", &[amd, arm]).await;
    let sig = s
        .trusted
        .sign_image(&format!("{}/acme/multi", s.registry.host), &index.digest);
    push_cosign_signatures(&s.pusher, "acme/multi", &index.digest, &[sig]).await;
    let v = s.verdict(&s.reference("acme/multi", "1.0")).await;
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["digest"], index.digest.as_str());
}

#[tokio::test]
async fn two_signatures_one_valid_is_verified() {
    let s = setup().await;
    let image = s.pusher.push_image("acme/api", "1.0").await;
    let name = format!("{}/acme/api", s.registry.host);
    let sigs = [
        CosignKey::generate().sign_image(&name, &image.digest),
        s.trusted.sign_image(&name, &image.digest),
    ];
    push_cosign_signatures(&s.pusher, "acme/api", &image.digest, &sigs).await;
    let v = s.verdict(&s.reference("acme/api", "1.0")).await;
    assert_eq!(v["verified"], true, "{v}");
    let sigs = v["signatures"].as_array().expect("signatures");
    assert_eq!(sigs.len(), 2);
    assert_eq!(sigs.iter().filter(|s| s["verified"] == true).count(), 1);
}

#[tokio::test]
async fn a_stopped_registry_is_a_system_error() {
    let mut s = setup().await;
    s.signed_image("acme/api", "1.0", &s.trusted).await;
    s.registry.stop();
    let key = s.reference("acme/api", "1.0");
    let r = s.vouch.verify(&[&key, "nginx"]).await;
    let system = r["response"]["systemError"].as_str().expect("systemError");
    assert!(system.contains(&key), "names the key: {system}");
    assert!(system.contains("unreachable"), "{system}");
    assert!(
        r["response"]["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|i| i["key"] != key.as_str())
    );
}

#[tokio::test]
async fn basic_auth_with_right_and_wrong_credentials() {
    let registry = Registry::start_with_basic_auth();
    let pusher = Pusher::with_basic_auth(&registry, USER, PASSWORD);
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good");
    std::fs::write(&good, format!("{PASSWORD}\n")).expect("write");
    let extra = format!("  username: {USER}\n  passwordFile: {}\n", good.display());
    let s = setup_with(registry, pusher, &extra).await;
    s.signed_image("acme/api", "1.0", &s.trusted).await;
    assert_eq!(
        s.verdict(&s.reference("acme/api", "1.0")).await["verified"],
        true
    );

    // The same registry with a wrong password: a per-key auth error, not a verdict.
    let bad = dir.path().join("bad");
    std::fs::write(&bad, "wrong").expect("write");
    let key_file = dir.path().join("trusted.pub");
    std::fs::write(&key_file, s.trusted.public_pem()).expect("write key");
    let wrong = Vouch::start(&verify_policy(
        &s.registry,
        &key_file,
        &format!("  username: {USER}\n  passwordFile: {}\n", bad.display()),
    ))
    .await;
    let r = wrong.verify(&[&s.reference("acme/api", "1.0")]).await;
    let item = &r["response"]["items"][0];
    assert!(
        item["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("auth: registry ")),
        "{r}"
    );
    assert!(
        !r.to_string().contains("wrong"),
        "the password never appears: {r}"
    );
}

#[tokio::test]
async fn an_unconfigured_host_gets_no_policy_without_any_connection() {
    let s = setup().await;
    let counter = CountingListener::start().await;
    let key = format!("{}/acme/api:1.0", counter.addr);
    let v = s.verdict(&key).await;
    assert_code(&v, "no-policy");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        counter.connections(),
        0,
        "vouch contacted an unconfigured host"
    );
}

#[tokio::test]
async fn a_redirect_to_an_unconfigured_host_is_not_followed() {
    // A "registry" that redirects every request to another loopback host:port.
    let elsewhere = CountingListener::start().await;
    let target = format!("http://{}/stolen", elsewhere.addr);
    let app = axum::Router::new().fallback(move || {
        let target = target.clone();
        async move {
            (
                axum::http::StatusCode::TEMPORARY_REDIRECT,
                [(axum::http::header::LOCATION, target)],
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let host = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let keys = tempfile::tempdir().expect("tempdir");
    let key_file = keys.path().join("k.pub");
    std::fs::write(&key_file, CosignKey::generate().public_pem()).expect("key");
    let yaml = format!(
        "registries:\n- host: {host}\n  plainHttp: true\npolicies:\n- name: acme\n  scopes: [\"{host}/acme/*\"]\n  verifiers:\n  - cosign: {{publicKeys: [{}]}}\n",
        key_file.display()
    );
    let v = Vouch::start(&yaml).await;
    let r = v.verify(&[&format!("{host}/acme/api:1")]).await;
    let item = &r["response"]["items"][0];
    assert!(
        item["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("registry-protocol: ") && e.contains("redirected")),
        "{r}"
    );
    assert_eq!(elsewhere.connections(), 0, "the redirect was followed");
}

#[tokio::test]
async fn a_cold_verification_takes_few_round_trips() {
    let s = setup().await;
    s.signed_image("acme/api", "1.0", &s.trusted).await;
    s.registry.settle_log().await;
    let before = s.registry.access_log().len();
    assert_eq!(
        s.verdict(&s.reference("acme/api", "1.0")).await["verified"],
        true
    );
    s.registry.settle_log().await;
    let trips = s.registry.requests_since(before);
    // HEAD the tag, GET the signature manifest, GET the payload blob.
    assert!(trips.len() <= 4, "{trips:#?}");
    assert_eq!(trips.len(), 3, "{trips:#?}");
}

#[tokio::test]
async fn registry_tls_is_verified_against_the_configured_roots() {
    // A registry serving a certificate from a CA vouch does not know.
    let ca = Ca::new("registry test CA", false, None);
    let leaf = ca.issue(LeafSpec::server());
    let registry = Registry::start_tls(&leaf.cert_pem, &leaf.key_pem);
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("k.pub");
    std::fs::write(&key_file, CosignKey::generate().public_pem()).expect("key");
    let policy = |extra: &str| {
        format!(
            "registries:\n- host: {host}\n{extra}policies:\n- name: acme\n  scopes: [\"{host}/acme/*\"]\n  verifiers:\n  - cosign: {{publicKeys: [{key}]}}\n",
            host = registry.host,
            key = key_file.display()
        )
    };
    let key = format!("{}/acme/api:1", registry.host);

    let untrusting = Vouch::start(&policy("")).await;
    let r = untrusting.verify(&[&key]).await;
    let err = r["response"]["items"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(err.starts_with("registry-tls: "), "{r}");

    // With the registry's CA configured the TLS handshake succeeds and the (empty)
    // registry answers: the image is not found.
    let ca_file = dir.path().join("registry-ca.crt");
    std::fs::write(&ca_file, &ca.cert_pem).expect("ca");
    let trusting = Vouch::start(&policy(&format!("  caFile: {}\n", ca_file.display()))).await;
    let r = trusting.verify(&[&key]).await;
    assert_eq!(
        r["response"]["items"][0]["value"]["code"], "not-found",
        "{r}"
    );
}
