//! The Helm chart (`charts/vouch`) and the `Dockerfile`, checked without helm or docker.
//!
//! - The chart's Gatekeeper objects (`files/gatekeeper-{open,closed}.yaml`) are byte for
//!   byte what `vouch manifests` prints with the chart's placeholders, and their Provider
//!   URLs point at the chart's Service.
//! - Every template is YAML once its template actions are stubbed (see [`stub`]), every
//!   object has `apiVersion`, `kind` and `metadata.name`, and every value a template reads
//!   exists in `values.yaml` and is documented in the chart's README.
//! - The Deployment runs vouch locked down and probed on the ops port, the Service is
//!   `vouch` with ports 8443 and 9090, and the config the ConfigMap renders from the default
//!   values passes `vouch config check`, with its TLS files where the Deployment mounts them.
//! - The Dockerfile builds with `--locked` from a context holding every file the crate
//!   compiles in, and runs as a non-root user exposing 8443 and 9090.
//!
//! What this cannot prove is Helm's own rendering (functions, whitespace control,
//! `lookup`): the stubbing keeps both branches of every `if` and drops what actions output.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::{Value, json};

const VOUCH: &str = env!("CARGO_BIN_EXE_vouch");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    root().join("charts/vouch")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The documents of a YAML stream; a parse error names the file and shows the text.
fn documents(text: &str, what: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| {
            Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{what} is not YAML: {e}\n----\n{text}----"))
        })
        .collect()
}

/// Makes a Helm template plain YAML, by hand (no template engine here):
///
/// 1. every action `{{ … }}` — also `{{- … -}}`, comments, actions spanning lines — is cut
///    out and remembered as a marker;
/// 2. a line holding markers and otherwise only whitespace is dropped: such a line is
///    control flow (`if`, `else`, `end`, `range`, `with`, `define`, assignments) or emits a
///    whole block (`toYaml … | nindent N`, `include … | nindent N`), neither of which has
///    YAML of its own;
/// 3. any other marker becomes the scalar `stub` (`replicas: stub`, `name: vouch.stub`).
///
/// Both branches of every `if`/`else` stay, so the templates never emit one key in both.
fn stub(template: &str) -> String {
    const MARK: char = '\u{1}';
    let mut marked = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        marked.push_str(&rest[..start]);
        let len = rest[start..]
            .find("}}")
            .unwrap_or_else(|| panic!("unclosed {{{{ in:\n{}", &rest[start..]));
        marked.push(MARK);
        rest = &rest[start + len + 2..];
    }
    marked.push_str(rest);
    let mut out = String::with_capacity(marked.len());
    for line in marked.lines() {
        let bare = line.replace(MARK, "");
        if line.contains(MARK) && bare.trim().is_empty() {
            continue;
        }
        out.push_str(&line.replace(MARK, "stub"));
        out.push('\n');
    }
    out
}

/// `charts/vouch/templates/*.yaml`, sorted.
fn template_files() -> Vec<PathBuf> {
    let dir = chart().join("templates");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Every object of every template, stubbed; each checked for apiVersion, kind and name.
fn objects() -> Vec<Value> {
    let mut out = Vec::new();
    for file in template_files() {
        let name = file.display().to_string();
        let docs: Vec<Value> = documents(&stub(&read(&file)), &name)
            .into_iter()
            .filter(|d| !d.is_null())
            .collect();
        assert!(!docs.is_empty(), "{name}: no object once stubbed");
        for doc in docs {
            for field in ["apiVersion", "kind"] {
                assert!(
                    doc[field].as_str().is_some_and(|s| !s.is_empty()),
                    "{name}: an object without {field}: {doc}"
                );
            }
            assert!(
                doc["metadata"]["name"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{name}: a {} without metadata.name",
                doc["kind"]
            );
            out.push(doc);
        }
    }
    out
}

fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the chart's templates"))
}

fn values() -> Value {
    let path = chart().join("values.yaml");
    let docs = documents(&read(&path), "values.yaml");
    assert_eq!(docs.len(), 1, "values.yaml is one document");
    docs.into_iter().next().expect("one document")
}

fn manifests(policy: &str) -> Vec<u8> {
    let out = Command::new(VOUCH)
        .args(["manifests", "--failure-policy", policy])
        .args(["--namespace", "__NAMESPACE__"])
        .args(["--ca-bundle-value", "__CA_BUNDLE__"])
        .output()
        .expect("run vouch manifests");
    assert!(
        out.status.success(),
        "vouch manifests failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn gatekeeper_files_are_what_vouch_manifests_prints() {
    for policy in ["open", "closed"] {
        let rel = format!("charts/vouch/files/gatekeeper-{policy}.yaml");
        let expected = manifests(policy);
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
                 \n    cargo build && target/debug/vouch manifests --failure-policy {policy} \
                 --namespace __NAMESPACE__ --ca-bundle-value __CA_BUNDLE__ > {rel}\n",
                line + 1
            );
        }
    }
}

#[test]
fn the_providers_of_the_files_call_the_charts_service() {
    let objects = objects();
    let service = object(&objects, "Service", "vouch");
    let provider_port = service["spec"]["ports"]
        .as_array()
        .expect("service ports")
        .iter()
        .find(|p| p["name"] == "provider")
        .expect("a port named provider")["port"]
        .clone();
    assert_eq!(provider_port, 8443);
    for policy in ["open", "closed"] {
        let text = read(&chart().join(format!("files/gatekeeper-{policy}.yaml")));
        let docs = documents(&text, "the gatekeeper file");
        let providers: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Provider").collect();
        assert_eq!(
            providers.len(),
            3,
            "vouch-verify, vouch-mutate and vouch-claims"
        );
        for p in providers {
            let url = p["spec"]["url"].as_str().expect("provider url");
            assert!(
                url.starts_with("https://vouch.__NAMESPACE__:8443/"),
                "{url}: the Service vouch in the release namespace, provider port"
            );
            assert_eq!(p["spec"]["caBundle"], "__CA_BUNDLE__");
        }
        // gatekeeper.yaml splits the file on "\n---\n": every document starts with such a
        // line, and no other line is "---".
        assert!(text.starts_with("---\n"));
        assert_eq!(text.matches("\n---\n").count() + 1, docs.len());
    }
}

#[test]
fn every_template_is_yaml_with_named_objects_once_stubbed() {
    let objects = objects();
    let mut seen = BTreeSet::new();
    for o in &objects {
        let key = (o["kind"].to_string(), o["metadata"]["name"].to_string());
        assert!(seen.insert(key.clone()), "{key:?} is defined twice");
    }
    for kind in [
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
        "Issuer",
        "Certificate",
        "PodDisruptionBudget",
        "ServiceMonitor",
    ] {
        assert!(
            objects.iter().any(|o| o["kind"] == kind),
            "no {kind} in the templates"
        );
    }
    for file in ["Chart.yaml", "values.yaml"] {
        let docs = documents(&stub(&read(&chart().join(file))), file);
        assert!(docs.iter().any(|d| d.is_object()), "{file}: no mapping");
    }
    let chart_yaml = documents(&read(&chart().join("Chart.yaml")), "Chart.yaml");
    assert_eq!(chart_yaml[0]["apiVersion"], "v2");
    assert_eq!(chart_yaml[0]["name"], "vouch");
    for file in ["templates/NOTES.txt", "templates/_helpers.tpl", "README.md"] {
        assert!(
            chart().join(file).is_file(),
            "charts/vouch/{file} is missing"
        );
    }
}

#[test]
fn the_stub_cuts_actions_and_control_lines() {
    let template = "a: {{ .Values.a }}\n{{- if .x }}\nb:\n  {{- toYaml .y | nindent 2 }}\n\
                    {{- end }}\nc: \"{{ .c }}-{{ .d }}\"\n{{/* a\ncomment */}}\n";
    assert_eq!(stub(template), "a: stub\nb:\nc: \"stub-stub\"\n");
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
    assert_eq!(
        values["gatekeeper"]["caSecretName"],
        "gatekeeper-webhook-server-cert"
    );
    assert_eq!(values["certManager"]["enabled"], false);
    assert_eq!(values["serviceMonitor"]["enabled"], false);
    for policy in ["open", "closed"] {
        assert!(
            chart()
                .join(format!("files/gatekeeper-{policy}.yaml"))
                .is_file()
        );
    }
}

fn container(objects: &[Value]) -> &Value {
    let deployment = object(objects, "Deployment", "vouch");
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1, "one container");
    &containers[0]
}

#[test]
fn the_deployment_runs_vouch_locked_down_and_probed_on_the_ops_port() {
    let objects = objects();
    let pod = &object(&objects, "Deployment", "vouch")["spec"]["template"]["spec"];
    let c = container(&objects);
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
        c["args"].as_array().expect("args")[..3],
        [
            json!("serve"),
            json!("--config"),
            json!("/etc/vouch/config.yaml")
        ]
    );
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
    assert_eq!(
        gk["secret"]["secretName"], "stub",
        "from gatekeeper.caSecretName"
    );
    assert_eq!(
        gk["secret"]["items"],
        json!([{"key": "ca.crt", "path": "ca.crt"}])
    );
    let tmp = volume(mount("/tmp")["name"].as_str().expect("name"));
    assert!(tmp["emptyDir"].is_object(), "/tmp is an emptyDir");
}

#[test]
fn the_service_is_vouch_on_8443_and_9090_and_the_certificates_name_it() {
    let objects = objects();
    let service = object(&objects, "Service", "vouch");
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
    let secret = object(&objects, "Secret", "vouch-tls");
    for key in ["ca.crt", "tls.crt", "tls.key"] {
        assert!(
            secret["data"].get(key).is_some(),
            "generated Secret has {key}"
        );
    }
    let cert = object(&objects, "Certificate", "vouch-serving");
    assert_eq!(cert["spec"]["secretName"], "vouch-tls");
    let dns: Vec<&str> = cert["spec"]["dnsNames"]
        .as_array()
        .expect("dnsNames")
        .iter()
        .map(|d| d.as_str().expect("a name"))
        .collect();
    assert_eq!(dns, ["vouch", "vouch.stub", "vouch.stub.svc"]);
    let monitor = object(&objects, "ServiceMonitor", "vouch");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "ops");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
}

#[test]
fn the_rendered_config_passes_vouch_config_check() {
    let objects = objects();
    let values = values();
    let text = object(&objects, "ConfigMap", "vouch")["data"]["config.yaml"]
        .as_str()
        .expect("config.yaml in the ConfigMap")
        .to_string();
    let mut config = documents(&text, "the ConfigMap's config.yaml").remove(0);
    assert_eq!(
        config["listen"], "0.0.0.0:8443",
        "the Service's provider port"
    );
    assert_eq!(
        config["opsListen"], "0.0.0.0:9090",
        "the probes' and Service's ops port"
    );

    // Fill the stubs as Helm would from the default values.
    assert_eq!(config["cache"], json!({"redisUrl": "stub"}));
    config["cache"]["redisUrl"] = values["redisUrl"].clone();
    for key in ["registries", "policies"] {
        assert_eq!(config[key], "stub", "{key} comes from the values");
        config[key] = values[key].clone();
    }
    for (key, value) in values["extraConfig"].as_object().expect("extraConfig") {
        assert!(
            config.get(key).is_none(),
            "extraConfig.{key} is set by the chart"
        );
        config[key] = value.clone();
    }

    // The TLS files are where the Deployment mounts them; point them at test files.
    let mounts: Vec<String> = container(&objects)["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .map(|m| m["mountPath"].as_str().expect("mountPath").to_string())
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    for (field, mount) in [
        ("certFile", "/etc/vouch/tls"),
        ("keyFile", "/etc/vouch/tls"),
        ("clientCAFile", "/etc/vouch/gatekeeper"),
    ] {
        let path = config["tls"][field]
            .as_str()
            .expect("a tls path")
            .to_string();
        let file = path
            .strip_prefix(&format!("{mount}/"))
            .unwrap_or_else(|| panic!("tls.{field} {path} is not under {mount}"));
        assert!(mounts.iter().any(|m| m == mount), "{mount} is not mounted");
        let local = dir.path().join(file);
        std::fs::write(&local, "").expect("write a stand-in file");
        config["tls"][field] = json!(local);
    }
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, serde_json::to_string_pretty(&config).expect("json")).expect("write");
    let out = Command::new(VOUCH)
        .args(["config", "check"])
        .arg(&file)
        .output()
        .expect("run vouch config check");
    assert!(
        out.status.success(),
        "vouch config check rejects the chart's default config:\n{}{}\n{config:#}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn dockerfile() -> Vec<(String, String)> {
    let text = read(&root().join("Dockerfile"));
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                let (op, args) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((op.to_ascii_uppercase(), args.trim().to_string()));
                current.clear();
            }
        }
    }
    out
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
