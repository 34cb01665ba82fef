//! The registry fault campaign: a fault-injecting HTTP proxy between vouch (a child process)
//! and a real `docker-registry`, one fault at a time, each on a fresh pair of images (one
//! cosign-signed, one unsigned) so no cache hides it. For every fault: the outcome class
//! SPEC §1 assigns (verdict, per-key error, or `systemError`), never `verified: true` for
//! anything the registry did not serve intact and properly signed, an answer no later than
//! the deadline plus 50 ms; after the campaign, vouch's tasks and file descriptors are back
//! at their idle level.
//!
//! A second table pushes hostile *content* through the real registry, as anyone with push
//! rights could (junk and oversized signature layers, too many signatures, a `.sig` tag that
//! is not a signature manifest, oversized or malformed referrers): each is a verdict, junk
//! beside a valid signature never hides it, and nothing becomes a per-key error or a
//! `systemError`, which fail-open would admit.
//!
//! `cargo test --test faults -- --nocapture` prints one line per fault.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::faults::{Fault, FaultProxy, Rule};
use support::layout::{
    Descriptor, NOTARY_SIGNATURE, NotarySigner, fixtures_dir, push_notation_signature,
    push_referrer, target_payload,
};
use support::registry::*;
use support::*;

const DEADLINE: Duration = Duration::from_millis(2000);
/// How late an answer may be, beyond the deadline.
const SLACK: Duration = Duration::from_millis(50);
const MAX_MANIFEST: usize = 65536;
const MAX_SIGNATURE: usize = 16384;

/// What one key should get.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// A verdict with `verified: true` (the signed image, served intact in the end).
    Verified,
    /// A verdict with `verified: false` and this code.
    Failed(&'static str),
    /// A per-key error whose text starts with this code.
    Error(&'static str),
    /// No item; the key is named in `systemError`.
    System,
}

/// What one key got.
#[derive(Debug, Clone, PartialEq)]
enum Got {
    Verified,
    Failed(String),
    Error(String),
    System,
    Other(String),
}

impl Got {
    fn of(response: &Value, key: &str) -> Got {
        let r = &response["response"];
        let item = r["items"]
            .as_array()
            .and_then(|items| items.iter().find(|i| i["key"] == key));
        match item {
            Some(i) if i["value"]["verified"] == true => Got::Verified,
            Some(i) if i["value"]["verified"] == false => {
                Got::Failed(i["value"]["code"].as_str().unwrap_or("").to_string())
            }
            Some(i) if i["error"].is_string() => {
                Got::Error(i["error"].as_str().unwrap_or("").to_string())
            }
            None if r["systemError"].as_str().is_some_and(|e| e.contains(key)) => Got::System,
            _ => Got::Other(response.to_string()),
        }
    }

    fn matches(&self, want: Expect) -> bool {
        match (self, want) {
            (Got::Verified, Expect::Verified) | (Got::System, Expect::System) => true,
            (Got::Failed(code), Expect::Failed(want)) => code == want,
            (Got::Error(text), Expect::Error(prefix)) => text.starts_with(prefix),
            _ => false,
        }
    }

    fn short(&self) -> String {
        match self {
            Got::Verified => "verified".into(),
            Got::Failed(code) => format!("failed {code}"),
            Got::Error(text) => format!("error {}", text.split(':').next().unwrap_or("")),
            Got::System => "systemError".into(),
            Got::Other(s) => format!("?? {s}"),
        }
    }
}

struct Case {
    name: &'static str,
    /// Rules for this case; `{signed}` and `{both}` in a path are replaced by the signed
    /// image's repository path and the prefix both repositories share.
    rules: Vec<Rule>,
    signed: Expect,
    unsigned: Expect,
}

fn case(name: &'static str, rules: Vec<Rule>, signed: Expect, unsigned: Expect) -> Case {
    Case {
        name,
        rules,
        signed,
        unsigned,
    }
}

fn status(code: u16, retry_after: Option<&str>) -> Fault {
    Fault::Status {
        code,
        retry_after: retry_after.map(str::to_string),
    }
}

fn cases(elsewhere: std::net::SocketAddr) -> Vec<Case> {
    use Expect::*;
    use Fault::*;
    let ms = Duration::from_millis;
    // `{both}` matches every request of the case (both repositories share the prefix),
    // `{signed}` only the signed image's; `sig` narrows to the signed image's cosign
    // signature manifest, `blob` is its signature payload.
    let both = |f: Fault| Rule::path(None, "{both}", f);
    let sig = |f: Fault| Rule::path("GET", "{signed}", f).sig();
    let blob = |f: Fault| Rule::path("GET", "{signed}/blobs/", f);
    vec![
        case(
            "latency 150 ms on every response",
            vec![both(Delay(ms(150)))],
            Verified,
            Failed("unsigned"),
        ),
        case(
            "latency beyond the deadline",
            vec![both(Delay(ms(3000)))],
            System,
            System,
        ),
        case(
            "reset mid-body, every time",
            vec![sig(ResetMidBody)],
            System,
            Failed("unsigned"),
        ),
        case(
            "reset mid-body, once",
            vec![sig(ResetMidBody).times(1)],
            Verified,
            Failed("unsigned"),
        ),
        case(
            "500 every time",
            vec![both(status(500, None))],
            System,
            System,
        ),
        case(
            "502 twice, then healthy",
            vec![both(status(502, None)).times(2)],
            Verified,
            Failed("unsigned"),
        ),
        case(
            "503 every time",
            vec![both(status(503, None))],
            System,
            System,
        ),
        case(
            "429 once, no Retry-After",
            vec![both(status(429, None)).times(1)],
            Verified,
            Failed("unsigned"),
        ),
        case(
            "429 twice, Retry-After: 0",
            vec![both(status(429, Some("0"))).times(2)],
            Verified,
            Failed("unsigned"),
        ),
        case(
            "429 every time, Retry-After: 1",
            vec![both(status(429, Some("1")))],
            System,
            System,
        ),
        case(
            "truncated body, every time",
            vec![sig(Truncate)],
            System,
            Failed("unsigned"),
        ),
        case(
            "truncated body, once",
            vec![sig(Truncate).times(1)],
            Verified,
            Failed("unsigned"),
        ),
        case(
            "Content-Length 10 too large",
            vec![sig(ContentLength(10))],
            System,
            Failed("unsigned"),
        ),
        case(
            "Content-Length 10 too small",
            vec![sig(ContentLength(-10))],
            Failed("digest-mismatch"),
            Failed("unsigned"),
        ),
        // Content a pusher controls: a verdict, never an error fail-open would admit.
        case(
            "oversized signature manifest",
            vec![sig(Oversize(MAX_MANIFEST + 1))],
            Failed("invalid-signature"),
            Failed("unsigned"),
        ),
        case(
            "oversized signature blob",
            vec![blob(Oversize(MAX_SIGNATURE + 1))],
            Failed("invalid-signature"),
            Failed("unsigned"),
        ),
        case(
            "signature manifest not matching its digest",
            vec![sig(Corrupt)],
            Failed("digest-mismatch"),
            Failed("unsigned"),
        ),
        case(
            "signature blob not matching its digest",
            vec![blob(Corrupt)],
            Failed("digest-mismatch"),
            Failed("unsigned"),
        ),
        case(
            "tag resolved to a digest the registry does not have",
            vec![Rule::path("HEAD", "{both}", Corrupt)],
            Failed("unsigned"),
            Failed("unsigned"),
        ),
        case(
            "redirect to an unconfigured host",
            vec![both(Redirect(format!(
                "http://{elsewhere}/v2/x/manifests/y"
            )))],
            Error("registry-protocol"),
            Error("registry-protocol"),
        ),
        case(
            "response trickled, in time",
            vec![Rule::path("HEAD", "{signed}", Trickle(ms(1)))],
            Verified,
            Failed("unsigned"),
        ),
        case(
            "response trickled past the deadline",
            vec![sig(Trickle(ms(20)))],
            System,
            Failed("unsigned"),
        ),
        case(
            "garbage instead of HTTP",
            vec![both(Garbage)],
            System,
            System,
        ),
    ]
}

trait SigRule {
    /// Narrows a rule to cosign signature manifests (`…/manifests/sha256-<hex>.sig`).
    fn sig(self) -> Rule;
}

impl SigRule for Rule {
    fn sig(self) -> Rule {
        Rule {
            path_contains: format!("{}/manifests/sha256-", self.path_contains),
            ..self
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_faults_never_turn_into_a_pass() {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let proxy = FaultProxy::start(registry.addr).await;
    let key = CosignKey::generate();
    let elsewhere = CountingListener::start().await;
    let cases = cases(elsewhere.addr);

    // Each case: `acme/caseNN` signed, `acme/caseNN-bare` unsigned, both named through the
    // proxy (the signature names the proxy's host, which is what vouch sees).
    for i in 0..cases.len() {
        let repo = format!("acme/case{i:02}");
        push_signed(&pusher, &key, &proxy.host, &repo, "v1").await;
        pusher.push_image(&format!("{repo}-bare"), "v1").await;
    }
    let keys = tempfile::tempdir().expect("tempdir");
    let key_file = keys.path().join("campaign.pub");
    std::fs::write(&key_file, key.public_pem()).expect("key");
    let vouch = VouchProcess::start(&format!(
        "deadline: {}ms\nregistryTimeout: 1500ms\nregistryIdleTimeout: 1s\nverificationBudget: 3s\nlimits: {{maxManifestBytes: {MAX_MANIFEST}, maxSignatureBytes: {MAX_SIGNATURE}}}\ncache: {{registryBackoff: 0s}}\nregistries:\n- host: {host}\n  plainHttp: true\npolicies:\n- name: acme\n  scopes: [\"{host}/acme/*\"]\n  verifiers:\n  - cosign: {{publicKeys: [{key}]}}\n",
        DEADLINE.as_millis(),
        host = proxy.host,
        key = key_file.display()
    ))
    .await;
    let mut conn = vouch.connect().await;
    // One verification through the proxy first: the registry client's connection pool and
    // its idle-connection reaper exist from then on, so they are part of the idle level.
    push_signed(&pusher, &key, &proxy.host, "acme/warm", "v1").await;
    let warm = format!("{}/acme/warm:v1", proxy.host);
    let reply = conn
        .post("/v1/verify", provider_request(&[&warm]))
        .await
        .expect("answered");
    assert_eq!(
        Got::of(&reply.json(), &warm),
        Got::Verified,
        "{}",
        reply.text()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = vouch.footprint().await;

    let mut failures = Vec::new();
    let mut worst = Duration::ZERO;
    for (i, c) in cases.iter().enumerate() {
        let repo = format!("acme/case{i:02}");
        proxy.clear();
        for rule in &c.rules {
            let path = rule
                .path_contains
                .replace("{signed}", &format!("/v2/{repo}/"))
                .replace("{both}", &format!("/v2/{repo}"))
                // `{signed}…/manifests` would otherwise hold a double slash.
                .replace("//", "/");
            proxy.on(Rule {
                path_contains: path,
                ..rule.clone()
            });
        }
        let signed = format!("{}/{repo}:v1", proxy.host);
        let bare = format!("{}/{repo}-bare:v1", proxy.host);
        let seen_before = proxy.log().len();
        let started = Instant::now();
        let reply = conn
            .post("/v1/verify", provider_request(&[&signed, &bare]))
            .await
            .expect("answered");
        let took = started.elapsed();
        worst = worst.max(took);
        assert_eq!(reply.status, 200);
        let response = reply.json();
        let (got_signed, got_bare) = (Got::of(&response, &signed), Got::of(&response, &bare));
        let applied = proxy.log()[seen_before..]
            .iter()
            .filter(|s| s.fault.is_some())
            .count();
        println!(
            "fault: {:<52} signed: {:<24} unsigned: {:<24} {:>4} ms, {applied} faulted responses",
            c.name,
            got_signed.short(),
            got_bare.short(),
            took.as_millis()
        );
        // The security property first: an unsigned image is never verified, and a signed
        // one only when the case lets the registry's answer through intact in the end.
        if got_bare == Got::Verified {
            failures.push(format!("{}: unsigned image verified", c.name));
        }
        if got_signed == Got::Verified && !matches!(c.signed, Expect::Verified) {
            failures.push(format!("{}: signed image verified through a fault", c.name));
        }
        if !got_signed.matches(c.signed) {
            failures.push(format!(
                "{}: signed got {got_signed:?}, want {:?}",
                c.name, c.signed
            ));
        }
        if !got_bare.matches(c.unsigned) {
            failures.push(format!(
                "{}: unsigned got {got_bare:?}, want {:?}",
                c.name, c.unsigned
            ));
        }
        if took > DEADLINE + SLACK {
            failures.push(format!("{}: answered after {took:?}", c.name));
        }
        if applied == 0 {
            failures.push(format!("{}: the fault never applied", c.name));
        }
    }
    println!("fault: worst answer time {} ms", worst.as_millis());
    assert_eq!(elsewhere.connections(), 0, "a redirect was followed");

    // Healthy again: a new image verifies through the same proxy without faults.
    proxy.clear();
    push_signed(&pusher, &key, &proxy.host, "acme/after", "v1").await;
    let after = format!("{}/acme/after:v1", proxy.host);
    let reply = conn
        .post("/v1/verify", provider_request(&[&after]))
        .await
        .expect("answered");
    assert_eq!(
        Got::of(&reply.json(), &after),
        Got::Verified,
        "{}",
        reply.text()
    );
    drop(conn);

    // Background verifications end within the 3 s budget; closing the proxy's side ends
    // vouch's pooled registry connections. Then tasks and descriptors are back to idle.
    drop(proxy);
    vouch.assert_back_to(baseline, "fault").await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Lists, among the referrers of `subject`, a manifest typed as a Notary Project signature
/// whose size is over `MAX_MANIFEST` (a padding annotation).
async fn push_oversized_referrer(pusher: &Pusher, repo: &str, subject: &Descriptor) {
    let big = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": NOTARY_SIGNATURE,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
            "digest": pusher.push_blob(repo, b"{}").await, "size": 2},
        "layers": [],
        "subject": subject.subject_json(),
        "annotations": {"padding": "p".repeat(MAX_MANIFEST)},
    }))
    .expect("json");
    push_referrer(pusher, repo, &subject.digest, &big, NOTARY_SIGNATURE).await;
}

/// One pushed-content case: the repository (its image is tagged `v1`) and what that image
/// should get.
struct Pushed {
    repo: &'static str,
    want: Expect,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_content_is_a_verdict_never_an_error() {
    use Expect::*;
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let host = registry.host.clone();
    let key = CosignKey::generate();
    let signer = NotarySigner::e2e();
    let valid = |repo: &str, digest: &str| key.sign_image(&format!("{host}/{repo}"), digest);
    let bogus = |i: usize| CosignSignature {
        payload: format!("junk {i}").into_bytes(),
        signature_b64: "AAAA".into(),
    };
    let oversized = CosignSignature {
        payload: vec![b'x'; MAX_SIGNATURE + 1],
        signature_b64: "AAAA".into(),
    };
    let mut cases = Vec::new();

    // cosign, tag scheme.
    let image = pusher.push_image("cos/junk-beside-valid", "v1").await;
    let sigs = [
        oversized.clone(),
        valid("cos/junk-beside-valid", &image.digest),
    ];
    push_cosign_signatures(&pusher, "cos/junk-beside-valid", &image.digest, &sigs).await;
    cases.push(Pushed {
        repo: "cos/junk-beside-valid",
        want: Verified,
    });

    let image = pusher.push_image("cos/junk-only", "v1").await;
    push_cosign_signatures(
        &pusher,
        "cos/junk-only",
        &image.digest,
        std::slice::from_ref(&oversized),
    )
    .await;
    cases.push(Pushed {
        repo: "cos/junk-only",
        want: Failed("invalid-signature"),
    });

    // More candidates than limits.maxSignatures (4): the first four are examined.
    let image = pusher.push_image("cos/valid-first", "v1").await;
    let mut sigs = vec![valid("cos/valid-first", &image.digest)];
    sigs.extend((0..6).map(bogus));
    push_cosign_signatures(&pusher, "cos/valid-first", &image.digest, &sigs).await;
    cases.push(Pushed {
        repo: "cos/valid-first",
        want: Verified,
    });

    let image = pusher.push_image("cos/valid-buried", "v1").await;
    let mut sigs: Vec<_> = (0..6).map(bogus).collect();
    sigs.push(valid("cos/valid-buried", &image.digest));
    push_cosign_signatures(&pusher, "cos/valid-buried", &image.digest, &sigs).await;
    cases.push(Pushed {
        repo: "cos/valid-buried",
        want: Failed("invalid-signature"),
    });

    // The `.sig` tag holds an index, not a signature manifest: no signature layer at all.
    let image = pusher.push_image("cos/sig-is-an-index", "v1").await;
    let other = pusher.push_image("cos/sig-is-an-index", "other").await;
    pusher
        .push_index(
            "cos/sig-is-an-index",
            &signature_tag(&image.digest),
            &[other],
        )
        .await;
    cases.push(Pushed {
        repo: "cos/sig-is-an-index",
        want: Failed("unsigned"),
    });

    // Notary Project, tag-schema referrers.
    let now = "2026-01-01T00:00:00Z";
    let notary = |image: &Image| Descriptor::of_manifest(&image.media_type, &image.manifest);
    // A referrer typed as a Notary signature whose manifest is over maxManifestBytes,
    // listed before a valid signature.
    let image = pusher.push_image("nv/big-referrer", "v1").await;
    let me = notary(&image);
    push_oversized_referrer(&pusher, "nv/big-referrer", &me).await;
    let env = signer.sign_jws(&target_payload(&me), now, None);
    push_notation_signature(&pusher, "nv/big-referrer", &me, &env).await;
    cases.push(Pushed {
        repo: "nv/big-referrer",
        want: Verified,
    });

    // The same oversized referrer alone.
    let image = pusher.push_image("nv/big-referrer-only", "v1").await;
    let me = notary(&image);
    push_oversized_referrer(&pusher, "nv/big-referrer-only", &me).await;
    cases.push(Pushed {
        repo: "nv/big-referrer-only",
        want: Failed("invalid-signature"),
    });

    // The tag-schema index itself over maxManifestBytes (anyone who can push writes it).
    let image = pusher.push_image("nv/big-index", "v1").await;
    let me = notary(&image);
    let env = signer.sign_jws(&target_payload(&me), now, None);
    let sig = push_notation_signature(&pusher, "nv/big-index", &me, &env).await;
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [sig.to_json()],
        "annotations": {"padding": "r".repeat(MAX_MANIFEST)},
    }))
    .expect("json");
    let tag = support::layout::tag_schema_tag(&me.digest);
    pusher
        .push_manifest(
            "nv/big-index",
            &tag,
            "application/vnd.oci.image.index.v1+json",
            &index,
        )
        .await;
    cases.push(Pushed {
        repo: "nv/big-index",
        want: Failed("invalid-signature"),
    });

    let keys = tempfile::tempdir().expect("tempdir");
    let key_file = keys.path().join("k.pub");
    std::fs::write(&key_file, key.public_pem()).expect("key");
    let e2e = fixtures_dir().join("notation-e2e/localkeys/e2e.crt");
    let v = Vouch::start(&format!(
        "limits: {{maxManifestBytes: {MAX_MANIFEST}, maxSignatureBytes: {MAX_SIGNATURE}, maxSignatures: 4}}\nregistries:\n- host: {host}\n  plainHttp: true\npolicies:\n- name: cos\n  scopes: [\"{host}/cos/*\"]\n  verifiers:\n  - cosign: {{publicKeys: [{}]}}\n- name: nv\n  scopes: [\"{host}/nv/*\"]\n  verifiers:\n  - notation: {{trustStore: [{}], trustedIdentities: [\"*\"]}}\n",
        key_file.display(),
        e2e.display()
    ))
    .await;

    let mut failures = Vec::new();
    for c in &cases {
        let key = format!("{host}/{}:v1", c.repo);
        let response = v.verify(&[&key]).await;
        let got = Got::of(&response, &key);
        println!("pushed: {:<28} {}", c.repo, got.short());
        if !got.matches(c.want) {
            failures.push(format!(
                "{}: got {got:?}, want {:?}: {response}",
                c.repo, c.want
            ));
        }
        if !matches!(got, Got::Verified | Got::Failed(_)) {
            failures.push(format!("{}: not a verdict: {response}", c.repo));
        }
    }
    let metrics = ops_get(v.running.ops_addr, "/metrics").await.text();
    for (series, at_least) in [
        (
            "vouch_signature_candidates_skipped_total{format=\"cosign\",reason=\"unreadable\"}",
            2.0,
        ),
        (
            "vouch_signature_candidates_skipped_total{format=\"cosign\",reason=\"over_limit\"}",
            6.0,
        ),
        (
            "vouch_signature_candidates_skipped_total{format=\"notation\",reason=\"unreadable\"}",
            3.0,
        ),
    ] {
        let n = metric_value(&metrics, series);
        if n < at_least {
            failures.push(format!("{series} is {n}, want at least {at_least}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
