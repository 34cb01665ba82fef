//! Building a [`VerifyEngine`] from a config: every policy's trust material loaded (keys,
//! trust stores, trusted roots, Rego), the registry clients and the revocation fetcher made,
//! and the generation fingerprint computed. Its errors are what a failed start or reload
//! reports.

use super::*;

/// Why the engine could not be built from a config.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EngineError {
    #[error("policies[{policy}]: {source}")]
    Key {
        policy: String,
        source: cosign::KeyError,
    },
    #[error("policies[{policy}]: {source}")]
    Trust {
        policy: String,
        source: notation::TrustError,
    },
    #[error("policies[{policy}]: keyless: {source}")]
    Keyless {
        policy: String,
        source: keyless::LoadError,
    },
    #[error("policies[{policy}]: attestations: {source}")]
    Attestation {
        policy: String,
        source: crate::attest::RegoError,
    },
    #[error(transparent)]
    Registry(#[from] crate::registry::BuildError),
    #[error("{0}")]
    Revocation(String),
}

impl VerifyEngine {
    /// An engine with its own caches and metrics (the command line, tests).
    pub(crate) fn standalone(config: &Config) -> Result<VerifyEngine, EngineError> {
        let metrics = Arc::new(Metrics::new());
        let caches = Caches::new(&config.cache, metrics.clone());
        let mut engine = VerifyEngine::new(config, caches, metrics)?;
        engine.log_verdicts = false;
        Ok(engine)
    }

    /// Loads every policy's trust material and builds the registry clients. `caches` may be
    /// shared with the engine this one replaces on a reload.
    pub(crate) fn new(
        config: &Config,
        caches: Arc<Caches>,
        metrics: Arc<Metrics>,
    ) -> Result<VerifyEngine, EngineError> {
        let mut verifiers = HashMap::new();
        let mut required = HashMap::new();
        for p in &config.policies {
            let mut loaded = Vec::new();
            for v in &p.verifiers {
                match v.kind() {
                    Some(Verifier::Cosign(c)) => {
                        let keys = c
                            .public_keys
                            .iter()
                            .map(|k| cosign::PublicKey::load(k))
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(|source| EngineError::Key {
                                policy: p.name.clone(),
                                source,
                            })?;
                        loaded.push(LoadedVerifier::Cosign(keys));
                    }
                    Some(Verifier::Notation(n)) => {
                        let v = notation::NotationVerifier::load(n).map_err(|source| {
                            EngineError::Trust {
                                policy: p.name.clone(),
                                source,
                            }
                        })?;
                        loaded.push(LoadedVerifier::Notation(v));
                    }
                    Some(Verifier::Keyless(k)) => {
                        let v = keyless::KeylessVerifier::load(k).map_err(|source| {
                            EngineError::Keyless {
                                policy: p.name.clone(),
                                source,
                            }
                        })?;
                        loaded.push(LoadedVerifier::Keyless(v));
                    }
                    None => {}
                }
            }
            verifiers.insert(p.name.clone(), loaded);
            let attestations = p
                .attestations
                .iter()
                .map(|a| RequiredAttestation::load(a, config.limits.rego_timeout.get()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|source| EngineError::Attestation {
                    policy: p.name.clone(),
                    source,
                })?;
            required.insert(p.name.clone(), Arc::new(attestations));
        }
        let revocation = Revocation::new(
            &config.revocation,
            caches.revocation(config.revocation.max_entries),
            metrics.clone(),
        )
        .map_err(EngineError::Revocation)?;
        let trusts = config
            .policies
            .iter()
            .map(|p| {
                // From the keys loaded above: no second read of the key files.
                let loaded = verifiers.get(&p.name).map(Vec::as_slice).unwrap_or(&[]);
                let fingerprint = |name: &str| {
                    loaded.iter().find_map(|v| match v {
                        LoadedVerifier::Cosign(keys) => keys
                            .iter()
                            .find(|k| k.name == name)
                            .map(|k| k.fingerprint()),
                        _ => None,
                    })
                };
                (
                    p.name.clone(),
                    crate::hint::trust_summary(&p.verifiers, &fingerprint),
                )
            })
            .collect();
        Ok(VerifyEngine {
            trusts,
            revocation,
            policies: PolicySet::new(&config.policies),
            verifiers,
            required,
            registries: Registries::new(config, metrics.clone())?,
            budget: config.verification_budget.get(),
            bounds: Bounds {
                max_signatures: config.limits.max_signatures,
                max_signature_bytes: config.limits.max_signature_bytes,
                max_attestation_bytes: config.limits.max_attestation_bytes,
                attestations: false,
            },
            max_platforms: config.limits.max_platforms,
            caches,
            cache_config: config.cache.clone(),
            generation: generation(config),
            metrics,
            log_verdicts: true,
        })
    }
}

/// A fingerprint of everything a verdict depends on besides the image: policies,
/// registries, limits, and the bytes of every key and certificate file.
pub(super) fn generation(config: &Config) -> u64 {
    use aws_lc_rs::digest::{Context, SHA256};
    let mut ctx = Context::new(&SHA256);
    let parts = serde_json::json!({
        "policies": config.policies,
        "registries": config.registries,
        "limits": config.limits,
    });
    ctx.update(parts.to_string().as_bytes());
    // Trust material only: registry credentials are how vouch reaches a registry, not
    // whom it trusts, and never go into a value that is shared (Redis keys).
    for f in config.files() {
        if f.role == FileRole::Trust {
            let bytes = std::fs::read(&f.path).unwrap_or_default();
            ctx.update(&(bytes.len() as u64).to_be_bytes());
            ctx.update(&bytes);
        }
    }
    let d = ctx.finish();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_ref()[..8]);
    u64::from_be_bytes(b)
}
