//! The shipped templates under Gatekeeper's semantics: the Rego of `vouch manifests` runs in
//! regorus (Rego v0), and `external_data` behaves as Gatekeeper's builtin does — a real
//! mTLS call to a running vouch, the `responses`/`errors` split, `status_code`,
//! `system_error`, null lists on transport failure, and a per-(provider, key) response
//! cache that keeps values and errors but never `systemError` (`status_code` 0 when every
//! key came from it). The templates key each image by the object's namespace
//! (`[team-a]ghcr.io/acme/app:1`), so that cache keeps namespaces apart and vouch applies
//! each namespace's policies. The generated objects are also validated against
//! Gatekeeper's CRD schemas.

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use support::gatekeeper::{Gatekeeper, Policies, violations};
use support::registry::*;
use support::*;
use vouch::manifests::{self, FailurePolicy};

/// The violations each template raises for `object`, and the `external_data` requests each
/// template's evaluation made.
struct Violations {
    verification: Vec<Value>,
    system_error: Vec<Value>,
    /// (template package, request) in the order made; within one evaluation Gatekeeper
    /// memoizes the builtin, so each template's distinct requests appear once.
    requests: Vec<(&'static str, Value)>,
}

fn evaluate(gk: &Gatekeeper, object: Value) -> Violations {
    evaluate_review(
        gk,
        json!({"kind": {"kind": object["kind"]}, "object": object}),
    )
}

/// [`evaluate`] with `review` as `input.review` (an AdmissionRequest: `kind`, `namespace`,
/// `object`, ...).
fn evaluate_review(gk: &Gatekeeper, review: Value) -> Violations {
    type Requests = Arc<std::sync::Mutex<Vec<(&'static str, Value)>>>;
    let requests: Requests = Arc::default();
    let current: Arc<std::sync::Mutex<&'static str>> = Arc::new(std::sync::Mutex::new(""));
    let (gk2, seen, template) = (gk.clone(), requests.clone(), current.clone());
    let mut engine = support::gatekeeper::rego_engine(
        &[
            ("lib.rego", manifests::LIB_REGO),
            ("verification.rego", manifests::VERIFICATION_REGO),
            ("system_error.rego", manifests::SYSTEM_ERROR_REGO),
        ],
        move |request| {
            let name = *template.lock().expect("template");
            seen.lock().expect("requests").push((name, request.clone()));
            gk2.external_data(request)
        },
    );
    let input = json!({"review": review});
    let data = json!({});
    let mut run = |package: &'static str| {
        *current.lock().expect("template") = package;
        let rule = format!("data.{package}.violation");
        violations(&mut engine, &rule, &input, &data)
    };
    let verification = run("vouchverification");
    let system_error = run("vouchsystemerror");
    let requests = std::mem::take(&mut *requests.lock().expect("requests"));
    Violations {
        verification,
        system_error,
        requests,
    }
}

/// The `vouch-verify` key of `image` for an object in `namespace`.
fn ns_key(namespace: &str, image: &str) -> String {
    format!("[{namespace}]{image}")
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
    assert!(
        r.verification[0]["msg"].as_str().is_some_and(
            |m| m.starts_with(&format!("image {unsigned} is not verified: unsigned: "))
        ),
        "{:?}",
        r.verification
    );
    assert!(r.system_error.is_empty(), "{:?}", r.system_error);

    // Workload templates and CronJobs are covered too (init containers included).
    let r = run(&gk, deployment(&unsigned)).await.expect("eval");
    assert_eq!(r.verification.len(), 1, "{:?}", r.verification);
    let r = run(&gk, cronjob(&unsigned)).await.expect("eval");
    assert_eq!(r.verification.len(), 1, "{:?}", r.verification);

    // Everything from Gatekeeper's cache (status_code 0): no false violation either way.
    let cached = gk.external_data(&json!({"provider": "vouch-verify",
        "keys": [ns_key("default", &signed[0]), ns_key("default", &unsigned)]}));
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

/// The AdmissionRequest for creating a Pod named `name` with `images` in `namespace`; the
/// Pod itself carries the namespace only when `in_object` (a CREATE's object may lack it,
/// the request always has it).
fn pod_request(namespace: &str, name: &str, images: &[&str], in_object: bool) -> Value {
    let mut object = pod(images);
    object["metadata"] = json!({"name": name});
    if in_object {
        object["metadata"]["namespace"] = json!(namespace);
    }
    json!({"kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE",
        "uid": format!("{namespace}-{name}"), "namespace": namespace, "name": name,
        "object": object})
}

/// The templates send each image as `[<namespace>]<image>`, both templates the same keys,
/// and vouch answers each key with the policies of its namespace: with policy `team-a`
/// (namespaces `[team-a]`) trusting key A and `team-b` trusting key B over the same scope,
/// and no cluster-wide policy, an image signed by A is admitted in `team-a` only, one signed
/// by B in `team-b` only, and both are `no-policy` in any other namespace or without one.
/// One Gatekeeper serves every review: its per-key cache never answers one namespace with
/// another's verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_keys_select_the_namespaces_policies() {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let host = registry.host.clone();
    let (key_a, key_b) = (CosignKey::generate(), CosignKey::generate());
    let dir = tempfile::tempdir().expect("tempdir");
    let (pub_a, pub_b) = (dir.path().join("a.pub"), dir.path().join("b.pub"));
    std::fs::write(&pub_a, key_a.public_pem()).expect("key a");
    std::fs::write(&pub_b, key_b.public_pem()).expect("key b");
    push_signed(&pusher, &key_a, &host, "acme/app", "by-a").await;
    push_signed(&pusher, &key_b, &host, "acme/app", "by-b").await;
    let (by_a, by_b) = (
        format!("{host}/acme/app:by-a"),
        format!("{host}/acme/app:by-b"),
    );
    let v = Vouch::start(&format!(
        "registries:\n- host: {host}\n  plainHttp: true\npolicies:\n\
         - name: team-a\n  namespaces: [team-a]\n  scopes: [\"{host}/acme/*\"]\n  verifiers:\n  - cosign: {{publicKeys: [{}]}}\n\
         - name: team-b\n  namespaces: [team-b]\n  scopes: [\"{host}/acme/*\"]\n  verifiers:\n  - cosign: {{publicKeys: [{}]}}\n",
        pub_a.display(),
        pub_b.display(),
    ))
    .await;
    let gk = Gatekeeper::new(v.running.provider_addr, v.gatekeeper_client());

    // What the templates send: the object's namespace in every key, the same keys from both
    // templates (vouch coalesces the twin requests only when they are equal).
    let object = pod_request("team-a", "p", &[&by_a, &by_b], true)["object"].clone();
    let gk2 = gk.clone();
    let r = tokio::task::spawn_blocking(move || evaluate(&gk2, object))
        .await
        .expect("eval");
    let want = json!({"provider": "vouch-verify", "keys": [ns_key("team-a", &by_a), ns_key("team-a", &by_b)]});
    let templates: Vec<&str> = r.requests.iter().map(|(t, _)| *t).collect();
    assert_eq!(templates, ["vouchverification", "vouchsystemerror"]);
    for (template, request) in &r.requests {
        assert_eq!(request, &want, "{template}");
    }
    // by-b is not trusted in team-a, and the message names the image, not the key.
    assert_eq!(r.verification.len(), 1, "{:?}", r.verification);
    let denial = &r.verification[0];
    assert_eq!(denial["details"]["image"], by_b.as_str(), "{denial}");
    assert_eq!(denial["details"]["namespace"], "team-a", "{denial}");
    assert!(
        denial["msg"]
            .as_str()
            .is_some_and(|m| m.starts_with(&format!("image {by_b} is not verified: "))),
        "{denial}"
    );
    assert!(r.system_error.is_empty(), "{:?}", r.system_error);

    // Gatekeeper's reviews under the generated objects: (namespace, image, denial code).
    let objects = manifests::objects(&options(FailurePolicy::Open)).expect("objects");
    let policies = Policies::from_objects(&objects);
    let rows: [(&str, &str, Option<&str>); 6] = [
        ("team-a", &by_a, None),
        ("team-b", &by_a, Some("untrusted-signer")),
        ("team-b", &by_b, None),
        ("team-a", &by_b, Some("untrusted-signer")),
        ("team-c", &by_a, Some("no-policy")),
        ("team-c", &by_b, Some("no-policy")),
    ];
    for (i, (namespace, image, want)) in rows.into_iter().enumerate() {
        // Every other request leaves the namespace out of the object: the request's is used.
        let request = pod_request(namespace, &format!("p{i}"), &[image], i % 2 == 0);
        let (gk2, policies) = (gk.clone(), policies.clone());
        let r = tokio::task::spawn_blocking(move || gk2.review(&policies, &request, &json!({})))
            .await
            .expect("review");
        let row = format!("{image} in {namespace}");
        let denials = r.denials();
        match want {
            None => assert!(r.violations.is_empty(), "{row}: {:?}", r.violations),
            Some(code) => {
                assert_eq!(denials.len(), 1, "{row}: {:?}", r.violations);
                let d = denials[0];
                assert_eq!(d.constraint, "vouch-verification", "{row}");
                assert_eq!(d.details["code"], code, "{row}: {}", d.msg);
                assert_eq!(d.details["image"], image, "{row}");
                assert_eq!(d.details["namespace"], namespace, "{row}");
                assert!(
                    d.msg
                        .starts_with(&format!("image {image} is not verified: {code}: ")),
                    "{row}: {}",
                    d.msg
                );
                assert!(
                    !d.msg.contains('['),
                    "{row}: the key is not shown: {}",
                    d.msg
                );
            }
        }
        assert!(
            gk.cache
                .lock()
                .expect("cache")
                .contains_key(&("vouch-verify".to_string(), ns_key(namespace, image))),
            "{row}: asked as {}",
            ns_key(namespace, image)
        );
        println!(
            "{row}: {:?}",
            r.denials().iter().map(|d| &d.msg).collect::<Vec<_>>()
        );
    }
    let no_policy = gk
        .cache
        .lock()
        .expect("cache")
        .get(&("vouch-verify".to_string(), ns_key("team-c", &by_a)))
        .cloned();
    let reason = no_policy.and_then(Result::ok).map(|v| v["reason"].clone());
    assert_eq!(
        reason,
        Some(json!(format!(
            "no trust policy scope covers {host}/acme/app in namespace team-c"
        )))
    );

    // No namespace anywhere (nothing Gatekeeper admits looks like this, but audit input
    // could): the bare image, cluster-wide policies only, of which there are none.
    let mut object = pod(&[&by_a]);
    object["metadata"] = json!({"name": "p"});
    let gk2 = gk.clone();
    let r = tokio::task::spawn_blocking(move || evaluate(&gk2, object))
        .await
        .expect("eval");
    for (template, request) in &r.requests {
        assert_eq!(
            request,
            &json!({"provider": "vouch-verify", "keys": [by_a]}),
            "{template}"
        );
    }
    assert_eq!(r.verification.len(), 1, "{:?}", r.verification);
    assert_eq!(r.verification[0]["details"]["code"], "no-policy");
    assert_eq!(r.verification[0]["details"]["image"], by_a.as_str());
    assert_eq!(r.verification[0]["details"]["namespace"], "");
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
