//! SHA-256 digests as OCI writes them (`sha256:<64 lower-case hex>`): computing one,
//! formatting raw bytes as one, and telling whether a string is one. A leaf shared by the
//! registry client, the caches and the claims store.

use aws_lc_rs::digest::{SHA256, digest};

/// The OCI digest of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    sha256_digest_of(digest(&SHA256, bytes).as_ref())
}
/// `sha256:` and the lower-case hex of `raw`, the bytes of a SHA-256 hash.
pub(crate) fn sha256_digest_of(raw: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(7 + 2 * raw.len());
    s.push_str("sha256:");
    for b in raw {
        let _ = write!(s, "{b:02x}");
    }
    s
}
/// Whether `s` is a canonical `sha256:` digest (64 lower-case hex digits).
pub(crate) fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(is_sha256_digest(&sha256_digest(b"x")));
        assert!(!is_sha256_digest("sha256:ABC"));
        assert!(!is_sha256_digest("sha512:00"));
    }
}
