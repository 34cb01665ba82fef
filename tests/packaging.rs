//! What the project ships besides its code says the same thing everywhere:
//!
//! - `LICENSE` is the Apache License 2.0, byte for byte the canonical text (no added or
//!   changed terms), and Cargo.toml's `license`, the chart's licence annotation, the image's
//!   `org.opencontainers.image.licenses` label and the README all name that licence.
//! - Every base image of the `Dockerfile` is pinned by digest (`name:tag@sha256:…`), so a
//!   rebuild cannot silently pick up a moved tag.
//! - The image carries the OCI labels (title, description, version, revision, source,
//!   licenses), and those that Cargo.toml also states agree with it; the chart's
//!   `appVersion`, the default image tag, is the crate's version.
//!
//! Docker does not run here: the Dockerfile is read, as `tests/support/dockerfile.rs`
//! parses it.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use support::dockerfile::{Stage, instructions, pairs, stages};

/// SPDX identifier of the licence.
const SPDX: &str = "Apache-2.0";

/// SHA-256 of the canonical Apache License 2.0 text (apache.org's LICENSE-2.0.txt, 11 358
/// bytes; the same file as Debian's /usr/share/common-licenses/Apache-2.0).
const APACHE_2_0_SHA256: &str = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30";

/// The OCI labels the image must carry.
const LABELS: [&str; 6] = [
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
    "org.opencontainers.image.version",
    "org.opencontainers.image.revision",
    "org.opencontainers.image.source",
    "org.opencontainers.image.licenses",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The string fields of Cargo.toml's `[package]` (`key = "value"` lines).
fn package() -> BTreeMap<String, String> {
    let text = read(&root().join("Cargo.toml"));
    let mut out = BTreeMap::new();
    let mut in_package = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
            continue;
        }
        if !in_package || line.starts_with('#') {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            let value = value.trim();
            if let Some(s) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                out.insert(key.trim().to_string(), s.to_string());
            }
        }
    }
    out
}

fn dockerfile_stages() -> Vec<Stage> {
    stages(&instructions(&read(&root().join("Dockerfile"))))
}

/// `ARG` defaults of a stage, by name (`None`: declared without a default).
fn args(stage: &Stage) -> BTreeMap<String, Option<String>> {
    stage
        .steps
        .iter()
        .filter(|s| s.op == "ARG")
        .flat_map(|s| pairs(&s.args))
        .collect()
}

/// `LABEL` values of a stage, by key.
fn labels(stage: &Stage) -> BTreeMap<String, String> {
    stage
        .steps
        .iter()
        .filter(|s| s.op == "LABEL")
        .flat_map(|s| pairs(&s.args))
        .map(|(k, v)| {
            let v = v.unwrap_or_else(|| panic!("LABEL {k} without a value"));
            (k, v)
        })
        .collect()
}

/// A label value as built with the stage's ARG defaults: `${NAME}` / `$NAME` replaced.
fn expand(value: &str, args: &BTreeMap<String, Option<String>>) -> String {
    let mut out = value.to_string();
    for (name, default) in args {
        let default = default.clone().unwrap_or_default();
        out = out
            .replace(&format!("${{{name}}}"), &default)
            .replace(&format!("${name}"), &default);
    }
    out
}

#[test]
fn the_licence_is_apache_2_0_everywhere() {
    let package = package();
    assert_eq!(
        package.get("license").map(String::as_str),
        Some(SPDX),
        "Cargo.toml [package] license"
    );
    assert!(
        !package.contains_key("license-file"),
        "license and license-file together"
    );

    let licence = std::fs::read(root().join("LICENSE")).expect("a LICENSE file");
    let text = String::from_utf8_lossy(&licence);
    assert!(
        text.contains("Apache License") && text.contains("Version 2.0, January 2004"),
        "LICENSE is not the Apache License 2.0"
    );
    let digest: String = Sha256::digest(&licence)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        digest,
        APACHE_2_0_SHA256,
        "LICENSE ({} bytes) differs from the canonical Apache License 2.0 text",
        licence.len()
    );

    let chart = read(&root().join("charts/vouch/Chart.yaml"));
    let chart: serde_json::Value = serde_yaml_ng::from_str(&chart).expect("Chart.yaml");
    assert_eq!(
        chart["annotations"]["artifacthub.io/license"], SPDX,
        "Chart.yaml annotation artifacthub.io/license"
    );

    let stages = dockerfile_stages();
    let runtime = stages.last().expect("a FROM");
    assert_eq!(
        labels(runtime)
            .get("org.opencontainers.image.licenses")
            .map(String::as_str),
        Some(SPDX)
    );

    let readme = read(&root().join("README.md"));
    assert!(
        readme.contains(SPDX) && readme.contains("(LICENSE)"),
        "README.md names the licence and links LICENSE"
    );
}

#[test]
fn every_base_image_is_pinned_by_digest() {
    let stages = dockerfile_stages();
    assert!(stages.len() >= 2, "a build and a runtime stage");
    let names: Vec<String> = stages.iter().filter_map(|s| s.name.clone()).collect();
    let mut pinned = 0;
    for stage in &stages {
        // FROM an earlier stage is not a base image.
        if names.contains(&stage.from) {
            continue;
        }
        let (reference, digest) = stage
            .from
            .split_once("@sha256:")
            .unwrap_or_else(|| panic!("FROM {} is not pinned by digest", stage.from));
        assert!(
            digest.len() == 64
                && digest
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
            "FROM {}: not a sha256 digest",
            stage.from
        );
        assert!(
            !reference.contains('$'),
            "FROM {}: a build argument could replace the image beside its digest",
            stage.from
        );
        // The tag stays for the reader, and names what the digest was resolved from.
        let tag = reference
            .rsplit_once('/')
            .map_or(reference, |(_, last)| last)
            .split_once(':')
            .map(|(_, tag)| tag)
            .unwrap_or_else(|| panic!("FROM {}: no tag beside the digest", stage.from));
        assert!(
            !tag.is_empty() && tag != "latest",
            "FROM {}: tag {tag:?}",
            stage.from
        );
        pinned += 1;
    }
    assert!(pinned >= 2, "{pinned} base images");
}

#[test]
fn the_image_carries_oci_labels_that_agree_with_cargo_toml() {
    let package = package();
    let stages = dockerfile_stages();
    let runtime = stages.last().expect("a FROM");
    let labels = labels(runtime);
    let args = args(runtime);
    for label in LABELS {
        assert!(
            labels.contains_key(label),
            "the runtime stage has no LABEL {label}: {labels:?}"
        );
    }
    let built = |label: &str| expand(&labels[label], &args);

    // version: an ARG whose default is the crate's version, so a plain build is labelled
    // right and a release build may pass its own.
    assert_eq!(
        labels["org.opencontainers.image.version"], "${VERSION}",
        "the version label comes from ARG VERSION"
    );
    assert_eq!(
        args.get("VERSION").cloned().flatten().as_deref(),
        Some(package["version"].as_str()),
        "ARG VERSION's default is Cargo.toml's version"
    );
    assert_eq!(built("org.opencontainers.image.title"), package["name"]);
    assert_eq!(
        built("org.opencontainers.image.description"),
        package["description"],
        "the description label is Cargo.toml's description"
    );
    // revision and source: what is built, from where; passed by whoever builds.
    for (label, arg) in [
        ("org.opencontainers.image.revision", "REVISION"),
        ("org.opencontainers.image.source", "SOURCE_URL"),
    ] {
        assert_eq!(labels[label], format!("${{{arg}}}"), "{label}");
        assert!(args.contains_key(arg), "ARG {arg} in the runtime stage");
    }
    if let Some(repository) = package.get("repository") {
        assert_eq!(
            args.get("SOURCE_URL").cloned().flatten().as_ref(),
            Some(repository),
            "ARG SOURCE_URL's default is Cargo.toml's repository"
        );
    }

    // The chart deploys, by default, the image of this version.
    let chart = read(&root().join("charts/vouch/Chart.yaml"));
    let chart: serde_json::Value = serde_yaml_ng::from_str(&chart).expect("Chart.yaml");
    assert_eq!(chart["appVersion"], package["version"].as_str());
}

/// The checks above can fail: an unpinned FROM, a FROM through a build argument and a
/// label without its ARG are seen.
#[test]
fn the_dockerfile_reading_catches_what_the_checks_are_for() {
    let text = "ARG BASE=debian:12\nFROM ${BASE}@sha256:abc AS a\nFROM debian:12 AS b\n\
                FROM a\nLABEL x=\"1 2\" \\\n  y=$Z\nARG Z\n";
    let stages = stages(&instructions(text));
    assert_eq!(stages.len(), 3);
    assert_eq!(stages[0].from, "${BASE}@sha256:abc");
    assert!(!stages[1].from.contains("@sha256:"));
    assert_eq!(stages[2].from, "a");
    let labels = labels(&stages[2]);
    assert_eq!(labels["x"], "1 2");
    assert_eq!(labels["y"], "$Z");
    assert_eq!(args(&stages[2]).get("Z"), Some(&None));
    assert_eq!(expand("v${Z}", &args(&stages[2])), "v");
}
