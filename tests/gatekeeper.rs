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

/// `vouch manifests` inputs for `policy`, the uniqueness policy included, with webhook
/// timeouts closed mode accepts (Gatekeeper's mutating webhook raised to 2 s).
fn options(policy: FailurePolicy) -> manifests::Options {
    support::gatekeeper::options(
        policy,
        manifests::WebhookTimeouts {
            validating: std::time::Duration::from_secs(3),
            mutating: std::time::Duration::from_secs(2),
        },
    )
}

/// The enforcement action the generated system-error Constraint carries.
fn system_error_action(policy: FailurePolicy) -> String {
    manifests::objects(&options(policy))
        .expect("objects")
        .into_iter()
        .find(|obj| obj["metadata"]["name"] == "vouch-system-error")
        .and_then(|obj| {
            obj["spec"]["enforcementAction"]
                .as_str()
                .map(str::to_string)
        })
        .expect("system-error constraint")
}

/// A registry, a cosign key, and the policy trusting it for `<registry>/acme/*`.
struct Acme {
    registry: Registry,
    pusher: Pusher,
    key: CosignKey,
    host: String,
    key_file: std::path::PathBuf,
    _keys: tempfile::TempDir,
}

impl Acme {
    fn start() -> Acme {
        let registry = Registry::start();
        let pusher = Pusher::new(&registry);
        let key = CosignKey::generate();
        let keys = tempfile::tempdir().expect("tempdir");
        let key_file = keys.path().join("k.pub");
        std::fs::write(&key_file, key.public_pem()).expect("key");
        Acme {
            host: registry.host.clone(),
            registry,
            pusher,
            key,
            key_file,
            _keys: keys,
        }
    }

    async fn vouch(&self) -> Vouch {
        Vouch::start(&format!(
            "registries:\n- host: {host}\n  plainHttp: true\npolicies:\n- name: acme\n  scopes: [\"{host}/acme/*\"]\n  verifiers:\n  - cosign: {{publicKeys: [{}]}}\n",
            self.key_file.display(),
            host = self.host
        ))
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_under_gatekeeper_semantics() {
    let mut acme = Acme::start();
    let (pusher, key, host) = (&acme.pusher, &acme.key, acme.host.clone());
    let mut signed = Vec::new();
    for tag in ["a", "b"] {
        push_signed(pusher, key, &host, "acme/app", tag).await;
        signed.push(format!("{host}/acme/app:{tag}"));
    }
    pusher.push_image("acme/app", "unsigned").await;
    let unsigned = format!("{host}/acme/app:unsigned");
    let v = acme.vouch().await;
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
    acme.registry.stop();
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

/// Whether Gatekeeper admits the object under `policy`: the verification Constraint denies
/// in both modes, the system-error one only when closed.
fn admitted(r: &Violations, policy: FailurePolicy) -> bool {
    r.verification.is_empty() && (policy == FailurePolicy::Open || r.system_error.is_empty())
}

/// Fail-open means "vouch or the registry is unavailable", never "the pod author or the
/// image pusher shaped the request or the signature": every row holds an unsigned image,
/// and in both modes the pod is denied, by the verification template, whatever was added
/// beside it. A junk layer beside a valid signature does not hide it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_cannot_be_bought_with_the_request_or_the_signature() {
    let acme = Acme::start();
    let (pusher, key, host) = (&acme.pusher, &acme.key, acme.host.clone());
    // 300 KiB of junk under the simple-signing media type: over maxSignatureBytes (256 KiB),
    // pushed as anyone with push rights could, no key needed.
    let junk = CosignSignature {
        payload: vec![b'x'; 300 * 1024],
        signature_b64: "AAAA".into(),
    };
    pusher.push_image("acme/app", "unsigned").await;
    let unsigned = format!("{host}/acme/app:unsigned");
    let padded = pusher.push_image("acme/app", "junk-only").await;
    push_cosign_signatures(
        pusher,
        "acme/app",
        &padded.digest,
        std::slice::from_ref(&junk),
    )
    .await;
    let junk_only = format!("{host}/acme/app:junk-only");
    let signed = pusher.push_image("acme/app", "signed-and-junk").await;
    let sig = key.sign_image(&format!("{host}/acme/app"), &signed.digest);
    push_cosign_signatures(pusher, "acme/app", &signed.digest, &[junk, sig]).await;
    let signed_and_junk = format!("{host}/acme/app:signed-and-junk");

    let v = acme.vouch().await;
    let long_name = format!("{host}/acme/{}:1", "a".repeat(2049));
    assert!(long_name.len() > 2048);
    let padding: Vec<String> = (0..512).map(|i| format!("{host}/acme/pad{i}:1")).collect();

    let rows: Vec<(&str, Vec<String>)> = vec![
        ("one unsigned image", vec![unsigned.clone()]),
        (
            "the unsigned image and a 2 049-byte image name",
            vec![unsigned.clone(), long_name.clone()],
        ),
        (
            "the unsigned image and 512 padding containers (513 keys)",
            std::iter::once(unsigned.clone())
                .chain(padding.iter().cloned())
                .collect(),
        ),
        (
            "an unsigned image whose .sig holds a 300 KiB layer",
            vec![junk_only.clone()],
        ),
    ];
    for policy in [FailurePolicy::Open, FailurePolicy::Closed] {
        for (name, images) in &rows {
            // A fresh Gatekeeper per row: its response cache must not answer for vouch.
            let gk = Gatekeeper::new(v.running.provider_addr, v.gatekeeper_client());
            let refs: Vec<&str> = images.iter().map(String::as_str).collect();
            let (gk2, object) = (gk.clone(), pod(&refs));
            let r = tokio::task::spawn_blocking(move || evaluate(&gk2, object))
                .await
                .expect("eval");
            println!(
                "{policy:?}: {name}: {} verification, {} system-error violation(s)",
                r.verification.len(),
                r.system_error.len()
            );
            assert!(
                !r.verification.is_empty(),
                "{policy:?}, {name}: the verification template denies: {:?} {:?}",
                r.verification,
                r.system_error
            );
            assert!(
                r.system_error.is_empty(),
                "{policy:?}, {name}: nothing here is an outage: {:?}",
                r.system_error
            );
            assert!(!admitted(&r, policy), "{policy:?}, {name}: admitted");
        }
        // The junk beside a valid signature is skipped, not fatal.
        let object = pod(&[&signed_and_junk]);
        let gk2 = Gatekeeper::new(v.running.provider_addr, v.gatekeeper_client());
        let r = tokio::task::spawn_blocking(move || evaluate(&gk2, object))
            .await
            .expect("eval");
        assert!(
            r.verification.is_empty() && r.system_error.is_empty(),
            "{policy:?}: a valid signature beside junk verifies: {:?} {:?}",
            r.verification,
            r.system_error
        );
        assert!(admitted(&r, policy));
    }

    // What each row's keys got from vouch itself.
    let j = v.verify(&[&unsigned, &long_name]).await;
    assert_eq!(j["response"]["systemError"], "", "{j}");
    assert_eq!(
        j["response"]["items"][1]["value"]["code"],
        "invalid-reference"
    );
    let refs: Vec<&str> = std::iter::once(unsigned.as_str())
        .chain(padding.iter().map(String::as_str))
        .collect();
    let j = v.verify(&refs).await;
    assert_eq!(
        j["response"]["systemError"],
        "request-invalid: request has 513 keys, over limits.maxKeys (512)"
    );
    let j = v.verify(&[&junk_only]).await;
    let verdict = only_verdict(&j);
    assert_code(&verdict, "invalid-signature");
    assert!(
        verdict["reason"]
            .as_str()
            .is_some_and(|r| r.contains("262144-byte limit")),
        "{verdict}"
    );
    let verdict = only_verdict(&v.verify(&[&signed_and_junk]).await);
    assert_eq!(verdict["verified"], true, "{verdict}");
    assert_eq!(verdict["signatures"][0]["verified"], false, "{verdict}");
    assert_eq!(verdict["signatures"][1]["verified"], true, "{verdict}");
    let metrics = ops_get(v.running.ops_addr, "/metrics").await.text();
    assert!(
        metric_value(
            &metrics,
            "vouch_signature_candidates_skipped_total{format=\"cosign\",reason=\"unreadable\"}"
        ) >= 2.0,
        "skipped candidates are counted"
    );
}

/// A request body over `limits.maxBodyBytes` (1.4 MiB of valid keys, as a pod of about that
/// size makes) and a request with as many keys as the largest admissible pod (about 1.5 MiB
/// of containers with one-letter names) are refused as `request-invalid`, which the
/// verification template denies in both modes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_too_large_to_answer_are_denied_in_both_modes() {
    let v = Vouch::start(
        "policies:\n- name: lib\n  scopes: [\"docker.io/library/*\"]\n  action: allow\n",
    )
    .await;
    // 1.4 MiB of keys, each a valid reference under an allow policy.
    let big: Vec<String> = (0..)
        .map(|i| format!("docker.io/library/image-{i:06}:{}", "t".repeat(100)))
        .scan(0usize, |size, k| {
            *size += k.len() + 3;
            (*size < 1_400 * 1024).then_some(k)
        })
        .collect();
    // The largest pod the API server stores (~1.5 MiB) with minimal containers
    // (`{"name":"c","image":"i"}`, some 26 bytes each) has about 60 000 of them.
    let most: Vec<String> = (0..60_000).map(|i| format!("i{i}")).collect();
    for (name, keys, want) in [
        (
            "1.4 MiB of keys",
            &big,
            "request-invalid: request body exceeds limits.maxBodyBytes (1048576 bytes)",
        ),
        (
            "60 000 keys",
            &most,
            "request-invalid: request has 60000 keys, over limits.maxKeys (512)",
        ),
    ] {
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let j = v.verify(&refs).await;
        assert_eq!(j["response"]["systemError"], want, "{name}");
        // Through the templates, as the pod itself: denied in both modes.
        for policy in [FailurePolicy::Open, FailurePolicy::Closed] {
            let gk = Gatekeeper::new(v.running.provider_addr, v.gatekeeper_client());
            let object = pod(&refs);
            let started = std::time::Instant::now();
            let r = tokio::task::spawn_blocking(move || evaluate(&gk, object))
                .await
                .expect("eval");
            println!(
                "{policy:?}: {name}: {} verification violation(s) in {:?}",
                r.verification.len(),
                started.elapsed()
            );
            assert_eq!(r.verification.len(), 1, "{name}");
            assert_eq!(r.verification[0]["details"]["code"], "request-invalid");
            assert!(r.system_error.is_empty(), "{name}: {:?}", r.system_error);
            assert!(!admitted(&r, policy), "{policy:?}, {name}: admitted");
        }
    }
    // 513 short keys: over maxKeys, refused as a whole, with the same class.
    let keys: Vec<String> = (0..513).map(|i| format!("i{i}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let j = v.verify(&refs).await;
    assert_eq!(
        j["response"]["systemError"],
        "request-invalid: request has 513 keys, over limits.maxKeys (512)"
    );
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
        let mut validated = 0;
        for obj in manifests::objects(&options(policy)).expect("objects") {
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
