//! Notary Project trust beyond the signature: RFC 3161 timestamps, ordinary CA chains and
//! revocation (OCSP and CRL), end to end through a real `docker-registry` and a running
//! vouch. Certificates, CRLs, OCSP answers and timestamp tokens come from OpenSSL's command
//! line (`openssl ca`, `openssl ts`, `openssl ocsp`); envelopes are signed by RustCrypto's
//! `rsa`. Proves that:
//! - an `openssl ca` chain whose intermediate has no extended key usage verifies, and a
//!   signature whose claimed signingTime lies inside an expired certificate's validity is
//!   `expired` (certificates are checked at the verification time);
//! - an authentic timestamp keeps a signature valid after its certificate expired, in JWS
//!   and in COSE envelopes; without it the same signature is `expired`; a token over another signature is
//!   `invalid-signature`; a TSA outside `tsaStore` is `untrusted-signer`;
//! - a revoked leaf (OCSP) or intermediate (CRL) is `revoked`; an unreachable responder is a
//!   systemError under `strict` and a logged fact under `permissive`; an oversized CRL is a
//!   clear failure; a URL on a host not in `revocationHosts` is never contacted;
//! - a second verification within `nextUpdate` fetches nothing, and a CRL near its
//!   `nextUpdate` is fetched again in the background;
//! - replicas sharing Redis share what they fetched: the second replica fetches nothing.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::layout::*;
use support::openssl::*;
use support::registry::*;
use support::*;

/// `date -u` with `args`, trimmed.
fn date(args: &[&str]) -> String {
    let out = std::process::Command::new("date")
        .arg("-u")
        .args(args)
        .output()
        .expect("date");
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

/// `YYYYMMDDHHMMSSZ`, `secs` from now (negative: in the past), for `openssl ca`.
fn asn1_time(secs: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    date(&["-d", &format!("@{}", now + secs), "+%Y%m%d%H%M%SZ"])
}

fn now_rfc3339() -> String {
    date(&["+%Y-%m-%dT%H:%M:%SZ"])
}

/// One notation policy per `(repo prefix, extra verifier fields)`.
fn config(host: &str, policies: &[(&str, String)], extra_top: &str) -> String {
    let mut y = format!(
        "cache: {{failedTtl: 1ms}}\n{extra_top}\nregistries:\n- host: {host}\n  plainHttp: true\npolicies:\n"
    );
    for (repo, fields) in policies {
        y += &format!(
            "- name: {repo}\n  scopes: [\"{host}/{repo}/*\"]\n  verifiers:\n  - notation: {{trustedIdentities: [\"*\"], {fields}}}\n"
        );
    }
    y
}

/// Pushes a new image to `repo:tag`, signs it with `signer` (through `edit`, which may add a
/// timestamp) and attaches the signature; returns the key.
async fn signed(
    registry: &Registry,
    pusher: &Pusher,
    repo: &str,
    tag: &str,
    signer: &NotarySigner,
    signing_time: &str,
    edit: impl FnOnce(Vec<u8>) -> Vec<u8>,
) -> String {
    let image = pusher.push_image(repo, tag).await;
    let me = Descriptor::of_manifest(&image.media_type, &image.manifest);
    let env = edit(signer.sign_jws(&target_payload(&me), signing_time, None));
    push_notation_signature(pusher, repo, &me, &env).await;
    format!("{}/{repo}:{tag}", registry.host)
}

async fn value(v: &Vouch, key: &str) -> Value {
    only_verdict(&v.verify(&[key]).await)
}

/// A failed verdict with `code` whose reason names `needle`.
fn assert_code_naming(got: &Value, code: &str, needle: &str) {
    assert_code(got, code);
    assert!(
        got["reason"].as_str().is_some_and(|r| r.contains(needle)),
        "{got}"
    );
}

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

#[tokio::test]
async fn an_openssl_chain_verifies_and_a_claimed_signing_time_does_not_count() {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let pki = OpensslPki::new(None);
    let inter = pki.intermediate_pem();
    let (key, cert, _) = pki.leaf(&SigningLeaf {
        cn: "release",
        ocsp: None,
        crl: None,
        validity: None,
    });
    let signer = NotarySigner::from_pem(&key, &cert).with_chain(&[&inter]);
    let (old_key, old_cert, _) = pki.leaf(&SigningLeaf {
        cn: "old-release",
        ocsp: None,
        crl: None,
        validity: Some(("20240101000000Z".into(), "20241231000000Z".into())),
    });
    let backdater = NotarySigner::from_pem(&old_key, &old_cert).with_chain(&[&inter]);
    let trust = format!("trustStore: [{}]", path(&pki.root.cert()));
    let v = Vouch::start(&config(&registry.host, &[("chain", trust)], "")).await;

    let ok = signed(
        &registry,
        &pusher,
        "chain/app",
        "1",
        &signer,
        &now_rfc3339(),
        |e| e,
    )
    .await;
    let got = value(&v, &ok).await;
    assert_eq!(got["verified"], true, "{got}");
    assert!(
        got["signatures"][0]["signer"]
            .as_str()
            .is_some_and(|s| s.contains("CN=release")),
        "{got}"
    );
    assert_eq!(
        got["signatures"][0]["detail"], "revocation not checked",
        "{got}"
    );

    // Made today with a certificate that expired in 2024, claiming a 2024 signing time.
    let backdated = signed(
        &registry,
        &pusher,
        "chain/app",
        "backdated",
        &backdater,
        "2024-06-01T00:00:00Z",
        |e| e,
    )
    .await;
    assert_code(&value(&v, &backdated).await, "expired");
}

#[tokio::test]
async fn an_authentic_timestamp_outlives_the_certificate() {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let pki = OpensslPki::new(None);
    let inter = pki.intermediate_pem();
    // The chain must be valid over the token's whole accuracy interval (±1 s): let the
    // CAs, made this second, age past it.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // Valid for a few more seconds: long enough to sign and timestamp.
    let (key, cert, _) = pki.leaf(&SigningLeaf {
        cn: "short-lived",
        ocsp: None,
        crl: None,
        validity: Some((asn1_time(-60), asn1_time(8))),
    });
    let signer = NotarySigner::from_pem(&key, &cert).with_chain(&[&inter]);
    let other = signer.sign_jws(b"{}", &now_rfc3339(), None);
    let foreign_token = pki.timestamp(&jws_signature(&other));
    let stamp = |e: Vec<u8>| {
        let token = pki.timestamp(&jws_signature(&e));
        with_timestamp(&e, &token)
    };
    let t = now_rfc3339();
    let stamped = signed(&registry, &pusher, "ts/app", "stamped", &signer, &t, stamp).await;
    let bare = signed(&registry, &pusher, "ts/app", "bare", &signer, &t, |e| e).await;
    let wrong = signed(&registry, &pusher, "ts/app", "wrong", &signer, &t, |e| {
        with_timestamp(&e, &foreign_token)
    })
    .await;
    // The same timestamped signature, under a policy whose tsaStore is another CA.
    let stamp2 = |e: Vec<u8>| {
        let token = pki.timestamp(&jws_signature(&e));
        with_timestamp(&e, &token)
    };
    let untrusted_tsa = signed(&registry, &pusher, "ts-other/app", "x", &signer, &t, stamp2).await;
    // The same in COSE: the token in the unprotected `io.cncf.notary.timestampSignature`.
    let mut cose = std::collections::HashMap::new();
    for (tag, stamped) in [("cose-stamped", true), ("cose-bare", false)] {
        let image = pusher.push_image("ts/app", tag).await;
        let me = Descriptor::of_manifest(&image.media_type, &image.manifest);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        let mut env = signer.sign_cose(&target_payload(&me), now);
        if stamped {
            let token = pki.timestamp(&cose_signature(&env));
            env = cose_with_timestamp(&env, &token);
        }
        push_notation_signature_as(&pusher, "ts/app", &me, &env, "application/cose").await;
        cose.insert(tag, format!("{}/ts/app:{tag}", registry.host));
    }

    let trust = path(&pki.root.cert());
    let policies = [
        (
            "ts",
            format!("trustStore: [{trust}], tsaStore: [{}]", path(&pki.tsa_root)),
        ),
        (
            "ts-other",
            format!("trustStore: [{trust}], tsaStore: [{trust}]"),
        ),
    ];
    let v = Vouch::start(&config(&registry.host, &policies, "")).await;
    // Until the certificate expires.
    tokio::time::sleep(Duration::from_secs(10)).await;

    let got = value(&v, &stamped).await;
    assert_eq!(got["verified"], true, "{got}");
    let ts = &got["signatures"][0]["timestamp"];
    assert!(
        ts["tsa"].as_str().is_some_and(|s| s.contains("Acme TSA")),
        "{got}"
    );
    assert!(ts["time"].as_str().is_some_and(|s| s.len() >= 20), "{got}");
    assert_code(&value(&v, &bare).await, "expired");
    assert_code(&value(&v, &wrong).await, "invalid-signature");
    assert_code(&value(&v, &untrusted_tsa).await, "untrusted-signer");
    for (tag, stamped) in [("cose-stamped", true), ("cose-bare", false)] {
        let got = value(&v, &cose[tag]).await;
        if stamped {
            assert_eq!(got["verified"], true, "{got}");
            assert!(
                got["signatures"][0]["timestamp"]["time"].is_string(),
                "{got}"
            );
        } else {
            assert_code(&got, "expired");
        }
    }
}

/// A revocation world: a registry, a loopback server for CRLs and OCSP, and a PKI whose
/// intermediate's status is in the root's CRL.
struct Revocable {
    registry: Registry,
    pusher: Pusher,
    server: RevocationServer,
    pki: OpensslPki,
}

impl Revocable {
    async fn new() -> Revocable {
        let server = RevocationServer::start().await;
        let pki = OpensslPki::new(Some(&server.crl_url("root")));
        server.publish_crl("root", pki.root.dir.join("crl.der"));
        server.publish_crl("intermediate", pki.intermediate.dir.join("crl.der"));
        let (cert, key) = pki.ocsp_signer(&pki.intermediate);
        server.publish_ocsp("intermediate", pki.intermediate.dir.clone(), cert, key);
        let registry = Registry::start();
        let pusher = Pusher::new(&registry);
        Revocable {
            registry,
            pusher,
            server,
            pki,
        }
    }

    fn signer(
        &self,
        cn: &str,
        ocsp: Option<String>,
        crl: Option<String>,
    ) -> (NotarySigner, std::path::PathBuf) {
        let (key, cert, file) = self.pki.leaf(&SigningLeaf {
            cn,
            ocsp,
            crl,
            validity: None,
        });
        let inter = self.pki.intermediate_pem();
        (
            NotarySigner::from_pem(&key, &cert).with_chain(&[&inter]),
            file,
        )
    }

    fn policy(&self, repo: &str, fields: &str) -> (&'static str, String) {
        let name: &'static str = Box::leak(repo.to_string().into_boxed_str());
        (
            name,
            format!(
                "trustStore: [{}], revocationHosts: [\"127.0.0.1\"]{fields}",
                path(&self.pki.root.cert())
            ),
        )
    }

    async fn sign(&self, repo: &str, tag: &str, signer: &NotarySigner) -> String {
        signed(
            &self.registry,
            &self.pusher,
            &format!("{repo}/app"),
            tag,
            signer,
            &now_rfc3339(),
            |e| e,
        )
        .await
    }
}

#[tokio::test]
async fn revoked_leaves_and_intermediates_are_revoked_and_answers_are_reused() {
    let w = Revocable::new().await;
    let ocsp = Some(w.server.ocsp_url("intermediate"));
    let (good, _) = w.signer("good", ocsp.clone(), None);
    let (bad, bad_file) = w.signer("bad", ocsp, None);
    w.pki.intermediate.revoke(&bad_file, 3600);
    let v = Vouch::start(&config(&w.registry.host, &[w.policy("rev", "")], "")).await;

    let got = value(&v, &w.sign("rev", "good", &good).await).await;
    assert_eq!(got["verified"], true, "{got}");
    let rev = &got["signatures"][0]["revocation"];
    assert_eq!(rev[0]["method"], "ocsp", "{got}");
    assert_eq!(rev[0]["status"], "good", "{got}");
    assert!(
        rev[0]["nextUpdate"].as_str().is_some_and(|s| !s.is_empty()),
        "{got}"
    );
    assert_eq!(
        rev[1]["method"], "crl",
        "the intermediate, by the root's CRL: {got}"
    );
    assert_eq!(rev[1]["status"], "good", "{got}");
    let got = value(&v, &w.sign("rev", "bad", &bad).await).await;
    assert_code_naming(&got, "revoked", "CN=bad");

    // Another image by the good signer: the OCSP answer and the CRL are reused.
    let (ocsp_hits, crl_hits) = (
        w.server.hits("/ocsp/intermediate"),
        w.server.hits("/crl/root"),
    );
    assert_eq!(crl_hits, 1, "one CRL fetch for both leaves");
    let got = value(&v, &w.sign("rev", "again", &good).await).await;
    assert_eq!(got["verified"], true, "{got}");
    assert_eq!(w.server.hits("/ocsp/intermediate"), ocsp_hits);
    assert_eq!(w.server.hits("/crl/root"), crl_hits);

    // The root revokes the intermediate: a fresh vouch (empty caches) sees it in the CRL.
    w.pki.root.revoke(&w.pki.intermediate.cert(), 3600);
    let v2 = Vouch::start(&config(&w.registry.host, &[w.policy("rev", "")], "")).await;
    let got = value(&v2, &w.sign("rev", "after", &good).await).await;
    assert_code_naming(&got, "revoked", "Acme Signing CA");
}

#[tokio::test]
async fn unreachable_oversized_and_unallowed_sources() {
    let w = Revocable::new().await;
    let dead = format!("http://127.0.0.1:{}/ocsp", free_port());
    let (down, _) = w.signer("down", Some(dead), None);
    // Published on a host name the verifiers do not allow (the same server, as localhost).
    let localhost = w
        .server
        .crl_url("intermediate")
        .replace("127.0.0.1", "localhost");
    let (elsewhere, _) = w.signer("elsewhere", None, Some(localhost));
    let (big, _) = w.signer("big", None, Some(w.server.crl_url("intermediate")));
    let policies = [
        w.policy("strict", ""),
        w.policy("permissive", ", level: permissive"),
        w.policy("small", ""),
    ];
    let v = Vouch::start(&config(&w.registry.host, &policies[..2], "")).await;

    // Strict: the responder is down → no verdict, a systemError naming the key.
    let key = w.sign("strict", "down", &down).await;
    let r = v.verify(&[&key]).await;
    let err = r["response"]["systemError"].as_str().unwrap_or_default();
    assert!(err.contains(&key) && err.contains("revocation"), "{r}");
    // Permissive: verified, and the report says what happened.
    let got = value(&v, &w.sign("permissive", "down", &down).await).await;
    assert_eq!(got["verified"], true, "{got}");
    assert_eq!(
        got["signatures"][0]["revocation"][0]["status"], "unavailable",
        "{got}"
    );
    assert!(
        got["signatures"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("logged:") || d.contains("logged:")),
        "{got}"
    );

    // A host not in revocationHosts is never contacted.
    let got = value(&v, &w.sign("strict", "elsewhere", &elsewhere).await).await;
    assert_code_naming(&got, "untrusted-signer", "revocationHosts");
    assert_eq!(w.server.hits("/crl/intermediate"), 0);

    // A CRL over revocation.maxCrlBytes: a clear failure naming the limit.
    let v = Vouch::start(&config(
        &w.registry.host,
        &policies[2..],
        "revocation: {maxCrlBytes: 64}",
    ))
    .await;
    let got = value(&v, &w.sign("small", "big", &big).await).await;
    assert_code_naming(
        &got,
        "untrusted-signer",
        "64-byte limit (revocation.maxCrlBytes)",
    );
}

#[tokio::test]
async fn a_crl_is_fetched_again_in_the_background_before_it_expires() {
    let w = Revocable::new().await;
    // The intermediate's CRL is current for 8 s; vouch refreshes within 6 s of that.
    w.pki.intermediate.publish_crl(8);
    let (signer, _) = w.signer("crl-only", None, Some(w.server.crl_url("intermediate")));
    let v = Vouch::start(&config(
        &w.registry.host,
        &[w.policy("bg", "")],
        "revocation: {refreshBefore: 6s}",
    ))
    .await;
    let got = value(&v, &w.sign("bg", "one", &signer).await).await;
    assert_eq!(got["verified"], true, "{got}");
    assert_eq!(w.server.hits("/crl/intermediate"), 1);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Answered from the cache (still current) and refreshed behind the answer.
    let got = value(&v, &w.sign("bg", "two", &signer).await).await;
    assert_eq!(got["verified"], true, "{got}");
    let mut hits = 0;
    for _ in 0..40 {
        hits = w.server.hits("/crl/intermediate");
        if hits >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(hits, 2, "one background refresh");
    let fetched = v
        .metric("vouch_revocation_fetches_total{method=\"crl\",outcome=\"ok\"}")
        .await;
    assert!(fetched >= 2.0, "{fetched}");
}

#[tokio::test]
async fn replicas_sharing_redis_share_revocation_sources() {
    let w = Revocable::new().await;
    let redis = support::redis::RedisServer::start();
    let ocsp = Some(w.server.ocsp_url("intermediate"));
    let (signer, _) = w.signer("shared", ocsp, None);
    let yaml = config(
        &w.registry.host,
        &[w.policy("rep", "")],
        &format!("redis: {{url: \"{}\"}}", redis.url),
    );
    let a = Vouch::start(&yaml).await;
    let b = Vouch::start(&yaml).await;
    let got = value(&a, &w.sign("rep", "one", &signer).await).await;
    assert_eq!(got["verified"], true, "{got}");
    let fetched = (
        w.server.hits("/ocsp/intermediate"),
        w.server.hits("/crl/root"),
    );
    assert_eq!(
        fetched,
        (1, 1),
        "the leaf by OCSP, the intermediate by the root's CRL"
    );
    // Another image on the other replica: its revocation lookups are answered from Redis.
    let got = value(&b, &w.sign("rep", "two", &signer).await).await;
    assert_eq!(got["verified"], true, "{got}");
    assert_eq!(
        (
            w.server.hits("/ocsp/intermediate"),
            w.server.hits("/crl/root")
        ),
        fetched
    );
    let hits = b
        .metric("vouch_revocation_cache_total{method=\"ocsp\",result=\"hit\"}")
        .await;
    assert_eq!(hits, 1.0);
}
