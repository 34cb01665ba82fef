//! The ExternalData protocol over real mTLS: request shapes, limits, methods, the deadline,
//! and the ops endpoints.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use support::*;
use vouch::engine::{Engine, Outcome};

const POLICIES: &str =
    "policies:\n- name: library\n  scopes: [\"docker.io/library/*\"]\n  action: allow\n";

fn system_error(v: &Value) -> &str {
    v["response"]["systemError"]
        .as_str()
        .expect("systemError is a string")
}

fn items(v: &Value) -> &Vec<Value> {
    v["response"]["items"]
        .as_array()
        .expect("items is an array")
}

async fn post_raw(v: &Vouch, body: &str) -> Reply {
    v.connect()
        .await
        .post("/v1/verify", body.to_string())
        .await
        .expect("request")
}

#[tokio::test]
async fn both_api_versions_are_answered_in_kind() {
    let v = Vouch::start(POLICIES).await;
    for api in [
        "externaldata.gatekeeper.sh/v1beta1",
        "externaldata.gatekeeper.sh/v1alpha1",
    ] {
        let body = json!({"apiVersion": api, "kind": "ProviderRequest", "request": {"keys": ["nginx:1.27"]}});
        let r = post_raw(&v, &body.to_string()).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.headers.get("content-type").map(|h| h.as_bytes()),
            Some(&b"application/json"[..])
        );
        let j = r.json();
        assert_eq!(j["apiVersion"], api);
        assert_eq!(j["kind"], "ProviderResponse");
        assert_eq!(j["response"]["idempotent"], true);
        assert_eq!(system_error(&j), "");
        let it = items(&j);
        assert_eq!(it.len(), 1);
        assert_eq!(it[0]["key"], "nginx:1.27");
        assert_eq!(it[0]["value"]["verified"], true);
        assert_eq!(it[0]["value"]["policy"], "library");
    }
}

#[tokio::test]
async fn missing_keys_get_an_empty_answer() {
    let v = Vouch::start(POLICIES).await;
    let r = post_raw(&v, r#"{"apiVersion":"externaldata.gatekeeper.sh/v1beta1","kind":"ProviderRequest","request":{}}"#).await;
    let j = r.json();
    assert_eq!(r.status, 200);
    assert!(items(&j).is_empty());
    assert_eq!(system_error(&j), "");
}

#[tokio::test]
async fn duplicate_keys_are_answered_once_in_request_order() {
    let v = Vouch::start(POLICIES).await;
    let j = v
        .verify(&[
            "quay.io/x/y:1",
            "nginx",
            "quay.io/x/y:1",
            "Not A Ref",
            "nginx",
        ])
        .await;
    let keys: Vec<&str> = items(&j)
        .iter()
        .map(|i| i["key"].as_str().expect("key"))
        .collect();
    assert_eq!(keys, ["quay.io/x/y:1", "nginx", "Not A Ref"]);
    let it = items(&j);
    assert_eq!(it[0]["value"]["code"], "no-policy");
    assert_eq!(it[1]["value"]["verified"], true);
    assert_eq!(it[2]["value"]["code"], "invalid-reference");
}

#[tokio::test]
async fn every_limit_holds_at_its_bound_and_fails_just_over() {
    let v = Vouch::start(&format!(
        "limits: {{maxBodyBytes: 2000, maxKeys: 4, maxKeyBytes: 100}}\n{POLICIES}"
    ))
    .await;
    let mut conn = v.connect().await;

    // Keys: 4 pass, 5 fail.
    let four = ["nginx:1", "nginx:2", "nginx:3", "nginx:4"];
    let j = conn
        .post("/v1/verify", provider_request(&four))
        .await
        .expect("ok")
        .json();
    assert_eq!(items(&j).len(), 4);
    assert_eq!(system_error(&j), "");
    let five = ["nginx:1", "nginx:2", "nginx:3", "nginx:4", "nginx:5"];
    let j = conn
        .post("/v1/verify", provider_request(&five))
        .await
        .expect("ok")
        .json();
    assert!(items(&j).is_empty());
    assert_eq!(
        system_error(&j),
        "request-invalid: request has 5 keys, over limits.maxKeys (4)"
    );

    // Key bytes: 100 pass, 101 get a failed verdict of their own (the others are answered).
    let k100 = format!("nginx:{}", "a".repeat(94));
    assert_eq!(k100.len(), 100);
    let j = conn
        .post("/v1/verify", provider_request(&[&k100]))
        .await
        .expect("ok")
        .json();
    assert_eq!(system_error(&j), "");
    let k101 = format!("{k100}b");
    let j = conn
        .post("/v1/verify", provider_request(&[&k101, "nginx:1"]))
        .await
        .expect("ok")
        .json();
    assert_eq!(system_error(&j), "", "{j}");
    assert_eq!(items(&j).len(), 2, "{j}");
    assert_eq!(items(&j)[0]["key"], k101.as_str());
    assert_code(&items(&j)[0]["value"], "invalid-reference");
    assert_eq!(
        items(&j)[0]["value"]["reason"],
        "key is 101 bytes, over limits.maxKeyBytes (100)"
    );
    assert_eq!(items(&j)[1]["value"]["verified"], true);

    // Body bytes: exactly 2000 passes, 2001 fails (padding with JSON whitespace).
    let base = provider_request(&["nginx"]);
    let at = format!("{base}{}", " ".repeat(2000 - base.len()));
    assert_eq!(at.len(), 2000);
    let j = conn
        .post("/v1/verify", at.clone())
        .await
        .expect("ok")
        .json();
    assert_eq!(system_error(&j), "", "{j}");
    let over = format!("{at} ");
    let r = conn.post("/v1/verify", over).await.expect("ok");
    assert_eq!(r.status, 200);
    assert_eq!(
        system_error(&r.json()),
        "request-invalid: request body exceeds limits.maxBodyBytes (2000 bytes)"
    );
}

#[tokio::test]
async fn a_huge_body_is_refused_without_reading_it_all() {
    let v = Vouch::start(POLICIES).await;
    let huge = format!(
        "{}{}",
        provider_request(&["nginx"]),
        " ".repeat(8 * 1024 * 1024)
    );
    let r = v
        .connect()
        .await
        .post("/v1/verify", huge)
        .await
        .expect("answered");
    assert_eq!(r.status, 200);
    assert_eq!(
        system_error(&r.json()),
        "request-invalid: request body exceeds limits.maxBodyBytes (1048576 bytes)"
    );
}

#[tokio::test]
async fn malformed_requests_get_a_system_error_that_says_why() {
    let v = Vouch::start(POLICIES).await;
    let cases = [
        ("", "request body is empty"),
        (
            "{not json",
            "request body is not a valid ProviderRequest: key must be a string",
        ),
        (
            "[\"nginx\"]",
            "request body is not a valid ProviderRequest: expected a JSON object",
        ),
        ("42", "expected a JSON object"),
        (
            r#"{"apiVersion":"externaldata.gatekeeper.sh/v1beta1","kind":"Pod","request":{"keys":[]}}"#,
            "unsupported kind \"Pod\"",
        ),
        (
            r#"{"apiVersion":"v1","kind":"ProviderRequest","request":{"keys":[]}}"#,
            "unsupported apiVersion \"v1\"",
        ),
        (
            r#"{"apiVersion":"externaldata.gatekeeper.sh/v1beta1","kind":"ProviderRequest"}"#,
            "missing field `request`",
        ),
        (
            r#"{"apiVersion":"externaldata.gatekeeper.sh/v1beta1","kind":"ProviderRequest","request":{"keys":[1]}}"#,
            "expected a string",
        ),
    ];
    let mut conn = v.connect().await;
    for (body, want) in cases {
        let r = conn
            .post("/v1/verify", body.to_string())
            .await
            .expect("answered");
        assert_eq!(r.status, 200, "{body:?}");
        let j = r.json();
        assert_eq!(j["kind"], "ProviderResponse", "{body:?}");
        assert!(items(&j).is_empty(), "{body:?}");
        assert!(
            system_error(&j).contains(want),
            "{body:?}: {}",
            system_error(&j)
        );
    }
}

#[tokio::test]
async fn non_post_is_405_with_a_provider_response() {
    let v = Vouch::start(POLICIES).await;
    let mut conn = v.connect().await;
    for method in ["GET", "PUT", "DELETE"] {
        let r = conn.send(method, "/v1/verify", "").await.expect("answered");
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(
            r.headers.get("allow").map(|h| h.as_bytes()),
            Some(&b"POST"[..])
        );
        assert!(system_error(&r.json()).contains("use POST"));
    }
    let r = conn
        .post("/v2/nothing", provider_request(&["nginx"]))
        .await
        .expect("answered");
    assert_eq!(r.status, 404);
}

/// Sleeps for keys starting with `slow`, answers a verdict at once otherwise.
struct Sleepy(Duration);

impl Engine for Sleepy {
    fn evaluate<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Outcome> {
        async move {
            if key.starts_with("slow") {
                tokio::time::sleep(self.0).await;
            }
            Outcome::Value(vouch::engine::Json::new(
                &json!({"verified": true, "reference": key}),
            ))
        }
        .boxed()
    }
}

#[tokio::test]
async fn the_deadline_answers_fast_keys_and_names_slow_ones() {
    let engine: Arc<dyn Engine> = Arc::new(Sleepy(Duration::from_secs(5)));
    let v = Vouch::start_with(&format!("deadline: 400ms\n{POLICIES}"), Some(engine)).await;
    let mut conn = v.connect().await;
    let started = Instant::now();
    let r = conn
        .post(
            "/v1/verify",
            provider_request(&["fast-1", "slow-1", "fast-2"]),
        )
        .await
        .expect("answered");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400),
        "answered before the deadline: {took:?}"
    );
    assert!(
        took < Duration::from_millis(450),
        "answered later than deadline + 50 ms: {took:?}"
    );
    let j = r.json();
    let keys: Vec<&str> = items(&j)
        .iter()
        .map(|i| i["key"].as_str().expect("key"))
        .collect();
    assert_eq!(keys, ["fast-1", "fast-2"]);
    assert_eq!(
        system_error(&j),
        "unavailable: deadline of 400 ms reached before an outcome for 1 key(s): \"slow-1\""
    );
    // The connection is still usable after a deadline answer.
    let r = conn
        .post("/v1/verify", provider_request(&["fast-3"]))
        .await
        .expect("answered");
    assert_eq!(items(&r.json()).len(), 1);
}

#[tokio::test]
async fn readyz_waits_for_certificates_and_metrics_count_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Certificate files do not exist yet: vouch starts, but is not ready.
    let config = Vouch::config(dir.path(), POLICIES);
    let running = vouch::app::start(config, vouch::app::Options::default())
        .await
        .expect("starts without certificate files");
    let ops = running.ops_addr;
    let r = ops_get(ops, "/readyz").await;
    assert_eq!(r.status, 503);
    assert!(
        r.text().contains("tls: waiting for TLS material"),
        "{}",
        r.text()
    );
    assert_eq!(ops_get(ops, "/healthz").await.status, 200);

    let pki = Pki::new();
    pki.write(dir.path());
    assert!(
        eventually(STEP, || async {
            ops_get(ops, "/readyz").await.status == 200
        })
        .await,
        "ready once the files appear"
    );

    let client = pki.gatekeeper_client();
    let mut conn = Conn::open(running.provider_addr, client)
        .await
        .expect("connect");
    for _ in 0..3 {
        conn.post("/v1/verify", provider_request(&["nginx", "quay.io/a/b"]))
            .await
            .expect("ok");
    }
    conn.post("/v1/verify", "{").await.expect("ok");
    conn.send("GET", "/v1/verify", "").await.expect("ok");

    let m = ops_get(ops, "/metrics").await;
    assert_eq!(m.status, 200);
    let text = m.text();
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("metrics parse as Prometheus text");
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        parsed
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    assert_eq!(
        value(
            "vouch_requests_total",
            &[("endpoint", "verify"), ("outcome", "ok")]
        ),
        3.0
    );
    assert_eq!(
        value(
            "vouch_requests_total",
            &[("endpoint", "verify"), ("outcome", "system_error")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "vouch_requests_total",
            &[("endpoint", "verify"), ("outcome", "rejected")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "vouch_keys_total",
            &[("endpoint", "verify"), ("outcome", "verdict")]
        ),
        6.0
    );
    assert_eq!(
        value("vouch_requests_in_flight", &[("endpoint", "verify")]),
        0.0
    );
    assert_eq!(value("vouch_connections_open", &[]), 1.0);
    assert!(value("vouch_tls_reloads_total", &[("result", "success")]) >= 1.0);
    assert!(
        parsed
            .samples
            .iter()
            .any(|s| s.metric == "vouch_request_duration_seconds_count"
                || matches!(s.value, prometheus_parse::Value::Histogram(_))),
        "latency histogram present"
    );
    // No label value comes from a request: the keys we sent appear nowhere.
    assert!(
        !text.contains("nginx") && !text.contains("quay.io"),
        "{text}"
    );
    running.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests() {
    let engine: Arc<dyn Engine> = Arc::new(Sleepy(Duration::from_millis(300)));
    let v = Vouch::start_with(POLICIES, Some(engine)).await;
    let mut conn = v.connect().await;
    let request =
        tokio::spawn(async move { conn.post("/v1/verify", provider_request(&["slow-1"])).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopped = tokio::time::timeout(STEP, v.running.stop());
    let (reply, stopped) = tokio::join!(request, stopped);
    assert!(stopped.is_ok(), "shutdown completes");
    let reply = reply
        .expect("join")
        .expect("in-flight request answered during shutdown");
    assert_eq!(items(&reply.json()).len(), 1);
    // New connections are refused once stopped.
    assert!(
        Conn::open(v.running.provider_addr, v.gatekeeper_client())
            .await
            .is_err()
    );
}
