//! The namespace prefix of a `/v1/verify` key (SPEC §1): `[team-a]ghcr.io/acme/app:1`.
//!
//! The namespace of the admitted object decides which trust policies apply, and it must live
//! in the key because Gatekeeper caches answers per (provider, key): two pods with the same
//! image in namespaces with different policies must not share an answer. The grammar is
//! strict — `[`, a Kubernetes namespace name (1–63 of `a-z0-9-`, starting and ending with
//! a letter or digit), `]`, then the image reference — so a prefix can never be mistaken
//! for part of a reference, and anything else starting with `[` is refused
//! (`invalid-reference`). A key without the prefix is cluster-wide.

/// A key split into its namespace (if any) and the image reference after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NamespacedKey<'a> {
    pub namespace: Option<&'a str>,
    pub reference: &'a str,
}

/// Why a key's prefix is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PrefixError {
    #[error("key starts with \"[\" but has no closing \"]\"")]
    Unclosed,
    #[error(
        "{0:?} is not a Kubernetes namespace name (1-63 of a-z, 0-9 and \"-\", starting and ending with a letter or digit)"
    )]
    NotANamespace(String),
    #[error("no image reference after the namespace prefix")]
    NoReference,
}

/// Splits `key` into its namespace prefix and reference.
pub(crate) fn split(key: &str) -> Result<NamespacedKey<'_>, PrefixError> {
    let Some(rest) = key.strip_prefix('[') else {
        return Ok(NamespacedKey {
            namespace: None,
            reference: key,
        });
    };
    let (namespace, reference) = rest.split_once(']').ok_or(PrefixError::Unclosed)?;
    if !is_namespace_name(namespace) {
        return Err(PrefixError::NotANamespace(namespace.to_string()));
    }
    if reference.is_empty() {
        return Err(PrefixError::NoReference);
    }
    Ok(NamespacedKey {
        namespace: Some(namespace),
        reference,
    })
}

/// A Kubernetes namespace name: an RFC 1123 label.
pub(crate) fn is_namespace_name(s: &str) -> bool {
    let b = s.as_bytes();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (1..=63).contains(&b.len())
        && b.iter().all(inner)
        && b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
}

/// Whether `namespace` matches a policy's `namespaces` entry: a name, or a glob whose `*`
/// matches any run of characters (`team-b-*` matches `team-b-dev`, not `team-bdev`).
pub(crate) fn matches(pattern: &str, namespace: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = namespace.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Whether `pattern` is a valid `namespaces` entry: a namespace name, possibly with `*`s.
pub(crate) fn is_pattern(pattern: &str) -> bool {
    if !pattern.contains('*') {
        return is_namespace_name(pattern);
    }
    !pattern.is_empty()
        && pattern.len() <= 63
        && pattern
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'*')
}

/// How specifically `pattern` names a namespace: an exact name beats every glob, a glob with
/// more literal characters beats one with fewer.
pub(crate) fn specificity(pattern: &str) -> (bool, usize) {
    (
        !pattern.contains('*'),
        pattern.bytes().filter(|c| *c != b'*').count(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_into_namespace_and_reference() {
        assert_eq!(
            split("[team-a]ghcr.io/acme/app:1"),
            Ok(NamespacedKey {
                namespace: Some("team-a"),
                reference: "ghcr.io/acme/app:1"
            })
        );
        assert_eq!(
            split("nginx").map(|k| (k.namespace, k.reference)),
            Ok((None, "nginx"))
        );
    }

    #[test]
    fn malformed_prefixes_are_refused() {
        assert_eq!(split("[team-a"), Err(PrefixError::Unclosed));
        assert_eq!(split("[team-a]"), Err(PrefixError::NoReference));
        for bad in [
            "[]x", "[Team]x", "[-a]x", "[a-]x", "[a_b]x", "[a.b]x", "[[a]]x",
        ] {
            assert!(
                matches!(split(bad), Err(PrefixError::NotANamespace(_))),
                "{bad}"
            );
        }
        let long = format!("[{}]x", "a".repeat(64));
        assert!(split(&long).is_err());
        assert!(split(&format!("[{}]x", "a".repeat(63))).is_ok());
    }

    #[test]
    fn globs_match_any_run_of_characters() {
        assert!(matches("team-a", "team-a"));
        assert!(!matches("team-a", "team-ab"));
        assert!(matches("team-b-*", "team-b-dev"));
        assert!(matches("team-b-*", "team-b-"));
        assert!(!matches("team-b-*", "team-bdev"));
        assert!(matches("*-prod", "payments-prod"));
        assert!(matches("a*b*c", "a-x-b-y-c"));
        assert!(!matches("a*b*c", "a-x-c"));
        assert!(matches("*", "anything"));
        assert!(!matches("ab*ba", "aba"), "the ends may not overlap");
    }

    #[test]
    fn exact_names_are_more_specific_than_globs() {
        assert!(specificity("team-a") > specificity("team-*"));
        assert!(specificity("team-b-*") > specificity("team-*"));
        assert!(
            is_pattern("team-*") && is_pattern("team-a") && !is_pattern("Team") && !is_pattern("")
        );
    }
}
