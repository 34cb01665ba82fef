//! Image references as written in pod specs, normalized the way Docker does it
//! (`nginx` → `docker.io/library/nginx:latest`).
//!
//! Parsing follows the distribution reference grammar (through `oci-spec`), so what the
//! kubelet would pull and what vouch verifies are the same image.

use std::fmt;

use oci_spec::distribution::Reference;

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// Why a key is not an image reference; becomes the reason of an `invalid-reference` verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidReference(String);

impl ImageRef {
    pub fn parse(s: &str) -> Result<ImageRef, InvalidReference> {
        let r = Reference::try_from(s)
            .map_err(|e| InvalidReference(format!("{s:?} is not a valid image reference: {e}")))?;
        if r.repository().chars().any(|c| c.is_ascii_uppercase()) {
            return Err(InvalidReference(format!(
                "{s:?} is not a valid image reference: repository name must be lowercase"
            )));
        }
        // A bare tag-less, digest-less reference means `latest` (oci-spec already adds it);
        // registry hosts are case-insensitive, so compare them in lower case.
        let mut registry = r.registry().to_ascii_lowercase();
        let mut repository = r.repository().to_string();
        // oci-spec recognizes Docker Hub's names only in lower case; hosts are
        // case-insensitive, so `Index.Docker.io/alpine` and `Docker.io/alpine` are
        // `docker.io/library/alpine` too.
        if registry == "index.docker.io" || registry == "docker.io" {
            registry = "docker.io".to_string();
            if !repository.contains('/') {
                repository = format!("library/{repository}");
            }
        }
        Ok(ImageRef {
            registry,
            repository,
            tag: r.tag().map(str::to_string),
            digest: r.digest().map(str::to_string),
        })
    }

    /// `host` or `host:port`, `docker.io` for Docker Hub.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry (`library/nginx`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `registry/repository`: what policy scopes match against.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn docker_hub_short_names_are_normalized() {
        let r = ImageRef::parse("nginx").expect("valid");
        assert_eq!(r.to_string(), "docker.io/library/nginx:latest");
        assert_eq!(r.name(), "docker.io/library/nginx");
        let r = ImageRef::parse("bitnami/redis:7").expect("valid");
        assert_eq!(r.to_string(), "docker.io/bitnami/redis:7");
        let r = ImageRef::parse("index.docker.io/library/alpine:3").expect("valid");
        assert_eq!(r.to_string(), "docker.io/library/alpine:3");
    }

    #[test]
    fn hosts_ports_tags_and_digests() {
        let r = ImageRef::parse("ghcr.io/acme/api:1.4").expect("valid");
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("ghcr.io", "acme/api", Some("1.4"))
        );
        let key = format!("localhost:5000/x@{D}");
        let r = ImageRef::parse(&key).expect("valid");
        assert_eq!(
            (r.registry(), r.tag(), r.digest()),
            ("localhost:5000", None, Some(D))
        );
        let key = format!("r:5000/x:v1@{D}");
        let r = ImageRef::parse(&key).expect("valid");
        assert_eq!(r.to_string(), key);
        let r = ImageRef::parse("Registry.Example.com/a/b:1").expect("valid");
        assert_eq!(r.registry(), "registry.example.com");
        // Found by fuzzing: Docker Hub's old name in another case was not normalized.
        let r = ImageRef::parse("Index.Docker.io/alpine:3").expect("valid");
        assert_eq!(r.to_string(), "docker.io/library/alpine:3");
        let r = ImageRef::parse("Docker.io/e:4").expect("valid");
        assert_eq!(r.to_string(), "docker.io/library/e:4");
    }

    #[test]
    fn invalid_references_are_refused() {
        for bad in [
            "",
            "UPPER/case",
            "a b",
            "x@sha256:short",
            "x@md5:0123",
            "x:",
            "https://ghcr.io/a/b",
            "a//b",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should be invalid");
        }
    }
}
