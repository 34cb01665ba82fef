//! `vouch manifests`: the Kubernetes objects that register vouch with Gatekeeper, from one
//! source of truth (SPEC §3).
//!
//! - Providers `vouch-verify` and `vouch-mutate` (timeouts 3 s and 1 s, above vouch's own
//!   deadlines so vouch always answers first).
//! - ConstraintTemplates `VouchVerification` (denies images whose verdict is "not
//!   verified") and `VouchSystemError` (no verdict could be reached), sharing the
//!   image-gathering library, and their Constraints. The single failure-policy switch makes
//!   the system-error Constraint `warn` (open) or `deny` (closed).
//! - Tag-to-digest Assigns for every image location of Pods, workload templates and
//!   CronJobs, with `externalData.failurePolicy` `Ignore` (open) or `Fail` (closed).
//!
//! The Rego lives in `policies/` and is compiled in, so what tests evaluate is what ships.

use serde_json::{Value, json};

pub const LIB_REGO: &str = include_str!("../policies/lib_vouch.rego");
pub const VERIFICATION_REGO: &str = include_str!("../policies/vouchverification.rego");
pub const SYSTEM_ERROR_REGO: &str = include_str!("../policies/vouchsystemerror.rego");
pub const UNIQUE_SELECTOR_REGO: &str = include_str!("../policies/vouchuniqueserviceselector.rego");

/// What happens when vouch cannot reach a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailurePolicy {
    /// Admit with a warning (Gatekeeper's own default).
    Open,
    /// Deny.
    Closed,
}

/// Inputs of the generated objects.
#[derive(Debug, Clone)]
pub struct Options {
    pub failure_policy: FailurePolicy,
    /// Namespace of the vouch Service.
    pub namespace: String,
    /// Base64 of the PEM CA that signed vouch's serving certificate (Provider `caBundle`).
    pub ca_bundle: String,
    /// Provider port (the `listen` port of the config).
    pub port: u16,
}

/// Namespaces no Constraint or Assign touches: the control plane, Gatekeeper, vouch.
fn excluded(o: &Options) -> Value {
    json!(["kube-system", "gatekeeper-system", o.namespace])
}

fn provider(o: &Options, name: &str, path: &str, timeout: u64) -> Value {
    json!({
        "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
        "kind": "Provider",
        "metadata": {"name": name},
        "spec": {
            "url": format!("https://vouch.{}:{}{path}", o.namespace, o.port),
            "timeout": timeout,
            "caBundle": o.ca_bundle,
        },
    })
}

fn template(kind: &str, rego: &str) -> Value {
    template_with(kind, rego, &[LIB_REGO], None)
}

fn template_with(kind: &str, rego: &str, libs: &[&str], parameters: Option<Value>) -> Value {
    let mut crd = json!({"spec": {"names": {"kind": kind}}});
    if let Some(p) = parameters {
        crd["spec"]["validation"] = json!({"openAPIV3Schema": p});
    }
    json!({
        "apiVersion": "templates.gatekeeper.sh/v1",
        "kind": "ConstraintTemplate",
        "metadata": {"name": kind.to_ascii_lowercase()},
        "spec": {
            "crd": crd,
            "targets": [{
                "target": "admission.k8s.gatekeeper.sh",
                "rego": rego,
                "libs": libs,
            }],
        },
    })
}

/// The kinds whose images are checked.
fn workload_kinds() -> Value {
    json!([
        {"apiGroups": [""], "kinds": ["Pod", "ReplicationController"]},
        {"apiGroups": ["apps"], "kinds": ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"]},
        {"apiGroups": ["batch"], "kinds": ["Job", "CronJob"]},
    ])
}

fn constraint(o: &Options, kind: &str, name: &str, action: &str) -> Value {
    json!({
        "apiVersion": "constraints.gatekeeper.sh/v1beta1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": {
            "enforcementAction": action,
            "match": {"kinds": workload_kinds(), "excludedNamespaces": excluded(o)},
        },
    })
}

fn assign(o: &Options, name: &str, apply_to: Value, kinds: Value, location: &str) -> Value {
    let failure = match o.failure_policy {
        FailurePolicy::Open => "Ignore",
        FailurePolicy::Closed => "Fail",
    };
    json!({
        "apiVersion": "mutations.gatekeeper.sh/v1",
        "kind": "Assign",
        "metadata": {"name": name},
        "spec": {
            "applyTo": apply_to,
            "match": {"scope": "Namespaced", "kinds": kinds, "excludedNamespaces": excluded(o)},
            "location": location,
            "parameters": {"assign": {"externalData": {
                "provider": "vouch-mutate",
                "dataSource": "ValueAtLocation",
                "failurePolicy": failure,
            }}},
        },
    })
}

/// Every object, in apply order (Providers and templates before what uses them).
pub fn objects(o: &Options) -> Vec<Value> {
    let system_action = match o.failure_policy {
        FailurePolicy::Open => "warn",
        FailurePolicy::Closed => "deny",
    };
    let mut out = vec![
        provider(o, "vouch-verify", "/v1/verify", 3),
        provider(o, "vouch-mutate", "/v1/mutate", 1),
        template("VouchVerification", VERIFICATION_REGO),
        template("VouchSystemError", SYSTEM_ERROR_REGO),
        constraint(o, "VouchVerification", "vouch-verification", "deny"),
        constraint(o, "VouchSystemError", "vouch-system-error", system_action),
        provider(o, "vouch-claims", "/v1/claims", 3),
        template_with(
            "VouchUniqueServiceSelector",
            UNIQUE_SELECTOR_REGO,
            &[],
            Some(
                json!({"type": "object", "properties": {"allowOnSystemError": {"type": "boolean"}}}),
            ),
        ),
        json!({
            "apiVersion": "constraints.gatekeeper.sh/v1beta1",
            "kind": "VouchUniqueServiceSelector",
            "metadata": {"name": "vouch-unique-service-selector"},
            "spec": {
                "enforcementAction": "deny",
                "match": {"kinds": [{"apiGroups": [""], "kinds": ["Service"]}], "excludedNamespaces": excluded(o)},
                "parameters": {"allowOnSystemError": false},
            },
        }),
        // Services must be replicated into data.inventory for the classic check; a SyncSet
        // adds to the sync configuration instead of replacing the cluster's Config.
        json!({
            "apiVersion": "syncset.gatekeeper.sh/v1alpha1",
            "kind": "SyncSet",
            "metadata": {"name": "vouch-services"},
            "spec": {"gvks": [{"group": "", "version": "v1", "kind": "Service"}]},
        }),
    ];
    let pods = (
        json!([{"groups": [""], "kinds": ["Pod"], "versions": ["v1"]}]),
        json!([{"apiGroups": [""], "kinds": ["Pod"]}]),
        "spec",
        "pod",
    );
    let workloads = (
        json!([
            {"groups": ["apps"], "kinds": ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"], "versions": ["v1"]},
            {"groups": ["batch"], "kinds": ["Job"], "versions": ["v1"]},
            {"groups": [""], "kinds": ["ReplicationController"], "versions": ["v1"]},
        ]),
        json!([
            {"apiGroups": ["apps"], "kinds": ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"]},
            {"apiGroups": ["batch"], "kinds": ["Job"]},
            {"apiGroups": [""], "kinds": ["ReplicationController"]},
        ]),
        "spec.template.spec",
        "workload",
    );
    let cronjobs = (
        json!([{"groups": ["batch"], "kinds": ["CronJob"], "versions": ["v1"]}]),
        json!([{"apiGroups": ["batch"], "kinds": ["CronJob"]}]),
        "spec.jobTemplate.spec.template.spec",
        "cronjob",
    );
    for (apply_to, kinds, prefix, what) in [pods, workloads, cronjobs] {
        for (field, short) in [
            ("containers", "containers"),
            ("initContainers", "init-containers"),
            ("ephemeralContainers", "ephemeral-containers"),
        ] {
            out.push(assign(
                o,
                &format!("vouch-pin-{what}-{short}"),
                apply_to.clone(),
                kinds.clone(),
                &format!("{prefix}.{field}[name:*].image"),
            ));
        }
    }
    out
}

/// The objects as one multi-document YAML stream, ready for `kubectl apply -f -`.
pub fn render(o: &Options) -> String {
    objects(o)
        .iter()
        .map(|obj| {
            let yaml = serde_yaml_ng::to_string(obj).unwrap_or_default();
            format!("---\n{yaml}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(p: FailurePolicy) -> Options {
        Options {
            failure_policy: p,
            namespace: "vouch-system".into(),
            ca_bundle: "Q0E=".into(),
            port: 8443,
        }
    }

    #[test]
    fn open_and_closed_differ_only_in_the_failure_switches() {
        let open = objects(&opts(FailurePolicy::Open));
        let closed = objects(&opts(FailurePolicy::Closed));
        assert_eq!(open.len(), closed.len());
        let mut differing = Vec::new();
        for (a, b) in open.iter().zip(&closed) {
            if a != b {
                differing.push(
                    a["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                );
                let mut a = a.clone();
                if a["kind"] == "Assign" {
                    a["spec"]["parameters"]["assign"]["externalData"]["failurePolicy"] =
                        json!("Fail");
                } else {
                    a["spec"]["enforcementAction"] = json!("deny");
                }
                assert_eq!(&a, b, "only the failure switch differs");
            }
        }
        assert_eq!(
            differing.len(),
            10,
            "the system-error constraint and nine Assigns: {differing:?}"
        );
        assert!(differing.contains(&"vouch-system-error".to_string()));
    }

    #[test]
    fn render_is_a_yaml_stream_of_every_object() {
        let text = render(&opts(FailurePolicy::Open));
        let docs: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).expect("yaml doc"))
            .collect();
        assert_eq!(docs, objects(&opts(FailurePolicy::Open)));
        assert_eq!(
            docs[0]["spec"]["url"],
            "https://vouch.vouch-system:8443/v1/verify"
        );
    }
}
