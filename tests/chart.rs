//! The Helm chart (`charts/vouch`), rendered by Helm itself (`tests/helm/`), and the
//! `Dockerfile`.
//!
//! - `helm lint --strict` is clean, and every documented option renders: each rendered
//!   Kubernetes object passes the strict Kubernetes API schema of 1.30 and of the newest
//!   release known, each Gatekeeper object Gatekeeper's CRD schema.
//! - The chart's Gatekeeper files are byte for byte what `vouch manifests` prints, and what
//!   the chart renders from them is exactly what `vouch manifests` prints for the same
//!   failure policy, uniqueness switch and webhook timeouts.
//! - Closed mode stays closed: the Providers time out inside Gatekeeper's webhooks, vouch's
//!   deadlines inside the Providers (as `vouch manifests --config` checks them), and what
//!   cannot work is refused with a one-line reason.
//! - The chart's Redis is locked down, persistent and reachable only by vouch; vouch's
//!   config points at it, or at `redisUrl`; the uniqueness policy is opt-in and refuses to
//!   run several replicas without a shared Redis.
//! - Every value a template reads exists in `values.yaml` and is documented in the chart's
//!   README; the Deployment runs vouch locked down; the rendered configs pass
//!   `vouch config check`.
//! - vouch's NetworkPolicy selects exactly vouch's pods and admits Gatekeeper's namespace to
//!   the provider port, the monitoring namespaces to the ops port and the `helm test` Pod to
//!   both; the `helm test` Pod is a locked-down, digest-pinned test hook that calls
//!   `/readyz` and `/v1/verify` at the Provider's URL with a client certificate, for a key
//!   the rendered config admits (`vouch verify` says so).
//! - The Grafana dashboard and the alert rules are opt-in, and install exactly the files
//!   `tests/prometheus.rs` runs on a real Prometheus.
//! - The Dockerfile builds with `--locked` from a context holding every file the crate
//!   compiles in, and runs as a non-root user exposing 8443 and 9090.
//!
//! `tests/chart_run.rs` runs what the chart renders (its Redis, two vouch replicas).

mod support;

use support::helm;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use helm::{NAMESPACE, Rendered, chart, documents, refusal, render, render_all, root};

const VOUCH: &str = env!("CARGO_BIN_EXE_vouch");

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn values() -> Value {
    let path = chart().join("values.yaml");
    let docs = documents(&read(&path), "values.yaml");
    assert_eq!(docs.len(), 1, "values.yaml is one document");
    docs.into_iter().next().expect("one document")
}

/// `vouch manifests ARGS`: its stdout; panics on failure.
fn manifests(args: &[&str]) -> Vec<u8> {
    let out = Command::new(VOUCH)
        .arg("manifests")
        .args(args)
        .output()
        .expect("run vouch manifests");
    assert!(
        out.status.success(),
        "vouch manifests {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The command lines that generate the chart's Gatekeeper files (documented in the chart's
/// README): every object, the uniqueness policy included; closed with the shortest mutating
/// webhook closed mode accepts. The chart filters and patches them when rendering.
const FILE_ARGS: [(&str, &[&str]); 2] = [
    (
        "open",
        &[
            "--failure-policy",
            "open",
            "--unique-service-selector",
            "--namespace",
            "__NAMESPACE__",
            "--ca-bundle-value",
            "__CA_BUNDLE__",
        ],
    ),
    (
        "closed",
        &[
            "--failure-policy",
            "closed",
            "--unique-service-selector",
            "--mutation-webhook-timeout",
            "2s",
            "--namespace",
            "__NAMESPACE__",
            "--ca-bundle-value",
            "__CA_BUNDLE__",
        ],
    ),
];

#[test]
fn gatekeeper_files_are_what_vouch_manifests_prints() {
    for (policy, args) in FILE_ARGS {
        let rel = format!("charts/vouch/files/gatekeeper-{policy}.yaml");
        let expected = manifests(args);
        let actual = std::fs::read(root().join(&rel)).unwrap_or_default();
        if actual != expected {
            let (expected, actual) = (
                String::from_utf8_lossy(&expected),
                String::from_utf8_lossy(&actual),
            );
            let line = expected
                .lines()
                .zip(actual.lines())
                .position(|(e, a)| e != a)
                .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
            panic!(
                "{rel} differs from `vouch manifests` (first at line {}). Regenerate it:\n\
                 \n    cargo build && target/debug/vouch manifests {} > {rel}\n",
                line + 1,
                args.join(" ")
            );
        }
        // templates/gatekeeper.yaml splits the file on "\n---\n": every document starts
        // with such a line, and no other line is "---".
        let text = String::from_utf8_lossy(&actual);
        assert!(text.starts_with("---\n"), "{rel}");
        assert_eq!(
            text.matches("\n---\n").count() + 1,
            documents(&text, &rel).len(),
            "{rel}"
        );
    }
    let readme = read(&chart().join("README.md"));
    for (policy, args) in FILE_ARGS {
        let command = format!(
            "target/debug/vouch manifests {} > charts/vouch/files/gatekeeper-{policy}.yaml",
            args.join(" ")
        );
        assert!(
            readme.contains(&command),
            "the chart README's regeneration command for {policy} is not `{command}`"
        );
    }
}

#[test]
fn the_chart_lints_clean() {
    let cases = [
        json!({}),
        json!({"failurePolicy": "closed", "gatekeeper": {"mutationWebhookTimeoutSeconds": 2}}),
        json!({"uniqueServiceSelector": {"enabled": true}, "gatekeeper": {"constraints": "always"}}),
        json!({"redisUrl": "rediss://redis.example:6380/0", "redisPasswordSecret": "redis"}),
        json!({"certManager": {"enabled": true}, "serviceMonitor": {"enabled": true}}),
    ];
    for (values, report) in cases.iter().zip(helm::lint(&cases)) {
        assert_eq!(
            report["errors"],
            json!([]),
            "helm lint with {values}: {report}"
        );
        // Severity 1 is information ("icon is recommended"); 2 warning, 3 error.
        let serious: Vec<&Value> = report["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter(|m| m["severity"].as_i64().unwrap_or(3) >= 2)
            .collect();
        assert!(serious.is_empty(), "helm lint with {values}: {serious:?}");
    }
}

/// Values exercising every documented option at least once.
fn option_cases() -> Vec<Value> {
    vec![
        json!({}),
        json!({"replicas": 1}),
        json!({"failurePolicy": "closed", "gatekeeper": {"mutationWebhookTimeoutSeconds": 2}}),
        json!({"failurePolicy": "closed", "uniqueServiceSelector": {"enabled": true},
               "gatekeeper": {"webhookTimeoutSeconds": 10, "mutationWebhookTimeoutSeconds": 5,
                              "constraints": "always"}}),
        json!({"uniqueServiceSelector": {"enabled": true}, "gatekeeper": {"constraints": "always"}}),
        json!({"uniqueServiceSelector": {"enabled": true}, "replicas": 1, "redis": {"enabled": false}}),
        json!({"redis": {"enabled": false}}),
        json!({"redisUrl": "rediss://redis.example:6380/0", "redisPasswordSecret": "redis",
               "extraConfig": {"redis": {"timeout": "200ms", "username": "vouch"}}}),
        json!({"redisUrl": "redis://redis.example:6379/0", "uniqueServiceSelector": {"enabled": true}}),
        json!({"redis": {"persistence": {"enabled": false}, "maxMemory": "64mb",
                         "image": {"digest": format!("sha256:{}", "a".repeat(64))}}}),
        json!({"redis": {"persistence": {"storageClassName": "fast", "size": "5Gi"},
                         "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}}}),
        json!({"certManager": {"enabled": true}, "caBundle": "Q0E="}),
        json!({"certManager": {"enabled": true, "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer",
                                                            "group": "cert-manager.io"}}}),
        json!({"serviceMonitor": {"enabled": true, "interval": "15s", "labels": {"release": "prom"}}}),
        json!({"grafanaDashboard": {"enabled": true, "labels": {"grafana_dashboard": "1", "team": "platform"},
                                    "annotations": {"grafana_folder": "Gatekeeper"}, "namespace": "monitoring"},
               "prometheusRule": {"enabled": true, "labels": {"release": "prom"}}}),
        json!({"podDisruptionBudget": {"enabled": false}}),
        json!({"gatekeeper": {"manifests": false}}),
        json!({"gatekeeper": {"constraints": "never", "caSecretName": "gatekeeper-ca",
                              "namespace": "gk"}}),
        json!({"image": {"repository": "registry.example/vouch", "tag": "1.2.3", "pullPolicy": "Always"},
               "imagePullSecrets": [{"name": "pull"}], "logFormat": "text", "logLevel": "debug",
               "preStopSleepSeconds": 0, "priorityClassName": "system-cluster-critical",
               "podAnnotations": {"a": "b"}, "nodeSelector": {"kubernetes.io/os": "linux"},
               "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
               "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                   "nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "Exists"}]}]}}},
               "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}},
               "extraVolumes": [{"name": "keys", "secret": {"secretName": "cosign-keys"}}],
               "extraVolumeMounts": [{"name": "keys", "mountPath": "/etc/vouch/keys", "readOnly": true}],
               "registries": [{"host": "ghcr.io", "maxConcurrency": 8}],
               "policies": [{"name": "acme", "scopes": ["ghcr.io/acme/*"],
                             "verifiers": [{"cosign": {"publicKeys": ["/etc/vouch/keys/acme.pub"]}}]}],
               "extraConfig": {"deadline": "2s", "limits": {"maxKeys": 256},
                               "cache": {"verifiedTtl": "5m"}, "claims": {"ttl": "90s"}}}),
    ]
}

/// Gatekeeper's published CRD schemas (`../shared/fixtures/gatekeeper`), by (apiVersion,
/// kind).
fn gatekeeper_schemas() -> HashMap<(String, String), Value> {
    let dir = root().join("../shared/fixtures/gatekeeper");
    let mut schemas = HashMap::new();
    for file in [
        "provider-crd.yaml",
        "constrainttemplate-crd.yaml",
        "assign-crd.yaml",
    ] {
        for crd in documents(&read(&dir.join(file)), file) {
            let group = crd["spec"]["group"].as_str().unwrap_or_default();
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap_or_default();
            for version in crd["spec"]["versions"].as_array().into_iter().flatten() {
                let api = format!("{group}/{}", version["name"].as_str().unwrap_or_default());
                schemas.insert(
                    (api, kind.to_string()),
                    version["schema"]["openAPIV3Schema"].clone(),
                );
            }
        }
    }
    for kind in ["Provider", "ConstraintTemplate", "Assign"] {
        assert!(
            schemas.keys().any(|(_, k)| k == kind),
            "no {kind} schema among the fixtures"
        );
    }
    schemas
}

/// Problems of one Gatekeeper object: its CRD schema for Providers, ConstraintTemplates and
/// Assigns; for a Constraint, its parameters against its template's schema (Gatekeeper
/// generates the Constraint CRD from it) and the shape of the rest; for the SyncSet, its
/// GVK list (no published CRD among the fixtures).
fn gatekeeper_problems(
    obj: &Value,
    schemas: &HashMap<(String, String), Value>,
    templates: &[&Value],
) -> Vec<String> {
    let api = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    if let Some(schema) = schemas.get(&(api.to_string(), kind.to_string())) {
        let validator = jsonschema::validator_for(schema).expect("schema compiles");
        return validator.iter_errors(obj).map(|e| e.to_string()).collect();
    }
    let mut problems = Vec::new();
    match api {
        "constraints.gatekeeper.sh/v1beta1" => {
            let template = templates
                .iter()
                .find(|t| t["spec"]["crd"]["spec"]["names"]["kind"] == kind);
            let Some(template) = template else {
                return vec![format!(
                    "no ConstraintTemplate for {kind} rendered beside it"
                )];
            };
            let parameters = &obj["spec"]["parameters"];
            match &template["spec"]["crd"]["spec"]["validation"]["openAPIV3Schema"] {
                Value::Null => {
                    if !parameters.is_null() {
                        problems.push("parameters without a schema".into());
                    }
                }
                schema => {
                    let validator = jsonschema::validator_for(schema).expect("schema compiles");
                    problems.extend(validator.iter_errors(parameters).map(|e| e.to_string()));
                }
            }
            if !["deny", "warn", "dryrun"]
                .contains(&obj["spec"]["enforcementAction"].as_str().unwrap_or(""))
            {
                problems.push(format!(
                    "enforcementAction {}",
                    obj["spec"]["enforcementAction"]
                ));
            }
            if !obj["spec"]["match"]["kinds"].is_array() {
                problems.push("match.kinds is not a list".into());
            }
        }
        "syncset.gatekeeper.sh/v1alpha1" if kind == "SyncSet" => {
            let spec = obj["spec"].as_object().cloned().unwrap_or_default();
            if spec.keys().collect::<Vec<_>>() != ["gvks"] {
                problems.push(format!("spec {:?}", spec.keys().collect::<Vec<_>>()));
            }
            for gvk in spec
                .get("gvks")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let fields: BTreeSet<&String> = gvk
                    .as_object()
                    .map(|m| m.keys().collect())
                    .unwrap_or_default();
                let want: BTreeSet<String> = ["group", "version", "kind"].map(String::from).into();
                if fields != want.iter().collect() || !gvk["kind"].is_string() {
                    problems.push(format!("gvk {gvk}"));
                }
            }
        }
        _ => problems.push(format!("no schema for {api} {kind}")),
    }
    problems
}

/// Kinds without a Kubernetes API schema, with who checks them instead.
const GATEKEEPER_APIS: [&str; 5] = [
    "externaldata.gatekeeper.sh/",
    "templates.gatekeeper.sh/",
    "constraints.gatekeeper.sh/",
    "mutations.gatekeeper.sh/",
    "syncset.gatekeeper.sh/",
];
const OTHER_CRDS: [(&str, &str); 4] = [
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
];

/// Checks every object of one rendering; returns the kinds seen.
fn check_objects(r: &Rendered, schemas: &HashMap<(String, String), Value>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut names = BTreeSet::new();
    let templates: Vec<&Value> = r
        .objects
        .iter()
        .map(|o| &o.value)
        .filter(|o| o["kind"] == "ConstraintTemplate")
        .collect();
    for o in &r.objects {
        let v = &o.value;
        let (api, kind) = (
            v["apiVersion"].as_str().unwrap_or_default(),
            v["kind"].as_str().unwrap_or_default(),
        );
        let name = v["metadata"]["name"].as_str().unwrap_or_default();
        assert!(
            !api.is_empty() && !kind.is_empty() && !name.is_empty(),
            "{}: an object without apiVersion, kind or name: {v}",
            o.file
        );
        assert!(
            names.insert((kind.to_string(), name.to_string())),
            "{kind} {name} rendered twice with {}",
            r.values
        );
        seen.insert(kind.to_string());
        let versions: BTreeSet<&str> = o.kubernetes.keys().map(String::as_str).collect();
        assert_eq!(versions, helm::KUBE_VERSIONS.into());
        let gatekeeper = GATEKEEPER_APIS.iter().any(|p| api.starts_with(p));
        if gatekeeper || OTHER_CRDS.contains(&(api, kind)) {
            for (version, outcome) in &o.kubernetes {
                assert_eq!(outcome, "no-schema", "{kind} {name} on {version}");
            }
        } else {
            for (version, outcome) in &o.kubernetes {
                assert_eq!(
                    outcome, "ok",
                    "{kind} {name} ({}) does not validate against Kubernetes {version} with values {}",
                    o.file, r.values
                );
            }
        }
        if gatekeeper {
            let problems = gatekeeper_problems(v, schemas, &templates);
            assert!(
                problems.is_empty(),
                "{kind} {name} with values {}: {problems:?}",
                r.values
            );
        }
    }
    seen
}

#[test]
fn every_documented_option_renders_valid_kubernetes_and_gatekeeper_objects() {
    let schemas = gatekeeper_schemas();
    let cases = option_cases();
    let mut kinds = BTreeSet::new();
    for (values, result) in cases.iter().zip(render_all(&cases)) {
        let r = result.unwrap_or_else(|e| panic!("the chart does not render with {values}: {e}"));
        kinds.extend(check_objects(&r, &schemas));
    }
    for kind in [
        "ConfigMap",
        "Deployment",
        "Service",
        "Secret",
        "PodDisruptionBudget",
        "StatefulSet",
        "NetworkPolicy",
        "ServiceMonitor",
        "PrometheusRule",
        "Issuer",
        "Certificate",
        "Provider",
        "ConstraintTemplate",
        "VouchVerification",
        "VouchSystemError",
        "VouchUniqueServiceSelector",
        "SyncSet",
        "Assign",
    ] {
        assert!(kinds.contains(kind), "no case renders a {kind}: {kinds:?}");
    }
}

/// The checks above can fail: a field Kubernetes does not know, and a Gatekeeper object off
/// its schema, are reported.
#[test]
fn the_schema_checks_catch_a_broken_object() {
    let r = render(json!({"resources": {"requests": {"cpu": "100m"}, "cpus": 2}}));
    let deployment = r
        .objects
        .iter()
        .find(|o| o.value["kind"] == "Deployment")
        .expect("a Deployment");
    for version in helm::KUBE_VERSIONS {
        let outcome = &deployment.kubernetes[version];
        assert!(
            outcome.starts_with("invalid: ") && outcome.contains("cpus"),
            "{version}: {outcome}"
        );
    }
    let schemas = gatekeeper_schemas();
    let mut provider = r.object("Provider", "vouch-verify").clone();
    provider["spec"]["timeout"] = json!("3s");
    assert!(!gatekeeper_problems(&provider, &schemas, &[]).is_empty());
    let mut constraint = json!({"apiVersion": "constraints.gatekeeper.sh/v1beta1",
        "kind": "VouchUniqueServiceSelector", "metadata": {"name": "x"},
        "spec": {"enforcementAction": "deny", "match": {"kinds": []},
                 "parameters": {"allowOnSystemError": "yes"}}});
    let rendered = render(helm::with_uniqueness());
    let template = rendered.object("ConstraintTemplate", "vouchuniqueserviceselector");
    assert!(!gatekeeper_problems(&constraint, &schemas, &[template]).is_empty());
    constraint["spec"]["parameters"]["allowOnSystemError"] = json!(true);
    assert_eq!(
        gatekeeper_problems(&constraint, &schemas, &[template]),
        Vec::<String>::new()
    );
}

/// The caBundle the chart generated (ca.crt of Secret vouch-tls, base64 as stored).
fn generated_ca_bundle(r: &Rendered) -> String {
    r.object("Secret", "vouch-tls")["data"]["ca.crt"]
        .as_str()
        .expect("ca.crt")
        .to_string()
}

#[test]
fn the_charts_gatekeeper_objects_are_what_vouch_manifests_prints_for_the_same_values() {
    let mut cases = Vec::new();
    let mut args = Vec::new();
    for policy in ["open", "closed"] {
        for unique in [false, true] {
            for (validating, mutating) in [(3, 1), (3, 2), (5, 3), (30, 30)] {
                if policy == "closed" && mutating < 2 {
                    continue;
                }
                for constraints in ["always", "auto"] {
                    cases.push(json!({
                        "failurePolicy": policy,
                        "uniqueServiceSelector": {"enabled": unique},
                        "gatekeeper": {"webhookTimeoutSeconds": validating,
                                       "mutationWebhookTimeoutSeconds": mutating,
                                       "constraints": constraints},
                    }));
                    let mut a = vec![
                        "--failure-policy".to_string(),
                        policy.into(),
                        "--webhook-timeout".into(),
                        format!("{validating}s"),
                        "--mutation-webhook-timeout".into(),
                        format!("{mutating}s"),
                        "--namespace".into(),
                        NAMESPACE.into(),
                    ];
                    if unique {
                        a.push("--unique-service-selector".into());
                    }
                    args.push((a, constraints == "always"));
                }
            }
        }
    }
    for ((values, result), (mut a, with_constraints)) in
        cases.iter().zip(render_all(&cases)).zip(args)
    {
        let r = result.unwrap_or_else(|e| panic!("{values}: {e}"));
        a.extend(["--ca-bundle-value".to_string(), generated_ca_bundle(&r)]);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let expected: Vec<Value> = documents(
            &String::from_utf8(manifests(&a)).expect("utf-8"),
            "vouch manifests",
        )
        .into_iter()
        .filter(|o| with_constraints || o["apiVersion"] != "constraints.gatekeeper.sh/v1beta1")
        .collect();
        let actual = r.gatekeeper();
        let names = |objs: &[Value]| -> Vec<String> {
            objs.iter()
                .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
                .collect()
        };
        assert_eq!(
            names(&actual),
            names(&expected),
            "the objects rendered with {values} are not those of `vouch manifests {}`",
            a.join(" ")
        );
        for (got, want) in actual.iter().zip(&expected) {
            assert_eq!(
                got,
                want,
                "rendered with {values} vs `vouch manifests {}`",
                a.join(" ")
            );
        }
    }
}

/// A rendered config made runnable here: TLS files and the Redis password file (which must
/// be where the Deployment mounts them) replaced by stand-in files in `dir`.
fn local_config(r: &Rendered, dir: &Path) -> (PathBuf, Value) {
    let mut config = r.config();
    let c = r.container("Deployment", "vouch");
    let mounts: Vec<String> = c["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .map(|m| m["mountPath"].as_str().expect("mountPath").to_string())
        .collect();
    let mut files = vec![
        ("/tls/certFile", "/etc/vouch/tls"),
        ("/tls/keyFile", "/etc/vouch/tls"),
        ("/tls/clientCAFile", "/etc/vouch/gatekeeper"),
    ];
    if config.pointer("/redis/passwordFile").is_some() {
        files.push(("/redis/passwordFile", "/etc/vouch/redis"));
    }
    for (pointer, mount) in files {
        let path = config
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no {pointer} in the config"))
            .to_string();
        let file = path
            .strip_prefix(&format!("{mount}/"))
            .unwrap_or_else(|| panic!("{pointer} {path} is not under {mount}"));
        assert!(mounts.iter().any(|m| m == mount), "{mount} is not mounted");
        let local = dir.join(file);
        std::fs::write(&local, "").expect("write a stand-in file");
        *config.pointer_mut(pointer).expect("pointer") = json!(local);
    }
    let path = dir.join("config.yaml");
    std::fs::write(&path, serde_json::to_string_pretty(&config).expect("json")).expect("write");
    (path, config)
}

/// `vouch manifests --config` checks the config's deadlines against the Providers'
/// timeouts; its exit status and stderr.
fn manifests_accept(config: &Path, args: &[String]) -> (bool, String) {
    let out = Command::new(VOUCH)
        .arg("manifests")
        .arg("--config")
        .arg(config)
        .args(args)
        .args(["--ca-bundle-value", "Q0E="])
        .output()
        .expect("run vouch manifests");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The Providers' timeouts, by name.
fn provider_timeouts(objects: &[Value]) -> BTreeMap<String, Value> {
    objects
        .iter()
        .filter(|o| o["kind"] == "Provider")
        .map(|o| {
            (
                o["metadata"]["name"].as_str().expect("name").to_string(),
                o["spec"]["timeout"].clone(),
            )
        })
        .collect()
}

/// `vouch manifests` with the uniqueness policy and these webhook timeouts: its
/// Providers' timeouts, or its refusal.
fn binary_provider_timeouts(
    policy: &str,
    validating: u64,
    mutating: u64,
) -> Result<BTreeMap<String, Value>, String> {
    let out = Command::new(VOUCH)
        .args([
            "manifests",
            "--failure-policy",
            policy,
            "--unique-service-selector",
        ])
        .args(["--webhook-timeout", &format!("{validating}s")])
        .args(["--mutation-webhook-timeout", &format!("{mutating}s")])
        .args(["--namespace", NAMESPACE, "--ca-bundle-value", "Q0E="])
        .output()
        .expect("run vouch manifests");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).expect("utf-8");
    Ok(provider_timeouts(&documents(&text, "vouch manifests")))
}

fn seconds(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{v} is not whole seconds"))
}

#[test]
fn closed_mode_times_out_inside_gatekeepers_webhooks() {
    // Over a grid of Gatekeeper webhook timeouts, the chart renders closed mode exactly when
    // `vouch manifests` accepts it, with the same Provider timeouts, each inside its
    // webhook; vouch's deadlines are 500 ms under them, which `vouch manifests --config`
    // accepts and 1 ms more it does not; what the binary refuses the chart refuses too, in
    // one line naming the value to raise.
    let grid: Vec<(u64, u64)> = [1, 2, 3, 4, 5, 7, 30]
        .into_iter()
        .flat_map(|v| [1, 2, 3, 5].map(|m| (v, m)))
        .collect();
    let cases: Vec<Value> = grid
        .iter()
        .map(|(v, m)| {
            json!({"failurePolicy": "closed", "uniqueServiceSelector": {"enabled": true},
                   "gatekeeper": {"webhookTimeoutSeconds": v, "mutationWebhookTimeoutSeconds": m}})
        })
        .collect();
    let (mut accepted, mut refused) = (0, 0);
    for ((&(v, m), values), chart) in grid.iter().zip(&cases).zip(render_all(&cases)) {
        match (binary_provider_timeouts("closed", v, m), chart) {
            (Ok(want), Ok(r)) => {
                accepted += 1;
                let got = provider_timeouts(
                    &r.objects
                        .iter()
                        .map(|o| o.value.clone())
                        .collect::<Vec<_>>(),
                );
                assert_eq!(got, want, "{values}");
                let (verify, mutate) =
                    (seconds(&got["vouch-verify"]), seconds(&got["vouch-mutate"]));
                assert!(
                    verify < v && seconds(&got["vouch-claims"]) < v && mutate < m,
                    "{got:?} not inside ({v}, {m})"
                );
                let config = r.config();
                let (d, md) = (
                    format!("{}ms", verify * 1000 - 500),
                    format!("{}ms", mutate * 1000 - 500),
                );
                assert_eq!(
                    (&config["deadline"], &config["mutateDeadline"]),
                    (&json!(d), &json!(md)),
                    "{values}"
                );
                let dir = tempfile::tempdir().expect("tempdir");
                let (path, mut config) = local_config(&r, dir.path());
                let args: Vec<String> = [
                    "--failure-policy".to_string(),
                    "closed".into(),
                    "--webhook-timeout".into(),
                    format!("{v}s"),
                    "--mutation-webhook-timeout".into(),
                    format!("{m}s"),
                ]
                .into();
                let (ok, stderr) = manifests_accept(&path, &args);
                assert!(
                    ok,
                    "vouch manifests --config refuses the config rendered with {values}: {stderr}"
                );
                let over = humantime::parse_duration(&d).expect("duration")
                    + std::time::Duration::from_millis(1);
                config["deadline"] = json!(humantime::format_duration(over).to_string());
                std::fs::write(&path, serde_json::to_string(&config).expect("json"))
                    .expect("write");
                let (ok, stderr) = manifests_accept(&path, &args);
                assert!(!ok && stderr.contains("deadline"), "{stderr}");
                let notes = r.notes();
                for line in [
                    "validatingWebhookFailurePolicy: Fail".to_string(),
                    "mutatingWebhookFailurePolicy: Fail".into(),
                    format!("validatingWebhookTimeoutSeconds: {v}"),
                    format!("mutatingWebhookTimeoutSeconds: {m}"),
                ] {
                    assert!(
                        notes.contains(&line),
                        "NOTES.txt does not say {line}:\n{notes}"
                    );
                }
            }
            (Err(why), Err(e)) => {
                refused += 1;
                assert!(!e.contains('\n'), "not one line: {e}");
                let value = if why.contains("validating webhook") {
                    "gatekeeper.webhookTimeoutSeconds"
                } else {
                    "gatekeeper.mutationWebhookTimeoutSeconds"
                };
                assert!(
                    e.contains(value) && e.contains("at least"),
                    "({v}, {m}): {e:?} vs the binary's {why:?}"
                );
            }
            (Ok(want), Err(e)) => {
                panic!("({v}, {m}): vouch manifests prints {want:?}, the chart refuses: {e}")
            }
            (Err(why), Ok(_)) => {
                panic!("({v}, {m}): vouch manifests refuses ({why}), the chart renders")
            }
        }
    }
    assert!(
        accepted >= 5 && refused >= 5,
        "{accepted} accepted, {refused} refused"
    );
    // Gatekeeper's own defaults (3 s, 1 s) do not allow closed mode.
    let e = refusal(json!({"failurePolicy": "closed"}));
    assert!(
        e.contains("gatekeeper.mutationWebhookTimeoutSeconds")
            && e.contains("mutatingWebhookTimeoutSeconds"),
        "{e}"
    );

    // Open: the Providers wait as long as the webhooks (as the binary says); vouch keeps its
    // own deadlines.
    for (v, m) in [(3, 1), (5, 2)] {
        let r = render(
            json!({"gatekeeper": {"webhookTimeoutSeconds": v, "mutationWebhookTimeoutSeconds": m},
                              "uniqueServiceSelector": {"enabled": true}}),
        );
        let got = provider_timeouts(
            &r.objects
                .iter()
                .map(|o| o.value.clone())
                .collect::<Vec<_>>(),
        );
        assert_eq!(Ok(got.clone()), binary_provider_timeouts("open", v, m));
        assert_eq!(
            (seconds(&got["vouch-verify"]), seconds(&got["vouch-mutate"])),
            (v, m)
        );
        let config = r.config();
        assert!(config.get("deadline").is_none() && config.get("mutateDeadline").is_none());
        assert!(!r.notes().contains("WebhookFailurePolicy"));
    }

    // Deadlines given in extraConfig are kept when they fit under the Providers, refused
    // when not. With 7 s and 2 s webhooks: vouch-verify 3 s, vouch-mutate 1 s.
    let closed = |extra: Value| {
        json!({"failurePolicy": "closed", "extraConfig": extra,
               "gatekeeper": {"webhookTimeoutSeconds": 7, "mutationWebhookTimeoutSeconds": 2}})
    };
    let r = render(closed(
        json!({"deadline": "2s 500ms", "mutateDeadline": "400ms"}),
    ));
    let config = r.config();
    assert_eq!(
        (config["deadline"].clone(), config["mutateDeadline"].clone()),
        (json!("2s 500ms"), json!("400ms"))
    );
    let refused = [
        (
            closed(json!({"deadline": "2501ms"})),
            ["extraConfig.deadline", "at most 2500ms"].as_slice(),
        ),
        (
            closed(json!({"mutateDeadline": "1s"})),
            &["extraConfig.mutateDeadline", "at most 500ms"],
        ),
        (
            closed(json!({"deadline": "soon"})),
            &["extraConfig.deadline", "not a duration"],
        ),
        (
            json!({"gatekeeper": {"webhookTimeoutSeconds": 2.5}}),
            &["gatekeeper.webhookTimeoutSeconds", "whole number"],
        ),
        (
            json!({"gatekeeper": {"mutationWebhookTimeoutSeconds": 0}}),
            &["gatekeeper.mutationWebhookTimeoutSeconds", "whole number"],
        ),
        (
            json!({"gatekeeper": {"webhookTimeoutSeconds": 31}}),
            &["gatekeeper.webhookTimeoutSeconds", "whole number"],
        ),
        (
            json!({"failurePolicy": "sometimes"}),
            &["failurePolicy must be open or closed"],
        ),
    ];
    let cases: Vec<Value> = refused.iter().map(|(v, _)| v.clone()).collect();
    for (result, (values, reasons)) in render_all(&cases).into_iter().zip(&refused) {
        let Err(e) = result else {
            panic!("the chart renders with {values}, which it must refuse");
        };
        assert!(!e.contains('\n'), "not one line: {e}");
        for reason in *reasons {
            assert!(
                e.contains(reason),
                "{values}: {e:?} does not say {reason:?}"
            );
        }
    }
}

#[test]
fn the_charts_redis_is_persistent_locked_down_and_only_reachable_by_vouch() {
    let values = values();
    let r = render(json!({}));
    let sts = r.object("StatefulSet", "vouch-redis");
    assert_eq!(sts["spec"]["replicas"], 1, "one writer");
    let pod = &sts["spec"]["template"]["spec"];
    let c = r.container("StatefulSet", "vouch-redis");
    let tag = values["redis"]["image"]["tag"]
        .as_str()
        .expect("redis.image.tag");
    assert!(
        !tag.is_empty()
            && tag != "latest"
            && tag.chars().next().is_some_and(|c| c.is_ascii_digit()),
        "redis.image.tag {tag:?} is not a pinned version"
    );
    assert_eq!(
        values["redis"]["image"]["repository"], "redis",
        "the official image"
    );
    assert_eq!(c["image"], format!("redis:{tag}"));
    let digest = format!("sha256:{}", "b".repeat(64));
    let pinned = render(json!({"redis": {"image": {"digest": digest}}}));
    assert_eq!(
        pinned.container("StatefulSet", "vouch-redis")["image"],
        format!("redis:{tag}@{digest}")
    );

    // Non-root and locked down, with resources and probes that authenticate.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert!(
        pod["securityContext"]["runAsUser"]
            .as_i64()
            .is_some_and(|u| u > 0)
    );
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["automountServiceAccountToken"], false);
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    for resource in ["cpu", "memory"] {
        assert!(
            c["resources"]["requests"][resource].is_string(),
            "request {resource}"
        );
    }
    for probe in ["livenessProbe", "readinessProbe"] {
        let command = c[probe]["exec"]["command"].to_string();
        assert!(
            command.contains("redis-cli") && command.contains("ping"),
            "{probe}: {command}"
        );
    }
    let auth_env = c["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "REDISCLI_AUTH")
        .expect("REDISCLI_AUTH for the probes");
    assert_eq!(
        auth_env["valueFrom"]["secretKeyRef"],
        json!({"name": "vouch-redis", "key": "password"})
    );
    assert_eq!(
        c["args"],
        json!(["redis-server", "/etc/redis/redis.conf"]),
        "no password on the command line"
    );

    // AOF with fsync on every write, no eviction, the password from the Secret.
    let conf = r.object("ConfigMap", "vouch-redis")["data"]["redis.conf"]
        .as_str()
        .expect("redis.conf");
    let directives: Vec<&str> = conf
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    for line in [
        "appendonly yes",
        "appendfsync always",
        "maxmemory-policy noeviction",
        "dir /data",
        "port 6379",
        "include /etc/redis/auth/auth.conf",
    ] {
        assert!(
            directives.contains(&line),
            "redis.conf lacks `{line}`:\n{conf}"
        );
    }
    let password = r.secret("vouch-redis", "password");
    assert!(
        password.len() >= 32 && password.chars().all(|c| c.is_ascii_alphanumeric()),
        "{password:?}"
    );
    assert_eq!(
        r.secret("vouch-redis", "auth.conf"),
        format!("requirepass {password}\n")
    );
    assert_ne!(
        password,
        render(json!({})).secret("vouch-redis", "password"),
        "generated per install"
    );
    // Kept across upgrades: the template reads the installed Secret back (as vouch-tls).
    assert!(
        read(&chart().join("templates/redis.yaml"))
            .contains(r#"lookup "v1" "Secret" .Release.Namespace "vouch-redis""#)
    );
    let mounts = c["volumeMounts"].as_array().expect("mounts");
    let data = mounts
        .iter()
        .find(|m| m["mountPath"] == "/data")
        .expect("/data mounted");
    let claim = sts["spec"]["volumeClaimTemplates"]
        .as_array()
        .expect("volumeClaimTemplates");
    assert_eq!(claim[0]["metadata"]["name"], data["name"]);
    assert_eq!(
        claim[0]["spec"]["resources"]["requests"]["storage"],
        values["redis"]["persistence"]["size"]
    );

    // The Service, and the NetworkPolicy admitting only vouch's pods on 6379.
    let svc = r.object("Service", "vouch-redis");
    assert_eq!(svc["spec"]["ports"][0]["port"], 6379);
    let redis_labels = &sts["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&svc["spec"]["selector"], redis_labels);
    let vouch_labels = &r.object("Deployment", "vouch")["spec"]["template"]["metadata"]["labels"];
    assert_ne!(redis_labels, vouch_labels);
    assert_ne!(
        redis_labels["app.kubernetes.io/name"], vouch_labels["app.kubernetes.io/name"],
        "the vouch Service must not select Redis"
    );
    let np = r.object("NetworkPolicy", "vouch-redis");
    assert_eq!(np["spec"]["podSelector"]["matchLabels"], *redis_labels);
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress"]));
    assert_eq!(
        np["spec"]["ingress"],
        json!([{"from": [{"podSelector": {"matchLabels": vouch_labels}}], "ports": [{"port": 6379, "protocol": "TCP"}]}])
    );

    // vouch's config points at it, with the password mounted where the config says.
    let config = r.config();
    assert_eq!(
        config["redis"],
        json!({"url": format!("redis://vouch-redis.{NAMESPACE}.svc:6379/0"), "passwordFile": "/etc/vouch/redis/password"})
    );
    assert!(
        config.get("claims").is_none(),
        "no claims store without the uniqueness policy"
    );
    assert_password_mount(&r, "vouch-redis");

    // Without persistence: an emptyDir.
    let r = render(json!({"redis": {"persistence": {"enabled": false}}}));
    let sts = r.object("StatefulSet", "vouch-redis");
    assert!(sts["spec"].get("volumeClaimTemplates").is_none());
    let data = sts["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "data")
        .expect("data volume")
        .clone();
    assert!(data["emptyDir"].is_object());

    // redis.enabled false, or redisUrl: no Redis of the chart's.
    for (values, redis) in [
        (json!({"redis": {"enabled": false}}), Value::Null),
        (
            json!({"redisUrl": "rediss://r.example:6380/2"}),
            json!({"url": "rediss://r.example:6380/2"}),
        ),
        (
            json!({"redisUrl": "redis://r.example:6379/0", "redisPasswordSecret": "r-pass"}),
            json!({"url": "redis://r.example:6379/0", "passwordFile": "/etc/vouch/redis/password"}),
        ),
    ] {
        let r = render(values.clone());
        let leftovers: Vec<String> = r
            .names()
            .into_iter()
            .filter(|n| n.ends_with("/vouch-redis"))
            .collect();
        assert!(leftovers.is_empty(), "{values}: {leftovers:?}");
        assert_eq!(
            r.config().get("redis").cloned().unwrap_or(Value::Null),
            redis,
            "{values}"
        );
        match values["redisPasswordSecret"].as_str() {
            Some(secret) => assert_password_mount(&r, secret),
            None => {
                let pod = &r.object("Deployment", "vouch")["spec"]["template"]["spec"];
                assert!(
                    !pod["volumes"].to_string().contains("redis"),
                    "{values}: {pod}"
                );
            }
        }
    }
    let e = refusal(json!({"redisPasswordSecret": "r-pass"}));
    assert!(
        e.contains("redisPasswordSecret is only used with redisUrl"),
        "{e}"
    );
    for (values, field) in [
        (
            json!({"extraConfig": {"redis": {"url": "redis://x"}}}),
            "extraConfig.redis.url",
        ),
        (
            json!({"extraConfig": {"cache": {"redisUrl": "redis://x"}}}),
            "extraConfig.cache.redisUrl",
        ),
        (
            json!({"extraConfig": {"redis": {"passwordFile": "/x"}}}),
            "extraConfig.redis.passwordFile",
        ),
        (json!({"extraConfig": {"tls": {}}}), "extraConfig.tls"),
    ] {
        let e = refusal(values);
        assert!(e.contains(field) && !e.contains('\n'), "{e}");
    }
}

/// The vouch Deployment mounts key `password` of Secret `secret` at
/// /etc/vouch/redis/password, not optional.
fn assert_password_mount(r: &Rendered, secret: &str) {
    let pod = &r.object("Deployment", "vouch")["spec"]["template"]["spec"];
    let mount = r.container("Deployment", "vouch")["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["mountPath"] == "/etc/vouch/redis")
        .expect("the Redis password mounted at /etc/vouch/redis")
        .clone();
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("its volume")
        .clone();
    assert_eq!(volume["secret"]["secretName"], secret);
    assert_eq!(
        volume["secret"]["items"],
        json!([{"key": "password", "path": "password"}])
    );
    assert!(volume["secret"].get("optional").is_none_or(|o| o == false));
}

const UNIQUENESS: [&str; 4] = [
    "Provider/vouch-claims",
    "ConstraintTemplate/vouchuniqueserviceselector",
    "VouchUniqueServiceSelector/vouch-unique-service-selector",
    "SyncSet/vouch-services",
];

#[test]
fn the_uniqueness_policy_is_opt_in_and_its_claims_are_shared() {
    let uniqueness = |r: &Rendered| -> Vec<String> {
        r.names()
            .into_iter()
            .filter(|n| UNIQUENESS.contains(&n.as_str()))
            .collect()
    };
    let off = render(json!({"gatekeeper": {"constraints": "always"}}));
    assert_eq!(uniqueness(&off), Vec::<String>::new());
    assert!(
        off.notes().contains("Uniqueness policy: not installed"),
        "{}",
        off.notes()
    );
    assert!(off.config().get("claims").is_none());

    for policy in ["open", "closed"] {
        let on = render(
            json!({"uniqueServiceSelector": {"enabled": true}, "failurePolicy": policy,
            "gatekeeper": {"constraints": "always", "mutationWebhookTimeoutSeconds": 2}}),
        );
        assert_eq!(uniqueness(&on), UNIQUENESS, "{policy}");
        assert!(
            on.notes().contains("Uniqueness policy: installed"),
            "{}",
            on.notes()
        );
        let constraint = on.object(
            "VouchUniqueServiceSelector",
            "vouch-unique-service-selector",
        );
        assert_eq!(
            constraint["spec"]["parameters"]["allowOnSystemError"],
            policy == "open",
            "{policy}"
        );
        assert_eq!(on.config()["claims"], json!({"store": "redis"}));
    }

    // Claims in the external Redis, with extraConfig's other claims settings kept.
    let r = render(
        json!({"uniqueServiceSelector": {"enabled": true}, "redisUrl": "redis://r.example:6379/0",
                          "extraConfig": {"claims": {"ttl": "90s"}}}),
    );
    assert_eq!(
        r.config()["claims"],
        json!({"store": "redis", "ttl": "90s"})
    );
    // One replica may keep its claims in memory.
    let r = render(
        json!({"uniqueServiceSelector": {"enabled": true}, "replicas": 1, "redis": {"enabled": false}}),
    );
    assert!(r.config().get("claims").is_none() && r.config().get("redis").is_none());
    // Several replicas without a shared Redis: refused, with the reason.
    for values in [
        json!({"uniqueServiceSelector": {"enabled": true}, "replicas": 2, "redis": {"enabled": false}}),
        json!({"uniqueServiceSelector": {"enabled": true}, "replicas": 3, "redis": {"enabled": false}, "redisUrl": ""}),
    ] {
        let e = refusal(values.clone());
        assert!(
            e.contains("uniqueServiceSelector.enabled")
                && e.contains("needs a Redis shared by them")
                && !e.contains('\n'),
            "{values}: {e}"
        );
    }
    // Sentinels given in extraConfig are a shared Redis too.
    let r = render(
        json!({"uniqueServiceSelector": {"enabled": true}, "redis": {"enabled": false},
        "extraConfig": {"redis": {"sentinel": {"masterName": "m", "addresses": ["s1:26379"]}}}}),
    );
    assert_eq!(r.config()["claims"]["store"], "redis");
    let e = refusal(
        json!({"uniqueServiceSelector": {"enabled": true}, "extraConfig": {"claims": {"store": "memory"}}}),
    );
    assert!(e.contains("extraConfig.claims.store"), "{e}");
}

#[test]
fn the_rendered_configs_pass_vouch_config_check() {
    let cases = option_cases();
    for (values, result) in cases.iter().zip(render_all(&cases)) {
        let r = result.unwrap_or_else(|e| panic!("{values}: {e}"));
        let config = r.config();
        assert_eq!(
            config["listen"], "0.0.0.0:8443",
            "the Service's provider port"
        );
        assert_eq!(
            config["opsListen"], "0.0.0.0:9090",
            "the probes' and Service's ops port"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        // Files the values name (cosign keys) are not here; vouch config check reports
        // them, so only the cases without any are checked in full.
        if r.config_text().contains("/etc/vouch/keys/") {
            continue;
        }
        let (path, config) = local_config(&r, dir.path());
        let out = Command::new(VOUCH)
            .args(["config", "check"])
            .arg(&path)
            .output()
            .expect("run vouch config check");
        assert!(
            out.status.success(),
            "vouch config check rejects the config rendered with {values}:\n{}{}\n{config:#}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `.Values.a.b` paths a text reads (identifier characters after `.Values.`).
fn value_paths(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices(".Values.") {
        let path: String = text[i + ".Values.".len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
            .collect();
        let path = path.trim_end_matches('.');
        if !path.is_empty() {
            out.insert(path.to_string());
        }
    }
    out
}

#[test]
fn every_value_read_exists_and_is_documented_and_every_value_is_read() {
    let values = values();
    let readme = read(&chart().join("README.md"));
    let dir = chart().join("templates");
    let mut read_paths = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("templates") {
        let path = entry.expect("entry").path();
        read_paths.extend(value_paths(&read(&path)));
    }
    for path in &read_paths {
        // The value itself: the path, or the part of it that ends in a free-form mapping
        // such as extraConfig (`{}`), whose keys are the user's.
        let mut v = &values;
        let mut value = Vec::new();
        for part in path.split('.') {
            if v.as_object().is_some_and(|m| m.is_empty()) {
                break;
            }
            v = v
                .get(part)
                .unwrap_or_else(|| panic!(".Values.{path} is read but not in values.yaml"));
            value.push(part);
        }
        let value = value.join(".");
        assert!(
            readme.contains(&format!("`{value}`")),
            "value {value} is not documented in charts/vouch/README.md"
        );
    }
    for key in values.as_object().expect("values.yaml is a mapping").keys() {
        assert!(
            read_paths
                .iter()
                .any(|p| p == key || p.starts_with(&format!("{key}."))),
            "value {key} is never read by a template"
        );
    }
    assert_eq!(values["replicas"], 2);
    assert_eq!(values["failurePolicy"], "open");
    assert_eq!(values["uniqueServiceSelector"]["enabled"], false);
    assert_eq!(values["redis"]["enabled"], true);
    assert_eq!(
        values["gatekeeper"]["webhookTimeoutSeconds"], 3,
        "Gatekeeper's default"
    );
    assert_eq!(
        values["gatekeeper"]["mutationWebhookTimeoutSeconds"], 1,
        "Gatekeeper's default"
    );
    assert_eq!(
        values["gatekeeper"]["caSecretName"],
        "gatekeeper-webhook-server-cert"
    );
    assert_eq!(values["certManager"]["enabled"], false);
    assert_eq!(values["serviceMonitor"]["enabled"], false);
    assert_eq!(values["grafanaDashboard"]["enabled"], false);
    assert_eq!(values["prometheusRule"]["enabled"], false);
}

/// The dashboard and the alerts are opt-in, and what the chart installs is, unchanged, the
/// files `tests/prometheus.rs` runs on a real Prometheus and promtool tests.
#[test]
fn the_dashboard_and_the_alerts_are_opt_in_and_install_the_tested_files() {
    let dashboard: Value = serde_json::from_str(&read(&chart().join("files/dashboard.json")))
        .expect("files/dashboard.json is JSON");
    let alerts = documents(&read(&chart().join("files/alerts.yaml")), "alerts.yaml");
    assert_eq!(alerts.len(), 1, "alerts.yaml is one document");
    let cases = [
        json!({}),
        json!({"grafanaDashboard": {"enabled": true}, "prometheusRule": {"enabled": true}}),
        json!({"grafanaDashboard": {"enabled": true, "annotations": {"grafana_folder": "Gatekeeper"},
                                    "namespace": "monitoring"},
               "prometheusRule": {"enabled": true, "labels": {"release": "prom"}}}),
    ];
    let mut rendered = render_all(&cases).into_iter().map(|r| r.expect("renders"));
    let off = rendered.next().expect("default");
    assert!(
        off.find("ConfigMap", "vouch-dashboard").is_none(),
        "{:?}",
        off.names()
    );
    assert!(
        !off.objects
            .iter()
            .any(|o| o.value["kind"] == "PrometheusRule"),
        "{:?}",
        off.names()
    );

    let on = rendered.next().expect("enabled");
    let cm = on.object("ConfigMap", "vouch-dashboard");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1", "{cm}");
    assert_eq!(cm["metadata"]["namespace"], NAMESPACE);
    let shipped: Value =
        serde_json::from_str(cm["data"]["vouch.json"].as_str().expect("vouch.json"))
            .expect("the ConfigMap's dashboard is JSON");
    assert_eq!(shipped, dashboard);
    let rule = on.object("PrometheusRule", "vouch");
    assert_eq!(
        rule["spec"], alerts[0],
        "the rules are files/alerts.yaml unchanged"
    );
    assert_eq!(
        rule["metadata"]["labels"]["app.kubernetes.io/name"],
        "vouch"
    );

    let placed = rendered.next().expect("placed");
    let cm = placed.object("ConfigMap", "vouch-dashboard");
    assert_eq!(cm["metadata"]["namespace"], "monitoring");
    assert_eq!(
        cm["metadata"]["annotations"]["grafana_folder"],
        "Gatekeeper"
    );
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        placed.object("PrometheusRule", "vouch")["metadata"]["labels"]["release"],
        "prom"
    );
}

#[test]
fn the_deployment_runs_vouch_locked_down_and_probed_on_the_ops_port() {
    let r = render(json!({}));
    let pod = &r.object("Deployment", "vouch")["spec"]["template"]["spec"];
    let c = r.container("Deployment", "vouch");
    assert_eq!(
        pod["securityContext"]["runAsNonRoot"], true,
        "pod runAsNonRoot"
    );
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
        "pod seccomp"
    );
    assert_eq!(pod["automountServiceAccountToken"], false, "no API token");
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true, "runAsNonRoot");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "readOnlyRootFilesystem");
    assert_eq!(
        sc["allowPrivilegeEscalation"], false,
        "allowPrivilegeEscalation"
    );
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "capabilities");
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "seccomp");
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], 9090, "{probe}");
    }
    assert_eq!(
        c["args"],
        json!([
            "serve",
            "--config",
            "/etc/vouch/config.yaml",
            "--log-format",
            "json"
        ])
    );
    assert_eq!(c["lifecycle"]["preStop"]["sleep"]["seconds"], 5);
    let ports: Vec<(Value, Value)> = c["ports"]
        .as_array()
        .expect("container ports")
        .iter()
        .map(|p| (p["name"].clone(), p["containerPort"].clone()))
        .collect();
    assert_eq!(
        ports,
        [
            (json!("provider"), json!(8443)),
            (json!("ops"), json!(9090))
        ]
    );
    let anti = &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        [0]["podAffinityTerm"];
    assert_eq!(anti["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(
        anti["labelSelector"]["matchLabels"],
        r.object("Deployment", "vouch")["spec"]["selector"]["matchLabels"]
    );
    // The config's checksum rolls the pods when it changes.
    let checksum = |r: &Rendered| {
        r.object("Deployment", "vouch")["spec"]["template"]["metadata"]["annotations"]["checksum/config"].clone()
    };
    assert_ne!(
        checksum(&r),
        checksum(&render(
            json!({"logLevel": "debug", "extraConfig": {"deadline": "2s"}})
        ))
    );

    // Mounts: config file, serving certificate, Gatekeeper's CA (ca.crt only), /tmp.
    let volume = |name: &str| {
        pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
            .clone()
    };
    let mount = |path: &str| {
        c["volumeMounts"]
            .as_array()
            .expect("volumeMounts")
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("nothing mounted at {path}"))
            .clone()
    };
    let config = mount("/etc/vouch/config.yaml");
    assert_eq!(config["subPath"], "config.yaml");
    assert_eq!(
        volume(config["name"].as_str().expect("name"))["configMap"]["name"],
        "vouch"
    );
    let tls = volume(mount("/etc/vouch/tls")["name"].as_str().expect("name"));
    assert_eq!(tls["secret"]["secretName"], "vouch-tls");
    let gk = volume(
        mount("/etc/vouch/gatekeeper")["name"]
            .as_str()
            .expect("name"),
    );
    assert_eq!(gk["secret"]["secretName"], "gatekeeper-webhook-server-cert");
    assert_eq!(
        gk["secret"]["items"],
        json!([{"key": "ca.crt", "path": "ca.crt"}])
    );
    let tmp = volume(mount("/tmp")["name"].as_str().expect("name"));
    assert!(tmp["emptyDir"].is_object(), "/tmp is an emptyDir");
    let r = render(json!({"gatekeeper": {"caSecretName": "gatekeeper-ca"}}));
    let pod = &r.object("Deployment", "vouch")["spec"]["template"]["spec"];
    assert!(
        pod["volumes"]
            .to_string()
            .contains(r#""secretName":"gatekeeper-ca""#)
    );
}

/// The DNS names of the first certificate of a PEM bundle.
fn dns_names(pem: &str) -> Vec<String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("PEM");
    let cert = pem.parse_x509().expect("X.509");
    cert.subject_alternative_name()
        .expect("SAN extension")
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_service_is_vouch_on_8443_and_9090_and_the_certificates_and_providers_name_it() {
    let r = render(json!({"uniqueServiceSelector": {"enabled": true}}));
    let service = r.object("Service", "vouch");
    let ports: Vec<(Value, Value, Value)> = service["spec"]["ports"]
        .as_array()
        .expect("service ports")
        .iter()
        .map(|p| {
            (
                p["name"].clone(),
                p["port"].clone(),
                p["targetPort"].clone(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            (json!("provider"), json!(8443), json!("provider")),
            (json!("ops"), json!(9090), json!("ops")),
        ]
    );
    assert_eq!(
        service["spec"]["selector"],
        r.object("Deployment", "vouch")["spec"]["selector"]["matchLabels"]
    );
    let names = [
        "vouch".to_string(),
        format!("vouch.{NAMESPACE}"),
        format!("vouch.{NAMESPACE}.svc"),
    ];
    let ca = generated_ca_bundle(&r);
    assert_eq!(dns_names(&r.secret("vouch-tls", "tls.crt")), names);
    assert!(
        r.secret("vouch-tls", "ca.crt")
            .contains("BEGIN CERTIFICATE")
    );
    assert!(r.secret("vouch-tls", "tls.key").contains("PRIVATE KEY"));
    for (provider, path) in [
        ("vouch-verify", "/v1/verify"),
        ("vouch-mutate", "/v1/mutate"),
        ("vouch-claims", "/v1/claims"),
    ] {
        let p = r.object("Provider", provider);
        assert_eq!(
            p["spec"]["url"],
            format!("https://vouch.{NAMESPACE}:8443{path}")
        );
        assert_eq!(
            p["spec"]["caBundle"],
            ca.as_str(),
            "{provider} trusts the generated CA"
        );
    }

    let r = render(
        json!({"certManager": {"enabled": true}, "caBundle": "Q0E=", "serviceMonitor": {"enabled": true}}),
    );
    assert!(
        r.find("Secret", "vouch-tls").is_none(),
        "cert-manager issues it"
    );
    let cert = r.object("Certificate", "vouch-serving");
    assert_eq!(cert["spec"]["secretName"], "vouch-tls");
    assert_eq!(cert["spec"]["dnsNames"], json!(names));
    assert_eq!(
        r.object("Provider", "vouch-verify")["spec"]["caBundle"],
        "Q0E="
    );
    let monitor = r.object("ServiceMonitor", "vouch");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "ops");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    // cert-manager without a known caBundle: no Gatekeeper objects yet, and the notes say so.
    let r = render(json!({"certManager": {"enabled": true}}));
    assert!(r.gatekeeper().is_empty(), "{:?}", r.names());
    assert!(r.notes().contains("No Gatekeeper objects were installed"));
}

#[test]
fn optional_objects_follow_their_switches() {
    let count =
        |r: &Rendered, kind: &str| r.objects.iter().filter(|o| o.value["kind"] == kind).count();
    let cases = [
        (json!({}), "PodDisruptionBudget", 1),
        (json!({"replicas": 1}), "PodDisruptionBudget", 0),
        (
            json!({"podDisruptionBudget": {"enabled": false}}),
            "PodDisruptionBudget",
            0,
        ),
        (json!({}), "ServiceMonitor", 0),
        (
            json!({"serviceMonitor": {"enabled": true}}),
            "ServiceMonitor",
            1,
        ),
        (json!({}), "PrometheusRule", 0),
        (
            json!({"prometheusRule": {"enabled": true}}),
            "PrometheusRule",
            1,
        ),
        (json!({}), "VouchVerification", 0),
        (
            json!({"gatekeeper": {"constraints": "always"}}),
            "VouchVerification",
            1,
        ),
        (
            json!({"gatekeeper": {"constraints": "never"}}),
            "VouchVerification",
            0,
        ),
        (json!({"gatekeeper": {"manifests": false}}), "Provider", 0),
        (json!({}), "Provider", 2),
        (
            json!({"uniqueServiceSelector": {"enabled": true}}),
            "Provider",
            3,
        ),
        (json!({}), "StatefulSet", 1),
        (json!({"redis": {"enabled": false}}), "StatefulSet", 0),
        (json!({"certManager": {"enabled": true}}), "Certificate", 2),
        (
            json!({"certManager": {"enabled": true, "issuerRef": {"name": "x", "kind": "ClusterIssuer"}}}),
            "Certificate",
            1,
        ),
    ];
    let values: Vec<Value> = cases.iter().map(|(v, _, _)| v.clone()).collect();
    for (r, (values, kind, n)) in render_all(&values).into_iter().zip(&cases) {
        let r = r.unwrap_or_else(|e| panic!("{values}: {e}"));
        assert_eq!(count(&r, kind), *n, "{kind} with {values}: {:?}", r.names());
    }
    let r = render(json!({"replicas": 1, "preStopSleepSeconds": 0}));
    assert!(
        r.container("Deployment", "vouch")
            .get("lifecycle")
            .is_none()
    );
}

/// The Dockerfile's instructions (keyword, arguments).
fn dockerfile() -> Vec<(String, String)> {
    support::dockerfile::instructions(&read(&root().join("Dockerfile")))
        .into_iter()
        .map(|s| (s.op, s.args))
        .collect()
}

/// Crate-root entries a build needs: manifest, lock file, sources, the targets Cargo.toml
/// declares, and the top-level directory of everything `include_str!`/`include_bytes!`
/// pulls into `src/`.
fn build_inputs() -> BTreeSet<String> {
    let mut inputs: BTreeSet<String> = ["Cargo.toml", "Cargo.lock", "src"].map(String::from).into();
    if read(&root().join("Cargo.toml")).contains("[[bench]]") {
        inputs.insert("benches".into());
    }
    let mut stack = vec![root().join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = read(&path);
            for needle in ["include_str!(\"", "include_bytes!(\""] {
                for (i, _) in text.match_indices(needle) {
                    let rest = &text[i + needle.len()..];
                    let literal = &rest[..rest.find('"').expect("closing quote")];
                    let mut parts: Vec<String> = Vec::new();
                    let full = path.parent().expect("parent").join(literal);
                    for c in full
                        .strip_prefix(root())
                        .expect("under the crate")
                        .components()
                    {
                        match c {
                            Component::ParentDir => {
                                parts.pop();
                            }
                            Component::Normal(p) => parts.push(p.to_string_lossy().into()),
                            _ => {}
                        }
                    }
                    inputs.insert(parts[0].clone());
                }
            }
        }
    }
    inputs
}

#[test]
fn the_dockerfile_builds_locked_from_what_the_crate_needs_and_runs_unprivileged() {
    let steps = dockerfile();
    let last_from = steps
        .iter()
        .rposition(|(op, _)| op == "FROM")
        .expect("a FROM");
    let runtime = &steps[last_from..];
    let user = runtime
        .iter()
        .rev()
        .find(|(op, _)| op == "USER")
        .map(|(_, args)| args.as_str())
        .expect("the runtime stage sets USER");
    let uid = user.split(':').next().unwrap_or_default();
    assert!(
        !uid.is_empty() && uid != "root" && uid != "0",
        "USER {user} is root"
    );
    let exposed: BTreeSet<&str> = runtime
        .iter()
        .filter(|(op, _)| op == "EXPOSE")
        .flat_map(|(_, args)| args.split_whitespace())
        .collect();
    for port in ["8443", "9090"] {
        assert!(exposed.contains(port), "EXPOSE {port} missing: {exposed:?}");
    }
    assert!(
        runtime
            .iter()
            .any(|(op, args)| op == "ENTRYPOINT" && args.contains("/usr/local/bin/vouch")),
        "ENTRYPOINT is the vouch binary"
    );
    let builds: Vec<&String> = steps[..last_from]
        .iter()
        .filter(|(op, args)| op == "RUN" && args.contains("cargo build"))
        .map(|(_, args)| args)
        .collect();
    assert!(!builds.is_empty(), "no RUN cargo build in the build stage");
    for args in builds {
        assert!(
            args.contains("--locked"),
            "cargo build without --locked: {args}"
        );
        assert!(
            args.contains("--release"),
            "cargo build without --release: {args}"
        );
    }

    // The build stage copies every input of the build, and .dockerignore keeps them.
    let copied: BTreeSet<String> = steps[..last_from]
        .iter()
        .filter(|(op, args)| op == "COPY" && !args.starts_with("--from"))
        .flat_map(|(_, args)| {
            let words: Vec<&str> = args.split_whitespace().collect();
            words[..words.len() - 1]
                .iter()
                .map(|w| w.trim_end_matches('/').to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let ignored: Vec<String> = read(&root().join(".dockerignore"))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/').to_string())
        .collect();
    for input in build_inputs() {
        // The input itself, or the part of it the build reads (fuzz/fixtures of fuzz).
        let covered = copied.contains(&input)
            || copied.contains(".")
            || copied.iter().any(|c| c.starts_with(&format!("{input}/")));
        assert!(covered, "the build stage does not COPY {input}: {copied:?}");
        assert!(!ignored.contains(&input), ".dockerignore excludes {input}");
    }
    for excluded in ["target", ".git"] {
        assert!(
            ignored.iter().any(|l| l == excluded),
            ".dockerignore keeps {excluded}"
        );
    }
}

/// Whether a `matchLabels` selector selects an object with `labels`.
fn selects(match_labels: &Value, labels: &Value) -> bool {
    match_labels
        .as_object()
        .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// Container port `name` of the vouch Deployment.
fn vouch_port(r: &Rendered, name: &str) -> Value {
    r.container("Deployment", "vouch")["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no container port {name}"))["containerPort"]
        .clone()
}

#[test]
fn vouchs_network_policy_admits_gatekeeper_monitoring_and_the_test_pod_only() {
    let values = values();
    assert_eq!(values["networkPolicy"]["enabled"], true, "on by default");
    assert_eq!(values["gatekeeper"]["namespace"], "gatekeeper-system");
    let cases = vec![
        json!({}),
        json!({"gatekeeper": {"namespace": "gk"},
               "networkPolicy": {"monitoringNamespaces": ["prom", "obs"]}}),
        json!({"networkPolicy": {"monitoringNamespaces": []}, "test": {"enabled": false}}),
        json!({"networkPolicy": {"enabled": false}}),
    ];
    let schemas = gatekeeper_schemas();
    for (values, result) in cases.iter().zip(render_all(&cases)) {
        let r = result.unwrap_or_else(|e| panic!("{values}: {e}"));
        check_objects(&r, &schemas);
        // The chart's Redis keeps its own policy whatever this one does.
        assert!(r.find("NetworkPolicy", "vouch-redis").is_some(), "{values}");
        if values["networkPolicy"]["enabled"] == false {
            assert!(r.find("NetworkPolicy", "vouch").is_none(), "{values}");
            continue;
        }
        let np = r.object("NetworkPolicy", "vouch");
        let deployment = r.object("Deployment", "vouch");
        let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
        let selector = &np["spec"]["podSelector"]["matchLabels"];
        assert!(selects(selector, pod_labels), "{selector} vs {pod_labels}");
        assert_eq!(selector, &deployment["spec"]["selector"]["matchLabels"]);
        let redis_labels =
            &r.object("StatefulSet", "vouch-redis")["spec"]["template"]["metadata"]["labels"];
        assert!(!selects(selector, redis_labels), "selects Redis");
        assert_eq!(
            np["spec"]["policyTypes"],
            json!(["Ingress"]),
            "ingress only"
        );

        let (provider, ops) = (vouch_port(&r, "provider"), vouch_port(&r, "ops"));
        let tcp = |port: &Value| json!({"port": port, "protocol": "TCP"});
        let gatekeeper = values["gatekeeper"]["namespace"]
            .as_str()
            .unwrap_or("gatekeeper-system");
        let mut expected = vec![json!({
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": gatekeeper}}}],
            "ports": [tcp(&provider)],
        })];
        let monitoring = match &values["networkPolicy"]["monitoringNamespaces"] {
            Value::Null => json!(["monitoring"]),
            given => given.clone(),
        };
        if monitoring != json!([]) {
            expected.push(json!({
                "from": [{"namespaceSelector": {"matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": monitoring}]}}],
                "ports": [tcp(&ops)],
            }));
        }
        if values["test"]["enabled"] != false {
            let test_labels = &r.object("Pod", "vouch-test")["metadata"]["labels"];
            let rule = &np["spec"]["ingress"][expected.len()];
            let test_selector = &rule["from"][0]["podSelector"]["matchLabels"];
            assert!(
                selects(test_selector, test_labels),
                "{test_selector} vs {test_labels}"
            );
            assert!(
                !selects(selector, test_labels),
                "the test Pod carries vouch's labels: the Service would route to it"
            );
            expected.push(json!({
                "from": [{"podSelector": {"matchLabels": test_selector}}],
                "ports": [tcp(&provider), tcp(&ops)],
            }));
        }
        assert_eq!(np["spec"]["ingress"], json!(expected), "{values}");
    }
    let readme = read(&chart().join("README.md")).to_lowercase();
    assert!(
        readme.contains("kubelet probes") && readme.contains("resident node"),
        "the chart README says how kubelet probes pass the NetworkPolicy"
    );
}

/// `env` of a container, by name.
fn env(container: &Value) -> BTreeMap<String, String> {
    container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().expect("name").to_string(),
                e["value"].as_str().expect("a literal value").to_string(),
            )
        })
        .collect()
}

/// The Secret volume mounted at the directory of `file` in the test Pod: its `secret`.
fn secret_of(pod: &Value, file: &str) -> Value {
    let container = &pod["spec"]["containers"][0];
    let dir = Path::new(file).parent().expect("a directory");
    let mount = container["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["mountPath"] == dir.to_string_lossy().as_ref())
        .unwrap_or_else(|| panic!("nothing mounted at {}", dir.display()))
        .clone();
    assert_eq!(mount["readOnly"], true);
    pod["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mount's volume")["secret"]
        .clone()
}

#[test]
fn the_helm_test_pod_checks_readiness_and_an_allowed_verification_with_a_client_certificate() {
    let values = values();
    assert_eq!(values["test"]["enabled"], true);
    let pinned = values["test"]["image"]["digest"].as_str().expect("digest");
    assert!(
        pinned.len() == 71
            && pinned.strip_prefix("sha256:").is_some_and(|d| d
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))),
        "test.image.digest {pinned:?} is not a sha256 digest"
    );
    let cases = vec![
        json!({}),
        json!({"test": {"clientCertSecret": "vouch-test-client", "verifyImage": "ghcr.io/acme/app:1",
                        "timeoutSeconds": 5, "image": {"digest": "", "pullPolicy": "Always"}},
               "gatekeeper": {"caSecretName": "gatekeeper-ca"}}),
        // The first cluster-wide allow policy, an exact scope.
        json!({"policies": [
            {"name": "team", "scopes": ["docker.io/library/*"], "namespaces": ["team-a"], "action": "allow"},
            {"name": "acme", "scopes": ["ghcr.io/acme/*"], "verifiers": [{"cosign": {"publicKeys": ["/k.pub"]}}]},
            {"name": "mirror", "scopes": ["mirror.example/base", "mirror.example/x/*"], "action": "allow"}]}),
        // No allow policy: nothing to ask about, which the script reports.
        json!({"policies": [{"name": "acme", "scopes": ["ghcr.io/acme/*"],
                             "verifiers": [{"cosign": {"publicKeys": ["/k.pub"]}}]}]}),
        json!({"test": {"enabled": false}}),
        // vouch verify below runs the rendered config on this machine: no Redis to reach.
        json!({"redis": {"enabled": false}}),
    ];
    let schemas = gatekeeper_schemas();
    let rendered: Vec<Rendered> = cases
        .iter()
        .zip(render_all(&cases))
        .map(|(v, r)| r.unwrap_or_else(|e| panic!("{v}: {e}")))
        .collect();
    for r in &rendered {
        check_objects(r, &schemas);
    }
    let command = format!("helm test vouch -n {NAMESPACE} --logs");
    assert!(
        rendered[0].notes().contains(&command),
        "NOTES.txt says `{command}`"
    );
    assert!(!rendered[4].notes().contains(&command));
    assert!(
        rendered[4].find("Pod", "vouch-test").is_none(),
        "test.enabled false"
    );

    let r = &rendered[0];
    let pod = r.object("Pod", "vouch-test");
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["helm.sh/hook"], "test");
    assert!(
        annotations["helm.sh/hook-delete-policy"]
            .as_str()
            .is_some_and(|p| p.contains("before-hook-creation")),
        "a new run replaces the last: {annotations}"
    );
    let spec = &pod["spec"];
    assert_eq!(spec["restartPolicy"], "Never");
    assert_eq!(spec["automountServiceAccountToken"], false);
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert!(
        spec["securityContext"]["runAsUser"]
            .as_i64()
            .is_some_and(|u| u > 0),
        "a numeric non-root user (the curl image names its user)"
    );
    let containers = spec["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(
        c["image"],
        format!(
            "{}:{}@{pinned}",
            values["test"]["image"]["repository"]
                .as_str()
                .expect("repository"),
            values["test"]["image"]["tag"].as_str().expect("tag")
        ),
        "pinned by digest"
    );

    // Through Service vouch, at the Providers' own URL, trusting the Providers' CA.
    let e = env(c);
    let verify_url = r.object("Provider", "vouch-verify")["spec"]["url"]
        .as_str()
        .expect("url")
        .to_string();
    assert_eq!(format!("{}/v1/verify", e["PROVIDER_URL"]), verify_url);
    assert_eq!(e["OPS_URL"], format!("http://vouch.{NAMESPACE}:9090"));
    let server = secret_of(pod, &e["SERVER_CA"]);
    assert_eq!(server["secretName"], "vouch-tls");
    assert_eq!(
        server["items"],
        json!([{"key": "ca.crt", "path": "ca.crt"}]),
        "only the CA, never vouch's key"
    );
    assert!(e["SERVER_CA"].ends_with("/ca.crt"));
    // The client certificate: by default the Secret of vouch's client CA, Gatekeeper's own.
    let client = secret_of(pod, &e["CLIENT_CERT"]);
    assert_eq!(client, secret_of(pod, &e["CLIENT_KEY"]));
    assert_eq!(client["secretName"], "gatekeeper-webhook-server-cert");
    assert_eq!(e["CLIENT_SECRET"], "gatekeeper-webhook-server-cert");
    assert_eq!(
        client["items"],
        json!([{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}])
    );
    assert!(e["CLIENT_CERT"].ends_with("/tls.crt") && e["CLIENT_KEY"].ends_with("/tls.key"));
    assert_eq!(
        client["optional"], true,
        "a missing one is reported by the script"
    );

    // One key, an image the default policies admit with action: allow.
    let image = e["VERIFY_IMAGE"].clone();
    assert_eq!(image, "docker.io/library/vouch-helm-test:latest");
    let request: Value = serde_json::from_str(&e["REQUEST"]).expect("REQUEST is JSON");
    assert_eq!(
        request,
        json!({"apiVersion": "externaldata.gatekeeper.sh/v1beta1", "kind": "ProviderRequest",
               "request": {"keys": [image]}})
    );
    let without_redis = &rendered[5];
    assert_eq!(
        env(&without_redis.object("Pod", "vouch-test")["spec"]["containers"][0])["REQUEST"],
        e["REQUEST"]
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, _) = local_config(without_redis, dir.path());
    let out = Command::new(VOUCH)
        .args(["verify", "--json", "--config"])
        .arg(&config)
        .arg(&image)
        .output()
        .expect("run vouch verify");
    assert!(
        out.status.success(),
        "the rendered config does not verify {image}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The command checks both answers and fails on either.
    assert_eq!(c["command"][0], "/bin/sh");
    let script = c["command"]
        .as_array()
        .expect("command")
        .last()
        .and_then(Value::as_str)
        .expect("script");
    for needle in [
        "curl --silent --show-error --fail-with-body --max-time \"$TIMEOUT_SECONDS\" \"$OPS_URL/readyz\")",
        "--cacert \"$SERVER_CA\" --cert \"$CLIENT_CERT\" --key \"$CLIENT_KEY\"",
        "--data \"$REQUEST\" \"$PROVIDER_URL/v1/verify\")",
        "grep -q '\"value\":{\"verified\":true'",
        "test.clientCertSecret",
        "test.verifyImage",
    ] {
        assert!(
            script.contains(needle),
            "the script lacks {needle}:\n{script}"
        );
    }
    assert_eq!(
        e["TIMEOUT_SECONDS"],
        values["test"]["timeoutSeconds"].to_string()
    );

    // Values.
    let pod = rendered[1].object("Pod", "vouch-test");
    let c = &pod["spec"]["containers"][0];
    let e = env(c);
    assert_eq!(
        secret_of(pod, &e["CLIENT_CERT"])["secretName"],
        "vouch-test-client"
    );
    assert_eq!(e["VERIFY_IMAGE"], "ghcr.io/acme/app:1");
    assert_eq!(e["TIMEOUT_SECONDS"], "5");
    assert_eq!(c["imagePullPolicy"], "Always");
    assert!(
        !c["image"].as_str().expect("image").contains('@'),
        "no digest given"
    );
    let e2 = env(&rendered[2].object("Pod", "vouch-test")["spec"]["containers"][0]);
    assert_eq!(e2["VERIFY_IMAGE"], "mirror.example/base:latest");
    let e3 = env(&rendered[3].object("Pod", "vouch-test")["spec"]["containers"][0]);
    assert_eq!(e3["VERIFY_IMAGE"], "");
}
