//! The engine's half of multi-platform verification ([`super::platforms`] is the pure
//! half): fetching an index's platform manifests and verifying each through the verdict
//! cache, so children shared with another index are verified once.

use super::*;

impl VerifyEngine {
    /// The verdict on an index under `platforms: each | index-or-each`: the index's own
    /// signature first for `index-or-each`, then every platform manifest — fetched (bounded,
    /// hash-checked, an image manifest) and verified on its own through the verdict cache,
    /// so children shared with another index are verified once.
    pub(super) async fn verify_platforms(
        &self,
        client: &RegistryClient,
        image: &ImageRef,
        policy: &Policy,
        index: &Descriptor,
        budget: Instant,
    ) -> Result<CachedVerdict, Outcome> {
        let started = Instant::now();
        let settle = |e: RegistryError| self.settle(image, policy, &index.digest, e, started);
        let mut index_denial = None;
        if policy.platforms == Platforms::IndexOrEach {
            let v = self
                .digest_verdict(client, image, policy, index, budget)
                .await
                .map_err(|o| (*o).clone())?;
            let report = v.report();
            if report.verified {
                return Ok(v);
            }
            index_denial = Some(Denial::new(report.code, report.reason));
        }
        let repo = image.repository();
        let manifest = match client.manifest(repo, &index.digest, budget).await {
            Ok(m) => m,
            Err(e) => return settle(e),
        };
        let now = SystemTime::now();
        let children = match platforms::children(&manifest.bytes, self.max_platforms) {
            Ok(c) => c,
            Err(report) => {
                let mut report = *report;
                report.reference = image.to_string();
                report.policy = policy.name.clone();
                report.digest = index.digest.clone();
                self.verdict_reached(&report);
                let ttl = ttl_for(false, None, now, &self.cache_config);
                return Ok(CachedVerdict::new(report, ttl));
            }
        };
        let verdicts = futures_util::future::join_all(children.iter().map(|child| async move {
            // A child already verified (for this policy, in another index or by its own
            // digest) costs nothing: not even its manifest is fetched again.
            let known = self.verdict_key(
                image,
                policy,
                &child.descriptor.digest,
                VerdictScope::Digest,
            );
            if let Some(v) = self.caches.known_verdict(&known).await {
                return Ok(v.report());
            }
            match client
                .manifest(repo, &child.descriptor.digest, budget)
                .await
            {
                Ok(m) if platforms::MANIFEST_TYPES.contains(&m.media_type.as_str()) => self
                    .digest_verdict(client, image, policy, &child.descriptor, budget)
                    .await
                    .map(|v| v.report())
                    .map_err(|o| (*o).clone()),
                Ok(m) => Ok(Report::failed(
                    "",
                    &policy.name,
                    Denial::new(
                        VerdictCode::InvalidImage,
                        format!(
                            "{} is a {}, not a platform manifest",
                            child.descriptor.digest, m.media_type
                        ),
                    ),
                )),
                Err(e) => match classify(e) {
                    Failure::Verdict(denial) => Ok(Report::failed("", &policy.name, denial)),
                    Failure::Other(outcome) => Err(outcome),
                },
            }
        }))
        .await;
        let mut results = Vec::with_capacity(children.len());
        for (child, verdict) in children.into_iter().zip(verdicts) {
            results.push((child, verdict?));
        }
        let (reports, verdict) = platforms::combine(&results);
        let mut report = match verdict {
            Ok(()) => Report::allowed(image, &policy.name),
            Err(denial) => {
                let denial = match index_denial {
                    Some(index) => Denial::new(
                        index.code,
                        format!(
                            "neither the index nor every platform is verified: index: {}; {}",
                            index.reason, denial.reason
                        ),
                    ),
                    None => denial,
                };
                Report::failed(&image.to_string(), &policy.name, denial)
            }
        };
        report.digest = index.digest.clone();
        report.platforms = reports;
        self.verdict_reached(&report);
        let ttl = ttl_for(report.verified, None, now, &self.cache_config);
        Ok(CachedVerdict::new(report, ttl))
    }
}
