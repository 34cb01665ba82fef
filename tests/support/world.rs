//! A registry with cosign-signed images and the policy that trusts their key: the setup most
//! verification tests share (push, sign, push the signature image; the YAML of a policy for
//! `<host>/acme/*`; registry round trips counted from the access log).

use super::registry::*;

/// A real registry, a pusher, a cosign key, and a directory for key files.
pub struct World {
    pub registry: Registry,
    pub pusher: Pusher,
    pub key: CosignKey,
    keys_dir: tempfile::TempDir,
}

impl World {
    pub fn new() -> World {
        let registry = Registry::start();
        let pusher = Pusher::new(&registry);
        World {
            registry,
            pusher,
            key: CosignKey::generate(),
            keys_dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Writes `key`'s public PEM as `<name>.pub`; returns its path.
    pub fn key_file(&self, key: &CosignKey, name: &str) -> String {
        let p = self.keys_dir.path().join(format!("{name}.pub"));
        std::fs::write(&p, key.public_pem()).expect("write key");
        p.display().to_string()
    }

    /// `extra` YAML, then `host` as a plain-HTTP registry and a cosign policy for
    /// `<host>/acme/*` trusting `key_file` (`host`: the registry, or a proxy in front of it).
    pub fn policy(&self, host: &str, key_file: &str, extra: &str) -> String {
        format!(
            "{extra}registries:\n- host: {host}\n  plainHttp: true\npolicies:\n- name: acme\n  scopes: [\"{host}/acme/*\"]\n  verifiers:\n  - cosign: {{publicKeys: [{key_file}]}}\n"
        )
    }

    /// Signs an image already pushed (the signature names the registry's host).
    pub async fn sign(&self, repo: &str, image: &Image, key: &CosignKey) {
        let sig = key.sign_image(&format!("{}/{repo}", self.registry.host), &image.digest);
        push_cosign_signatures(&self.pusher, repo, &image.digest, &[sig]).await;
    }

    /// Pushes `repo:tag` and signs it with the world's key.
    pub async fn signed(&self, repo: &str, tag: &str) -> Image {
        push_signed(&self.pusher, &self.key, &self.registry.host, repo, tag).await
    }

    /// Registry requests made while `f` ran.
    pub async fn registry_requests<F: std::future::Future<Output = T>, T>(
        &self,
        f: F,
    ) -> (T, usize) {
        let (out, lines) = self.registry_log(f).await;
        (out, lines.len())
    }

    /// The registry's access-log lines for what `f` did.
    pub async fn registry_log<F: std::future::Future<Output = T>, T>(
        &self,
        f: F,
    ) -> (T, Vec<AccessLine>) {
        self.registry.settle_log().await;
        let before = self.registry.access_log().len();
        let out = f.await;
        self.registry.settle_log().await;
        (out, self.registry.requests_since(before))
    }
}
