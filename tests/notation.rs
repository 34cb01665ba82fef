//! Notary Project verification end to end: the published notation e2e layouts pushed
//! byte for byte into a real `docker-registry` (tag-schema discovery, since registry 2.8 has
//! no referrers API), the same layouts served by a minimal OCI 1.1 server (referrers API
//! discovery), and new signatures made with the published test key by RustCrypto's rsa.

mod support;

use serde_json::Value;
use support::layout::*;
use support::registry::*;
use support::*;

const E2E_IDENTITY: &str = "x509.subject: C=US, ST=WA, L=Seattle, O=Notary, CN=e2e";

fn localkey(name: &str) -> String {
    fixtures_dir()
        .join("notation-e2e/localkeys")
        .join(name)
        .display()
        .to_string()
}

/// A notation policy for `host/notation/*` trusting `trust_store` and `identity`.
fn notation_policy(host: &str, trust_store: &[String], identity: &str, plain_http: bool) -> String {
    format!(
        "registries:\n- host: {host}\n  plainHttp: {plain_http}\npolicies:\n- name: notary\n  scopes: [\"{host}/notation/*\"]\n  verifiers:\n  - notation: {{trustStore: [{}], trustedIdentities: [\"{identity}\"]}}\n",
        trust_store.join(", ")
    )
}

async fn value(v: &Vouch, key: &str) -> Value {
    only_verdict(&v.verify(&[key]).await)
}

/// docker-registry with every e2e layout pushed to `notation/<layout>`.
async fn registry_with_layouts(names: &[&str]) -> (Registry, Pusher) {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    for name in names {
        push_layout(&pusher, &format!("notation/{name}"), &fixture(name)).await;
    }
    (registry, pusher)
}

fn key_for(host: &str, layout: &str) -> String {
    format!("{host}/notation/{layout}:v1")
}

#[tokio::test]
async fn published_layouts_through_the_tag_schema() {
    let layouts = [
        "e2e-valid-signature",
        "e2e-expired-signature",
        "e2e-invalid-signature",
        "e2e-with-expired-cert",
        "e2e-valid-multiple-signatures",
    ];
    let (registry, _pusher) = registry_with_layouts(&layouts).await;
    let trust = [localkey("e2e.crt"), localkey("expired_e2e.crt")];
    let v = Vouch::start(&notation_policy(&registry.host, &trust, "*", true)).await;
    let host = &registry.host;

    let ok = value(&v, &key_for(host, "e2e-valid-signature")).await;
    assert_eq!(ok["verified"], true, "{ok}");
    assert_eq!(
        ok["digest"],
        fixture("e2e-valid-signature").image.digest.as_str()
    );
    assert_eq!(ok["signatures"][0]["format"], "notation");
    assert!(
        ok["signatures"][0]["signer"]
            .as_str()
            .is_some_and(|s| s.contains("CN=e2e")),
        "{ok}"
    );
    assert!(
        ok["signatures"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("revocation")),
        "{ok}"
    );

    assert_code(
        &value(&v, &key_for(host, "e2e-expired-signature")).await,
        "expired",
    );
    assert_code(
        &value(&v, &key_for(host, "e2e-invalid-signature")).await,
        "invalid-signature",
    );
    // Signed with a certificate that is expired *and* not a code-signing certificate: the
    // authenticity check refuses it first.
    let expired_cert = value(&v, &key_for(host, "e2e-with-expired-cert")).await;
    assert_code(&expired_cert, "untrusted-signer");
    let multi = value(&v, &key_for(host, "e2e-valid-multiple-signatures")).await;
    assert_eq!(multi["verified"], true, "{multi}");
}

#[tokio::test]
async fn another_trust_store_or_identity_is_an_untrusted_signer() {
    let (registry, _p) = registry_with_layouts(&["e2e-valid-signature"]).await;
    let host = registry.host.clone();
    let key = key_for(&host, "e2e-valid-signature");

    let other_store = Vouch::start(&notation_policy(
        &host,
        &[localkey("new_e2e.crt")],
        "*",
        true,
    ))
    .await;
    assert_code(&value(&other_store, &key).await, "untrusted-signer");

    let right_identity = Vouch::start(&notation_policy(
        &host,
        &[localkey("e2e.crt")],
        E2E_IDENTITY,
        true,
    ))
    .await;
    assert_eq!(value(&right_identity, &key).await["verified"], true);

    let other_identity = Vouch::start(&notation_policy(
        &host,
        &[localkey("e2e.crt")],
        "x509.subject: C=US, ST=WA, L=Seattle, O=Notary, CN=someone-else",
        true,
    ))
    .await;
    let v = value(&other_identity, &key).await;
    assert_code(&v, "untrusted-signer");
    assert!(
        v["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not a trusted identity")),
        "{v}"
    );
}

/// A signing case: image tag, what the payload targets (given this image and another),
/// expiry, expected code ("" = verified).
type Case = (
    &'static str,
    fn(&Descriptor, &Descriptor) -> Descriptor,
    Option<&'static str>,
    &'static str,
);

#[tokio::test]
async fn new_signatures_with_the_published_key() {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let signer = NotarySigner::e2e();
    let repo = "notation/fresh";
    // Failed verdicts are cached for failedTtl; each case re-asks right after signing.
    let policy = notation_policy(&registry.host, &[localkey("e2e.crt")], E2E_IDENTITY, true);
    let v = Vouch::start(&format!("cache: {{failedTtl: 1ms}}\n{policy}")).await;
    let now = "2026-01-01T00:00:00Z";
    let other = pusher.push_image(repo, "other").await;
    let other = Descriptor::of_manifest(&other.media_type, &other.manifest);

    // Each case on its own image: (tag, payload target, expiry, expected code).
    let cases: [Case; 4] = [
        (
            "tampered",
            |me, _| Descriptor {
                size: me.size + 1,
                ..me.clone()
            },
            None,
            "digest-mismatch",
        ),
        (
            "for-another",
            |_, other| other.clone(),
            None,
            "digest-mismatch",
        ),
        (
            "expired",
            |me, _| me.clone(),
            Some("2026-01-02T00:00:00Z"),
            "expired",
        ),
        ("good", |me, _| me.clone(), None, ""),
    ];
    for (tag, target, expiry, code) in cases {
        let image = pusher.push_image(repo, tag).await;
        let me = Descriptor::of_manifest(&image.media_type, &image.manifest);
        let key = format!("{}/{repo}:{tag}", registry.host);
        assert_code(&value(&v, &key).await, "unsigned");
        let env = signer.sign_jws(&target_payload(&target(&me, &other)), now, expiry);
        push_notation_signature(&pusher, repo, &me, &env).await;
        let got = value(&v, &key).await;
        if code.is_empty() {
            assert_eq!(got["verified"], true, "{tag}: {got}");
        } else {
            assert_code(&got, code);
        }
    }
}

#[tokio::test]
async fn the_referrers_api_path_with_pagination() {
    let server = LayoutServer::start(
        vec![
            ("notation/valid".into(), fixture("e2e-valid-signature")),
            (
                "notation/multi".into(),
                fixture("e2e-valid-multiple-signatures"),
            ),
            ("notation/invalid".into(), fixture("e2e-invalid-signature")),
        ],
        ServerOptions {
            tag_schema: false,
            page_size: Some(1),
        },
    )
    .await;
    let v = Vouch::start(&notation_policy(
        &server.host,
        &[localkey("e2e.crt")],
        E2E_IDENTITY,
        true,
    ))
    .await;

    let before = server.requests().len();
    let ok = value(&v, &format!("{}/notation/valid:v1", server.host)).await;
    assert_eq!(ok["verified"], true, "{ok}");
    let trips = server.requests()[before..].to_vec();
    // HEAD the tag, GET referrers, GET the signature manifest, GET the envelope.
    assert_eq!(trips.len(), 4, "{trips:#?}");
    assert!(
        trips[1].starts_with("GET /v2/notation/valid/referrers/sha256:"),
        "{trips:#?}"
    );

    let multi = value(&v, &format!("{}/notation/multi:v1", server.host)).await;
    assert_eq!(multi["verified"], true, "{multi}");
    assert_eq!(
        multi["signatures"].as_array().map(Vec::len),
        Some(2),
        "both pages read: {multi}"
    );
    assert_code(
        &value(&v, &format!("{}/notation/invalid:v1", server.host)).await,
        "invalid-signature",
    );
}

#[tokio::test]
async fn a_cold_notation_verification_through_the_tag_schema_counts_its_round_trips() {
    let (registry, pusher) = registry_with_layouts(&["e2e-valid-signature"]).await;
    push_layout(&pusher, "notation/copy", &fixture("e2e-valid-signature")).await;
    let v = Vouch::start(&notation_policy(
        &registry.host,
        &[localkey("e2e.crt")],
        E2E_IDENTITY,
        true,
    ))
    .await;
    let key = key_for(&registry.host, "e2e-valid-signature");
    registry.settle_log().await;
    let before = registry.access_log().len();
    assert_eq!(value(&v, &key).await["verified"], true);
    registry.settle_log().await;
    let first = registry.requests_since(before);
    // HEAD tag, referrers (404), sha256-<hex> index, signature manifest, envelope blob.
    assert_eq!(first.len(), 5, "{first:#?}");
    assert!(
        first[1].uri.contains("/referrers/") && first[1].status == 404,
        "{first:#?}"
    );
    // Another image: the registry's lack of a referrers API is remembered, one trip fewer.
    let before = registry.access_log().len();
    let copy = format!("{}/notation/copy:v1", registry.host);
    assert_eq!(value(&v, &copy).await["verified"], true);
    registry.settle_log().await;
    let second = registry.requests_since(before);
    assert_eq!(second.len(), 4, "{second:#?}");
    assert!(
        second.iter().all(|l| !l.uri.contains("/referrers/")),
        "{second:#?}"
    );
    // The same image again: answered from the caches.
    let before = registry.access_log().len();
    assert_eq!(value(&v, &key).await["verified"], true);
    registry.settle_log().await;
    assert_eq!(registry.requests_since(before).len(), 0);
}

#[tokio::test]
async fn cosign_and_notation_together_follow_require() {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let repo = "notation/both";
    let image = pusher.push_image(repo, "v1").await;
    let subject = Descriptor::of_manifest(&image.media_type, &image.manifest);
    let only_cosign = pusher.push_image(repo, "cosign-only").await;
    let only_notation = pusher.push_image(repo, "notation-only").await;
    let cosign_key = CosignKey::generate();
    let signer = NotarySigner::e2e();
    let name = format!("{}/{repo}", registry.host);
    for img in [&image, &only_cosign] {
        let sig = cosign_key.sign_image(&name, &img.digest);
        push_cosign_signatures(&pusher, repo, &img.digest, &[sig]).await;
    }
    for img in [&image, &only_notation] {
        let d = Descriptor::of_manifest(&img.media_type, &img.manifest);
        let env = signer.sign_jws(&target_payload(&d), "2026-01-01T00:00:00Z", None);
        push_notation_signature(&pusher, repo, &d, &env).await;
    }
    assert_eq!(subject.digest, image.digest);
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("cosign.pub");
    std::fs::write(&key_file, cosign_key.public_pem()).expect("key");
    let policy = |require: &str| {
        format!(
            "registries:\n- host: {host}\n  plainHttp: true\npolicies:\n- name: both\n  scopes: [\"{host}/notation/*\"]\n  require: {require}\n  verifiers:\n  - cosign: {{publicKeys: [{key}]}}\n  - notation: {{trustStore: [{crt}], trustedIdentities: [\"*\"]}}\n",
            host = registry.host,
            key = key_file.display(),
            crt = localkey("e2e.crt"),
        )
    };
    let any = Vouch::start(&policy("any")).await;
    let all = Vouch::start(&policy("all")).await;
    let key = |tag: &str| format!("{name}:{tag}");
    for tag in ["v1", "cosign-only", "notation-only"] {
        assert_eq!(value(&any, &key(tag)).await["verified"], true, "any: {tag}");
    }
    assert_eq!(value(&all, &key("v1")).await["verified"], true);
    assert_code(&value(&all, &key("cosign-only")).await, "unsigned");
    assert_code(&value(&all, &key("notation-only")).await, "unsigned");
}

/// The referrers path through the HTTP fault proxy: a referrers page or an envelope whose
/// body breaks off once is fetched again; one that always breaks is a `systemError`; an
/// altered envelope is a `digest-mismatch` verdict, never verified.
#[tokio::test]
async fn referrers_path_under_registry_faults() {
    use support::faults::{Fault, FaultProxy, Rule};
    let server = LayoutServer::start(
        vec![
            ("notation/a".into(), fixture("e2e-valid-signature")),
            ("notation/b".into(), fixture("e2e-valid-signature")),
            ("notation/c".into(), fixture("e2e-valid-signature")),
            ("notation/d".into(), fixture("e2e-valid-signature")),
        ],
        ServerOptions {
            tag_schema: false,
            page_size: None,
        },
    )
    .await;
    let proxy = FaultProxy::start(server.addr).await;
    let v = Vouch::start(&format!(
        "cache: {{registryBackoff: 0s}}\n{}",
        notation_policy(&proxy.host, &[localkey("e2e.crt")], E2E_IDENTITY, true)
    ))
    .await;
    let key = |repo: &str| format!("{}/notation/{repo}:v1", proxy.host);

    proxy.on(Rule::path("GET", "/notation/a/referrers/", Fault::ResetMidBody).times(1));
    proxy.on(Rule::path("GET", "/notation/a/blobs/", Fault::Truncate).times(1));
    let a = value(&v, &key("a")).await;
    assert_eq!(a["verified"], true, "{a}");

    proxy.on(Rule::path(
        "GET",
        "/notation/b/referrers/",
        Fault::ResetMidBody,
    ));
    let b = v.verify(&[&key("b")]).await;
    assert!(
        b["response"]["systemError"]
            .as_str()
            .is_some_and(|e| e.contains(&key("b"))),
        "{b}"
    );

    proxy.on(Rule::path("GET", "/notation/c/blobs/", Fault::Corrupt));
    assert_code(&value(&v, &key("c")).await, "digest-mismatch");

    // Faults on other repositories left this one alone.
    assert_eq!(value(&v, &key("d")).await["verified"], true);
    let faulted = proxy.log().iter().filter(|s| s.fault.is_some()).count();
    assert!(faulted >= 4, "{:#?}", proxy.log());
}
