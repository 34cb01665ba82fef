//! Config reload: the config file *and every file it names* (keys, certificates, trust
//! stores, registry credentials), re-read every `configReloadInterval` and on SIGHUP.
//!
//! Shaped like [`crate::tls::Reloader`]: read everything, compare with the last read,
//! rebuild only on a change, keep what runs when the new material is broken. Watching the
//! named files matters as much as the config: Kubernetes updates a mounted Secret in place
//! (a `..data` symlink swap), so a rotated or revoked key, or a renewed registry token,
//! arrives without a byte of the config changing. A change builds a new verification
//! engine exactly as a config change does: new trust generation, so no verdict reached
//! under the old material is served. A file that cannot be read, or a config that does
//! not validate (an empty file, one without any policy), keeps the running engine; the
//! failure is logged and counted once per distinct problem, and `/readyz` names it.
//! TLS files are left to [`crate::tls::Reloader`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use aws_lc_rs::digest::{Context, SHA256};
use tokio_util::sync::CancellationToken;

use crate::cache::Caches;
use crate::config::{Config, FileRole};
use crate::metrics::Metrics;
use crate::ops::Readiness;
use crate::verify::VerifyEngine;

/// The verification engine of the current config; replaced whole on a reload. A key being
/// evaluated keeps the engine it started with.
pub(crate) type EngineSlot = ArcSwap<VerifyEngine>;

/// What one read of the config and its files found: a fingerprint of all their bytes, or
/// why they could not be read.
type Reading = Result<[u8; 32], String>;

/// Re-reads the config file and the files it names; swaps the engine when they changed.
pub(crate) struct ConfigReloader {
    path: PathBuf,
    current: Config,
    slot: Arc<EngineSlot>,
    caches: Arc<Caches>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    /// The last reading, good or bad: an unchanged set is not rebuilt, and an unchanged
    /// problem is not logged and counted again.
    last: Reading,
}

impl ConfigReloader {
    /// A reloader for the config `current`, loaded from `path`, whose engine is in `slot`.
    pub(crate) fn new(
        path: PathBuf,
        current: Config,
        slot: Arc<EngineSlot>,
        caches: Arc<Caches>,
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
    ) -> ConfigReloader {
        let last = read(&path, &current);
        ConfigReloader {
            path,
            current,
            slot,
            caches,
            metrics,
            readiness,
            last,
        }
    }

    /// One reload attempt; `forced` (SIGHUP) rebuilds even when nothing changed.
    pub(crate) fn tick(&mut self, forced: bool) {
        let reading = read(&self.path, &self.current);
        if !forced && reading == self.last {
            return;
        }
        self.last = reading.clone();
        if let Err(why) = reading {
            return self.failed(why);
        }
        let next = match Config::load(&self.path) {
            Ok(c) => c,
            Err(e) => return self.failed(e.to_string()),
        };
        // The new config may name other files: the next tick compares against them.
        self.last = read(&self.path, &next);
        if let Err(why) = &self.last {
            return self.failed(why.clone());
        }
        let engine = match VerifyEngine::new(&next, self.caches.clone(), self.metrics.clone()) {
            Ok(e) => e,
            Err(e) => return self.failed(e.to_string()),
        };
        let before = self.slot.load().generation();
        let after = engine.generation();
        self.slot.store(Arc::new(engine));
        self.metrics.config_reloaded(true);
        self.readiness.config.loaded(Some(after));
        tracing::info!(
            generation_before = format!("{before:016x}"),
            generation = format!("{after:016x}"),
            "config reloaded"
        );
        for field in restart_only_changes(&self.current, &next) {
            tracing::warn!(
                field,
                "this config change takes effect only after a restart"
            );
        }
        self.current = next;
    }

    fn failed(&self, why: String) {
        // One log line per failure: a config's problems come as a list, one per line,
        // which a log collector would split into unrelated records.
        let why = one_line(&why);
        self.metrics.config_reloaded(false);
        self.readiness.config.reload_failed(why.clone());
        tracing::error!(error = %why, "config reload failed; keeping the running config");
    }

    /// Ticks every `configReloadInterval` (of the running config) and on SIGHUP until
    /// `shutdown`.
    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            let interval = tokio::time::sleep(self.current.config_reload_interval.get());
            #[cfg(unix)]
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<()>();
            let forced = tokio::select! {
                _ = interval => false,
                _ = hangup => true,
                _ = shutdown.cancelled() => return,
            };
            self.tick(forced);
        }
    }
}

/// Started without a config file there is nothing to reload; SIGHUP's default action
/// would end the process, so SIGHUP is taken here and only logged. The handler is
/// installed before this returns — a SIGHUP right after start-up must not kill vouch
/// either — and answered by a task until `shutdown`.
pub(crate) fn ignore_hangups(tasks: &tokio_util::task::TaskTracker, shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; a SIGHUP would stop vouch");
                return;
            }
        };
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    got = hup.recv() => {
                        if got.is_none() {
                            return;
                        }
                        tracing::info!("SIGHUP received: vouch was started without --config, there is no config file to reload; ignored");
                    }
                    _ = shutdown.cancelled() => return,
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (tasks, shutdown);
}

/// `text` on one line: its lines trimmed and joined with `; ` (a line ending in `:`
/// introduces the next, so it is joined with a space).
fn one_line(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !out.is_empty() {
            out.push_str(if out.ends_with(':') { " " } else { "; " });
        }
        out.push_str(line);
    }
    out
}

/// The fingerprint of the config file and of every non-TLS file `config` names.
fn read(path: &Path, config: &Config) -> Reading {
    let mut ctx = Context::new(&SHA256);
    let mut add = |what: &str, file: &Path| -> Result<(), String> {
        let bytes = std::fs::read(file)
            .map_err(|e| format!("{what}: cannot read {}: {e}", file.display()))?;
        ctx.update(&(bytes.len() as u64).to_be_bytes());
        ctx.update(&bytes);
        Ok(())
    };
    add("config", path)?;
    for f in config.files() {
        if f.role != FileRole::Tls {
            add(&f.field, &f.path)?;
        }
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok(out)
}

/// The fields a reload does not apply: every field whose value differs between `old` and
/// `new`, except those the verification engine is rebuilt from. Derived from the whole
/// config rather than listed, so a new field is restart-only until someone makes it
/// reloadable.
pub(crate) fn restart_only_changes(old: &Config, new: &Config) -> Vec<String> {
    /// What a new engine picks up (`VerifyEngine::new` reads these).
    const RELOADED: &[&str] = &[
        "policies",
        "registries",
        "registryTimeout",
        "registryIdleTimeout",
        "verificationBudget",
        "configReloadInterval",
        "allowNoPolicies",
        "limits.maxManifestBytes",
        "limits.maxSignatureBytes",
        "limits.maxSignatures",
        "cache.verifiedTtl",
        "cache.failedTtl",
        "revocation.timeout",
        "revocation.maxCrlBytes",
        "revocation.maxOcspBytes",
        "revocation.refreshBefore",
        "revocation.answerTtl",
    ];
    let (Ok(a), Ok(b)) = (serde_json::to_value(old), serde_json::to_value(new)) else {
        return Vec::new();
    };
    let mut changed = Vec::new();
    diff("", &a, &b, &mut changed);
    changed.retain(|f| !RELOADED.contains(&f.as_str()));
    changed
}

/// The dotted paths, two levels deep at most (`limits.maxKeys`), of the values that
/// differ.
fn diff(at: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value::Object;
    match (a, b) {
        (Object(x), Object(y)) if !at.contains('.') => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                let null = serde_json::Value::Null;
                diff(
                    &path,
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        _ if a != b => out.push(at.to_string()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_problems_becomes_one_line() {
        assert_eq!(
            one_line("2 problem(s) in /etc/vouch.yaml:\n  deadline: bad\n  limits.maxKeys: zero\n"),
            "2 problem(s) in /etc/vouch.yaml: deadline: bad; limits.maxKeys: zero"
        );
        assert_eq!(one_line("cannot read x: gone"), "cannot read x: gone");
    }

    fn config(extra: &str) -> Config {
        Config::parse(
            &format!(
                "{extra}\npolicies:\n- name: lib\n  scopes: [\"docker.io/library/*\"]\n  action: allow\n"
            ),
            "t",
            None,
        )
        .expect("valid")
    }

    #[test]
    fn restart_only_fields_are_derived_from_the_whole_config() {
        let old = config("");
        for (extra, want) in [
            ("mutateDeadline: 500ms", "mutateDeadline"),
            ("claims: {ttl: 90s}", "claims.ttl"),
            (
                "claims: {store: redis}\ncache: {redisUrl: \"redis://127.0.0.1:1\"}",
                "claims.store",
            ),
            ("deadline: 2s", "deadline"),
            ("limits: {maxKeys: 10}", "limits.maxKeys"),
            ("server: {idleTimeout: 30s}", "server.idleTimeout"),
            ("tls: {reloadInterval: 5s}", "tls.reloadInterval"),
        ] {
            let changed = restart_only_changes(&old, &config(extra));
            assert!(
                changed.iter().any(|c| c == want),
                "{extra}: {changed:?} lacks {want}"
            );
        }
    }

    #[test]
    fn what_the_engine_rebuilds_from_is_not_restart_only() {
        let old = config("");
        let new = Config::parse(
            "registryTimeout: 1s\nlimits: {maxSignatures: 4}\ncache: {failedTtl: 5s}\npolicies:\n- name: other\n  scopes: [\"ghcr.io/a/*\"]\n  action: allow\n",
            "t",
            None,
        )
        .expect("valid");
        assert_eq!(restart_only_changes(&old, &new), Vec::<String>::new());
        assert_eq!(restart_only_changes(&old, &old), Vec::<String>::new());
    }
}
