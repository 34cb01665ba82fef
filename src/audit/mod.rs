//! `vouch audit` (SPEC §3): what admission would do with the workloads already running,
//! before an operator switches to fail-closed or adds a policy.
//!
//! It reads `kubectl get pods,deployments,… -A -o json`, takes from each object the keys the
//! shipped templates would send ([`extract`]: their own Rego, evaluated in-process), verifies
//! each distinct key once with the engine `vouch serve` builds from the same config (the
//! same registries and their `maxConcurrency`, the same caches, the Redis tier when one is
//! configured, so an audit both reuses and warms the replicas' verdicts), and reports per
//! namespace what would be denied, warned or admitted in open and in closed mode
//! ([`report`]: the templates' mapping). The request limits apply as at admission: an
//! over-long key gets the verdict the provider gives it, and an object whose request vouch
//! would refuse as a whole is denied as a whole.

mod extract;
mod progress;
mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::num::NonZeroUsize;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::cache::Caches;
use crate::config::Config;
use crate::engine::{Engine, Outcome};
use crate::manifests::FailurePolicy;
use crate::metrics::Metrics;
use crate::verify::VerifyEngine;

use extract::{Extractor, Workload};
use progress::Progress;
use report::{AuditReport, Finding, Refusals};

/// Keys verified at the same time, over all registries, unless `--concurrency` says
/// otherwise; each registry's `maxConcurrency` bounds its own share below this.
pub(crate) const DEFAULT_CONCURRENCY: NonZeroUsize = NonZeroUsize::new(32).expect("not zero");
/// Largest input read unless `--max-input-bytes` says otherwise: a `kubectl get -A -o
/// json` of some ten thousand workloads is a few hundred MiB.
pub(crate) const DEFAULT_MAX_INPUT_BYTES: u64 = 1 << 30;
/// Workloads named per row of the text report unless `--workloads-shown` says otherwise
/// (the JSON names all of them).
pub(crate) const DEFAULT_WORKLOADS_SHOWN: usize = 3;

/// What the command line asked for.
pub(crate) struct Options {
    /// The List; `None` or `-`: standard input.
    pub input: Option<PathBuf>,
    /// The report as one JSON document.
    pub json: bool,
    /// The mode the exit status follows.
    pub failure_policy: FailurePolicy,
    /// Keys verified at the same time at most.
    pub concurrency: usize,
    /// Time allowed per key; past it the key counts as unavailable.
    pub timeout: Duration,
    /// No progress on standard error.
    pub quiet: bool,
    /// vouch's namespace, which the Constraints exclude (as `vouch manifests --namespace`).
    pub vouch_namespace: String,
    /// Largest input accepted.
    pub max_input_bytes: u64,
    /// Workloads named per row of the text report.
    pub workloads_shown: usize,
}

/// Why the audit cannot run (exit status 2).
#[derive(Debug, thiserror::Error)]
enum AuditError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0} is over --max-input-bytes ({1} bytes)")]
    TooLarge(String, u64),
    #[error("{0}: {1}")]
    Input(String, extract::InputError),
    #[error("{0}")]
    Rego(String),
    #[error("cannot load trust material: {0}")]
    Engine(String),
    #[error("cannot encode the report: {0}")]
    Encode(serde_json::Error),
}

/// Runs the audit under `config`; prints the report on standard output and returns the
/// exit status: 0 nothing would be denied under `failure_policy`, 1 something would, 2 it
/// cannot run.
pub(crate) async fn run(config: Config, options: Options) -> ExitCode {
    match audit(config, &options).await {
        Ok(report) => {
            let text = if options.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(s) => s + "\n",
                    Err(e) => return fail(AuditError::Encode(e)),
                }
            } else {
                report.text(options.workloads_shown)
            };
            print(&text);
            if report.anything_denied() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => fail(e),
    }
}

fn fail(e: AuditError) -> ExitCode {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "vouch audit: {e}");
    ExitCode::from(2)
}

/// Standard output may be a closed pipe (`vouch audit … | head`): not a crash.
fn print(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

async fn audit(config: Config, o: &Options) -> Result<AuditReport, AuditError> {
    let (input, max, vouch_ns) = (
        o.input.clone(),
        o.max_input_bytes,
        o.vouch_namespace.clone(),
    );
    // Reading and the Rego are CPU and blocking I/O: off the runtime's workers.
    let (workloads, skipped) = tokio::task::spawn_blocking(move || {
        let (name, bytes) = read_input(input, max)?;
        let objects = extract::objects(&bytes).map_err(|e| AuditError::Input(name.clone(), e))?;
        drop(bytes);
        let mut extractor = Extractor::new().map_err(AuditError::Rego)?;
        extractor
            .workloads(&objects, &vouch_ns)
            .map_err(|e| AuditError::Input(name, e))
    })
    .await
    .map_err(|e| AuditError::Rego(format!("reading the input failed: {e}")))??;

    let refused = refusals(&workloads, &config.limits);
    let keys: BTreeSet<&str> = workloads
        .iter()
        .enumerate()
        .filter(|(i, _)| !refused.contains_key(i))
        .flat_map(|(_, w)| w.keys.keys().map(String::as_str))
        .collect();
    let images: BTreeSet<&str> = workloads
        .iter()
        .flat_map(|w| w.keys.values().map(String::as_str))
        .collect();
    let namespaces: BTreeSet<&str> = workloads.iter().map(|w| w.namespace.as_str()).collect();

    let engine = engine(&config)?;
    let mut progress = Progress::start(
        o.quiet,
        keys.len(),
        &format!(
            "verifying {} keys ({} images) of {} workloads in {} namespaces",
            keys.len(),
            images.len(),
            workloads.len(),
            namespaces.len()
        ),
    );
    let outcomes = verify_all(
        engine,
        keys.into_iter().map(str::to_string).collect(),
        &config.limits,
        o.concurrency,
        o.timeout,
        &mut progress,
    )
    .await;
    progress.finish();
    let findings: BTreeMap<String, Finding> = outcomes
        .into_iter()
        .map(|(k, outcome)| (k, Finding::of(&outcome)))
        .collect();
    Ok(AuditReport::build(
        o.failure_policy,
        &workloads,
        &findings,
        &refused,
        skipped,
    ))
}

/// The whole input, from a file or standard input, at most `max` bytes.
fn read_input(input: Option<PathBuf>, max: u64) -> Result<(String, Vec<u8>), AuditError> {
    let (name, reader): (String, Box<dyn Read>) = match input {
        Some(p) if p.as_os_str() != "-" => {
            let name = p.display().to_string();
            let file = std::fs::File::open(&p).map_err(|e| AuditError::Read(name.clone(), e))?;
            (name, Box::new(file))
        }
        _ => ("standard input".to_string(), Box::new(std::io::stdin())),
    };
    let mut bytes = Vec::new();
    reader
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| AuditError::Read(name.clone(), e))?;
    if bytes.len() as u64 > max {
        return Err(AuditError::TooLarge(name, max));
    }
    Ok((name, bytes))
}

/// The engine `vouch serve` would build from `config`, with the same caches: the Redis
/// tier when one is configured.
fn engine(config: &Config) -> Result<Arc<VerifyEngine>, AuditError> {
    let metrics = Arc::new(Metrics::new());
    let redis = crate::redis::Redis::new(config.redis(), metrics.clone());
    let caches = Caches::with_redis(
        &config.cache,
        redis,
        config.verification_budget.get(),
        metrics.clone(),
    );
    VerifyEngine::new(config, caches, metrics)
        .map(Arc::new)
        .map_err(|e| AuditError::Engine(e.to_string()))
}

/// The objects whose admission request vouch would refuse as a whole (too many keys, a
/// body over the limit): checked with the provider's own request checks on the body
/// Gatekeeper would send.
fn refusals(workloads: &[Workload], limits: &crate::config::Limits) -> Refusals {
    let mut refused = Refusals::new();
    for (i, w) in workloads.iter().enumerate() {
        if w.keys.is_empty() {
            continue;
        }
        let keys: Vec<&String> = w.keys.keys().collect();
        let body = serde_json::json!({
            "apiVersion": crate::protocol::API_VERSION_V1BETA1,
            "kind": "ProviderRequest",
            "request": {"keys": keys},
        })
        .to_string();
        if let Err(e) = crate::protocol::parse_request(body.as_bytes(), &limits.request()) {
            refused.insert(i, Finding::request_invalid(e.to_string()));
        }
    }
    refused
}

/// Every key's outcome, at most `concurrency` at a time, each within `timeout`; an
/// over-long key gets the answer the provider gives it without being evaluated.
async fn verify_all(
    engine: Arc<VerifyEngine>,
    keys: Vec<String>,
    limits: &crate::config::Limits,
    concurrency: usize,
    timeout: Duration,
    progress: &mut Progress,
) -> Vec<(String, Outcome)> {
    let mut outcomes = Vec::with_capacity(keys.len());
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for key in keys {
        if let Some(why) = crate::protocol::key_too_long(&key, &limits.request()) {
            let outcome = engine.oversized(&key, why);
            outcomes.push((key, outcome));
            progress.step();
            continue;
        }
        // Waiting for a permit here keeps at most `concurrency` tasks alive.
        let permit = loop {
            tokio::select! {
                p = permits.clone().acquire_owned() => break p,
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    outcomes.extend(joined(done));
                    progress.step();
                }
            }
        };
        let engine = engine.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let evaluated = AssertUnwindSafe(tokio::time::timeout(timeout, engine.evaluate(&key)))
                .catch_unwind()
                .await;
            let outcome = match evaluated {
                Ok(Ok(o)) => o,
                Ok(Err(_)) => Outcome::Transient(format!(
                    "no outcome within {} (--timeout)",
                    humantime::format_duration(timeout)
                )),
                // As the exchange does: a panic is a transient failure, not a crash.
                Err(_) => Outcome::Transient("the verification failed unexpectedly".into()),
            };
            (key, outcome)
        });
    }
    while let Some(done) = tasks.join_next().await {
        outcomes.extend(joined(done));
        progress.step();
    }
    outcomes
}

/// A task's result. Tasks catch their own panics, so a join error can only be a task
/// cancelled at shutdown; its key has no finding, which the report counts as unavailable.
fn joined(done: Result<(String, Outcome), tokio::task::JoinError>) -> Option<(String, Outcome)> {
    match done {
        Ok(pair) => Some(pair),
        Err(e) => {
            tracing::error!(error = %e, "a verification task did not finish");
            None
        }
    }
}
