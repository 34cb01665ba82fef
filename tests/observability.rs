//! Observability, proven against real parts:
//!
//! - the shipped alert rules (`charts/vouch/files/alerts.yaml`) pass `promtool check rules`,
//!   and `promtool test rules` runs their unit tests (`tests/prometheus/alerts_test.yaml`),
//!   which show every alert firing and not firing;
//! - a real Prometheus (Debian's `prometheus`) scrapes a running vouch (the binary) under a
//!   short load of verify, mutate and claims requests against a real registry, loads the
//!   rules, and every query of the shipped Grafana dashboard and both sides of every alert
//!   expression return data through its HTTP API; the figures it reads back are the load's;
//! - a freshly started vouch already lists every labelled series at zero, its build, its
//!   readiness, its deadlines and its certificates' expiry, which follows a TLS reload;
//! - each verdict reached is logged once, at `info`, with image, digest, policy, verified
//!   and code, and nothing else: no line for answers from a cache, no line per request, no
//!   credentials.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::prometheus::{Prometheus, promtool};
use support::registry::*;
use support::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn alerts_file() -> PathBuf {
    root().join("charts/vouch/files/alerts.yaml")
}

/// The shipped rules: (alert name, expression).
fn alerts() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(alerts_file()).expect("read alerts.yaml");
    let doc: Value = serde_yaml_ng::from_str(&text).expect("alerts.yaml is YAML");
    let mut out = Vec::new();
    for group in doc["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().expect("every rule is an alert");
            let expr = rule["expr"].as_str().expect("expr");
            out.push((name.to_string(), expr.to_string()));
        }
    }
    out
}

/// The shipped dashboard's queries, Grafana's `$__rate_interval` replaced with `window`.
fn dashboard_queries(window: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("charts/vouch/files/dashboard.json"))
        .expect("read dashboard.json");
    let doc: Value = serde_json::from_str(&text).expect("dashboard.json is JSON");
    let mut out = Vec::new();
    let mut panels: Vec<Value> = doc["panels"].as_array().cloned().unwrap_or_default();
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().cloned().unwrap_or_default());
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            let title = panel["title"].as_str().unwrap_or_default();
            out.push((
                format!("{title} / {}", target["legendFormat"]),
                expr.replace("$__rate_interval", window),
            ));
        }
    }
    out
}

/// The two sides of an expression's outermost comparison (`a > b` → `a`, `b`): what an
/// alert measures and what it compares it with, each of which must have data.
fn comparison_sides(expr: &str) -> Option<(String, String)> {
    let bytes = expr.as_bytes();
    let (mut depth, mut quoted, mut i) = (0i32, false, 0);
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'"' => quoted = !quoted,
            b'(' | b'{' | b'[' if !quoted => depth += 1,
            b')' | b'}' | b']' if !quoted => depth -= 1,
            b'>' | b'<' | b'=' | b'!' if !quoted && depth == 0 => {
                let two = bytes.get(i + 1) == Some(&b'=');
                if c == b'>' || c == b'<' || two {
                    let len = if two { 2 } else { 1 };
                    return Some((
                        expr[..i].trim().to_string(),
                        expr[i + len..].trim().to_string(),
                    ));
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[test]
fn comparison_sides_split_at_the_outermost_comparison() {
    assert_eq!(
        comparison_sides(r#"up{job="vouch"} == 0"#),
        Some((r#"up{job="vouch"}"#.into(), "0".into()))
    );
    assert_eq!(
        comparison_sides(r#"sum(rate(x{s=~"5xx|error"}[5m])) / sum(y) > 0.1"#),
        Some((
            r#"sum(rate(x{s=~"5xx|error"}[5m])) / sum(y)"#.into(),
            "0.1".into()
        ))
    );
    assert_eq!(comparison_sides("sum(x)"), None);
}

#[test]
fn promtool_checks_the_rules_and_their_unit_tests_pass() {
    let (ok, out) = promtool(
        &root(),
        &["check", "rules", "charts/vouch/files/alerts.yaml"],
    );
    assert!(ok, "promtool check rules:\n{out}");
    let names = alerts();
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", names.len())),
        "{out}"
    );
    let (ok, out) = promtool(
        &root(),
        &["test", "rules", "tests/prometheus/alerts_test.yaml"],
    );
    assert!(ok, "promtool test rules:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");

    // Every alert has a case where it fires and one where it does not.
    let text = std::fs::read_to_string(root().join("tests/prometheus/alerts_test.yaml"))
        .expect("read alerts_test.yaml");
    let tests: Value = serde_yaml_ng::from_str(&text).expect("alerts_test.yaml is YAML");
    let mut fired = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for test in tests["tests"].as_array().expect("tests") {
        for case in test["alert_rule_test"].as_array().into_iter().flatten() {
            let name = case["alertname"].as_str().expect("alertname").to_string();
            let expected = case["exp_alerts"].as_array().map_or(0, Vec::len);
            if expected == 0 {
                silent.insert(name);
            } else {
                fired.insert(name);
            }
        }
    }
    for (name, _) in &names {
        assert!(fired.contains(name), "no unit test fires {name}");
        assert!(silent.contains(name), "no unit test shows {name} silent");
    }
}

/// A registry with a signed and an unsigned image, and vouch (the binary) trusting the
/// signing key for `<registry>/acme/*`, with Docker Hub's official images allowed.
struct Setup {
    registry: Registry,
    signed: Image,
    unsigned: Image,
    vouch: VouchProcess,
    _keys: tempfile::TempDir,
}

impl Setup {
    /// `basic_auth`: the registry demands credentials, which vouch reads from a file.
    async fn start(basic_auth: bool) -> Setup {
        let registry = if basic_auth {
            Registry::start_with_basic_auth()
        } else {
            Registry::start()
        };
        let pusher = if basic_auth {
            Pusher::with_basic_auth(&registry, USER, PASSWORD)
        } else {
            Pusher::new(&registry)
        };
        let key = CosignKey::generate();
        let signed = push_signed(&pusher, &key, &registry.host, "acme/api", "1.0").await;
        let unsigned = pusher.push_image("acme/api", "bare").await;
        let keys = tempfile::tempdir().expect("tempdir");
        let key_file = keys.path().join("acme.pub");
        std::fs::write(&key_file, key.public_pem()).expect("write key");
        let credentials = if basic_auth {
            let pw = keys.path().join("password");
            std::fs::write(&pw, PASSWORD).expect("write password");
            format!("  username: {USER}\n  passwordFile: {}\n", pw.display())
        } else {
            String::new()
        };
        let yaml = format!(
            "registryTimeout: 1s\nregistries:\n- host: {host}\n  plainHttp: true\n{credentials}policies:\n- name: acme\n  scopes: [\"{host}/acme/*\"]\n  verifiers:\n  - cosign: {{publicKeys: [{key}]}}\n- name: library\n  scopes: [\"docker.io/library/*\"]\n  action: allow\n",
            host = registry.host,
            key = key_file.display(),
        );
        let vouch = VouchProcess::start_logged(&yaml).await;
        Setup {
            registry,
            signed,
            unsigned,
            vouch,
            _keys: keys,
        }
    }

    fn reference(&self, tag: &str) -> String {
        format!("{}/acme/api:{tag}", self.registry.host)
    }

    /// The log lines whose message is `verdict`, as their fields.
    fn verdict_lines(&self) -> Vec<Value> {
        self.vouch
            .served
            .log_lines()
            .into_iter()
            .filter(|l| l["fields"]["message"] == "verdict")
            .map(|l| l["fields"].clone())
            .collect()
    }
}

fn claim_key(owner: &str, nonce: usize) -> String {
    json!({"scope": "service-selector/default", "value": "app=web", "owner": owner,
           "mode": "claim", "nonce": format!("n{nonce}")})
    .to_string()
}

/// Rounds of the load: each verifies a signed, an unsigned, a missing, an unpolicied and an
/// allowed image, pins the signed one, and claims one value for two owners (the first is
/// granted, the second refused).
const ROUNDS: usize = 8;

async fn drive_load(s: &Setup) {
    let keys = [
        s.reference("1.0"),
        s.reference("bare"),
        s.reference("absent"),
        "quay.io/other/app:1".to_string(),
        "nginx:1.27".to_string(),
    ];
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    for round in 0..ROUNDS {
        let r = s.vouch.verify(&keys).await;
        assert_eq!(r["response"]["systemError"], "", "{r}");
        let r = s.vouch.ask("/v1/mutate", &[&s.reference("1.0")]).await;
        assert_eq!(r["response"]["systemError"], "", "{r}");
        let (a, b) = (
            claim_key("default/web-0", 2 * round),
            claim_key("default/web-1", 2 * round + 1),
        );
        // One after the other: the keys of one request are decided concurrently.
        let r = s.vouch.ask("/v1/claims", &[&a]).await;
        assert_eq!(r["response"]["items"][0]["value"]["granted"], true, "{r}");
        let r = s.vouch.ask("/v1/claims", &[&b]).await;
        assert_eq!(r["response"]["items"][0]["value"]["granted"], false, "{r}");
        // Spread over several scrapes, so rates have points to work with.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Polls until every query has data or `within` passes; returns the queries without.
async fn without_data(
    prom: &Prometheus,
    queries: &[(String, String)],
    within: Duration,
) -> Vec<String> {
    let until = Instant::now() + within;
    let mut left: Vec<&(String, String)> = queries.iter().collect();
    loop {
        let mut still = Vec::new();
        for q in left {
            match prom.samples(&q.1).await {
                Ok(s) if !s.is_empty() => {}
                Ok(_) => still.push(q),
                Err(e) => panic!("{}: {} is refused by Prometheus: {e}", q.0, q.1),
            }
        }
        left = still;
        if left.is_empty() || Instant::now() > until {
            return left.iter().map(|(n, e)| format!("{n}: {e}")).collect();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (bounded) until `expr` has the value `want` in Prometheus: the last scrape saw the
/// load's end.
async fn settles(prom: &Prometheus, expr: &str, want: f64) -> f64 {
    let until = Instant::now() + STEP;
    loop {
        let v = prom.value(expr).await;
        if v == want || Instant::now() > until {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_prometheus_scrapes_vouch_and_every_dashboard_query_and_alert_has_data() {
    let started = Instant::now();
    let s = Setup::start(false).await;
    let prom = Prometheus::start(&[s.vouch.ops], &[alerts_file()]);
    prom.wait_scraped(1).await;
    drive_load(&s).await;

    // What Prometheus read is the load: a claim granted and one refused per round.
    let rounds = ROUNDS as f64;
    for (expr, want) in [
        (r#"sum(vouch_claims_total{outcome="granted"})"#, rounds),
        (r#"sum(vouch_claims_total{outcome="refused"})"#, rounds),
        (
            r#"sum(vouch_requests_total{endpoint="verify",outcome="ok"})"#,
            rounds,
        ),
        (
            r#"sum(vouch_requests_total{endpoint="claims",outcome="ok"})"#,
            2.0 * rounds,
        ),
        (
            r#"sum(vouch_requests_total{endpoint="mutate",outcome="ok"})"#,
            rounds,
        ),
    ] {
        assert_eq!(
            settles(&prom, expr, want).await,
            want,
            "{expr}\n{}",
            prom.log()
        );
    }
    // One verification per digest however many requests: signed and unsigned.
    assert_eq!(
        prom.value(r#"sum(vouch_verifications_total{outcome="verified"})"#)
            .await,
        1.0
    );
    assert_eq!(
        prom.value(r#"sum(vouch_verifications_total{outcome="failed"})"#)
            .await,
        1.0
    );
    let host = &s.registry.host;
    let registry_ok =
        format!(r#"sum(vouch_registry_requests_total{{registry="{host}",status="2xx"}})"#);
    assert!(prom.value(&registry_ok).await >= 2.0, "{registry_ok}");

    // Every query of the dashboard and both sides of every alert expression have data.
    let mut queries = dashboard_queries("30s");
    assert!(queries.len() >= 20, "{queries:?}");
    for (name, expr) in alerts() {
        let (measured, threshold) =
            comparison_sides(&expr).unwrap_or_else(|| panic!("{name}: no comparison in {expr}"));
        queries.push((format!("alert {name}"), measured));
        queries.push((format!("alert {name} threshold"), threshold));
    }
    let missing = without_data(&prom, &queries, Duration::from_secs(15)).await;
    assert!(
        missing.is_empty(),
        "queries without data:\n{}\n{}",
        missing.join("\n"),
        prom.log()
    );

    // And the figures are the load's, not just present.
    let p99 = prom
        .value(r#"histogram_quantile(0.99, sum by (le) (rate(vouch_request_duration_seconds_bucket{endpoint="verify"}[30s])))"#)
        .await;
    assert!(
        p99 > 0.0 && p99 < 2.5,
        "p99 of verify {p99}: {:?}",
        prom.samples(r#"vouch_request_duration_seconds_bucket{endpoint="verify"}[30s]"#)
            .await
    );
    let ratio = prom
        .value(r#"sum(rate(vouch_cache_hits_total{cache="key"}[30s])) / (sum(rate(vouch_cache_hits_total{cache="key"}[30s])) + sum(rate(vouch_cache_misses_total{cache="key"}[30s])) + sum(rate(vouch_cache_coalesced_total{cache="key"}[30s])))"#)
        .await;
    assert!(ratio > 0.5 && ratio <= 1.0, "key cache hit ratio {ratio}");
    let expiry = prom
        .value(r#"min(vouch_tls_certificate_expiry_timestamp_seconds{certificate="serving"}) - time()"#)
        .await;
    assert!(
        expiry > 14.0 * 86400.0,
        "serving certificate expires in {expiry} s"
    );

    // The rules load and evaluate without error, and none fires on a healthy vouch.
    let mut healthy = false;
    for _ in 0..50 {
        let rules = prom.api("rules", &[]).await.expect("rules");
        let all: Vec<&Value> = rules["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        assert_eq!(all.len(), alerts().len(), "{rules}");
        if all.iter().all(|r| r["health"] == "ok") {
            for r in &all {
                assert_eq!(r["state"], "inactive", "{r}");
            }
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(healthy, "rules not evaluated cleanly:\n{}", prom.log());
    let took = started.elapsed();
    println!(
        "observability: prometheus test took {} ms",
        took.as_millis()
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

/// The sample lines of a scrape, `name{labels}` → value.
fn samples(text: &str) -> std::collections::BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (n, v) = l.rsplit_once(' ')?;
            Some((n.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// When the first certificate of a PEM text expires, in Unix seconds.
fn not_after(pem: &str) -> f64 {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("PEM");
    let cert = pem.parse_x509().expect("certificate");
    cert.validity().not_after.timestamp() as f64
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_vouch_lists_every_labelled_series_at_zero_and_its_certificates_expiry() {
    let s = Setup::start(false).await;
    let text = ops_get(s.vouch.ops, "/metrics").await.text();
    let got = samples(&text);
    // Written out here, not taken from the code: these are the series dashboards and alerts
    // rely on, each present before anything happened.
    let mut zero: Vec<String> = Vec::new();
    let series = |family: &str, label: &str, values: &[&str]| -> Vec<String> {
        values
            .iter()
            .map(|v| format!("{family}{{{label}=\"{v}\"}}"))
            .collect()
    };
    for endpoint in ["verify", "mutate", "claims", "other"] {
        for outcome in ["ok", "system_error", "rejected"] {
            zero.push(format!(
                "vouch_requests_total{{endpoint=\"{endpoint}\",outcome=\"{outcome}\"}}"
            ));
        }
        zero.push(format!(
            "vouch_request_duration_seconds_count{{endpoint=\"{endpoint}\"}}"
        ));
        zero.push(format!(
            "vouch_requests_in_flight{{endpoint=\"{endpoint}\"}}"
        ));
    }
    for endpoint in ["verify", "mutate", "claims"] {
        for outcome in ["verdict", "error", "transient", "deadline"] {
            zero.push(format!(
                "vouch_keys_total{{endpoint=\"{endpoint}\",outcome=\"{outcome}\"}}"
            ));
        }
    }
    zero.extend(series(
        "vouch_tls_handshake_failures_total",
        "reason",
        &[
            "timeout",
            "no_client_cert",
            "bad_client_cert",
            "protocol",
            "not_ready",
            "other",
        ],
    ));
    zero.extend(series("vouch_tls_reloads_total", "result", &["failure"]));
    zero.extend(series(
        "vouch_config_reloads_total",
        "result",
        &["success", "failure"],
    ));
    zero.extend(series(
        "vouch_connections_shed_total",
        "phase",
        &["handshake", "no_request", "idle"],
    ));
    let caches = ["verdict", "tag", "key", "shared", "shared_key"];
    for family in ["hits", "misses", "coalesced"] {
        zero.extend(series(
            &format!("vouch_cache_{family}_total"),
            "cache",
            &caches,
        ));
    }
    zero.extend(series(
        "vouch_cache_entries",
        "cache",
        &["verdict", "tag", "key"],
    ));
    let outcomes = ["verified", "failed", "error", "transient"];
    zero.extend(series("vouch_verifications_total", "outcome", &outcomes));
    zero.extend(series(
        "vouch_verification_duration_seconds_count",
        "outcome",
        &outcomes,
    ));
    for format in ["cosign", "notation", "sigstore"] {
        for reason in [
            "unreadable",
            "missing",
            "digest_mismatch",
            "malformed",
            "over_limit",
        ] {
            zero.push(format!(
                "vouch_signature_candidates_skipped_total{{format=\"{format}\",reason=\"{reason}\"}}"
            ));
        }
    }
    zero.extend(series(
        "vouch_attestations_ignored_total",
        "reason",
        &["unverified", "unreadable"],
    ));
    zero.extend(series(
        "vouch_claims_total",
        "outcome",
        &["granted", "refused"],
    ));
    for registry in [s.registry.host.as_str(), "docker.io"] {
        for status in ["1xx", "2xx", "3xx", "4xx", "5xx", "error"] {
            zero.push(format!(
                "vouch_registry_requests_total{{registry=\"{registry}\",status=\"{status}\"}}"
            ));
        }
        zero.push(format!(
            "vouch_registry_request_duration_seconds_count{{registry=\"{registry}\"}}"
        ));
    }
    zero.push("vouch_redis_errors_total".into());
    let missing: Vec<&String> = zero.iter().filter(|n| !got.contains_key(*n)).collect();
    assert!(missing.is_empty(), "missing series {missing:?} in\n{text}");
    let nonzero: Vec<&String> = zero.iter().filter(|n| got[*n] != 0.0).collect();
    assert!(nonzero.is_empty(), "not zero: {nonzero:?}");

    let version = format!(
        "vouch_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    for (name, want) in [
        (version.as_str(), 1.0),
        ("vouch_ready", 1.0),
        ("vouch_config_last_reload_successful", 1.0),
        ("vouch_tls_last_reload_successful", 1.0),
        ("vouch_tls_reloads_total{result=\"success\"}", 1.0),
        ("vouch_deadline_seconds{endpoint=\"verify\"}", 2.5),
        ("vouch_deadline_seconds{endpoint=\"claims\"}", 2.5),
        ("vouch_deadline_seconds{endpoint=\"mutate\"}", 0.9),
    ] {
        assert_eq!(got.get(name), Some(&want), "{name} in\n{text}");
    }
    let expiry = |text: &str, which: &str| {
        samples(text)
            .get(&format!(
                "vouch_tls_certificate_expiry_timestamp_seconds{{certificate=\"{which}\"}}"
            ))
            .copied()
    };
    let pki = &s.vouch.pki;
    assert_eq!(
        expiry(&text, "serving"),
        Some(not_after(&pki.server.cert_pem))
    );
    assert_eq!(
        expiry(&text, "client_ca"),
        Some(not_after(&pki.gatekeeper_ca.cert_pem))
    );

    // A rotated certificate (here one that expired in 2021) shows at the next TLS reload.
    let old = pki.server_ca.issue(LeafSpec {
        expired: true,
        ..LeafSpec::server()
    });
    std::fs::write(s.vouch.dir.path().join("tls.key"), &old.key_pem).expect("write key");
    std::fs::write(s.vouch.dir.path().join("tls.crt"), &old.cert_pem).expect("write cert");
    let want = not_after(&old.cert_pem);
    assert_eq!(want, 1_609_459_200.0, "2021-01-01");
    let ops = s.vouch.ops;
    assert!(
        eventually(STEP, || async move {
            expiry(&ops_get(ops, "/metrics").await.text(), "serving") == Some(want)
        })
        .await,
        "the serving certificate's expiry did not follow the reload"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_verdict_reached_is_logged_once_without_secrets() {
    let s = Setup::start(true).await;
    let signed = s.reference("1.0");
    let unsigned = s.reference("bare");
    let pinned = format!("{}/acme/api@{}", s.registry.host, s.signed.digest);
    let unpolicied = "quay.io/other/app:1";
    for key in [&signed, &unsigned, &pinned] {
        let _ = only_verdict(&s.vouch.verify(&[key.as_str()]).await);
    }
    let _ = only_verdict(&s.vouch.verify(&[unpolicied]).await);
    let want = |image: &str, digest: &str, policy: &str, verified: bool, code: &str| {
        json!({"message": "verdict", "image": image, "digest": digest, "policy": policy,
               "verified": verified, "code": code})
    };
    let expected = vec![
        want(&signed, &s.signed.digest, "acme", true, ""),
        want(&unsigned, &s.unsigned.digest, "acme", false, "unsigned"),
        // The pinned reference is answered from the verdict of its digest: no new line.
        want(unpolicied, "", "", false, "no-policy"),
    ];
    assert!(
        eventually(STEP, || async { s.verdict_lines().len() >= expected.len() }).await,
        "{:#?}",
        s.vouch.served.log_lines()
    );
    assert_eq!(s.verdict_lines(), expected);

    // Answers from the caches, however many requests: not a line more, of any kind.
    let before = s.vouch.served.log_lines().len();
    for _ in 0..10 {
        let r = s
            .vouch
            .verify(&[
                signed.as_str(),
                unsigned.as_str(),
                pinned.as_str(),
                unpolicied,
            ])
            .await;
        assert_eq!(r["response"]["systemError"], "", "{r}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = s.vouch.served.log_lines();
    assert_eq!(lines.len(), before, "{:#?}", &lines[before..]);
    assert_eq!(s.verdict_lines(), expected);

    // No credentials anywhere in the log.
    for line in &lines {
        let text = line.to_string();
        assert!(!text.contains(PASSWORD), "{text}");
    }
    assert!(lines.iter().all(|l| l["level"] != "ERROR"), "{lines:#?}");
}
