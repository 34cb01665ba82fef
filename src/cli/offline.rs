//! The offline commands: `verify-bundle` (one Sigstore bundle, no registry) and
//! `attest-check` (one attestation policy against one statement). Everything they read is
//! read here; the checks themselves are the engine's (`verify::keyless`, `attest`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use super::load_config;

/// `vouch verify-bundle`: everything it reads is read here, the verification is
/// `verify::keyless::verify_bundle_with_policy`.
pub(super) fn verify_bundle(
    config: &Path,
    policy: &str,
    bundle: &Path,
    digest: Option<String>,
    artifact: Option<&Path>,
    json: bool,
) -> ExitCode {
    let cannot_run = |why: String| {
        eout!("vouch: {why}");
        ExitCode::from(2)
    };
    let config = match load_config(Some(config)) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let bundle_bytes = match std::fs::read(bundle) {
        Ok(b) => b,
        Err(e) => return cannot_run(format!("{}: {e}", bundle.display())),
    };
    let digest = match (digest, artifact) {
        (Some(d), _) if crate::digest::is_sha256_digest(&d) => d,
        (Some(d), _) => return cannot_run(format!("--digest {d:?} is not sha256:<64 hex>")),
        (None, Some(path)) => match std::fs::read(path) {
            Ok(bytes) => crate::digest::sha256_digest(&bytes),
            Err(e) => return cannot_run(format!("{}: {e}", path.display())),
        },
        (None, None) => return cannot_run("give --digest or --artifact".into()),
    };
    let result = match crate::verify::keyless::verify_bundle_with_policy(
        &config,
        policy,
        &bundle_bytes,
        &digest,
    ) {
        Ok(r) => r,
        Err(why) => return cannot_run(why),
    };
    let (ok, value, line) = match &result {
        Ok(v) => (
            true,
            serde_json::json!({"verified": true, "digest": digest, "signer": v.identity,
                "issuer": v.issuer, "predicateType": v.predicate_type()}),
            format!(
                "verified: {digest} signed by {} (issuer {})",
                v.identity, v.issuer
            ),
        ),
        Err(e) => (
            false,
            serde_json::json!({"verified": false, "digest": digest,
                "code": e.code(), "reason": e.detail()}),
            format!(
                "not verified: {digest}: {}: {}",
                serde_json::to_value(e.code())
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                e.detail()
            ),
        ),
    };
    if json {
        out!("{value}");
    } else {
        out!("{line}");
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The inputs of `vouch attest-check`.
pub(super) struct AttestCheck {
    pub(super) statement: PathBuf,
    pub(super) policy: PathBuf,
    pub(super) params: Option<PathBuf>,
    pub(super) signer: String,
    pub(super) issuer: String,
    pub(super) image: String,
    pub(super) timeout: Duration,
}

/// `vouch attest-check`: reads the files, evaluates as `attest::evaluate` would for one
/// verified statement (the image digest is the statement's first subject's).
pub(super) fn attest_check(a: AttestCheck) -> ExitCode {
    let cannot_run = |why: String| {
        eout!("vouch: {why}");
        ExitCode::from(2)
    };
    let statement: serde_json::Value = match std::fs::read(&a.statement)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => return cannot_run(format!("{}: {e}", a.statement.display())),
    };
    let params = match &a.params {
        None => serde_json::Value::Null,
        Some(p) => match std::fs::read_to_string(p)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_yaml_ng::from_str(&t).map_err(|e| e.to_string()))
        {
            Ok(v) => v,
            Err(e) => return cannot_run(format!("{}: {e}", p.display())),
        },
    };
    let policy = match crate::attest::RegoPolicy::load(&a.policy, a.timeout) {
        Ok(p) => p,
        Err(e) => return cannot_run(e.to_string()),
    };
    let digest = statement["subject"][0]["digest"]["sha256"]
        .as_str()
        .map(|h| format!("sha256:{h}"))
        .unwrap_or_default();
    let input = serde_json::json!({
        "statement": statement,
        "signer": a.signer,
        "issuer": a.issuer,
        "image": {"reference": a.image, "digest": digest},
        "params": params,
    });
    match policy.deny(input) {
        Ok(messages) if messages.is_empty() => {
            out!("passed");
            ExitCode::SUCCESS
        }
        Ok(messages) => {
            for m in messages {
                out!("deny: {m}");
            }
            ExitCode::from(1)
        }
        Err(why) => {
            out!("deny: {why}");
            ExitCode::from(1)
        }
    }
}
