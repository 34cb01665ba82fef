//! `vouch manifests`: the Kubernetes objects that register vouch with Gatekeeper, from one
//! source of truth (SPEC §3).
//!
//! - Providers `vouch-verify` and `vouch-mutate`. Their timeouts come from Gatekeeper's
//!   webhook timeouts ([`provider_timeouts`]): equal to them when open; when closed, short
//!   enough that every call one admission makes to a hung vouch times out, and Gatekeeper
//!   denies, before the API server gives up on the webhook and applies the webhook's own
//!   failure policy.
//! - ConstraintTemplates `VouchVerification` (denies images whose verdict is "not
//!   verified") and `VouchSystemError` (no verdict could be reached), sharing the
//!   image-gathering library, and their Constraints. The single failure-policy switch makes
//!   the system-error Constraint `warn` (open) or `deny` (closed).
//! - Tag-to-digest Assigns for every image location of Pods, workload templates and
//!   CronJobs, with `externalData.failurePolicy` `Ignore` (open) or `Fail` (closed).
//! - Opt-in (`--unique-service-selector`): the `vouch-claims` Provider, the
//!   `VouchUniqueServiceSelector` library template and Constraint, and the SyncSet that
//!   replicates Services; its system errors follow the same failure policy.
//!
//! The Rego lives in `policies/` and is compiled in, so what tests evaluate is what ships.

use std::time::Duration;

use serde_json::{Value, json};

/// Helpers shared by the templates (`lib.vouch`), compiled into both.
pub const LIB_REGO: &str = include_str!("../policies/lib_vouch.rego");
/// The `VouchVerification` template's Rego: denies failed verdicts, per-key errors and refused requests.
pub const VERIFICATION_REGO: &str = include_str!("../policies/vouchverification.rego");
/// The `VouchSystemError` template's Rego: warns (open) or denies (closed) on system errors.
pub const SYSTEM_ERROR_REGO: &str = include_str!("../policies/vouchsystemerror.rego");
/// The opt-in `VouchUniqueServiceSelector` template's Rego: inventory check plus an atomic claim.
pub const UNIQUE_SELECTOR_REGO: &str = include_str!("../policies/vouchuniqueserviceselector.rego");

/// What happens when vouch cannot reach a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// Admit with a warning (Gatekeeper's own default).
    Open,
    /// Deny.
    Closed,
}

/// Inputs of the generated objects.
#[derive(Debug, Clone)]
pub struct Options {
    /// Open (system errors warn) or closed (they deny).
    pub failure_policy: FailurePolicy,
    /// Namespace of the vouch Service.
    pub namespace: String,
    /// Base64 of the PEM CA that signed vouch's serving certificate (Provider `caBundle`).
    pub ca_bundle: String,
    /// Provider port (the `listen` port of the config).
    pub port: u16,
    /// Also the claims Provider, the unique-selector template and Constraint, and the
    /// SyncSet replicating Services.
    pub unique_service_selector: bool,
    /// Gatekeeper's validating and mutating webhook timeouts.
    pub webhooks: WebhookTimeouts,
}

/// Gatekeeper's webhook timeouts (its Helm values `validatingWebhookTimeoutSeconds` and
/// `mutatingWebhookTimeoutSeconds`; Kubernetes counts them in whole seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookTimeouts {
    /// `validatingWebhookTimeoutSeconds`.
    pub validating: Duration,
    /// `mutatingWebhookTimeoutSeconds`.
    pub mutating: Duration,
}

impl Default for WebhookTimeouts {
    /// Gatekeeper's defaults: 3 s and 1 s.
    fn default() -> Self {
        WebhookTimeouts {
            validating: Duration::from_secs(3),
            mutating: Duration::from_secs(1),
        }
    }
}

/// The Providers' `spec.timeout`s, in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderTimeouts {
    /// The `vouch-verify` (and `vouch-claims`) Provider timeout, in seconds.
    pub verify: u64,
    /// The `vouch-mutate` Provider timeout, in seconds.
    pub mutate: u64,
    /// `vouch-claims` (the opt-in uniqueness policy; one call per Service review).
    pub claims: u64,
    /// How far below a Provider's timeout vouch's deadline must be: time for the answer
    /// to travel and be read (open: 100 ms), and for Gatekeeper to evaluate and deny inside
    /// the webhook's time (closed: 500 ms).
    pub margin: Duration,
}

/// How many times one review of a Pod calls `vouch-verify` when vouch does not answer:
/// Gatekeeper evaluates each template kind in turn, and the two vouch templates each ask;
/// its response cache keeps values and per-key errors, never a failed call, so the second
/// template asks again.
pub const VERIFY_CALLS_PER_REVIEW: u64 = 2;

impl ProviderTimeouts {
    /// The longest `deadline` and `mutateDeadline` that leave vouch's answer time to reach
    /// Gatekeeper before the Provider times out: [`ProviderTimeouts::margin`] below each.
    pub fn deadlines(self) -> (Duration, Duration) {
        let below = |s: u64| Duration::from_secs(s).saturating_sub(self.margin);
        (below(self.verify), below(self.mutate))
    }
}

/// Why the objects cannot be generated for these inputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("{which} webhook timeout {got:?} is not a whole number of seconds from 1 to 30")]
    /// A webhook timeout Kubernetes would not accept.
    WebhookTimeout {
        /// `validating` or `mutating`.
        which: &'static str,
        /// The timeout given.
        got: Duration,
    },
    #[error(
        "closed mode needs Gatekeeper's {which} webhook timeout to be at least {need}s (it is \
         {got}s): {why}, or the API server gives up first and applies the webhook's own \
         failure policy; raise Gatekeeper's Helm value {value} and pass {flag}"
    )]
    /// A closed-mode webhook timeout too short for the Provider timeouts closed mode needs.
    ClosedTooShort {
        /// `validating` or `mutating`.
        which: &'static str,
        /// The webhook timeout given, in seconds.
        got: u64,
        /// The least that works, in seconds.
        need: u64,
        /// Why that much is needed.
        why: &'static str,
        /// Gatekeeper's Helm value to raise.
        value: &'static str,
        /// The `vouch manifests` flag that tells vouch.
        flag: &'static str,
    },
    #[error(
        "{field} ({got:?}) must be at most {max:?}, below the {provider} Provider's timeout \
         of {timeout}s, so vouch answers before Gatekeeper gives up"
    )]
    /// A vouch deadline that would outlast the Provider timeout it answers under.
    DeadlineTooLong {
        /// The config field (`deadline`, `mutateDeadline`).
        field: &'static str,
        /// Its value.
        got: Duration,
        /// The Provider it answers for.
        provider: &'static str,
        /// That Provider's timeout, in seconds.
        timeout: u64,
        /// The longest deadline that leaves Gatekeeper its margin.
        max: Duration,
    },
}

/// The Providers' timeouts for `webhooks` under `policy`. Open: equal to the webhook
/// timeouts (Gatekeeper keeps waiting as long as the API server does). Closed: every call a
/// review can make to a hung vouch must time out — so that Gatekeeper reports the system
/// error the closed Constraints deny — with a second left for evaluation inside the
/// webhook's time: `vouch-verify` is asked [`VERIFY_CALLS_PER_REVIEW`] times per Pod
/// review, `vouch-mutate` and `vouch-claims` once. Refuses what cannot work.
pub fn provider_timeouts(
    policy: FailurePolicy,
    webhooks: WebhookTimeouts,
) -> Result<ProviderTimeouts, ManifestError> {
    let whole = |which, d: Duration| {
        let s = d.as_secs();
        if d.subsec_nanos() != 0 || !(1..=30).contains(&s) {
            return Err(ManifestError::WebhookTimeout { which, got: d });
        }
        Ok(s)
    };
    let validating = whole("validating", webhooks.validating)?;
    let mutating = whole("mutating", webhooks.mutating)?;
    match policy {
        FailurePolicy::Open => Ok(ProviderTimeouts {
            verify: validating,
            mutate: mutating,
            claims: validating,
            margin: Duration::from_millis(100),
        }),
        FailurePolicy::Closed => {
            let verify = (validating - 1) / VERIFY_CALLS_PER_REVIEW;
            if verify < 1 {
                return Err(ManifestError::ClosedTooShort {
                    which: "validating",
                    got: validating,
                    need: VERIFY_CALLS_PER_REVIEW + 1,
                    why: "both vouch templates call the vouch-verify Provider (whole seconds) in \
                          turn, and both calls must time out a second before the webhook",
                    value: "validatingWebhookTimeoutSeconds",
                    flag: "--webhook-timeout",
                });
            }
            if mutating < 2 {
                return Err(ManifestError::ClosedTooShort {
                    which: "mutating",
                    got: mutating,
                    need: 2,
                    why: "the vouch-mutate Provider (whole seconds) must time out a second before \
                          the webhook",
                    value: "mutatingWebhookTimeoutSeconds",
                    flag: "--mutation-webhook-timeout",
                });
            }
            Ok(ProviderTimeouts {
                verify,
                mutate: mutating - 1,
                claims: validating - 1,
                margin: Duration::from_millis(500),
            })
        }
    }
}

/// Checks vouch's `deadline` and `mutateDeadline` against the Providers' timeouts; the
/// first that does not fit.
pub fn check_deadlines(
    timeouts: ProviderTimeouts,
    deadline: Duration,
    mutate_deadline: Duration,
) -> Result<(), ManifestError> {
    match deadline_problems(timeouts, deadline, mutate_deadline)
        .into_iter()
        .next()
    {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Every one of vouch's deadlines that does not fit inside its Provider's timeout (what
/// `vouch config check` warns about).
pub fn deadline_problems(
    timeouts: ProviderTimeouts,
    deadline: Duration,
    mutate_deadline: Duration,
) -> Vec<ManifestError> {
    let (max_verify, max_mutate) = timeouts.deadlines();
    let mut problems = Vec::new();
    if deadline > max_verify {
        problems.push(ManifestError::DeadlineTooLong {
            field: "deadline",
            got: deadline,
            provider: "vouch-verify",
            timeout: timeouts.verify,
            max: max_verify,
        });
    }
    if mutate_deadline > max_mutate {
        problems.push(ManifestError::DeadlineTooLong {
            field: "mutateDeadline",
            got: mutate_deadline,
            provider: "vouch-mutate",
            timeout: timeouts.mutate,
            max: max_mutate,
        });
    }
    problems
}

/// Namespaces no Constraint or Assign touches: the control plane, Gatekeeper, vouch.
fn excluded(o: &Options) -> Value {
    json!(excluded_namespaces(&o.namespace))
}

fn excluded_namespaces(vouch_namespace: &str) -> [&str; 3] {
    ["kube-system", "gatekeeper-system", vouch_namespace]
}

/// Why the Constraints do not review an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotMatched {
    /// Not one of the workload kinds.
    Kind,
    /// In an excluded namespace.
    Namespace,
}

/// Whether the verification Constraints (`match` of [`objects`], vouch in
/// `vouch_namespace`) review an object of `api_version` and `kind` in `namespace`: what
/// `vouch audit` audits, from the same source as the Constraints it prints.
pub(crate) fn constraint_matches(
    api_version: &str,
    kind: &str,
    namespace: &str,
    vouch_namespace: &str,
) -> Result<(), NotMatched> {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let kinds = workload_kinds();
    let matched = kinds.as_array().into_iter().flatten().any(|m| {
        let has = |field: &str, want: &str| {
            m[field]
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v == want))
        };
        has("apiGroups", group) && has("kinds", kind)
    });
    if !matched {
        return Err(NotMatched::Kind);
    }
    if excluded_namespaces(vouch_namespace).contains(&namespace) {
        return Err(NotMatched::Namespace);
    }
    Ok(())
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
pub fn objects(o: &Options) -> Result<Vec<Value>, ManifestError> {
    let timeouts = provider_timeouts(o.failure_policy, o.webhooks)?;
    let system_action = match o.failure_policy {
        FailurePolicy::Open => "warn",
        FailurePolicy::Closed => "deny",
    };
    let mut out = vec![
        provider(o, "vouch-verify", "/v1/verify", timeouts.verify),
        provider(o, "vouch-mutate", "/v1/mutate", timeouts.mutate),
        template("VouchVerification", VERIFICATION_REGO),
        template("VouchSystemError", SYSTEM_ERROR_REGO),
        constraint(o, "VouchVerification", "vouch-verification", "deny"),
        constraint(o, "VouchSystemError", "vouch-system-error", system_action),
    ];
    if o.unique_service_selector {
        out.extend(unique_service_selector(o, timeouts));
    }
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
    Ok(out)
}

/// The opt-in uniqueness policy: the claims Provider, the library template and its
/// Constraint, and the SyncSet replicating Services into `data.inventory`. Its system
/// errors (claim store unreachable, vouch unreachable) follow the failure policy like every
/// other vouch template: admitted when open, denied when closed.
fn unique_service_selector(o: &Options, timeouts: ProviderTimeouts) -> Vec<Value> {
    let allow_on_system_error = o.failure_policy == FailurePolicy::Open;
    vec![
        provider(o, "vouch-claims", "/v1/claims", timeouts.claims),
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
                "parameters": {"allowOnSystemError": allow_on_system_error},
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
    ]
}

/// The objects as one multi-document YAML stream, ready for `kubectl apply -f -`.
pub fn render(o: &Options) -> Result<String, ManifestError> {
    Ok(objects(o)?
        .iter()
        .map(|obj| {
            let yaml = serde_yaml_ng::to_string(obj).unwrap_or_default();
            format!("---\n{yaml}")
        })
        .collect())
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
            unique_service_selector: true,
            webhooks: WebhookTimeouts {
                validating: Duration::from_secs(3),
                mutating: Duration::from_secs(2),
            },
        }
    }

    #[test]
    fn open_and_closed_differ_only_in_the_failure_switches() {
        let open = objects(&opts(FailurePolicy::Open)).expect("open");
        let closed = objects(&opts(FailurePolicy::Closed)).expect("closed");
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
                } else if a["kind"] == "Provider" {
                    a["spec"]["timeout"] = b["spec"]["timeout"].clone();
                } else if a["kind"] == "VouchUniqueServiceSelector" {
                    a["spec"]["parameters"]["allowOnSystemError"] = json!(false);
                } else {
                    a["spec"]["enforcementAction"] = json!("deny");
                }
                assert_eq!(&a, b, "only the failure switch differs");
            }
        }
        assert_eq!(
            differing.len(),
            14,
            "three Providers, the two system-error switches and nine Assigns: {differing:?}"
        );
        assert!(differing.contains(&"vouch-system-error".to_string()));
    }

    #[test]
    fn the_uniqueness_policy_is_opt_in() {
        let mut o = opts(FailurePolicy::Open);
        o.unique_service_selector = false;
        let names: Vec<String> = objects(&o)
            .expect("objects")
            .iter()
            .map(|obj| {
                obj["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        assert!(
            !names
                .iter()
                .any(|n| n.contains("claims") || n.contains("unique"))
        );
        assert!(!names.contains(&"vouch-services".to_string()));
        assert_eq!(names.len(), 6 + 9);
    }

    #[test]
    fn closed_providers_time_out_inside_the_webhooks() {
        let t = |v, m| WebhookTimeouts {
            validating: Duration::from_secs(v),
            mutating: Duration::from_secs(m),
        };
        assert_eq!(
            provider_timeouts(FailurePolicy::Open, WebhookTimeouts::default()),
            Ok(ProviderTimeouts {
                verify: 3,
                mutate: 1,
                claims: 3,
                margin: Duration::from_millis(100)
            })
        );
        // Two vouch-verify calls per Pod review, each timing out, and a second to spare.
        assert_eq!(
            provider_timeouts(FailurePolicy::Closed, t(3, 2)),
            Ok(ProviderTimeouts {
                verify: 1,
                mutate: 1,
                claims: 2,
                margin: Duration::from_millis(500)
            })
        );
        assert_eq!(
            provider_timeouts(FailurePolicy::Closed, t(5, 2)),
            Ok(ProviderTimeouts {
                verify: 2,
                mutate: 1,
                claims: 4,
                margin: Duration::from_millis(500)
            })
        );
        assert_eq!(
            provider_timeouts(FailurePolicy::Closed, t(10, 5)),
            Ok(ProviderTimeouts {
                verify: 4,
                mutate: 4,
                claims: 9,
                margin: Duration::from_millis(500)
            })
        );
        // Gatekeeper's default mutating webhook (1 s) leaves no whole second below it.
        let e = provider_timeouts(FailurePolicy::Closed, WebhookTimeouts::default())
            .expect_err("impossible");
        assert!(
            e.to_string().contains("mutatingWebhookTimeoutSeconds"),
            "{e}"
        );
        let e = provider_timeouts(FailurePolicy::Closed, t(2, 2)).expect_err("impossible");
        assert!(
            e.to_string().contains("validatingWebhookTimeoutSeconds"),
            "{e}"
        );
        assert!(provider_timeouts(FailurePolicy::Open, t(0, 1)).is_err());
        let half = WebhookTimeouts {
            validating: Duration::from_millis(2500),
            mutating: Duration::from_secs(1),
        };
        assert!(provider_timeouts(FailurePolicy::Open, half).is_err());
        // Open: the default deadlines (2.5 s, 900 ms) fit Gatekeeper's default webhooks.
        let open =
            provider_timeouts(FailurePolicy::Open, WebhookTimeouts::default()).expect("open");
        assert!(
            check_deadlines(
                open,
                Duration::from_millis(2500),
                Duration::from_millis(900)
            )
            .is_ok()
        );
        // Closed: half a second below the Provider.
        let closed = ProviderTimeouts {
            verify: 2,
            mutate: 1,
            claims: 2,
            margin: Duration::from_millis(500),
        };
        assert!(
            check_deadlines(
                closed,
                Duration::from_millis(1500),
                Duration::from_millis(500)
            )
            .is_ok()
        );
        let e = check_deadlines(
            closed,
            Duration::from_millis(2500),
            Duration::from_millis(500),
        )
        .expect_err("too long");
        assert!(e.to_string().starts_with("deadline (2.5s)"), "{e}");
        assert!(
            check_deadlines(
                closed,
                Duration::from_millis(1500),
                Duration::from_millis(900)
            )
            .is_err()
        );
    }

    #[test]
    fn render_is_a_yaml_stream_of_every_object() {
        let text = render(&opts(FailurePolicy::Open)).expect("render");
        let docs: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).expect("yaml doc"))
            .collect();
        assert_eq!(docs, objects(&opts(FailurePolicy::Open)).expect("objects"));
        assert_eq!(
            docs[0]["spec"]["url"],
            "https://vouch.vouch-system:8443/v1/verify"
        );
    }
}
