//! Gatekeeper's external-data client as the templates observe it, for evaluating the
//! shipped Rego in regorus against a running vouch.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::{Conn, provider_request};

/// Gatekeeper's response cache: per (provider, key), a value or a per-key error.
pub type ResponseCache = Arc<Mutex<HashMap<(String, String), Result<Value, String>>>>;

/// Gatekeeper's external-data client, reduced to what the templates can observe.
#[derive(Clone)]
pub struct Gatekeeper {
    pub addr: SocketAddr,
    pub client: Arc<rustls::ClientConfig>,
    pub cache: ResponseCache,
    pub runtime: tokio::runtime::Handle,
}

impl Gatekeeper {
    /// `external_data({"provider": p, "keys": [...]})`.
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
        let refs: Vec<&str> = uncached.iter().map(String::as_str).collect();
        let body = provider_request(&refs);
        let (addr, client) = (self.addr, self.client.clone());
        let path = match provider.as_str() {
            "vouch-mutate" => "/v1/mutate",
            "vouch-claims" => "/v1/claims",
            _ => "/v1/verify",
        };
        let reply = self.runtime.block_on(async move {
            let mut conn = Conn::open(addr, client).await?;
            conn.post(path, body).await
        });
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                return json!({"responses": null, "errors": null, "status_code": 0,
                    "system_error": format!("failed to send external data request: {e}")});
            }
        };
        let parsed = reply.json();
        let mut cache = self.cache.lock().expect("cache");
        for item in parsed["response"]["items"].as_array().into_iter().flatten() {
            let key = item["key"].as_str().unwrap_or_default().to_string();
            let entry = match item.get("error").and_then(Value::as_str) {
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
            "system_error": parsed["response"]["systemError"]})
    }
}

impl Gatekeeper {
    /// A client for vouch at `addr`, with an empty response cache.
    pub fn new(addr: SocketAddr, client: Arc<rustls::ClientConfig>) -> Gatekeeper {
        Gatekeeper {
            addr,
            client,
            cache: Arc::default(),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// A regorus engine (Rego v0) with `policies` loaded and `external_data` bound to this
    /// client.
    pub fn engine(&self, policies: &[(&str, &str)]) -> regorus::Engine {
        let mut engine = regorus::Engine::new();
        engine.set_rego_v0(true);
        for (name, rego) in policies {
            engine
                .add_policy(name.to_string(), rego.to_string())
                .expect("template Rego parses");
        }
        let gk = self.clone();
        engine
            .add_extension(
                "external_data".into(),
                1,
                Box::new(move |args: Vec<regorus::Value>| {
                    let request: Value = serde_json::from_str(&args[0].to_json_str()?)?;
                    regorus::Value::from_json_str(&gk.external_data(&request).to_string())
                }),
            )
            .expect("extension");
        engine
    }
}

/// Evaluates `rule` (a set of violations) for `input` and `data`.
pub fn violations(
    engine: &mut regorus::Engine,
    rule: &str,
    input: &Value,
    data: &Value,
) -> Vec<Value> {
    engine.clear_data();
    engine
        .add_data(regorus::Value::from_json_str(&data.to_string()).expect("data"))
        .expect("add data");
    engine.set_input(regorus::Value::from_json_str(&input.to_string()).expect("input"));
    let v = engine.eval_rule(rule.into()).expect("evaluates");
    let v: Value = serde_json::from_str(&v.to_json_str().expect("json")).expect("json");
    v.as_array().cloned().unwrap_or_default()
}
