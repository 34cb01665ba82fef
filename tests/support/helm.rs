//! The chart as Helm renders it: `tests/helm/render.py` lints and renders `charts/vouch`
//! with Helm's own Go library (PyPI `helm-python-sdk`) and checks every Kubernetes object
//! it renders against the Kubernetes API schemas (PyPI `kubernetes-validate`, strict). This
//! module runs that script as a child process, bounded in time, and hands the tests the
//! rendered files and objects. `.ci/run` installs both packages.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeMap;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

/// The release the tests render: `helm template vouch charts/vouch -n vouch-system`.
pub const NAMESPACE: &str = "vouch-system";

/// The Kubernetes versions every object is validated against: the oldest the chart supports
/// (Chart README) and the newest the pinned kubernetes-validate knows.
pub const KUBE_VERSIONS: [&str; 2] = ["1.30", "1.37"];

/// How long one run of the script may take: Helm renders a case in milliseconds and the
/// validation of one case takes well under a second.
const RUN_LIMIT: Duration = Duration::from_secs(120);

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn chart() -> PathBuf {
    root().join("charts/vouch")
}

/// One rendered object: the document, the template it came from, and what each Kubernetes
/// version's strict schema said about it (`ok`, `no-schema`, `invalid: …`).
#[derive(Debug, Clone)]
pub struct Object {
    pub file: String,
    pub value: Value,
    pub kubernetes: BTreeMap<String, String>,
}

/// One `helm template`: the rendered files (NOTES.txt included) and their objects.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub values: Value,
    pub files: BTreeMap<String, String>,
    pub objects: Vec<Object>,
}

impl Rendered {
    pub fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects
            .iter()
            .map(|o| &o.value)
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    }

    pub fn object(&self, kind: &str, name: &str) -> &Value {
        self.find(kind, name).unwrap_or_else(|| {
            panic!(
                "no {kind} {name} rendered with values {}; rendered: {:?}",
                self.values,
                self.names()
            )
        })
    }

    /// `Kind/name` of every object, in order.
    pub fn names(&self) -> Vec<String> {
        self.objects
            .iter()
            .map(|o| format!("{}/{}", o.value["kind"], o.value["metadata"]["name"]))
            .map(|s| s.replace('"', ""))
            .collect()
    }

    /// The objects of `templates/gatekeeper.yaml` that are Gatekeeper's (not Secret
    /// vouch-tls), in order.
    pub fn gatekeeper(&self) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|o| o.file.ends_with("/gatekeeper.yaml") && o.value["kind"] != "Secret")
            .map(|o| o.value.clone())
            .collect()
    }

    /// vouch's config: `config.yaml` of ConfigMap `vouch`, parsed.
    pub fn config(&self) -> Value {
        let text = self.config_text();
        serde_yaml_ng::from_str(&text)
            .unwrap_or_else(|e| panic!("config.yaml is not YAML: {e}\n{text}"))
    }

    pub fn config_text(&self) -> String {
        self.object("ConfigMap", "vouch")["data"]["config.yaml"]
            .as_str()
            .expect("config.yaml in ConfigMap vouch")
            .to_string()
    }

    pub fn notes(&self) -> &str {
        self.files
            .get("vouch/templates/NOTES.txt")
            .map(String::as_str)
            .expect("NOTES.txt rendered")
    }

    /// The single container of the pod template of workload `kind`/`name`.
    pub fn container(&self, kind: &str, name: &str) -> &Value {
        let containers = self.object(kind, name)["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("containers");
        assert_eq!(containers.len(), 1, "{kind} {name}: one container");
        &containers[0]
    }

    /// Base64-decoded `data[key]` of Secret `name`.
    pub fn secret(&self, name: &str, key: &str) -> String {
        use base64::Engine as _;
        let b64 = self.object("Secret", name)["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("Secret {name} has no {key}"));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap_or_else(|e| panic!("Secret {name} {key}: {e}"));
        String::from_utf8(bytes).expect("utf-8 secret")
    }
}

/// The documents of a YAML stream, empty ones left out; a parse error names `what`.
pub fn documents(text: &str, what: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| {
            Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{what} is not YAML: {e}\n----\n{text}----"))
        })
        .filter(|d| !d.is_null())
        .collect()
}

/// Runs `tests/helm/render.py` with `request` (chart, release and Kubernetes versions
/// filled in) and returns its answer. Panics, with its stderr, when it fails or takes
/// longer than [`RUN_LIMIT`] (it is killed then).
pub fn run(mut request: Value) -> Value {
    request["chart"] = json!(chart());
    request["name"] = json!("vouch");
    request["namespace"] = json!(NAMESPACE);
    request["kubeVersions"] = json!(KUBE_VERSIONS);
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let script = root().join("tests/helm/render.py");
    let mut command = Command::new(&python);
    command.arg(&script).env("PYTHONDONTWRITEBYTECODE", "1");
    let out = super::run_within(
        command,
        Some(request.to_string().into_bytes()),
        RUN_LIMIT,
        "render.py",
    );
    let (status, stdout) = (out.status, out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        status.success(),
        "render.py failed ({status}); is `pip install helm-python-sdk kubernetes-validate` done?\n{stderr}"
    );
    serde_json::from_slice(&stdout).unwrap_or_else(|e| {
        panic!(
            "render.py answered no JSON: {e}\n{}\n{stderr}",
            String::from_utf8_lossy(&stdout)
        )
    })
}

/// `helm template` with each of `cases` (values objects), in one run of the script: the
/// rendered chart, or Helm's reason for refusing.
pub fn render_all(cases: &[Value]) -> Vec<Result<Rendered, String>> {
    let answer = run(json!({"render": cases}));
    let results = answer["render"].as_array().expect("render answers");
    assert_eq!(results.len(), cases.len(), "one answer per case");
    results
        .iter()
        .zip(cases)
        .map(|(r, values)| {
            if let Some(error) = r["error"].as_str() {
                return Err(error.to_string());
            }
            let files: BTreeMap<String, String> =
                serde_json::from_value(r["files"].clone()).expect("files");
            // Parse the texts here too (YAML 1.2, as vouch and Kubernetes read them) and pair
            // each document with the script's report on it.
            let mut parsed = Vec::new();
            for (path, text) in &files {
                if path.ends_with(".yaml") {
                    for doc in documents(text, path) {
                        parsed.push((path.clone(), doc));
                    }
                }
            }
            let reports = r["objects"].as_array().expect("objects");
            assert_eq!(
                parsed.len(),
                reports.len(),
                "Helm's documents and ours differ in number with {values}"
            );
            let objects = parsed
                .into_iter()
                .zip(reports)
                .map(|((file, value), report)| {
                    assert_eq!(report["file"], file.as_str());
                    assert_eq!(report["kind"], value["kind"], "{file}");
                    assert_eq!(report["name"], value["metadata"]["name"], "{file}");
                    Object {
                        file,
                        value,
                        kubernetes: serde_json::from_value(report["kubernetes"].clone())
                            .expect("kubernetes outcomes"),
                    }
                })
                .collect();
            Ok(Rendered {
                values: values.clone(),
                files,
                objects,
            })
        })
        .collect()
}

/// `helm template` with `values`; panics when Helm refuses.
pub fn render(values: Value) -> Rendered {
    render_all(std::slice::from_ref(&values))
        .remove(0)
        .unwrap_or_else(|e| panic!("the chart does not render with {values}: {e}"))
}

/// Helm's reason for refusing `values`; panics when it renders.
pub fn refusal(values: Value) -> String {
    match render_all(std::slice::from_ref(&values)).remove(0) {
        Ok(_) => panic!("the chart renders with {values}, which it must refuse"),
        Err(e) => e,
    }
}

/// `helm lint --strict` with each of `cases`: `{"errors": [...], "messages": [...]}`.
pub fn lint(cases: &[Value]) -> Vec<Value> {
    let answer = run(json!({"lint": cases}));
    let reports = answer["lint"].as_array().expect("lint answers").clone();
    assert_eq!(reports.len(), cases.len(), "one lint report per case");
    reports
}

/// Values that render the uniqueness policy; the rest default.
pub fn with_uniqueness() -> Value {
    json!({"uniqueServiceSelector": {"enabled": true}})
}

/// The chart's Redis run on this machine: Debian's `redis-server` with the `redis.conf` of
/// ConfigMap `vouch-redis` and the `auth.conf` of Secret `vouch-redis`, as rendered — only
/// the paths of `auth.conf` and of the data directory change, and the harness's own listener and data
/// directory (given on the command line) take the place of the pod's. Every other line
/// (AOF, fsync, eviction, the password) is the chart's.
pub struct ChartRedis {
    pub server: super::redis::RedisServer,
    /// The password of the rendered Secret `vouch-redis` (key `password`).
    pub password: String,
    _auth: tempfile::TempDir,
}

impl ChartRedis {
    /// Starts Redis with the rendered config and waits until it answers an authenticated
    /// `PING`.
    pub fn start(rendered: &Rendered) -> ChartRedis {
        let conf = rendered.object("ConfigMap", "vouch-redis")["data"]["redis.conf"]
            .as_str()
            .expect("redis.conf in ConfigMap vouch-redis")
            .to_string();
        let password = rendered.secret("vouch-redis", "password");
        let auth_dir = tempfile::tempdir().expect("auth tempdir");
        let auth = auth_dir.path().join("auth.conf");
        std::fs::write(&auth, rendered.secret("vouch-redis", "auth.conf")).expect("auth.conf");
        let include = "include /etc/redis/auth/auth.conf";
        assert!(conf.lines().any(|l| l.trim() == include), "{conf}");
        // `dir` is entered as the file is read, before the command line's own `dir` takes
        // its place: it must exist here.
        let conf = conf
            .replace(include, &format!("include {}", auth.display()))
            .replace("dir /data", &format!("dir {}", auth_dir.path().display()));
        let server = super::redis::RedisServer::start_with(super::redis::RedisOptions {
            conf: Some(conf),
            password: Some(password.clone()),
            ..Default::default()
        });
        ChartRedis {
            server,
            password,
            _auth: auth_dir,
        }
    }

    /// `redis://127.0.0.1:PORT/0`, the chart's database on this Redis.
    pub fn url(&self) -> String {
        format!("{}0", self.server.url)
    }

    /// A setting as Redis reports it (`CONFIG GET`).
    pub async fn config_get(&self, name: &str) -> String {
        let raw = self.server.command(&["CONFIG", "GET", name]).await;
        match super::redis::reply(&raw) {
            super::redis::Resp::Array(Some(items)) => match items.get(1) {
                Some(super::redis::Resp::Bulk(Some(v))) => String::from_utf8_lossy(v).into_owned(),
                other => panic!("CONFIG GET {name}: {other:?}"),
            },
            other => panic!("CONFIG GET {name}: {other:?}"),
        }
    }

    /// SIGKILL, as a crashed or evicted pod: nothing is flushed on the way out.
    pub fn kill(&mut self) {
        self.server.stop();
    }

    /// Starts Redis again on the same port and directory (the pod back on its volume).
    pub fn restart(&mut self) {
        self.server.restart();
    }

    /// What Redis logged.
    pub fn log(&self) -> String {
        self.server.log()
    }
}
