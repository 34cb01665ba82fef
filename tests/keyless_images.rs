//! Keyless verification of images end to end: images and signatures made by sigstore-js
//! against its mock Fulcio, Rekor and TSA (`tests/sigstore/sign.js`), pushed byte for byte
//! into Debian's `docker-registry` — the legacy `.sig` tag as cosign ≤ v2 writes it, Sigstore
//! bundles as cosign v3 attaches them (the `sha256-<hex>` tag-schema index, since registry
//! 2.8 has no referrers API) — and into the in-process OCI 1.1 server for the referrers
//! API. What it proves: both forms verify with the matched identity and issuer in the
//! report; `format` skips the lookups it does not need; attestations are not signatures;
//! an unrelated referrer and a junk bundle beside a good one change nothing; the
//! failures a pusher or signer can cause get their codes; GitHub's private shape verifies
//! only under a policy that says so; a replaced trusted root is picked up and no verdict of
//! the old one is served; registry round trips are 3 (legacy) and 4 (bundle, referrers
//! API); and `vouch verify-bundle` runs Sigstore's conformance vectors to their published
//! outcomes.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::layout::{Descriptor, LayoutServer};
use support::registry::*;
use support::sigstore::*;
use support::*;

const SUBJECT_RE: &str =
    r"https://github\.com/acme/app/\.github/workflows/release\.yml@refs/tags/v.*";

/// A keyless policy over `host/acme/*` trusting the fixtures' workflow identity.
fn keyless_config(host: &str, root: &Path, verifier_extra: &str) -> String {
    format!(
        "registries:\n- host: {host}\n  plainHttp: true\npolicies:\n- name: acme-ci\n  scopes: [\"{host}/acme/*\"]\n  verifiers:\n  - keyless:\n      trustedRoot: {root}\n{verifier_extra}      identities:\n      - issuer: https://token.actions.githubusercontent.com\n        subjectRegExp: '{SUBJECT_RE}'\n        extensions: {{githubWorkflowRepository: acme/app}}\n",
        root = root.display()
    )
}

/// The fixtures' trusted root written to a file in `dir`.
fn root_file(dir: &Path, f: &Fixtures) -> PathBuf {
    let path = dir.join("trusted_root.json");
    std::fs::write(&path, f.root_json()).expect("trusted root");
    path
}

async fn verdict(v: &Vouch, key: &str) -> Value {
    only_verdict(&v.verify(&[key]).await)
}

fn assert_verified_by_workflow(v: &Value, f: &Fixtures) {
    assert_eq!(v["verified"], true, "{v}");
    let sig = v["signatures"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["verified"] == true))
        .unwrap_or_else(|| panic!("a verified signature: {v}"));
    assert_eq!(sig["format"], "sigstore", "{v}");
    assert_eq!(sig["signer"], f.subject.as_str(), "{v}");
    assert_eq!(sig["issuer"], f.issuer.as_str(), "{v}");
}

/// Requests whose path contains `part`, among the access-log lines since `from`.
fn count(registry: &Registry, from: usize, part: &str) -> usize {
    registry
        .requests_since(from)
        .iter()
        .filter(|l| l.uri.contains(part))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_forms_verify_with_the_identity_in_the_report_and_format_limits_the_lookups() {
    let f = fixtures();
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let host = registry.host.clone();
    let [legacy, dsse, message, _] = &f.images[..] else {
        panic!("four fixture images");
    };
    push_image(&pusher, "acme/legacy", "v1", &legacy.manifest).await;
    push_legacy(
        &pusher,
        "acme/legacy",
        &legacy.digest,
        &legacy.payload,
        &f.legacy_annotations(&legacy.bundles["legacy"]),
    )
    .await;
    let d = push_image(&pusher, "acme/dsse", "v1", &dsse.manifest).await;
    push_bundle(&pusher, "acme/dsse", &d, &dsse.bundle_bytes("dsse")).await;
    let m = push_image(&pusher, "acme/message", "v1", &message.manifest).await;
    push_bundle(
        &pusher,
        "acme/message",
        &m,
        &message.bundle_bytes("message"),
    )
    .await;

    let dir = tempfile::tempdir().expect("tempdir");
    let root = root_file(dir.path(), f);
    let any = Vouch::start(&keyless_config(&host, &root, "")).await;
    for repo in ["legacy", "dsse", "message"] {
        let got = verdict(&any, &format!("{host}/acme/{repo}:v1")).await;
        assert_verified_by_workflow(&got, f);
    }

    // format: legacy reads only the .sig tag: three round trips, no referrers lookup; a
    // bundle-only image is unsigned to it.
    let legacy_only = Vouch::start(&keyless_config(&host, &root, "      format: legacy\n")).await;
    registry.settle_log().await;
    let from = registry.access_log().len();
    let got = verdict(&legacy_only, &format!("{host}/acme/legacy:v1")).await;
    assert_verified_by_workflow(&got, f);
    registry.settle_log().await;
    assert_eq!(
        registry.requests_since(from).len(),
        3,
        "HEAD, .sig manifest, payload"
    );
    let from = registry.access_log().len();
    assert_code(
        &verdict(&legacy_only, &format!("{host}/acme/dsse:v1")).await,
        "unsigned",
    );
    registry.settle_log().await;
    assert_eq!(
        count(&registry, from, "/manifests/sha256-"),
        1,
        "only the .sig tag"
    );
    assert_eq!(count(&registry, from, ".sig"), 1);

    // format: bundle never reads the .sig tag; a legacy-only image is unsigned to it.
    let bundle_only = Vouch::start(&keyless_config(&host, &root, "      format: bundle\n")).await;
    registry.settle_log().await;
    let from = registry.access_log().len();
    assert_code(
        &verdict(&bundle_only, &format!("{host}/acme/legacy:v1")).await,
        "unsigned",
    );
    let got = verdict(&bundle_only, &format!("{host}/acme/message:v1")).await;
    assert_verified_by_workflow(&got, f);
    registry.settle_log().await;
    assert_eq!(
        count(&registry, from, ".sig"),
        0,
        "no .sig lookup: {:?}",
        registry.requests_since(from)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_pusher_or_signer_can_do_gets_its_code() {
    let f = fixtures();
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let host = registry.host.clone();
    let image = |repo: &'static str| {
        let pusher = &pusher;
        async move { push_image(pusher, &format!("acme/{repo}"), "v1", &f.manifest).await }
    };
    // The fixture image, signed in several ways that must not pass.
    let cases: [(&str, &str, &str); 5] = [
        ("evil", "evilSubject", "untrusted-signer"),
        ("expired", "expired", "expired"),
        ("nosct", "noSct", "untrusted-signer"),
        ("other", "other", "digest-mismatch"),
        ("private", "private", "invalid-signature"),
    ];
    for (repo, bundle, _) in cases {
        let d = image(repo).await;
        push_bundle(
            &pusher,
            &format!("acme/{repo}"),
            &d,
            &f.bundle_bytes(bundle),
        )
        .await;
    }
    // An attestation alone is not a signature.
    let d = image("attested").await;
    push_bundle(&pusher, "acme/attested", &d, &f.bundle_bytes("slsa")).await;
    // A good bundle with a junk bundle, an unrelated referrer and an attestation beside it.
    let d = image("crowded").await;
    push_bundle(
        &pusher,
        "acme/crowded",
        &d,
        b"{\"mediaType\": \"not a bundle\"}",
    )
    .await;
    support::layout::push_notation_signature(&pusher, "acme/crowded", &d, b"{}").await;
    push_bundle(&pusher, "acme/crowded", &d, &f.bundle_bytes("slsa")).await;
    push_bundle(&pusher, "acme/crowded", &d, &f.bundle_bytes("dsse")).await;
    let d = image("good").await;
    push_bundle(&pusher, "acme/good", &d, &f.bundle_bytes("dsse")).await;
    // A tampered legacy layer: the Rekor SET no longer covers the entry.
    let d = image("tampered").await;
    let mut annotations = f.legacy_annotations(&f.bundle("legacy"));
    for (k, v) in &mut annotations {
        if k == vouch::keyless::BUNDLE_ANNOTATION {
            let mut set: Value = serde_json::from_str(v).expect("rekor bundle");
            let t = set["Payload"]["integratedTime"].as_i64().expect("time");
            set["Payload"]["integratedTime"] = (t + 1).into();
            *v = set.to_string();
        }
    }
    push_legacy(
        &pusher,
        "acme/tampered",
        &d.digest,
        &f.payload,
        &annotations,
    )
    .await;

    let dir = tempfile::tempdir().expect("tempdir");
    let root = root_file(dir.path(), f);
    let v = Vouch::start(&keyless_config(&host, &root, "")).await;
    for (repo, bundle, code) in cases {
        let got = verdict(&v, &format!("{host}/acme/{repo}:v1")).await;
        assert_code(&got, code);
        assert!(
            got["signatures"].as_array().is_some_and(|s| s.len() == 1),
            "{bundle}: one candidate: {got}"
        );
    }
    let attested = verdict(&v, &format!("{host}/acme/attested:v1")).await;
    assert_code(&attested, "unsigned");
    assert_eq!(attested["signatures"], serde_json::json!([]), "{attested}");
    let crowded = verdict(&v, &format!("{host}/acme/crowded:v1")).await;
    assert_verified_by_workflow(&crowded, f);
    assert_eq!(
        crowded["signatures"].as_array().map(Vec::len),
        Some(2),
        "the junk bundle is a failed candidate, the Notary signature and the attestation are not candidates: {crowded}"
    );
    assert_code(
        &verdict(&v, &format!("{host}/acme/tampered:v1")).await,
        "invalid-signature",
    );

    // A policy trusting another workflow: the same good signature is an untrusted signer.
    let other = keyless_config(&host, &root, "").replace("release", "nightly");
    let strict = Vouch::start(&other).await;
    assert_code(
        &verdict(&strict, &format!("{host}/acme/good:v1")).await,
        "untrusted-signer",
    );
    assert_verified_by_workflow(&verdict(&v, &format!("{host}/acme/good:v1")).await, f);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn githubs_private_shape_verifies_only_under_a_policy_that_says_so() {
    let f = fixtures();
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let host = registry.host.clone();
    let d = push_image(&pusher, "acme/private", "v1", &f.manifest).await;
    push_bundle(&pusher, "acme/private", &d, &f.bundle_bytes("private")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = root_file(dir.path(), f);
    let key = format!("{host}/acme/private:v1");

    let default = Vouch::start(&keyless_config(&host, &root, "")).await;
    assert_code(&verdict(&default, &key).await, "invalid-signature");
    let private = Vouch::start(&keyless_config(
        &host,
        &root,
        "      tlog: skip\n      sct: skip\n      tsa: required\n",
    ))
    .await;
    let got = verdict(&private, &key).await;
    assert_verified_by_workflow(&got, f);
    assert!(
        got["signatures"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("timestamp")),
        "{got}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_referrers_api_costs_four_round_trips() {
    let f = fixtures();
    let server = LayoutServer::referrers_only().await;
    let image = &f.images[1];
    let d: Descriptor = server.add_tagged_image("acme/app", "v1", image.manifest.clone());
    add_bundle(&server, "acme/app", &d, &image.bundle_bytes("dsse"));
    let dir = tempfile::tempdir().expect("tempdir");
    let root = root_file(dir.path(), f);
    let v = Vouch::start(&keyless_config(
        &server.host,
        &root,
        "      format: bundle\n",
    ))
    .await;

    let before = server.requests().len();
    let got = verdict(&v, &format!("{}/acme/app:v1", server.host)).await;
    assert_verified_by_workflow(&got, f);
    let asked = server.requests()[before..].to_vec();
    assert_eq!(
        asked.len(),
        4,
        "HEAD, referrers, bundle manifest, bundle: {asked:?}"
    );
    assert!(asked.iter().any(|r| r.contains("/referrers/")), "{asked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_trusted_root_is_picked_up_and_old_verdicts_are_not_served() {
    let f = fixtures();
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let host = registry.host.clone();
    let d = push_image(&pusher, "acme/app", "v1", &f.manifest).await;
    push_bundle(&pusher, "acme/app", &d, &f.bundle_bytes("dsse")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = root_file(dir.path(), f);
    let v = Vouch::start(&keyless_config(&host, &root, "")).await;
    let key = format!("{host}/acme/app:v1");
    assert_verified_by_workflow(&verdict(&v, &key).await, f);

    // Another instance's root (its own CA and log keys), written over the file in place.
    let other = sign(0);
    std::fs::write(&root, other.root_json()).expect("replace root");
    let distrusted = eventually(Duration::from_secs(3), || async {
        verdict(&v, &key).await["verified"] == false
    })
    .await;
    assert!(distrusted, "the old root's verdict is no longer served");
    let got = verdict(&v, &key).await;
    assert!(
        ["untrusted-signer", "invalid-signature"].contains(&got["code"].as_str().unwrap_or("")),
        "{got}"
    );

    // A root that does not load keeps the running engine (the new root).
    std::fs::write(&root, b"{\"mediaType\": \"nonsense\"}").expect("break root");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(verdict(&v, &key).await["verified"], false);
    let ready = ops_get(v.running.ops_addr, "/readyz").await;
    assert!(ready.text().contains("trustedRoot"), "{}", ready.text());
}

/// The identity the conformance suite signs its vectors with, unless a vector names its own.
const DEFAULT_ISSUER: &str = "https://token.actions.githubusercontent.com";
const DEFAULT_IDENTITY: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";

/// `vouch verify-bundle`, run as the binary, on the bundles of sigstore-conformance's
/// `bundle-verify` vectors: every `_fail` vector exits 1 (or 2 when its trusted root is
/// refused), every other exits 0.
#[test]
fn verify_bundle_runs_the_conformance_vectors_to_their_published_outcomes() {
    let vectors =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sigstore/conformance/bundle-verify");
    let dir = tempfile::tempdir().expect("tempdir");
    let production = dir.path().join("production_root.json");
    std::fs::write(
        &production,
        sigstore_trust_root::SIGSTORE_PRODUCTION_TRUSTED_ROOT,
    )
    .expect("root");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&vectors)
        .expect("vectors")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("bundle.sigstore.json").is_file())
        .collect();
    names.sort();
    assert!(names.len() >= 60, "{} vectors", names.len());
    let text = |p: &Path, default: &str| {
        std::fs::read_to_string(p).map_or(default.to_string(), |s| s.trim().to_string())
    };
    let mut outcomes = Vec::new();
    for v in &names {
        let name = v.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let root = if v.join("trusted_root.json").is_file() {
            v.join("trusted_root.json")
        } else {
            production.clone()
        };
        let config = dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &config,
            format!(
                "policies:\n- name: conformance\n  scopes: [\"example.com/*\"]\n  verifiers:\n  - keyless:\n      trustedRoot: {}\n      identities:\n      - issuer: {:?}\n        subject: {:?}\n",
                root.display(),
                text(&v.join("issuer"), DEFAULT_ISSUER),
                text(&v.join("identity"), DEFAULT_IDENTITY),
            ),
        )
        .expect("config");
        let artifact = if v.join("artifact").is_file() {
            v.join("artifact")
        } else {
            vectors.join("a.txt")
        };
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vouch"))
            .args(["verify-bundle", "--config"])
            .arg(&config)
            .args(["--policy", "conformance", "--bundle"])
            .arg(v.join("bundle.sigstore.json"))
            .arg("--artifact")
            .arg(&artifact)
            .output()
            .expect("vouch verify-bundle");
        let code = out.status.code().unwrap_or(-1);
        let expect_fail = name.ends_with("_fail");
        let ok = if expect_fail {
            code == 1 || (code == 2 && name.starts_with("trust-root"))
        } else {
            code == 0
        };
        assert!(
            ok,
            "{name}: exit {code}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        outcomes.push(format!("{name}: {code}"));
    }
    println!("conformance via verify-bundle: {}", outcomes.join(", "));
}

#[test]
fn verify_bundle_takes_a_digest_and_says_why_not() {
    let f = fixtures();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = root_file(dir.path(), f);
    let config = dir.path().join("vouch.yaml");
    std::fs::write(&config, keyless_config("registry.example", &root, "")).expect("config");
    let bundle = dir.path().join("bundle.json");
    std::fs::write(&bundle, f.bundle_bytes("slsa")).expect("bundle");
    let run = |digest: &str, policy: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_vouch"))
            .args(["verify-bundle", "--json", "--config"])
            .arg(&config)
            .args(["--policy", policy, "--bundle"])
            .arg(&bundle)
            .args(["--digest", digest])
            .output()
            .expect("vouch verify-bundle")
    };
    // An attestation verifies as a bundle, whatever its predicate type.
    let ok = run(&f.digest, "acme-ci");
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let json: Value = serde_json::from_slice(&ok.stdout).expect("json");
    assert_eq!(json["signer"], f.subject.as_str());
    assert_eq!(json["predicateType"], "https://slsa.dev/provenance/v1");
    let other = run(&f.other_digest, "acme-ci");
    assert_eq!(other.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&other.stdout).expect("json");
    assert_eq!(json["code"], "digest-mismatch", "{json}");
    assert_eq!(
        run(&f.digest, "nope").status.code(),
        Some(2),
        "no such policy"
    );
    assert_eq!(
        run("sha256:zz", "acme-ci").status.code(),
        Some(2),
        "not a digest"
    );
}
