//! Which keys each workload of a Kubernetes List would send to vouch at admission.
//!
//! An audit that found images its own way could disagree with admission about what is
//! checked: an ephemeral container, a CronJob's job template, an object without a
//! namespace. So the keys come from the shipped templates' own Rego: `lib_vouch.rego` (the
//! library both ConstraintTemplates import, compiled into the binary) is evaluated in-process
//! by regorus, as Gatekeeper evaluates it, with each object as `input.review.object`, and
//! `data.lib.vouch.key_images` gives exactly the `[namespace]image` keys the templates
//! send. Which objects are reviewed at all is the Constraints' `match`
//! ([`crate::manifests::constraint_matches`]: the workload kinds, minus the excluded
//! namespaces), from the same source `vouch manifests` prints.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::manifests::{LIB_REGO, constraint_matches};

/// The rule whose value maps each key the templates send to the image it stands for.
const KEY_IMAGES_RULE: &str = "data.lib.vouch.key_images";

/// One reviewed object and the keys its admission review would send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Workload {
    /// `metadata.namespace`; empty for an object without one (cluster-wide keys).
    pub namespace: String,
    /// `Kind/name`, as an operator finds it with `kubectl get`.
    pub name: String,
    /// Key → image, sorted by key.
    pub keys: BTreeMap<String, String>,
}

/// Objects of the List the Constraints would not review.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Skipped {
    /// Of a kind no vouch Constraint matches (Services, ConfigMaps, …).
    pub kind_not_matched: usize,
    /// In a namespace the Constraints exclude (`kube-system`, `gatekeeper-system`, vouch's).
    pub excluded_namespace: usize,
}

/// Why the input cannot be audited.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InputError {
    #[error("the input is not JSON: {0} (give `kubectl get … -o json` output)")]
    NotJson(serde_json::Error),
    #[error(
        "the input is neither a Kubernetes List (an object with \"items\") nor a single object with a \"kind\""
    )]
    NotAList,
    #[error("items[{index}] is not an object")]
    NotAnObject { index: usize },
    #[error("items[{index}] ({name}): the templates' Rego cannot be evaluated: {why}")]
    Rego {
        index: usize,
        name: String,
        why: String,
    },
}

/// The objects of a `kubectl get … -o json` answer: a List's `items`, or the one object
/// `kubectl get KIND NAME -o json` prints.
pub(crate) fn objects(input: &[u8]) -> Result<Vec<Value>, InputError> {
    let value: Value = serde_json::from_slice(input).map_err(InputError::NotJson)?;
    match value {
        Value::Object(mut map) => match map.remove("items") {
            Some(Value::Array(items)) => Ok(items),
            Some(_) => Err(InputError::NotAList),
            None if map.get("kind").is_some_and(Value::is_string) => Ok(vec![Value::Object(map)]),
            None => Err(InputError::NotAList),
        },
        _ => Err(InputError::NotAList),
    }
}

/// The templates' library, compiled once; each object is evaluated against it in turn.
pub(crate) struct Extractor {
    engine: regorus::Engine,
}

impl Extractor {
    /// Compiles `lib_vouch.rego` as Gatekeeper does (Rego v0).
    pub(crate) fn new() -> Result<Extractor, String> {
        let mut engine = regorus::Engine::new();
        engine.set_rego_v0(true);
        engine
            .add_policy("lib_vouch.rego".to_string(), LIB_REGO.to_string())
            .map_err(|e| format!("lib_vouch.rego does not compile: {e:#}"))?;
        Ok(Extractor { engine })
    }

    /// The workloads of `objects` the Constraints would review (those outside the
    /// Constraints' match are counted in [`Skipped`]); `vouch_namespace` is vouch's own
    /// namespace, excluded like `vouch manifests --namespace`.
    pub(crate) fn workloads(
        &mut self,
        objects: &[Value],
        vouch_namespace: &str,
    ) -> Result<(Vec<Workload>, Skipped), InputError> {
        let mut workloads = Vec::new();
        let mut skipped = Skipped::default();
        for (index, object) in objects.iter().enumerate() {
            let Value::Object(map) = object else {
                return Err(InputError::NotAnObject { index });
            };
            let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
            let kind = text(map.get("kind"));
            let api_version = text(map.get("apiVersion"));
            let metadata = map.get("metadata");
            let namespace = text(metadata.and_then(|m| m.get("namespace")));
            let name = format!("{kind}/{}", text(metadata.and_then(|m| m.get("name"))));
            match constraint_matches(&api_version, &kind, &namespace, vouch_namespace) {
                Err(crate::manifests::NotMatched::Kind) => {
                    skipped.kind_not_matched += 1;
                    continue;
                }
                Err(crate::manifests::NotMatched::Namespace) => {
                    skipped.excluded_namespace += 1;
                    continue;
                }
                Ok(()) => {}
            }
            let keys = self
                .keys(object, &namespace)
                .map_err(|why| InputError::Rego {
                    index,
                    name: name.clone(),
                    why,
                })?;
            workloads.push(Workload {
                namespace,
                name,
                keys,
            });
        }
        Ok((workloads, skipped))
    }

    /// `data.lib.vouch.key_images` for `object` under review: what the templates send.
    fn keys(
        &mut self,
        object: &Value,
        namespace: &str,
    ) -> Result<BTreeMap<String, String>, String> {
        // The admission request's own namespace, as Gatekeeper hands it to the templates.
        let review = serde_json::json!({"review": {
            "kind": {"kind": object.get("kind")},
            "namespace": namespace,
            "object": object,
        }});
        self.engine.set_input(regorus::Value::from(review));
        let value = self
            .engine
            .eval_rule(KEY_IMAGES_RULE.to_string())
            .map_err(|e| format!("{e:#}"))?;
        if value == regorus::Value::Undefined {
            return Ok(BTreeMap::new());
        }
        let map = value
            .as_object()
            .map_err(|_| format!("{KEY_IMAGES_RULE} is not an object"))?;
        let mut keys = BTreeMap::new();
        for (k, v) in map.iter() {
            let (Ok(key), Ok(image)) = (k.as_string(), v.as_string()) else {
                return Err(format!(
                    "{KEY_IMAGES_RULE} holds a key or image that is not a string"
                ));
            };
            keys.insert(key.to_string(), image.to_string());
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn extract(list: Value) -> (Vec<Workload>, Skipped) {
        let objects = objects(list.to_string().as_bytes()).expect("a list");
        Extractor::new()
            .expect("compiles")
            .workloads(&objects, "vouch-system")
            .expect("evaluates")
    }

    fn keys(w: &Workload) -> Vec<(&str, &str)> {
        w.keys
            .iter()
            .map(|(k, i)| (k.as_str(), i.as_str()))
            .collect()
    }

    #[test]
    fn every_container_field_and_template_shape_is_found_with_its_namespace() {
        let (w, skipped) = extract(json!({"kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "a"},
             "spec": {"containers": [{"image": "c:1"}], "initContainers": [{"image": "i:1"}],
                      "ephemeralContainers": [{"image": "e:1"}]}},
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "b"},
             "spec": {"template": {"spec": {"containers": [{"image": "c:1"}, {"image": "c:1"}]}}}},
            {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cj", "namespace": "b"},
             "spec": {"jobTemplate": {"spec": {"template": {"spec": {"initContainers": [{"image": "j:1"}]}}}}}},
        ]}));
        assert_eq!(skipped, Skipped::default());
        assert_eq!(w.len(), 3);
        assert_eq!(w[0].name, "Pod/p");
        assert_eq!(
            keys(&w[0]),
            vec![("[a]c:1", "c:1"), ("[a]e:1", "e:1"), ("[a]i:1", "i:1")]
        );
        assert_eq!(keys(&w[1]), vec![("[b]c:1", "c:1")]);
        assert_eq!(keys(&w[2]), vec![("[b]j:1", "j:1")]);
    }

    #[test]
    fn objects_outside_the_constraints_match_are_counted_not_reviewed() {
        let (w, skipped) = extract(json!({"kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "a"}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "kube-system"},
             "spec": {"containers": [{"image": "c:1"}]}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "v", "namespace": "vouch-system"},
             "spec": {"containers": [{"image": "c:1"}]}},
            {"apiVersion": "example.com/v1", "kind": "Deployment", "metadata": {"name": "x", "namespace": "a"},
             "spec": {"template": {"spec": {"containers": [{"image": "c:1"}]}}}},
        ]}));
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            skipped,
            Skipped {
                kind_not_matched: 2,
                excluded_namespace: 2
            }
        );
    }

    #[test]
    fn a_single_object_is_a_list_of_one_and_other_input_is_refused() {
        let (w, _) = extract(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "a"}, "spec": {"containers": [{"image": "c:1"}]}}));
        assert_eq!(keys(&w[0]), vec![("[a]c:1", "c:1")]);
        for bad in ["[]", "{\"items\": 3}", "{}", "nope"] {
            assert!(objects(bad.as_bytes()).is_err(), "{bad}");
        }
        let mut x = Extractor::new().expect("compiles");
        assert!(matches!(
            x.workloads(&[json!(3)], "vouch-system"),
            Err(InputError::NotAnObject { index: 0 })
        ));
    }
}
