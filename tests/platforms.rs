//! Multi-platform images: OCI indexes pushed byte for byte into Debian's `docker-registry`,
//! signed on the index, on each platform manifest, or partly, by an independent cosign
//! signer (RustCrypto p256). What it proves: `platforms: index` needs the index's signature
//! and nothing else; `each` needs every platform's own signature and names the unsigned one,
//! and verifies an index without any amd64 platform (no platform is ever guessed);
//! `index-or-each` passes either way and says which digests verified; an index over
//! `limits.maxPlatforms` is refused with `invalid-image` and a hint naming the limit; a
//! second index sharing platforms verifies only what is new (the shared platform's
//! manifest is not even fetched again); and a cold index under `each` costs one manifest
//! fetch and one signature discovery per platform, nothing twice.

mod support;

use serde_json::Value;
use support::registry::*;
use support::*;

async fn verdict(v: &Vouch, key: &str) -> Value {
    only_verdict(&v.verify(&[key]).await)
}

/// How an index and its platforms are signed.
#[derive(Clone, Copy)]
enum Signed {
    Index,
    Children,
    FirstChildOnly,
}

/// An index of `platforms` under `repo:v1`, signed as `signed` says by `key`. Returns the
/// index and its children.
async fn index(
    pusher: &Pusher,
    key: &CosignKey,
    host: &str,
    repo: &str,
    platforms: &[(&str, &str)],
    signed: Signed,
) -> (Image, Vec<Image>) {
    let mut children = Vec::new();
    for i in 0..platforms.len() {
        children.push(pusher.push_image(repo, &format!("p{i}")).await);
    }
    let entries: Vec<(&Image, &str, &str)> = children
        .iter()
        .zip(platforms)
        .map(|(c, (os, arch))| (c, *os, *arch))
        .collect();
    let idx = pusher.push_index_with(repo, "v1", &entries).await;
    let sign = |digest: &str| key.sign_image(&format!("{host}/{repo}"), digest);
    match signed {
        Signed::Index => {
            push_cosign_signatures(pusher, repo, &idx.digest, &[sign(&idx.digest)]).await;
        }
        Signed::Children | Signed::FirstChildOnly => {
            let n = if matches!(signed, Signed::Children) {
                children.len()
            } else {
                1
            };
            for c in &children[..n] {
                push_cosign_signatures(pusher, repo, &c.digest, &[sign(&c.digest)]).await;
            }
        }
    }
    (idx, children)
}

const LINUX_2: [(&str, &str); 2] = [("linux", "amd64"), ("linux", "arm64")];

fn config(host: &str, key_file: &str) -> String {
    let policy = |name: &str, platforms: &str| {
        format!(
            "- name: {name}\n  scopes: [\"{host}/{name}/*\"]\n  platforms: {platforms}\n  verifiers: [{{cosign: {{publicKeys: [{key_file}]}}}}]\n"
        )
    };
    format!(
        "limits: {{maxPlatforms: 8}}\nregistries:\n- host: {host}\n  plainHttp: true\npolicies:\n{}{}{}",
        policy("index", "index"),
        policy("each", "each"),
        policy("either", "index-or-each"),
    )
}

struct Setup {
    registry: Registry,
    pusher: Pusher,
    key: CosignKey,
    host: String,
    _dir: tempfile::TempDir,
    v: Vouch,
}

async fn setup() -> Setup {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let host = registry.host.clone();
    let key = CosignKey::generate();
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("k.pub");
    std::fs::write(&key_file, key.public_pem()).expect("key");
    let v = Vouch::start(&config(&host, &key_file.display().to_string())).await;
    Setup {
        registry,
        pusher,
        key,
        host,
        _dir: dir,
        v,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mode_asks_for_what_it_says_and_never_guesses_a_platform() {
    let s = setup().await;
    let (h, p, k) = (&s.host, &s.pusher, &s.key);
    for mode in ["index", "each", "either"] {
        index(
            p,
            k,
            h,
            &format!("{mode}/signed-index"),
            &LINUX_2,
            Signed::Index,
        )
        .await;
        index(
            p,
            k,
            h,
            &format!("{mode}/signed-children"),
            &LINUX_2,
            Signed::Children,
        )
        .await;
        index(
            p,
            k,
            h,
            &format!("{mode}/half"),
            &LINUX_2,
            Signed::FirstChildOnly,
        )
        .await;
    }
    let key = |mode: &str, repo: &str| format!("{h}/{mode}/{repo}:v1");

    // index: the index's signature, nothing else.
    assert_eq!(
        verdict(&s.v, &key("index", "signed-index")).await["verified"],
        true
    );
    assert_code(
        &verdict(&s.v, &key("index", "signed-children")).await,
        "unsigned",
    );

    // each: every platform, each with its own signature.
    let got = verdict(&s.v, &key("each", "signed-children")).await;
    assert_eq!(got["verified"], true, "{got}");
    let platforms: Vec<&str> = got["platforms"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["platform"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"], "{got}");
    let half = verdict(&s.v, &key("each", "half")).await;
    assert_code(&half, "unsigned");
    assert!(
        half["reason"]
            .as_str()
            .is_some_and(|r| r.contains("linux/arm64")),
        "names the unsigned platform: {half}"
    );
    assert_eq!(half["platforms"][0]["verified"], true, "{half}");
    assert_eq!(half["platforms"][1]["verified"], false, "{half}");
    let index_only = verdict(&s.v, &key("each", "signed-index")).await;
    assert_code(&index_only, "unsigned");

    // index-or-each: either passes; the report says which digests verified.
    let by_index = verdict(&s.v, &key("either", "signed-index")).await;
    assert_eq!(by_index["verified"], true, "{by_index}");
    assert_eq!(
        by_index["platforms"],
        Value::Null,
        "the index itself: {by_index}"
    );
    let by_children = verdict(&s.v, &key("either", "signed-children")).await;
    assert_eq!(by_children["verified"], true, "{by_children}");
    assert_eq!(by_children["platforms"].as_array().map(Vec::len), Some(2));
    let neither = verdict(&s.v, &key("either", "half")).await;
    assert_code(&neither, "unsigned");
    assert!(
        neither["reason"]
            .as_str()
            .is_some_and(|r| r.contains("neither")),
        "{neither}"
    );

    // No amd64 at all: verified platform by platform, nothing guessed.
    let arm_only = [("linux", "arm64"), ("linux", "s390x")];
    index(p, k, h, "each/arm-only", &arm_only, Signed::Children).await;
    let got = verdict(&s.v, &key("each", "arm-only")).await;
    assert_eq!(got["verified"], true, "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_over_the_limit_is_refused_with_a_hint() {
    let s = setup().await;
    let many: Vec<(&str, &str)> = (0..40).map(|_| ("linux", "arm64")).collect();
    // Forty entries of two images: distribution only needs the children to exist.
    let a = s.pusher.push_image("each/many", "a").await;
    let b = s.pusher.push_image("each/many", "b").await;
    let entries: Vec<(&Image, &str, &str)> = many
        .iter()
        .enumerate()
        .map(|(i, (os, arch))| (if i % 2 == 0 { &a } else { &b }, *os, *arch))
        .collect();
    s.pusher.push_index_with("each/many", "v1", &entries).await;
    let got = verdict(&s.v, &format!("{}/each/many:v1", s.host)).await;
    assert_code(&got, "invalid-image");
    assert!(
        got["reason"]
            .as_str()
            .is_some_and(|r| r.contains("40") && r.contains("maxPlatforms")),
        "{got}"
    );
    assert!(
        got["hint"]
            .as_str()
            .is_some_and(|h| h.contains("maxPlatforms")),
        "{got}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platforms_are_fetched_and_verified_once_each() {
    let s = setup().await;
    let (h, p, k) = (&s.host, &s.pusher, &s.key);
    let three = [("linux", "amd64"), ("linux", "arm64"), ("windows", "amd64")];
    let (_, children) = index(p, k, h, "each/three", &three, Signed::Children).await;
    s.registry.settle_log().await;
    let before = s.registry.access_log().len();
    let got = verdict(&s.v, &format!("{h}/each/three:v1")).await;
    assert_eq!(got["verified"], true, "{got}");
    s.registry.settle_log().await;
    let asked = s.registry.requests_since(before);
    // HEAD and GET of the index, then per platform its manifest, its .sig manifest and its
    // payload: 2 + 3 × 3.
    assert_eq!(asked.len(), 11, "{asked:?}");
    for c in &children {
        let of_child = asked.iter().filter(|l| l.uri.contains(&c.digest)).count();
        assert_eq!(of_child, 1, "one manifest fetch of {}: {asked:?}", c.digest);
    }

    // A second index sharing the first platform: only the new one is fetched and verified.
    let shared = &children[0];
    let new = p.push_image("each/three", "new").await;
    push_cosign_signatures(
        p,
        "each/three",
        &new.digest,
        &[k.sign_image(&format!("{h}/each/three"), &new.digest)],
    )
    .await;
    p.push_index_with(
        "each/three",
        "v2",
        &[(shared, "linux", "amd64"), (&new, "linux", "riscv64")],
    )
    .await;
    s.registry.settle_log().await;
    let before = s.registry.access_log().len();
    let got = verdict(&s.v, &format!("{h}/each/three:v2")).await;
    assert_eq!(got["verified"], true, "{got}");
    s.registry.settle_log().await;
    let asked = s.registry.requests_since(before);
    assert!(
        asked.iter().all(|l| !l.uri.contains(&shared.digest)),
        "the shared platform is not fetched again: {asked:?}"
    );
    assert_eq!(
        asked.len(),
        5,
        "HEAD, index, the new platform's manifest, .sig, payload: {asked:?}"
    );
}
