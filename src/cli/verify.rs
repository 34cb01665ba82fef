//! `vouch verify`: the engine the server runs, asked about images from the command line,
//! one line (or one JSON item) per image with the verdict, its hint and what was found.

use super::*;

/// How one image ended on the command line.
enum CliOutcome {
    Verified,
    Failed,
    Error,
}

pub(super) async fn verify(
    config: Option<PathBuf>,
    json: bool,
    timeout: Duration,
    images: Vec<String>,
) -> ExitCode {
    let config = match load_config(config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let engine = match VerifyEngine::standalone(&config) {
        Ok(e) => Arc::new(e),
        Err(e) => {
            eout!("vouch: {e}");
            return ExitCode::from(2);
        }
    };
    let mut items = Vec::new();
    let mut worst = CliOutcome::Verified;
    for image in images {
        let outcome = match tokio::time::timeout(timeout, engine.evaluate(&image)).await {
            Ok(o) => o,
            Err(_) => Outcome::Transient(format!(
                "no outcome within {}",
                humantime::format_duration(timeout)
            )),
        };
        let (item, line, class) = describe(&image, outcome);
        if !json {
            out!("{line}");
        }
        items.push(item);
        worst = match (worst, class) {
            (CliOutcome::Error, _) | (_, CliOutcome::Error) => CliOutcome::Error,
            (CliOutcome::Failed, _) | (_, CliOutcome::Failed) => CliOutcome::Failed,
            _ => CliOutcome::Verified,
        };
    }
    if json {
        match serde_json::to_string_pretty(&items) {
            Ok(s) => out!("{s}"),
            Err(e) => {
                eout!("vouch: cannot encode the result: {e}");
                return ExitCode::from(2);
            }
        }
    }
    match worst {
        CliOutcome::Verified => ExitCode::SUCCESS,
        CliOutcome::Failed => ExitCode::from(1),
        CliOutcome::Error => ExitCode::from(2),
    }
}

fn describe(image: &str, outcome: Outcome) -> (Item, String, CliOutcome) {
    let item = |value, error| Item {
        key: image.to_string(),
        value,
        error,
    };
    match outcome {
        Outcome::Value(v) => {
            let report: Option<Report> = v.parse().ok();
            let (line, class) = match &report {
                Some(r) if r.verified => (
                    format!(
                        "{image}: verified (policy {:?}{})",
                        r.policy,
                        digest_note(&r.digest)
                    ),
                    CliOutcome::Verified,
                ),
                Some(r) => (
                    format!(
                        "{image}: NOT verified: {}: {}{}",
                        serde_json::to_value(r.code)
                            .ok()
                            .and_then(|c| c.as_str().map(str::to_string))
                            .unwrap_or_default(),
                        r.reason,
                        if r.hint.is_empty() {
                            String::new()
                        } else {
                            format!("\n  hint: {}", r.hint)
                        }
                    ),
                    CliOutcome::Failed,
                ),
                None => (
                    format!("{image}: error: unreadable verdict {}", v.get()),
                    CliOutcome::Error,
                ),
            };
            let line = match report {
                Some(r) => line + &attestation_lines(&r),
                None => line,
            };
            (item(Some(v), None), line, class)
        }
        Outcome::Error(e) => (
            item(None, Some(e.to_string())),
            format!("{image}: error: {e}"),
            CliOutcome::Error,
        ),
        Outcome::Transient(why) => (
            item(None, Some(format!("transient: {why}"))),
            format!("{image}: error: transient: {why}"),
            CliOutcome::Error,
        ),
    }
}

/// One indented line per evaluated attestation: type, signer, and the deny messages.
fn attestation_lines(r: &Report) -> String {
    r.attestations
        .iter()
        .map(|a| {
            let outcome = if a.passed {
                "passed".to_string()
            } else {
                format!("denied: {}", a.messages.join("; "))
            };
            format!(
                "\n  attestation {} signed by {}: {outcome}",
                a.predicate_type, a.signer
            )
        })
        .collect()
}

fn digest_note(digest: &str) -> String {
    if digest.is_empty() {
        String::new()
    } else {
        format!(", digest {digest}")
    }
}
