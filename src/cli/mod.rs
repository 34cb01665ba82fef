//! The command line (SPEC §3): `serve`, `verify`, `verify-bundle`, `attest-check`,
//! `manifests`, `config check`, `audit`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::engine::{Engine, Outcome};
use crate::protocol::Item;
use crate::verify::{Report, VerifyEngine};

/// `println!` that does not panic when standard output is gone (`vouch … | head`): a
/// command line tool must not crash on a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that does not panic when standard error is gone.
macro_rules! eout {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod offline;
mod verify;

use offline::{AttestCheck, attest_check, verify_bundle};
use verify::verify;

#[derive(Parser)]
#[command(
    name = "vouch",
    version,
    about = "Gatekeeper external data provider that verifies container image signatures"
)]
struct Cli {
    /// Log line format (logs go to standard error).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the provider (HTTPS) and operations (HTTP) listeners.
    Serve {
        /// Config file; without it the embedded default config is used.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where to write the development CA when no certificate is configured.
        #[arg(long)]
        dev_ca_out: Option<PathBuf>,
    },
    /// Verify images from the command line with the provider's engine.
    /// Exit status: 0 all verified, 1 some not verified, 2 on error.
    Verify {
        /// Config file; without it the embedded default config is used.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the items as JSON, as /v1/verify would.
        #[arg(long)]
        json: bool,
        /// Time allowed per image.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// Verify as a key from this namespace would be (`[NS]image`): the namespaced
        /// policies naming it apply too.
        #[arg(long)]
        namespace: Option<String>,
        /// Image references to verify, as written in pod specs (`nginx`,
        /// `ghcr.io/acme/api:1.4`, `registry:5000/app@sha256:…`).
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Verify one Sigstore bundle with no registry: signature, certificate chain, log entry
    /// or timestamp, and identity, against a policy's keyless verifiers; the digest must be
    /// the bundle's message digest or an in-toto subject, whatever its predicate type.
    /// Exit status: 0 verified, 1 not verified (for any reason), 2 when it cannot run.
    VerifyBundle {
        /// Config file holding the policy.
        #[arg(long)]
        config: PathBuf,
        /// Name of the policy whose keyless verifiers decide.
        #[arg(long)]
        policy: String,
        /// The bundle (JSON).
        #[arg(long)]
        bundle: PathBuf,
        /// The artifact digest the bundle must cover (`sha256:<hex>`).
        #[arg(
            long,
            required_unless_present = "artifact",
            conflicts_with = "artifact"
        )]
        digest: Option<String>,
        /// The artifact itself; its SHA-256 digest is used.
        #[arg(long)]
        artifact: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate an attestation policy (Rego) against an in-toto statement, offline, as vouch
    /// would for a verified attestation: for authors of policies. Prints the deny messages.
    /// Exit status: 0 passed, 1 denied, 2 when it cannot run.
    AttestCheck {
        /// The in-toto statement (JSON).
        #[arg(long)]
        statement: PathBuf,
        /// The Rego v1 module; `data.<its package>.deny` is evaluated.
        #[arg(long)]
        policy: PathBuf,
        /// A JSON or YAML map handed to the module as `input.params`.
        #[arg(long)]
        params: Option<PathBuf>,
        /// `input.signer` (the identity or key that signed the attestation).
        #[arg(long, default_value = "")]
        signer: String,
        /// `input.issuer`.
        #[arg(long, default_value = "")]
        issuer: String,
        /// `input.image.reference`.
        #[arg(long, default_value = "")]
        image: String,
        /// Time the evaluation may take.
        #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Print the Kubernetes objects that register vouch with Gatekeeper (Providers,
    /// ConstraintTemplates, Constraints, tag-to-digest Assigns), ready for `kubectl apply -f -`.
    Manifests {
        /// Config file whose listen port the Providers use and whose deadlines must fit
        /// inside the Providers' timeouts; without it the embedded default config is used.
        #[arg(long)]
        config: Option<PathBuf>,
        /// What happens when vouch cannot reach a verdict: `open` warns and admits, `closed`
        /// denies (and makes the Assigns fail closed).
        #[arg(long, value_enum, default_value = "open")]
        failure_policy: crate::manifests::FailurePolicy,
        /// Namespace of the vouch Service.
        #[arg(long, default_value = "vouch-system")]
        namespace: String,
        /// PEM CA that signed vouch's serving certificate (the Providers' caBundle).
        #[arg(long, conflicts_with = "ca_bundle_value")]
        ca_bundle: Option<PathBuf>,
        /// The caBundle value itself (base64 PEM), e.g. a placeholder a chart substitutes.
        #[arg(long)]
        ca_bundle_value: Option<String>,
        /// Print the Providers with an empty caBundle when neither --ca-bundle nor
        /// --ca-bundle-value is given (Gatekeeper cannot call vouch until it is set).
        #[arg(long, conflicts_with_all = ["ca_bundle", "ca_bundle_value"])]
        allow_empty_ca_bundle: bool,
        /// Also print the claims Provider and the unique-Service-selector template,
        /// Constraint and SyncSet (a library policy, off by default).
        #[arg(long)]
        unique_service_selector: bool,
        /// Gatekeeper's validating webhook timeout (its Helm value
        /// validatingWebhookTimeoutSeconds). In closed mode the Providers time out a second
        /// before it.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        webhook_timeout: Duration,
        /// Gatekeeper's mutating webhook timeout (mutatingWebhookTimeoutSeconds); closed mode
        /// needs at least 2s.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        mutation_webhook_timeout: Duration,
    },
    /// What admission would do with the workloads already running: reads a Kubernetes List
    /// (`kubectl get pods,deployments,statefulsets,daemonsets,jobs,cronjobs -A -o json`),
    /// takes the images the shipped templates would send, verifies each once with the
    /// provider's engine and caches, and prints per namespace what would be denied, warned
    /// or admitted in open and in closed mode. Exit status: 0 nothing would be denied
    /// under --failure-policy, 1 something would, 2 when it cannot run.
    Audit {
        /// Config file (the one vouch serves with); without it the embedded default config.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the report as one JSON document (shape: docs/INSTALL.md).
        #[arg(long)]
        json: bool,
        /// The mode the exit status follows (the report shows both): `open` exits 1 when
        /// anything would be denied with fail-open Constraints, `closed` also when an image
        /// could not be verified for want of a registry.
        #[arg(long, value_enum, default_value = "open")]
        failure_policy: crate::manifests::FailurePolicy,
        /// Keys verified at the same time at most, over all registries (each registry's
        /// maxConcurrency bounds its own share).
        #[arg(long, default_value_t = crate::audit::DEFAULT_CONCURRENCY)]
        concurrency: std::num::NonZeroUsize,
        /// Time allowed per key; past it the image counts as unavailable.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// No progress on standard error (and only errors logged, unless RUST_LOG says
        /// otherwise).
        #[arg(long, short)]
        quiet: bool,
        /// vouch's namespace, which the Constraints exclude (as `vouch manifests
        /// --namespace`); kube-system and gatekeeper-system are excluded too.
        #[arg(long, default_value = "vouch-system")]
        vouch_namespace: String,
        /// Largest input read, in bytes.
        #[arg(long, default_value_t = crate::audit::DEFAULT_MAX_INPUT_BYTES)]
        max_input_bytes: u64,
        /// Workloads named per image in the text report (the JSON names all).
        #[arg(long, default_value_t = crate::audit::DEFAULT_WORKLOADS_SHOWN)]
        workloads_shown: usize,
        /// The List (JSON); `-` or nothing: standard input.
        file: Option<PathBuf>,
    },
    /// Work with config files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file and print each problem with its path (exit 1 on problems),
    /// and each warning — deadlines that leave vouch no time to answer inside the
    /// Providers' timeouts — as `warning:` (warnings alone: exit 0).
    Check {
        /// The config file to check.
        file: PathBuf,
        /// The failure policy the Providers are generated for (`vouch manifests
        /// --failure-policy`): closed mode gives vouch less time.
        #[arg(long, value_enum, default_value = "open")]
        failure_policy: crate::manifests::FailurePolicy,
        /// Gatekeeper's validating webhook timeout (as `vouch manifests --webhook-timeout`).
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        webhook_timeout: Duration,
        /// Gatekeeper's mutating webhook timeout (as `vouch manifests
        /// --mutation-webhook-timeout`).
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        mutation_webhook_timeout: Duration,
    },
}

/// Entry point of the `vouch` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // An audit verifies thousands of images: its report is the output, not a log line per
    // image.
    let default_filter = match &cli.command {
        Command::Audit { quiet: true, .. } => "error",
        Command::Audit { .. } => "warn",
        _ => "info",
    };
    init_logging(cli.log_format, default_filter);
    match cli.command {
        Command::Audit {
            config,
            json,
            failure_policy,
            concurrency,
            timeout,
            quiet,
            vouch_namespace,
            max_input_bytes,
            workloads_shown,
            file,
        } => {
            let config = match load_config(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let options = crate::audit::Options {
                input: file,
                json,
                failure_policy,
                concurrency: concurrency.get(),
                timeout,
                quiet,
                vouch_namespace,
                max_input_bytes,
                workloads_shown,
            };
            run_async(crate::audit::run(config, options))
        }
        Command::Serve { config, dev_ca_out } => run_async(serve(config, dev_ca_out)),
        Command::Verify {
            config,
            json,
            timeout,
            namespace,
            images,
        } => {
            let images = match namespace {
                Some(ns) if !crate::namespace::is_namespace_name(&ns) => {
                    eout!("vouch: --namespace {ns:?} is not a Kubernetes namespace name");
                    return ExitCode::from(2);
                }
                Some(ns) => images.iter().map(|i| format!("[{ns}]{i}")).collect(),
                None => images,
            };
            run_async(verify(config, json, timeout, images))
        }
        Command::Config {
            command:
                ConfigCommand::Check {
                    file,
                    failure_policy,
                    webhook_timeout,
                    mutation_webhook_timeout,
                },
        } => config_check(
            &file,
            failure_policy,
            crate::manifests::WebhookTimeouts {
                validating: webhook_timeout,
                mutating: mutation_webhook_timeout,
            },
        ),
        Command::AttestCheck {
            statement,
            policy,
            params,
            signer,
            issuer,
            image,
            timeout,
        } => attest_check(AttestCheck {
            statement,
            policy,
            params,
            signer,
            issuer,
            image,
            timeout,
        }),
        Command::VerifyBundle {
            config,
            policy,
            bundle,
            digest,
            artifact,
            json,
        } => verify_bundle(&config, &policy, &bundle, digest, artifact.as_deref(), json),
        Command::Manifests {
            config,
            failure_policy,
            namespace,
            ca_bundle,
            ca_bundle_value,
            allow_empty_ca_bundle,
            unique_service_selector,
            webhook_timeout,
            mutation_webhook_timeout,
        } => manifests(
            config,
            ca_bundle,
            ca_bundle_value,
            allow_empty_ca_bundle,
            crate::manifests::Options {
                failure_policy,
                namespace,
                ca_bundle: String::new(),
                port: 0,
                unique_service_selector,
                webhooks: crate::manifests::WebhookTimeouts {
                    validating: webhook_timeout,
                    mutating: mutation_webhook_timeout,
                },
            },
        ),
    }
}

/// Logs to standard error at `RUST_LOG`, else at `default_filter`.
fn init_logging(format: LogFormat, default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // A closed stderr (a log collector gone) must not take the provider down: without
    // this, a failed log write is reported with eprintln!, which panics. Colour codes only
    // help a person at a terminal; in a file, a pipe or a log collector they are noise.
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run_async(fut: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(fut),
        Err(e) => {
            eout!("vouch: cannot start the async runtime: {e}");
            ExitCode::from(2)
        }
    }
}

/// The config file, or the embedded default; on failure the problems are printed and the
/// exit status (2) returned.
fn load_config(path: Option<&Path>) -> Result<Config, ExitCode> {
    let result = match path {
        Some(p) => Config::load(p),
        None => Config::embedded(),
    };
    result.map_err(|e| {
        eout!("vouch: {e}");
        ExitCode::from(2)
    })
}

async fn serve(config_path: Option<PathBuf>, dev_ca_out: Option<PathBuf>) -> ExitCode {
    let config = match load_config(config_path.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let options = crate::app::Options {
        dev_ca_out,
        verify_engine: None,
        config_path: config_path.clone(),
    };
    let running = match crate::app::start(config, options).await {
        Ok(r) => r,
        Err(e) => {
            eout!("vouch: {e:#}");
            return ExitCode::from(2);
        }
    };
    crate::shutdown::signal().await;
    running.stop().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// `vouch config check`: every problem (exit 1), then every warning (alone: exit 0).
fn config_check(
    file: &Path,
    failure_policy: crate::manifests::FailurePolicy,
    webhooks: crate::manifests::WebhookTimeouts,
) -> ExitCode {
    let (config, mut problems) = match Config::check_file(file) {
        Ok(checked) => checked,
        Err(e) => {
            out!("{}: {e}", file.display());
            return ExitCode::from(1);
        }
    };
    if let (Some(c), true) = (&config, problems.is_empty()) {
        // Key files must not only exist but parse.
        if let Err(e) = VerifyEngine::standalone(c) {
            problems.push(crate::config::Problem {
                path: String::new(),
                message: e.to_string(),
            });
        }
    }
    let timeouts = match crate::manifests::provider_timeouts(failure_policy, webhooks) {
        Ok(t) => t,
        Err(e) => {
            eout!("vouch: {e}");
            return ExitCode::from(2);
        }
    };
    let warnings = config
        .as_ref()
        .map(|c| {
            crate::manifests::deadline_problems(timeouts, c.deadline.get(), c.mutate_deadline.get())
        })
        .unwrap_or_default();
    for p in &problems {
        out!("{}: {p}", file.display());
    }
    for w in &warnings {
        let mode = match failure_policy {
            crate::manifests::FailurePolicy::Open => "open",
            crate::manifests::FailurePolicy::Closed => "closed",
        };
        out!(
            "{}: warning: {w} (failure policy {mode}, Gatekeeper webhook timeouts {} and {}: see --failure-policy, --webhook-timeout, --mutation-webhook-timeout)",
            file.display(),
            humantime::format_duration(webhooks.validating),
            humantime::format_duration(webhooks.mutating)
        );
    }
    if !problems.is_empty() {
        return ExitCode::from(1);
    }
    if warnings.is_empty() {
        out!("{}: ok", file.display());
    } else {
        out!("{}: ok, {} warning(s)", file.display(), warnings.len());
    }
    ExitCode::SUCCESS
}

/// `vouch manifests`: `options` with the caBundle and port filled in from the flags and the
/// config. A config given with `--config` must have deadlines below the Providers'
/// timeouts; without one, the deadlines it needs are printed.
fn manifests(
    config_path: Option<PathBuf>,
    ca_bundle: Option<PathBuf>,
    ca_bundle_value: Option<String>,
    allow_empty_ca_bundle: bool,
    mut options: crate::manifests::Options,
) -> ExitCode {
    use base64::Engine as _;
    let config = match load_config(config_path.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    options.ca_bundle = match (ca_bundle, ca_bundle_value) {
        (_, Some(value)) => value,
        (Some(path), None) => match std::fs::read(&path) {
            Ok(pem) => base64::engine::general_purpose::STANDARD.encode(pem),
            Err(e) => {
                eout!("vouch: cannot read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        (None, None) => String::new(),
    };
    // Providers with an empty caBundle apply cleanly and then fail every call: Gatekeeper
    // trusts nothing else. Refuse to print them unless that is asked for.
    if options.ca_bundle.trim().is_empty() {
        if !allow_empty_ca_bundle {
            eout!(
                "vouch: no CA bundle: Gatekeeper trusts only the Providers' caBundle, so without it every call to vouch fails. Pass --ca-bundle FILE (the PEM CA that signed vouch's serving certificate) or --ca-bundle-value BASE64, or --allow-empty-ca-bundle to print the Providers with an empty caBundle and set it later"
            );
            return ExitCode::from(2);
        }
        eout!(
            "vouch: --allow-empty-ca-bundle: the Providers' caBundle is empty and Gatekeeper will not trust vouch until it is set"
        );
    }
    options.port = config.listen.port();
    let timeouts =
        match crate::manifests::provider_timeouts(options.failure_policy, options.webhooks) {
            Ok(t) => t,
            Err(e) => {
                eout!("vouch: {e}");
                return ExitCode::from(2);
            }
        };
    if config_path.is_some() {
        let checked = crate::manifests::check_deadlines(
            timeouts,
            config.deadline.get(),
            config.mutate_deadline.get(),
        );
        if let Err(e) = checked {
            eout!("vouch: {e}");
            return ExitCode::from(2);
        }
    } else {
        let (verify, mutate) = timeouts.deadlines();
        eout!(
            "vouch: the Providers time out after {}s and {}s: vouch's config needs deadline <= {} and mutateDeadline <= {} (check with --config)",
            timeouts.verify,
            timeouts.mutate,
            humantime::format_duration(verify),
            humantime::format_duration(mutate)
        );
    }
    match crate::manifests::render(&options) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eout!("vouch: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every argument and option of every (sub)command, with the command's path.
    fn undescribed(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                out.push(format!("{path} {}", arg.get_id()));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_about().is_none() && sub.get_long_about().is_none() {
                out.push(format!("{path} {} (the command itself)", sub.get_name()));
            }
            undescribed(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_argument_of_every_command_has_a_description() {
        let mut cmd = Cli::command();
        cmd.build();
        let mut missing = Vec::new();
        undescribed(&cmd, "vouch", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
        // The walk saw the commands there are.
        let names: Vec<&str> = cmd.get_subcommands().map(|c| c.get_name()).collect();
        for want in ["serve", "verify", "manifests", "config"] {
            assert!(names.contains(&want), "{names:?}");
        }
    }
}
