//! The registry fault campaign: a fault-injecting HTTP proxy between vouch (a child process)
//! and a real `docker-registry`, one fault at a time, each on a fresh pair of images (one
//! cosign-signed, one unsigned) so no cache hides it. For every fault: the outcome class
//! SPEC §1 assigns (verdict, per-key error, or `systemError`), never `verified: true` for
//! anything the registry did not serve intact and properly signed, an answer no later than
//! the deadline plus 50 ms; after the campaign, vouch's tasks and file descriptors are back
//! at their idle level.
//!
//! `cargo test --test faults -- --nocapture` prints one line per fault.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::faults::{Fault, FaultProxy, Rule};
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
        case(
            "oversized signature manifest",
            vec![sig(Oversize(MAX_MANIFEST + 1))],
            Error("registry-protocol"),
            Failed("unsigned"),
        ),
        case(
            "oversized signature blob",
            vec![blob(Oversize(MAX_SIGNATURE + 1))],
            Error("registry-protocol"),
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
        let image = pusher.push_image(&repo, "v1").await;
        let sig = key.sign_image(&format!("{}/{repo}", proxy.host), &image.digest);
        push_cosign_signatures(&pusher, &repo, &image.digest, &[sig]).await;
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
    let warm = pusher.push_image("acme/warm", "v1").await;
    let sig = key.sign_image(&format!("{}/acme/warm", proxy.host), &warm.digest);
    push_cosign_signatures(&pusher, "acme/warm", &warm.digest, &[sig]).await;
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
    let image = pusher.push_image("acme/after", "v1").await;
    let sig = key.sign_image(&format!("{}/acme/after", proxy.host), &image.digest);
    push_cosign_signatures(&pusher, "acme/after", &image.digest, &[sig]).await;
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
