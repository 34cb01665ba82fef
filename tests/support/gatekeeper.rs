//! Gatekeeper as the shipped templates observe it, for evaluating the shipped Rego in
//! regorus against a running vouch (or a fake Provider).
//!
//! - [`Gatekeeper::external_data`] is Gatekeeper's `external_data` builtin: the
//!   per-(provider, key) response cache (values and per-key errors, never `systemError`;
//!   `status_code` 0 when every key came from it), the Provider looked up by name, one
//!   `POST` to the Provider's path bounded as a whole (connect, TLS, request, response) by
//!   the Provider's `spec.timeout`, and on any failure (transport, timeout, a body that is
//!   not a ProviderResponse, an unknown Provider) null `responses` and `errors` with a
//!   `system_error` saying what failed, as Gatekeeper's `HandleError` builds them.
//! - Within one evaluation the builtin is memoized (Gatekeeper registers it with
//!   `Memoize: true`); [`violations`] is one evaluation.
//! - [`Gatekeeper::review`] is Gatekeeper's validating review: every template with a
//!   Constraint matching the object is evaluated in turn, each in its own evaluation (its own
//!   compiler and query), so templates do not share `external_data` answers except through
//!   the response cache, and the review ends when the last one has.
//! - `crypto.sha256`, an OPA builtin regorus does not have, is provided here as OPA defines
//!   it: the lowercase hex SHA-256 of a string.
//! - [`FakeProvider`] answers as the test says, or accepts connections and never answers.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use sha2::Digest;
use tokio::task::JoinSet;
use vouch::manifests::{self, FailurePolicy, WebhookTimeouts};

use super::{Conn, Pki, provider_request};

/// Gatekeeper's response cache: per (provider, key), a value or a per-key error.
pub type ResponseCache = Arc<Mutex<HashMap<(String, String), Result<Value, String>>>>;

/// A Provider as Gatekeeper knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// `spec.url`; the model sends to the Provider's path on [`Gatekeeper::addr`].
    pub url: String,
    /// `spec.timeout`: the bound of one call, connection included.
    pub timeout: Duration,
}

impl Provider {
    /// The path of `spec.url`.
    fn path(&self) -> &str {
        let rest = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |x| x.1);
        rest.find('/').map_or("/", |i| &rest[i..])
    }
}

/// The Providers among `objects` (the output of `vouch manifests`), by name.
pub fn providers(objects: &[Value]) -> HashMap<String, Provider> {
    objects
        .iter()
        .filter(|o| o["kind"] == "Provider")
        .map(|o| {
            (
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                Provider {
                    url: o["spec"]["url"].as_str().unwrap_or_default().to_string(),
                    timeout: Duration::from_secs(o["spec"]["timeout"].as_u64().unwrap_or(0)),
                },
            )
        })
        .collect()
}

/// The inputs of `vouch manifests` for `policy` and Gatekeeper's webhook timeouts, the
/// uniqueness policy included.
pub fn options(policy: FailurePolicy, webhooks: WebhookTimeouts) -> manifests::Options {
    manifests::Options {
        failure_policy: policy,
        namespace: "vouch-system".into(),
        ca_bundle: "Q0E=".into(),
        port: 8443,
        unique_service_selector: true,
        webhooks,
    }
}

/// `data.inventory` as Gatekeeper replicates it, holding `services` of namespace `default`.
pub fn inventory(services: &[&Value]) -> Value {
    let by_name: serde_json::Map<String, Value> = services
        .iter()
        .map(|s| {
            let name = s["metadata"]["name"].as_str().unwrap_or_default();
            (name.to_string(), (*s).clone())
        })
        .collect();
    json!({"inventory": {"namespace": {"default": {"v1": {"Service": by_name}}}}})
}

/// Gatekeeper's external-data client, reduced to what the templates can observe.
#[derive(Clone)]
pub struct Gatekeeper {
    /// Where every Provider's calls go (the model has one provider host).
    pub addr: SocketAddr,
    pub client: Arc<rustls::ClientConfig>,
    pub cache: ResponseCache,
    pub runtime: tokio::runtime::Handle,
    pub providers: Arc<HashMap<String, Provider>>,
}

/// `HandleError`: null lists, the status code, the error as `system_error`.
fn handle_error(status: u16, error: String) -> Value {
    json!({"responses": null, "errors": null, "status_code": status, "system_error": error})
}

impl Gatekeeper {
    /// `external_data({"provider": p, "keys": [...]})`, not memoized.
    pub fn external_data(&self, request: &Value) -> Value {
        let provider = request["provider"].as_str().unwrap_or_default().to_string();
        let keys: Vec<String> = request["keys"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let (mut responses, mut errors, mut uncached) = (Vec::new(), Vec::new(), Vec::new());
        {
            let cache = self.cache.lock().expect("cache");
            for key in &keys {
                match cache.get(&(provider.clone(), key.clone())) {
                    Some(Ok(v)) => responses.push(json!([key, v])),
                    Some(Err(e)) => errors.push(json!([key, e])),
                    None => uncached.push(key.clone()),
                }
            }
        }
        if uncached.is_empty() {
            // Nothing to ask: no request is made and status_code is 0.
            return json!({"responses": responses, "errors": errors, "status_code": 0, "system_error": ""});
        }
        let Some(spec) = self.providers.get(&provider).cloned() else {
            return handle_error(400, "key is not found in provider cache".into());
        };
        let refs: Vec<&str> = uncached.iter().map(String::as_str).collect();
        let body = provider_request(&refs);
        let (addr, client, path) = (self.addr, self.client.clone(), spec.path().to_string());
        let call = async move {
            let mut conn = Conn::open(addr, client).await?;
            conn.post(&path, body).await
        };
        let reply = self
            .runtime
            .block_on(async move { tokio::time::timeout(spec.timeout, call).await });
        let reply = match reply {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                return handle_error(
                    500,
                    format!(
                        "failed to send external data request: Post \"{}\": {e}",
                        spec.url
                    ),
                );
            }
            Err(_) => {
                return handle_error(
                    500,
                    format!(
                        "failed to send external data request: Post \"{}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                        spec.url
                    ),
                );
            }
        };
        let parsed: Value = match serde_json::from_slice(&reply.body) {
            Ok(v @ Value::Object(_)) => v,
            Ok(other) => {
                return handle_error(
                    500,
                    format!("failed to unmarshal external data response: not an object: {other}"),
                );
            }
            Err(e) => {
                return handle_error(
                    500,
                    format!("failed to unmarshal external data response: {e}"),
                );
            }
        };
        let mut cache = self.cache.lock().expect("cache");
        for item in parsed["response"]["items"].as_array().into_iter().flatten() {
            let key = item["key"].as_str().unwrap_or_default().to_string();
            // Go's `Error string` with omitempty: an empty error is no error.
            let entry = match item["error"].as_str().filter(|e| !e.is_empty()) {
                Some(e) => {
                    errors.push(json!([key, e]));
                    Err(e.to_string())
                }
                None => {
                    responses.push(json!([key, item["value"]]));
                    Ok(item["value"].clone())
                }
            };
            cache.insert((provider.clone(), key), entry);
        }
        json!({"responses": responses, "errors": errors, "status_code": reply.status,
            "system_error": parsed["response"]["systemError"].as_str().unwrap_or_default()})
    }
}

impl Gatekeeper {
    /// A client for vouch at `addr`, with an empty response cache and the Providers `vouch
    /// manifests` generates by default (open, Gatekeeper's webhook timeouts).
    pub fn new(addr: SocketAddr, client: Arc<rustls::ClientConfig>) -> Gatekeeper {
        let objects = manifests::objects(&options(FailurePolicy::Open, WebhookTimeouts::default()))
            .expect("default manifests");
        Gatekeeper {
            addr,
            client,
            cache: Arc::default(),
            runtime: tokio::runtime::Handle::current(),
            providers: Arc::new(providers(&objects)),
        }
    }

    /// The same client with the Providers among `objects` (the output of `vouch
    /// manifests`) instead.
    pub fn with_providers(mut self, objects: &[Value]) -> Gatekeeper {
        self.providers = Arc::new(providers(objects));
        self
    }

    /// A regorus engine (Rego v0) with `policies` loaded and `external_data` bound to this
    /// client.
    pub fn engine(&self, policies: &[(&str, &str)]) -> regorus::Engine {
        let gk = self.clone();
        rego_engine(policies, move |request| gk.external_data(request))
    }
}

/// Numbers evaluations across threads; [`violations`] takes a fresh one.
static EVALUATIONS: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The evaluation running on this thread.
    static EVALUATION: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Answers already given in one evaluation: (evaluation, request) to response.
type Memo = Arc<Mutex<(u64, HashMap<String, Value>)>>;

/// A regorus engine (Rego v0) with `policies` loaded, `crypto.sha256`, and `external_data`
/// answered by `external_data`, memoized within one evaluation as Gatekeeper's builtin is.
pub fn rego_engine(
    policies: &[(&str, &str)],
    external_data: impl Fn(&Value) -> Value + Send + Sync + 'static,
) -> regorus::Engine {
    let mut engine = regorus::Engine::new();
    engine.set_rego_v0(true);
    for (name, rego) in policies {
        engine
            .add_policy(name.to_string(), rego.to_string())
            .expect("template Rego parses");
    }
    engine
        .add_extension(
            "crypto.sha256".into(),
            1,
            Box::new(|args: Vec<regorus::Value>| {
                let s = args[0].as_string()?;
                Ok(regorus::Value::from(hex(&sha2::Sha256::digest(
                    s.as_bytes(),
                ))))
            }),
        )
        .expect("crypto.sha256");
    let answer: Arc<dyn Fn(&Value) -> Value + Send + Sync> = Arc::new(external_data);
    let memo: Memo = Arc::default();
    engine
        .add_extension(
            "external_data".into(),
            1,
            Box::new(move |args: Vec<regorus::Value>| {
                let request = args[0].to_json_str()?;
                let evaluation = EVALUATION.with(|e| e.get());
                let known = {
                    let mut memo = memo.lock().expect("memo");
                    if memo.0 != evaluation {
                        *memo = (evaluation, HashMap::new());
                    }
                    memo.1.get(&request).cloned()
                };
                let response = match known {
                    Some(r) => r,
                    None => {
                        let r = answer(&serde_json::from_str(&request)?);
                        let mut memo = memo.lock().expect("memo");
                        if memo.0 == evaluation {
                            memo.1.insert(request, r.clone());
                        }
                        r
                    }
                };
                regorus::Value::from_json_str(&response.to_string())
            }),
        )
        .expect("extension");
    engine
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Evaluates `rule` (a set of violations) for `input` and `data`: one evaluation, so
/// `external_data` answers are memoized within it and not beyond.
pub fn violations(
    engine: &mut regorus::Engine,
    rule: &str,
    input: &Value,
    data: &Value,
) -> Vec<Value> {
    let evaluation = EVALUATIONS.fetch_add(1, Ordering::Relaxed);
    EVALUATION.with(|e| e.set(evaluation));
    engine.clear_data();
    engine
        .add_data(regorus::Value::from_json_str(&data.to_string()).expect("data"))
        .expect("add data");
    engine.set_input(regorus::Value::from_json_str(&input.to_string()).expect("input"));
    let v = engine.eval_rule(rule.into()).expect("evaluates");
    EVALUATION.with(|e| e.set(0));
    let v: Value = serde_json::from_str(&v.to_json_str().expect("json")).expect("json");
    v.as_array().cloned().unwrap_or_default()
}

/// A ConstraintTemplate as Gatekeeper compiles it: its Rego and its libraries.
#[derive(Debug, Clone)]
pub struct Template {
    pub kind: String,
    /// `data.<package>.violation`.
    pub rule: String,
    pub modules: Vec<(String, String)>,
}

/// A Constraint: which objects it matches, its parameters, its enforcement action.
#[derive(Debug, Clone)]
pub struct Constraint {
    pub kind: String,
    pub name: String,
    pub action: String,
    pub parameters: Value,
    pub matching: Value,
}

impl Constraint {
    /// `spec.match.kinds` and `excludedNamespaces` against the reviewed object.
    fn matches(&self, review: &Value) -> bool {
        let group = review["kind"]["group"].as_str().unwrap_or_default();
        let kind = review["kind"]["kind"].as_str().unwrap_or_default();
        let namespace = review["object"]["metadata"]["namespace"]
            .as_str()
            .or(review["namespace"].as_str())
            .unwrap_or_default();
        let listed = |list: &Value, want: &str| {
            list.as_array()
                .into_iter()
                .flatten()
                .any(|v| v == want || v == "*")
        };
        let kinds = self.matching["kinds"].as_array().into_iter().flatten();
        let kind_matches = kinds
            .clone()
            .any(|k| listed(&k["apiGroups"], group) && listed(&k["kinds"], kind));
        let excluded = self.matching["excludedNamespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|n| n == namespace);
        (kinds.count() == 0 || kind_matches) && !excluded
    }
}

/// The templates and Constraints among `vouch manifests` objects.
#[derive(Debug, Clone)]
pub struct Policies {
    pub templates: Vec<Template>,
    pub constraints: Vec<Constraint>,
}

impl Policies {
    pub fn from_objects(objects: &[Value]) -> Policies {
        let templates = objects
            .iter()
            .filter(|o| o["kind"] == "ConstraintTemplate")
            .map(|o| {
                let target = &o["spec"]["targets"][0];
                let rego = target["rego"].as_str().unwrap_or_default().to_string();
                let package = rego
                    .lines()
                    .find_map(|l| l.strip_prefix("package "))
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                let mut modules = vec![("template.rego".to_string(), rego.clone())];
                for (i, lib) in target["libs"].as_array().into_iter().flatten().enumerate() {
                    modules.push((
                        format!("lib{i}.rego"),
                        lib.as_str().unwrap_or_default().to_string(),
                    ));
                }
                Template {
                    kind: o["spec"]["crd"]["spec"]["names"]["kind"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    rule: format!("data.{package}.violation"),
                    modules,
                }
            })
            .collect();
        let constraints = objects
            .iter()
            .filter(|o| {
                o["apiVersion"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("constraints.gatekeeper.sh/"))
            })
            .map(|o| Constraint {
                kind: o["kind"].as_str().unwrap_or_default().to_string(),
                name: o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                action: o["spec"]["enforcementAction"]
                    .as_str()
                    .unwrap_or("deny")
                    .to_string(),
                parameters: match &o["spec"]["parameters"] {
                    Value::Null => json!({}),
                    p => p.clone(),
                },
                matching: o["spec"]["match"].clone(),
            })
            .collect();
        Policies {
            templates,
            constraints,
        }
    }
}

/// One result of a review: a violation of a Constraint.
#[derive(Debug, Clone)]
pub struct Violation {
    pub constraint: String,
    pub kind: String,
    /// The Constraint's enforcement action: `deny`, `warn` or `dryrun`.
    pub action: String,
    pub msg: String,
    pub details: Value,
}

/// What one validating review gave, and how long it took.
#[derive(Debug)]
pub struct Review {
    pub violations: Vec<Violation>,
    /// Each template evaluated, in order, with the time its evaluation took.
    pub evaluations: Vec<(String, Duration)>,
    /// From the start of the first evaluation to the end of the last: when Gatekeeper can
    /// answer the API server.
    pub elapsed: Duration,
}

impl Review {
    /// The violations whose Constraint denies.
    pub fn denials(&self) -> Vec<&Violation> {
        self.violations
            .iter()
            .filter(|v| v.action == "deny")
            .collect()
    }

    pub fn admitted(&self) -> bool {
        self.denials().is_empty()
    }
}

impl Gatekeeper {
    /// Gatekeeper's validating review of `review` (an AdmissionRequest: `kind`,
    /// `operation`, `uid`, `object`, ...) with `data` as `data`: every template with a
    /// matching Constraint, one after the other (in the order of `policies`; Gatekeeper's
    /// order is a map's), each template in its own evaluation. Blocking: call it off the
    /// runtime's worker threads.
    pub fn review(&self, policies: &Policies, review: &Value, data: &Value) -> Review {
        let started = Instant::now();
        let mut out = Review {
            violations: Vec::new(),
            evaluations: Vec::new(),
            elapsed: Duration::ZERO,
        };
        for template in &policies.templates {
            let constraints: Vec<&Constraint> = policies
                .constraints
                .iter()
                .filter(|c| c.kind == template.kind && c.matches(review))
                .collect();
            if constraints.is_empty() {
                continue;
            }
            let evaluation = Instant::now();
            let modules: Vec<(&str, &str)> = template
                .modules
                .iter()
                .map(|(n, r)| (n.as_str(), r.as_str()))
                .collect();
            let mut engine = self.engine(&modules);
            for constraint in constraints {
                let input = json!({"review": review, "parameters": constraint.parameters});
                for v in violations(&mut engine, &template.rule, &input, data) {
                    out.violations.push(Violation {
                        constraint: constraint.name.clone(),
                        kind: template.kind.clone(),
                        action: constraint.action.clone(),
                        msg: v["msg"].as_str().unwrap_or_default().to_string(),
                        details: v["details"].clone(),
                    });
                }
            }
            out.evaluations
                .push((template.kind.clone(), evaluation.elapsed()));
        }
        out.elapsed = started.elapsed();
        out
    }
}

/// A fake Provider's answer to the keys of a request: an HTTP status and a body.
pub type Answer = Arc<dyn Fn(&[String]) -> (u16, Value) + Send + Sync>;

/// How a [`FakeProvider`] treats each connection.
#[derive(Clone)]
pub enum Behaviour {
    /// Answers each request with `answer(keys)`: an HTTP status and a body.
    Answer(Answer),
    /// Answers as [`Behaviour::Answer`], after the delay.
    Slow(Duration, Answer),
    /// Accepts the TCP connection and never sends a byte: the TLS handshake never ends.
    SilentTcp,
    /// Completes the TLS handshake, reads what comes, and never answers.
    SilentHttp,
}

impl Behaviour {
    /// Answers `{"response": {"items": items(keys), "systemError": system_error}}`.
    pub fn items(
        items: impl Fn(&[String]) -> Value + Send + Sync + 'static,
        system_error: &str,
    ) -> Behaviour {
        let system_error = system_error.to_string();
        Behaviour::Answer(Arc::new(move |keys| {
            (
                200,
                json!({"apiVersion": "externaldata.gatekeeper.sh/v1beta1", "kind": "ProviderResponse",
                    "response": {"idempotent": false, "items": items(keys), "systemError": system_error}}),
            )
        }))
    }
}

impl Behaviour {
    /// The same answers, each after `delay`.
    pub fn after(self, delay: Duration) -> Behaviour {
        match self {
            Behaviour::Answer(answer) | Behaviour::Slow(_, answer) => {
                Behaviour::Slow(delay, answer)
            }
            silent => silent,
        }
    }
}

/// A Provider on loopback that does what its [`Behaviour`] says, with a serving
/// certificate from its own [`Pki`]. Stops (connections included) on drop.
pub struct FakeProvider {
    pub addr: SocketAddr,
    pub pki: Pki,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeProvider {
    pub async fn start(behaviour: Behaviour) -> FakeProvider {
        let pki = Pki::new();
        let certs = CertificateDer::pem_slice_iter(pki.server.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("server cert");
        let key = PrivateKeyDer::from_pem_slice(pki.server.key_pem.as_bytes()).expect("key");
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a fake provider on loopback");
        let addr = listener.local_addr().expect("address");
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                while connections.try_join_next().is_some() {}
                let (acceptor, behaviour, counted) =
                    (acceptor.clone(), behaviour.clone(), counted.clone());
                connections.spawn(async move {
                    serve(tcp, acceptor, behaviour, counted).await;
                });
            }
        });
        FakeProvider {
            addr,
            pki,
            requests,
            task,
        }
    }

    /// Gatekeeper with this provider as every Provider's host.
    pub fn gatekeeper(&self) -> Gatekeeper {
        Gatekeeper::new(self.addr, self.pki.gatekeeper_client())
    }

    /// Requests answered (or, silent, received) so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut tcp: tokio::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    behaviour: Behaviour,
    requests: Arc<AtomicUsize>,
) {
    let (delay, answer) = match behaviour {
        Behaviour::SilentTcp => {
            // Hold the connection open, read and drop what comes, answer nothing.
            let _ = tokio::io::copy(&mut tcp, &mut tokio::io::sink()).await;
            return;
        }
        Behaviour::SilentHttp => {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            requests.fetch_add(1, Ordering::SeqCst);
            let _ = tokio::io::copy(&mut tls, &mut tokio::io::sink()).await;
            return;
        }
        Behaviour::Answer(answer) => (Duration::ZERO, answer),
        Behaviour::Slow(delay, answer) => (delay, answer),
    };
    let Ok(tls) = acceptor.accept(tcp).await else {
        return;
    };
    let service =
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let (answer, requests) = (answer.clone(), requests.clone());
            async move {
                let body = request
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let parsed: Value = serde_json::from_slice(&body).unwrap_or_default();
                let keys: Vec<String> = parsed["request"]["keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect();
                requests.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                let (status, body) = answer(&keys);
                let response = hyper::Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body.to_string())))
                    .expect("response");
                Ok::<_, Infallible>(response)
            }
        });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .await;
}
