//! One attestation policy: a Rego v1 module compiled once (per trust generation) by
//! regorus, evaluated in-process per attestation with the statement as input, under a
//! time budget. regorus is the Rego of Gatekeeper's own users and runs without a sidecar.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use regorus::utils::limits::ExecutionTimerConfig;

/// Why a module cannot be used: a configuration error (`vouch config check` prints it with
/// the file, line and column regorus reports).
#[derive(Debug, thiserror::Error)]
pub enum RegoError {
    /// The module file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The module does not compile, declares no `deny`, or cannot be evaluated at all.
    #[error("{0}")]
    Compile(String),
}

/// A compiled module and the rule vouch evaluates: `data.<its package>.deny`.
pub struct RegoPolicy {
    /// Prepared once; each evaluation works on a clone, which shares the compiled module.
    engine: Mutex<regorus::Engine>,
    rule: String,
}

impl std::fmt::Debug for RegoPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegoPolicy")
            .field("rule", &self.rule)
            .finish()
    }
}

impl RegoPolicy {
    /// Reads and compiles the module at `path`.
    pub fn load(path: &Path, timeout: Duration) -> Result<RegoPolicy, RegoError> {
        let source = std::fs::read_to_string(path).map_err(|source| RegoError::Read {
            path: path.display().to_string(),
            source,
        })?;
        RegoPolicy::compile(&path.display().to_string(), &source, timeout)
    }

    /// Compiles `source` (named `name` in error messages) and prepares it by one
    /// evaluation on an empty input, so a module that cannot be evaluated at all is refused
    /// when the config is loaded, not when the first image arrives.
    pub fn compile(name: &str, source: &str, timeout: Duration) -> Result<RegoPolicy, RegoError> {
        let compile = |e: anyhow::Error| RegoError::Compile(format!("{e:#}"));
        let mut engine = regorus::Engine::new();
        engine.set_rego_v0(false);
        let package = engine
            .add_policy(name.to_string(), source.to_string())
            .map_err(compile)?;
        engine.set_execution_timer_config(ExecutionTimerConfig {
            limit: timeout,
            check_interval: NonZeroU32::MIN,
        });
        // A module without `deny` would pass everything: surely a mistake.
        let declared = engine
            .has_declared_rule_rooted_at(name, "deny")
            .map_err(compile)?;
        if !declared {
            return Err(RegoError::Compile(format!(
                "{name}: package {package} declares no deny rule (vouch evaluates {package}.deny)"
            )));
        }
        let rule = format!("{package}.deny");
        engine.set_input(regorus::Value::new_object());
        if let Err(e) = engine.eval_rule(rule.clone()) {
            return Err(RegoError::Compile(format!(
                "{name}: {rule} cannot be evaluated: {e:#}"
            )));
        }
        Ok(RegoPolicy {
            engine: Mutex::new(engine),
            rule,
        })
    }

    /// The rule evaluated (`data.<package>.deny`).
    #[cfg(test)]
    pub(crate) fn rule(&self) -> &str {
        &self.rule
    }

    /// The deny messages for `input`, sorted; empty means pass. `Err` says why there is no
    /// answer (over the time budget, a runtime error, `deny` not a set of strings): the
    /// caller denies.
    pub fn deny(&self, input: serde_json::Value) -> Result<Vec<String>, String> {
        let mut engine = match self.engine.lock() {
            Ok(e) => e.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        engine.set_input(regorus::Value::from(input));
        let value = engine
            .eval_rule(self.rule.clone())
            .map_err(|e| format!("{} could not be evaluated: {e:#}", self.rule))?;
        if value == regorus::Value::Undefined {
            return Ok(Vec::new());
        }
        let set = value
            .as_set()
            .map_err(|_| format!("{} is not a set of messages", self.rule))?;
        let mut messages = Vec::with_capacity(set.len());
        for m in set.iter() {
            match m.as_string() {
                Ok(s) => messages.push(s.to_string()),
                Err(_) => messages.push(m.to_json_str().unwrap_or_default()),
            }
        }
        messages.sort();
        Ok(messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: Duration = Duration::from_millis(200);

    #[test]
    fn deny_messages_come_back_sorted_and_an_empty_set_passes() {
        let p = RegoPolicy::compile(
            "t.rego",
            "package t\n\ndeny contains \"b: too old\" if input.age > 3\n\ndeny contains \"a: wrong name\" if input.name != \"x\"\n",
            BUDGET,
        )
        .expect("compiles");
        assert_eq!(p.rule(), "data.t.deny");
        assert_eq!(
            p.deny(serde_json::json!({"age": 5, "name": "y"})),
            Ok(vec!["a: wrong name".to_string(), "b: too old".to_string()])
        );
        assert_eq!(
            p.deny(serde_json::json!({"age": 1, "name": "x"})),
            Ok(vec![])
        );
    }

    #[test]
    fn a_module_without_deny_is_refused() {
        let e = RegoPolicy::compile("t.rego", "package t\n\nallow := true\n", BUDGET)
            .expect_err("no deny");
        assert!(e.to_string().contains("declares no deny rule"), "{e}");
    }

    #[test]
    fn syntax_errors_name_the_file_and_line() {
        let e = RegoPolicy::compile(
            "policies/bad.rego",
            "package t\n\ndeny contains if {\n",
            BUDGET,
        )
        .expect_err("does not compile");
        let text = e.to_string();
        assert!(
            text.contains("policies/bad.rego") && text.contains(":3"),
            "{text}"
        );
    }

    #[test]
    fn a_loop_is_stopped_by_the_budget() {
        // Nine million iterations over the statement's own numbers: far more than 50 ms.
        let p = RegoPolicy::compile(
            "t.rego",
            "package t\n\ndeny contains msg if {\n  some i in input.xs\n  some j in input.xs\n  some k in input.xs\n  i + j + k < 0\n  msg := \"never\"\n}\n",
            Duration::from_millis(50),
        )
        .expect("compiles");
        let xs: Vec<u32> = (0..210).collect();
        let e = p
            .deny(serde_json::json!({"xs": xs}))
            .expect_err("stopped by the budget");
        assert!(e.contains("data.t.deny"), "{e}");
    }

    #[test]
    fn deny_must_be_a_set() {
        let p =
            RegoPolicy::compile("t.rego", "package t\n\ndeny := 3\n", BUDGET).expect("compiles");
        assert!(p.deny(serde_json::json!({})).is_err());
    }
}
