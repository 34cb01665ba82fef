//! The distribution bearer-token flow against a real `docker-registry` configured with
//! `auth: token`, and a token service in the harness that issues JWTs the registry
//! verifies (`support::token`). The fault proxy sits in front of both, the service under
//! `/token` on the registry's host and port, so its rules break the token service the way
//! `tests/faults.rs` breaks the registry: each fault gets the precise outcome class of
//! SPEC §1, and never `verified: true`.
//!
//! `cargo test --test token -- --nocapture` prints the answer time of the deadline case.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::faults::{Fault, Rule};
use support::registry::*;
use support::token::*;
use support::*;

/// A token-auth registry behind the proxy, a trusted cosign key, and vouch configured with
/// the registry's credentials and a policy for `<host>/acme/*`.
struct Setup {
    reg: TokenRegistry,
    pusher: Pusher,
    trusted: CosignKey,
    vouch: Vouch,
    dir: tempfile::TempDir,
}

impl Setup {
    /// `top` holds extra top-level config lines.
    async fn start(top: &str) -> Setup {
        let reg = TokenRegistry::start().await;
        let pusher = reg.pusher();
        let dir = tempfile::tempdir().expect("tempdir");
        let trusted = CosignKey::generate();
        std::fs::write(dir.path().join("trusted.pub"), trusted.public_pem()).expect("key");
        let vouch = Vouch::start(&config(reg.host(), &dir, PASSWORD, top)).await;
        Setup {
            reg,
            pusher,
            trusted,
            vouch,
            dir,
        }
    }

    fn host(&self) -> &str {
        self.reg.host()
    }

    fn reference(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.host())
    }

    /// Pushes an image and signs it with the trusted key, naming it as vouch sees it.
    async fn signed_image(&self, repo: &str, tag: &str) -> Image {
        push_signed(&self.pusher, &self.trusted, self.host(), repo, tag).await
    }

    /// The token requests the service saw for `repo`.
    fn token_requests(&self, repo: &str) -> Vec<TokenRequest> {
        let scope = format!("repository:{repo}:pull");
        self.reg
            .tokens
            .requests()
            .into_iter()
            .filter(|r| r.scopes.contains(&scope))
            .collect()
    }

    /// Requests to `/token` the proxy answered with a fault.
    fn faulted_token_requests(&self) -> usize {
        self.reg
            .proxy
            .log()
            .iter()
            .filter(|s| s.path.starts_with("/token") && s.fault.is_some())
            .count()
    }

    /// One request on a fresh connection, timed from the request on (the TLS handshake
    /// before it is not part of the answer time).
    async fn ask(&self, key: &str) -> (Value, Duration) {
        let mut conn = self.vouch.connect().await;
        let started = Instant::now();
        let reply = conn
            .post("/v1/verify", provider_request(&[key]))
            .await
            .expect("answered");
        let took = started.elapsed();
        assert_eq!(reply.status, 200, "{}", reply.text());
        (reply.json(), took)
    }
}

/// vouch's config for the registry at `host` with `password` in a new password file in
/// `dir`, and the cosign key `dir/trusted.pub`.
fn config(host: &str, dir: &tempfile::TempDir, password: &str, top: &str) -> String {
    static FILES: AtomicUsize = AtomicUsize::new(0);
    let n = FILES.fetch_add(1, Ordering::Relaxed);
    let password_file = dir.path().join(format!("password-{n}"));
    std::fs::write(&password_file, format!("{password}\n")).expect("password file");
    format!(
        "{top}registries:\n- host: {host}\n  plainHttp: true\n  username: {USER}\n  passwordFile: {pw}\npolicies:\n- name: acme\n  scopes: [\"{host}/acme/*\"]\n  verifiers:\n  - cosign: {{publicKeys: [{key}]}}\n",
        pw = password_file.display(),
        key = dir.path().join("trusted.pub").display(),
    )
}

/// The one request vouch's credentials should make for `repo`.
fn pull_request_for(repo: &str) -> TokenRequest {
    TokenRequest {
        user: Some(USER.into()),
        authorized: true,
        scopes: vec![format!("repository:{repo}:pull")],
        service: Some(SERVICE.into()),
    }
}

/// The per-key error of the only item (the key named), with no verdict beside it.
fn only_error(r: &Value, key: &str) -> String {
    assert_eq!(r["response"]["systemError"], "", "{r}");
    let items = r["response"]["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{r}");
    assert_eq!(items[0]["key"], key, "{r}");
    assert!(
        items[0]["value"].is_null(),
        "no verdict beside an error: {r}"
    );
    items[0]["error"]
        .as_str()
        .expect("a per-key error")
        .to_string()
}

/// The `systemError` of a response without items.
fn only_system_error(r: &Value) -> String {
    assert_eq!(
        r["response"]["items"].as_array().map(Vec::len),
        Some(0),
        "no item for a key without an outcome: {r}"
    );
    r["response"]["systemError"]
        .as_str()
        .expect("systemError")
        .to_string()
}

/// A verified verdict for exactly `image`.
fn assert_verified(v: &Value, image: &Image) {
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["code"], "", "{v}");
    assert_eq!(v["digest"], image.digest.as_str(), "{v}");
    assert_eq!(v["signatures"][0]["verified"], true, "{v}");
    assert_eq!(v["signatures"][0]["signer"], "key:trusted", "{v}");
}

fn transient(key: &str, why: &str) -> String {
    format!("unavailable: transient failure for 1 key(s), retry: {key:?}: {why}")
}

fn rejected(host: &str) -> String {
    format!("auth: registry {host} rejected the credentials of user \"{USER}\" (401 Unauthorized)")
}

#[tokio::test]
async fn a_signed_image_verifies_through_the_token_flow_and_the_token_is_reused() {
    let s = Setup::start("").await;
    let first = s.signed_image("acme/api", "1.0").await;
    let second = s.signed_image("acme/api", "2.0").await;
    let bare = s.pusher.push_image("acme/api", "bare").await;
    assert!(
        s.reg.tokens.requests().is_empty(),
        "pushing mints its tokens without requests"
    );
    s.reg.registry.settle_log().await;
    let before = s.reg.registry.access_log().len();

    let v = only_verdict(&s.vouch.verify(&[&s.reference("acme/api", "1.0")]).await);
    assert_verified(&v, &first);
    assert_eq!(
        s.reg.tokens.requests(),
        vec![pull_request_for("acme/api")],
        "one token, for the repository's pull scope"
    );
    // The registry challenged the first request and accepted the token on the retry.
    s.reg.registry.settle_log().await;
    let trips = s.reg.registry.requests_since(before);
    assert_eq!(trips[0].status, 401, "{trips:#?}");
    assert_eq!(
        trips.iter().filter(|t| t.status == 401).count(),
        1,
        "{trips:#?}"
    );
    assert!(
        trips[1..].iter().any(|t| t.status == 200),
        "{trips:#?}\n{}",
        s.reg.registry.server_log()
    );
    // The token request is counted with the registry's requests: every 2xx the registry
    // and its token service answered vouch, the one 401 apart.
    let metrics = ops_get(s.vouch.running.ops_addr, "/metrics").await.text();
    let counted = |class: &str| {
        metric_value(
            &metrics,
            &format!(
                "vouch_registry_requests_total{{registry=\"{}\",status=\"{class}\"}}",
                s.host()
            ),
        )
    };
    let ok_trips = trips.iter().filter(|t| t.status / 100 == 2).count();
    assert_eq!(counted("2xx"), (ok_trips + 1) as f64, "{trips:#?}");
    assert_eq!(counted("4xx"), 1.0);

    // Another tag of the same repository: nothing cached for the image, the token is.
    let before = s.reg.registry.access_log().len();
    let v = only_verdict(&s.vouch.verify(&[&s.reference("acme/api", "2.0")]).await);
    assert_verified(&v, &second);
    assert_ne!(first.digest, second.digest);
    let v = only_verdict(&s.vouch.verify(&[&s.reference("acme/api", "bare")]).await);
    assert_code(&v, "unsigned");
    assert_eq!(v["digest"], bare.digest.as_str(), "{v}");
    assert_eq!(
        s.reg.tokens.requests().len(),
        1,
        "the cached token is reused"
    );
    s.reg.registry.settle_log().await;
    let trips = s.reg.registry.requests_since(before);
    assert!(
        trips.iter().all(|t| t.status != 401),
        "no challenge with a cached token: {trips:#?}"
    );

    // Another repository is another scope: a token of its own.
    let web = s.signed_image("acme/web", "1.0").await;
    let v = only_verdict(&s.vouch.verify(&[&s.reference("acme/web", "1.0")]).await);
    assert_verified(&v, &web);
    assert_eq!(
        s.reg.tokens.requests(),
        vec![pull_request_for("acme/api"), pull_request_for("acme/web")]
    );
}

#[tokio::test]
async fn a_wrong_password_is_an_auth_error_that_never_shows_the_password() {
    let s = Setup::start("").await;
    s.signed_image("acme/api", "1.0").await;
    let key = s.reference("acme/api", "1.0");
    let wrong = Vouch::start(&config(s.host(), &s.dir, "not-the-s3cret", "")).await;

    let r = wrong.verify(&[&key]).await;
    assert_eq!(only_error(&r, &key), rejected(s.host()), "{r}");
    assert!(!r.to_string().contains("not-the-s3cret"), "{r}");
    assert_eq!(
        s.reg.tokens.requests(),
        vec![TokenRequest {
            authorized: false,
            ..pull_request_for("acme/api")
        }],
        "one token request, refused"
    );
    // The same image with the right password: the refusal was the password's.
    assert_eq!(
        only_verdict(&s.vouch.verify(&[&key]).await)["verified"],
        true
    );
}

/// Fault cases run with a short deadline and no registry back-off, so one case cannot
/// shadow the next; each uses its own repository, so neither vouch's caches nor its token
/// cache hide the fault.
const FAULT_CONFIG: &str =
    "deadline: 1s\nregistryTimeout: 3s\nverificationBudget: 4s\ncache: {registryBackoff: 0s}\n";

fn token_rule(fault: Fault) -> Rule {
    Rule::path("GET", "/token", fault)
}

#[tokio::test]
async fn a_token_service_answering_500_is_a_transient_system_error() {
    let s = Setup::start(FAULT_CONFIG).await;
    s.signed_image("acme/api", "1.0").await;
    let key = s.reference("acme/api", "1.0");
    s.reg.proxy.on(token_rule(Fault::Status {
        code: 500,
        retry_after: None,
    }));
    let want = transient(
        &key,
        &format!(
            "token service of {} answered 500 Internal Server Error",
            s.host()
        ),
    );
    for round in 1..=2 {
        let (r, _) = s.ask(&key).await;
        assert_eq!(only_system_error(&r), want, "{r}");
        // Retried like a registry 5xx: four attempts per verification, then the error.
        assert_eq!(s.faulted_token_requests(), 4 * round, "round {round}");
    }
    assert!(s.reg.tokens.requests().is_empty());
}

#[tokio::test]
async fn a_token_service_failing_once_is_retried_within_the_verification() {
    let s = Setup::start(FAULT_CONFIG).await;
    let image = s.signed_image("acme/api", "1.0").await;
    let key = s.reference("acme/api", "1.0");
    s.reg.proxy.on(token_rule(Fault::Status {
        code: 500,
        retry_after: None,
    })
    .times(1));
    // Like the registry's own 5xx, the token service's is retried within the budget: the
    // first answer is already the verdict.
    let (r, took) = s.ask(&key).await;
    assert_verified(&only_verdict(&r), &image);
    assert_eq!(s.faulted_token_requests(), 1);
    assert_eq!(s.reg.tokens.requests(), vec![pull_request_for("acme/api")]);
    println!("token 500 once, then healthy: verified in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_service_slower_than_the_deadline_is_answered_at_the_deadline() {
    const DEADLINE: Duration = Duration::from_secs(1);
    const SLACK: Duration = Duration::from_millis(50);
    let s = Setup::start(FAULT_CONFIG).await;
    // A warm-up verification of another repository: connections and TLS are set up.
    s.signed_image("acme/warm", "1.0").await;
    let (warm, _) = s.ask(&s.reference("acme/warm", "1.0")).await;
    assert_eq!(only_verdict(&warm)["verified"], true);

    // One repository per round: a second request for the same image would join the
    // verification still waiting in the background, which ends (registryTimeout) before
    // a third round's deadline.
    s.reg
        .proxy
        .on(token_rule(Fault::Delay(Duration::from_secs(4))));
    let mut times = Vec::new();
    for i in 0..3 {
        let repo = format!("acme/slow{i}");
        s.signed_image(&repo, "1.0").await;
        let key = s.reference(&repo, "1.0");
        let (r, took) = s.ask(&key).await;
        assert_eq!(
            only_system_error(&r),
            format!(
                "unavailable: deadline of 1000 ms reached before an outcome for 1 key(s): {key:?}"
            ),
            "{r}"
        );
        // The service was asked and answered; the proxy held the answer back.
        assert_eq!(s.token_requests(&repo), vec![pull_request_for(&repo)]);
        times.push(took);
    }
    println!("token service delayed 4 s, deadline 1 s: answered after {times:?}");
    for took in &times {
        assert!(
            *took >= DEADLINE && *took <= DEADLINE + SLACK,
            "answered after {took:?}"
        );
    }
}

/// A token service answering 200 without a token fails like one answering 500: a transient
/// `systemError` (never a per-key error Gatekeeper would cache for minutes), retried within
/// the budget.
#[tokio::test]
async fn token_bodies_without_a_token_are_a_transient_system_error() {
    let s = Setup::start(FAULT_CONFIG).await;
    let bodies = [
        "<html>Service Unavailable</html>",
        "{}",
        r#"{"token": "", "expires_in": 300}"#,
        r#"{"token": 42}"#,
        "null",
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        let repo = format!("acme/body{i}");
        s.signed_image(&repo, "1.0").await;
        let key = s.reference(&repo, "1.0");
        s.reg.tokens.set_issue(Issue::Body(body.to_string()));
        let (r, _) = s.ask(&key).await;
        let want = transient(
            &key,
            &format!("token service of {} sent no token", s.host()),
        );
        assert_eq!(only_system_error(&r), want, "body {body:?}: {r}");
        // Retried like a 5xx: four attempts within the budget.
        assert_eq!(
            s.token_requests(&repo),
            vec![pull_request_for(&repo); 4],
            "body {body:?}"
        );
    }
    // The OAuth2 field name alone is a token too: the failures above were the bodies'.
    s.reg.tokens.set_issue(Issue::AccessTokenOnly);
    let image = s.signed_image("acme/oauth", "1.0").await;
    let (r, _) = s.ask(&s.reference("acme/oauth", "1.0")).await;
    assert_verified(&only_verdict(&r), &image);
}

#[tokio::test]
async fn a_token_service_answering_garbage_is_a_transient_system_error() {
    let s = Setup::start(FAULT_CONFIG).await;
    s.signed_image("acme/api", "1.0").await;
    let key = s.reference("acme/api", "1.0");
    s.reg.proxy.on(token_rule(Fault::Garbage));
    let (r, _) = s.ask(&key).await;
    let system = only_system_error(&r);
    let prefix = transient(
        &key,
        &format!("request to token service of {} failed: ", s.host()),
    );
    assert!(system.starts_with(&prefix), "{system}");
    assert!(!system.contains(PASSWORD), "{system}");
    // Retried like a broken registry connection: four attempts, then the error.
    assert_eq!(s.faulted_token_requests(), 4);
}

#[tokio::test]
async fn a_token_the_registry_does_not_trust_is_an_auth_error() {
    let s = Setup::start(FAULT_CONFIG).await;
    let image = s.signed_image("acme/api", "1.0").await;
    let key = s.reference("acme/api", "1.0");
    s.reg.tokens.set_issue(Issue::Untrusted);
    s.reg.registry.settle_log().await;
    let before = s.reg.registry.access_log().len();
    let (r, _) = s.ask(&key).await;
    assert_eq!(only_error(&r, &key), rejected(s.host()), "{r}");
    // Challenged, a token fetched, the token refused: then vouch gives up.
    assert_eq!(
        s.token_requests("acme/api"),
        vec![pull_request_for("acme/api")]
    );
    s.reg.registry.settle_log().await;
    let trips: Vec<u16> = s
        .reg
        .registry
        .requests_since(before)
        .iter()
        .map(|t| t.status)
        .collect();
    assert_eq!(trips, vec![401, 401]);

    // Asked again, the refused token is not trusted from the cache: a new one is fetched
    // (and refused again).
    let (r, _) = s.ask(&key).await;
    assert_eq!(only_error(&r, &key), rejected(s.host()), "{r}");
    assert_eq!(s.token_requests("acme/api").len(), 2);

    // Once the service issues trusted tokens again, the next verification passes.
    s.reg.tokens.set_issue(Issue::Trusted);
    let (r, _) = s.ask(&key).await;
    assert_verified(&only_verdict(&r), &image);
    assert_eq!(s.token_requests("acme/api").len(), 3);
}

#[tokio::test]
async fn a_realm_on_another_loopback_port_is_never_contacted() {
    let tokens = TokenService::start().await;
    let trap = CountingListener::start().await;
    let cases = [
        (
            format!("http://{}/token", trap.addr),
            "plain HTTP on another host",
        ),
        (
            format!("https://{}/token", trap.addr),
            "loopback, link-local or unspecified address",
        ),
    ];
    for (realm, why) in cases {
        let registry = Registry::start_with_token_auth(&realm, &tokens.cert_pem());
        let pusher = Pusher::with_bearer(&registry, tokens.minter());
        let signer = CosignKey::generate();
        push_signed(&pusher, &signer, &registry.host, "acme/api", "1.0").await;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("trusted.pub"), signer.public_pem()).expect("key");
        let vouch = Vouch::start(&config(&registry.host, &dir, PASSWORD, "")).await;

        let key = format!("{}/acme/api:1.0", registry.host);
        let r = vouch.verify(&[&key]).await;
        assert_eq!(
            only_error(&r, &key),
            format!(
                "registry-protocol: registry {} sent token realm {realm}: {why}",
                registry.host
            ),
            "{r}"
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(trap.connections(), 0, "vouch contacted the realm");
    assert!(tokens.requests().is_empty());
}
