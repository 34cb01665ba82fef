//! The shipped templates under Gatekeeper's semantics: the Rego of `vouch manifests` runs in
//! regorus (Rego v0), and `external_data` behaves as Gatekeeper's builtin does — a real
//! mTLS call to a running vouch, the `responses`/`errors` split, `status_code`,
//! `system_error`, null lists on transport failure, and a per-(provider, key) response
//! cache that keeps values and errors but never `systemError` (`status_code` 0 when every
//! key came from it). The generated objects are also validated against Gatekeeper's CRD
//! schemas.

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use support::gatekeeper::{Gatekeeper, violations};
use support::registry::*;
use support::*;
use vouch::manifests::{self, FailurePolicy};

/// The violations each template raises for `object`.
struct Violations {
    verification: Vec<Value>,
    system_error: Vec<Value>,
}

fn evaluate(gk: &Gatekeeper, object: Value) -> Violations {
    let mut engine = gk.engine(&[
        ("lib.rego", manifests::LIB_REGO),
        ("verification.rego", manifests::VERIFICATION_REGO),
        ("system_error.rego", manifests::SYSTEM_ERROR_REGO),
    ]);
    let input = json!({"review": {"kind": {"kind": object["kind"]}, "object": object}});
    let data = json!({});
    Violations {
        verification: violations(
            &mut engine,
            "data.vouchverification.violation",
            &input,
            &data,
        ),
        system_error: violations(
            &mut engine,
            "data.vouchsystemerror.violation",
            &input,
            &data,
        ),
    }
}

fn pod(images: &[&str]) -> Value {
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, im)| json!({"name": format!("c{i}"), "image": im}))
        .collect();
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": containers}})
}

fn deployment(image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "default"},
        "spec": {"template": {"spec": {"initContainers": [{"name": "i", "image": image}], "containers": [{"name": "c", "image": image}]}}}})
}

fn cronjob(image: &str) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cj", "namespace": "default"},
        "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}}}})
}

/// The enforcement action the generated system-error Constraint carries.
fn system_error_action(policy: FailurePolicy) -> String {
    let o = manifests::Options {
        failure_policy: policy,
        namespace: "vouch-system".into(),
        ca_bundle: String::new(),
        port: 8443,
    };
    manifests::objects(&o)
        .into_iter()
        .find(|obj| obj["metadata"]["name"] == "vouch-system-error")
        .and_then(|obj| {
            obj["spec"]["enforcementAction"]
                .as_str()
                .map(str::to_string)
        })
        .expect("system-error constraint")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_under_gatekeeper_semantics() {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let key = CosignKey::generate();
    let keys_dir = tempfile::tempdir().expect("tempdir");
    let key_file = keys_dir.path().join("k.pub");
    std::fs::write(&key_file, key.public_pem()).expect("key");
    let host = registry.host.clone();
    let mut signed = Vec::new();
    for tag in ["a", "b"] {
        let image = pusher.push_image("acme/app", tag).await;
        let sig = key.sign_image(&format!("{host}/acme/app"), &image.digest);
        push_cosign_signatures(&pusher, "acme/app", &image.digest, &[sig]).await;
        signed.push(format!("{host}/acme/app:{tag}"));
    }
    pusher.push_image("acme/app", "unsigned").await;
    let unsigned = format!("{host}/acme/app:unsigned");
    let v = Vouch::start(&format!(
        "registries:\n- host: {host}\n  plainHttp: true\npolicies:\n- name: acme\n  scopes: [\"{host}/acme/*\"]\n  verifiers:\n  - cosign: {{publicKeys: [{}]}}\n",
        key_file.display()
    ))
    .await;
    let gk = Gatekeeper::new(v.running.provider_addr, v.gatekeeper_client());
    let run = |gk: &Gatekeeper, object: Value| {
        let gk = gk.clone();
        tokio::task::spawn_blocking(move || evaluate(&gk, object))
    };

    // Signed images: no violation.
    let r = run(&gk, pod(&[&signed[0], &signed[1]]))
        .await
        .expect("eval");
    assert!(
        r.verification.is_empty() && r.system_error.is_empty(),
        "{:?} {:?}",
        r.verification,
        r.system_error
    );

    // One unsigned image: one verification violation naming it, no system error.
    let r = run(&gk, pod(&[&signed[0], &unsigned])).await.expect("eval");
    assert_eq!(r.verification.len(), 1, "{:?}", r.verification);
    assert_eq!(r.verification[0]["details"]["image"], unsigned.as_str());
    assert_eq!(r.verification[0]["details"]["code"], "unsigned");
    assert!(r.system_error.is_empty(), "{:?}", r.system_error);

    // Workload templates and CronJobs are covered too (init containers included).
    let r = run(&gk, deployment(&unsigned)).await.expect("eval");
    assert_eq!(r.verification.len(), 1, "{:?}", r.verification);
    let r = run(&gk, cronjob(&unsigned)).await.expect("eval");
    assert_eq!(r.verification.len(), 1, "{:?}", r.verification);

    // Everything from Gatekeeper's cache (status_code 0): no false violation either way.
    let cached =
        gk.external_data(&json!({"provider": "vouch-verify", "keys": [signed[0], unsigned]}));
    assert_eq!(cached["status_code"], 0);
    let r = run(&gk, pod(&[&signed[0], &unsigned])).await.expect("eval");
    assert_eq!(r.verification.len(), 1);
    assert!(
        r.system_error.is_empty(),
        "status_code 0 is not an error: {:?}",
        r.system_error
    );

    // Registry down, new images: a system-error violation only.
    let mut registry = registry;
    registry.stop();
    let fresh = format!("{host}/acme/app:never-seen");
    let r = run(&gk, pod(&[&fresh])).await.expect("eval");
    assert!(r.verification.is_empty(), "{:?}", r.verification);
    assert_eq!(r.system_error.len(), 1, "{:?}", r.system_error);
    assert!(
        r.system_error[0]["msg"]
            .as_str()
            .is_some_and(|m| m.contains(&fresh)),
        "{:?}",
        r.system_error
    );
    assert_eq!(system_error_action(FailurePolicy::Open), "warn");
    assert_eq!(system_error_action(FailurePolicy::Closed), "deny");

    // vouch unreachable: a system-error violation.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let nowhere = Gatekeeper {
        addr: closed.local_addr().expect("addr"),
        cache: Arc::default(),
        ..gk.clone()
    };
    drop(closed);
    let r = run(&nowhere, pod(&[&signed[0]])).await.expect("eval");
    assert!(r.verification.is_empty());
    assert_eq!(r.system_error.len(), 1, "{:?}", r.system_error);
}

/// Every generated object validates against Gatekeeper's published CRD schema for its kind.
#[test]
fn generated_objects_match_gatekeeper_crd_schemas() {
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/gatekeeper");
    let mut schemas: HashMap<(String, String), Value> = HashMap::new();
    for file in [
        "provider-crd.yaml",
        "constrainttemplate-crd.yaml",
        "assign-crd.yaml",
    ] {
        let text = std::fs::read_to_string(dir.join(file)).expect("fixture");
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let crd: Value = serde::Deserialize::deserialize(doc).expect("yaml");
            let group = crd["spec"]["group"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let kind = crd["spec"]["names"]["kind"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            for version in crd["spec"]["versions"].as_array().into_iter().flatten() {
                let api = format!("{group}/{}", version["name"].as_str().unwrap_or_default());
                schemas.insert(
                    (api, kind.clone()),
                    version["schema"]["openAPIV3Schema"].clone(),
                );
            }
        }
    }
    for policy in [FailurePolicy::Open, FailurePolicy::Closed] {
        let o = manifests::Options {
            failure_policy: policy,
            namespace: "vouch-system".into(),
            ca_bundle: "Q0E=".into(),
            port: 8443,
        };
        let mut validated = 0;
        for obj in manifests::objects(&o) {
            let api = obj["apiVersion"].as_str().unwrap_or_default().to_string();
            let kind = obj["kind"].as_str().unwrap_or_default().to_string();
            let Some(schema) = schemas.get(&(api.clone(), kind.clone())) else {
                // Constraints' schemas are generated by Gatekeeper from their template; no
                // published SyncSet CRD is among the fixtures.
                assert!(
                    api.starts_with("constraints.gatekeeper.sh/") || kind == "SyncSet",
                    "no schema for {api} {kind}"
                );
                continue;
            };
            let validator = jsonschema::validator_for(schema).expect("schema compiles");
            let errors: Vec<String> = validator.iter_errors(&obj).map(|e| e.to_string()).collect();
            assert!(
                errors.is_empty(),
                "{kind} {}: {errors:?}",
                obj["metadata"]["name"]
            );
            validated += 1;
        }
        assert_eq!(validated, 15, "3 Providers, 3 templates, 9 Assigns");
    }
}
