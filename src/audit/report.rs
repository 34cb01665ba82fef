//! What admission would do with each workload, in open and in closed mode, and how it is
//! printed: a table per namespace for people, one JSON document for machines
//! (docs/INSTALL.md, "What if: audit before enforcing", documents its shape).
//!
//! The mapping from vouch's answer to an action is the shipped templates' (see
//! `policies/vouchverification.rego` and `vouchsystemerror.rego`): a verdict with
//! `verified: false` and a per-key error are VouchVerification violations, denied in both
//! modes; only an outage (a transient failure, reported in `systemError` as
//! `unavailable: …`) is VouchSystemError's, warned under fail-open and denied under
//! fail-closed; a request vouch refuses as a whole (`request-invalid: …`: too many images in
//! one object) is denied in both modes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use super::extract::{Skipped, Workload};
use crate::engine::Outcome;
use crate::manifests::FailurePolicy;
use crate::verdict::Report;

/// What admission does with an object, most severe first (so the minimum over an
/// object's images is the object's action).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Action {
    Denied,
    Warned,
    Admitted,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Denied => "denied",
            Action::Warned => "warned",
            Action::Admitted => "admitted",
        }
    }
}

/// vouch's answer for one key, as the templates act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    pub open: Action,
    pub closed: Action,
    /// The verdict code, the per-key error's code, `unavailable`, or `request-invalid`;
    /// empty when verified.
    pub code: String,
    /// Why, in one sentence; empty when verified.
    pub reason: String,
    /// The report's remedy, when it carries one.
    pub hint: String,
    /// The policy that decided, when a verdict names one.
    pub policy: String,
    /// The digest the verdict is about, when resolved.
    pub digest: String,
}

impl Finding {
    fn both(action: Action, code: &str, reason: String) -> Finding {
        Finding {
            open: action,
            closed: action,
            code: code.to_string(),
            reason,
            hint: String::new(),
            policy: String::new(),
            digest: String::new(),
        }
    }

    /// What the templates do with `outcome`.
    pub(crate) fn of(outcome: &Outcome) -> Finding {
        match outcome {
            Outcome::Value(v) => match v.parse::<Report>() {
                Ok(r) => {
                    let action = if r.verified {
                        Action::Admitted
                    } else {
                        Action::Denied
                    };
                    let code = serde_json::to_value(r.code)
                        .ok()
                        .and_then(|c| c.as_str().map(str::to_string))
                        .unwrap_or_default();
                    Finding {
                        code,
                        hint: r.hint,
                        policy: r.policy,
                        digest: r.digest,
                        ..Finding::both(action, "", r.reason)
                    }
                }
                // The templates read `value.verified`; a value without it is no
                // verification, and denied.
                Err(e) => Finding::both(
                    Action::Denied,
                    "invalid-verdict",
                    format!("unreadable verdict: {e}"),
                ),
            },
            Outcome::Error(e) => Finding::both(Action::Denied, e.code.as_str(), e.message.clone()),
            Outcome::Transient(why) => Finding {
                open: Action::Warned,
                closed: Action::Denied,
                ..Finding::both(Action::Denied, "unavailable", why.clone())
            },
        }
    }

    /// An object whose request vouch refuses as a whole.
    pub(crate) fn request_invalid(why: String) -> Finding {
        Finding::both(Action::Denied, "request-invalid", why)
    }
}

/// Workloads by what admission would do with them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Tally {
    pub denied: usize,
    pub warned: usize,
    pub admitted: usize,
}

impl Tally {
    fn add(&mut self, action: Action) {
        match action {
            Action::Denied => self.denied += 1,
            Action::Warned => self.warned += 1,
            Action::Admitted => self.admitted += 1,
        }
    }

    fn line(&self) -> String {
        format!(
            "{} denied, {} warned, {} admitted",
            self.denied, self.warned, self.admitted
        )
    }
}

/// One image of a namespace (or one object refused as a whole), and who uses it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    /// The image as written in the pod spec; empty for a refused object.
    pub image: String,
    /// The key the templates send (`[namespace]image`); empty for a refused object.
    pub key: String,
    pub open: Action,
    pub closed: Action,
    pub code: String,
    pub reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hint: String,
    pub policy: String,
    pub digest: String,
    /// `Kind/name` of every workload using it, sorted.
    pub workloads: Vec<String>,
}

/// One namespace: its workloads by action in each mode, its images.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NamespaceReport {
    /// Empty for objects without a namespace (cluster-wide keys).
    pub namespace: String,
    pub open: Tally,
    pub closed: Tally,
    /// Most severe first (closed mode, then open), then by image.
    pub images: Vec<Row>,
}

/// The counts over the whole List.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Summary {
    pub workloads: usize,
    pub namespaces: usize,
    /// Distinct images, whatever their namespace.
    pub images: usize,
    /// Distinct keys (image per namespace): what was verified.
    pub keys: usize,
    pub skipped: Skipped,
    pub open: Tally,
    pub closed: Tally,
}

/// The whole audit.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuditReport {
    /// The mode the exit status follows.
    pub failure_policy: FailurePolicy,
    pub summary: Summary,
    pub namespaces: Vec<NamespaceReport>,
}

/// An object refused as a whole, with why.
pub(crate) type Refusals = BTreeMap<usize, Finding>;

impl AuditReport {
    /// Puts together the workloads, the finding of every key they send, and the objects
    /// refused as a whole (by index into `workloads`).
    pub(crate) fn build(
        failure_policy: FailurePolicy,
        workloads: &[Workload],
        findings: &BTreeMap<String, Finding>,
        refused: &Refusals,
        skipped: Skipped,
    ) -> AuditReport {
        struct Ns {
            open: Tally,
            closed: Tally,
            rows: BTreeMap<String, Row>,
        }
        let mut namespaces: BTreeMap<&str, Ns> = BTreeMap::new();
        let mut summary = Summary {
            workloads: workloads.len(),
            namespaces: 0,
            images: 0,
            keys: findings.len(),
            skipped,
            open: Tally::default(),
            closed: Tally::default(),
        };
        let mut images = BTreeSet::new();
        // A key without an outcome (its task did not finish) is no verification.
        let no_outcome = Finding::of(&Outcome::Transient("no outcome".into()));
        for (index, w) in workloads.iter().enumerate() {
            let ns = namespaces.entry(&w.namespace).or_insert_with(|| Ns {
                open: Tally::default(),
                closed: Tally::default(),
                rows: BTreeMap::new(),
            });
            // (row id, image, key, finding) of what decides this workload. A refused
            // object's row is its own: its id starts with NUL, which no key can.
            let parts: Vec<(String, &str, &str, &Finding)> = match refused.get(&index) {
                Some(f) => vec![(format!("\u{0}{}", w.name), "", "", f)],
                None => w
                    .keys
                    .iter()
                    .map(|(key, image)| {
                        let f = findings.get(key).unwrap_or(&no_outcome);
                        (key.clone(), image.as_str(), key.as_str(), f)
                    })
                    .collect(),
            };
            let mut open = Action::Admitted;
            let mut closed = Action::Admitted;
            for (id, image, key, f) in parts {
                if !image.is_empty() {
                    images.insert(image.to_string());
                }
                open = open.min(f.open);
                closed = closed.min(f.closed);
                ns.rows
                    .entry(id)
                    .or_insert_with(|| Row {
                        image: image.to_string(),
                        key: key.to_string(),
                        open: f.open,
                        closed: f.closed,
                        code: f.code.clone(),
                        reason: f.reason.clone(),
                        hint: f.hint.clone(),
                        policy: f.policy.clone(),
                        digest: f.digest.clone(),
                        workloads: Vec::new(),
                    })
                    .workloads
                    .push(w.name.clone());
            }
            ns.open.add(open);
            ns.closed.add(closed);
            summary.open.add(open);
            summary.closed.add(closed);
        }
        summary.images = images.len();
        summary.namespaces = namespaces.len();
        let namespaces = namespaces
            .into_iter()
            .map(|(name, ns)| {
                let mut images: Vec<Row> = ns.rows.into_values().collect();
                for r in &mut images {
                    r.workloads.sort();
                    r.workloads.dedup();
                }
                images.sort_by(|a, b| {
                    (a.closed, a.open, &a.image, &a.workloads).cmp(&(
                        b.closed,
                        b.open,
                        &b.image,
                        &b.workloads,
                    ))
                });
                NamespaceReport {
                    namespace: name.to_string(),
                    open: ns.open,
                    closed: ns.closed,
                    images,
                }
            })
            .collect();
        AuditReport {
            failure_policy,
            summary,
            namespaces,
        }
    }

    /// Whether any workload would be denied under `failurePolicy`: exit status 1.
    pub(crate) fn anything_denied(&self) -> bool {
        let tally = match self.failure_policy {
            FailurePolicy::Open => self.summary.open,
            FailurePolicy::Closed => self.summary.closed,
        };
        tally.denied > 0
    }

    /// The table for people: a summary, then one table per namespace, most severe rows
    /// first; `workloads_shown` names at most that many workloads per row.
    pub(crate) fn text(&self, workloads_shown: usize) -> String {
        let s = &self.summary;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} workloads in {} namespaces, {} distinct images ({} keys); skipped {} objects of other kinds, {} in excluded namespaces",
            s.workloads,
            s.namespaces,
            s.images,
            s.keys,
            s.skipped.kind_not_matched,
            s.skipped.excluded_namespace
        );
        let _ = writeln!(out, "open:   {}", s.open.line());
        let _ = writeln!(out, "closed: {}", s.closed.line());
        for ns in &self.namespaces {
            let name = if ns.namespace.is_empty() {
                "(no namespace: cluster-wide policies only)"
            } else {
                &ns.namespace
            };
            let _ = writeln!(
                out,
                "\nnamespace {name}: open: {}; closed: {}",
                ns.open.line(),
                ns.closed.line()
            );
            let cells: Vec<[String; 5]> = ns
                .images
                .iter()
                .map(|r| {
                    let image = if r.image.is_empty() {
                        "(the whole object)".to_string()
                    } else {
                        r.image.clone()
                    };
                    let result = if r.code.is_empty() {
                        format!("verified by policy {}", r.policy)
                    } else {
                        format!("{}: {}", r.code, r.reason)
                    };
                    [
                        r.open.as_str().to_string(),
                        r.closed.as_str().to_string(),
                        image,
                        workload_list(&r.workloads, workloads_shown),
                        result,
                    ]
                })
                .collect();
            let header = ["OPEN", "CLOSED", "IMAGE", "WORKLOADS", "RESULT"].map(String::from);
            let mut widths = [0usize; 4];
            for row in std::iter::once(&header).chain(&cells) {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            for (i, row) in std::iter::once(&header).chain(&cells).enumerate() {
                let mut line = String::from(" ");
                for (w, cell) in widths.iter().zip(row) {
                    let _ = write!(line, " {cell:<w$} ");
                }
                line.push(' ');
                line.push_str(&row[4]);
                let _ = writeln!(out, "{}", line.trim_end());
                if let Some(r) = i.checked_sub(1).map(|i| &ns.images[i])
                    && !r.hint.is_empty()
                {
                    let _ = writeln!(out, "    hint: {}", r.hint);
                }
            }
        }
        out
    }
}

/// `a, b, c +2 more`.
fn workload_list(workloads: &[String], shown: usize) -> String {
    let mut text = workloads
        .iter()
        .take(shown)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if workloads.len() > shown {
        let _ = write!(text, " +{} more", workloads.len() - shown);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{ErrorCode, KeyError};
    use crate::verdict::{Denial, VerdictCode};

    fn workload(ns: &str, name: &str, images: &[&str]) -> Workload {
        Workload {
            namespace: ns.into(),
            name: name.into(),
            keys: images
                .iter()
                .map(|i| (format!("[{ns}]{i}"), i.to_string()))
                .collect(),
        }
    }

    #[test]
    fn the_templates_mapping_of_answers_to_actions() {
        let failed = Outcome::Value(
            Report::failed(
                "r",
                "acme",
                Denial::new(VerdictCode::Unsigned, "no signature"),
            )
            .to_json(),
        );
        let f = Finding::of(&failed);
        assert_eq!(
            (f.open, f.closed, f.code.as_str()),
            (Action::Denied, Action::Denied, "unsigned")
        );
        let f = Finding::of(&Outcome::Error(KeyError::new(ErrorCode::Auth, "rejected")));
        assert_eq!(
            (f.open, f.closed, f.code.as_str(), f.reason.as_str()),
            (Action::Denied, Action::Denied, "auth", "rejected")
        );
        let f = Finding::of(&Outcome::Transient("registry down".into()));
        assert_eq!(
            (f.open, f.closed, f.code.as_str()),
            (Action::Warned, Action::Denied, "unavailable")
        );
    }

    #[test]
    fn a_workload_takes_its_most_severe_image_and_rows_are_shared() {
        let workloads = vec![
            workload("a", "Pod/p", &["ok:1", "down:1"]),
            workload("a", "Pod/q", &["ok:1"]),
            workload("b", "Pod/r", &["bad:1"]),
        ];
        let ok = Finding {
            policy: "acme".into(),
            ..Finding::both(Action::Admitted, "", String::new())
        };
        let findings: BTreeMap<String, Finding> = [
            ("[a]ok:1", ok),
            (
                "[a]down:1",
                Finding::of(&Outcome::Transient("registry down".into())),
            ),
            (
                "[b]bad:1",
                Finding::both(Action::Denied, "unsigned", "no signature".into()),
            ),
        ]
        .into_iter()
        .map(|(k, f)| (k.to_string(), f))
        .collect();
        let r = AuditReport::build(
            FailurePolicy::Open,
            &workloads,
            &findings,
            &Refusals::new(),
            Skipped::default(),
        );
        assert_eq!(
            (r.summary.open, r.summary.closed),
            (
                Tally {
                    denied: 1,
                    warned: 1,
                    admitted: 1
                },
                Tally {
                    denied: 2,
                    warned: 0,
                    admitted: 1
                }
            )
        );
        assert_eq!(r.namespaces[0].images[1].workloads, vec!["Pod/p", "Pod/q"]);
        assert!(r.anything_denied());
        assert_eq!(
            r.text(1),
            "3 workloads in 2 namespaces, 3 distinct images (3 keys); skipped 0 objects of other kinds, 0 in excluded namespaces
open:   1 denied, 1 warned, 1 admitted
closed: 2 denied, 0 warned, 1 admitted

namespace a: open: 0 denied, 1 warned, 1 admitted; closed: 1 denied, 0 warned, 1 admitted
  OPEN      CLOSED    IMAGE   WORKLOADS      RESULT
  warned    denied    down:1  Pod/p          unavailable: registry down
  admitted  admitted  ok:1    Pod/p +1 more  verified by policy acme

namespace b: open: 1 denied, 0 warned, 0 admitted; closed: 1 denied, 0 warned, 0 admitted
  OPEN    CLOSED  IMAGE  WORKLOADS  RESULT
  denied  denied  bad:1  Pod/r      unsigned: no signature
"
        );
    }
}
