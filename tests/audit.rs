//! `vouch audit` end to end: the binary reads a List of 50 workloads across 5 namespaces
//! (Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and CronJobs; init and
//! ephemeral containers; images signed, unsigned, missing, under no policy, behind a
//! registry that is down, and used many times over) against a real registry with
//! cosign-signed images. What it proves: the per-namespace table and the JSON are exactly
//! the expected ones (`tests/audit/expected.*`, with the registry's address and the
//! digests, which change per run, replaced); each distinct image is verified once
//! (no registry request is made twice, and an image used in four namespaces costs the
//! registry what an image used in one does); objects the Constraints do not match are
//! counted, not audited; every workload's action in open and in closed mode is the one
//! Gatekeeper's review under the generated Constraints gives it (the shipped templates
//! evaluated against a running vouch with the same config); exit status 0, 1 (under each
//! `--failure-policy`) and 2; `--quiet` writes nothing on standard error, and progress
//! goes to standard error only.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::gatekeeper::{Gatekeeper, Policies};
use support::registry::AccessLine;
use support::world::World;
use support::*;
use vouch::manifests::{self, FailurePolicy};

const VOUCH: &str = env!("CARGO_BIN_EXE_vouch");
/// Every audit in this file ends well within this (the one unreachable registry fails fast).
const WITHIN: Duration = Duration::from_secs(60);

/// The signed, unsigned and missing images, the down registry, and the config.
struct Setup {
    world: World,
    /// `127.0.0.1:PORT` where nothing listens.
    down: String,
    dir: tempfile::TempDir,
    /// Policy YAML: `acme` over the registry's `acme/*` (cosign), `down` over the down
    /// registry's `acme/*`.
    policies: String,
    config: String,
}

async fn setup() -> Setup {
    let world = World::new();
    for repo in ["acme/api", "acme/web", "acme/job"] {
        world.signed(repo, "v1").await;
    }
    world.pusher.push_image("acme/unsigned", "v1").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = world.key_file(&world.key, "acme");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let down = format!("127.0.0.1:{}", closed.local_addr().expect("addr").port());
    drop(closed);
    let host = &world.registry.host;
    let policies = format!(
        "registryTimeout: 300ms\nverificationBudget: 1s\ncache: {{registryBackoff: 0s}}\nregistries:\n- host: {host}\n  plainHttp: true\n- host: {down}\n  plainHttp: true\npolicies:\n- name: acme\n  scopes: [\"{host}/acme/*\"]\n  verifiers:\n  - cosign: {{publicKeys: [{key}]}}\n- name: down\n  scopes: [\"{down}/acme/*\"]\n  verifiers:\n  - cosign: {{publicKeys: [{key}]}}\n"
    );
    let config = dir.path().join("vouch.yaml");
    std::fs::write(&config, &policies).expect("write config");
    Setup {
        config: config.display().to_string(),
        world,
        down,
        dir,
        policies,
    }
}

fn containers(images: &[&str]) -> Value {
    Value::Array(
        images
            .iter()
            .enumerate()
            .map(|(i, im)| json!({"name": format!("c{i}"), "image": im}))
            .collect(),
    )
}

/// A pod spec with `containers`, and `init` / `ephemeral` containers when given.
fn pod_spec(main: &[&str], init: &[&str], ephemeral: &[&str]) -> Value {
    let mut spec = json!({"containers": containers(main)});
    if !init.is_empty() {
        spec["initContainers"] = containers(init);
    }
    if !ephemeral.is_empty() {
        spec["ephemeralContainers"] = containers(ephemeral);
    }
    spec
}

fn object(api: &str, kind: &str, ns: &str, name: &str, spec: Value) -> Value {
    let spec = match kind {
        "Pod" => spec,
        "CronJob" => {
            json!({"schedule": "@daily", "jobTemplate": {"spec": {"template": {"spec": spec}}}})
        }
        _ => json!({"template": {"spec": spec}}),
    };
    json!({"apiVersion": api, "kind": kind,
        "metadata": {"name": name, "namespace": ns, "uid": format!("{ns}-{name}")},
        "spec": spec})
}

/// The 50 workloads (10 per namespace), then three objects no Constraint reviews.
fn workloads(s: &Setup) -> Vec<Value> {
    let host = &s.world.registry.host;
    let api = format!("{host}/acme/api:v1");
    let web = format!("{host}/acme/web:v1");
    let job = format!("{host}/acme/job:v1");
    let unsigned = format!("{host}/acme/unsigned:v1");
    let missing = format!("{host}/acme/missing:v1");
    let unpolicied = format!("{host}/other/thing:v1");
    let down = format!("{}/acme/app:v1", s.down);
    let mut o = Vec::new();
    for i in 0..10 {
        o.push(object(
            "v1",
            "Pod",
            "team-a",
            &format!("api-{i}"),
            pod_spec(&[&api], &[], &[]),
        ));
    }
    for i in 0..5 {
        o.push(object(
            "apps/v1",
            "Deployment",
            "team-b",
            &format!("web-{i}"),
            pod_spec(&[&web], &[&api], &[]),
        ));
        let image = if i == 4 { &unsigned } else { &job };
        o.push(object(
            "batch/v1",
            "CronJob",
            "team-b",
            &format!("nightly-{i}"),
            pod_spec(&[image], &[], &[]),
        ));
    }
    for i in 0..4 {
        o.push(object(
            "apps/v1",
            "StatefulSet",
            "team-c",
            &format!("db-{i}"),
            pod_spec(&[&api], &[], &[]),
        ));
    }
    for i in 0..3 {
        o.push(object(
            "apps/v1",
            "DaemonSet",
            "team-c",
            &format!("agent-{i}"),
            pod_spec(&[&unpolicied], &[], &[]),
        ));
        o.push(object(
            "batch/v1",
            "Job",
            "team-c",
            &format!("migrate-{i}"),
            pod_spec(&[&missing], &[], &[]),
        ));
    }
    for i in 0..5 {
        o.push(object(
            "v1",
            "Pod",
            "team-d",
            &format!("debug-{i}"),
            pod_spec(&[&api], &[], &[&unsigned]),
        ));
        o.push(object(
            "apps/v1",
            "ReplicaSet",
            "team-d",
            &format!("web-{i}"),
            pod_spec(&[&web, &web], &[], &[]),
        ));
    }
    for i in 0..5 {
        o.push(object(
            "apps/v1",
            "Deployment",
            "team-e",
            &format!("app-{i}"),
            pod_spec(&[&down], &[], &[]),
        ));
        o.push(object(
            "v1",
            "Pod",
            "team-e",
            &format!("api-{i}"),
            pod_spec(&[&api], &[&web], &[]),
        ));
    }
    assert_eq!(o.len(), 50);
    o.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "team-a"}, "spec": {}}));
    o.push(object(
        "v1",
        "Pod",
        "kube-system",
        "dns",
        pod_spec(&[&unsigned], &[], &[]),
    ));
    o.push(object(
        "v1",
        "Pod",
        "vouch-system",
        "vouch",
        pod_spec(&[&unsigned], &[], &[]),
    ));
    o
}

fn list(items: &[Value]) -> Vec<u8> {
    json!({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}})
        .to_string()
        .into_bytes()
}

/// The output with what changes per run replaced: the registries' addresses (by names of
/// the same length, so the table's columns stay where they are; loopback ports are
/// ephemeral, five digits), digests.
fn normalise(s: &Setup, text: &str) -> String {
    let digests = regex::Regex::new("sha256:[0-9a-f]{64}").expect("regex");
    let (registry, down) = ("registry.t:5000", "down-reg.t:5000");
    assert_eq!(
        s.world.registry.host.len(),
        registry.len(),
        "{}",
        s.world.registry.host
    );
    assert_eq!(s.down.len(), down.len(), "{}", s.down);
    let text = text
        .replace(&s.world.registry.host, registry)
        .replace(&s.down, down);
    let text = digests.replace_all(&text, "sha256:DIGEST");
    // The test key is made for each run: hints name its fingerprint.
    let fingerprints = regex::Regex::new(r"\(sha256:[0-9a-f]{16}\)").expect("regex");
    fingerprints.replace_all(&text, "(sha256:KEY)").into_owned()
}

fn expected(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/audit")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn audit(args: &[&str], stdin: &[u8]) -> Ran {
    run_command(VOUCH, &[&["audit"], args].concat(), stdin, WITHIN).await
}

/// (Kind/name → (open, closed)) from the JSON report: a workload takes its most severe row.
fn actions(report: &Value) -> BTreeMap<String, (String, String)> {
    let rank = |a: &str| {
        ["denied", "warned", "admitted"]
            .iter()
            .position(|x| *x == a)
    };
    let mut out: BTreeMap<String, (String, String)> = BTreeMap::new();
    for ns in report["namespaces"].as_array().expect("namespaces") {
        for row in ns["images"].as_array().expect("images") {
            for w in row["workloads"].as_array().expect("workloads") {
                let name = format!(
                    "{}/{}",
                    ns["namespace"].as_str().expect("ns"),
                    w.as_str().expect("w")
                );
                let entry = out
                    .entry(name)
                    .or_insert(("admitted".into(), "admitted".into()));
                for (slot, mode) in [(&mut entry.0, "open"), (&mut entry.1, "closed")] {
                    let got = row[mode].as_str().expect("action");
                    if rank(got) < rank(slot) {
                        *slot = got.to_string();
                    }
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_workloads_table_json_and_one_verification_per_image() {
    let s = setup().await;
    let objects = workloads(&s);
    let input = list(&objects);

    // The table, from standard input; every registry request made once.
    let (ran, log) = s
        .world
        .registry_log(audit(&["--config", &s.config], &input))
        .await;
    assert_eq!(
        ran.code, 1,
        "the unsigned CronJob is denied: {}",
        ran.stderr
    );
    assert_eq!(
        normalise(&s, &ran.stdout),
        expected("expected.txt"),
        "stderr: {}",
        ran.stderr
    );
    assert!(!ran.stderr.is_empty(), "progress goes to standard error");
    let mut seen = BTreeMap::<(String, String), usize>::new();
    for AccessLine { method, uri, .. } in &log {
        *seen.entry((method.clone(), uri.clone())).or_default() += 1;
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "requests made twice: {repeated:?}\n{log:?}"
    );
    let per_repo = |repo: &str| {
        log.iter()
            .filter(|l| l.uri.starts_with(&format!("/v2/{repo}/")))
            .count()
    };
    // api:v1 is used in four namespaces, job:v1 in one: the same cost.
    assert!(per_repo("acme/api") > 0);
    assert_eq!(per_repo("acme/api"), per_repo("acme/job"), "{log:?}");
    assert_eq!(per_repo("other/thing"), 0, "no policy, no request");

    // The JSON, from a file, quietly.
    let file = s.dir.path().join("list.json");
    std::fs::write(&file, &input).expect("write list");
    let file = file.display().to_string();
    let ran = audit(&["--config", &s.config, "--json", "--quiet", &file], b"").await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert_eq!(ran.stderr, "", "--quiet writes nothing on standard error");
    let got: Value = serde_json::from_str(&normalise(&s, &ran.stdout)).expect("JSON report");
    let want: Value = serde_json::from_str(&expected("expected.json")).expect("expected JSON");
    assert_eq!(
        got,
        want,
        "{}",
        serde_json::to_string_pretty(&got).unwrap_or_default()
    );

    // Gatekeeper's reviews under the generated Constraints agree, object by object, mode by
    // mode, with a vouch serving the same config.
    let report: Value = serde_json::from_str(&ran.stdout).expect("JSON report");
    let audited = actions(&report);
    assert_eq!(audited.len(), 50);
    let v = Vouch::start(&s.policies).await;
    for policy in [FailurePolicy::Open, FailurePolicy::Closed] {
        let gk = Gatekeeper::new(v.running.provider_addr, v.gatekeeper_client());
        let policies = Policies::from_objects(
            &manifests::objects(&support::gatekeeper::options(
                policy,
                manifests::WebhookTimeouts {
                    validating: Duration::from_secs(3),
                    mutating: Duration::from_secs(2),
                },
            ))
            .expect("objects"),
        );
        let objects = objects.clone();
        let reviewed = tokio::task::spawn_blocking(move || {
            let mut out = BTreeMap::new();
            for object in &objects {
                let ns = object["metadata"]["namespace"].as_str().unwrap_or_default();
                let kind = object["kind"].as_str().unwrap_or_default();
                let group = object["apiVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .rsplit_once('/')
                    .map_or("", |(g, _)| g);
                let review = json!({"kind": {"group": group, "kind": kind}, "operation": "CREATE",
                    "namespace": ns, "object": object});
                let r = gk.review(&policies, &review, &json!({}));
                let action = if !r.denials().is_empty() {
                    "denied"
                } else if !r.violations.is_empty() {
                    "warned"
                } else {
                    "admitted"
                };
                let name = format!(
                    "{ns}/{kind}/{}",
                    object["metadata"]["name"].as_str().unwrap_or_default()
                );
                out.insert(name, action.to_string());
            }
            out
        })
        .await
        .expect("reviews");
        for (name, (open, closed)) in &audited {
            let want = if policy == FailurePolicy::Open {
                open
            } else {
                closed
            };
            assert_eq!(reviewed.get(name), Some(want), "{name} under {policy:?}");
        }
        // The objects outside the Constraints' match are admitted by Gatekeeper too.
        assert!(
            reviewed
                .iter()
                .filter(|(n, _)| !audited.contains_key(*n))
                .all(|(_, a)| a == "admitted")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_status_follows_the_failure_policy_and_bad_input_is_two() {
    let s = setup().await;
    let all = workloads(&s);
    let only = |ns: &str| -> Vec<u8> {
        list(
            &all.iter()
                .filter(|o| o["metadata"]["namespace"] == ns)
                .cloned()
                .collect::<Vec<_>>(),
        )
    };
    let cfg = ["--config", s.config.as_str(), "--quiet"];
    let with = |extra: &[&'static str]| -> Vec<&str> {
        cfg.iter().copied().chain(extra.iter().copied()).collect()
    };

    // Everything verified: 0 in both modes.
    for mode in ["open", "closed"] {
        let ran = audit(&with(&["--failure-policy", mode]), &only("team-a")).await;
        assert_eq!(ran.code, 0, "{mode}: {}{}", ran.stdout, ran.stderr);
        assert!(
            ran.stdout
                .contains("open:   0 denied, 0 warned, 10 admitted"),
            "{}",
            ran.stdout
        );
    }
    // Only an unreachable registry: warned under open (0), denied under closed (1).
    let ran = audit(&with(&["--failure-policy", "open"]), &only("team-e")).await;
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout
            .contains("open:   0 denied, 5 warned, 5 admitted"),
        "{}",
        ran.stdout
    );
    let ran = audit(&with(&["--failure-policy", "closed"]), &only("team-e")).await;
    assert_eq!(ran.code, 1, "{}{}", ran.stdout, ran.stderr);
    // A verdict: denied in both modes.
    for mode in ["open", "closed"] {
        let ran = audit(&with(&["--failure-policy", mode]), &only("team-c")).await;
        assert_eq!(ran.code, 1, "{mode}: {}{}", ran.stdout, ran.stderr);
    }
    // No workload at all: nothing denied.
    let ran = audit(&with(&[]), br#"{"kind": "List", "items": []}"#).await;
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);

    // Cannot run: 2, with the reason on standard error and nothing on standard output.
    let missing = s.dir.path().join("nope.json").display().to_string();
    let bad_config = s.dir.path().join("bad.yaml");
    std::fs::write(&bad_config, "policies: 3\n").expect("write");
    let bad_config = bad_config.display().to_string();
    let cases: Vec<(Vec<&str>, &[u8], &str)> = vec![
        (with(&[]), b"not json", "the input is not JSON"),
        (with(&[]), b"{\"items\": 7}", "neither a Kubernetes List"),
        (with(&[]), b"{\"items\": [3]}", "items[0] is not an object"),
        (vec!["--config", &s.config, &missing], b"", "cannot read"),
        (
            vec!["--config", &s.config, "--max-input-bytes", "10"],
            b"{\"kind\": \"List\", \"items\": []}",
            "over --max-input-bytes",
        ),
        (vec!["--config", &bad_config], b"{}", "policies"),
    ];
    for (args, stdin, why) in cases {
        let ran = audit(&args, stdin).await;
        assert_eq!(ran.code, 2, "{args:?}: {}{}", ran.stdout, ran.stderr);
        assert!(ran.stderr.contains(why), "{args:?}: {}", ran.stderr);
        assert_eq!(ran.stdout, "", "{args:?}");
    }
    let ran = audit(&["--concurrency", "0"], b"").await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
}
